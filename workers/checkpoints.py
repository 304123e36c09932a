"""Checkpoints: a shard's part is written in chunks, and a retry resumes after the last one.

A chunk ends at the first processor batch boundary where it holds ``--checkpoint-rows``
rows read (or :data:`MAX_CHUNK_BYTES` of output): the boundaries depend only on the rows
and the processor, so a clean run and a resumed one write the same bytes. After each chunk
the data is made durable, then a checkpoint record is written atomically beside the part
(locally on a thread behind the writer, with the hashing, so the read of the next rows never
waits for the disk):

    STORE/parts/.part-00007.jsonl.checkpoint   what this shard's in-progress part holds:
                                               its key (run, shard bounds, generation,
                                               processor identity) and per chunk the rows
                                               read, values written, bytes, the sha256 of the
                                               part through the chunk's end and the last key
                                               read (and the S3 part's ETag)

A chunk's digest is of the part from its first byte through the chunk's end: one running
sha256 serves every chunk and, at the end, the whole part (the commit record's ``sha256``), so a
checkpointed part is hashed once, as a part without checkpoints is, and a resume verifies the
kept chunks in one pass that also restores the running digest.

A retry whose key matches resumes: it keeps the chunks whose bytes still verify, drops
whatever a dead attempt wrote after them, and reads the database from the key after the
last kept chunk. A checkpoint with another key (another generation, processor or plan) is
never resumed. The part is still published in one atomic step, with the same commit record.

Local folders (a pod's own or a shared RWX volume): the in-progress part is the hidden
``.part-NNNNN.jsonl.tmp-resume`` beside the final name, flock()ed by the attempt writing it.
An attempt that finds it locked (a live duplicate) writes a private temp file without
checkpoints instead, so two attempts never append to one file; both publish the same bytes.
Where locks do not prove liveness (see :func:`storage.locks_prove_liveness`), a resume temp
touched within the lease (``WORKERS_STALE_AFTER``) counts as a live writer's.

Parquet parts (``--part-format parquet``, :mod:`workers.parquetparts`) go through these same
writers: the part is one Parquet file, ``.part-NNNNN.parquet.tmp-resume`` locally. Each
*segment* of it (the rows up to the first batch boundary past ``--checkpoint-rows``, as a
chunk) is encoded as a Parquet file of its own with fixed writer options; the part is the
segments' bodies one after the other and one footer, the segments' footers joined with their
offsets shifted (:mod:`workers.parquetfooter`). A chunk closes after a segment (on S3 once it
holds 5 MiB, so a chunk may hold several) and its record keeps those segments' footers
(``meta``). Why a resume gives the clean run's bytes: a segment's file is a pure function of its
rows (the batches from the chunk's start are the same in both runs, and nothing else, no time,
no host, enters the file); the kept chunks are the clean run's bytes (their digests verify)
and carry their footers; the final footer is a pure function of all the footers and sizes.
Segments, unlike chunks, do not depend on the store, so a part's bytes are the same on a
folder, S3 or GCS and without checkpoints; they depend on ``--checkpoint-rows`` (the row
groups follow it), which the checkpoint key of a Parquet part therefore includes.

S3 and GCS have writers of their own (:mod:`workers.checkpoints_s3`: one multipart upload to
the final key, a part per chunk; :mod:`workers.checkpoints_gcs`: a chunk object per chunk,
composed at the commit), imported only by shards that write there. Other object stores keep the
previous behaviour: the part is spooled whole and put at the end, without checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from typing import IO, Any

import orjson

from workers import failures, stop, storage
from workers.errors import UsageError

DEFAULT_CHECKPOINT_ROWS = 100_000
"""Rows read per chunk: tens of MB of output for rows of a few hundred bytes."""

MAX_CHUNK_BYTES = 64 << 20
"""A chunk also ends at this much output, so wide rows keep chunks (and S3 parts) bounded."""

MAX_CHECKPOINT_BYTES = 16 << 20
"""Ceiling for a checkpoint record: ~150 bytes per chunk, so ~100,000 chunks."""

VERSION = 2
"""Records of another version are never resumed (1 held each chunk's own sha256)."""

READ_BYTES = 1 << 20
"""Bytes read at a time when a resume verifies what it keeps."""


def checkpoint_url(store: storage.Store | str, index: int, fmt: str = "jsonl") -> str:
    return storage.join(store, "parts", f".part-{index:05d}.{fmt}.checkpoint")


@dataclass(frozen=True)
class Chunk:
    """One checkpointed chunk of a part."""

    rows_in: int
    rows: int
    bytes: int
    prefix_sha256: str | None
    """sha256 of the part's bytes from its start through this chunk's end (None after an S3
    resume, whose kept parts cannot be read back before the upload completes)."""
    last_key: int | float | str | None
    """The key of the chunk's last row as JSON (a typed key's value, see :mod:`workers.keys`):
    the resumed read starts after it."""
    etag: str | None = None
    meta: str | None = None
    """A Parquet part's chunk: the footers of its segments' own Parquet files (see
    :mod:`workers.parquetparts`); None for JSON Lines."""

    def matches(self, running: Any) -> bool:
        """Whether ``running``, the part's sha256 over the bytes through this chunk, is the one
        recorded (a copy is read: the caller hashes on)."""
        return bool(running.copy().hexdigest() == self.prefix_sha256)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("etag", "meta"):
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> Chunk:
        if not isinstance(obj, dict):
            raise TypeError("a chunk is not an object")
        last = obj.get("last_key")
        etag = obj.get("etag")
        meta = obj.get("meta")
        digest = obj["prefix_sha256"]
        return cls(
            int(obj["rows_in"]),
            int(obj["rows"]),
            int(obj["bytes"]),
            str(digest) if digest is not None else None,
            _key_value(last),
            str(etag) if etag is not None else None,
            str(meta) if meta is not None else None,
        )


def _key_value(value: Any) -> int | float | str | None:
    if value is None or (isinstance(value, (int, float, str)) and not isinstance(value, bool)):
        return value
    raise TypeError("a chunk's last key is not a key value")


def normalized(key: dict[str, Any]) -> Any:
    """``key`` as it reads back from JSON, so a stored key compares equal to a fresh one."""
    return orjson.loads(orjson.dumps(key, option=orjson.OPT_SORT_KEYS))


def read_checkpoint(url: str) -> dict[str, Any] | None:
    """The checkpoint record at ``url``, or None when there is none or it is unreadable."""
    try:
        rec = orjson.loads(storage.read_small(url, MAX_CHECKPOINT_BYTES, "checkpoint record"))
    except (FileNotFoundError, orjson.JSONDecodeError, UsageError):
        return None
    return rec if isinstance(rec, dict) and rec.get("version") == VERSION else None


def chunks_of(rec: dict[str, Any]) -> list[Chunk] | None:
    try:
        return [Chunk.from_dict(c) for c in rec.get("chunks") or []]
    except (KeyError, TypeError, ValueError):
        return None


class PartWriter:
    """Streams a part; closes a chunk when :meth:`end_batch` says enough was written.

    ``every`` is the rows per chunk (0: no checkpoints, the part is one chunk). After
    opening, ``chunks`` holds what was resumed and :attr:`resume_key` says where to read on.
    Leaving the ``with`` block without :meth:`commit` keeps what was checkpointed (that is
    the point) and discards the rest.
    """

    mode = "fresh"
    min_chunk_bytes = 0
    background = False
    """Hash and persist chunks on a thread (see :class:`_Behind`): the backend's ``_persist``
    must not touch what the writing thread is still writing."""

    def __init__(self, url: str, ckpt_url: str, key: dict[str, Any], every: int) -> None:
        self.url = url
        self.ckpt_url = ckpt_url
        self.key = normalized(key)
        self.every = every
        self.chunks: list[Chunk] = []  # persisted: vouched for by the checkpoint record
        self.bytes = 0
        self._whole: Any = hashlib.sha256()  # None when only a read-back can tell (S3 resume)
        self._sha256: str | None = None
        # Chunks this attempt closed (persisted, or queued for the thread to persist).
        self._closed = self._closed_rows_in = self._closed_rows = 0
        self._behind: _Behind | None = None
        self._new_chunk()

    def _new_chunk(self) -> None:
        self._c_bytes = self._c_rows_in = self._c_rows = 0
        self._c_last: int | float | str | None = None

    # -- what a resume kept
    @property
    def resumed_rows_in(self) -> int:
        return sum(c.rows_in for c in self.chunks[: self._resumed])

    _resumed = 0

    @property
    def resume_key(self) -> int | float | str | None:
        """The last key of the last checkpointed chunk (None: read from the shard's start)."""
        return self.chunks[-1].last_key if self.chunks else None

    @property
    def rows_in(self) -> int:
        return self.resumed_rows_in + self._closed_rows_in + self._c_rows_in

    @property
    def rows(self) -> int:
        resumed = sum(c.rows for c in self.chunks[: self._resumed])
        return resumed + self._closed_rows + self._c_rows

    @property
    def chunk_count(self) -> int:
        current = 1 if self._c_bytes or self._c_rows_in else 0
        return self._resumed + self._closed + current

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise RuntimeError("the part's sha256 is known once it is committed")
        return self._sha256

    # -- writing
    def write(self, data: bytes) -> None:
        self._sink(data)
        if self.background:
            if self._behind is None:
                self._behind = _Behind(self)
            self._behind.add(data)
        else:
            self._hash(data)
        self._c_bytes += len(data)
        self.bytes += len(data)

    def _hash(self, data: bytes) -> None:
        if self._whole is not None:
            self._whole.update(data)

    def end_batch(self, rows_in: int, rows_out: int, last_key: Any) -> None:
        """A processor batch is written: close the chunk here if it is full; after the spot
        notice, checkpoint here and stop (:mod:`workers.stop`)."""
        self.count(rows_in, rows_out, last_key)
        if stop.noticed():
            kept = self.checkpoint_now()
            raise stop.Terminated(
                f"checkpointed {self.rows_in} rows read" if kept else "no checkpoint possible here"
            )
        if (
            self.every
            and (self._c_rows_in >= self.every or self._c_bytes >= MAX_CHUNK_BYTES)
            and self._c_bytes >= self.min_chunk_bytes
        ):
            self.close_chunk()

    def count(self, rows_in: int, rows_out: int, last_key: Any) -> None:
        """Account a processor batch whose bytes are written, without closing the chunk."""
        self._c_rows_in += rows_in
        self._c_rows += rows_out
        self._c_last = last_key  # a JSON key value (workers.keys.encode)

    def checkpoint_now(self) -> bool:
        """Close the chunk at this batch boundary and wait until it is durable and vouched for:
        what the spot notice keeps. False where a chunk cannot end here (no checkpoints, nothing
        read since the last one, or an S3 part under its 5 MiB minimum)."""
        if not self.every or not self._c_rows_in or self._c_bytes < self.min_chunk_bytes:
            return False
        self.close_chunk()
        self._settle()
        return True

    @property
    def open_chunk_bytes(self) -> int:
        """Bytes written into the chunk not closed yet."""
        return self._c_bytes

    def close_chunk(self, meta: str | None = None) -> None:
        """End the chunk at what is written and counted: make it durable, then vouch for it."""
        # The digest is filled in by whoever hashed the chunk's bytes (_close_chunk).
        chunk = Chunk(self._c_rows_in, self._c_rows, self._c_bytes, None, self._c_last, meta=meta)
        self._closed += 1
        self._closed_rows_in += self._c_rows_in
        self._closed_rows += self._c_rows
        if self._behind is not None:
            self._behind.close_chunk(chunk)
        else:
            self._close_chunk(chunk)
        self._new_chunk()

    def _close_chunk(self, chunk: Chunk) -> None:
        """Every byte of ``chunk`` is written and hashed: make it durable, then vouch for it."""
        if self._whole is not None:
            chunk = dataclasses.replace(chunk, prefix_sha256=self._whole.copy().hexdigest())
        self.chunks.append(self._persist(chunk))
        self._save_checkpoint()

    def _settle(self) -> None:
        """Wait until the thread has hashed and persisted everything (re-raising its error)."""
        if self._behind is not None:
            behind, self._behind = self._behind, None
            behind.finish()

    def _stop(self) -> None:
        """Leaving without a commit: let the thread finish what it was given, ignore its error."""
        with contextlib.suppress(Exception):
            self._settle()

    def _save_checkpoint(self, **extra: Any) -> None:
        rec = {
            "version": VERSION,
            "key": self.key,
            "backend": self.backend,
            **extra,
            **self._checkpoint_fields(),
            "rows_in": sum(c.rows_in for c in self.chunks),
            "rows": sum(c.rows for c in self.chunks),
            "bytes": sum(c.bytes for c in self.chunks),
            "updated": round(time.time(), 3),
            "chunks": [c.to_dict() for c in self.chunks],
        }
        storage.write_bytes(self.ckpt_url, orjson.dumps(rec) + b"\n")

    def _matching_checkpoint(self) -> dict[str, Any] | None:
        rec = read_checkpoint(self.ckpt_url)
        if rec is None or rec.get("key") != self.key or rec.get("backend") != self.backend:
            return None
        return rec

    def discard_checkpoint(self) -> None:
        """After the commit record: the checkpoint has nothing left to resume."""
        with contextlib.suppress(OSError, UsageError):
            storage.remove(self.ckpt_url)

    def forget(self) -> None:
        """Never resume this part: what it read cannot be trusted (the rows changed under it)."""
        self._stop()
        self.chunks.clear()
        self.discard_checkpoint()

    # -- per backend
    backend = "none"

    def _sink(self, data: bytes) -> None:
        raise NotImplementedError

    def _persist(self, chunk: Chunk) -> Chunk:
        raise NotImplementedError

    def _checkpoint_fields(self) -> dict[str, Any]:
        return {}

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop()
        finally:
            self.close()


class _Behind:
    """The thread that hashes a part's bytes and persists its chunks behind the writer.

    The writer hands over its blocks in order, and a chunk's end after its last block, so
    the thread sees the same sequence a synchronous writer would: a chunk is made durable
    and then vouched for by its record exactly as before, only without stalling the read
    of the next rows (sha256 and fsync release the GIL). Blocks are handed over in lots of
    about :data:`_LOT_BYTES`, at most :data:`_LOTS` lots ahead, so memory stays bounded. An
    error is raised to the writer at its next hand-over or at :meth:`finish`.
    """

    def __init__(self, writer: PartWriter) -> None:
        import queue
        import threading

        self._writer = writer
        self._lot: list[Any] = []
        self._lot_bytes = 0
        self._queue: queue.Queue[list[Any] | None] = queue.Queue(_LOTS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="workers-part-hash", daemon=True)
        self._thread.start()

    def add(self, data: bytes) -> None:
        self._lot.append(data)
        self._lot_bytes += len(data)
        if self._lot_bytes >= _LOT_BYTES:
            self._hand_over()

    def close_chunk(self, chunk: Chunk) -> None:
        self._lot.append(chunk)
        self._hand_over()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(self._lot)
        self._lot, self._lot_bytes = [], 0

    def finish(self) -> None:
        if self._lot:
            self._hand_over()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        w = self._writer
        while (lot := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so the writer never blocks on a dead thread
            try:
                for item in lot:
                    if isinstance(item, Chunk):
                        w._close_chunk(item)
                    else:
                        w._hash(item)
            except BaseException as exc:  # raised again in the writer's thread
                self._error = exc


_LOT_BYTES = 1 << 20
_LOTS = 8


class _Plain(PartWriter):
    """No checkpoints: the part goes through :class:`storage.AtomicWriter` whole."""

    background = True

    def __init__(self, url: str, ckpt_url: str, key: dict[str, Any], mode: str) -> None:
        super().__init__(url, ckpt_url, key, 0)
        self.mode = mode
        self._w = storage.AtomicWriter(url)

    def _sink(self, data: bytes) -> None:
        self._w.write(data)

    def commit(self) -> None:
        self._settle()
        self._w.commit()
        self._sha256 = self._whole.hexdigest()

    def close(self) -> None:
        self._w.abort()

    def discard_checkpoint(self) -> None:
        pass  # a private writer never owns the checkpoint: a live attempt may be using it


class SpooledPart(PartWriter):
    """A bucket's part writer: only the chunk being written is spooled to local disk."""

    def _open_spool(self) -> None:
        import tempfile  # deferred: only buckets spool

        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="workers-chunk-")  # noqa: SIM115

    def _sink(self, data: bytes) -> None:
        self._spool.write(data)

    def _take_spool(self) -> bytes:
        """The chunk written since the last call; the spool is empty again after it."""
        self._spool.seek(0)
        data = self._spool.read()
        self._spool.seek(0)
        self._spool.truncate()
        return data

    def close(self) -> None:
        self._spool.close()


class Busy(Exception):
    """The resume temp belongs to another attempt that may be alive."""


class _Local(PartWriter):
    """A resumable temp file beside the final name, renamed into place at the commit."""

    backend = "local"
    background = True

    def __init__(
        self, part: storage.Store, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        url = part.url
        super().__init__(url, ckpt_url, key, every)
        storage.check_destination(url, "output")
        self._path = part.local_path
        folder, name = os.path.split(self._path)
        os.makedirs(folder or ".", exist_ok=True)
        self._tmp = os.path.join(folder, f".{name}.tmp-resume")
        fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise failures.error(
                    "store-invalid", f"resume temp {self._tmp} is not a regular file"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise Busy from None
            except OSError:
                locked = False
            if not (locked and storage.locks_prove_liveness(folder)):
                from workers.config import stale_after

                if st.st_size and time.time() - st.st_mtime <= stale_after():
                    raise Busy  # maybe a live writer on another node: only the lease can tell
            os.utime(fd)  # our lease starts now
        except BaseException:
            os.close(fd)
            raise
        self._file: IO[bytes] = os.fdopen(fd, "r+b")
        self._committed = False
        storage.remove_stale_temps(url)  # private temps of dead attempts; ours is locked/fresh
        if not fresh:
            self._resume()
        if not self.chunks:
            self._file.truncate(0)
        self._file.seek(self.bytes)

    def _resume(self) -> None:
        rec = self._matching_checkpoint()
        chunks = chunks_of(rec) if rec is not None else None
        if not chunks:
            return
        size = os.fstat(self._file.fileno()).st_size
        whole = hashlib.sha256()
        offset = 0
        self._file.seek(0)
        for chunk in chunks:
            if offset + chunk.bytes > size:
                break
            before = whole.copy()
            left = chunk.bytes
            while left:
                data = self._file.read(min(READ_BYTES, left))
                if not data:
                    break
                whole.update(data)
                left -= len(data)
            if left or not chunk.matches(whole):
                whole = before
                break
            self.chunks.append(chunk)
            offset += chunk.bytes
        self._whole, self.bytes, self._resumed = whole, offset, len(self.chunks)
        self.mode = "resumed" if self.chunks else "fresh"
        # Whatever the dead attempt wrote after its last checkpoint is not ours to keep.
        self._file.truncate(offset)
        if len(self.chunks) < len(chunks):
            self._save_checkpoint()  # the record never vouches for more than the file holds

    def _sink(self, data: bytes) -> None:
        self._file.write(data)

    def _persist(self, chunk: Chunk) -> Chunk:
        # Durable before the record that vouches for it.
        self._file.flush()
        os.fsync(self._file.fileno())
        return chunk

    def commit(self) -> None:
        self._settle()
        self._file.flush()
        os.fsync(self._file.fileno())
        storage.check_destination(self.url, "output")
        os.replace(self._tmp, self._path)
        self._committed = True
        # Unlock only once the data is under its final name (as storage.AtomicWriter does).
        self._file.close()
        storage.fsync_dir(os.path.dirname(self._path) or ".")
        self._sha256 = self._whole.hexdigest()

    def close(self) -> None:
        if self._committed:
            return
        try:
            if not self.chunks:  # nothing a retry could resume
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp)
        finally:
            self._file.close()


_BUCKET_WRITERS = {
    "s3": ("workers.checkpoints_s3", "S3Part"),
    "gs": ("workers.checkpoints_gcs", "GCSPart"),
}
"""The resumable part writer of each bucket backend (:attr:`storage.Store.backend`), imported
only by shards that write there; a backend without one spools the part whole."""


def _bucket_module(part: storage.Store) -> Any:
    import importlib

    entry = _BUCKET_WRITERS.get(part.backend)
    return importlib.import_module(entry[0]) if entry else None


def sweep(part: storage.Store, ckpt_url: str) -> None:
    """For a part already committed: remove what dead attempts left to resume it (a resume
    temp nobody holds, and then its checkpoint record), never a live attempt's."""
    if not part.is_local:
        module = _bucket_module(part)
        if module is not None:
            module.sweep(part, ckpt_url)
        return
    storage.remove_stale_temps(part.url)
    folder, name = os.path.split(part.local_path)
    if not os.path.exists(os.path.join(folder, f".{name}.tmp-resume")):
        with contextlib.suppress(OSError, UsageError):
            storage.remove(ckpt_url)


def open_part(
    part: storage.Store, ckpt_url: str, key: dict[str, Any], every: int, *, fresh: bool
) -> PartWriter:
    """A writer for ``part`` that checkpoints every ``every`` rows read and, unless
    ``fresh``, resumes from a checkpoint whose key equals ``key``."""
    if every and part.is_local:
        try:
            return _Local(part, ckpt_url, key, every, fresh)
        except Busy:
            return _Plain(part.url, ckpt_url, key, "private")
    module = _bucket_module(part) if every else None
    if module is not None:
        writer: PartWriter = getattr(module, _BUCKET_WRITERS[part.backend][1])(
            part, ckpt_url, key, every, fresh
        )
        return writer
    return _Plain(part.url, ckpt_url, key, "whole")
