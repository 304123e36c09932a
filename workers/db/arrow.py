"""Reading rows into Arrow record batches: what the backends share for ``stream_arrow``.

Every backend yields batches of exactly ``batch`` rows (the last may be shorter), each with
the key of its last row, as ``stream_rows`` does: checkpoint boundaries depend only on the
rows, so a resumed part is byte-identical to a clean run's. The built-in table's JSON data
column becomes columns through Arrow's JSON reader (C++), never a Python dict per row.
pyarrow is imported here, so only a shard with a columnar batch format imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from workers import failures, keys

KEY = "__workers_key"
"""The name the key column is read under (first column), so a table column named like it
never collides; it is dropped from the batch the processor sees."""


def exact_batches(
    batches: Iterable[pa.RecordBatch], size: int
) -> Iterator[tuple[pa.RecordBatch, Any]]:
    """Re-cut record batches (key first) into batches of exactly ``size`` rows, the last
    shorter; each with its last key, the key column dropped. Slicing is zero-copy; only a
    batch that spans two reads is concatenated."""
    held: list[pa.RecordBatch] = []
    count = 0
    for rb in batches:
        while rb.num_rows:
            take = min(size - count, rb.num_rows)
            held.append(rb.slice(0, take))
            count += take
            rb = rb.slice(take)
            if count == size:
                yield _emit(held)
                held, count = [], 0
    if count:
        yield _emit(held)


def _emit(held: list[pa.RecordBatch]) -> tuple[pa.RecordBatch, Any]:
    rb = held[0] if len(held) == 1 else pa.concat_batches(held)
    last_key = keys.encode(rb.column(0)[-1].as_py())
    return rb.drop_columns([rb.schema.names[0]]), last_key


def json_column_batch(texts: pa.Array, table: str, column: str) -> pa.RecordBatch:
    """A batch of JSON objects (one text per row, a string or ``arrow.json`` array) as columns,
    parsed by Arrow's JSON reader. Each batch infers its own schema (the same rows always make
    the same one, so a resumed part keeps its bytes); a SQL NULL is a row of nulls."""
    if isinstance(texts.type, pa.BaseExtensionType):
        texts = texts.storage
    n = len(texts)
    if n == 0:
        return pa.RecordBatch.from_pydict({})
    texts = pc.fill_null(texts, "{}")
    lines = pc.binary_join_element_wise(texts, "", "\n")  # each text + "\n", in C++
    buf = _value_buffer(lines)
    # Raw line breaks inside a stored value are whitespace between tokens (the server checked
    # the JSON): only then does the reader need its slower multi-line mode.
    multiline = pc.sum(pc.count_substring(texts, "\n")).as_py() or 0
    try:
        parsed = pa_json.read_json(
            pa.BufferReader(buf),
            parse_options=pa_json.ParseOptions(newlines_in_values=multiline > 0),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, buf.size + 1)),
        )
    except pa.ArrowInvalid as exc:
        raise failures.error(
            "column-type",
            f"table {table!r} column {column!r}: a value is not a JSON object Arrow can read "
            f"as columns ({failures.first_line(exc)}; --batch-format rows reads it)",
        ) from None
    if parsed.num_rows != n:
        raise failures.error(
            "column-type",
            f"table {table!r} column {column!r}: {n} values made {parsed.num_rows} rows; "
            "each value must be one JSON object",
        )
    return parsed.combine_chunks().to_batches()[0] if parsed.num_columns else _empty_rows(n)


def texts(values: list[Any], table: str, column: str) -> pa.Array:
    """A data column's values as a string array: each must be JSON text (or NULL)."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise failures.error(
            "column-type",
            f"table {table!r} column {column!r} holds a value that is not JSON text "
            f"({failures.first_line(exc)})",
        ) from None


def _empty_rows(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(n)], names=["_"]).drop_columns(["_"])


def _value_buffer(strings: pa.Array) -> pa.Buffer:
    """The concatenated values of a string array, a zero-copy slice of its data buffer."""
    if strings.type != pa.large_string():
        strings = strings.cast(pa.large_string())
    _, offsets_buf, data = strings.buffers()
    offsets = pa.Array.from_buffers(
        pa.int64(), len(strings) + 1, [None, offsets_buf], 0, strings.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return data.slice(start, end - start) if data is not None else pa.py_buffer(b"")


def from_rows(
    batches: Iterable[tuple[list[Any], Any]], table: str, column: str | None
) -> Iterator[tuple[pa.RecordBatch, Any]]:
    """Arrow batches from ``stream_rows``' Python rows: the SQLAlchemy backend's path (any
    database SQLAlchemy knows, so no columnar reader to rely on). It costs Python per row."""
    for rows, last_key in batches:
        if column is not None:
            import orjson

            texts = pa.array([orjson.dumps(r).decode() if r is not None else None for r in rows])
            yield json_column_batch(texts, table, column), last_key
        else:
            yield pa.RecordBatch.from_pylist(rows), last_key


_SQLITE_TYPES: dict[str, Any] = {
    "int": pa.int64(),
    "real": pa.float64(),
    "numeric": pa.float64(),  # SQLite stores NUMERIC/DECIMAL values as INTEGER or REAL
    "text": pa.string(),
    "bool": pa.bool_(),
    "json": pa.json_(),
}


def sqlite_batch(rows: list[Any], names: list[str], affinities: list[str], table: str) -> Any:
    """A record batch from sqlite3 rows (key first), built column by column: each column's
    type by its declared type (README, Column types); others by their values."""
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(columns[0], pa.int64())]
    for name, aff, col in zip(names, affinities, columns[1:], strict=True):
        want = _SQLITE_TYPES.get(aff)
        try:
            if aff == "json":
                arrays.append(pa.ExtensionArray.from_storage(want, pa.array(col, pa.string())))
            elif aff == "bool":
                ints = pa.array(col, pa.int64())
                if pc.all(pc.is_in(ints.drop_null(), value_set=pa.array([0, 1]))).as_py() is False:
                    raise pa.ArrowInvalid("a value other than 0 or 1")
                arrays.append(pc.cast(ints, pa.bool_()))
            else:
                arrays.append(pa.array(col, want))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise failures.error(
                "column-type",
                f"table {table!r}: column {name!r} holds values Arrow cannot read as one type "
                f"({failures.first_line(exc)}; --batch-format rows reads it)",
            ) from None
    return pa.RecordBatch.from_arrays(arrays, names=[KEY, *names])
