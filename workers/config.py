"""Configuration read from the environment, once per step.

Every environment variable the library honours is read here and nowhere else;
steps combine this with their parsed flags into one frozen dataclass.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workers import redaction
from workers.errors import UsageError

DEFAULT_DATABASE_URL = "sqlite:///workers.db"
"""Embedded default: a SQLite file in the working folder."""

DEFAULT_STORE = "workers-data"
"""Embedded default storage: a local folder in the working folder (runs go below it)."""

DEFAULT_TABLE = "workers_rows"

DEFAULT_STALE_AFTER_S = 3600.0
"""Lease of a temp file or multipart upload: untouched for longer, its writer is presumed dead."""

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Environment:
    """What the process environment says; built by :meth:`from_environ`."""

    database_url: str | None = None
    run_id: str | None = None
    store: str | None = None
    connect_timeout: float = 10.0
    timeout: float | None = None
    attempt: int | None = None
    debug: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        url = env.get("WORKERS_DATABASE_URL") or env.get("DATABASE_URL") or None
        stale_after(env)  # validated at start; storage reads it where it sweeps
        return cls(
            database_url=url,
            run_id=env.get("WORKERS_RUN_ID") or env.get("ARGO_WORKFLOW_NAME") or None,
            store=env.get("WORKERS_STORE") or None,
            connect_timeout=_positive_float(env, "WORKERS_CONNECT_TIMEOUT", 10.0) or 10.0,
            timeout=_positive_float(env, "WORKERS_TIMEOUT", None),
            attempt=_int_or_none(env, "WORKERS_ATTEMPT"),
            debug=env.get("WORKERS_DEBUG", "") not in ("", "0", "false"),
            secrets=redaction.secret_values_of_url(url),
        )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or DEFAULT_DATABASE_URL


MAX_SECONDS = 1e8
"""The longest duration a WORKERS_* variable takes (over three years): what a timer holds."""


def stale_after(environ: Mapping[str, str] | None = None) -> float:
    """``WORKERS_STALE_AFTER``: seconds after which another attempt's untouched temp file or
    multipart upload counts as abandoned (read by storage when it sweeps, validated at start)."""
    env = os.environ if environ is None else environ
    return (
        _positive_float(env, "WORKERS_STALE_AFTER", DEFAULT_STALE_AFTER_S) or DEFAULT_STALE_AFTER_S
    )


def _positive_float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {raw!r}")
    if value > MAX_SECONDS:  # inf too: no timer or deadline holds it
        raise UsageError(f"{name} must be at most {MAX_SECONDS:g} seconds, got {raw!r}")
    return value


def _int_or_none(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {raw!r}") from None


def redact(text: str, secret_values: Iterable[str] = ()) -> str:
    """Mask secrets in ``text``; the rule is :mod:`workers.redaction`'s."""
    return redaction.redact(text, secret_values)


def check_run_id(run_id: str) -> str:
    """Validate a run id: it becomes part of storage paths and SQL literals."""
    if not _RUN_ID.fullmatch(run_id):  # match's $ would accept a trailing newline
        raise UsageError(
            f"invalid run id {run_id!r}: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return run_id


def new_run_id() -> str:
    """A fresh run id for runs outside Argo (inside, the workflow name is used)."""
    return time.strftime("run-%Y%m%d-%H%M%S-", time.gmtime()) + os.urandom(3).hex()
