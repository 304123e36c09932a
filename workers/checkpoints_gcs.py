"""GCS checkpoints: each chunk is its own object beside the part, composed into it at the commit.

GCS has no multipart upload to resume. The chunk objects are named by an id kept in the
checkpoint record (see :mod:`workers.checkpoints`); a retry downloads the kept chunks, checks
their digests and goes on. Only the chunk being written is spooled to local disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from typing import Any

from workers import storage
from workers.checkpoints import READ_BYTES, Chunk, SpooledPart, chunks_of, read_checkpoint
from workers.errors import UsageError

GCS_MAX_SOURCES = 32
"""Objects one GCS compose request may join."""

GCS_MAX_COMPONENTS = 1024
"""GCS's limit on the objects a composite object is made of: a part has at most this many chunks."""


class GCSPart(SpooledPart):
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
        self, part: storage.Store, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        super().__init__(part.url, ckpt_url, key, every)
        self._fs, self._path = part.fs()
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
        self._open_spool()

    def _chunk(self, n: int, upload_id: str | None = None) -> str:
        return _gcs_chunk_prefix(self._path, upload_id or self.upload_id or "") + f"{n:05d}"

    def _resume(self, rec: dict[str, Any]) -> None:
        chunks = chunks_of(rec)
        upload_id = rec.get("upload_id")
        if not chunks or not isinstance(upload_id, str):
            return
        whole = hashlib.sha256()
        for n, chunk in enumerate(chunks, 1):
            before = whole.copy()
            size = 0
            try:
                f = self._fs.open(
                    self._chunk(n, upload_id),
                    "rb",
                    block_size=8 * READ_BYTES,
                    cache_type="readahead",
                )
                with f:
                    while data := f.read(8 * READ_BYTES):
                        whole.update(data)
                        size += len(data)
            except FileNotFoundError:
                whole = before
                break
            if size != chunk.bytes or not chunk.matches(whole):
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


def sweep(part: storage.Store, ckpt_url: str) -> None:
    """For a committed part: remove dead attempts' chunks, and a record naming chunks now gone."""
    # As on S3: a live attempt's chunks stay (they are removed once past the lease); a
    # record naming chunks that no longer exist has nothing left to resume.
    fs, path = part.fs()
    rec = read_checkpoint(ckpt_url)
    keep = rec.get("upload_id") if rec is not None else None
    _gcs_remove_stale_chunks(fs, path, keep=None)
    if isinstance(keep, str) and keep not in _gcs_chunk_sets(fs, path):
        with contextlib.suppress(OSError, UsageError):
            storage.remove(ckpt_url)
