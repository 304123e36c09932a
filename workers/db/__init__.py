"""Databases chosen by SQLAlchemy URL: the interface the steps use, one module per backend.

PostgreSQL goes straight to psycopg 3 for its fast paths (COPY in, chunked rows or a
server-side cursor for streaming; :mod:`workers.db.postgres`), and a SQLite file (the
embedded default) straight to sqlite3 (:mod:`workers.db.sqlite`); both spare a shard pod
the SQLAlchemy import. Every other URL takes SQLAlchemy's generic path
(:mod:`workers.db.sqlalchemy`). This module holds what they share: the source, identifier
checks, the SQL of a key range and the base class. A backend's module is imported only
when a URL needs it (or its class is named here, e.g. ``db.PostgresDatabase``).
Identifiers are validated and quoted; values are always bound or quoted literals.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import failures, keys, values
from workers.errors import ProcessingError, UsageError
from workers.provenance import Generation
from workers.shards import Candidate

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str, what: str = "identifier") -> str:
    """Accept plain SQL identifiers only (optionally ``schema.table`` for tables)."""
    parts = name.split(".") if what == "table" else [name]
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise UsageError(
            f"invalid {what} name {name!r}: use letters, digits and _ (not starting with a digit)"
            + (", optionally schema.table" if what == "table" else "")
        )
    return name


def quote(name: str) -> str:
    """Quote a validated identifier (``schema.table`` quotes each part)."""
    return ".".join('"' + p + '"' for p in name.split("."))


@dataclass(frozen=True)
class Source:
    """Where a run's rows live: table, key column, optional run column, optional JSON column.

    With ``data_column`` set, a row is the JSON object stored there; without it, a
    row is a dict of every column of the table.
    """

    table: str
    key_column: str = "key"
    run_column: str | None = "run_id"
    data_column: str | None = "data"

    def __post_init__(self) -> None:
        check_identifier(self.table, "table")
        check_identifier(self.key_column, "column")
        if self.run_column:
            check_identifier(self.run_column, "column")
        if self.data_column:
            check_identifier(self.data_column, "column")


GENERATIONS_TABLE = "workers_generations"
"""Where produce records each run's generation, in the schema of the rows' table."""


def generations_table(source: Source) -> str:
    schema, _, _ = source.table.rpartition(".")
    return f"{schema}.{GENERATIONS_TABLE}" if schema else GENERATIONS_TABLE


def _generations_ddl(source: Source, text: str, real: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(generations_table(source))} ("
        f"table_name {text} NOT NULL, run_id {text} NOT NULL, generation {text} NOT NULL, "
        f"row_count BIGINT NOT NULL, generator {text} NOT NULL, args {text} NOT NULL, "
        f"created {real} NOT NULL, PRIMARY KEY (table_name, run_id))"
    )


def _written_columns(source: Source) -> tuple[str, str, str]:
    """The quoted run, key and data columns produce writes (run_id and data when unnamed)."""
    return (
        quote(source.run_column or "run_id"),
        quote(source.key_column),
        quote(source.data_column or "data"),
    )


_GEN_COLUMNS = "generation, row_count, generator, args, created"


def _generation_of(row: Any) -> Generation | None:
    if row is None:
        return None
    args = orjson.loads(row[3]) if row[3] else {}
    return Generation(str(row[0]), int(row[1]), str(row[2]), args, float(row[4]))


def _generation_values(source: Source, run_id: str, gen: Generation) -> dict[str, Any]:
    return {
        "t": source.table,
        "r": run_id,
        "g": gen.id,
        "n": gen.rows,
        "gen": gen.generator,
        "a": orjson.dumps(dict(gen.args)).decode(),
        "c": gen.created,
    }


@dataclass(frozen=True)
class KeyStats:
    rows: int
    min_key: keys.KeyValue | None
    max_key: keys.KeyValue | None
    nulls: int = 0
    """Rows whose key is NULL: no range holds them, so split refuses them."""


Key = int | keys.Bound | None
"""One end of a shard's read: an integer of a count's closed range, a typed
:class:`workers.keys.Bound`, or None for an open end."""


def is_postgres(url: str) -> bool:
    scheme = url.split(":", 1)[0].lower()
    return scheme.split("+", 1)[0] in ("postgresql", "postgres")


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (the embedded default), None for any other URL.

    Only the plain form: a query string, ``%`` escapes or ``:memory:`` keep SQLAlchemy's
    reading of the URL.
    """
    scheme, sep, path = url.partition(":///")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+pysqlite"):
        return None
    if not path or any(c in path for c in "?%#") or path.startswith(":memory:"):
        return None
    return path


def connect(url: str, connect_timeout: float = 10.0) -> Database:
    """Open the database a URL names: PostgreSQL through psycopg, a SQLite file through
    sqlite3, the rest through SQLAlchemy. Both direct paths spare a shard pod SQLAlchemy's
    import (~140 ms of CPU, most of a trivial shard's start-up)."""
    if is_postgres(url):
        from workers.db.postgres import PostgresDatabase

        return PostgresDatabase(url, connect_timeout)
    path = sqlite_path(url)
    if path is not None:
        from workers.db.sqlite import SqliteDatabase

        return SqliteDatabase(path, connect_timeout)
    from workers.db.sqlalchemy import SqlAlchemyDatabase

    return SqlAlchemyDatabase(url, connect_timeout)


class Database:
    """What the steps need from a database; one subclass per access path."""

    dialect = "generic"

    def replace_run(
        self, source: Source, run_id: str, rows: Iterable[bytes], generation: Generation
    ) -> Generation:
        """Replace every row of ``run_id`` with ``rows`` (JSON objects) and record
        ``generation`` (its row count set to what was written) in one transaction."""
        raise NotImplementedError

    def read_generation(self, source: Source, run_id: str) -> Generation | None:
        """The run's committed generation, None if produce never recorded one."""
        raise NotImplementedError

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside this block (the generation, then the rows) see one consistent snapshot."""
        yield

    def key_type(self, source: Source) -> keys.KeyType:
        """The key column's type, or exit 2 when it cannot cut a table into ranges."""
        raise NotImplementedError

    def key_stats(self, source: Source, run_id: str | None, key: keys.KeyType) -> KeyStats:
        """Rows, NULL keys and the smallest and largest key (as JSON values)."""
        raise NotImplementedError

    def key_cuts(
        self, source: Source, run_id: str | None, every: int, key: keys.KeyType
    ) -> list[Candidate]:
        """The rows where shards of ``every`` rows may start, read in one walk of the key's
        index by the database (:func:`cuts_sql`); only these keys reach the client."""
        raise NotImplementedError

    def count_range(self, source: Source, run_id: str | None, lo: Key, hi: Key) -> int:
        """The rows of a key range (a resume checks its checkpoint ends at a key's last row)."""
        raise NotImplementedError

    def stream_rows(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """Batches of exactly ``batch`` rows (the last may be shorter) in key order, each with
        the key of its last row: where a resumed shard continues (see :mod:`workers.checkpoints`)."""
        raise NotImplementedError

    def stream_arrow(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[Any, Any]]:
        """``stream_rows`` as Arrow record batches (``pyarrow.RecordBatch``, exactly ``batch``
        rows but the last, each with its last key), for the columnar batch formats. This
        generic form (the SQLAlchemy backend's) converts the Python rows; PostgreSQL and SQLite
        read into Arrow without a Python object per row (:mod:`workers.db.arrow`)."""
        from workers.db import arrow  # deferred: pyarrow, columnar shards only

        return arrow.from_rows(
            self.stream_rows(source, run_id, lo, hi, batch), source.table, source.data_column
        )

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]] | None:
        """Blocks of JSON Lines straight from the server with their row counts and last keys
        (blocks of exactly ``JSON_BATCH`` rows but the last), or None if unsupported."""
        return None

    def columns(self, source: Source) -> list[str] | None:
        """The table's column names in table order, or None when it does not exist."""
        raise NotImplementedError

    def check_columns(self, source: Source, *, creating: bool = False) -> bool:
        """Fail (exit 2) unless ``source.table`` has every column ``source`` names.

        Run before any work: SQLite takes a double-quoted unknown name for a string
        literal, so a misspelled column would otherwise read as no rows or as junk.
        ``creating`` (produce) accepts a missing table and checks the columns
        :meth:`replace_run` writes. Returns whether the table exists.
        """
        names = self.columns(source)
        if names is None:
            if creating:
                return False
            raise _no_table(source)
        wanted = [
            (source.key_column, "--key-column"),
            (source.run_column or ("run_id" if creating else None), "--run-column"),
            (source.data_column or ("data" if creating else None), "--data-column"),
        ]
        fold = self.dialect != "postgresql"  # SQLite (and most others) ignore the case
        have = {n.lower() if fold else n for n in names}
        for column, flag in wanted:
            if column and (column.lower() if fold else column) not in have:
                raise failures.error(
                    "db-unknown",
                    f"table {source.table!r} has no column {column!r}"
                    + ("" if creating else f" ({flag})")
                    + f"; its columns: {', '.join(names)}",
                )
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _table_info_sql(table: str) -> str:
    """SQLite's ``PRAGMA table_info`` for a possibly schema-qualified table: rows of
    (cid, name, declared type, ...), none when the table does not exist."""
    schema, _, name = table.rpartition(".")
    prefix = f"{quote(schema)}." if schema else ""
    return f"PRAGMA {prefix}table_info({quote(name)})"


def _sqlite_key_type(info: Sequence[Any], source: Source) -> keys.KeyType:
    """A SQLite key's type from ``PRAGMA table_info`` rows: its declared type's affinity (the
    column's collation applies to every comparison SQLite makes with it)."""
    want = source.key_column.lower()
    declared = next((str(r[2] or "") for r in info if str(r[1]).lower() == want), None)
    if declared is None:
        raise failures.error(
            "db-unknown", f"table {source.table!r} has no column {source.key_column!r}"
        )
    return keys.KeyType(keys.sqlite_affinity(declared), declared)


def _key_stats(row: Sequence[Any]) -> KeyStats:
    return KeyStats(
        int(row[0]),
        None if row[2] is None else keys.encode(row[2]),
        None if row[3] is None else keys.encode(row[3]),
        int(row[0]) - int(row[1]),
    )


def _row_encoder(source: Source, declared: list[values.Column]) -> values.RowEncoder:
    """The encoder of a read's rows by declared types: the data column's alone, or every column."""
    if source.data_column:
        want = source.data_column.lower()
        declared = [c for c in declared if c.name.lower() == want][:1]
    return values.RowEncoder(source.table, declared, bool(source.data_column))


def _where(
    source: Source, run_id: str | None, lo: Key, hi: Key, style: str, *more: str
) -> tuple[str, dict[str, Any]]:
    """WHERE clause for a key range (and the conditions ``more``); ``style`` is 'pg' (%(x)s)
    or 'sa' (:x) placeholders. A typed bound is compared by the database in the key's own
    type and collation: it is cast to the column's type, never to the bound's."""
    ph = (lambda n: f"%({n})s") if style == "pg" else (lambda n: f":{n}")
    conds: list[str] = []
    params: dict[str, Any] = {}
    if source.run_column and run_id is not None:
        conds.append(f"{quote(source.run_column)} = {ph('run')}")
        params["run"] = run_id
    k = quote(source.key_column)
    for name, end, ops in (("lo", lo, (">=", ">")), ("hi", hi, ("<=", "<"))):
        if end is None:
            continue
        if isinstance(end, keys.Bound):
            value = ph(name) if end.cast is None else f"CAST({ph(name)} AS {end.cast})"
            conds.append(f"{k} {ops[0] if end.inclusive else ops[1]} {value}")
            params[name] = end.value
        else:
            conds.append(f"{k} {ops[0]} {ph(name)}")
            params[name] = end
    conds.extend(more)
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def stats_sql(
    source: Source, run_id: str | None, style: str, value: Any = lambda e: e
) -> tuple[str, dict[str, Any]]:
    """Rows, non-NULL keys, the smallest and the largest key (``value`` makes them JSON
    values in SQL): each end one probe of the key's index."""
    where, params = _where(source, run_id, None, None, style)
    k, t = quote(source.key_column), quote(source.table)
    inner, _ = _where(source, run_id, None, None, style, f"{k} IS NOT NULL")
    ends = [f"(SELECT {value(k)} FROM {t}{inner} ORDER BY {k}{d} LIMIT 1)" for d in ("", " DESC")]
    return f"SELECT count(*), count({k}), {ends[0]}, {ends[1]} FROM {t}{where}", params


def count_sql(
    source: Source, run_id: str | None, lo: Key, hi: Key, style: str
) -> tuple[str, dict[str, Any]]:
    where, params = _where(source, run_id, lo, hi, style)
    return f"SELECT count(*) FROM {quote(source.table)}{where}", params


def cuts_sql(
    source: Source, run_id: str | None, every: int, style: str, value: Any = lambda e: e
) -> tuple[str, dict[str, Any]]:
    """The rows where a shard may start, in one walk of the key's index in key order.

    One window (``ORDER BY key``) gives each row its position, the position of the first and
    the last row holding its key (``rank()`` and ``count(*)`` over peers: equal keys are the
    database's equal, in the column's collation) and the key after it. Only the rows at
    positions 1 + every*k, and the last row of a key repeated more than ``every`` times,
    leave the server (:class:`workers.shards.Candidate`); ``value`` makes keys JSON values
    in SQL, on those rows alone.
    """
    where, params = _where(source, run_id, None, None, style)
    k = quote(source.key_column)
    params["every"] = every
    ph = "%(every)s" if style == "pg" else ":every"
    mod = "%%" if style == "pg" else "%"
    sql = (
        f"SELECT {value('s.v')}, s.rn, s.rk, s.le, {value('s.nv')} FROM ("
        f"SELECT {k} AS v, row_number() OVER w AS rn, rank() OVER w AS rk, "
        f"count(*) OVER w AS le, lead({k}) OVER w AS nv FROM {quote(source.table)}{where} "
        f"WINDOW w AS (ORDER BY {k})) s "
        f"WHERE (s.rn > 1 AND (s.rn - 1) {mod} {ph} = 0) OR (s.rn = s.le AND s.le - s.rk >= {ph}) "
        "ORDER BY s.rn"
    )
    return sql, params


def candidates(rows: Iterable[Sequence[Any]]) -> list[Candidate]:
    """:func:`cuts_sql`'s rows as candidates, their keys as JSON values."""
    return [
        Candidate(
            keys.encode(r[0]),
            int(r[1]),
            int(r[2]),
            int(r[3]),
            None if r[4] is None else keys.encode(r[4]),
        )
        for r in rows
    ]


def _select(
    source: Source,
    run_id: str | None,
    lo: Key,
    hi: Key,
    style: str,
    cols: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A key range's rows in key order: the key first, then the JSON column, or every column,
    unless ``cols`` says."""
    where, params = _where(source, run_id, lo, hi, style)
    if cols is None:
        cols = quote(source.data_column) if source.data_column else "*"
        cols = f"{quote(source.key_column)}, {cols}"
    return (
        f"SELECT {cols} FROM {quote(source.table)}{where} ORDER BY {quote(source.key_column)}",
        params,
    )


JSON_BATCH = 10_000
"""Rows per batch of the shard fast path: ~1 MB of typical rows."""


def _batch(source: Source, names: list[str], rows: Sequence[Any]) -> list[Any]:
    """A batch for the processor from rows whose first column is the key: the JSON column's
    values, or each row's columns by name."""
    if source.data_column:
        return [_as_object(r[1]) for r in rows]
    return [dict(zip(names, r[1:], strict=True)) for r in rows]


def _as_object(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _no_table(source: Source) -> Exception:
    return failures.error("db-unknown", f"table {source.table!r} does not exist")


def json_rows(objects: Iterable[Any], what: str = "generator") -> Iterator[bytes]:
    """Serialize generator output with orjson; a non-object or unserializable row is a ProcessingError."""
    dumps = orjson.dumps
    for i, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise ProcessingError(f"{what} row {i} is a {type(obj).__name__}, expected a dict")
        try:
            yield dumps(obj)
        except TypeError as exc:
            raise ProcessingError(f"{what} row {i} is not JSON-serializable: {exc}") from None


_BACKENDS = {
    "PostgresDatabase": "workers.db.postgres",
    "SqliteDatabase": "workers.db.sqlite",
    "SqlAlchemyDatabase": "workers.db.sqlalchemy",
}


def __getattr__(name: str) -> Any:
    """``db.PostgresDatabase`` and the other backends' classes, imported on first use."""
    module = _BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
