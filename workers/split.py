"""Step 2, split: turn a row count (or a table's keys, or files) into shards and the plan that names them.

With ``--store`` the full plan goes to STORE/plan.json: the fan-out and the fan-in
read every shard's bounds there. The fan-out then needs only the number of shards
(``--shard-count-file``, for ``withSequence``): each shard pod gets its index and
reads its bounds from the plan, so a workflow parameter stays a few bytes however
wide the fan-out. The shard list itself goes to stdout, and to ``--output-file``
for a ``withParam`` over whole items (guarded at 200 KB, Argo's parameter budget).

The plan pins provenance: the run's generation as produce recorded it (a count that
disagrees with it is refused: a stale count file must never shrink a run), and the
processor identity (``--processor``, ``--batch-size``, the source columns) every
shard must run, and the part format (``--part-format jsonl|parquet``) every shard writes.
With ``--from-files`` the source is files, cut into units (:mod:`workers.filesource`).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import cli, db, keys, layout, output, provenance, shards, storage
from workers.config import Environment, check_run_id
from workers.errors import UsageError
from workers.log import Logger
from workers.provenance import Generation

DEFAULT_BYTES_PER_SHARD = 256 << 20
"""--from-files: bytes of input per shard (a JSON Lines file larger than this is cut)."""

EPILOG = (
    """examples:
  # 1,000,000 rows, 100,000 per shard -> 10 shards
  python -m workers.split --count 1000000 --rows-per-shard 100000

  # in a template: count from produce, the plan for fan-out and fan-in, the number of
  # shards for withSequence (each shard pod then runs shard --shard INDEX)
  python -m workers.split --count-file /tmp/count --rows-per-shard 50000 \\
    --run-id my-run --store /mnt/shared/my-run --shard-count-file /tmp/shard-count

  # the whole items for a withParam of your own (fails over 200 KB, ~3,000 shards)
  python -m workers.split --count-file /tmp/count --rows-per-shard 50000 \\
    --run-id my-run --store /mnt/shared/my-run --output-file /tmp/shards.json

  # a processor: the plan pins it, and every shard must run the same one
  python -m workers.split --count-file /tmp/count --rows-per-shard 50000 \\
    --processor mypkg.proc:enrich --run-id my-run --store /mnt/shared/my-run

  # files as the source: a bucket's JSON Lines, CSV and Parquet files in shards of ~256 MiB
  python -m workers.split --from-files 's3://bucket/events/2026-11-*.jsonl' \\
    --bytes-per-shard 268435456 --run-id events-2026-11 --store s3://bucket/runs/events-2026-11

  # cut an existing table at exact quantiles of its key: an integer, numeric, text, uuid,
  # date or timestamp column, compared in the database (text in the column's collation)
  python -m workers.split --from-db --table events --key-column id --run-column '' \\
    --data-column '' --rows-per-shard 200000 --run-id events-2026-11-23 --store s3://bucket/runs/x

Each item of a count: {"index": 0, "lo": 1, "hi": 50000, "rows": 50000}; lo/hi are
inclusive key bounds. Each item of --from-db names its key's type and is half-open, lo
included, hi excluded: {"index": 1, "lo": "b", "hi": "k", "rows": 50000, "key": "text"}.
null is an open end. A count of 0 gives [].

"""
    + cli.EXIT_CODES_EPILOG
)


@dataclass(frozen=True)
class SplitConfig:
    count: int | None
    count_file: str | None
    from_db: bool
    database_url: str
    connect_timeout: float
    source: db.Source
    rows_per_shard: int
    max_shards: int
    run_id: str | None
    store: storage.Store | None
    output_file: str | None
    processor: str | None = None
    batch_size: int = 5000
    shard_count_file: str | None = None
    part_format: str = "jsonl"
    batch_format: str = "rows"
    from_files: str | None = None
    bytes_per_shard: int = DEFAULT_BYTES_PER_SHARD


@dataclass(frozen=True)
class Cut:
    """What split decided: the expected total, the shards, how they were cut, and what it saw."""

    total: int | None  # None: files whose rows are known only once read
    items: list[shards.Shard]
    mode: str
    generation: Generation | None = None
    observed: dict[str, Any] | None = None
    meta: dict[str, object] | None = None  # what a file source adds to the plan
    key: keys.KeyType | None = None
    heavy: tuple[shards.Heavy, ...] = ()


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.split", description=__doc__, epilog=EPILOG)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--count", type=cli.non_negative_int, help="number of rows (keys 1..N)")
    src.add_argument(
        "--count-file", metavar="PATH", help="file holding the row count (produce's --count-file)"
    )
    src.add_argument(
        "--from-db", action="store_true", help="read the key range of --table instead of a count"
    )
    src.add_argument(
        "--from-files",
        metavar="URL_GLOB",
        help="read files instead of a database: a folder, glob, s3:// or gs:// prefix of .jsonl, "
        ".jsonl.gz, .csv and .parquet files (needs --store; see --bytes-per-shard)",
    )
    p.add_argument(
        "--bytes-per-shard",
        type=cli.positive_int,
        default=DEFAULT_BYTES_PER_SHARD,
        help="--from-files: input bytes per shard; larger JSON Lines files are cut at lines, "
        f"Parquet files at row groups (default {DEFAULT_BYTES_PER_SHARD})",
    )
    p.add_argument(
        "--rows-per-shard",
        type=cli.positive_int,
        default=100_000,
        help="rows per shard (default 100000)",
    )
    p.add_argument(
        "--max-shards",
        type=cli.positive_int,
        default=shards.DEFAULT_MAX_SHARDS,
        help=f"refuse to fan out wider than this (default {shards.DEFAULT_MAX_SHARDS})",
    )
    cli.add_source_arguments(p, "table for --from-db, and where produce's generation is")
    cli.add_processor_arguments(p)
    cli.add_part_format_argument(p, pinned=True)
    cli.add_batch_format_argument(p)
    p.add_argument("--run-id", help="run id (default: $WORKERS_RUN_ID, $ARGO_WORKFLOW_NAME)")
    p.add_argument(
        "--store", metavar="URL", help="run folder/URL: writes STORE/plan.json for the fan-in"
    )
    p.add_argument(
        "--output-file",
        metavar="PATH",
        help="also write the shard list here, for a withParam over whole items (at most 200 KB)",
    )
    p.add_argument(
        "--shard-count-file",
        metavar="PATH",
        help="write the number of shards here, for withSequence (needs --store: shards by index "
        "read their bounds from the plan)",
    )
    return p


def build_config(args: argparse.Namespace, env: Environment) -> SplitConfig:
    # An explicit --run-id '' is a templating mistake, never a request for the default.
    run_id = args.run_id if args.run_id is not None else env.run_id
    if run_id is not None:
        check_run_id(run_id)
    if args.store and not run_id:
        raise UsageError("--store needs a run id: pass --run-id or set WORKERS_RUN_ID")
    store = storage.check_store(args.store) if args.store else None
    if args.output_file:
        storage.check_destination(args.output_file, "--output-file")
    if args.from_files is not None and not args.store:
        raise UsageError("--from-files needs --store: the shards read their files from the plan")
    if args.shard_count_file:
        if not args.store:
            raise UsageError(
                "--shard-count-file needs --store: a shard named by index reads its bounds "
                "from STORE/plan.json"
            )
        storage.check_destination(args.shard_count_file, "--shard-count-file")
    return SplitConfig(
        count=args.count,
        count_file=args.count_file,
        from_db=args.from_db,
        database_url=env.effective_database_url,
        connect_timeout=env.connect_timeout,
        source=db.Source(
            args.table, args.key_column, args.run_column or None, args.data_column or None
        ),
        rows_per_shard=args.rows_per_shard,
        max_shards=args.max_shards,
        run_id=run_id,
        store=store,
        output_file=args.output_file,
        processor=args.processor,
        batch_size=args.batch_size,
        shard_count_file=args.shard_count_file,
        part_format=args.part_format,
        batch_format=args.batch_format,
        from_files=args.from_files,
        bytes_per_shard=args.bytes_per_shard,
    )


def _database_may_exist(url: str) -> bool:
    """False for a SQLite file that is not there: looking would create an empty one."""
    if not url.startswith("sqlite:"):
        return True
    path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
    return bool(path) and os.path.exists(path)


def recorded_generation(cfg: SplitConfig) -> Generation | None:
    """produce's generation of this run, if the database holds one."""
    if not (cfg.run_id and cfg.source.run_column) or not _database_may_exist(cfg.database_url):
        return None
    with db.connect(cfg.database_url, cfg.connect_timeout) as database:
        return database.read_generation(cfg.source, cfg.run_id)


def check_count(count: int, generation: Generation | None, cfg: SplitConfig, origin: str) -> None:
    """A count must be the one produce committed: a stale count file would drop rows."""
    if generation is not None and generation.rows != count:
        raise UsageError(
            f"{origin} says {count} rows, but run {cfg.run_id!r} of table {cfg.source.table!r} "
            f"holds {generation.describe()}: the count is stale; "
            "pass the count of the produce that committed this generation"
        )


def plan_shards(cfg: SplitConfig) -> Cut:
    """The shards for this configuration, the expected total, how they were cut and from what."""
    if cfg.count is not None or cfg.count_file:
        if cfg.count is not None:
            count, origin = cfg.count, f"--count {cfg.count}"
        else:
            assert cfg.count_file
            origin = f"count file {cfg.count_file}"
            text = storage.read_text_input(
                cfg.count_file, shards.MAX_COUNT_FILE_BYTES, "count file"
            )
            count = shards.parse_count(text, origin)
        items = shards.by_count(count, cfg.rows_per_shard, cfg.max_shards)
        generation = recorded_generation(cfg)
        check_count(count, generation, cfg, origin)
        return Cut(count, items, "count", generation)
    if cfg.from_files is not None:
        return plan_files(cfg)
    return plan_table(cfg)


def plan_table(cfg: SplitConfig) -> Cut:
    """``--from-db``: half-open shards at exact quantiles of the table's key, read in one
    snapshot with the generation; the database orders and compares the keys."""
    run = cfg.run_id if cfg.source.run_column else None
    if cfg.source.run_column and not run:
        raise UsageError("--from-db with a run column needs --run-id (or --run-column '')")
    with db.connect(cfg.database_url, cfg.connect_timeout) as database, database.snapshot():
        database.check_columns(cfg.source)
        key = database.key_type(cfg.source)
        # One snapshot: the generation, the counts and the cut points describe the same rows.
        generation = database.read_generation(cfg.source, run) if run else None
        stats = database.key_stats(cfg.source, run, key)
        observed = {"rows": stats.rows, "min_key": stats.min_key, "max_key": stats.max_key}
        if generation is not None and generation.rows != stats.rows:
            raise UsageError(
                f"table {cfg.source.table!r} holds {stats.rows} rows of run {run!r}, but its "
                f"{generation.describe()}: rows were changed outside produce"
            )
        if stats.nulls:
            raise UsageError(
                f"table {cfg.source.table!r}: {stats.nulls} of {stats.rows} rows have a NULL "
                f"--key-column {cfg.source.key_column!r}, which no key range holds: read a view "
                "without them (WHERE key IS NOT NULL), or give them a key"
            )
        if stats.rows == 0:
            return Cut(0, [], "db-empty", generation, observed, key=key)
        # guard before the heavy query
        shards.by_count(stats.rows, cfg.rows_per_shard, cfg.max_shards)
        every = cfg.rows_per_shard
        found = database.key_cuts(cfg.source, run, every, key) if stats.rows > every else []
    items, heavy = shards.by_cuts(found, stats.rows, every, key.kind)
    if len(items) > cfg.max_shards:
        raise UsageError(
            f"{stats.rows} rows at --rows-per-shard {every} make {len(items)} shards (keys "
            f"repeated more than a shard's worth take one each), over --max-shards "
            f"{cfg.max_shards}: raise --rows-per-shard or --max-shards"
        )
    for item in items:
        size = len(orjson.dumps(item.to_dict()))
        if size > shards.MAX_ITEM_BYTES:
            raise UsageError(
                f"shard {item.index}'s key bounds take {size} bytes, over the "
                f"{shards.MAX_ITEM_BYTES} byte limit of a shard item: cut on a shorter key"
            )
    return Cut(stats.rows, items, "db-quantiles", generation, observed, key=key, heavy=tuple(heavy))


def plan_files(cfg: SplitConfig) -> Cut:
    """Shards over files (:mod:`workers.filesource`): their units go to the plan's meta."""
    from workers import filesource

    assert cfg.from_files is not None
    fp = filesource.plan_files(cfg.from_files, cfg.bytes_per_shard, cfg.max_shards)
    items = [shards.Shard(i, None, None, fp.shard_rows(i)) for i in range(len(fp.shard_units))]
    meta = fp.meta(cfg.from_files, cfg.bytes_per_shard)
    observed: dict[str, int | None] = {"files": len(fp.files), "units": len(fp.units)}
    return Cut(fp.total, items, filesource.MODE, fp.generation, observed, meta)


def _previous_plan(store: storage.Store) -> layout.Plan | None:
    """The plan this split replaces, if one is there and readable (it is rewritten anyway)."""
    try:
        return layout.read_plan_if_any(store)
    except UsageError:
        return None


def report_repin(previous: layout.Plan | None, plan: layout.Plan, log: Logger) -> None:
    """Say so when this plan replaces one of the same run and generation that pinned another
    processor identity (the code was fixed, then the run resumed): every shard whose commit
    or checkpoint the earlier identity made is recomputed, the others are reused."""
    if previous is None or previous.run_id != plan.run_id:
        return
    if previous.processor is None or plan.processor is None:
        return
    if provenance.generation_id(previous.generation) != provenance.generation_id(plan.generation):
        return
    diffs = provenance.identity_differences(previous.processor, plan.processor)
    if diffs:
        log.warning(
            "re-pinned",
            message=f"the plan pinned processor {previous.processor.get('path')!r}, this split "
            f"pins {'; '.join(diffs)}: shards made by the earlier one are recomputed, "
            "the rows of the same generation are kept",
        )


def _work(cfg: SplitConfig, log: Logger) -> int:
    t0 = time.perf_counter()
    # Only a processor named to split is pinned ("" names the default): without one, merge
    # still requires every part to come from one processor, whichever it was.
    identity = (
        provenance.identity_of(cfg.processor, cfg.batch_size, cfg.source, cfg.batch_format)
        if cfg.processor is not None or cfg.batch_format != "rows"
        else None
    )
    cut = plan_shards(cfg)
    total, items, mode = cut.total, cut.items, cut.mode
    data = shards.encode(items)
    if cfg.output_file:
        shards.check_parameter_size(data)  # before the plan: fail without leaving half a result
    if cfg.store:
        assert cfg.run_id
        meta: dict[str, object] = {
            "rows_per_shard": cfg.rows_per_shard,
            "mode": mode,
            "created": time.time(),
            "part_format": cfg.part_format,
        }
        if cut.observed is not None:
            meta["observed"] = cut.observed
        if cut.meta:
            meta.update(cut.meta)
        if cfg.from_db:
            meta["source"] = {"table": cfg.source.table, "key_column": cfg.source.key_column}
        if cut.key is not None:
            meta["key"] = cut.key.to_dict(cfg.source.key_column)
        plan = layout.Plan(
            cfg.run_id,
            total,
            tuple(items),
            meta,
            cut.generation.to_dict() if cut.generation else None,
            identity,
        )
        report_repin(_previous_plan(cfg.store), plan, log)
        layout.write_plan(cfg.store, plan)
    if cfg.output_file:
        storage.write_bytes(cfg.output_file, data + b"\n")
    if cfg.shard_count_file:
        storage.write_bytes(cfg.shard_count_file, f"{len(items)}\n".encode())
    for h in cut.heavy:
        log.warning(
            "repeated-key",
            shard=h.shard,
            value=keys.clipped(h.value),
            rows=h.rows,
            rows_per_shard=cfg.rows_per_shard,
            message=f"key {keys.shown(h.value)} is held by {h.rows} rows, more than a shard's "
            f"{cfg.rows_per_shard}: shard {h.shard} holds them all (a key never spans two shards)",
        )
    out = output.declared()
    out.write(data + b"\n")
    out.flush()
    log.info(
        "planned",
        rows=total,
        shards=len(items),
        mode=mode,
        generation=cut.generation.id if cut.generation else None,
        processor=identity["path"] if identity else None,
        bytes=len(data),
        seconds=round(time.perf_counter() - t0, 4),
        plan=layout.plan_url(cfg.store) if cfg.store else None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step(
        "split", build_parser(), argv, build_config, _work, context=lambda c: {"run_id": c.run_id}
    )


if __name__ == "__main__":
    raise SystemExit(main())
