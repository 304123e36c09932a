"""Storage chosen by URL: a local path (or ``file://``) uses the OS directly, anything else fsspec.

Every write a reader may see is atomic. Locally: a hidden temp file in the same
folder, fsync, ``os.replace``, fsync of the folder. On object stores: the data is
spooled to a local temp file and uploaded in one ``put_file``, and an object only
becomes visible when its upload completes. s3fs/gcsfs are imported by fsspec only
when a URL with their protocol is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import IO, Any

from workers import failures
from workers.errors import UsageError


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def join(base: str, *parts: str) -> str:
    """Join path parts under a base URL; parts come from code, never from user input."""
    for part in parts:
        if not part or part.startswith("/") or ".." in part.split("/"):
            raise UsageError(f"invalid storage path component {part!r}")
    return "/".join([base.rstrip("/"), *parts])


def _fs(url: str) -> tuple[Any, str]:
    import fsspec  # deferred: local runs never pay for it

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        err = failures.classify(exc)
        if failures.cause_of(err) == "missing-dependency":
            raise err from None
        raise UsageError(f"storage URL {url!r} is not usable: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"storage URL {url!r} is not usable: {exc}") from None


def read_bytes(url: str) -> bytes:
    """The whole object; callers bound memory by reading one part at a time."""
    if is_local(url):
        with open(local_path(url), "rb") as f:
            return f.read()
    fs, path = _fs(url)
    return bytes(fs.cat_file(path))


def write_bytes(url: str, data: bytes) -> None:
    """Atomically replace ``url`` with ``data``."""
    with AtomicWriter(url) as w:
        w.write(data)
        w.commit()


def glob(pattern: str) -> list[str]:
    """Matches in byte order (what a shell glob gives under LC_ALL=C): a deterministic order."""
    if is_local(pattern):
        import glob as _glob

        return sorted(_glob.glob(local_path(pattern)))
    fs, path = _fs(pattern)
    protocol = pattern.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in fs.glob(path))


def remove_stale_temps(url: str) -> int:
    """Remove what a killed writer left for ``url``: local temp files; on S3, the incomplete
    multipart upload of a part over s3fs's 100 MiB threshold (invisible, but stored and billed)."""
    if not is_local(url):
        return _abort_multipart_uploads(url) if url.startswith(("s3://", "s3a://")) else 0
    path = local_path(url)
    folder, name = os.path.split(path)
    prefix = f".{name}.tmp-"
    removed = 0
    try:
        entries = os.listdir(folder or ".")
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.startswith(prefix):
            try:
                os.unlink(os.path.join(folder, entry))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _abort_multipart_uploads(url: str) -> int:
    """Abort the incomplete S3 multipart uploads of exactly this key; best effort when the
    credentials may not list or abort them (a bucket lifecycle rule covers that case)."""
    fs, path = _fs(url)
    bucket, _, key = path.partition("/")
    removed = 0
    try:
        res = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        for upload in res.get("Uploads", []):
            if upload.get("Key") == key:
                fs.call_s3(
                    "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                )
                removed += 1
    except (ConnectionError, TimeoutError):
        raise
    except (OSError, NotImplementedError):
        pass  # not allowed or not supported by this S3-compatible server
    return removed


class AtomicWriter:
    """Streams bytes to ``url``; nothing is visible under that name until :meth:`commit`.

    Tracks size and sha256 of what was written so a commit record can vouch for it
    (``checksum=False`` skips the hashing for writers nobody asks the digest of).
    Leaving the ``with`` block without committing discards everything.
    """

    def __init__(self, url: str, *, checksum: bool = True) -> None:
        self.url = url
        self.bytes = 0
        self._sha = hashlib.sha256() if checksum else None
        self._committed = False
        self._local = is_local(url)
        self._file: IO[bytes]
        if self._local:
            self._path = local_path(url)
            folder, name = os.path.split(self._path)
            os.makedirs(folder or ".", exist_ok=True)
            self._tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
            self._file = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        else:
            import tempfile  # deferred: only remote URLs spool

            self._file = tempfile.NamedTemporaryFile(prefix="workers-spool-", delete=False)  # noqa: SIM115
            self._tmp = self._file.name

    @property
    def sha256(self) -> str:
        if self._sha is None:
            raise RuntimeError(f"AtomicWriter({self.url!r}) was made with checksum=False")
        return self._sha.hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        if self._sha is not None:
            self._sha.update(data)
        self.bytes += len(data) if not isinstance(data, memoryview) else data.nbytes

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._local:
            os.replace(self._tmp, self._path)
            _fsync_dir(os.path.dirname(self._path) or ".")
        else:
            fs, path = _fs(self.url)
            parent = path.rsplit("/", 1)[0]
            if parent and parent != path:
                # Buckets have no folders; creating one may be refused, and that is fine.
                with contextlib.suppress(OSError, NotImplementedError):
                    fs.makedirs(parent, exist_ok=True)
            fs.put_file(self._tmp, path)
            os.unlink(self._tmp)
        self._committed = True

    def abort(self) -> None:
        if self._committed:
            return
        try:
            self._file.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_local_or_url_text(ref: str) -> str:
    """Read a small text input (count file, shard item) from a path or URL."""
    try:
        return read_bytes(ref).decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"file not found: {ref}") from None
    except IsADirectoryError:
        raise UsageError(f"is a folder, not a file: {ref}") from None
    except UnicodeDecodeError:
        raise UsageError(f"not UTF-8 text: {ref}") from None
