"""Databases chosen by SQLAlchemy URL.

PostgreSQL goes straight to psycopg 3 for its fast paths (COPY in, chunked rows or a
server-side cursor for streaming), and a SQLite file (the embedded default) straight to
sqlite3; both spare a shard pod the SQLAlchemy import. Every other URL takes
SQLAlchemy's generic path.
Identifiers are validated and quoted; values are always bound or quoted literals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from workers import failures, values
from workers.errors import ProcessingError, UsageError
from workers.provenance import Generation

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


_COPY_CHUNK = 1000
"""Rows per COPY write when loading: ~100 KB of typical rows, under psycopg's 128 KB
write size (so it never slices a copy). Not more: every bytes object orjson returns
keeps a multi-KB allocation, so 10,000 held at once cost ~90 MB of RSS."""


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
    min_key: int | None
    max_key: int | None


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
        return PostgresDatabase(url, connect_timeout)
    path = sqlite_path(url)
    if path is not None:
        return SqliteDatabase(path, connect_timeout)
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

    def key_stats(self, source: Source, run_id: str | None) -> KeyStats:
        raise NotImplementedError

    def key_boundaries(self, source: Source, run_id: str | None, every: int) -> list[int]:
        """Keys at row positions every, 2*every, ... (in key order): exact equal-row cut points."""
        raise NotImplementedError

    def stream_rows(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Batches of exactly ``batch`` rows (the last may be shorter) in key order, each with
        the key of its last row: where a resumed shard continues (see :mod:`workers.checkpoints`)."""
        raise NotImplementedError

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]] | None:
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


def _row_encoder(source: Source, declared: list[values.Column]) -> values.RowEncoder:
    """The encoder of a read's rows by declared types: the data column's alone, or every column."""
    if source.data_column:
        want = source.data_column.lower()
        declared = [c for c in declared if c.name.lower() == want][:1]
    return values.RowEncoder(source.table, declared, bool(source.data_column))


def _where(
    source: Source, run_id: str | None, lo: int | None, hi: int | None, style: str
) -> tuple[str, dict[str, Any]]:
    """WHERE clause for a key range; ``style`` is 'pg' (%(x)s) or 'sa' (:x) placeholders."""
    ph = (lambda n: f"%({n})s") if style == "pg" else (lambda n: f":{n}")
    conds: list[str] = []
    params: dict[str, Any] = {}
    if source.run_column and run_id is not None:
        conds.append(f"{quote(source.run_column)} = {ph('run')}")
        params["run"] = run_id
    if lo is not None:
        conds.append(f"{quote(source.key_column)} >= {ph('lo')}")
        params["lo"] = lo
    if hi is not None:
        conds.append(f"{quote(source.key_column)} <= {ph('hi')}")
        params["hi"] = hi
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def _select(
    source: Source,
    run_id: str | None,
    lo: int | None,
    hi: int | None,
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


class PostgresDatabase(Database):
    """psycopg 3: COPY FROM STDIN to load; chunked rows or a named cursor to stream."""

    dialect = "postgresql"

    def __init__(self, url: str, connect_timeout: float) -> None:
        import logging

        import psycopg  # deferred: only PostgreSQL users need it

        # psycopg logs clean-up errors after a lost connection ("error ignored in rollback");
        # without a handler they reach stderr as plain text, between the JSON log lines.
        logging.getLogger("psycopg").addHandler(logging.NullHandler())

        self._psycopg = psycopg
        self._types: dict[str, list[values.PgColumn]] = {}
        # psycopg takes libpq URIs; drop SQLAlchemy's "+driver" suffix.
        _scheme, rest = url.split("://", 1)
        conninfo = "postgresql://" + rest
        try:
            self.conn = psycopg.connect(
                conninfo,
                connect_timeout=max(1, round(connect_timeout)),
                application_name="workers",
                # Transactions are explicit blocks (conn.transaction()): a plain query never
                # leaves one open, and a block inside a snapshot nests as a savepoint.
                autocommit=True,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                tcp_user_timeout=int(connect_timeout * 1000) * 3,
            )
        except psycopg.Error as exc:
            raise failures.classify(exc) from None

    def close(self) -> None:
        self.conn.close()

    def _table_exists(self, source: Source) -> bool:
        return self._exists(quote(source.table))

    def _exists(self, quoted: str) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (quoted,))
            row = cur.fetchone()
        return bool(row and row[0])

    def _require_table(self, source: Source) -> None:
        if not self._table_exists(source):
            raise _no_table(source)

    def columns(self, source: Source) -> list[str] | None:
        # pg_attribute, not information_schema: the latter hides the columns of tables the
        # role may not read, which would turn "permission denied" into "no such column".
        # Existence first: to_regclass reads the latest committed catalog, a query's rows its
        # own snapshot. Asked the other way round, a table another produce committed between
        # the two looks like a table without columns.
        cols = self._column_types(source, cached=False)
        return None if cols is None else [c.name for c in cols]

    def _column_types(self, source: Source, cached: bool = True) -> list[values.PgColumn] | None:
        """The table's columns with their types; read with the names, so reading the rows
        after check_columns costs no extra round trip."""
        if cached and source.table in self._types:
            return self._types[source.table]
        if not self._table_exists(source):
            return None
        with self.conn.cursor() as cur:
            cur.execute(values.PG_COLUMNS_SQL, (quote(source.table),))
            cols = [values.pg_column(r) for r in cur.fetchall()]
        self._types[source.table] = cols
        return cols

    def _data_column(self, source: Source) -> tuple[list[values.PgColumn], values.PgColumn | None]:
        """The table's columns (the table must exist) and the data column among them."""
        cols = self._column_types(source)
        if cols is None:
            raise _no_table(source)
        data = next((c for c in cols if c.name == source.data_column), None)
        return cols, data

    def _create_tables(self, source: Source) -> None:
        """Create the rows' and generations' tables if missing, one creator per table at a time:
        two concurrent ``CREATE TABLE IF NOT EXISTS`` of a new table race on the catalog's
        unique index, and the loser fails instead of finding the table."""
        t, g = quote(source.table), quote(generations_table(source))
        if self._exists(t) and self._exists(g):
            return
        run_c, key_c, data_c = _written_columns(source)
        with self.conn.transaction(), self.conn.cursor() as cur:
            for name in sorted({source.table, generations_table(source)}):
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"workers-create|{name}",),
                )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {t} ({run_c} text NOT NULL, {key_c} bigint NOT NULL, "
                f"{data_c} json NOT NULL, PRIMARY KEY ({run_c}, {key_c}))"
            )
            cur.execute(_generations_ddl(source, "text", "double precision"))

    def replace_run(
        self, source: Source, run_id: str, rows: Iterable[bytes], generation: Generation
    ) -> Generation:
        t, g = quote(source.table), quote(generations_table(source))
        run_c, key_c, data_c = _written_columns(source)
        self._create_tables(source)
        with self.conn.transaction(), self.conn.cursor() as cur:
            # One writer per (table, run): a second produce for the same run waits, then replaces.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{source.table}|{run_id}",),
            )
            cur.execute(f"DELETE FROM {t} WHERE {run_c} = %s", (run_id,))
            prefix = _copy_text(run_id.encode()) + b"\t"
            with cur.copy(f"COPY {t} ({run_c}, {key_c}, {data_c}) FROM STDIN") as copy:
                n = _copy_json_rows(copy, rows, prefix)
            generation = dataclasses.replace(generation, rows=n)
            cur.execute(
                f"DELETE FROM {g} WHERE table_name = %(t)s AND run_id = %(r)s",
                {"t": source.table, "r": run_id},
            )
            cur.execute(
                f"INSERT INTO {g} (table_name, run_id, {_GEN_COLUMNS}) "
                "VALUES (%(t)s, %(r)s, %(g)s, %(n)s, %(gen)s, %(a)s, %(c)s)",
                _generation_values(source, run_id, generation),
            )
        return generation

    def read_generation(self, source: Source, run_id: str) -> Generation | None:
        g = generations_table(source)
        if not self._exists(quote(g)):
            return None
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT {_GEN_COLUMNS} FROM {quote(g)} WHERE table_name = %s AND run_id = %s",
                (source.table, run_id),
            )
            return _generation_of(cur.fetchone())

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        # REPEATABLE READ fixes the snapshot at the first query: the generation read first
        # and the rows streamed after it come from the same committed state.
        psycopg = self._psycopg
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True
        try:
            with self.conn.transaction():
                yield
        finally:
            # After a failure the connection may be mid-query or broken: it is closed next, and
            # resetting it must not hide the error that is on its way out.
            idle = psycopg.pq.TransactionStatus.IDLE
            if not self.conn.closed and self.conn.info.transaction_status == idle:
                self.conn.isolation_level = None
                self.conn.read_only = None

    def key_stats(self, source: Source, run_id: str | None) -> KeyStats:
        self._require_table(source)
        where, params = _where(source, run_id, None, None, "pg")
        k = quote(source.key_column)
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT count(*), min({k}), max({k}) FROM {quote(source.table)}{where}", params
            )
            row = cur.fetchone()
        assert row is not None
        return KeyStats(int(row[0]), row[1], row[2])

    def key_boundaries(self, source: Source, run_id: str | None, every: int) -> list[int]:
        self._require_table(source)
        where, params = _where(source, run_id, None, None, "pg")
        k = quote(source.key_column)
        params["every"] = every
        sql = (
            f"SELECT k FROM (SELECT {k} AS k, row_number() OVER (ORDER BY {k}) AS rn "
            f"FROM {quote(source.table)}{where}) s WHERE rn %% %(every)s = 0 ORDER BY k"
        )
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            keys = [int(r[0]) for r in cur.fetchall()]
        return keys

    def stream_rows(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        from psycopg.types.json import set_json_loads

        cols, data = self._data_column(source)
        set_json_loads(orjson.loads, self.conn)
        sql, params = _select(source, run_id, lo, hi, "pg")
        # Only a text data column holds JSON text; bytea, numbers and the rest are values.
        parse = _as_object if data is None or data.is_text else (lambda v: v)
        # A named cursor keeps the result on the server: memory stays bounded by one batch.
        with self.conn.transaction(), self.conn.cursor(name="workers_shard") as cur:
            cur.itersize = batch
            cur.execute(sql, params)
            names = [d.name for d in cur.description or []][1:]
            while True:
                try:
                    fetched = cur.fetchmany(batch)
                except self._psycopg.DataError as exc:
                    if getattr(exc, "sqlstate", None):
                        raise
                    # Raised by psycopg itself, loading a value Python has no form for.
                    read = [data] if data is not None else cols
                    raise values.pg_load_error(source.table, read, exc) from None
                if not fetched:
                    break
                if source.data_column:
                    yield [parse(r[1]) for r in fetched], int(fetched[-1][0])
                else:
                    yield (
                        [dict(zip(names, r[1:], strict=True)) for r in fetched],
                        int(fetched[-1][0]),
                    )

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]] | None:
        cols, data = self._data_column(source)
        if source.data_column:
            assert data is not None  # check_columns ran first
            values.check_pg(source.table, [data])
            sql, params = _select(
                source,
                run_id,
                lo,
                hi,
                "pg",
                # SQL NULL as JSON null by the server: no per-row check on this side.
                f"{quote(source.key_column)}, coalesce({values.pg_value_sql(data)}, 'null')",
            )
            session = not data.is_json
        else:
            values.check_pg(source.table, cols)
            where, params = _where(source, run_id, lo, hi, "pg")
            sql = values.pg_row_sql(cols, quote(source.table), where, quote(source.key_column))
            session = True
        blocks = self._json_text_blocks(sql, params, session)
        if data is not None and data.is_text:
            return self._json_text_checked(blocks, source.table, data)
        return blocks

    def _json_text_checked(
        self, blocks: Iterator[tuple[bytes, int, int]], table: str, data: values.PgColumn
    ) -> Iterator[tuple[bytes, int, int]]:
        """A text data column's rows, its text that is not JSON named as the column's fault."""
        try:
            yield from blocks
        except self._psycopg.errors.InvalidTextRepresentation as exc:  # 22P02, from ::json
            raise values.unsupported(
                table,
                [(data.name, data.type)],
                f"holds text that is not JSON ({failures.first_line(exc)})",
            ) from None

    def _json_text_blocks(
        self, sql: str, params: dict[str, Any], session: bool
    ) -> Iterator[tuple[bytes, int, int]]:
        # The key, then one JSON text per row (the server converts; for a json column, what COPY would
        # print, unescaped), a batch of rows at a time: psycopg's C loader turns a batch
        # into strings, where COPY costs a Python-level read per row (~3x the client CPU).
        # Memory stays bounded by a batch.
        caps = getattr(self._psycopg, "capabilities", None)  # psycopg >= 3.2
        with self.conn.transaction():
            if session:
                self.conn.execute(values.PG_SESSION_SQL)
            if caps is not None and caps.has_stream_chunked():
                # libpq >= 17 chunked rows: the server streams without waiting for the
                # client, as COPY does (a named cursor's FETCH round trips leave the
                # server idle while the client converts): ~40% less wall time.
                with self.conn.cursor() as cur:
                    it = cur.stream(sql, params, size=JSON_BATCH)
                    while rows := list(islice(it, JSON_BATCH)):
                        yield _text_rows_to_jsonl([r[1] for r in rows]), len(rows), rows[-1][0]
            else:
                with self.conn.cursor(name="workers_shard_json") as cur:
                    cur.execute(sql, params)
                    while rows := cur.fetchmany(JSON_BATCH):
                        yield _text_rows_to_jsonl([r[1] for r in rows]), len(rows), rows[-1][0]


JSON_BATCH = 10_000
"""Rows per batch of the shard fast path: ~1 MB of typical rows."""


def _batch(source: Source, names: list[str], rows: Sequence[Any]) -> list[Any]:
    """A batch for the processor from rows whose first column is the key: the JSON column's
    values, or each row's columns by name."""
    if source.data_column:
        return [_as_object(r[1]) for r in rows]
    return [dict(zip(names, r[1:], strict=True)) for r in rows]


def _text_rows_to_jsonl(values: list[Any]) -> bytes:
    """JSON Lines from JSON texts (never SQL NULL: the query turns it into ``null``)."""
    if values and isinstance(values[0], bytes):  # a SQL_ASCII database hands back bytes
        # surrogateescape carries any byte through to the output unchanged, as COPY would.
        values = [v.decode(errors="surrogateescape") for v in values]
    text = "\n".join(values)
    if text.count("\n") != len(values) - 1 or "\r" in text:
        # A stored value holds raw line breaks. In valid JSON (the server checked it) they can
        # only be whitespace between tokens, never inside a string: a space keeps the value,
        # digits included, on one line.
        text = "\n".join([_one_line(v) for v in values])
    return text.encode(errors="surrogateescape") + b"\n"


def _one_line(json_text: str) -> str:
    """Valid JSON text on one line: its raw line breaks are whitespace between tokens."""
    if "\n" in json_text or "\r" in json_text:
        return json_text.replace("\r", " ").replace("\n", " ")
    return json_text


def _copy_text(value: bytes) -> bytes:
    """Escape a value for COPY's text format."""
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


def _copy_json_rows(copy: Any, rows: Iterable[bytes], prefix: bytes) -> int:
    """Write JSON rows as COPY text lines ``prefix key TAB json``, keys 1..n; returns n."""
    # One %-format per row inside a list comprehension, a chunk at a time: the
    # per-row Python work is what separates produce from psql \copy of a file.
    line = prefix.replace(b"%", b"%%") + b"%d\t%b\n"
    it = iter(rows)
    n = 0
    while chunk := list(islice(it, _COPY_CHUNK)):
        keys = range(n + 1, n + 1 + len(chunk))
        block = b"".join([line % kd for kd in zip(keys, chunk, strict=True)])
        if b"\\" in block:
            # Rare: JSON holding backslashes; COPY text needs them doubled.
            chunk = [d.replace(b"\\", b"\\\\") for d in chunk]
            block = b"".join([line % kd for kd in zip(keys, chunk, strict=True)])
        copy.write(block)
        n += len(chunk)
    return n


def _as_object(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _no_table(source: Source) -> Exception:
    return failures.error("db-unknown", f"table {source.table!r} does not exist")


class SqliteDatabase(Database):
    """A SQLite file through the standard library's sqlite3: the same SQL and semantics as the
    SQLAlchemy path (WAL, one explicit read transaction per snapshot), without its import."""

    dialect = "sqlite"

    def __init__(self, path: str, connect_timeout: float) -> None:
        import sqlite3  # deferred: PostgreSQL pods never need it

        self._sqlite3 = sqlite3
        try:
            # Autocommit: every transaction is an explicit BEGIN, as in the snapshot below.
            self.conn = sqlite3.connect(path, timeout=connect_timeout, isolation_level=None)
            # WAL lets parallel shard readers run while a writer commits.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise failures.classify(exc) from None

    def close(self) -> None:
        self.conn.close()

    def _query(self, sql: str, params: Any = ()) -> Any:
        try:
            return self.conn.execute(sql, params)
        except self._sqlite3.Error as exc:
            raise failures.classify(exc) from None

    def _columns_of(self, table: str) -> list[str] | None:
        return [str(r[1]) for r in self._query(_table_info_sql(table)).fetchall()] or None

    def columns(self, source: Source) -> list[str] | None:
        return self._columns_of(source.table)

    def _require_table(self, source: Source) -> None:
        if self.columns(source) is None:
            raise _no_table(source)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        # sqlite3 opens no transaction for a SELECT, so each query would see its own
        # snapshot; an explicit BEGIN makes them one (a WAL read snapshot).
        self._query("BEGIN")
        try:
            yield
        finally:
            with contextlib.suppress(self._sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def read_generation(self, source: Source, run_id: str) -> Generation | None:
        g = generations_table(source)
        if self._columns_of(g) is None:
            return None
        row = self._query(
            f"SELECT {_GEN_COLUMNS} FROM {quote(g)} WHERE table_name = :t AND run_id = :r",
            {"t": source.table, "r": run_id},
        ).fetchone()
        return _generation_of(row)

    def replace_run(
        self, source: Source, run_id: str, rows: Iterable[bytes], generation: Generation
    ) -> Generation:
        t, g = quote(source.table), quote(generations_table(source))
        run_c, key_c, data_c = _written_columns(source)
        insert = f"INSERT INTO {t} ({run_c}, {key_c}, {data_c}) VALUES (?, ?, ?)"
        n = 0
        conn = self.conn
        try:
            # IMMEDIATE takes the write lock now, so concurrent producers serialize instead
            # of failing late.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {t} ({run_c} VARCHAR(128) NOT NULL, "
                    f"{key_c} BIGINT NOT NULL, {data_c} TEXT NOT NULL, "
                    f"PRIMARY KEY ({run_c}, {key_c}))"
                )
                conn.execute(_generations_ddl(source, "VARCHAR(255)", "FLOAT"))
                conn.execute(f"DELETE FROM {t} WHERE {run_c} = ?", (run_id,))
                batch: list[tuple[str, int, str]] = []
                for data in rows:
                    n += 1
                    batch.append((run_id, n, data.decode()))
                    if len(batch) >= 10_000:
                        conn.executemany(insert, batch)
                        batch = []
                if batch:
                    conn.executemany(insert, batch)
                generation = dataclasses.replace(generation, rows=n)
                conn.execute(
                    f"DELETE FROM {g} WHERE table_name = :t AND run_id = :r",
                    {"t": source.table, "r": run_id},
                )
                conn.execute(
                    f"INSERT INTO {g} (table_name, run_id, {_GEN_COLUMNS}) "
                    "VALUES (:t, :r, :g, :n, :gen, :a, :c)",
                    _generation_values(source, run_id, generation),
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(self._sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except self._sqlite3.Error as exc:
            raise failures.classify(exc) from None
        return generation

    def key_stats(self, source: Source, run_id: str | None) -> KeyStats:
        where, params = _where(source, run_id, None, None, "sa")
        k = quote(source.key_column)
        self._require_table(source)
        row = self._query(
            f"SELECT count(*), min({k}), max({k}) FROM {quote(source.table)}{where}", params
        ).fetchone()
        return KeyStats(int(row[0]), row[1], row[2])

    def key_boundaries(self, source: Source, run_id: str | None, every: int) -> list[int]:
        where, params = _where(source, run_id, None, None, "sa")
        k = quote(source.key_column)
        params["every"] = every
        sql = (
            f"SELECT k FROM (SELECT {k} AS k, row_number() OVER (ORDER BY {k}) AS rn "
            f"FROM {quote(source.table)}{where}) s WHERE rn % :every = 0 ORDER BY k"
        )
        self._require_table(source)
        return [int(r[0]) for r in self._query(sql, params)]

    def stream_rows(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        sql, params = _select(source, run_id, lo, hi, "sa")
        self._require_table(source)
        cursor = self._query(sql, params)
        names = [d[0] for d in cursor.description][1:]
        try:
            while True:
                try:
                    part = cursor.fetchmany(batch)
                except self._sqlite3.Error as exc:
                    raise failures.classify(exc) from None
                if not part:
                    return
                yield _batch(source, names, part), int(part[-1][0])
        finally:
            cursor.close()

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]] | None:
        return self._encoded_blocks(source, run_id, lo, hi)

    def _encoded_blocks(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]]:
        # The declared types decide the JSON form (values.RowEncoder), as on the SQLAlchemy path.
        sql, params = _select(source, run_id, lo, hi, "sa")
        info = self._query(_table_info_sql(source.table)).fetchall()
        if not info:
            raise _no_table(source)
        encoder = _row_encoder(source, [values.Column(str(r[1]), str(r[2] or "")) for r in info])
        cursor = self._query(sql, params)
        try:
            while True:
                try:
                    part = cursor.fetchmany(JSON_BATCH)
                except self._sqlite3.Error as exc:
                    raise failures.classify(exc) from None
                if not part:
                    return
                # The key comes first (the checkpoint's last key), then the columns.
                yield encoder.block([r[1:] for r in part]), len(part), int(part[-1][0])
        finally:
            cursor.close()


class SqlAlchemyDatabase(Database):
    """SQLAlchemy Core with text SQL: SQLite by default, any dialect SQLAlchemy knows."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        import sqlalchemy as sa  # deferred: costs ~100 ms of start-up

        self._sa = sa
        self._conn: Any = None  # the connection of an open snapshot
        try:
            u = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise UsageError(f"invalid database URL: {exc}") from None
        self.dialect = u.get_backend_name()
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            connect_args["timeout"] = connect_timeout
        try:
            self.engine = sa.create_engine(u, connect_args=connect_args)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise UsageError(
                f"database driver for {u.drivername!r} is not installed: {exc}"
            ) from None
        if self.dialect == "sqlite":
            self._sqlite_pragmas()

    def _sqlite_pragmas(self) -> None:
        sa = self._sa

        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, record: Any) -> None:
            # WAL lets parallel shard readers run while a writer commits.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    def close(self) -> None:
        self.engine.dispose()

    def _require_table(self, conn: Any, source: Source) -> None:
        schema, _, name = source.table.rpartition(".")
        if not self._sa.inspect(conn).has_table(name, schema=schema or None):
            raise _no_table(source)

    def columns(self, source: Source) -> list[str] | None:
        sa = self._sa
        schema, _, name = source.table.rpartition(".")
        try:
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(name, schema=schema or None):
                    return None
                return [str(c["name"]) for c in inspector.get_columns(name, schema=schema or None)]
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._conn is not None:
            yield self._conn
        else:
            with self.engine.connect() as conn:
                yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        sa = self._sa
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    # pysqlite opens no transaction for a SELECT, so each query would see
                    # its own snapshot; an explicit BEGIN makes them one (WAL read snapshot).
                    conn.exec_driver_sql("BEGIN")
                else:
                    with contextlib.suppress(sa.exc.ArgumentError):
                        conn.execution_options(isolation_level="REPEATABLE READ")
                self._conn = conn
                try:
                    yield
                finally:
                    self._conn = None
                    conn.rollback()
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    def read_generation(self, source: Source, run_id: str) -> Generation | None:
        sa = self._sa
        g = generations_table(source)
        schema, _, name = g.rpartition(".")
        try:
            with self._connection() as conn:
                if not sa.inspect(conn).has_table(name, schema=schema or None):
                    return None
                row = conn.execute(
                    sa.text(
                        f"SELECT {_GEN_COLUMNS} FROM {quote(g)} WHERE table_name = :t AND run_id = :r"
                    ),
                    {"t": source.table, "r": run_id},
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
        return _generation_of(row)

    def replace_run(
        self, source: Source, run_id: str, rows: Iterable[bytes], generation: Generation
    ) -> Generation:
        sa = self._sa
        t, g = quote(source.table), quote(generations_table(source))
        run_c, key_c, data_c = _written_columns(source)
        insert = sa.text(f"INSERT INTO {t} ({run_c}, {key_c}, {data_c}) VALUES (:r, :k, :d)")
        n = 0
        try:
            with self.engine.begin() as conn:
                if self.dialect == "sqlite":
                    # Take the write lock now, so concurrent producers serialize instead of failing late.
                    conn.exec_driver_sql("SELECT 1")
                conn.execute(
                    sa.text(
                        f"CREATE TABLE IF NOT EXISTS {t} ({run_c} VARCHAR(128) NOT NULL, {key_c} BIGINT NOT NULL, "
                        f"{data_c} TEXT NOT NULL, PRIMARY KEY ({run_c}, {key_c}))"
                    )
                )
                conn.execute(sa.text(_generations_ddl(source, "VARCHAR(255)", "FLOAT")))
                conn.execute(sa.text(f"DELETE FROM {t} WHERE {run_c} = :r"), {"r": run_id})
                batch: list[dict[str, Any]] = []
                for data in rows:
                    n += 1
                    batch.append({"r": run_id, "k": n, "d": data.decode()})
                    if len(batch) >= 10_000:
                        conn.execute(insert, batch)
                        batch = []
                if batch:
                    conn.execute(insert, batch)
                generation = dataclasses.replace(generation, rows=n)
                conn.execute(
                    sa.text(f"DELETE FROM {g} WHERE table_name = :t AND run_id = :r"),
                    {"t": source.table, "r": run_id},
                )
                conn.execute(
                    sa.text(
                        f"INSERT INTO {g} (table_name, run_id, {_GEN_COLUMNS}) "
                        "VALUES (:t, :r, :g, :n, :gen, :a, :c)"
                    ),
                    _generation_values(source, run_id, generation),
                )
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
        return generation

    def key_stats(self, source: Source, run_id: str | None) -> KeyStats:
        sa = self._sa
        where, params = _where(source, run_id, None, None, "sa")
        k = quote(source.key_column)
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                row = conn.execute(
                    sa.text(
                        f"SELECT count(*), min({k}), max({k}) FROM {quote(source.table)}{where}"
                    ),
                    params,
                ).one()
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
        return KeyStats(int(row[0]), row[1], row[2])

    def key_boundaries(self, source: Source, run_id: str | None, every: int) -> list[int]:
        sa = self._sa
        where, params = _where(source, run_id, None, None, "sa")
        k = quote(source.key_column)
        params["every"] = every
        sql = (
            f"SELECT k FROM (SELECT {k} AS k, row_number() OVER (ORDER BY {k}) AS rn "
            f"FROM {quote(source.table)}{where}) s WHERE rn % :every = 0 ORDER BY k"
        )
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                return [int(r[0]) for r in conn.execute(sa.text(sql), params)]
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    def stream_rows(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        sa = self._sa
        sql, params = _select(source, run_id, lo, hi, "sa")
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                result = conn.execution_options(stream_results=True, yield_per=batch).execute(
                    sa.text(sql), params
                )
                names = list(result.keys())[1:]
                for part in result.partitions(batch):
                    yield _batch(source, names, part), int(part[-1][0])
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    def _declared_columns(self, conn: Any, source: Source) -> list[values.Column]:
        """The table's columns with their declared types (SQLite: as written in CREATE TABLE)."""
        sa = self._sa
        if self.dialect == "sqlite":
            rows = conn.exec_driver_sql(_table_info_sql(source.table)).fetchall()
            return [values.Column(str(r[1]), str(r[2] or "")) for r in rows]
        schema, _, name = source.table.rpartition(".")
        cols = []
        for c in sa.inspect(conn).get_columns(name, schema=schema or None):
            try:
                declared = str(c["type"])
            except Exception:  # a type SQLAlchemy cannot name: values go by their Python type
                declared = ""
            cols.append(values.Column(str(c["name"]), declared))
        return cols

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]] | None:
        return self._encoded_blocks(source, run_id, lo, hi)

    def _encoded_blocks(
        self, source: Source, run_id: str | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[bytes, int, int]]:
        sa = self._sa
        sql, params = _select(source, run_id, lo, hi, "sa")
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                encoder = _row_encoder(source, self._declared_columns(conn, source))
                result = conn.execution_options(stream_results=True, yield_per=JSON_BATCH).execute(
                    sa.text(sql), params
                )
                for part in result.partitions(JSON_BATCH):
                    # The key comes first (the checkpoint's last key), then the columns.
                    yield encoder.block([r[1:] for r in part]), len(part), int(part[-1][0])
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None


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
