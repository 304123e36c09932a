"""The processors of benchmarks/run.py's columnar rows: the same work on rows and on Arrow.

``shard --processor columnar_processors:FUNC`` (run.py puts this folder on the children's
``PYTHONPATH``). The pass-throughs return what they get; the enrich adds one field, the
amount in cents, as a bigint: exact integer arithmetic on ``Decimal`` in the rows version and
on decimal128 in the Arrow version, so both write the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def rows_passthrough(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``return rows``: what a row processor costs before it does anything."""
    return rows


def rows_enrich(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each row with ``amount_cents`` (numeric(12,2) x 100, an integer)."""
    for row in rows:
        row["amount_cents"] = int(row["amount"] * 100)
        yield row


def arrow_passthrough(batch: Any) -> Any:
    """``return batch``: the columnar path's cost before the processor does anything."""
    return batch


def arrow_enrich(batch: Any) -> Any:
    """The batch with ``amount_cents`` (decimal128 x 100, cast to int64), column at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cents = pc.cast(pc.multiply(batch["amount"], pa.scalar(100, pa.int64())), pa.int64())
    return batch.append_column("amount_cents", cents)
