"""Structured logs: one JSON object per line on stderr.

stdout is reserved for a step's declared output (split's shard list, merge's
document when no output path is given), so nothing else may print there.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson

from workers.redaction import MIN_SECRET_LEN, redact, redact_values, too_short


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
        self.context = {k: v for k, v in context.items() if v is not None}
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


def rate(rows: int, seconds: float) -> float | None:
    """Rows per second, rounded for logs; None when the interval is too short to mean anything."""
    return round(rows / seconds, 1) if seconds > 0 else None
