"""Merge over Parquet parts: one Parquet file, a dataset manifest, or the ``jq -s .`` document.

Every part is verified first against its commit record (size, sha256, rows), the way the
JSON Lines copy verifies: a part read from a bucket is downloaded once to a local temp
file while hashed. Then:

- ``--format parquet``: each part's row groups are copied into one output file a row group
  at a time (decoded and encoded again by pyarrow: the output's footer must name them), so
  memory is one row group (shard bounds them, :data:`workers.parquetparts.ROW_GROUP_BYTES`)
  whatever the parts' sizes.
- ``--format dataset``: nothing is copied. The manifest names every part with its rows,
  bytes and sha256, and the run's schema; ``files`` lists the parts holding rows, as URLs
  DuckDB, Polars and ``pyarrow.dataset`` read (README, merge). The success marker
  ``parts/_SUCCESS`` (the manifest's sha256) follows it, and the summary comes last.
- ``--format json|jsonl``: each row group's rows become JSON Lines by the documented value
  mapping, then go out as :mod:`workers.splice` writes JSON Lines parts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson

from workers import layout, parquetparts, storage
from workers.errors import IncompleteError, UsageError
from workers.splice import Output, Part, Splice

JSON_ROWS = 8192
"""Rows converted to JSON at a time (a row group may hold more)."""

MAX_LISTED = 20


def run_schema(parts: Sequence[Part]) -> Any:
    """The run's one schema, from the commit records; mixed schemas are exit 4 naming the parts.

    Parts without rows are left out: a processor's empty output has no schema to agree on
    (a ``rows`` shard that wrote nothing records no columns).
    """
    groups: dict[str, list[Part]] = {}
    for p in parts:
        if p.rows:
            groups.setdefault(str(p.record.get("schema")), []).append(p)
    if len(groups) > 1:
        described = []
        for encoded, members in sorted(groups.items(), key=lambda kv: kv[1][0].index or 0):
            names = ", ".join(m.label for m in members[:MAX_LISTED])
            more = f" and {len(members) - MAX_LISTED} more" if len(members) > MAX_LISTED else ""
            text = members[0].record.get("schema_text") or encoded
            described.append(f"{names}{more}: {' '.join(str(text).split())}")
        raise IncompleteError(
            f"the parts were written with {len(groups)} different schemas, one run has one: "
            + "; ".join(described)
        )
    if not groups:
        first = next(iter(parts), None)
        empty = first.record.get("schema") if first is not None else None
        return parquetparts.schema_from(empty) if empty else parquetparts._pa().schema([])
    return parquetparts.schema_from(next(iter(groups)))


class _Sink(io.RawIOBase):
    """The output as a file pyarrow writes to (every byte through :class:`Output`, hashed)."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(
            data
        )  # a copy: the hashing thread may read it after pyarrow reuses its buffer
        self._out.write(chunk)
        self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos


def write_parquet(parts: Sequence[Part], out: Output) -> int:
    """Every part's row groups, in order, into one Parquet file; returns the rows."""
    parquetparts.memory_pool_for_merge()
    import pyarrow.parquet as pq

    schema = run_schema(parts)
    rows = 0
    sink = _Sink(out)
    writer = pq.ParquetWriter(sink, schema, **parquetparts.WRITE_OPTIONS)
    try:
        for part in parts:
            if not part.rows:
                parquetparts.verify_only(part)
                continue
            with parquetparts.verified(part) as reader:
                for i in range(reader.num_row_groups):
                    table = reader.read_row_group(i, use_threads=False)
                    writer.write_table(table, row_group_size=max(table.num_rows, 1))
                    rows += table.num_rows
                    del table
    finally:
        writer.close()
    return rows


def write_json(parts: Sequence[Part], out: Output, fmt: str) -> int:
    """The ``jq -s .`` document (or JSON Lines) of Parquet parts; returns the values."""
    parquetparts.memory_pool_for_merge()
    run_schema(parts)  # one run, one schema, whatever the output's format
    splice = Splice(out, fmt)
    total = 0
    for part in parts:
        with parquetparts.verified(part) as reader:
            for batch in reader.iter_batches(batch_size=JSON_ROWS, use_threads=False):
                lines = parquetparts.table_to_json_lines(batch)
                if lines:
                    splice.write(lines)
                    total += batch.num_rows
    splice.close()
    return total


def manifest(store: str, plan: layout.Plan, parts: Sequence[Part]) -> tuple[bytes, int]:
    """Verify every part (nothing is copied) and describe the dataset; returns (manifest, rows)."""
    schema = run_schema(parts)
    for part in parts:
        parquetparts.verify_only(part)
    listed = [
        {
            "index": p.index,
            "path": p.record.get("path"),
            "url": p.url,
            "rows": p.rows,
            "bytes": p.bytes,
            "sha256": p.sha256,
        }
        for p in parts
    ]
    rows = sum(p.rows or 0 for p in parts)
    doc = {
        "format": "parquet",
        "run_id": plan.run_id,
        "store": store,
        "rows": rows,
        "generation": parts[0].record.get("generation") if parts else plan.generation,
        "processor": parts[0].record.get("processor") if parts else plan.processor,
        **parquetparts.schema_fields(schema),
        # What readers read: the parts holding rows, in shard order.
        "files": [p.url for p in parts if p.rows],
        "parts": listed,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n", rows


def success_url(store: str) -> str:
    return storage.join(store, "parts", "_SUCCESS")


def check_parts_format(fmt: str, part_format: str) -> None:
    if fmt in ("parquet", "dataset") and part_format != "parquet":
        raise UsageError(
            f"merge --format {fmt} needs Parquet parts; this run's plan pins {part_format}: "
            "run split with --part-format parquet"
        )
