"""Merge over Parquet parts: one Parquet file, a dataset manifest, or the ``jq -s .`` document.

Every part is verified first against its commit record (size, sha256, rows), the way the
JSON Lines copy verifies: a part read from a bucket is downloaded once to a local temp
file while hashed. Then:

- ``--format parquet``: each part's row groups are copied byte for byte into one output
  file, whose footer joins the parts' footers (:mod:`workers.parquetfooter`): nothing is
  decoded, and memory is a read buffer whatever the parts' sizes.
- ``--format dataset``: nothing is copied. The manifest names every part with its rows,
  bytes and sha256, and the run's schema; ``files`` lists the parts holding rows, as URLs
  DuckDB, Polars and ``pyarrow.dataset`` read (docs/reference/steps.md, merge). The success marker
  ``parts/_SUCCESS`` (the manifest's sha256) follows it, and the summary comes last.
- ``--format json|jsonl``: each row group's rows become JSON Lines by the documented value
  mapping (:func:`workers.batches.table_to_jsonl`, the writer of a shard's JSON Lines part
  from Arrow: the same rows give the same bytes whichever the part format), then go out as
  :mod:`workers.splice` writes JSON Lines parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import orjson

from workers import failures, layout, parquetfooter, parquetparts, storage
from workers.errors import IncompleteError, UsageError
from workers.splice import Output, Part, Splice

CHUNK = 1 << 20
"""Bytes read at a time."""

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


def write_parquet(parts: Sequence[Part], out: Output) -> int:
    """Every part's row groups, in order, as one Parquet file; returns the rows.

    Nothing is decoded: a part's bytes between its magic and its footer hold no file offset
    (see :mod:`workers.parquetfooter`), so each part's body is copied as it is while hashed
    against its record, and the output's footer is the parts' footers joined, offsets
    shifted. Memory is a read buffer and the footers, whatever the parts' sizes.
    """
    schema = run_schema(parts)
    footers: list[tuple[int, parquetfooter.Footer]] = []
    written = rows = 0
    for part in parts:
        if not part.rows:
            parquetparts.verify_only(part)  # no row group to copy; its schema may be empty
            continue
        skip = len(parquetfooter.MAGIC) if written else 0
        footer, body = _copy_body(part, out, skip)
        footers.append((written - skip, footer))
        written += body
        rows += part.rows
    out.write(parquetfooter.join(footers) if footers else parquetparts.empty_file(schema))
    return rows


def _copy_body(part: Part, out: Output, skip: int) -> tuple[parquetfooter.Footer, int]:
    """Copy ``part``'s body (from byte ``skip``) to ``out`` while hashing the whole part;
    returns its footer and the bytes copied once its size and sha256 match its record."""
    try:
        f, size = storage.open_input(part.url, "part")
    except FileNotFoundError:
        raise IncompleteError(f"{part.label} data file is missing: {part.url}") from None
    with f:
        if size != part.bytes or size < 12:
            raise IncompleteError(
                f"{part.label} is {size} bytes, its commit record says {part.bytes}"
            )
        f.seek(size - 8)
        tail = f.read(8)
        end = size - 8 - int.from_bytes(tail[:4], "little")  # where the footer starts
        if tail[4:] != parquetfooter.MAGIC or end < skip:
            raise IncompleteError(f"{part.label} is not a Parquet file")
        f.seek(0)
        sha = hashlib.sha256()
        pos = 0
        rest = bytearray()
        pending: Future[None] | None = None
        while data := f.read(CHUNK):
            sha.update(data)
            lo, hi = max(pos, skip), min(pos + len(data), end)
            if lo < hi:
                if pending is not None:
                    pending.result()  # one write in flight: memory stays a chunk or two
                pending = out.write(data[lo - pos : hi - pos])
            if pos + len(data) > end:
                rest += data[max(end - pos, 0) :]
            pos += len(data)
        if pending is not None:
            pending.result()
    if pos != size or sha.hexdigest() != part.sha256:
        raise IncompleteError(f"{part.label} does not match the sha256 of its commit record")
    return parquetfooter.Footer(bytes(rest[:-8])), end - skip


def write_json(parts: Sequence[Part], out: Output, fmt: str) -> int:
    """The ``jq -s .`` document (or JSON Lines) of Parquet parts; returns the values."""
    from workers.batches import table_to_jsonl  # the one Arrow -> JSON Lines writer

    parquetparts.memory_pool_for_merge()
    run_schema(parts)  # one run, one schema, whatever the output's format
    python_times = made_by_rows_path(parts)
    splice = Splice(out, fmt)
    total = 0
    for part in parts:
        with parquetparts.verified(part) as reader:
            for batch in reader.iter_batches(batch_size=JSON_ROWS, use_threads=False):
                lines = table_to_jsonl(batch, python_times=python_times)
                if lines:
                    splice.write(lines)
                    total += batch.num_rows
    splice.close()
    return total


def made_by_rows_path(parts: Sequence[Part]) -> bool:
    """Whether the rows batch format made the parts (the plan pins one processor identity, the
    batch format in it): their timestamps were Python ``datetime`` values, which its JSON Lines
    parts hold in orjson's form, so the same rows give the same document in either part format."""
    record = parts[0].record if parts else None
    identity = record.get("processor") if isinstance(record, dict) else None
    options = identity.get("options") if isinstance(identity, dict) else None
    return not isinstance(options, dict) or options.get("batch_format", "rows") == "rows"


def manifest(
    store: storage.Store | str, plan: layout.Plan, parts: Sequence[Part]
) -> tuple[bytes, int]:
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
        "store": str(store),
        "rows": rows,
        "generation": parts[0].record.get("generation") if parts else plan.generation,
        "processor": parts[0].record.get("processor") if parts else plan.processor,
        **parquetparts.schema_fields(schema),
        # What readers read: the parts holding rows, in shard order.
        "files": [p.url for p in parts if p.rows],
        "parts": listed,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n", rows


def success_url(store: storage.Store | str) -> str:
    return storage.join(store, "parts", "_SUCCESS")


def check_parts_format(fmt: str, part_format: str, store: storage.Store | None = None) -> None:
    """Refuse a merge format the parts (or the store) cannot give: the one rule, which merge
    applies to the plan it reads and check to the pipeline's parameters before any pod runs.
    JSON and JSON Lines come out of either part format; the Parquet fan-ins need Parquet parts,
    and the Delta commit a local store."""
    if fmt in ("parquet", "dataset", "delta") and part_format != "parquet":
        raise UsageError(
            f"merge --format {fmt} needs Parquet parts, and this run's parts are {part_format}: "
            "run split with --part-format parquet"
        )
    if fmt == "delta" and store is not None and not store.is_local:
        raise UsageError(DELTA_LOCAL_ONLY)


DELTA_LOCAL_ONLY = "merge --format delta writes local stores only (for now)"


def commit_delta(store: storage.Store, parts: Sequence[Part]) -> tuple[str, bytes, int]:
    """``--format delta``: commit the verified parts, in place, as one new version of the Delta
    table rooted at ``STORE/parts`` (nothing copied; a re-run commits another version naming
    the same files). Returns (the version's log entry URL, its bytes, rows)."""
    if not store.is_local:
        raise UsageError(DELTA_LOCAL_ONLY)
    schema = run_schema(parts)
    for part in parts:
        parquetparts.verify_only(part)
    try:
        from deltalake import DeltaTable, Schema
        from deltalake.transaction import AddAction, create_table_with_add_actions
    except ImportError as exc:
        raise failures.classify(exc) from None
    root = store.join("parts")
    actions = [
        AddAction(
            str(p.record.get("path", "")).removeprefix("parts/"),
            int(p.bytes or 0),
            {},
            int(float(p.record.get("started") or 0) * 1000),
            True,
            orjson.dumps({"numRecords": p.rows}).decode(),
        )
        for p in parts
        if p.rows
    ]
    create_table_with_add_actions(
        root.local_path, Schema.from_arrow(schema), actions, mode="overwrite"
    )
    version = DeltaTable(root.local_path).version()
    entry = storage.join(root, "_delta_log", f"{version:020d}.json")
    return entry, storage.read_bytes(entry, "Delta log entry"), sum(p.rows or 0 for p in parts)
