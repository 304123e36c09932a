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

S3: one multipart upload to the final key whose parts are the chunks (a chunk is at least
:data:`S3_MIN_PART_BYTES`, S3's minimum part size, except the last); its upload id and part
ETags are in the checkpoint record, and a retry continues the same upload. Only the chunk
being written is spooled to local disk. A part that never reaches a second chunk is put in
one request, as before checkpoints.

GCS: each chunk is its own object beside the part, named by an id kept in the checkpoint
record; a retry downloads the kept chunks, checks their sha256 and goes on; the commit composes
the chunks into the part (see :class:`_GCS`). Only the chunk being written is spooled to local
disk there too. Other object stores keep the previous behaviour: the part is spooled whole and
put at the end, without checkpoints.
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

from workers import failures, storage
from workers.errors import TransientError, UsageError

DEFAULT_CHECKPOINT_ROWS = 100_000
"""Rows read per chunk: tens of MB of output for rows of a few hundred bytes."""

MAX_CHUNK_BYTES = 64 << 20
"""A chunk also ends at this much output, so wide rows keep chunks (and S3 parts) bounded."""

S3_MIN_PART_BYTES = 5 << 20
"""S3 refuses multipart parts under 5 MiB except the last: a chunk on S3 is at least this."""

S3_MAX_PARTS = 10_000
"""S3's limit on parts per upload."""

MAX_CHECKPOINT_BYTES = 16 << 20
"""Ceiling for a checkpoint record: ~150 bytes per chunk, so ~100,000 chunks."""

VERSION = 2
"""Records of another version are never resumed (1 held each chunk's own sha256)."""

_READ = 1 << 20


def checkpoint_url(store: str, index: int) -> str:
    return storage.join(store, "parts", f".part-{index:05d}.jsonl.checkpoint")


@dataclass(frozen=True)
class Chunk:
    """One checkpointed chunk of a part."""

    rows_in: int
    rows: int
    bytes: int
    prefix_sha256: str | None
    """sha256 of the part's bytes from its start through this chunk's end (None after an S3
    resume, whose kept parts cannot be read back before the upload completes)."""
    last_key: int | None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.etag is None:
            del d["etag"]
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> Chunk:
        if not isinstance(obj, dict):
            raise TypeError("a chunk is not an object")
        last = obj.get("last_key")
        etag = obj.get("etag")
        digest = obj["prefix_sha256"]
        return cls(
            int(obj["rows_in"]),
            int(obj["rows"]),
            int(obj["bytes"]),
            str(digest) if digest is not None else None,
            int(last) if last is not None else None,
            str(etag) if etag is not None else None,
        )


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


def _chunks_of(rec: dict[str, Any]) -> list[Chunk] | None:
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
        self._c_last: int | None = None

    # -- what a resume kept
    @property
    def resumed_rows_in(self) -> int:
        return sum(c.rows_in for c in self.chunks[: self._resumed])

    _resumed = 0

    @property
    def resume_key(self) -> int | None:
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
        """A processor batch is written: close the chunk here if it is full."""
        self._c_rows_in += rows_in
        self._c_rows += rows_out
        self._c_last = int(last_key) if last_key is not None else None
        if (
            self.every
            and (self._c_rows_in >= self.every or self._c_bytes >= MAX_CHUNK_BYTES)
            and self._c_bytes >= self.min_chunk_bytes
        ):
            # The digest is filled in by whoever hashed the chunk's bytes (_close_chunk).
            chunk = Chunk(self._c_rows_in, self._c_rows, self._c_bytes, None, self._c_last)
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


class Busy(Exception):
    """The resume temp belongs to another attempt that may be alive."""


class _Local(PartWriter):
    """A resumable temp file beside the final name, renamed into place at the commit."""

    backend = "local"
    background = True

    def __init__(
        self, url: str, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        super().__init__(url, ckpt_url, key, every)
        storage.check_destination(url, "output")
        self._path = storage.local_path(url)
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
        chunks = _chunks_of(rec) if rec is not None else None
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
                data = self._file.read(min(_READ, left))
                if not data:
                    break
                whole.update(data)
                left -= len(data)
            if left or whole.copy().hexdigest() != chunk.prefix_sha256:
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


class _S3(PartWriter):
    """A multipart upload to the final key, one part per chunk, resumed by upload id."""

    backend = "s3"
    min_chunk_bytes = S3_MIN_PART_BYTES

    def __init__(
        self, url: str, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        import tempfile  # deferred: only buckets spool

        super().__init__(url, ckpt_url, key, every)
        self._fs, path = storage.fs_of(url)
        self._bucket, _, self._key = path.partition("/")
        self.upload_id: str | None = None
        self._committed = False
        storage.remove_stale_temps(url)  # uploads of this key untouched for the lease
        old = read_checkpoint(ckpt_url)
        if old is not None and old.get("backend") == self.backend:
            if not fresh and old.get("key") == self.key:
                self._resume(old)
            elif old.get("upload_id"):
                # --force, or another generation/processor: that work is never resumed.
                self._abort(str(old["upload_id"]))
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="workers-chunk-")  # noqa: SIM115

    def _call(self, method: str, **kw: Any) -> Any:
        return self._fs.call_s3(method, Bucket=self._bucket, Key=self._key, **kw)

    def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self._call("abort_multipart_upload", UploadId=upload_id)

    def _resume(self, rec: dict[str, Any]) -> None:
        chunks = _chunks_of(rec)
        upload_id = rec.get("upload_id")
        if not chunks or not isinstance(upload_id, str):
            return
        try:
            parts = self._list_parts(upload_id)
        except FileNotFoundError:
            return  # completed or aborted since (e.g. swept after the lease): start again
        self.upload_id = upload_id
        for n, chunk in enumerate(chunks, 1):
            if parts.get(n) != (chunk.etag, chunk.bytes):
                break
            self.chunks.append(chunk)
        self._resumed = len(self.chunks)
        self.bytes = sum(c.bytes for c in self.chunks)
        if self.chunks:
            self.mode = "resumed"
            self._whole = None  # the uploaded parts cannot be read back before completion

    def _list_parts(self, upload_id: str) -> dict[int, tuple[str, int]]:
        out: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            res = self._call("list_parts", UploadId=upload_id, PartNumberMarker=marker)
            for p in res.get("Parts", []):
                out[int(p["PartNumber"])] = (str(p["ETag"]), int(p["Size"]))
            marker = int(res.get("NextPartNumberMarker") or 0)
            if not res.get("IsTruncated") or not marker:
                return out

    def _sink(self, data: bytes) -> None:
        self._spool.write(data)

    def _take_spool(self) -> bytes:
        self._spool.seek(0)
        data = self._spool.read()
        self._spool.seek(0)
        self._spool.truncate()
        return data

    def _upload(self, number: int, body: bytes) -> str:
        if number > S3_MAX_PARTS:
            raise UsageError(
                f"{self.url} would need more than {S3_MAX_PARTS} S3 parts: "
                "raise --checkpoint-rows or use smaller shards"
            )
        if self.upload_id is None:
            self.upload_id = str(self._call("create_multipart_upload")["UploadId"])
        try:
            res = self._call("upload_part", UploadId=self.upload_id, PartNumber=number, Body=body)
        except FileNotFoundError:
            raise self._gone() from None
        return str(res["ETag"])

    def _gone(self) -> TransientError:
        return TransientError(
            f"the upload of {self.url} was completed or aborted by another attempt of this "
            "shard while this one wrote it: a retry finds that attempt's commit or resumes"
        )

    def _persist(self, chunk: Chunk) -> Chunk:
        etag = self._upload(len(self.chunks) + 1, self._take_spool())
        return dataclasses.replace(chunk, etag=etag)

    def _checkpoint_fields(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id}

    def commit(self) -> None:
        if self.upload_id is None:
            # One chunk: a single request, nothing to resume.
            self._fs.pipe_file(f"{self._bucket}/{self._key}", self._take_spool())
            self._sha256 = self._whole.hexdigest()
            self._committed = True
            return
        parts = [{"PartNumber": n, "ETag": c.etag} for n, c in enumerate(self.chunks, 1)]
        if self._c_bytes or not parts:
            n = len(parts) + 1
            parts.append({"PartNumber": n, "ETag": self._upload(n, self._take_spool())})
        try:
            self._call(
                "complete_multipart_upload",
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        except FileNotFoundError:
            raise self._gone() from None
        self._committed = True
        if self._whole is not None:
            self._sha256 = self._whole.hexdigest()
        else:
            self._sha256 = self._read_back()

    def _read_back(self) -> str:
        """The published object's sha256, read in ranges, each chunk with a digest verified again."""
        fs, path = self._fs, f"{self._bucket}/{self._key}"
        whole, offset = hashlib.sha256(), 0
        for chunk in self.chunks:
            for start in range(offset, offset + chunk.bytes, 8 * _READ):
                data = fs.cat_file(
                    path, start=start, end=min(start + 8 * _READ, offset + chunk.bytes)
                )
                whole.update(data)
            if chunk.prefix_sha256 is not None and whole.copy().hexdigest() != chunk.prefix_sha256:
                raise failures.error(
                    "incomplete",
                    f"{self.url}: chunk at byte {offset} does not match its checkpoint after the "
                    "upload completed",
                )
            offset += chunk.bytes
        size = int(fs.info(path)["size"])
        for start in range(offset, size, 8 * _READ):
            whole.update(fs.cat_file(path, start=start, end=min(start + 8 * _READ, size)))
        if size != self.bytes:
            raise failures.error(
                "incomplete",
                f"{self.url} holds {size} bytes after the upload, expected {self.bytes}",
            )
        return whole.hexdigest()

    def forget(self) -> None:
        if self.upload_id is not None and not self._committed:
            self._abort(self.upload_id)
        super().forget()

    def close(self) -> None:
        self._spool.close()


GCS_MAX_SOURCES = 32
"""Objects one GCS compose request may join."""

GCS_MAX_COMPONENTS = 1024
"""GCS's limit on the objects a composite object is made of: a part has at most this many chunks."""


def _is_gcs(url: str) -> bool:
    return url.startswith(("gs://", "gcs://"))


class _GCS(PartWriter):
    """Each chunk its own object beside the part, composed into the part at the commit.

    The chunk objects are named ``.part-NNNNN.jsonl.chunk-ID-MMMMM`` in the parts folder:
    ``ID`` is drawn by the attempt that uploads the first chunk and kept in the checkpoint
    record, so a retry resumes the same set and an attempt of another key or a ``--force``
    one never mixes its chunks with them. A resume downloads the kept chunks and checks their
    sha256 (as a local resume reads its temp file). Only the chunk being written is spooled
    to local disk; the part appears in one compose (GCS joins at most 32 objects a request:
    more are joined into a hidden object first, and the final compose publishes).
    """

    backend = "gcs"

    def __init__(
        self, url: str, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        import tempfile  # deferred: only buckets spool

        super().__init__(url, ckpt_url, key, every)
        self._fs, self._path = storage.fs_of(url)
        self.upload_id: str | None = None
        self._committed = False
        old = read_checkpoint(ckpt_url)
        if old is not None and old.get("backend") == self.backend:
            if not fresh and old.get("key") == self.key:
                self._resume(old)
            elif isinstance(old.get("upload_id"), str):
                # --force, or another generation/processor: that work is never resumed.
                _gcs_remove_chunks(self._fs, self._path, str(old["upload_id"]))
        _gcs_remove_stale_chunks(self._fs, self._path, keep=self.upload_id)
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="workers-chunk-")  # noqa: SIM115

    def _chunk(self, n: int, upload_id: str | None = None) -> str:
        return _gcs_chunk_prefix(self._path, upload_id or self.upload_id or "") + f"{n:05d}"

    def _resume(self, rec: dict[str, Any]) -> None:
        chunks = _chunks_of(rec)
        upload_id = rec.get("upload_id")
        if not chunks or not isinstance(upload_id, str):
            return
        whole = hashlib.sha256()
        for n, chunk in enumerate(chunks, 1):
            before = whole.copy()
            size = 0
            try:
                f = self._fs.open(
                    self._chunk(n, upload_id), "rb", block_size=8 * _READ, cache_type="readahead"
                )
                with f:
                    while data := f.read(8 * _READ):
                        whole.update(data)
                        size += len(data)
            except FileNotFoundError:
                whole = before
                break
            if size != chunk.bytes or whole.copy().hexdigest() != chunk.prefix_sha256:
                whole = before
                break
            self.chunks.append(chunk)
        if not self.chunks:
            _gcs_remove_chunks(self._fs, self._path, upload_id)
            return
        self.upload_id = upload_id
        self._whole, self._resumed = whole, len(self.chunks)
        self.bytes = sum(c.bytes for c in self.chunks)
        self.mode = "resumed"
        if len(self.chunks) < len(chunks):
            self._save_checkpoint()  # the record never vouches for more than the bucket holds

    def _sink(self, data: bytes) -> None:
        self._spool.write(data)

    def _take_spool(self) -> bytes:
        self._spool.seek(0)
        data = self._spool.read()
        self._spool.seek(0)
        self._spool.truncate()
        return data

    def _upload(self, n: int) -> str:
        if n > GCS_MAX_COMPONENTS:
            raise UsageError(
                f"{self.url} would need more than {GCS_MAX_COMPONENTS} GCS chunks: "
                "raise --checkpoint-rows or use smaller shards"
            )
        if self.upload_id is None:
            self.upload_id = os.urandom(8).hex()
        path = self._chunk(n)
        self._fs.pipe_file(path, self._take_spool())
        return path

    def _persist(self, chunk: Chunk) -> Chunk:
        self._upload(len(self.chunks) + 1)
        return chunk

    def _checkpoint_fields(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id}

    def commit(self) -> None:
        if self.upload_id is None:
            # One chunk: a single request, nothing to resume.
            self._fs.pipe_file(self._path, self._take_spool())
        else:
            sources = [self._chunk(n) for n in range(1, len(self.chunks) + 1)]
            if self._c_bytes or not sources:
                sources.append(self._upload(len(sources) + 1))
            step = 0
            while len(sources) > GCS_MAX_SOURCES:
                step += 1
                joined = _gcs_chunk_prefix(self._path, self.upload_id) + f"joined-{step:05d}"
                self._fs.merge(joined, sources[:GCS_MAX_SOURCES])
                sources = [joined, *sources[GCS_MAX_SOURCES:]]
            self._fs.merge(self._path, sources)
        self._committed = True
        self._sha256 = self._whole.hexdigest()

    def discard_checkpoint(self) -> None:
        # The chunks first: a record left behind still names them for the next sweep.
        if self.upload_id is not None:
            _gcs_remove_chunks(self._fs, self._path, self.upload_id)
        super().discard_checkpoint()

    def forget(self) -> None:
        super().forget()
        if self.upload_id is not None and not self._committed:
            _gcs_remove_chunks(self._fs, self._path, self.upload_id)

    def close(self) -> None:
        self._spool.close()


def _gcs_chunk_prefix(path: str, upload_id: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.chunk-{upload_id}-" if upload_id else f"{folder}/.{name}.chunk-"


def _gcs_chunk_sets(fs: Any, path: str) -> dict[str, float]:
    """The chunk sets of the part at ``path``: upload id -> when its newest object was written."""
    folder, _, name = path.rpartition("/")
    prefix = f".{name}.chunk-"
    try:
        found = fs.find(folder, prefix=prefix, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    sets: dict[str, float] = {}
    for obj_name, info in found.items():
        upload_id = obj_name.rpartition("/")[2][len(prefix) :].partition("-")[0]
        touched = _timestamp(info.get("updated") or info.get("timeCreated"))
        sets[upload_id] = max(sets.get(upload_id, 0.0), touched)
    return sets


def _timestamp(value: Any) -> float:
    import datetime

    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return time.time()  # unknown: treat it as fresh, never as abandoned


def _gcs_remove_chunks(fs: Any, path: str, upload_id: str) -> None:
    folder, _, name = path.rpartition("/")
    prefix = f".{name}.chunk-{upload_id}-"
    with contextlib.suppress(FileNotFoundError, OSError):
        names = list(fs.find(folder, prefix=prefix))
        if names:
            fs.rm(names)


def _gcs_remove_stale_chunks(fs: Any, path: str, keep: str | None) -> None:
    """Remove the chunk sets of dead attempts (untouched for the lease), never ``keep``'s."""
    from workers.config import stale_after

    lease = stale_after()
    now = time.time()
    for upload_id, touched in _gcs_chunk_sets(fs, path).items():
        if upload_id != keep and now - touched > lease:
            _gcs_remove_chunks(fs, path, upload_id)


def sweep(url: str, ckpt_url: str) -> None:
    """For a part already committed: remove what dead attempts left to resume it (a resume
    temp nobody holds, and then its checkpoint record), never a live attempt's."""
    if url.startswith(("s3://", "s3a://")):
        # A live attempt's upload stays (remove_stale_temps aborts it once past the lease);
        # a record naming an upload that no longer exists has nothing left to resume.
        rec = read_checkpoint(ckpt_url)
        if rec is not None and isinstance(rec.get("upload_id"), str):
            fs, path = storage.fs_of(url)
            bucket, _, key = path.partition("/")
            try:
                fs.call_s3("list_parts", Bucket=bucket, Key=key, UploadId=rec["upload_id"])
            except FileNotFoundError:
                with contextlib.suppress(OSError, UsageError):
                    storage.remove(ckpt_url)
        return
    if _is_gcs(url):
        # As on S3: a live attempt's chunks stay (they are removed once past the lease); a
        # record naming chunks that no longer exist has nothing left to resume.
        fs, path = storage.fs_of(url)
        rec = read_checkpoint(ckpt_url)
        keep = rec.get("upload_id") if rec is not None else None
        _gcs_remove_stale_chunks(fs, path, keep=None)
        if isinstance(keep, str) and keep not in _gcs_chunk_sets(fs, path):
            with contextlib.suppress(OSError, UsageError):
                storage.remove(ckpt_url)
        return
    if not storage.is_local(url):
        return
    storage.remove_stale_temps(url)
    folder, name = os.path.split(storage.local_path(url))
    if not os.path.exists(os.path.join(folder, f".{name}.tmp-resume")):
        with contextlib.suppress(OSError, UsageError):
            storage.remove(ckpt_url)


def open_part(
    url: str, ckpt_url: str, key: dict[str, Any], every: int, *, fresh: bool
) -> PartWriter:
    """A writer for the part at ``url`` that checkpoints every ``every`` rows read and,
    unless ``fresh``, resumes from a checkpoint whose key equals ``key``."""
    if every and storage.is_local(url):
        try:
            return _Local(url, ckpt_url, key, every, fresh)
        except Busy:
            return _Plain(url, ckpt_url, key, "private")
    if every and url.startswith(("s3://", "s3a://")):
        return _S3(url, ckpt_url, key, every, fresh)
    if every and _is_gcs(url):
        return _GCS(url, ckpt_url, key, every, fresh)
    return _Plain(url, ckpt_url, key, "whole")
