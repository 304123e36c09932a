"""PostgreSQL through psycopg 3: COPY FROM STDIN to load, chunked rows or a named cursor to stream."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import orjson

from workers import failures, keys, values
from workers.db import (
    _GEN_COLUMNS,
    JSON_BATCH,
    Candidate,
    Database,
    Key,
    KeyStats,
    Source,
    _as_object,
    _generation_of,
    _generation_values,
    _generations_ddl,
    _key_stats,
    _no_table,
    _select,
    _where,
    _written_columns,
    candidates,
    count_sql,
    cuts_sql,
    generations_table,
    quote,
    stats_sql,
)
from workers.provenance import Generation


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
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
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

    def key_type(self, source: Source) -> keys.KeyType:
        cols = self._column_types(source)
        if cols is None:
            raise _no_table(source)
        col = next((c for c in cols if c.name == source.key_column), None)
        if col is None:
            raise failures.error(
                "db-unknown", f"table {source.table!r} has no column {source.key_column!r}"
            )
        with self.conn.cursor() as cur:
            cur.execute(_COLLATION_SQL, (quote(source.table), source.key_column))
            row = cur.fetchone()
        collation = str(row[0]) if row and row[0] else None
        return keys.pg_key_type(
            source.table, col.name, col.base, col.type, col.array or col.kind != "b", collation
        )

    def key_stats(self, source: Source, run_id: str | None, key: keys.KeyType) -> KeyStats:
        self._require_table(source)
        sql, params = stats_sql(source, run_id, "pg", lambda e: keys.pg_value_sql(key.kind, e))
        with self.conn.cursor() as cur:
            cur.execute(values.PG_SESSION_SQL)  # timestamptz in UTC: the same plan every time
            cur.execute(sql, params)
            row = cur.fetchone()
        assert row is not None
        return _key_stats(row)

    def key_cuts(
        self, source: Source, run_id: str | None, every: int, key: keys.KeyType
    ) -> list[Candidate]:
        self._require_table(source)
        sql, params = cuts_sql(
            source, run_id, every, "pg", lambda e: keys.pg_value_sql(key.kind, e)
        )
        with self.conn.cursor() as cur:
            cur.execute(values.PG_SESSION_SQL)
            cur.execute(sql, params)
            return candidates(cur.fetchall())

    def count_range(self, source: Source, run_id: str | None, lo: Key, hi: Key) -> int:
        sql, params = count_sql(source, run_id, lo, hi, "pg")
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        assert row is not None
        return int(row[0])

    def stream_rows(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
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
                    yield [parse(r[1]) for r in fetched], keys.encode(fetched[-1][0])
                else:
                    yield (
                        [dict(zip(names, r[1:], strict=True)) for r in fetched],
                        keys.encode(fetched[-1][0]),
                    )

    def stream_arrow(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[Any, Any]]:
        """Record batches read by the ADBC driver (COPY binary into Arrow, no Python per row),
        on a second connection that imports this connection's snapshot: the rows come from
        the same committed state as the generation read before them."""
        from workers.db import postgres_arrow  # deferred: pyarrow and ADBC, columnar shards only

        cols, data = self._data_column(source)
        snapshot_id = None
        if self.conn.info.transaction_status == self._psycopg.pq.TransactionStatus.INTRANS:
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot_id = str(row[0]) if row else None
        read = [data] if source.data_column and data is not None else cols
        values.check_pg(source.table, read)
        # Quoted literals, not parameters: ADBC streams COPY only for a query without binds.
        where, params = _where(source, run_id, lo, hi, "pg")
        literal = self._psycopg.sql.Literal
        where = where % {k: literal(v).as_string(self.conn) for k, v in params.items()}
        key = next((c for c in cols if c.name == source.key_column), None)
        kind = keys.PG_KINDS.get(key.base, "") if key is not None else ""
        # The key as its JSON text from the server: the checkpoint's last key, whatever Arrow
        # would make of a uuid, a numeric or an infinite date.
        key_sql = keys.pg_value_sql(kind, quote(source.key_column)) if kind else None
        return postgres_arrow.stream(
            self._conninfo, self._connect_timeout, snapshot_id, source, read, where, batch, key_sql
        )

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]] | None:
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
    ) -> Iterator[tuple[bytes, int, Any]]:
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
    ) -> Iterator[tuple[bytes, int, Any]]:
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
                    try:
                        while rows := list(islice(it, JSON_BATCH)):
                            yield (
                                _text_rows_to_jsonl([r[1] for r in rows]),
                                len(rows),
                                keys.encode(rows[-1][0]),
                            )
                    except BaseException:
                        # Stopped early (the spot notice, a failure downstream): without the
                        # cancel and the stream's close, leaving the transaction waits for
                        # every row still streaming (seconds for a large shard).
                        with contextlib.suppress(Exception):
                            self.conn.cancel_safe(timeout=2.0)
                        with contextlib.suppress(Exception):
                            it.close()  # type: ignore[attr-defined]  # a generator
                        raise
            else:
                with self.conn.cursor(name="workers_shard_json") as cur:
                    cur.execute(sql, params)
                    while rows := cur.fetchmany(JSON_BATCH):
                        yield (
                            _text_rows_to_jsonl([r[1] for r in rows]),
                            len(rows),
                            keys.encode(rows[-1][0]),
                        )


_COLLATION_SQL = (
    "SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
    "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s"
)
"""The collation a key column compares in (none for a type without one)."""

_COPY_CHUNK = 1000
"""Rows per COPY write when loading: ~100 KB of typical rows, under psycopg's 128 KB
write size (so it never slices a copy). Not more: every bytes object orjson returns
keeps a multi-KB allocation, so 10,000 held at once cost ~90 MB of RSS."""


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
