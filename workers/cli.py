"""What every entrypoint shares: parsing, the step deadline, and exceptions to exit codes.

Steps only describe their flags and call library functions; this module turns
any failure into one log line and a documented exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from workers import exitcodes
from workers.config import Environment, redact
from workers.errors import ProcessingError, TransientError, UsageError, WorkersError
from workers.log import Logger

C = TypeVar("C")

EXIT_CODES_EPILOG = (
    "exit codes: 0 ok, 2 bad input (permanent), 3 processing error (user code),\n"
    "            4 incomplete fan-in, 75 transient (database/storage unreachable: retry)"
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and map to the usage exit code."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        # --row must never be taken for --rows: a typo is an error, not a guess.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _int_at_least(minimum: int, wording: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
"""argparse type: an integer >= 1."""

non_negative_int = _int_at_least(0, "an integer >= 0")
"""argparse type: an integer >= 0."""


def add_source_arguments(parser: argparse.ArgumentParser, table_help: str) -> None:
    """The flags naming where rows live; split and shard must agree on them."""
    from workers.config import DEFAULT_TABLE

    parser.add_argument(
        "--table", default=DEFAULT_TABLE, help=f"{table_help} (default {DEFAULT_TABLE})"
    )
    parser.add_argument("--key-column", default="key", help="integer key column (default key)")
    parser.add_argument(
        "--run-column", default="run_id", help="run id column, '' for none (default run_id)"
    )
    parser.add_argument(
        "--data-column", default="data", help="JSON row column, '' for all columns (default data)"
    )


_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EPIPE,
    errno.EIO,
    errno.ENOSPC,
    errno.EAGAIN,
    errno.ESTALE,
}

# Matched by name so that classifying never imports psycopg, SQLAlchemy, botocore or aiohttp.
_TRANSIENT_NAMES = {
    "OperationalError",  # psycopg / SQLAlchemy: connection refused, reset, server gone
    "InterfaceError",
    "DisconnectionError",
    "ConnectionTimeout",
    "QueryCanceled",
    "AdminShutdown",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ClientPayloadError",
    "ServerTimeoutError",
    "RetryError",
    "TransportError",
}


def classify(exc: BaseException) -> WorkersError:
    """Map an exception that escaped the library to the error class that names its exit code."""
    if isinstance(exc, WorkersError):
        return exc
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSIENT_NAMES:
            return TransientError(f"{type(exc).__name__}: {_first_line(exc)}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(f"{type(exc).__name__}: {_first_line(exc)}")
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return UsageError(f"{type(exc).__name__}: {_first_line(exc)}")
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return TransientError(f"{type(exc).__name__}: {_first_line(exc)}")
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int) and (status >= 500 or status in (408, 429)):
        return TransientError(f"{type(exc).__name__}: {_first_line(exc)}")
    return ProcessingError(f"unexpected {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class _Deadline(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline()


DEADLINE_GRACE_S = 5.0
"""After the step deadline, how long unwinding (rollback, closing a stalled socket) may take."""


def _watchdog(timeout: float, log: Logger) -> threading.Timer:
    """Exit 75 even when the deadline's exception cannot unwind: a driver blocked on a stalled
    connection (its rollback waits for a server that never answers) never returns to Python."""

    def fire() -> None:
        log.error(
            "failed",
            error="TransientError",
            message=f"step deadline of {timeout:g}s exceeded; clean-up stalled, exiting",
            exit_code=exitcodes.TRANSIENT,
        )
        os._exit(exitcodes.TRANSIENT)

    timer = threading.Timer(timeout + DEADLINE_GRACE_S, fire)
    timer.daemon = True
    timer.start()
    return timer


def run_step(
    step: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build: Callable[[argparse.Namespace, Environment], C],
    work: Callable[[C, Logger], int],
    *,
    context: Callable[[C], dict[str, Any]] | None = None,
) -> int:
    """Parse, configure, run ``work`` under the step deadline; map every failure to an exit code."""
    env: Environment | None = None
    timeout: float | None = None
    watchdog: threading.Timer | None = None
    log = Logger(step)
    try:
        args = parser.parse_args(argv)
        env = Environment.from_environ()
        log = Logger(step, secrets=env.secrets)
        cfg = build(args, env)
        if context is not None:
            log.bind(**context(cfg))
        timeout = getattr(cfg, "timeout", None) or env.timeout
        if timeout:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            watchdog = _watchdog(timeout, log)
        try:
            return work(cfg, log)
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if watchdog is not None:
                watchdog.cancel()
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else exitcodes.OK
    except KeyboardInterrupt:
        log.error("interrupted")
        return exitcodes.TRANSIENT
    except _Deadline:
        err: WorkersError = TransientError(f"step deadline of {timeout:g}s exceeded")
    except BaseException as exc:
        err = classify(exc)
        if env is not None and env.debug:
            import traceback  # deferred: only WORKERS_DEBUG prints one

            traceback.print_exc(file=sys.stderr)
    secrets = env.secrets if env else ()
    message = redact(str(err), secrets)
    log.error("failed", error=type(err).__name__, message=message, exit_code=err.exit_code)
    return err.exit_code
