"""Step 3, shard: pull one shard's key range, apply the processor, commit JSON Lines to storage.

Data goes to ``STORE/parts/part-NNNNN.jsonl`` (or ``.parquet`` with ``--part-format parquet``,
see :mod:`workers.parquetparts`) through an atomic writer, then a
commit record (rows, bytes, sha256, attempt, when the work started and how long it
and the part's commit took, the generation the rows came from and the processor
identity) goes to ``STORE/commits/part-NNNNN.json``.
A reader never sees a partial part; a retry or a duplicate attempt rewrites the
same name and converges to one verified result. The part is written in checkpointed
chunks (``--checkpoint-rows``): a retry after a kill resumes after the last complete
chunk and publishes the same bytes a clean run would (see :mod:`workers.checkpoints`).

The rows and their generation are read in one database snapshot. Where split wrote
a plan, the shard must match it: its item, the plan's processor identity and the
plan's generation; a verified commit is reused only when all of these match.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import (
    checkpoints,
    cli,
    db,
    deadline,
    failures,
    fanin,
    filesource,
    keys,
    layout,
    parquetparts,
    plugins,
    provenance,
    stop,
    storage,
    usercode,
)
from workers.config import Environment, check_run_id
from workers.errors import IncompleteError, UsageError
from workers.log import Logger, rate
from workers.parquetparts import ParquetPart  # pyarrow itself is imported only for Parquet parts
from workers.provenance import Generation
from workers.shards import MAX_ITEM_BYTES, Shard, parse_index, parse_item

EPILOG = (
    """examples:
  # one item of split's output, rows from the embedded SQLite database, parts to a local folder
  python -m workers.shard --shard '{"index":0,"lo":1,"hi":50000,"rows":50000}' \\
    --run-id my-run --store ./workers-data/my-run

  # shard 7 by index: its bounds come from the plan split wrote to the store
  python -m workers.shard --shard 7 --run-id my-run --store ./workers-data/my-run

  # in a template fanned out by withSequence (split's --shard-count-file): {{item}} is the index
  python -m workers.shard --shard '{{item}}' --run-id '{{workflow.name}}' \\
    --store /mnt/shared/{{workflow.name}} --stats-dir /tmp/stats --attempt '{{retries}}'

  # in a template: the item from withParam, your processor, a bucket
  python -m workers.shard --shard '{{item}}' --run-id '{{workflow.name}}' \\
    --processor mypkg.proc:enrich --store s3://bucket/runs/{{workflow.name}} --attempt '{{retries}}'

  # a long shard on spot nodes: checkpoint every 50,000 rows; a retry resumes after the last one
  python -m workers.shard --shard @/tmp/item.json --run-id my-run --store s3://bucket/runs/my-run \\
    --checkpoint-rows 50000

  # Argo passes arguments over 128 KB as @file: so do we
  python -m workers.shard --shard @/tmp/item.json --run-id my-run --store /mnt/shared/my-run

  # your processor on Arrow record batches (split pinned the same --batch-format)
  python -m workers.shard --shard 3 --run-id my-run --store ./workers-data/my-run \
    --batch-format pyarrow --processor mypkg.proc:enrich_arrow

A processor is a function taking a list of row dicts and returning an iterable of
JSON-serializable values; the default passes rows through unchanged. With
--batch-format pyarrow it takes a pyarrow.RecordBatch and returns a RecordBatch or Table
(or an iterable of them); with pandas or polars, a DataFrame.

"""
    + cli.EXIT_CODES_EPILOG
)


@dataclass(frozen=True)
class ShardConfig:
    shard: Shard
    run_id: str
    store: storage.Store
    database_url: str
    connect_timeout: float
    source: db.Source
    processor: str | None
    batch_size: int
    attempt: int
    force: bool
    stats_dir: str | None = None
    plan: layout.Plan | None = None  # already read when the shard was named by index
    checkpoint_rows: int = checkpoints.DEFAULT_CHECKPOINT_ROWS
    part_format: str = "jsonl"
    batch_format: str = "rows"


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.shard", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "--shard",
        required=True,
        metavar="N|JSON|@PATH",
        help="shard N of the plan in --store (withSequence's {{item}}), or one item of split's "
        "output, or @file holding either",
    )
    p.add_argument("--run-id", help="run id (default: $WORKERS_RUN_ID, $ARGO_WORKFLOW_NAME)")
    p.add_argument("--store", metavar="URL", help="run folder/URL (default: ./workers-data/RUN_ID)")
    cli.add_processor_arguments(p)
    cli.add_part_format_argument(p, pinned=False)
    cli.add_batch_format_argument(p)
    cli.add_source_arguments(p, "source table")
    p.add_argument(
        "--attempt",
        type=cli.non_negative_int,
        help="attempt number for the commit record (Argo: {{retries}})",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute from the first row even if a verified commit or a checkpoint exists",
    )
    p.add_argument(
        "--checkpoint-rows",
        type=cli.non_negative_int,
        default=checkpoints.DEFAULT_CHECKPOINT_ROWS,
        metavar="N",
        help="checkpoint the part every N rows read, rounded up to whole batches; a retry "
        f"resumes after the last checkpoint; 0: none (default {checkpoints.DEFAULT_CHECKPOINT_ROWS})",
    )
    cli.add_grace_argument(p)
    p.add_argument(
        "--stats-dir",
        metavar="DIR",
        help="write this attempt's own seconds, rows and rows-per-second here, one file each "
        "(for valueFrom.path and the metrics; 0 when a verified commit was reused)",
    )
    return p


def read_item(value: str) -> Shard | int:
    """A shard item, or the index of a shard of the plan (a bare integer)."""
    text = value
    if value.startswith("@"):
        text = storage.read_text_input(value[1:], MAX_ITEM_BYTES, "shard item file")
    index = parse_index(text)
    return index if index is not None else parse_item(text)


def planned_shard(store: storage.Store | str, index: int) -> tuple[Shard, layout.Plan]:
    """Shard ``index`` of the plan in ``store``: a missing plan or index is bad input (exit 2)."""
    plan = layout.read_plan_if_any(store)
    if plan is None:
        raise UsageError(
            f"--shard {index} names a shard of the plan, but there is no plan at "
            f"{layout.plan_url(store)}: run split with --store {store}, or pass the item as JSON"
        )
    shard = plan.shard(index)
    if shard is None:
        n = len(plan.shards)
        raise UsageError(
            f"--shard {index}: the plan at {layout.plan_url(store)} has "
            + (f"{n} shards (0..{n - 1})" if n else "no shards")
        )
    return shard, plan


def build_config(args: argparse.Namespace, env: Environment) -> ShardConfig:
    item = read_item(args.shard)
    # An explicit --run-id '' is a templating mistake, never a request for the default.
    run_id = args.run_id if args.run_id is not None else env.run_id
    if run_id is None:
        raise UsageError("a run id is required: pass --run-id or set WORKERS_RUN_ID")
    check_run_id(run_id)
    store = storage.check_store(args.store or env.store or storage.join("workers-data", run_id))
    plan = None
    if isinstance(item, int):
        shard, plan = planned_shard(store, item)
    else:
        shard = item
    if args.batch_format != "rows":
        _check_columnar(args.processor, args.batch_format)
    elif args.processor:
        # Fail before any work: with the flag's name, or with the function's wrong signature.
        func = plugins.load(args.processor, "--processor")
        plugins.check_call(
            func,
            args.processor,
            "processor",
            "a processor is called with one list of row dicts",
            [],
        )
    if args.stats_dir is not None:
        check_stats_dir(args.stats_dir)
    part_format = args.part_format
    if part_format is None:
        if plan is None:
            plan = layout.read_plan_if_any(store)
        part_format = layout.part_format(plan)
    return ShardConfig(
        shard=shard,
        run_id=run_id,
        store=store,
        database_url=env.effective_database_url,
        connect_timeout=env.connect_timeout,
        source=db.Source(
            args.table, args.key_column, args.run_column or None, args.data_column or None
        ),
        processor=args.processor,
        batch_size=args.batch_size,
        attempt=args.attempt if args.attempt is not None else (env.attempt or 0),
        force=args.force,
        stats_dir=args.stats_dir,
        plan=plan,
        checkpoint_rows=args.checkpoint_rows,
        part_format=part_format,
        batch_format=args.batch_format,
    )


def _check_columnar(processor: str | None, fmt: str) -> None:
    """Before any work: the format's libraries are installed and the processor takes its batch."""
    from workers import batches

    batches.require(fmt)
    if processor:
        batches.check_signature(plugins.load(processor, "--processor"), processor, fmt)


@dataclass(frozen=True)
class Expected:
    """What this attempt must match: the plan (if split wrote one) and its own processor."""

    plan: layout.Plan | None
    identity: dict[str, Any]

    @property
    def generation(self) -> dict[str, Any] | None:
        return self.plan.generation if self.plan is not None else None


def expectations(cfg: ShardConfig) -> Expected:
    """Check this shard against the run's plan before any work: item, processor, options."""
    identity = provenance.identity_of(cfg.processor, cfg.batch_size, cfg.source, cfg.batch_format)
    plan = cfg.plan if cfg.plan is not None else layout.read_plan_if_any(cfg.store)
    if plan is None:
        return Expected(None, identity)
    s = cfg.shard
    if plan.run_id != cfg.run_id:
        raise UsageError(f"the plan in {cfg.store} is for run {plan.run_id!r}, not {cfg.run_id!r}")
    planned = plan.shard(s.index)
    if planned != s:
        raise UsageError(
            f"shard item {s.to_dict()} is not shard {s.index} of the plan in {cfg.store} "
            f"({planned.to_dict() if planned else 'no such shard'}): pass an item of that plan"
        )
    pinned = layout.part_format(plan)
    if cfg.part_format != pinned:
        raise UsageError(
            f"the plan in {cfg.store} pins --part-format {pinned}; this shard was asked for "
            f"{cfg.part_format}: every shard of a run writes one format"
        )
    if plan.processor is not None:
        diffs = provenance.identity_differences(plan.processor, identity)
        if diffs:
            raise UsageError(
                f"the plan pins processor {plan.processor.get('path')!r}; this shard runs "
                + "; ".join(diffs)
                + ": "
                + _pin_advice(plan.processor, identity)
            )
    return Expected(plan, identity)


def _pin_advice(pinned: dict[str, Any], identity: dict[str, Any]) -> str:
    if {**pinned, "code": None} == {**identity, "code": None}:
        # Only the code changed (a fix since split ran): the plan must pin the code of now.
        return (
            "run split again to pin the code of now (workers run --resume does), then the "
            "shards: those the old code made are recomputed"
        )
    return (
        "pass split and shard the same --processor, --batch-size, --batch-format and source columns"
    )


def committed_record(
    cfg: ShardConfig,
    expected: Expected,
    current: Callable[[], dict[str, Any] | None] = lambda: None,
) -> dict[str, Any] | None:
    """The existing commit record if it is for this run, shard, generation and processor and
    its data still verifies; anything else means the part must be made again."""
    try:
        url = layout.commit_url(cfg.store, cfg.shard.index)
        record = orjson.loads(storage.read_small(url, layout.MAX_RECORD_BYTES, "commit record"))
    except (FileNotFoundError, orjson.JSONDecodeError, UsageError):
        return None
    s = cfg.shard
    if not isinstance(record, dict) or (
        record.get("run_id"),
        record.get("lo"),
        record.get("hi"),
        record.get("key"),
    ) != (cfg.run_id, s.lo, s.hi, s.key):
        return None
    if record.get("processor") != expected.identity:
        return None
    if record.get("format", "jsonl") != cfg.part_format:
        return None
    # Without a plan's generation, the database's current one; asked only for a record
    # that could otherwise be reused, since it costs a connection.
    want = expected.generation if expected.generation is not None else current()
    if provenance.generation_id(record.get("generation")) != provenance.generation_id(want):
        return None
    try:
        data = storage.read_bytes(
            layout.part_url(cfg.store, cfg.shard.index, cfg.part_format), "part"
        )
    except FileNotFoundError:
        return None
    if record.get("bytes") != len(data) or record.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return record


def _current_generation(cfg: ShardConfig) -> dict[str, Any] | None:
    """The run's generation in the database now (for reuse without a plan to compare with)."""
    if not cfg.source.run_column:
        return None
    with db.connect(cfg.database_url, cfg.connect_timeout) as database:
        gen = database.read_generation(cfg.source, cfg.run_id)
    return gen.to_dict() if gen else None


def check_generation(cfg: ShardConfig, expected: Expected, seen: Generation | None) -> None:
    """Rows may only be read from the generation the plan was made from."""
    want = expected.generation
    if want is None or provenance.generation_id(want) == (seen.id if seen else None):
        return
    raise failures.error(
        "stale",
        f"shard {cfg.shard.index}: run {cfg.run_id!r} of table {cfg.source.table!r} now holds "
        f"{seen.describe() if seen else 'no recorded generation'}, the plan was made from "
        f"{provenance.describe(want)}: produce ran again",
    )


def _processed(
    func: Callable[..., Any], path: str, batches: Iterable[tuple[list[dict[str, Any]], int]]
) -> Iterable[tuple[bytes, int, int, int]]:
    """Apply the processor per batch; yield (JSON Lines block, rows in, values out, last key)."""
    for batch, last_key in batches:
        out = usercode.call_processor(func, path, batch)
        yield usercode.encode_values(out, path, func), len(batch), len(out), last_key


def _copy_rows(
    cfg: ShardConfig,
    database: db.Database,
    func: Callable[..., Any] | None,
    writer: checkpoints.PartWriter | ParquetPart,
    t0: float,
    key: keys.KeyType | None = None,
) -> tuple[int, float | None]:
    """Stream the key range (after what ``writer`` resumed) through the processor into
    ``writer``, batch by batch: (rows read by this attempt, seconds to the first row)."""
    lo, hi = read_range(cfg.shard, key, writer.resume_key)
    if cfg.batch_format != "rows":
        return _copy_columnar(cfg, database, func, writer, t0, lo, hi)
    read = 0
    first_row_s: float | None = None
    if isinstance(writer, ParquetPart):
        return _copy_rows_parquet(cfg, database, func, writer, lo, hi, t0)
    fast = database.stream_json_lines(cfg.source, cfg.run_id, lo, hi) if func is None else None
    if fast is not None:
        # closing(): a failure must end the read (and its savepoint) inside the snapshot.
        with contextlib.closing(fast):  # type: ignore[type-var]
            for block, n, last_key in fast:
                if first_row_s is None:
                    first_row_s = time.perf_counter() - t0
                writer.write(block)
                writer.end_batch(n, n, last_key)
                read += n
        return read, first_row_s
    from workers.synth import identity

    batches = database.stream_rows(cfg.source, cfg.run_id, lo, hi, cfg.batch_size)
    with contextlib.closing(batches):  # type: ignore[type-var]
        for block, n_in, n_out, last_key in _processed(
            func or identity, cfg.processor or "identity", batches
        ):
            if first_row_s is None:
                first_row_s = time.perf_counter() - t0
            writer.write(block)
            writer.end_batch(n_in, n_out, last_key)
            read += n_in
    return read, first_row_s


def _copy_rows_parquet(
    cfg: ShardConfig,
    database: db.Database,
    func: Callable[..., Any] | None,
    writer: ParquetPart,
    lo: db.Key,
    hi: db.Key,
    t0: float,
) -> tuple[int, float | None]:
    """As :func:`_copy_rows`, into a Parquet part: each batch's output dicts become Arrow."""
    from workers.synth import identity

    func = func or identity
    path = cfg.processor or "identity"
    read = 0
    first_row_s: float | None = None
    batches = database.stream_rows(cfg.source, cfg.run_id, lo, hi, cfg.batch_size)
    with contextlib.closing(batches):  # type: ignore[type-var]
        for batch, last_key in batches:
            if first_row_s is None:
                first_row_s = time.perf_counter() - t0
            out = usercode.call_processor(func, path, batch)  # exit 3 and the deadline, as rows
            writer.write_rows(out)
            writer.end_batch(len(batch), len(out), last_key)
            read += len(batch)
    return read, first_row_s


def open_writer(
    cfg: ShardConfig, expected: Expected, seen: Generation | None, fresh: bool = False
) -> checkpoints.PartWriter | ParquetPart:
    """The part writer for this shard's part format (pyarrow is imported only for Parquet)."""
    index = cfg.shard.index
    key = checkpoint_key(cfg, expected, seen)
    if cfg.part_format != "jsonl":
        # A Parquet part's row groups follow --checkpoint-rows: another value, other bytes.
        key["part_format"] = cfg.part_format
        key["checkpoint_rows"] = cfg.checkpoint_rows
        key["writer"] = parquetparts.writer_version()  # another pyarrow may encode otherwise
    inner = checkpoints.open_part(
        layout.part_location(cfg.store, index, cfg.part_format),
        checkpoints.checkpoint_url(cfg.store, index, cfg.part_format),
        key,
        cfg.checkpoint_rows,
        fresh=cfg.force or fresh,
    )
    if cfg.part_format != "parquet":
        return inner
    try:
        return ParquetPart(inner, cfg.checkpoint_rows)
    except BaseException:
        inner.__exit__(None, None, None)
        raise


def _copy_columnar(
    cfg: ShardConfig,
    database: db.Database,
    func: Callable[..., Any] | None,
    writer: checkpoints.PartWriter | ParquetPart,
    t0: float,
    lo: db.Key,
    hi: db.Key,
) -> tuple[int, float | None]:
    """``_copy_rows`` for the columnar batch formats: Arrow batches from the database through
    the processor (:mod:`workers.batches`), each returned table one block of the part."""
    from workers import batches

    read = 0
    first_row_s: float | None = None
    arrow = database.stream_arrow(cfg.source, cfg.run_id, lo, hi, cfg.batch_size)
    with contextlib.closing(arrow):  # type: ignore[type-var]
        path = cfg.processor or provenance.IDENTITY
        for table, n_in, n_out, last_key in batches.apply(func, cfg.batch_format, path, arrow):
            deadline.check()  # a deadline user code swallowed never writes on
            if first_row_s is None:
                first_row_s = time.perf_counter() - t0
            # The part format's dispatch point: a Parquet part takes the table itself.
            if isinstance(writer, ParquetPart):
                writer.write_table(table)
            else:
                writer.write(batches.table_to_jsonl(table))
            writer.end_batch(n_in, n_out, last_key)
            read += n_in
    return read, first_row_s


def read_range(shard: Shard, key: keys.KeyType | None, resume: Any) -> tuple[db.Key, db.Key]:
    """The bounds this attempt reads: the shard's own, or after the last checkpointed key.

    A count's closed integer range resumes at the next integer; a typed half-open range at
    the first key above the last one committed, as the database compares them."""
    if shard.key is None:
        lo = shard.lo if resume is None else int(resume) + 1
        assert lo is None or isinstance(lo, int)
        assert shard.hi is None or isinstance(shard.hi, int)
        return lo, shard.hi
    assert key is not None
    start: db.Key = None
    if resume is not None:
        start = keys.Bound(resume, False, key.cast)
    elif shard.lo is not None:
        start = keys.Bound(shard.lo, True, key.cast)
    return start, None if shard.hi is None else keys.Bound(shard.hi, False, key.cast)


def resumable_writer(
    cfg: ShardConfig,
    expected: Expected,
    seen: Generation | None,
    database: db.Database,
    key: keys.KeyType | None,
    log: Logger | None,
) -> checkpoints.PartWriter | ParquetPart:
    """:func:`open_writer`, its checkpoint dropped when a resume after its last key would not
    be exact: a table's key may repeat, and reading on at ``key > last`` is exact only when the
    checkpointed rows hold every row of that key (the database counts them, in the snapshot)."""
    writer = open_writer(cfg, expected, seen)
    last = writer.resume_key
    if key is None or last is None:
        return writer
    lo, _ = read_range(cfg.shard, key, None)
    held = database.count_range(cfg.source, cfg.run_id, lo, keys.Bound(last, True, key.cast))
    if held == writer.resumed_rows_in:
        return writer
    writer.__exit__(None, None, None)
    if log:
        log.warning(
            "checkpoint-dropped",
            resume_after_key=keys.clipped(last),
            rows_in=writer.resumed_rows_in,
            rows_through_key=held,
            message=f"the checkpoint ends inside the rows of key {keys.shown(last)} "
            f"({held} rows up to it, {writer.resumed_rows_in} checkpointed): the shard reads "
            "from its start",
        )
    return open_writer(cfg, expected, seen, fresh=True)


def key_type(cfg: ShardConfig, database: db.Database) -> keys.KeyType | None:
    """A typed shard's key as the table has it now: it must be the type split cut."""
    if cfg.shard.key is None:
        return None
    key = database.key_type(cfg.source)
    if key.kind != cfg.shard.key:
        raise failures.error(
            "stale",
            f"shard {cfg.shard.index}: key column {cfg.source.key_column!r} of table "
            f"{cfg.source.table!r} is {key.declared} ({key.kind}) now, the plan cut it as "
            f"{cfg.shard.key}: run split again",
        )
    return key


def checkpoint_key(cfg: ShardConfig, expected: Expected, seen: Generation | None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: this run, shard, bounds, generation and
    processor (its code fingerprint and batch size included)."""
    s = cfg.shard
    out = {
        "run_id": cfg.run_id,
        "index": s.index,
        "lo": s.lo,
        "hi": s.hi,
        "generation": seen.id if seen else None,
        "processor": expected.identity,
    }
    if s.key is not None:
        out["key"] = s.key
    return out


def run_shard(cfg: ShardConfig, log: Logger | None = None) -> dict[str, Any]:
    """Produce and commit one shard; returns its commit record (with ``"reused": True`` added,
    not stored, when a verified commit of an earlier attempt stood already)."""
    s = cfg.shard
    expected = expectations(cfg)
    if not cfg.force:
        existing = committed_record(cfg, expected, lambda: _current_generation(cfg))
        if existing is not None:
            checkpoints.sweep(
                layout.part_location(cfg.store, s.index, cfg.part_format),
                checkpoints.checkpoint_url(cfg.store, s.index, cfg.part_format),
            )
            if log:
                log.info(
                    "already-committed", rows=existing.get("rows"), sha256=existing.get("sha256")
                )
            return {**existing, "reused": True}
    func = plugins.load(cfg.processor, "--processor") if cfg.processor else None
    commit = layout.commit_url(cfg.store, s.index)
    started = time.time()
    t0 = time.perf_counter()
    files = filesource.is_files_plan(expected.plan)
    source = (
        filesource.FileReader(expected.plan, s.index)
        if files
        else db.connect(cfg.database_url, cfg.connect_timeout)
    )
    with source as database, database.snapshot():
        database.check_columns(cfg.source)
        key = key_type(cfg, database)
        # A file source's generation is the plan's listing, once its files are unchanged.
        read_gen = cfg.source.run_column or files
        seen = database.read_generation(cfg.source, cfg.run_id) if read_gen else None
        check_generation(cfg, expected, seen)
        with resumable_writer(cfg, expected, seen, database, key, log) as writer:
            if log and writer.mode != "fresh":
                log.info(
                    "checkpoint",
                    mode=writer.mode,
                    chunks=len(writer.chunks),
                    rows_in=writer.rows_in,
                    bytes=writer.bytes,
                    resume_after_key=writer.resume_key,
                )
            with stop.at_boundaries():  # SIGTERM: checkpoint at the batch's end, exit 75
                rows_read, first_row_s = _copy_rows(cfg, database, func, writer, t0, key)
            rows_in, rows_out = writer.rows_in, writer.rows
            if s.rows is not None and rows_in != s.rows:
                writer.forget()  # the rows changed under the checkpoints: never resume them
                raise IncompleteError(
                    f"shard {s.index} read {rows_in} rows in keys {s.describe()}, the plan expects {s.rows}: "
                    "did the table change after split?"
                )
            deadline.check()  # user code may have swallowed it: a late part is never committed
            committing = time.perf_counter()
            writer.commit()
            commit_s = time.perf_counter() - committing
    seconds = time.perf_counter() - t0
    record = {
        "run_id": cfg.run_id,
        "index": s.index,
        "lo": s.lo,
        "hi": s.hi,
        **({"key": s.key} if s.key is not None else {}),
        "rows_in": rows_in,
        "rows": rows_out,
        "bytes": writer.bytes,
        "sha256": writer.sha256,
        "attempt": cfg.attempt,
        "started": round(started, 3),
        "duration_s": round(seconds, 4),
        "first_row_s": round(first_row_s, 4) if first_row_s is not None else None,
        # the part's commit (rename or upload) at the end of duration_s: the timeline splits it off
        "commit_s": round(commit_s, 4),
        "generation": seen.to_dict() if seen else None,
        "processor": expected.identity,
        "path": f"parts/{s.name}.{cfg.part_format}",
        "format": cfg.part_format,
        "chunks": writer.chunk_count,
        "checkpoint_rows": cfg.checkpoint_rows,
        "rows_read": rows_read,
        "resumed_rows_in": writer.resumed_rows_in,
    }
    if isinstance(writer, ParquetPart):
        record.update(writer.record_fields())
    if isinstance(source, filesource.FileReader):
        record["units"] = source.unit_rows  # merge reconciles them with the plan's units
    storage.write_bytes(commit, orjson.dumps(record) + b"\n")
    writer.discard_checkpoint()
    return record


def attempt_stats(record: dict[str, Any], reused: bool) -> dict[str, str]:
    """This attempt's own work for the metrics: seconds moving rows, rows read, their rate.

    The pod's ``{{duration}}`` minus these seconds is the shard's start-up overhead (pod
    scheduling, image, Python, imports, connecting), so a reused commit counts none of its
    earlier attempt's work.
    """
    seconds = 0.0 if reused else float(record.get("duration_s") or 0)
    # rows: the shard's rows, counted once by the attempt that commits them; the rate: rows this
    # attempt read itself (a resumed attempt reads only what follows its checkpoint).
    rows = 0 if reused else int(record.get("rows_in") or 0)
    read = 0 if reused else int(record.get("rows_read", rows) or 0)
    return {
        "seconds": f"{seconds:.4f}",
        "rows": str(rows),
        "rows-per-second": f"{read / seconds:.1f}" if seconds > 0 else "0",
    }


def check_stats_dir(directory: str) -> None:
    """Refuse, before any work, a stats folder the attempt could not write its files into."""
    if not directory or storage.is_url(directory):
        raise UsageError(f"--stats-dir must be a local folder (valueFrom.path), got {directory!r}")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--stats-dir {directory} exists and is not a folder")
    for name in STATS_FILES:
        storage.check_destination(os.path.join(directory, name), "--stats-dir")


STATS_FILES = ("seconds", "rows", "rows-per-second")
"""The files ``--stats-dir`` holds, one output parameter each (named the same)."""


def write_stats(directory: str, stats: dict[str, str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, value in stats.items():
        storage.write_bytes(os.path.join(directory, name), f"{value}\n".encode())


def _work(cfg: ShardConfig, log: Logger) -> int:
    log.info(
        "start", lo=cfg.shard.lo, hi=cfg.shard.hi, expected_rows=cfg.shard.rows, attempt=cfg.attempt
    )
    rec = run_shard(cfg, log)
    if cfg.stats_dir:
        write_stats(cfg.stats_dir, attempt_stats(rec, bool(rec.get("reused"))))
    seconds = float(rec.get("duration_s") or 0)
    log.info(
        "committed",
        rows=rec.get("rows"),
        rows_in=rec.get("rows_in"),
        rows_read=rec.get("rows_read"),
        resumed_rows_in=rec.get("resumed_rows_in"),
        bytes=rec.get("bytes"),
        seconds=seconds,
        rows_per_s=rate(int(rec.get("rows_read", rec.get("rows_in")) or 0), seconds),
        part=layout.part_url(cfg.store, cfg.shard.index, cfg.part_format),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step(
        "shard",
        build_parser(),
        argv,
        build_config,
        _work,
        context=lambda c: {"run_id": c.run_id, "shard": c.shard.index},
        on_failure=lambda c, err, message: fanin.record_failure(
            c.store, c.shard.index, c.attempt, err, message
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
