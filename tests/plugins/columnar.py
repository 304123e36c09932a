"""Processors of the columnar batch formats (``plugins.columnar:<name>``), each with the rows
version that makes the same values: the tests compare their merged documents."""

from __future__ import annotations

import math
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


def arrow_awkward(rb: Any) -> Any:
    """The values the Arrow -> JSON Lines writer treats specially: NaN and the infinities, a JSON
    column, a timestamp with a fraction, a UUID."""
    import datetime
    import uuid

    import pyarrow as pa

    n = rb.num_rows
    keys = rb["id"].to_pylist()
    floats = [(math.nan, math.inf, -math.inf, 0.5)[k % 4] for k in keys]
    return pa.table(
        {
            "id": rb["id"],
            "ratio": pa.array(floats, pa.float64()),
            "doc": pa.ExtensionArray.from_storage(
                pa.json_(), pa.array([f'{{"k": [{k}, 2.50]}}' for k in keys])
            ),
            "when": pa.array(
                [datetime.datetime(2024, 1, 2, 3, 4, 5, 600000)] * n, pa.timestamp("us")
            ),
            "ref": pa.array([uuid.UUID(int=k).bytes for k in keys], pa.binary(16)).cast(pa.uuid()),
        }
    )


def rows_awkward(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows version: Python datetimes (orjson writes their six fraction digits), NaN and the
    infinities (written as strings), a UUID."""
    import datetime
    import uuid

    return [
        {
            "id": r["id"],
            "ratio": (math.nan, math.inf, -math.inf, 0.5)[r["id"] % 4],
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 600000),
            "ref": uuid.UUID(int=r["id"]),
        }
        for r in batch
    ]
