"""S3 checkpoints: a shard's part is one multipart upload to its final key, a part per chunk.

A chunk is at least :data:`S3_MIN_PART_BYTES`, S3's minimum part size, except the last. The
upload id and the parts' ETags are in the checkpoint record (see :mod:`workers.checkpoints`),
and a retry continues the same upload, keeping the parts S3 still lists with the recorded ETag
and size. Only the chunk being written is spooled to local disk. A part that never reaches a
second chunk is put in one request, as before checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from typing import Any

from workers import failures, storage
from workers.checkpoints import READ_BYTES, Chunk, SpooledPart, chunks_of, read_checkpoint
from workers.errors import TransientError, UsageError

S3_MIN_PART_BYTES = 5 << 20
"""S3 refuses multipart parts under 5 MiB except the last: a chunk on S3 is at least this."""

S3_MAX_PARTS = 10_000
"""S3's limit on parts per upload."""


class S3Part(SpooledPart):
    """A multipart upload to the final key, one part per chunk, resumed by upload id."""

    backend = "s3"
    min_chunk_bytes = S3_MIN_PART_BYTES

    def __init__(
        self, part: storage.Store, ckpt_url: str, key: dict[str, Any], every: int, fresh: bool
    ) -> None:
        url = part.url
        super().__init__(url, ckpt_url, key, every)
        self._fs, path = part.fs()
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
        self._open_spool()

    def _call(self, method: str, **kw: Any) -> Any:
        return self._fs.call_s3(method, Bucket=self._bucket, Key=self._key, **kw)

    def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self._call("abort_multipart_upload", UploadId=upload_id)

    def _resume(self, rec: dict[str, Any]) -> None:
        chunks = chunks_of(rec)
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
            for start in range(offset, offset + chunk.bytes, 8 * READ_BYTES):
                data = fs.cat_file(
                    path, start=start, end=min(start + 8 * READ_BYTES, offset + chunk.bytes)
                )
                whole.update(data)
            if chunk.prefix_sha256 is not None and not chunk.matches(whole):
                raise failures.error(
                    "incomplete",
                    f"{self.url}: chunk at byte {offset} does not match its checkpoint after the "
                    "upload completed",
                )
            offset += chunk.bytes
        size = int(fs.info(path)["size"])
        for start in range(offset, size, 8 * READ_BYTES):
            whole.update(fs.cat_file(path, start=start, end=min(start + 8 * READ_BYTES, size)))
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


def sweep(part: storage.Store, ckpt_url: str) -> None:
    """For a committed part: forget a checkpoint whose upload no longer exists."""
    # A live attempt's upload stays (remove_stale_temps aborts it once past the lease);
    # a record naming an upload that no longer exists has nothing left to resume.
    rec = read_checkpoint(ckpt_url)
    if rec is not None and isinstance(rec.get("upload_id"), str):
        fs, path = part.fs()
        bucket, _, key = path.partition("/")
        try:
            fs.call_s3("list_parts", Bucket=bucket, Key=key, UploadId=rec["upload_id"])
        except FileNotFoundError:
            with contextlib.suppress(OSError, UsageError):
                storage.remove(ckpt_url)
