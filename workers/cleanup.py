"""Remove a finished run's source rows and its generation row from the database.

produce keeps a run's rows in TABLE (tagged with the run id in the run column) and its
generation in ``workers_generations``; nothing else ever removes them, so each run's rows stay
until this command (or the pipeline's ``cleanup`` parameter) removes them.

When the rows may go (checked in the run's store, the folder or URL split and merge used):

  STORE/plan.json absent                 no plan reads the rows: they are removed
  plan.json and STORE/summary.json of    merge published the fan-in, so no shard or merge of
  the same run and generation            the plan reads them again: they are removed
  plan.json without that summary         a shard or merge (or its retry) may still read
                                         them: refused, exit 2
  the database's generation differs      produce ran again after split (a new plan may be
  from the plan's                        about to read it): refused, exit 2
  rows without a recorded generation     not rows produce wrote: refused, exit 2

The generation is read again in the transaction that deletes, under the lock produce takes to
replace a run, so a produce that replaced the run in the meantime is refused, never removed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import cli, db, layout, storage
from workers.config import DEFAULT_TABLE, Environment, check_run_id
from workers.errors import UsageError
from workers.log import Logger

EPILOG = (
    """examples:
  # after a run's merge succeeded: its rows and generation leave the embedded database
  python -m workers.cleanup --run-id my-run --store ./workers-data/my-run

  # PostgreSQL (URL from the environment), a run whose files are in a bucket
  WORKERS_DATABASE_URL=postgresql://app@db:5432/app \\
    python -m workers.cleanup --run-id nightly-42 --store s3://bucket/runs/nightly-42

  # in a template: workers-pipeline runs it after merge with -p cleanup=true
  workers run workers-pipeline -p rows=100000 -p cleanup=true

Refused (exit 2, nothing removed) while STORE/plan.json exists without a STORE/summary.json of
the same run and generation, when produce wrote a newer generation than the plan's, and for
rows produce did not write (no generation recorded).

"""
    + cli.EXIT_CODES_EPILOG
)

MAX_SUMMARY_BYTES = 64 << 20
"""A summary lists every shard: a few hundred bytes each, far under this for any plan."""


@dataclass(frozen=True)
class CleanupConfig:
    database_url: str
    connect_timeout: float
    source: db.Source
    run_id: str
    store: storage.Store
    summary: str


@dataclass(frozen=True)
class Pin:
    """The generation a finished plan pinned (None: split found none); the rows must have it."""

    generation: str | None


@dataclass(frozen=True)
class Removed:
    rows: int
    generation: str | None


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.cleanup", description=__doc__, epilog=EPILOG)
    p.add_argument("--run-id", help="run id (default: $WORKERS_RUN_ID, $ARGO_WORKFLOW_NAME)")
    p.add_argument(
        "--store",
        metavar="URL",
        help="the run's folder/URL, where split wrote plan.json (default: ./workers-data/RUN_ID)",
    )
    p.add_argument(
        "--summary",
        metavar="URL",
        help="merge's summary, if merge was given --summary (default: STORE/summary.json)",
    )
    p.add_argument("--table", default=DEFAULT_TABLE, help=f"rows' table (default {DEFAULT_TABLE})")
    p.add_argument("--run-column", default="run_id", help="run id column (default run_id)")
    return p


def build_config(args: argparse.Namespace, env: Environment) -> CleanupConfig:
    # An explicit --run-id '' is a templating mistake, never a request for the default.
    run_id = args.run_id if args.run_id is not None else env.run_id
    if run_id is None:
        raise UsageError("a run id is required: pass --run-id or set WORKERS_RUN_ID")
    check_run_id(run_id)
    if not args.run_column:
        raise UsageError(
            "--run-column is empty: cleanup removes one run's rows by its run column, never a "
            "whole table"
        )
    store = storage.check_store(args.store or env.store or storage.join("workers-data", run_id))
    return CleanupConfig(
        database_url=env.effective_database_url,
        connect_timeout=env.connect_timeout,
        source=db.Source(args.table, "key", args.run_column, None),
        run_id=run_id,
        store=store,
        summary=args.summary or storage.join(store, "summary.json"),
    )


def finished_plan(cfg: CleanupConfig) -> Pin | None:
    """What the store's finished plan pinned (None when the store holds no plan); refuses while
    the plan may still read the rows."""
    plan = layout.read_plan_if_any(cfg.store)
    if plan is None:
        return None
    where = layout.plan_url(cfg.store)
    if plan.run_id != cfg.run_id:
        raise UsageError(f"{where} plans run {plan.run_id!r}, not {cfg.run_id!r}: wrong --store?")
    want = plan.generation.get("id") if plan.generation else None
    summary = _summary(cfg.summary)
    done = (
        summary is not None
        and summary.get("run_id") == plan.run_id
        and (summary.get("generation") or {}).get("id") == want
    )
    if not done:
        raise UsageError(
            f"run {cfg.run_id!r} is not finished: {where} exists and merge has not published "
            f"{cfg.summary} for it, so its shards or merge may still read the rows; run cleanup "
            "after merge succeeds"
        )
    return Pin(want)


def _summary(url: str) -> dict[str, Any] | None:
    try:
        raw = storage.read_small(url, MAX_SUMMARY_BYTES, "summary")
    except FileNotFoundError:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # a summary that does not parse vouches for nothing
    return obj if isinstance(obj, dict) else None


def _check(cfg: CleanupConfig, pin: Pin | None, found: str | None, rows: int) -> None:
    """Inside the deleting transaction: refuse (rolling it back) unless the run's generation
    is the one the finished plan pinned, and the rows are produce's."""
    table = cfg.source.table
    if found is None and rows:
        raise UsageError(
            f"run {cfg.run_id!r} of table {table!r} has {rows} rows but no generation in "
            f"{db.GENERATIONS_TABLE}: produce did not write them; cleanup leaves them"
        )
    if pin is not None and found is not None and found != pin.generation:
        raise UsageError(
            f"run {cfg.run_id!r} of table {table!r} holds generation {found}, but the finished "
            f"plan in {cfg.store} pinned {pin.generation}: produce ran again since, and its plan "
            "may still read the rows"
        )


def remove_run(database: db.Database, cfg: CleanupConfig, pin: Pin | None) -> Removed:
    """Delete the run's rows and generation row in one transaction, after ``_check``."""
    if database.columns(cfg.source) is None:
        return Removed(0, None)  # no table: nothing was ever written
    t, g = db.quote(cfg.source.table), db.quote(db.generations_table(cfg.source))
    run_c = db.quote(cfg.source.run_column or "run_id")
    delete_rows = f"DELETE FROM {t} WHERE {run_c} = :r"
    delete_gen = f"DELETE FROM {g} WHERE table_name = :t AND run_id = :r"
    params = {"t": cfg.source.table, "r": cfg.run_id}
    if isinstance(database, db.PostgresDatabase):
        conn = database.conn
        with conn.transaction(), conn.cursor() as cur:
            # produce's lock for this (table, run): a concurrent produce waits, or we do.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{cfg.source.table}|{cfg.run_id}",),
            )
            gen = database.read_generation(cfg.source, cfg.run_id)
            cur.execute(delete_rows.replace(":r", "%(r)s"), params)
            rows = cur.rowcount
            _check(cfg, pin, gen.id if gen else None, rows)
            if gen is not None:
                cur.execute(delete_gen.replace(":t", "%(t)s").replace(":r", "%(r)s"), params)
        return Removed(rows, gen.id if gen else None)
    if isinstance(database, db.SqliteDatabase):
        sqlite = database.conn
        sqlite.execute("BEGIN IMMEDIATE")  # the write lock produce's replace_run takes
        try:
            gen = database.read_generation(cfg.source, cfg.run_id)
            rows = sqlite.execute(delete_rows, params).rowcount
            _check(cfg, pin, gen.id if gen else None, rows)
            if gen is not None:
                sqlite.execute(delete_gen, params)
            sqlite.execute("COMMIT")
        except BaseException:
            sqlite.execute("ROLLBACK")
            raise
        return Removed(rows, gen.id if gen else None)
    raise UsageError("cleanup supports PostgreSQL and plain sqlite:///PATH database URLs")


def _work(cfg: CleanupConfig, log: Logger) -> int:
    pin = finished_plan(cfg)
    with db.connect(cfg.database_url, cfg.connect_timeout) as database:
        removed = remove_run(database, cfg, pin)
    log.info(
        "cleaned",
        table=cfg.source.table,
        rows=removed.rows,
        generation=removed.generation,
        plan=layout.plan_url(cfg.store) if pin is not None else None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step(
        "cleanup", build_parser(), argv, build_config, _work, context=lambda c: {"run_id": c.run_id}
    )


if __name__ == "__main__":
    raise SystemExit(main())
