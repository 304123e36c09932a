"""Storage chosen by URL: a local path (or ``file://``) uses the OS directly, anything else fsspec.

Every write a reader may see is atomic. Locally: a hidden temp file in the same
folder, fsync, ``os.replace``, fsync of the folder. On object stores: the data is
spooled to a local temp file and uploaded in one ``put_file``, and an object only
becomes visible when its upload completes. s3fs/gcsfs are imported by fsspec only
when a URL with their protocol is used.

Every writer first sweeps what dead attempts left for its name (temp files,
S3 multipart uploads), never what a live attempt is writing. Inputs are read
only from regular files, small ones with a size bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import stat
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from workers import failures
from workers.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


_BACKENDS = {"file": "local", "s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}
_VERSION_FIELDS = {"s3": ("ETag", "etag"), "gs": ("generation", "etag", "md5Hash")}
"""URL schemes a store may use, and the backend each means: one table, checked once."""


def _scheme(url: str) -> str | None:
    """The scheme of ``url`` (lower case), or None for a plain path."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else None


def backend_of(url: str) -> str | None:
    """``local``, ``s3`` or ``gs`` for a URL a store may use; None for any other scheme.

    This module's own: everywhere else a URL is resolved once (:func:`resolve`) and its
    :class:`Store` asked; a test keeps scheme tests out of every other module."""
    scheme = _scheme(url)
    return "local" if scheme is None else _BACKENDS.get(scheme)


def is_url(value: str) -> bool:
    """Whether ``value`` is a URL (any scheme, ``file://`` included) rather than a plain path."""
    return _scheme(value) is not None


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def join(base: Store | str, *parts: str) -> str:
    """Join path parts under a base URL (or store); parts come from code, never from user input."""
    for part in parts:
        if not part or part.startswith("/") or ".." in part.split("/"):
            raise UsageError(f"invalid storage path component {part!r}")
    return "/".join([str(base).rstrip("/"), *parts])


class Store:
    """A store URL resolved once (as fsspec's ``url_to_fs`` does): which backend holds it,
    and where in it. Only a local path (or ``file://``), ``s3://`` and ``gs://`` are stores;
    :func:`resolve` refuses anything else with one line naming the URL."""

    def __init__(self, url: str, backend: str, path: str) -> None:
        self.url = url
        self.backend = backend
        self.path = path

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Store) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def is_local(self) -> bool:
        return self.backend == "local"

    @property
    def local_path(self) -> str:
        """Where a local store is on this machine (a UsageError for a bucket: only a step that
        works on local files alone asks)."""
        if not self.is_local:
            raise UsageError(f"{self.url} is not a local folder")
        return self.path

    @property
    def version_fields(self) -> tuple[str, ...]:
        """The fields of an object's listing that name its version, first found wins: S3's
        ETag, GCS's generation (its etag or md5Hash where a listing lacks it); none locally."""
        return _VERSION_FIELDS.get(self.backend, ())

    @property
    def bucket(self) -> str:
        """The bucket of an object store ('' locally)."""
        return "" if self.is_local else self.path.split("/", 1)[0]

    def join(self, *parts: str) -> Store:
        """A location inside this store: the same backend, never resolved again."""
        url = join(self.url, *parts)
        return Store(url, self.backend, join(self.path, *parts))

    def fs(self) -> tuple[Any, str]:
        """The fsspec filesystem of a bucket store and the path inside it."""
        return _fs(self.url)

    def check(self) -> None:
        """Refuse, before any work, a store no step can use: its filesystem does not load,
        or its endpoint's host name does not resolve (one bounded look-up, not the minutes of
        retries gcsfs and botocore spend on a name that will never resolve)."""
        if self.is_local:
            return
        _fs(self.url)
        _check_endpoint(self)

    def probe_bucket(self) -> BaseException | None:
        """What the store answers about its bucket: None when a request to it succeeds, else
        the exception of the most telling request (see :func:`failures.classify`, which
        decides what it means). S3 answers 403 to a HeadBucket (or any read) of a missing
        bucket when the role may not list it; a one-byte GetObject then still tells
        NoSuchBucket from NoSuchKey."""
        if self.backend != "s3":
            return None
        try:
            fs, path = self.fs()
        except Exception as exc:  # the answer is what is asked for
            return exc
        bucket, _, key = path.partition("/")
        answer: BaseException | None = None
        for op, kw in (
            ("head_bucket", {}),
            ("get_object", {"Key": key or ".workers-probe", "Range": "bytes=0-0"}),
        ):
            try:
                fs.call_s3(op, Bucket=bucket, **kw)
                return None
            except Exception as exc:  # only its answer matters
                answer = exc
                if not _is_forbidden(exc):
                    return exc
        return answer


def _is_forbidden(exc: BaseException) -> bool:
    return isinstance(exc, PermissionError) or "403" in str(
        (getattr(exc.__cause__, "response", None) or {}).get("ResponseMetadata", {})
    )


def resolve(url: str, what: str = "store") -> Store:
    """``url`` as a :class:`Store`; a UsageError naming it when no backend holds it."""
    if not isinstance(url, str) or not url:
        raise UsageError(f"{what} must be a local path, file://, s3:// or gs:// URL")
    scheme = _scheme(url)
    if scheme is None:
        return Store(url, "local", url)
    if scheme == "memory":
        # Each pod would get its own empty store, and it vanishes when the step exits.
        raise UsageError(
            f"{what} {url!r} is an in-process memory filesystem that dies with the step: "
            "use a folder all pods share or a bucket"
        )
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise UsageError(
            f"{what} {url!r} has the unknown scheme {scheme}://: a store is a local path, "
            "file://, s3:// or gs://"
        )
    path = url.split("://", 1)[1]
    if backend == "local":
        return Store(url, backend, path)
    if not path.split("/", 1)[0]:
        raise UsageError(f"{what} {url!r} names no bucket")
    return Store(url, backend, path)


def _endpoint(store: Store) -> tuple[str, int] | None:
    """The host and port a bucket store's requests go to, as its client would choose."""
    from urllib.parse import urlsplit

    conf = _fsspec_conf("s3" if store.backend == "s3" else "gcs")
    if store.backend == "s3":
        candidates = [
            (conf.get("client_kwargs") or {}).get("endpoint_url"),
            conf.get("endpoint_url"),
            os.environ.get("AWS_ENDPOINT_URL_S3"),
            os.environ.get("AWS_ENDPOINT_URL"),
            "https://s3.amazonaws.com",
        ]
    else:
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        candidates = [
            conf.get("endpoint_url"),
            emulator if emulator and "://" in emulator else None,
            f"http://{emulator}" if emulator else None,
            "https://storage.googleapis.com",
        ]
    url = next(c for c in candidates if c)
    parts = urlsplit(str(url))
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _check_endpoint(store: Store, timeout: float = 10.0) -> None:
    """Resolve the store's endpoint once, bounded: a name that does not exist is the store's
    fault (exit 2, naming it), never the database's; through a proxy the proxy resolves."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    endpoint = _endpoint(store)
    if endpoint is None:
        return
    import concurrent.futures
    import socket

    host, port = endpoint
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout)
        # One bounded connect: a refused or silent endpoint is a transient fault now, not
        # after the clients' minute of retries with backoff.
        socket.create_connection((host, port), timeout=timeout).close()
    except concurrent.futures.TimeoutError:
        raise failures.error(
            "unreachable", f"store {store.url}: {host}:{port} did not answer in {timeout:g}s"
        ) from None
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise failures.error(
                "unreachable", f"store {store.url}: cannot resolve {host} now ({exc.strerror})"
            ) from None
        raise failures.error(
            "store-invalid",
            f"store {store.url}: its endpoint's host {host} does not resolve ({exc.strerror})",
        ) from None
    except OSError as exc:
        raise failures.error(
            "unreachable", f"store {store.url}: cannot connect to {host}:{port} ({exc})"
        ) from None
    finally:
        pool.shutdown(wait=False)


def _tags_store(func: F) -> F:
    """Tags what escapes ``func(url, ...)`` with the store ``url`` is in (see :func:`tagged`)."""

    @functools.wraps(func)
    def wrapper(url: str, *args: Any, **kwargs: Any) -> Any:
        if is_local(url):
            return func(url, *args, **kwargs)
        with tagged(resolve(url)):
            return func(url, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def tagged(store: Store) -> contextlib.AbstractContextManager[None]:
    """Marks an exception escaping a request to ``store`` with it, so that
    :func:`failures.classify` can name the store and ask about its bucket."""
    return _Tag(store)


class _Tag(contextlib.AbstractContextManager[None]):
    def __init__(self, store: Store) -> None:
        self.store = store

    def __exit__(self, typ: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None and not self.store.is_local and not hasattr(exc, "workers_store"):
            with contextlib.suppress(AttributeError):
                exc.workers_store = self.store  # type: ignore[attr-defined]


def _fs(url: str) -> tuple[Any, str]:
    import fsspec  # deferred: local runs never pay for it

    if resolve(url).backend == "gs":  # the scheme is one of ours: fsspec would take ftp://
        _bound_metadata_lookup()
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        err = failures.classify(exc)
        if failures.cause_of(err) == "missing-dependency":
            raise err from None
        raise UsageError(f"storage URL {url!r} is not usable: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"storage URL {url!r} is not usable: {exc}") from None
    return fs, path


@functools.cache
def _bound_metadata_lookup(timeout: float = 1.0) -> None:
    """Without configured credentials, gcsfs asks the GCE metadata server for them, and
    where nothing answers at its address (outside Google Cloud) google.auth retries for
    minutes. One bounded connect decides: if the server does not answer, the lookup is
    skipped for this process (NO_GCE_CHECK, which google.auth and gcsfs both read), and a
    bucket that needs credentials says so in seconds."""
    configured = ("NO_GCE_CHECK", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")
    if any(os.environ.get(v) for v in configured) or "token" in _fsspec_conf("gcs"):
        return
    import urllib.request

    # As google.auth's own ping: a metadata server answers with this header; a proxy or a
    # firewall answering in its place does not.
    host = os.environ.get("GCE_METADATA_IP") or "169.254.169.254"
    request = urllib.request.Request(f"http://{host}/", headers={"Metadata-Flavor": "Google"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            flavor = answer.headers.get("Metadata-Flavor")
    except OSError as exc:
        flavor = getattr(exc, "headers", None) and exc.headers.get("Metadata-Flavor")  # type: ignore[attr-defined]
    if flavor != "Google":
        os.environ["NO_GCE_CHECK"] = "true"


def _fsspec_conf(protocol: str) -> dict[str, Any]:
    import fsspec.config

    return dict(fsspec.config.conf.get(protocol, {}))


def fs_of(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of a remote URL and the path inside it (errors as one line)."""
    return _fs(url)


@_tags_store
def read_bytes(url: str, what: str = "file") -> bytes:
    """The whole object; callers bound memory by reading one part at a time.

    A local name must be a regular file: a FIFO, device or folder is refused
    (a UsageError) before it is opened, so a read never blocks or runs forever.
    """
    if is_local(url):
        fd = _open_regular(local_path(url), what)
        with os.fdopen(fd, "rb") as f:
            return f.read()
    fs, path = _fs(url)
    return bytes(fs.cat_file(path))


@_tags_store
def read_small(url: str, limit: int, what: str) -> bytes:
    """A small input (count file, shard item, plan, commit record), refused over ``limit`` bytes.

    Never reads more than ``limit + 1`` bytes, whatever the name holds. A missing
    file raises FileNotFoundError (what that means is the caller's to say);
    anything else wrong with it is a one-line UsageError naming ``what``.
    """
    if is_local(url):
        fd = _open_regular(local_path(url), what)
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    else:
        fs, path = _fs(url)
        info = fs.info(path)
        if info.get("type") == "directory":
            raise UsageError(f"{what} {url} is a folder, not a regular file")
        size = info.get("size")
        if isinstance(size, int) and size > limit:
            raise UsageError(f"{what} {url} is {size} bytes, over the {limit}-byte limit")
        data = bytes(fs.cat_file(path, start=0, end=limit + 1))
    if len(data) > limit:
        raise UsageError(f"{what} {url} is over the {limit}-byte limit")
    return data


@_tags_store
def open_input(
    url: str, what: str = "file", block_size: int = 4 << 20
) -> tuple[io.RawIOBase | io.BufferedIOBase, int]:
    """A binary stream of ``url`` for reading in bounded chunks, and its size in bytes.

    Locally a raw (unbuffered) file of a regular file, as :func:`read_bytes` checks
    it; elsewhere an fsspec file whose ranged reads and read-ahead cache are bounded
    by ``block_size``, so no object is ever held whole. A missing name raises
    FileNotFoundError.
    """
    if is_local(url):
        fd = _open_regular(local_path(url), what)
        size = os.fstat(fd).st_size
        return os.fdopen(fd, "rb", buffering=0), size
    fs, path = _fs(url)
    f = fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    return f, int(f.size)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _require_regular(st: os.stat_result, name: str, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise failures.error(
            "store-invalid", f"{what} {name} is a {_kind(st.st_mode)}, not a regular file"
        )


def _open_regular(path: str, what: str) -> int:
    """A read-only descriptor of ``path``, which must be a regular file.

    stat first: opening a FIFO for reading would block until a writer came. The
    descriptor is checked again, in case the name was swapped after the stat
    (O_NONBLOCK keeps even that open from blocking).
    """
    _require_regular(os.stat(path), path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(fd), path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_destination(url: str, what: str) -> None:
    """Refuse, before any work, a file destination no step may write.

    Locally: an existing name that is not a regular file (a device, FIFO or
    folder: the atomic rename would replace it). Elsewhere: a URL whose
    filesystem is not usable or lives only in this process.
    """
    if not is_local(url):
        check_store(url, what)
        return
    path = local_path(url)
    try:
        _require_regular(os.stat(path), url, what)
        return
    except (FileNotFoundError, NotADirectoryError):
        pass  # a new file: its folders must be folders or not exist yet
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            st = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(folder)
            if parent == folder:
                return
            folder = parent
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {url} cannot be written: {folder} is not a folder")
        return


def check_store(url: str, what: str = "store") -> Store:
    """Refuse, before any work, a store URL whose filesystem is not usable or not shared, or
    whose endpoint does not resolve (see :meth:`Store.check`); the store, resolved."""
    store = resolve(url, what)
    with tagged(store):
        store.check()
    return store


def write_bytes(url: str, data: bytes) -> None:
    """Atomically replace ``url`` with ``data``."""
    with AtomicWriter(url) as w:
        w.write(data)
        w.commit()


@_tags_store
def glob(pattern: str) -> list[str]:
    """Matches in byte order (what a shell glob gives under LC_ALL=C): a deterministic order."""
    if is_local(pattern):
        import glob as _glob

        return sorted(_glob.glob(local_path(pattern)))
    fs, path = _fs(pattern)
    protocol = pattern.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in fs.glob(path))


@_tags_store
def remove(url: str) -> bool:
    """Delete ``url`` if it exists; True when something was deleted."""
    if is_local(url):
        try:
            os.unlink(local_path(url))
        except FileNotFoundError:
            return False
        return True
    fs, path = _fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    return True


# Filesystems whose locks are kept by the kernel of this host: there, a temp file nobody holds
# a lock on belongs to a dead writer.
_LOCAL_FILESYSTEMS = frozenset(
    {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "tmpfs",
        "ramfs",
        "overlay",
        "zfs",
        "f2fs",
        "jfs",
        "reiserfs",
        "bcachefs",
        "vfat",
        "exfat",
    }
)


def lock_scope_is_shared(fstype: str, options: str) -> bool:
    """Whether a lock on this filesystem is seen by every writer that may share the folder.

    True for local filesystems (one kernel), CephFS (the MDS arbitrates flock between
    clients) and NFS v4 without ``local_lock`` (the server keeps the locks, and frees a
    dead client's when its lease expires). Anything else (NFS v3, whose locks depend on
    lockd and ``nolock``, SMB, FUSE, unknown types) is not trusted: there only the
    lease tells a dead writer from one on another node.
    """
    if fstype in _LOCAL_FILESYSTEMS or fstype == "ceph":
        return True
    if fstype in ("nfs", "nfs4"):
        opts = dict(o.partition("=")[::2] for o in options.split(","))
        return opts.get("vers", "").startswith("4") and opts.get("local_lock", "none") == "none"
    return False


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, options) of this process's mounts, longest point first."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []  # not Linux: no mount table, so no lock is trusted to prove a writer dead
    out = []
    for line in lines:
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = fields[4].encode().decode("unicode_escape")  # octal escapes such as \040
        out.append((point, tail[0], tail[2] if len(tail) > 2 else ""))
    return sorted(out, key=lambda m: len(m[0]), reverse=True)


def locks_prove_liveness(folder: str) -> bool:
    """True when every writer that may share ``folder`` sees the flock() of every other one."""
    real = os.path.realpath(folder or ".")
    for point, fstype, options in _mounts():
        if real == point or real.startswith(point.rstrip("/") + "/"):
            return lock_scope_is_shared(fstype, options)
    return False


def remove_stale_temps(
    url: str, stale_after: float | None = None, *, trust_locks: bool | None = None
) -> int:
    """Remove what dead writers left for ``url``, never what a live one is writing.

    Locally a temp file is removed when no process holds its lock and, unless the
    lock is known to be this host's (see :func:`locks_prove_liveness`), it is also
    untouched for longer than the lease (``WORKERS_STALE_AFTER``, default 1 h):
    a writer on another node of a network filesystem may hold a lock we cannot
    see (``trust_locks`` overrides the detection). On S3, an incomplete multipart upload of exactly this key (invisible,
    but stored and billed) is aborted once its last part is older than the lease.
    """
    if stale_after is None:
        from workers.config import stale_after as configured

        stale_after = configured()
    if not is_local(url):
        if backend_of(url) == "s3":
            return _abort_stale_multipart_uploads(url, stale_after)
        return 0
    folder, name = os.path.split(local_path(url))
    prefix = f".{name}.tmp-"
    try:
        temps = [e for e in os.listdir(folder or ".") if e.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if not temps:
        return 0
    if trust_locks is None:
        trust_locks = locks_prove_liveness(folder)
    now = time.time()
    return sum(
        _remove_if_stale(os.path.join(folder, e), stale_after, trust_locks, now) for e in temps
    )


def _remove_if_stale(path: str, stale_after: float, trust_locks: bool, now: float) -> bool:
    try:
        # Read-write: a network filesystem may grant an exclusive lock only to a writer.
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone already, or a symlink/something we may not touch: not a temp of ours
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            unlocked = True
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError:
            unlocked = False  # this filesystem has no locks: only the lease can tell
        if not (unlocked and trust_locks) and now - st.st_mtime <= stale_after:
            return False
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            return False
        if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
            return False  # the name now points elsewhere: leave it
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            return True
        return False
    finally:
        os.close(fd)


@_tags_store
def _abort_stale_multipart_uploads(url: str, stale_after: float) -> int:
    """Abort the incomplete S3 multipart uploads of exactly this key whose newest part (or, with
    none, whose start) is older than the lease; best effort when the credentials may not list or
    abort them (a bucket lifecycle rule covers that case)."""
    fs, path = _fs(url)
    bucket, _, key = path.partition("/")
    removed = 0
    try:
        res = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        now = _server_time(res)
        for upload in res.get("Uploads", []):
            if upload.get("Key") != key:
                continue
            touched = _timestamp(upload.get("Initiated"))
            if now - touched <= stale_after:
                continue
            touched = max(touched, _newest_part(fs, bucket, key, upload["UploadId"]))
            if now - touched <= stale_after:
                continue  # started long ago, still adding parts: alive
            fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
            )
            removed += 1
    except (ConnectionError, TimeoutError):
        raise
    except (OSError, NotImplementedError):
        pass  # not allowed or not supported by this S3-compatible server
    return removed


def _server_time(response: dict[str, Any]) -> float:
    """The S3 server's clock from a response's Date header: ages are then measured on the
    same clock that stamped the upload, whatever this pod's clock says."""
    from email.utils import parsedate_to_datetime

    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        with contextlib.suppress(TypeError, ValueError):
            return parsedate_to_datetime(date).timestamp()
    return time.time()


def _timestamp(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return time.time()  # unknown: treat it as fresh, never as abandoned


def _newest_part(fs: Any, bucket: str, key: str, upload_id: str) -> float:
    newest = 0.0
    marker = 0
    while True:
        res = fs.call_s3(
            "list_parts", Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
        )
        for part in res.get("Parts", []):
            newest = max(newest, _timestamp(part.get("LastModified")))
        if not res.get("IsTruncated"):
            return newest
        marker = int(res.get("NextPartNumberMarker") or 0)
        if not marker:
            return newest


class AtomicWriter:
    """Streams bytes to ``url``; nothing is visible under that name until :meth:`commit`.

    Tracks the size of what was written; whoever needs a digest makes it (a shard's part
    writer, merge's :class:`splice.Output`), on the thread and in the order that suits it.
    Leaving the ``with`` block without committing discards everything.

    Locally the hidden temp file is flock()ed until it is renamed into place, so
    another attempt's sweep (:func:`remove_stale_temps`, run here before each
    write) can tell it from a dead attempt's. A name that is not a regular file is
    never replaced.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.bytes = 0
        self._committed = False
        self._local = is_local(url)
        self._file: IO[bytes]
        if self._local:
            self._path = local_path(url)
            check_destination(url, "output")
            remove_stale_temps(url)
            folder, name = os.path.split(self._path)
            os.makedirs(folder or ".", exist_ok=True)
            self._tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            # Held until the rename: proof of life for other attempts on this host (and on a
            # network filesystem that shares locks); where locks fail, the lease alone protects.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file = os.fdopen(fd, "wb")
        else:
            import tempfile  # deferred: only remote URLs spool

            if not url.startswith("spool://"):
                remove_stale_temps(url)
            self._file = tempfile.NamedTemporaryFile(prefix="workers-spool-", delete=False)  # noqa: SIM115
            self._tmp = self._file.name

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        self.bytes += len(data) if not isinstance(data, memoryview) else data.nbytes

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._local:
            check_destination(self.url, "output")  # it may have become a device meanwhile
            os.replace(self._tmp, self._path)
            self._committed = True  # from here on, abort must not unlink the (renamed) temp
            # Close (and unlock) only once the data is under its final name: a sweep that
            # took the lock in between would find the temp gone, never a live one.
            self._file.close()
            fsync_dir(os.path.dirname(self._path) or ".")
        else:
            self._file.close()
            # Buckets have no folders to make, and s3fs/gcsfs makedirs would create a missing
            # bucket (a typo'd name included): the upload meets NoSuchBucket instead.
            with tagged(resolve(self.url)):
                fs, path = _fs(self.url)
                fs.put_file(self._tmp, path)
            os.unlink(self._tmp)
        self._committed = True

    def abort(self) -> None:
        if self._committed:
            self._file.close()
            return
        try:
            # Unlink while still holding the lock, then close.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
        finally:
            self._file.close()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_text_input(ref: str, limit: int, what: str) -> str:
    """A small text input (count file, shard item) from a path or URL, bounded by ``limit`` bytes."""
    try:
        return read_small(ref, limit, what).decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {ref}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {ref} is not UTF-8 text") from None
