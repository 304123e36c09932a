"""Processors of the columnar batch formats (``plugins.columnar:<name>``), each with the rows
version that makes the same values: the tests compare their merged documents."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def rows_enrich(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Keep rows whose dwell_s is even; add the city in capitals and the score doubled."""
    return [
        {**r, "city_upper": r["city"].upper(), "score2": r["score"] * 2}
        for r in batch
        if r["dwell_s"] % 2 == 0
    ]


def arrow_enrich(rb: Any) -> Any:
    import pyarrow.compute as pc

    kept = rb.filter(pc.equal(pc.bit_wise_and(rb["dwell_s"], 1), 0))
    kept = kept.append_column("city_upper", pc.utf8_upper(kept["city"]))
    return kept.append_column("score2", pc.multiply(kept["score"], 2))


def pandas_enrich(df: Any) -> Any:
    kept = df[df["dwell_s"] % 2 == 0]
    return kept.assign(city_upper=kept["city"].str.upper(), score2=kept["score"] * 2)


def polars_enrich(df: Any) -> Any:
    import polars as pl

    return df.filter(pl.col("dwell_s") % 2 == 0).with_columns(
        pl.col("city").str.to_uppercase().alias("city_upper"), (pl.col("score") * 2).alias("score2")
    )


def arrow_halves(rb: Any) -> Iterator[Any]:
    """An iterable of batches: the first half, then the rest (the same rows as the identity)."""
    half = rb.num_rows // 2
    yield rb.slice(0, half)
    yield rb.slice(half)


def arrow_identity(rb: Any) -> Any:
    return rb


def arrow_types(rb: Any) -> Any:
    """One row per column: its name and its Arrow type."""
    import pyarrow as pa

    return pa.table({"column": rb.schema.names, "type": [str(t) for t in rb.schema.types]})


def returns_dicts(rb: Any) -> Any:
    return rb.to_pylist()  # the rows format's answer, not a batch of this one


def two_batches(rb: Any, other: Any) -> Any:
    return rb


def arrow_slow(rb: Any) -> Any:
    """Pass-through, a second per batch: time for a test to end the read's connection."""
    import time

    time.sleep(1)
    return rb
