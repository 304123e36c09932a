"""Failures: which exit code an exception means, and what the operator should do about it.

Every exception that ends a step goes through :func:`classify`, which returns a
:class:`~workers.errors.WorkersError` carrying one :class:`Cause` of :data:`CAUSES`.
A cause is *permanent* (exit 2: fix the configuration, retrying cannot help) or
*transient* (exit 75: the fault clears by itself, so Argo's ``retryStrategy`` retries).
docs/reference/exit-codes.md's table is checked against :data:`CAUSES` by a test.

Matching never imports psycopg, SQLAlchemy, botocore, aiohttp or gcsfs: exceptions are
recognised by their module, class name and attributes (``sqlstate``, ``response``,
``code``, ``errno``), so classifying costs nothing on the hot path.

Decisions worth knowing:

- PostgreSQL errors go by SQLSTATE. Connection failures carry none (libpq reports them
  as text), so those go by libpq's message; an unrecognised connect failure is treated
  as unreachable (75), because almost every libpq failure without a server answer is
  a network fault.
- "too many connections" (53300) is transient even for a role's ``CONNECTION LIMIT``:
  the limit is shared with the other pods of the fan-out and frees up as they finish.
- DNS: "Name or service not known" (NXDOMAIN: the name does not exist) is permanent;
  "Temporary failure in name resolution" (EAI_AGAIN: a DNS server did not answer, as
  during a CoreDNS restart) is transient.
- EIO is transient: on network file systems (NFS, FUSE mounts of buckets) it is how a
  lost server shows, and a retry usually lands on a healthy mount. A failing local
  disk costs only the bounded retries.
- MemoryError is permanent (2): the same input under the same memory limit fails the
  same way; the fix is a larger limit or a smaller ``--batch-size``. (A pod killed by
  the kernel's OOM killer never reaches Python: Argo sees exit 137.)
- An exception nothing here recognises is a bug in workers itself, not the user's code
  (3) and not the environment: :data:`~workers.exitcodes.INTERNAL` (70, EX_SOFTWARE).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workers import exitcodes
from workers.errors import (
    IncompleteError,
    InternalError,
    ProcessingError,
    TransientError,
    UsageError,
    WorkersError,
)


@dataclass(frozen=True)
class Cause:
    """One class of failure: its exit code, what it covers (its row in docs/reference/exit-codes.md), what to do."""

    name: str
    code: int
    covers: str
    fix: str = ""


_DB_URL = "WORKERS_DATABASE_URL"

Found = tuple[str, str]
"""A match: the name of a cause and the detail to show."""

CAUSES: dict[str, Cause] = {
    c.name: c
    for c in (
        Cause(
            "bad-input",
            exitcodes.USAGE,
            "invalid flags (abbreviations included), shard item, count file, run id, names, part "
            "files; an input over its size bound; a count that disagrees with produce's "
            "generation; a `memory://` store",
        ),
        Cause(
            "db-auth",
            exitcodes.USAGE,
            "database login rejected: wrong password, unknown role, no password supplied, "
            "no pg_hba.conf entry (SQLSTATE class 28)",
            f"fix the user and password in {_DB_URL} (or the Secret it comes from)",
        ),
        Cause(
            "db-unknown",
            exitcodes.USAGE,
            "unknown database, schema, table or column; SQL or data the table does not fit "
            "(3D000, 3F000, classes 0A, 22, 23, 42); SQLite file that cannot be opened",
            f"check {_DB_URL} and --table/--key-column/--run-column/--data-column",
        ),
        Cause(
            "column-type",
            exitcodes.USAGE,
            "a column whose type or value has no JSON mapping (see Column types): a range, "
            "geometric, network or composite type, a bytea array; a BOOLEAN column holding 2; "
            "text that is not JSON in a data column; for --processor, a date Python cannot hold",
            "read a view that casts the column (e.g. col::text), or leave it out with --data-column",
        ),
        Cause(
            "db-permission",
            exitcodes.USAGE,
            "permission denied on a table or schema (42501), read-only transaction (25006), "
            "read-only SQLite file",
            "grant the database role the privileges it needs, or use another role",
        ),
        Cause(
            "db-url",
            exitcodes.USAGE,
            "invalid database URL or option (sslmode, port, unknown parameter), SSL "
            "required but not offered, host name that does not exist",
            f"fix {_DB_URL}",
        ),
        Cause(
            "store-access",
            exitcodes.USAGE,
            "bucket credentials rejected or missing, or access denied (InvalidAccessKeyId, "
            "SignatureDoesNotMatch, ExpiredToken, AccessDenied, HTTP 401 and 403, no "
            "credentials found; locally EACCES, EPERM)",
            "fix the store credentials (AWS_* variables, service account) or grant them access",
        ),
        Cause(
            "store-missing",
            exitcodes.USAGE,
            "bucket, folder or file that does not exist (NoSuchBucket, HTTP 404, ENOENT, ENOTDIR; "
            "a 403 for a bucket that HeadBucket or GetObject then finds missing)",
            "create the bucket or folder, or fix the URL",
        ),
        Cause(
            "store-read-only",
            exitcodes.USAGE,
            "read-only file system (EROFS)",
            "mount the store read-write",
        ),
        Cause(
            "store-invalid",
            exitcodes.USAGE,
            "a request the store refuses: a folder, FIFO or device where a file belongs (EISDIR), "
            "a name too "
            "long, an invalid bucket name, another HTTP 4xx; a bucket endpoint whose host name "
            "does not exist",
            "fix the store URL or path",
        ),
        Cause(
            "out-of-memory",
            exitcodes.USAGE,
            "MemoryError: the step needs more memory than its limit",
            "raise the pod's memory limit (for shard, or lower --batch-size)",
        ),
        Cause(
            "missing-dependency",
            exitcodes.USAGE,
            "a driver that is not installed or does not import (psycopg, s3fs, gcsfs)",
        ),
        Cause(
            "user-code",
            exitcodes.PROCESSING,
            "your generator or processor raised, or returned values that are not JSON",
        ),
        Cause(
            "incomplete",
            exitcodes.INCOMPLETE,
            "the fan-in found missing, unverified or inconsistent shards, and wrote nothing",
        ),
        Cause(
            "stale",
            exitcodes.INCOMPLETE,
            "a part, or the rows a shard would read, from another produce generation or "
            "another processor than the plan pins (produce or a shard ran again)",
            "re-run split and the shards of this run",
        ),
        Cause(
            "internal",
            exitcodes.INTERNAL,
            "an exception workers does not expect: a bug in workers",
            "please report it with the output of WORKERS_DEBUG=1",
        ),
        Cause(
            "unreachable",
            exitcodes.TRANSIENT,
            "connection refused, reset, aborted or timed out; host or network unreachable; "
            "broken pipe; DNS temporarily failing; server closed the connection (class 08); "
            "EIO, EAGAIN, ESTALE",
        ),
        Cause(
            "server-shutdown",
            exitcodes.TRANSIENT,
            "database server shutting down, crashed, restarting or starting up "
            "(57P01, 57P02, 57P03)",
        ),
        Cause(
            "overloaded",
            exitcodes.TRANSIENT,
            "too many connections (53300), server out of resources (class 53), lock or "
            "statement timeout (55P03, 57014), serialization failure or deadlock (class 40), "
            "SQLite database locked",
        ),
        Cause(
            "throttled",
            exitcodes.TRANSIENT,
            "object store throttling or server error (SlowDown, Throttling, RequestTimeout, "
            "HTTP 408, 429, 5xx)",
        ),
        Cause(
            "no-space",
            exitcodes.TRANSIENT,
            "no space left on a device or quota exceeded (ENOSPC, EDQUOT, 53100, SQLite disk full)",
        ),
        Cause(
            "deadline",
            exitcodes.TRANSIENT,
            "the step deadline (WORKERS_TIMEOUT) passed, or the step was interrupted",
        ),
        Cause(
            "terminated",
            exitcodes.TRANSIENT,
            "SIGTERM, as a spot or preemptible node's notice sends it: the step stopped within "
            "--grace-seconds (a shard checkpointed what it had read first)",
        ),
    )
}
"""Every cause a step reports, in the order docs/reference/exit-codes.md lists them; ``cause``
in the error log line names one."""

_DEFAULT_CAUSE = {
    UsageError: "bad-input",
    ProcessingError: "user-code",
    IncompleteError: "incomplete",
    TransientError: "deadline",
    InternalError: "internal",
}

_ERROR_OF_CODE: dict[int, type[WorkersError]] = {
    exitcodes.USAGE: UsageError,
    exitcodes.PROCESSING: ProcessingError,
    exitcodes.INCOMPLETE: IncompleteError,
    exitcodes.TRANSIENT: TransientError,
    exitcodes.INTERNAL: InternalError,
}

_EXTRAS = {
    "psycopg": "postgres",
    "psycopg_binary": "postgres",
    "psycopg_c": "postgres",
    "s3fs": "s3",
    "aiobotocore": "s3",
    "botocore": "s3",
    "boto3": "s3",
    "gcsfs": "gcs",
    "google": "gcs",
}
"""Top-level modules of optional dependencies, and the extra of ``workers`` that brings them."""


def error(cause: str, message: str) -> WorkersError:
    """A WorkersError of ``cause``'s exit code whose message ends with what to do."""
    c = CAUSES[cause]
    text = f"{message}: {c.fix}" if c.fix else message
    err = _ERROR_OF_CODE[c.code](text)
    err.cause = cause
    return err


def cause_of(err: WorkersError) -> str:
    """The cause an error reports: set by :func:`error`, else its class's default."""
    explicit = getattr(err, "cause", None)
    if explicit:
        return str(explicit)
    for cls in type(err).__mro__:
        if cls in _DEFAULT_CAUSE:
            return _DEFAULT_CAUSE[cls]  # type: ignore[index]
    return "internal"


def classify(exc: BaseException) -> WorkersError:
    """Map any exception that escaped the library to a WorkersError naming its cause."""
    if isinstance(exc, WorkersError):
        return exc
    cause, detail = _match(exc)
    store = _store_of(exc)
    if store is not None:
        cause, detail = _about_store(store, cause, detail)
    return error(cause, detail)


def _store_of(exc: BaseException) -> Any:
    """The :class:`~workers.storage.Store` a failed request went to, if storage tagged it."""
    for link in _chain(exc):
        store = getattr(link, "workers_store", None)
        if store is not None:
            return store
    return None


def _about_store(store: Any, cause: str, detail: str) -> Found:
    """A store's failure, named after the store. Refused access may hide a missing bucket:
    S3 answers 403, not NoSuchBucket, to a role that may not list the bucket (and moto 5.2.6
    to every role), so the bucket is asked about once more (:meth:`Store.probe_bucket`): a
    404 to HeadBucket or NoSuchBucket to GetObject means it does not exist, whoever asks."""
    if cause == "store-access" and _bucket_missing(store.probe_bucket()):
        return "store-missing", f"bucket {store.bucket} does not exist (store {store.url})"
    if cause == "db-url":  # a host name that does not exist: the store's, not the database's
        return "store-invalid", f"{store.url}: {detail}"
    if cause.startswith("store-") and store.url not in detail:
        return cause, f"{store.url}: {detail}"
    return cause, detail


def _bucket_missing(answer: BaseException | None) -> bool:
    for link in _chain(answer) if answer is not None else ():
        response = getattr(link, "response", None)
        if not isinstance(response, dict):
            continue
        code = str((response.get("Error") or {}).get("Code") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        head = getattr(link, "operation_name", "") == "HeadBucket"
        return code == "NoSuchBucket" or (head and status == 404)
    return False


def _match(exc: BaseException) -> Found:
    chain = list(_chain(exc))
    for link in chain:
        found = _specific(link)
        if found is not None:
            return found
    for link in chain:
        found = _generic(link)
        if found is not None:
            return found
    return "internal", f"unexpected {type(exc).__name__}: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text, or its class name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``), its causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 16:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (getattr(e, "orig", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _top_module(exc: BaseException) -> str:
    return type(exc).__module__.split(".", 1)[0]


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _specific(exc: BaseException) -> Found | None:
    """Errors of a library we know, by the attributes that say exactly what happened."""
    top = _top_module(exc)
    if top in ("psycopg", "adbc_driver_manager"):
        # ADBC's PostgreSQL driver (the columnar read) is libpq too: the same SQLSTATEs
        # and messages, under the DB-API's class names.
        return _psycopg(exc)
    if first_line(exc).startswith("[libpq]"):
        # ADBC's record batch reader (pyarrow) raises libpq's failure as a plain OSError.
        text = first_line(exc)
        return _libpq_cause(text) or "unreachable", f"PostgreSQL: {_libpq_detail(text)}"
    if top == "sqlite3":
        return _sqlite(exc)
    if top == "sqlalchemy":
        return _sqlalchemy(exc)
    if top == "botocore":
        return _botocore(exc)
    if top == "gcsfs" and hasattr(exc, "code"):
        return _http(getattr(exc, "code", None), f"GCS answered: {first_line(exc)}")
    if top == "aiohttp" and isinstance(getattr(exc, "status", None), int):
        return _http(exc.status, f"HTTP error: {first_line(exc)}")  # type: ignore[attr-defined]
    if isinstance(exc, MemoryError):
        return "out-of-memory", "out of memory (MemoryError)"
    if isinstance(exc, ImportError):
        return _import(exc)
    return None


def _generic(exc: BaseException) -> Found | None:
    """Errors known by their built-in type or class name (network, file system, time-outs)."""
    names = _names(exc)
    text = first_line(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        by_errno = _errno(exc.errno)
        if by_errno is not None:
            return by_errno, f"{_strerror(exc)}"
    dns = _dns(text)
    if dns is not None:
        return dns, f"cannot resolve a host name: {text}"
    if names & _UNREACHABLE_NAMES or isinstance(exc, (ConnectionError, TimeoutError)):
        return "unreachable", f"{type(exc).__name__}: {text}"
    if names & _STORE_AUTH_NAMES:
        return "store-access", f"{type(exc).__name__}: {text}"
    if isinstance(exc, PermissionError) or text.startswith("Forbidden"):
        return "store-access", f"permission denied: {text}"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return "store-missing", f"not found: {text}"
    if isinstance(exc, IsADirectoryError):
        return "store-invalid", f"is a folder: {text}"
    return None


_UNREACHABLE_NAMES = {
    # botocore, aiohttp, requests, fsspec, urllib3: the network failed before an answer.
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ClientPayloadError",
    "ServerTimeoutError",
    "ClientConnectionError",
    "ProxyError",
    "ChunkedEncodingError",
    "FSTimeoutError",
    "ProtocolError",
    "IncompleteReadError",
}

_STORE_AUTH_NAMES = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "DefaultCredentialsError",
    "RefreshError",
}

_PERMANENT_ERRNOS = {
    errno.EACCES: "store-access",
    errno.EPERM: "store-access",
    errno.EROFS: "store-read-only",
    errno.ENOENT: "store-missing",
    errno.ENOTDIR: "store-missing",
    errno.EISDIR: "store-invalid",
    errno.ENAMETOOLONG: "store-invalid",
}

_TRANSIENT_ERRNOS = {
    errno.ENOSPC: "no-space",
    errno.EDQUOT: "no-space",
    errno.ECONNREFUSED: "unreachable",
    errno.ECONNRESET: "unreachable",
    errno.ECONNABORTED: "unreachable",
    errno.ETIMEDOUT: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.EPIPE: "unreachable",
    errno.EIO: "unreachable",
    errno.EAGAIN: "unreachable",
    errno.ESTALE: "unreachable",
    errno.EBUSY: "throttled",  # s3fs: SlowDown, ServiceUnavailable, 503
    getattr(errno, "EREMOTEIO", errno.EIO): "throttled",  # s3fs: InternalError, 500
}


def _errno(code: int) -> str | None:
    return _PERMANENT_ERRNOS.get(code) or _TRANSIENT_ERRNOS.get(code)


def _strerror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f": {exc.filename}" if exc.filename else ""
    text = exc.strerror or first_line(exc)
    return f"{text}{where} ({name})" if name else f"{text}{where}"


def _dns(text: str) -> str | None:
    low = text.lower()
    if "temporary failure in name resolution" in low:
        return "unreachable"
    if "name or service not known" in low or "no address associated with hostname" in low:
        return "db-url"
    return None


# ------------------------------------------------------------------------ PostgreSQL

_SQLSTATE = {
    "42501": "db-permission",
    "25006": "db-permission",
    "3D000": "db-unknown",
    "3F000": "db-unknown",
    "57P01": "server-shutdown",
    "57P02": "server-shutdown",
    "57P03": "server-shutdown",
    "57P04": "db-unknown",  # database dropped
    "57P05": "unreachable",  # idle session timeout
    "57014": "overloaded",  # statement timeout, or cancelled by an administrator
    "55P03": "overloaded",  # lock not available
    "55006": "overloaded",  # object in use
    "53100": "no-space",
}

_SQLSTATE_CLASS = {
    "08": "unreachable",
    "28": "db-auth",
    "42": "db-unknown",
    "22": "db-unknown",
    "23": "db-unknown",
    "0A": "db-unknown",
    "53": "overloaded",
    "40": "overloaded",
    "58": "unreachable",  # the server's own I/O failed
}

# libpq's connect-time messages (no SQLSTATE reaches the client for these).
_LIBPQ_MESSAGES = (
    ("password authentication failed", "db-auth"),
    ("no password supplied", "db-auth"),
    ("no pg_hba.conf entry", "db-auth"),
    ("pg_hba.conf rejects connection", "db-auth"),
    ("role", "db-auth", "does not exist"),
    ("not permitted to log in", "db-auth"),
    ("authentication failed", "db-auth"),
    ("database", "db-unknown", "does not exist"),
    ("invalid sslmode value", "db-url"),
    ("invalid port number", "db-url"),
    ("invalid integer value", "db-url"),
    ("invalid connection option", "db-url"),
    ("invalid uri", "db-url"),
    ('missing "="', "db-url"),
    ("server does not support ssl", "db-url"),
    ("ssl was required", "db-url"),
    ("sslmode value", "db-url"),
    ("could not translate host name", None),  # decided by the resolver's text: see _dns
    ("too many connections", "overloaded"),
    ("too many clients", "overloaded"),
    ("the database system is shutting down", "server-shutdown"),
    ("the database system is starting up", "server-shutdown"),
    ("the database system is in recovery mode", "server-shutdown"),
    ("the database system is not yet accepting connections", "server-shutdown"),
    ("terminating connection due to administrator command", "server-shutdown"),
)


_LIBPQ_CONNECTING = (
    "connection failed",
    "connection is bad",
    "connection timeout expired",
    "failed to resolve host",
)
"""How psycopg's messages for a failed connect begin (the rest is libpq's own text)."""


def _libpq_cause(text: str) -> str | None:
    low = text.lower()
    for entry in _LIBPQ_MESSAGES:
        needle, cause, *also = entry
        if needle in low and all(a in low for a in also):
            return cause if cause is not None else _dns(text)
    return _dns(text)


def _libpq_detail(text: str) -> str:
    """libpq's text without its 'connection to server at ... failed: FATAL:' preamble."""
    for marker in ("FATAL:", "failed:", "connection is bad:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.strip()


def _psycopg(exc: BaseException) -> Found | None:
    sqlstate = getattr(exc, "sqlstate", None)
    text = first_line(exc)
    if sqlstate:
        cause = _SQLSTATE.get(sqlstate) or _SQLSTATE_CLASS.get(sqlstate[:2])
        if cause is not None:
            return cause, f"PostgreSQL: {text} (SQLSTATE {sqlstate})"
        return None
    names = _names(exc)
    if "ProgrammingError" in names:  # psycopg parses the conninfo itself
        return "db-url", f"invalid PostgreSQL URL: {text}"
    if "OperationalError" in names:
        cause = _libpq_cause(text) or "unreachable"
        connecting = text.startswith(_LIBPQ_CONNECTING)
        what = "cannot connect to PostgreSQL" if connecting else "PostgreSQL"
        return cause, f"{what}: {_libpq_detail(text)}"
    if "InterfaceError" in names:
        return "unreachable", f"PostgreSQL connection lost: {text}"
    return None


# ------------------------------------------------------------------- SQLite, SQLAlchemy

_SQLITE_MESSAGES = (
    ("no such table", "db-unknown"),
    ("no such column", "db-unknown"),
    ("has no column named", "db-unknown"),
    ("file is not a database", "db-unknown"),
    ("database disk image is malformed", "db-unknown"),
    ("unable to open database file", "db-unknown"),
    ("attempt to write a readonly database", "db-permission"),
    ("database is locked", "overloaded"),
    ("database table is locked", "overloaded"),
    ("database is busy", "overloaded"),
    ("database or disk is full", "no-space"),
    ("disk i/o error", "unreachable"),
)


def _sqlite(exc: BaseException) -> Found | None:
    text = first_line(exc)
    low = text.lower()
    for needle, cause in _SQLITE_MESSAGES:
        if needle in low:
            return cause, f"SQLite: {text}"
    names = _names(exc)
    if "OperationalError" in names:
        return "unreachable", f"SQLite: {text}"
    if names & {"ProgrammingError", "IntegrityError", "DataError"}:
        return "db-unknown", f"SQLite: {text}"
    return None


def _sqlalchemy(exc: BaseException) -> Found | None:
    if getattr(exc, "orig", None) is not None:
        return None  # the driver's own exception (next in the chain) says more
    names = _names(exc)
    text = first_line(exc)
    if "NoSuchModuleError" in names:
        return "missing-dependency", f"no SQLAlchemy dialect or driver: {text}"
    if "ArgumentError" in names:
        return "db-url", f"invalid database URL: {text}"
    if names & {"TimeoutError", "DisconnectionError"}:
        return "unreachable", f"database unavailable: {text}"
    return None


# ------------------------------------------------------------------ object stores

_S3_CODES = {
    "InvalidAccessKeyId": "store-access",
    "SignatureDoesNotMatch": "store-access",
    "ExpiredToken": "store-access",
    "InvalidToken": "store-access",
    "TokenRefreshRequired": "store-access",
    "AuthorizationHeaderMalformed": "store-access",
    "InvalidClientTokenId": "store-access",
    "UnrecognizedClientException": "store-access",
    "RequestTimeTooSkewed": "store-access",
    "AccessDenied": "store-access",
    "AllAccessDisabled": "store-access",
    "AccountProblem": "store-access",
    "NoSuchBucket": "store-missing",
    "InvalidBucketName": "store-invalid",
    "PermanentRedirect": "store-invalid",
    "SlowDown": "throttled",
    "Throttling": "throttled",
    "ThrottlingException": "throttled",
    "RequestLimitExceeded": "throttled",
    "TooManyRequestsException": "throttled",
    "RequestTimeout": "throttled",
    "RequestTimeoutException": "throttled",
    "InternalError": "throttled",
    "ServiceUnavailable": "throttled",
    "OperationAborted": "throttled",
}


def _botocore(exc: BaseException) -> Found | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None  # connection errors and the like: matched by class name in _generic
    err = response.get("Error") or {}
    code = str(err.get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    detail = f"S3 answered {code or status}: {err.get('Message') or first_line(exc)}"
    cause = _S3_CODES.get(code)
    if cause is not None:
        return cause, detail
    return _http(status, detail)


def _http(status: object, detail: str) -> Found | None:
    """A cause from an HTTP status (GCS, S3 without a known code, aiohttp)."""
    if not isinstance(status, int):
        return None
    if status == 401:
        return "store-access", detail
    if status == 403:
        return "store-access", detail
    if status == 404:
        return "store-missing", detail
    if status in (408, 429) or status >= 500:
        return "throttled", detail
    if 400 <= status < 500:
        return "store-invalid", detail
    return None


# ------------------------------------------------------------------ dependencies


def _import(exc: ImportError) -> Found | None:
    """A missing or broken optional dependency, named with the extra that installs it."""
    module = exc.name or _raising_module(exc) or ""
    top = module.split(".", 1)[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    return (
        "missing-dependency",
        f"{top} cannot be imported ({first_line(exc)}): "
        f"install it with pip install 'workers[{extra}]'",
    )


def _raising_module(exc: BaseException) -> str | None:
    """The module whose code raised ``exc`` (the innermost frame of its traceback)."""
    tb = exc.__traceback__
    name = None
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", name)
        tb = tb.tb_next
    return name


# ------------------------------------------------------------------ user code

_WORKERS_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = (
    os.path.dirname(os.path.abspath(os.__file__)),  # the standard library
    *[p for p in sys.path if p.endswith(("site-packages", "dist-packages"))],
)


def is_library_file(path: str) -> bool:
    """Whether an absolute file path is workers', the standard library's or an installed
    package's, not the user's own code."""
    return path.startswith((_WORKERS_DIR + os.sep, *_LIBRARY_DIRS))


def user_frame(exc: BaseException, module: str | None = None) -> str | None:
    """``file:line`` of the innermost frame of ``exc`` in the user's own code: in the package
    of ``module`` (``pkg.mod:func``, even when installed), else not in workers, the standard
    library or installed packages, else the innermost frame outside workers."""
    import traceback  # deferred: only a failing user function needs it

    package = module.partition(":")[0].split(".", 1)[0] if module else None
    fallback = found = ours = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        path = os.path.abspath(filename)
        if path.startswith(_WORKERS_DIR + os.sep):
            continue
        where = f"{filename}:{lineno}"
        fallback = where
        name = str(frame.f_globals.get("__name__", ""))
        if package and name.split(".", 1)[0] == package:
            ours = where
        if not path.startswith(_LIBRARY_DIRS) and not filename.startswith("<"):
            found = where
    return ours or found or fallback


def user_code_error(
    what: str, message: str, exc: BaseException, module: str | None = None
) -> ProcessingError:
    """A ProcessingError for the user's generator or processor, showing their file and line."""
    where = user_frame(exc, module)
    text = f"{what} {message}" + (f" (at {where})" if where else "")
    err = ProcessingError(text)
    err.cause = "user-code"
    return err
