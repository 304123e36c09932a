"""What every entrypoint shares: parsing, the step deadline, and exceptions to exit codes.

Steps only describe their flags and call library functions; this module turns
any failure into one log line and a documented exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from workers import deadline, exitcodes, failures, output, stop
from workers import log as log_module
from workers.config import Environment, redact
from workers.errors import UsageError, WorkersError
from workers.log import Logger
from workers.shards import MAX_KEY

C = TypeVar("C")

EXIT_CODES_EPILOG = (
    "exit codes: 0 ok, 2 bad input or configuration (permanent), 3 your generator or\n"
    "            processor failed, 4 incomplete fan-in, 70 a bug in workers,\n"
    "            75 transient (unreachable, overloaded, throttled, full: retry)"
)


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: the package's one version, worded as the ``workers`` command words it."""
    from workers import version_text

    parser.add_argument("--version", action="version", version=version_text())


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and map to the usage exit code."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        # --row must never be taken for --rows: a typo is an error, not a guess.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)
        add_version_argument(self)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


INT_MAX = MAX_KEY
"""The largest integer a flag takes: a BIGINT key, and what orjson and JSON readers hold."""


def _int_at_least(minimum: int, wording: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text[:40]!r}")
        if value > INT_MAX:
            raise argparse.ArgumentTypeError(
                f"expected at most {INT_MAX} (2^63-1), got {text[:40]!r}"
            )
        return value

    return parse


def int64(text: str) -> int:
    """argparse type: an integer a signed 64-bit field holds (what orjson and JSON readers hold)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
    if not -INT_MAX - 1 <= value <= INT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected an integer from -2^63 to 2^63-1, got {text[:40]!r}"
        )
    return value


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
    parser.add_argument(
        "--key-column",
        default="key",
        help="key column: integer, numeric, text, uuid, date or timestamp (default key)",
    )
    parser.add_argument(
        "--run-column", default="run_id", help="run id column, '' for none (default run_id)"
    )
    parser.add_argument(
        "--data-column", default="data", help="JSON row column, '' for all columns (default data)"
    )


def add_processor_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags naming the processor; split pins them in the plan, shard must run the same."""
    parser.add_argument(
        "--processor",
        metavar="MODULE:FUNC",
        help="processor import path ('' or absent: identity, rows pass through)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=5000,
        help="rows per processor call (default 5000)",
    )


def add_part_format_argument(parser: argparse.ArgumentParser, *, pinned: bool) -> None:
    """``--part-format``: split pins it in the plan; a shard of a plan must write the same."""
    parser.add_argument(
        "--part-format",
        choices=("jsonl", "parquet"),
        default="jsonl" if pinned else None,
        help="the parts' format: jsonl (default) or parquet; the plan pins it for every shard"
        if pinned
        else "jsonl or parquet (default: the plan's, else jsonl); another than the plan pins is exit 2",
    )


def add_batch_format_argument(parser: argparse.ArgumentParser) -> None:
    """What the processor is called with; split pins it in the plan with the processor."""
    parser.add_argument(
        "--batch-format",
        choices=("rows", "pyarrow", "pandas", "polars"),
        default="rows",
        help="what the processor gets per batch: a list of row dicts (rows, the default), a "
        "pyarrow.RecordBatch, or a pandas or polars DataFrame (needs the arrow, pandas or "
        "polars extra)",
    )


def add_grace_argument(parser: argparse.ArgumentParser) -> None:
    """``--grace-seconds``: how long the step may take to stop after SIGTERM (the spot notice)."""
    parser.add_argument(
        "--grace-seconds",
        type=_grace_seconds,
        default=stop.DEFAULT_GRACE_S,
        metavar="S",
        help="on SIGTERM (a spot node's notice) stop, keep what is safe and exit 75 within S "
        f"seconds; keep it under the pod's terminationGracePeriodSeconds (default {stop.DEFAULT_GRACE_S:g})",
    )


def _grace_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:  # nan fails too
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {text[:40]!r}")
    return value


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
            cause="deadline",
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
    on_failure: Callable[[C, WorkersError, str], None] | None = None,
) -> int:
    """Parse, configure, run ``work`` under the step deadline; map every failure to an exit code."""
    # The user's generator or processor (and libraries) log through ``logging``; with no
    # handler Python prints plain text (tracebacks included) between our JSON lines, so each
    # record becomes one of them, with the same fields and redaction (the drivers' own are
    # dropped: log.DRIVER_LOGGERS).
    handler, was_capturing = log_module.capture_records(Logger(step))
    try:
        return _run_step(step, parser, argv, build, work, context, handler, on_failure)
    finally:
        stop.reset()  # after the failure record: the grace bounds writing it too
        log_module.release(handler, was_capturing)


FAILURE_RECORD_SECONDS = 5.0
"""How long a failing step waits for its failure record to be written (best effort)."""


def _bounded_best_effort(write: Callable[[], None]) -> None:
    """Run ``write`` before the log line that ends the step, for at most
    :data:`FAILURE_RECORD_SECONDS`: a store that refused the work may refuse this record too, or
    be gone, and its client would retry for as long as the step had (the exit must not wait on
    it; the log line says what failed either way). A write still under way is abandoned on a
    daemon thread; it is atomic, so a reader sees the whole record or none."""
    done = threading.Event()

    def run() -> None:
        with contextlib.suppress(BaseException):
            write()
        done.set()

    threading.Thread(target=run, name="workers-failure-record", daemon=True).start()
    done.wait(FAILURE_RECORD_SECONDS)


def _run_step(
    step: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build: Callable[[argparse.Namespace, Environment], C],
    work: Callable[[C, Logger], int],
    context: Callable[[C], dict[str, Any]] | None,
    handler: log_module.RecordHandler,
    on_failure: Callable[[C, WorkersError, str], None] | None = None,
) -> int:
    env: Environment | None = None
    cfg: C | None = None
    timeout: float | None = None
    watchdog: threading.Timer | None = None
    log = handler.logger
    try:
        args = parser.parse_args(argv)
        _handle_sigterm(args, handler)
        with output.redirected(lambda line: handler.logger.info("stdout", message=line)):
            # From here on user code may run (imported by build): its prints never reach stdout.
            env = Environment.from_environ()
            log = handler.logger = Logger(step, secrets=env.secrets)
            handler.debug = env.debug
            cfg = build(args, env)
            stop.noticed()  # puts the SIGTERM handler back if importing user code replaced it
            if context is not None:
                log.bind(**context(cfg))
            timeout = getattr(cfg, "timeout", None) or env.timeout
            if timeout:
                deadline.arm(timeout)
                watchdog = _watchdog(timeout, log)
            try:
                code = work(cfg, log)
                deadline.check()  # swallowed by user code (except BaseException): no success
                return code
            finally:
                if timeout:
                    deadline.disarm()
                if watchdog is not None:
                    watchdog.cancel()
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else exitcodes.OK
    except KeyboardInterrupt:
        log.error("interrupted")
        return exitcodes.TRANSIENT
    except deadline.Deadline:
        err: WorkersError = failures.error("deadline", f"step deadline of {timeout:g}s exceeded")
    except stop.Terminated as exc:
        err = failures.error("terminated", f"SIGTERM (a spot node's notice): {exc or 'stopped'}")
    except BaseException as exc:
        err = failures.classify(exc)
        if env is not None and env.debug:
            import traceback  # deferred: only WORKERS_DEBUG prints one

            # Formatted whole, then redacted: frames and messages quote URLs and passwords.
            sys.stderr.write(redact(traceback.format_exc(), env.secrets))
    secrets = env.secrets if env else ()
    message = redact(str(err), secrets)
    if on_failure is not None and cfg is not None:
        _bounded_best_effort(lambda: on_failure(cfg, err, message))
    log.error(
        "failed",
        error=type(err).__name__,
        message=message,
        exit_code=err.exit_code,
        cause=failures.cause_of(err),
    )
    return err.exit_code


def _handle_sigterm(args: argparse.Namespace, handler: log_module.RecordHandler) -> None:
    """Steps with ``--grace-seconds`` stop on SIGTERM (:mod:`workers.stop`); others keep the
    default (the process ends at once, nothing visible half-written: every write is atomic)."""
    grace = getattr(args, "grace_seconds", None)
    if grace is None:
        return

    def forced(message: str) -> None:
        handler.logger.error(
            "failed",
            error="TransientError",
            message=message,
            exit_code=exitcodes.TRANSIENT,
            cause="terminated",
        )

    stop.install(grace, forced)
