"""PostgreSQL into Arrow through the ADBC driver (``adbc-driver-postgresql``: COPY binary).

The driver decodes COPY's binary rows into Arrow arrays in C, so no Python runs per row.
It opens its own connection; inside a shard's snapshot that connection imports the
snapshot the psycopg connection exported (``SET TRANSACTION SNAPSHOT``), so the rows are
the ones of the generation read before them. Column types (README, Column types):
numeric(p,s) with p <= 38 becomes decimal128(p,s), any other numeric a string of its exact
digits; uuid, interval (ISO 8601), time and enum values strings made by the server; json
and jsonb ``arrow.json`` (the JSON text); timestamptz timestamp[us, UTC].
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from workers import failures, values
from workers.db import Source, quote
from workers.db.arrow import KEY, exact_batches, json_column_batch

_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_AS_TEXT = frozenset({"uuid", "interval", "time", "timetz"})
"""Types read as the server's text: Arrow's forms of them (fixed-size binary, month-day-nano
intervals, times) are ones pandas and polars handle poorly or JSON writes differently."""


def _decimal(col: values.PgColumn) -> pa.DataType | None:
    m = _NUMERIC.match(col.type)
    if col.base != "numeric" or col.array or not m or int(m.group(1)) > 38:
        return None
    return pa.decimal128(int(m.group(1)), int(m.group(2)))


def _select_item(col: values.PgColumn) -> str:
    name = values.quote_any(col.name)
    if col.kind == "e" or col.base in _AS_TEXT or (col.base == "numeric" and _decimal(col) is None):
        return f"{name}::text{'[]' if col.array else ''} AS {name}"
    return name


def stream(
    conninfo: str,
    connect_timeout: float,
    snapshot_id: str | None,
    source: Source,
    columns: list[values.PgColumn],
    where: str,
    batch: int,
    key_sql: str | None = None,
) -> Iterator[tuple[pa.RecordBatch, Any]]:
    """Batches of exactly ``batch`` rows of the key range, key order, each with its last key
    (read as ``key_sql`` when given: a typed key's JSON value, see :mod:`workers.keys`)."""

    items = ", ".join(_select_item(c) for c in columns)
    sql = (
        f"SELECT {key_sql or quote(source.key_column)} AS {KEY}, {items} FROM {quote(source.table)}"
        f"{where} ORDER BY {quote(source.key_column)}"
    )
    sep = "&" if "?" in conninfo else "?"
    uri = (
        f"{conninfo}{sep}connect_timeout={max(1, round(connect_timeout))}&application_name=workers"
    )
    with _Session(uri) as session:
        session.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if snapshot_id is not None:
            session.run(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
        session.run(values.PG_SESSION_SQL)
        with session.query(sql) as (reader, cancel):
            typed = ((_typed(rb, source, columns), k) for rb, k in exact_batches(reader, batch))
            yield from _read_ahead(typed, cancel)
        session.run("COMMIT")


_AHEAD = 16
"""Batches read ahead of the consumer (5,000 rows each by default: some 10 MB of typed rows)."""


def _read_ahead(
    batches: Iterator[tuple[pa.RecordBatch, Any]], cancel: Callable[[], None]
) -> Iterator[tuple[pa.RecordBatch, Any]]:
    """``batches``, read and typed on a thread up to :data:`_AHEAD` batches ahead.

    The driver's decoding of COPY binary and Parquet's encoding of the batches before are
    both C++ that releases the GIL: on a thread they overlap instead of taking turns. An
    error of the read is raised here, where the batch it cut short would have come; a
    consumer that stops early cancels the statement (the thread may be waiting on the
    server) and waits for the thread before the reader closes.
    """
    import queue
    import threading

    items: queue.Queue[Any] = queue.Queue(_AHEAD)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
        except BaseException as exc:  # re-raised by the consumer
            put(exc)
            return
        put(end)

    thread = threading.Thread(target=run, name="workers-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if thread.is_alive():
            cancel()
        thread.join()


class _Session:
    """One ADBC connection (autocommit, ADBC's default: the transaction is the SQL's own).

    The driver manager's low-level API, not its DB-API module: ``adbc_driver_manager.dbapi``
    imports ``pyarrow.dataset``, which imports pandas, and polars when installed (~0.4-0.9 s
    of start-up, as much as psql takes for 1M rows); none of it is used here. Queries run as
    the DB-API runs them (a SIGINT cancels the statement); the rows come as the same
    pyarrow reader ``Cursor.fetch_record_batch`` returns.
    """

    def __init__(self, uri: str) -> None:
        import adbc_driver_manager as adbc
        import adbc_driver_postgresql

        self._adbc = adbc
        self._stack = contextlib.ExitStack()
        try:
            db = self._stack.enter_context(adbc_driver_postgresql.connect(uri))
            self._conn = self._stack.enter_context(adbc.AdbcConnection(db))
        except Exception as exc:
            self._stack.close()
            raise failures.classify(exc) from None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _execute(self, sql: str) -> tuple[Any, Any]:
        stmt = self._adbc.AdbcStatement(self._conn)
        try:
            stmt.set_sql_query(sql)
            handle, _ = self._adbc._lib._blocking_call(stmt.execute_query, (), {}, stmt.cancel)
        except BaseException:
            stmt.close()
            raise
        return stmt, handle

    def run(self, sql: str) -> None:
        """A statement whose result (if any) is read and dropped."""
        stmt, handle = self._execute(sql)
        with stmt:
            pa.RecordBatchReader._import_from_c(handle.address).read_all()

    @contextlib.contextmanager
    def query(self, sql: str) -> Iterator[tuple[pa.RecordBatchReader, Callable[[], None]]]:
        """The rows' reader, and what cancels the statement (from any thread)."""
        stmt, handle = self._execute(sql)
        with stmt:
            reader = pa.RecordBatchReader._import_from_c(handle.address)
            try:
                yield reader, stmt.cancel
            finally:
                reader.close()


def _typed(rb: pa.RecordBatch, source: Source, columns: list[values.PgColumn]) -> pa.RecordBatch:
    """The batch in the documented Arrow types; the data column parsed into columns."""
    if source.data_column:
        return json_column_batch(rb.column(0), source.table, source.data_column)
    arrays: list[Any] = []
    for col, arr in zip(columns, rb.columns, strict=True):
        want = _decimal(col)
        if want is not None:
            arr = _to_decimal(arr, want, source.table, col)
        elif col.base in _EARLIEST and not col.array:
            _check_finite(arr, source.table, col)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


_EARLIEST = {"date": -2_440_588, "timestamp": -210_866_803_200_000_000}
_EARLIEST["timestamptz"] = _EARLIEST["timestamp"]
"""PostgreSQL's earliest date (4713 BC) in days, and timestamp in microseconds, since 1970.
The driver turns infinity and -infinity into values far below these (its epoch shift wraps
around the server's sentinels), which Arrow would take for dates millions of years ago."""


def _check_finite(arr: Any, table: str, col: values.PgColumn) -> None:
    ints = arr.view(pa.int32() if pa.types.is_date32(arr.type) else pa.int64())
    low = pc.min(ints).as_py()
    if low is not None and low < _EARLIEST[col.base]:
        raise values.unsupported(
            table,
            [(col.name, col.type)],
            "holds infinity or -infinity, which Arrow has no value for "
            "(--batch-format rows writes them as strings)",
        )


def _to_decimal(arr: Any, want: pa.DataType, table: str, col: values.PgColumn) -> pa.Array:
    storage = arr.storage if isinstance(arr.type, pa.BaseExtensionType) else arr
    try:
        return pc.cast(storage, want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise values.unsupported(
            table,
            [(col.name, col.type)],
            "holds NaN or Infinity, which decimal128 cannot hold "
            "(--batch-format rows writes them as strings)",
        ) from None
