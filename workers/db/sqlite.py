"""A SQLite file through the standard library's sqlite3 (the embedded default), without SQLAlchemy."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Generator, Iterable, Iterator
from typing import Any

from workers import failures, keys, values
from workers.db import (
    _GEN_COLUMNS,
    JSON_BATCH,
    Candidate,
    Database,
    Key,
    KeyStats,
    Source,
    _batch,
    _generation_of,
    _generation_values,
    _generations_ddl,
    _key_stats,
    _no_table,
    _row_encoder,
    _select,
    _sqlite_key_type,
    _table_info_sql,
    _written_columns,
    candidates,
    count_sql,
    cuts_sql,
    generations_table,
    quote,
    stats_sql,
)
from workers.provenance import Generation


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

    def key_type(self, source: Source) -> keys.KeyType:
        info = self._query(_table_info_sql(source.table)).fetchall()
        if not info:
            raise _no_table(source)
        return _sqlite_key_type(info, source)

    def key_stats(self, source: Source, run_id: str | None, key: keys.KeyType) -> KeyStats:
        sql, params = stats_sql(source, run_id, "sa")
        self._require_table(source)
        return _key_stats(self._query(sql, params).fetchone())

    def key_cuts(
        self, source: Source, run_id: str | None, every: int, key: keys.KeyType
    ) -> list[Candidate]:
        sql, params = cuts_sql(source, run_id, every, "sa")
        self._require_table(source)
        return candidates(self._query(sql, params))

    def count_range(self, source: Source, run_id: str | None, lo: Key, hi: Key) -> int:
        sql, params = count_sql(source, run_id, lo, hi, "sa")
        return int(self._query(sql, params).fetchone()[0])

    def stream_rows(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        sql, params = _select(source, run_id, lo, hi, "sa")
        self._require_table(source)
        cursor = self._query(sql, params)
        names = [d[0] for d in cursor.description][1:]
        with contextlib.closing(self._parts(cursor, batch)) as parts:
            for part in parts:
                yield _batch(source, names, part), keys.encode(part[-1][0])

    def _parts(self, cursor: Any, batch: int) -> Generator[list[Any], None, None]:
        """The cursor's rows, ``batch`` at a time until none are left (a driver error
        classified); the cursor is closed however the caller stops."""
        try:
            while True:
                try:
                    part = cursor.fetchmany(batch)
                except self._sqlite3.Error as exc:
                    raise failures.classify(exc) from None
                if not part:
                    return
                yield part
        finally:
            cursor.close()

    def stream_arrow(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[Any, Any]]:
        """Record batches built column by column from ``fetchmany`` (no dict per row); the data
        column's JSON texts parsed by Arrow's JSON reader."""
        from workers.db import arrow  # deferred: pyarrow, columnar shards only

        info = self._query(_table_info_sql(source.table)).fetchall()
        if not info:
            raise _no_table(source)
        declared = [values.Column(str(r[1]), str(r[2] or "")) for r in info]
        sql, params = _select(source, run_id, lo, hi, "sa")
        cursor = self._query(sql, params)
        names = [d[0] for d in cursor.description][1:]
        affinity = {c.name.lower(): c.affinity for c in declared}
        affinities = [affinity.get(n.lower(), "other") for n in names]
        with contextlib.closing(self._parts(cursor, batch)) as parts:
            for part in parts:
                last_key = keys.encode(part[-1][0])
                if source.data_column:
                    texts = arrow.texts([r[1] for r in part], source.table, source.data_column)
                    yield arrow.json_column_batch(texts, source.table, source.data_column), last_key
                else:
                    rb = arrow.sqlite_batch(part, names, affinities, source.table)
                    yield rb.drop_columns([arrow.KEY]), last_key

    def stream_json_lines(
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]] | None:
        return self._encoded_blocks(source, run_id, lo, hi)

    def _encoded_blocks(
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]]:
        # The declared types decide the JSON form (values.RowEncoder), as on the SQLAlchemy path.
        sql, params = _select(source, run_id, lo, hi, "sa")
        info = self._query(_table_info_sql(source.table)).fetchall()
        if not info:
            raise _no_table(source)
        encoder = _row_encoder(source, [values.Column(str(r[1]), str(r[2] or "")) for r in info])
        cursor = self._query(sql, params)
        with contextlib.closing(self._parts(cursor, JSON_BATCH)) as parts:
            for part in parts:
                # The key comes first (the checkpoint's last key), then the columns.
                yield encoder.block([r[1:] for r in part]), len(part), keys.encode(part[-1][0])
