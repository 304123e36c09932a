"""Generators and processors used by the tests, named as ``plugins.userfuncs:<name>``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any


def sparse_rows(rows: int) -> Iterator[dict[str, Any]]:
    """A user generator that declares only ``rows``."""
    for i in range(rows):
        yield {"n": i, "text": f"row {i}", "quote": 'a "quoted" \\ back\tslash\nnewline'}


def broken_generator(rows: int) -> Iterator[dict[str, Any]]:
    yield {"n": 1}
    raise RuntimeError("generator exploded")


def not_dicts(rows: int) -> list[int]:
    return list(range(rows))


def double(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Emit two values per row: the processor may change the number of values."""
    for row in batch:
        yield {"id": row["id"], "half": 0}
        yield {"id": row["id"], "half": 1}


def explode(batch: list[dict[str, Any]]) -> Iterable[Any]:
    raise ValueError("processor exploded")


def unserializable(batch: list[dict[str, Any]]) -> Iterable[Any]:
    return [{"when": object()} for _ in batch]


def slow(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Sleep per batch so a test can kill the process mid-write (WORKERS_TEST_SLOW seconds)."""
    time.sleep(float(os.environ.get("WORKERS_TEST_SLOW", "0.2")))
    return batch


def megabyte(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """About 1 MiB of JSON per row: parts big enough for s3fs's multipart upload (> 100 MiB)."""
    return [{"id": row["id"], "blob": "x" * (1 << 20)} for row in batch]


def raising_generator(rows: int) -> Iterable[dict[str, Any]]:
    """Raises when called, before returning anything."""
    raise OSError("generator could not open its source")


def not_iterable(rows: int) -> int:
    return rows


def unserializable_rows(rows: int) -> Iterator[dict[str, Any]]:
    for i in range(rows):
        yield {"n": i, "when": {1, 2}}


not_callable = 42


def returns_none(batch: list[dict[str, Any]]) -> None:
    return None


def tag_a(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Processors that mark which of them made a value: provenance tests mix them on purpose."""
    return [{**row, "by": "a"} for row in batch]


def tag_b(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return [{**row, "by": "b"} for row in batch]


def tag_c(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return [{**row, "by": "c"} for row in batch]


def wrong_signature(count: int) -> Iterator[dict[str, Any]]:
    """A generator whose parameter is none of rows, seed, run_id."""
    yield from ({"n": i} for i in range(count))


def type_error_inside(rows: int) -> Iterator[dict[str, Any]]:
    """Raises TypeError from its own helper when called (not a wrong signature)."""
    return _count_of(None)


def _count_of(value: Any) -> Any:
    return len(value)  # the line a failure must point at


def two_arguments(batch: list[dict[str, Any]], extra: int) -> Iterable[Any]:
    """A processor with a second required parameter nobody passes."""
    return batch


def fails_in_a_library(batch: list[dict[str, Any]]) -> Iterable[Any]:
    """Raises inside the standard library, called from this file."""
    import json

    return [json.loads("not json") for _ in batch]  # the line a failure must point at


def passthrough(batch: list[dict[str, Any]]) -> Iterable[Any]:
    """Returns the rows it gets (Decimal, datetime, bytes values included)."""
    return list(batch)


SKEWED_KEY, FAILING_KEY, SKEW_S = 350, 750, 4.0


def skewed(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows unchanged; the batch holding row 350 takes SKEW_S longer (one slow shard)."""
    if any(row.get("id") == SKEWED_KEY for row in batch):
        time.sleep(SKEW_S)
    return batch


def skewed_failing(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """As skewed, and the batch holding row 750 fails (one failed shard, exit 3)."""
    if any(row.get("id") == FAILING_KEY for row in batch):
        raise ValueError(f"row {FAILING_KEY} is malformed (on purpose)")
    return skewed(batch)


def fails_until_fixed(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows unchanged; the batch holding row 750 fails until a file ``fixed`` exists next to
    the embedded SQLite database (a local run's work folder, which its pods share; each pod's
    working folder is its own), or on another database in the step's working folder: a fault
    the user fixes, then resumes."""
    import os

    url = os.environ.get("WORKERS_DATABASE_URL", "")
    sqlite = url.startswith("sqlite:///")
    folder = os.path.dirname(url.removeprefix("sqlite:///")) if sqlite else os.getcwd()
    fixed = os.path.join(folder, "fixed")
    if any(row.get("id") == FAILING_KEY for row in batch) and not os.path.exists(fixed):
        raise ValueError(f"row {FAILING_KEY} is malformed until fixed")
    return batch


def noise(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Incompressible bytes per row (WORKERS_TEST_NOISE_BYTES, default 100,000), seeded by the id:
    Parquet parts as big as their rows."""
    import random

    size = int(os.environ.get("WORKERS_TEST_NOISE_BYTES", "100000"))
    return [{"id": row["id"], "blob": random.Random(row["id"]).randbytes(size)} for row in batch]


def int_then_text(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """``v`` is a number for ids up to 1000 and text after: two schemas from one processor."""
    return [{"id": r["id"], "v": r["id"] if r["id"] <= 1000 else str(r["id"])} for r in batch]


def after_1000(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Only rows with ids over 1000: a shard of the first thousand writes nothing."""
    return [row for row in batch if row["id"] > 1000]
