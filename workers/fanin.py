"""A partial fan-in: what merge may leave out (``--min-success-ratio``) and how it says so.

One failed shard of thousands need not block the run's output: with ``--min-success-ratio R``
below 1, merge writes the output from the committed, verified shards when at least ``R`` of
the plan's shards are among them, and names every missing one (its index, bounds and last
error) in the summary (``complete: false``, ``missing: [...]``), in a ``partial`` log event
and in the ``missing-shards`` stats file its template exports as a metric. Everything it
includes is proved as in a complete merge (run, bounds, rows, sha256, provenance). Retrying
the missing shards and merging again with the default ratio 1.0 gives the complete output, the
same bytes as a run in which no shard failed.

A shard's last error comes from its failure record, ``STORE/failures/part-NNNNN.json``, which
a failing shard attempt writes (cause, exit code, message, attempt) on its way out.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import orjson

from workers import layout, storage
from workers.errors import UsageError, WorkersError
from workers.shards import Shard

MAX_MESSAGE_CHARS = 2000
"""A failure record keeps the first this many characters of the error's message."""


def ratio(text: str) -> float:
    """argparse type of ``--min-success-ratio``: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:  # nan fails too
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1], got {text[:40]!r}")
    return value


def enough(committed: int, shards: int, min_ratio: float) -> bool:
    """Whether ``committed`` of ``shards`` reach ``min_ratio`` (exactly: 9 of 10 reach 0.9)."""
    if committed >= shards:
        return True
    return min_ratio < 1 and Fraction(committed, shards) >= Fraction(str(min_ratio))


def shortfall(committed: int, shards: int, min_ratio: float) -> str:
    """Why a partial fan-in was refused, for the error message."""
    if min_ratio >= 1:
        return ""
    return (
        f" ({committed} of {shards} committed, {committed / shards:.4g} < "
        f"--min-success-ratio {min_ratio:g})"
    )


def record_failure(
    store: storage.Store | str, index: int, attempt: int, err: WorkersError, message: str
) -> None:
    """Keep a failing shard attempt's error (already redacted) where merge can name it."""
    from workers import failures

    rec = {
        "index": index,
        "attempt": attempt,
        "exit_code": err.exit_code,
        "cause": failures.cause_of(err),
        "message": message[:MAX_MESSAGE_CHARS],
        "at": round(time.time(), 3),
    }
    storage.write_bytes(layout.failure_url(store, index), orjson.dumps(rec) + b"\n")


def last_error(store: storage.Store | str, index: int) -> dict[str, Any] | None:
    """Shard ``index``'s last failure record, or None when it has none (or it is unreadable)."""
    try:
        rec = orjson.loads(
            storage.read_small(
                layout.failure_url(store, index), layout.MAX_RECORD_BYTES, "failure record"
            )
        )
    except (FileNotFoundError, orjson.JSONDecodeError, UsageError):
        return None
    if not isinstance(rec, dict):
        return None
    keep = ("attempt", "exit_code", "cause", "message", "at")
    return {k: rec[k] for k in keep if k in rec}


def missing(
    store: storage.Store | str, shards: Sequence[Shard], problems: Sequence[str]
) -> list[dict[str, Any]]:
    """Each left-out shard: its plan item (index, bounds, rows), why it is not usable, and its
    last error when a failure record holds one."""
    out = []
    for shard, problem in zip(shards, problems, strict=True):
        out.append(
            {
                **shard.to_dict(),
                "name": shard.name,
                "problem": problem,
                "last_error": last_error(store, shard.index),
            }
        )
    return out


def log_fields(entries: Sequence[dict[str, Any]], limit: int = 20) -> list[dict[str, Any]]:
    """The missing shards as the ``partial`` log event lists them (the summary has them all)."""
    shown = []
    for e in entries[:limit]:
        err = e.get("last_error") or {}
        shown.append(
            {
                "index": e["index"],
                "lo": e.get("lo"),
                "hi": e.get("hi"),
                "problem": e["problem"],
                "cause": err.get("cause"),
                "exit_code": err.get("exit_code"),
            }
        )
    return shown


STATS_FILES = ("missing-shards", "shards")
"""The files merge's ``--stats-dir`` holds, one output parameter each."""


def check_stats_dir(directory: str) -> None:
    """Refuse, before any work, a stats folder merge could not write its files into."""
    if not directory or storage.is_url(directory):
        raise UsageError(f"--stats-dir must be a local folder (valueFrom.path), got {directory!r}")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--stats-dir {directory} exists and is not a folder")
    for name in STATS_FILES:
        storage.check_destination(os.path.join(directory, name), "--stats-dir")


def write_stats(directory: str, shards: int, missing_count: int) -> None:
    os.makedirs(directory, exist_ok=True)
    values = {"missing-shards": missing_count, "shards": shards}
    for name, value in values.items():
        storage.write_bytes(os.path.join(directory, name), f"{value}\n".encode())
