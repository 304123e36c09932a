"""Batch formats: the processor gets Arrow record batches, pandas or polars DataFrames.

``shard --batch-format rows`` (the default) hands the processor a list of row dicts; with
``pyarrow`` it gets one ``pyarrow.RecordBatch`` per batch and returns a RecordBatch or Table
(or an iterable of them); with ``pandas`` and ``polars`` it gets and returns a DataFrame.
The rows come from :meth:`workers.db.Database.stream_arrow`; what the processor returns
becomes an Arrow table, written as JSON Lines by :func:`table_to_jsonl` (or as a Parquet part
by the part writer). pyarrow, pandas and polars are imported only by a shard that asks for
them, so a ``rows`` shard pays nothing for them at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from workers import failures, plugins
from workers.errors import ProcessingError, UsageError

ROWS = "rows"
FORMATS = (ROWS, "pyarrow", "pandas", "polars")

_EXTRA = {"pyarrow": "arrow", "pandas": "pandas", "polars": "polars"}
_MODULES = {
    "pyarrow": ("pyarrow",),
    "pandas": ("pyarrow", "pandas"),
    "polars": ("pyarrow", "polars"),
}
_TAKES = {
    "pyarrow": "one pyarrow.RecordBatch, returning a RecordBatch or Table (or an iterable of them)",
    "pandas": "one pandas.DataFrame, returning a DataFrame (or an iterable of them)",
    "polars": "one polars.DataFrame, returning a DataFrame (or an iterable of them)",
}


def require(fmt: str) -> None:
    """Fail (exit 2) before any work when the batch format's libraries are not installed."""
    import importlib

    for name in _MODULES[fmt]:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(
                f"--batch-format {fmt} needs {name}, which is not installed ({exc}): "
                f"pip install 'fanout-workers[{_EXTRA[fmt]}]'"
            ) from None


def empty_batch(fmt: str) -> Any:
    """An empty batch of the format: what the signature check calls the processor with."""
    import pyarrow as pa

    rb = pa.RecordBatch.from_pydict({})
    return rb if fmt == "pyarrow" else _to_format(rb, fmt)


def check_signature(func: Callable[..., Any], path: str, fmt: str) -> None:
    """Before any work: the processor must take one batch of the format (exit 3 otherwise)."""
    plugins.check_call(
        func,
        path,
        "processor",
        f"with --batch-format {fmt} it is called with {_TAKES[fmt]}",
        empty_batch(fmt),
    )


def _plain(rb: Any) -> Any:
    """The batch with extension columns (arrow.json, opaque) as their storage: pandas and
    polars read plain types only."""
    import pyarrow as pa

    if not any(isinstance(t, pa.BaseExtensionType) for t in rb.schema.types):
        return rb
    arrays = [c.storage if isinstance(c.type, pa.BaseExtensionType) else c for c in rb.columns]
    return pa.RecordBatch.from_arrays(arrays, names=rb.schema.names)


def _to_format(rb: Any, fmt: str) -> Any:
    if fmt == "pyarrow":
        return rb
    if fmt == "pandas":
        # pandas' own (NumPy) dtypes, what pandas code expects: an integer column holding
        # nulls becomes float64, decimals Decimal objects (docs/reference/batch-formats.md).
        return _plain(rb).to_pandas()
    import polars as pl

    return pl.from_arrow(_plain(rb))


def _to_table(value: Any, fmt: str) -> Any:
    """One returned value as an Arrow table, or None when it is not of the format."""
    import pyarrow as pa

    if fmt == "pyarrow":
        if isinstance(value, pa.RecordBatch):
            return pa.Table.from_batches([value])
        return value if isinstance(value, pa.Table) else None
    if fmt == "pandas":
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return pa.Table.from_pandas(value, preserve_index=False)
        return None
    import polars as pl

    return value.to_arrow() if isinstance(value, pl.DataFrame) else None


def _wrong_type(func: Callable[..., Any], path: str, fmt: str, value: Any) -> ProcessingError:
    where = plugins.definition(func)
    err = ProcessingError(
        f"processor {path} returned a {type(value).__module__}.{type(value).__qualname__}; "
        f"with --batch-format {fmt} a processor takes {_TAKES[fmt]}"
        + (f" (at {where})" if where else "")
    )
    err.cause = "user-code"
    return err


def _tables(func: Callable[..., Any], path: str, fmt: str, result: Any) -> list[Any]:
    """What the processor returned, as Arrow tables (a wrong type is the user's fault, exit 3)."""
    one = _to_table(result, fmt)
    if one is not None:
        return [one]
    if result is None or isinstance(result, (str, bytes, dict)) or not isinstance(result, Iterable):
        raise _wrong_type(func, path, fmt, result)
    out = []
    try:
        for value in result:
            table = _to_table(value, fmt)
            if table is None:
                raise _wrong_type(func, path, fmt, value)
            out.append(table)
    except ProcessingError:
        raise
    except Exception as exc:  # a generator of the user's failed while we iterated it
        raise failures.user_code_error(
            f"processor {path}", f"raised {type(exc).__name__}: {exc}", exc, module=path
        ) from None
    return out


def _concat(func: Callable[..., Any], path: str, tables: list[Any]) -> Any:
    import pyarrow as pa

    if not tables:
        return pa.table({})
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        where = plugins.definition(func)
        err = ProcessingError(
            f"processor {path} returned tables of different schemas for one batch "
            f"({failures.first_line(exc)})" + (f" (at {where})" if where else "")
        )
        err.cause = "user-code"
        raise err from None


def apply(
    func: Callable[..., Any] | None,
    fmt: str,
    path: str,
    batches: Iterable[tuple[Any, int]],
) -> Iterator[tuple[Any, int, int, int]]:
    """The processor over each batch: (table out, rows in, rows out, last key). Without a
    processor, the batches pass through as tables."""
    import pyarrow as pa

    for rb, last_key in batches:
        if func is None:
            table = pa.Table.from_batches([rb])
        else:
            try:
                result = func(_to_format(rb, fmt))
            except Exception as exc:
                raise failures.user_code_error(
                    f"processor {path}", f"raised {type(exc).__name__}: {exc}", exc, module=path
                ) from None
            table = _concat(func, path, _tables(func, path, fmt, result))
        yield table, rb.num_rows, table.num_rows, last_key


def table_to_jsonl(table: Any, *, python_times: bool = False) -> bytes:
    """JSON Lines of an Arrow table, by docs/reference/column-types.md: the one writer of JSON
    Lines from Arrow (a shard's columnar batches, merge's JSON over Parquet parts).

    No Python per row for the common types: timestamps become strings by polars' formatter,
    dates and times by Arrow's kernels; polars writes integers, floats, strings, booleans, nulls, lists and structs
    (``write_ndjson``, in Rust: the bytes orjson writes, about 4x faster); decimal and
    arrow.json columns are spliced in as their text (exact digits; the JSON text as stored)
    with Arrow's string kernels. A table holding anything else (binary, NaN or infinite
    floats, other extension types) goes through Python per row: orjson, base64 binary, NaN
    and the infinities as strings.

    ``python_times``: timestamps as the rows path wrote them, from the Python ``datetime`` a
    processor returned (orjson's form: six fraction digits when there is a fraction), for a
    Parquet part the rows path made; otherwise with PostgreSQL's trimmed fraction.
    """
    if table.num_rows == 0:
        return b""
    if table.num_columns == 0:
        return b"{}\n" * table.num_rows
    table = _normalized(table, python_times)
    kinds = _kinds(table)
    if kinds is None:
        return _jsonl_per_row(table)
    if "raw" not in kinds:
        return _polars_jsonl(table)
    return _spliced_jsonl(table, kinds)


def _polars_jsonl(table: Any) -> bytes:
    import io

    import polars as pl

    buf = io.BytesIO()
    pl.from_arrow(table).write_ndjson(buf)  # type: ignore[union-attr]
    return buf.getvalue()


def _kinds(table: Any) -> list[str] | None:
    """Per column: "plain" (polars writes it) or "raw" (its text is the JSON); None when a
    column needs Python per row, or polars is not installed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        import polars  # noqa: F401
    except ImportError:
        return None

    def plain(t: Any) -> bool:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return plain(t.value_type)
        if pa.types.is_struct(t):
            return all(plain(f.type) for f in t)
        return (
            pa.types.is_integer(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_null(t)
            or pa.types.is_floating(t)
        )

    kinds = []
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_decimal(t) or (
            isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"
        ):
            kinds.append("raw")
        elif not plain(t) or (
            pa.types.is_floating(t) and pc.all(pc.is_finite(col)).as_py() is False
        ):
            return None
        else:
            kinds.append("plain")
    return kinds


def _spliced_jsonl(table: Any, kinds: list[str]) -> bytes:
    """Lines joined column by column in Arrow: runs of plain columns written by polars (one
    line each, braces cut off), raw columns as ``"name":TEXT``, in the table's order."""
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc

    large = pa.large_string()
    pieces: list[Any] = []
    run: list[str] = []

    def _s(text: str) -> Any:
        return pa.scalar(text, large)

    def flush() -> None:
        if run:
            text = _polars_jsonl(table.select(run)).decode()
            lines = pc.list_flatten(pc.split_pattern(pa.array([text], pa.large_string()), "\n"))
            lines = lines.slice(0, len(lines) - 1)  # the empty string after the last newline
            pieces.append(pc.utf8_slice_codeunits(lines, 1, -1).cast(large))  # without { and }
            run.clear()

    for name, kind, col in zip(table.schema.names, kinds, table.columns, strict=True):
        if kind == "plain":
            run.append(name)
            continue
        flush()
        arr = col.combine_chunks()
        text = (
            arr.storage if isinstance(arr.type, pa.BaseExtensionType) else pc.cast(arr, pa.string())
        )
        # Raw line breaks in valid JSON lie between tokens: spaces keep a value on one line.
        text = pc.replace_substring(pc.replace_substring(text, "\r", " "), "\n", " ")
        prefix = orjson.dumps(name).decode() + ":"
        text = pc.fill_null(text, "null").cast(large)
        pieces.append(pc.binary_join_element_wise(_s(prefix), text, _s("")))
    flush()
    body = pc.binary_join_element_wise(*pieces, _s(","))
    lines = pc.binary_join_element_wise(_s("{"), body, _s("}\n"), _s(""))
    return _concatenated(lines)


def _concatenated(strings: Any) -> bytes:
    import pyarrow as pa

    strings = strings.cast(pa.large_string())
    _, offsets_buf, data = strings.buffers()
    offsets = pa.Array.from_buffers(
        pa.int64(), len(strings) + 1, [None, offsets_buf], 0, strings.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return data.to_pybytes()[start:end] if data is not None else b""


def _normalized(table: Any, python_times: bool = False) -> Any:
    """Temporal columns as the strings the type table documents; dictionaries decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, changed = [], False
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            col, t, changed = pc.cast(col, t.value_type), t.value_type, True
        if pa.types.is_timestamp(t):
            col, changed = _timestamp_text(col, t.tz is not None, python_times), True
        elif pa.types.is_date(t):
            col, changed = pc.strftime(col, format="%Y-%m-%d"), True
        elif pa.types.is_time(t):
            col, changed = pc.cast(col, pa.string()), True
        arrays.append(col)
    return pa.table(arrays, names=table.schema.names) if changed else table


def _timestamp_text(col: Any, utc: bool, python_times: bool = False) -> Any:
    """ISO 8601 text with the fraction PostgreSQL writes (trailing zeros trimmed), or with
    ``python_times`` the six digits orjson writes for a ``datetime`` (none for a whole second);
    in UTC with "+00:00" for a zoned timestamp. polars formats ~6x faster than Arrow's strftime."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # A fraction of zeros goes in both forms; only PostgreSQL's trims the digits of the others.
    trim = r"(\.\d*?)0+$" if not python_times else r"(\.)0+$"
    try:
        import polars as pl
    except ImportError:
        if python_times:
            col = pc.cast(col, pa.timestamp("us", col.type.tz))  # "%S" then has six digits
        # "%S" carries the unit's fraction ("05.678000"), trimmed below.
        text = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        text = pc.replace_substring_regex(text, trim, r"\1")
        text = pc.replace_substring_regex(text, r"\.$", "")
    else:
        series = pl.Series(col.cast(pa.timestamp(col.type.unit)))  # UTC wall time, naive
        if python_times:
            text = (
                series.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
                .str.replace(r"\.0+$", "")
                .to_arrow()
                .cast(pa.string())
            )
        else:
            text = (
                series.dt.to_string("%Y-%m-%dT%H:%M:%S%.f")  # %.f: 3, 6 or 9 digits, none for 0
                .str.replace(r"(\.\d*[1-9])0+$", "${1}")
                .str.replace(r"\.0+$", "")
                .to_arrow()
                .cast(pa.string())
            )
    return pc.binary_join_element_wise(text, "+00:00", "") if utc else text


def _jsonl_per_row(table: Any) -> bytes:
    import orjson
    import pyarrow as pa

    from workers.values import default

    names = table.schema.names
    columns = []
    for field, chunked in zip(table.schema, table.columns, strict=True):
        t, col = field.type, chunked.combine_chunks()
        values: list[Any]
        if isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json":
            # the JSON text as it is
            values = [
                orjson.Fragment(v) if v is not None else None for v in col.storage.to_pylist()
            ]
        elif isinstance(t, pa.BaseExtensionType):
            values = col.to_pylist()  # the type's own values: a UUID for arrow.uuid
        elif pa.types.is_floating(t):
            if not pa.types.is_float64(
                t
            ):  # the shortest text of the float32 (1.1, not 1.100000023841858)
                values = [
                    None if v is None else float(v) for v in col.cast(pa.string()).to_pylist()
                ]
            else:
                values = col.to_pylist()
            values = [_float(v) for v in values]
        else:
            values = col.to_pylist()
        columns.append(values)
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    rows = zip(*columns, strict=True)
    return b"".join(
        [dumps(dict(zip(names, r, strict=True)), default=default, option=opt) for r in rows]
    )


def _float(v: Any) -> Any:
    """NaN and the infinities as the type table's strings (JSON has no number for them)."""
    if v is None or (v == v and abs(v) != float("inf")):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
