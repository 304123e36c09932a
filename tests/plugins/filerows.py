"""Processors for rows read from files (``plugins.filerows:<name>``): each batch format's
version makes the same values, so the tests compare their merged documents."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

FAILING_N = 700


def rows_double(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return [{**r, "n2": r["n"] * 2} for r in batch]


def arrow_double(rb: Any) -> Any:
    import pyarrow.compute as pc

    return rb.append_column("n2", pc.multiply(rb["n"], 2))


def pandas_double(df: Any) -> Any:
    return df.assign(n2=df["n"] * 2)


def polars_double(df: Any) -> Any:
    import polars as pl

    return df.with_columns((pl.col("n") * 2).alias("n2"))


def fails_until_fixed(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows unchanged; the batch holding n == 700 fails until a file ``fixed`` exists in the
    working folder: the first attempt leaves checkpoints, the retry resumes after them."""
    if any(r.get("n") == FAILING_N for r in batch) and not os.path.exists("fixed"):
        raise ValueError(f"row {FAILING_N} is malformed until fixed")
    return batch
