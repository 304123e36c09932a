"""Structured logs: one JSON object per line on stderr.

stdout is reserved for a step's declared output (split's shard list, merge's
document when no output path is given), so nothing else may print there.

Every line carries the workflow, node and pod it came from (:data:`PLATFORM_FIELDS`,
read from the environment the templates and ``workers run`` set), so a log platform
can join a step's lines to Argo's node and to the pod's own records. Records of
Python's ``logging`` (a generator's or processor's own calls, libraries) and
``warnings`` go through :class:`RecordHandler` into the same JSON lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from workers.redaction import MIN_SECRET_LEN, redact, redact_values, too_short

PLATFORM_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # The templates set WORKERS_* from {{workflow.name}}, {{node.name}} and the downward API
    # (metadata.name); Argo >= 4.1 also sets ARGO_WORKFLOW_NAME in the main container, and
    # every version sets ARGO_NODE_ID (the node's id, which `argo get -o json` keys on).
    ("workflow", ("WORKERS_WORKFLOW_NAME", "ARGO_WORKFLOW_NAME")),
    ("node", ("WORKERS_NODE_NAME",)),
    ("node_id", ("ARGO_NODE_ID",)),
    ("pod", ("WORKERS_POD_NAME",)),
)
"""Log field and the environment variables it is read from, first set one wins."""


def platform_context(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workflow, node and pod this process runs as; fields without a value are left out."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for field, names in PLATFORM_FIELDS:
        value = next((env[n] for n in names if env.get(n)), None)
        if value:
            found[field] = value
    return found


class Logger:
    """Writes events for one step; context (step, run id, shard) is bound once."""

    def __init__(
        self,
        step: str,
        *,
        stream: TextIO | None = None,
        secrets: tuple[str, ...] = (),
        **context: Any,
    ) -> None:
        self.step = step
        self.stream = stream or sys.stderr
        self.secrets = secrets
        self.context: dict[str, Any] = platform_context()
        self.bind(**context)
        if too_short(secrets):
            self.warning(
                "short-secret",
                message=f"a secret shorter than {MIN_SECRET_LEN} characters is masked only in "
                "URL password and password= positions",
            )

    def bind(self, **context: Any) -> None:
        self.context.update({k: v for k, v in context.items() if v is not None})

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            + f".{int(time.time() * 1000) % 1000:03d}Z",
            "level": level,
            "step": self.step,
            **self.context,
            "event": event,
        }
        record.update({k: v for k, v in fields.items() if v is not None})
        # Strings are redacted as they are, before JSON escapes them (a secret after a newline
        # would read "\\nsecret" in the line); objects as the text they become.
        line = orjson.dumps(
            redact_values(record, self.secrets),
            default=lambda obj: redact(str(obj), self.secrets),
        ).decode()
        self.stream.write(line + "\n")
        self.stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def record(self, level: str, event: str, **fields: Any) -> None:
        """An event at any level name (``debug``, ``critical``: a ``logging`` record's own)."""
        self._emit(level, event, fields)


DRIVER_LOGGERS = frozenset(
    {
        "psycopg",
        "psycopg_pool",
        "sqlite3",
        "fsspec",
        "s3fs",
        "gcsfs",
        "botocore",
        "aiobotocore",
        "boto3",
        "urllib3",
        "google",
        "aiohttp",
        "asyncio",
    }
)
"""Loggers of the drivers the steps use: their records (a retried request, a clean-up error
after a lost connection) say again what the step's own classified ``failed`` line says, so
they are dropped unless ``WORKERS_DEBUG`` is set."""


class RecordHandler(logging.Handler):
    """Formats every ``logging`` record as one of the step's JSON lines (event ``log``).

    Without it a generator's ``logging.getLogger(__name__).warning(...)`` would print plain
    text between the JSON lines (or nothing at all), without the step, workflow, node and pod
    a log platform joins on, and unredacted. ``logger`` may be replaced once the step knows its
    secrets and context. Records of :data:`DRIVER_LOGGERS` are dropped unless ``debug``.
    """

    def __init__(self, logger: Logger, *, debug: bool = False) -> None:
        super().__init__()
        self.logger = logger
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        if not self.debug and record.name.partition(".")[0] in DRIVER_LOGGERS:
            return
        try:
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                # One line, like the steps' own errors; the traceback only with WORKERS_DEBUG
                # (libraries such as gcsfs log every retried request with theirs).
                fields["exception"] = f"{type(exc).__name__}: {exc}"
                if self.debug:
                    fields["traceback"] = logging.Formatter().formatException(record.exc_info)
            if record.stack_info and self.debug:
                fields["stack"] = record.stack_info
            self.logger.record(record.levelname.lower(), "log", **fields)
        except Exception:  # a broken record must not fail the step; logging reports it
            self.handleError(record)


def capture_records(logger: Logger) -> tuple[RecordHandler, bool]:
    """Route the root logger and ``warnings`` through ``logger``; undo with :func:`release`."""
    handler = RecordHandler(logger)
    logging.getLogger().addHandler(handler)
    was_capturing = bool(getattr(logging, "_warnings_showwarning", None))
    logging.captureWarnings(True)
    return handler, was_capturing


def release(handler: RecordHandler, was_capturing: bool) -> None:
    """Remove what :func:`capture_records` installed (tests run many steps in one process)."""
    logging.getLogger().removeHandler(handler)
    if not was_capturing:
        logging.captureWarnings(False)


def rate(rows: int, seconds: float) -> float | None:
    """Rows per second, rounded for logs; None when the interval is too short to mean anything."""
    return round(rows / seconds, 1) if seconds > 0 else None
