"""Any other database SQLAlchemy knows, through SQLAlchemy Core with text SQL."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
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
from workers.errors import UsageError
from workers.provenance import Generation


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

    def key_type(self, source: Source) -> keys.KeyType:
        sa = self._sa
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                if self.dialect == "sqlite":
                    info = conn.exec_driver_sql(_table_info_sql(source.table)).fetchall()
                    return _sqlite_key_type(info, source)
                declared = {c.name.lower(): c for c in self._declared_columns(conn, source)}
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
        col = declared.get(source.key_column.lower())
        kind = keys.sqlite_affinity(col.declared) if col is not None else "blob"
        if kind not in ("integer", "text"):
            # Other databases compare a bound as the driver binds it: only integers and text
            # are sure to compare as the column's own values there.
            raise UsageError(
                f"table {source.table!r}: key column {source.key_column!r} "
                f"({col.declared if col else 'unknown type'}) cannot cut a table on "
                f"{self.dialect}: a key must be an integer or text column here "
                "(PostgreSQL and SQLite take numeric, uuid, date and timestamp keys too)"
            )
        return keys.KeyType(kind, col.declared if col else "")

    def key_stats(self, source: Source, run_id: str | None, key: keys.KeyType) -> KeyStats:
        sa = self._sa
        sql, params = stats_sql(source, run_id, "sa")
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                row = conn.execute(sa.text(sql), params).one()
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
        return _key_stats(row)

    def key_cuts(
        self, source: Source, run_id: str | None, every: int, key: keys.KeyType
    ) -> list[Candidate]:
        sa = self._sa
        sql, params = cuts_sql(source, run_id, every, "sa")
        try:
            with self._connection() as conn:
                self._require_table(conn, source)
                return candidates(conn.execute(sa.text(sql), params))
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    def count_range(self, source: Source, run_id: str | None, lo: Key, hi: Key) -> int:
        sa = self._sa
        sql, params = count_sql(source, run_id, lo, hi, "sa")
        try:
            with self._connection() as conn:
                return int(conn.execute(sa.text(sql), params).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None

    def stream_rows(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
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
                    yield _batch(source, names, part), keys.encode(part[-1][0])
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
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]] | None:
        return self._encoded_blocks(source, run_id, lo, hi)

    def _encoded_blocks(
        self, source: Source, run_id: str | None, lo: Key, hi: Key
    ) -> Iterator[tuple[bytes, int, Any]]:
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
                    yield encoder.block([r[1:] for r in part]), len(part), keys.encode(part[-1][0])
        except sa.exc.SQLAlchemyError as exc:
            raise failures.classify(exc) from None
