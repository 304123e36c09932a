"""The whole pipeline on one machine: produce -> split -> shards in parallel -> merge.

Each step runs as its own ``python -m workers.<step>`` process, exactly as a pod
would run it, so what works here works in a cluster. Retries follow the same
rule as the templates: only the transient exit code is retried.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from workers import cli, exitcodes, output, storage
from workers.config import DEFAULT_STORE, Environment, check_run_id, new_run_id
from workers.errors import WorkersError
from workers.log import Logger
from workers.merge import FORMATS

EPILOG = (
    """examples:
  python -m workers pipeline                      # 100,000 rows, SQLite + ./workers-data
  python -m workers pipeline --rows 1000000 --rows-per-shard 100000 --parallel 4
  WORKERS_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres python -m workers pipeline
  # the columnar path, as the template's batch-format, part-format and format parameters
  python -m workers pipeline --batch-format pyarrow --part-format parquet --format parquet

"""
    + cli.EXIT_CODES_EPILOG
)


@dataclass(frozen=True)
class PipelineConfig:
    rows: int
    rows_per_shard: int
    max_shards: int
    parallel: int
    run_id: str
    store: storage.Store
    processor: str | None
    generator: str | None
    format: str
    retries: int
    part_format: str = "jsonl"
    batch_format: str = "rows"


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers pipeline", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "--rows",
        type=cli.non_negative_int,
        default=100_000,
        help="rows to produce (default 100000)",
    )
    p.add_argument("--rows-per-shard", type=cli.positive_int, default=10_000, help="default 10000")
    p.add_argument("--max-shards", type=cli.positive_int, default=1000, help="default 1000")
    p.add_argument(
        "--parallel", type=cli.positive_int, default=os.cpu_count() or 2, help="shards at once"
    )
    p.add_argument("--run-id", help="run id (default: a new one)")
    p.add_argument(
        "--store", metavar="URL", help=f"run folder/URL (default ./{DEFAULT_STORE}/RUN_ID)"
    )
    p.add_argument("--processor", metavar="MODULE:FUNC")
    p.add_argument("--generator", metavar="MODULE:FUNC")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="merge's format (default json); parquet, dataset and delta need --part-format parquet",
    )
    cli.add_part_format_argument(p, pinned=True)
    cli.add_batch_format_argument(p)
    p.add_argument(
        "--retries", type=cli.non_negative_int, default=2, help="retries of a transient failure"
    )
    return p


def build_config(args: argparse.Namespace, env: Environment) -> PipelineConfig:
    # An explicit --run-id '' is a templating mistake, never a request for a new id.
    run_id = check_run_id(args.run_id if args.run_id is not None else new_run_id())
    return PipelineConfig(
        rows=args.rows,
        rows_per_shard=args.rows_per_shard,
        max_shards=args.max_shards,
        parallel=args.parallel,
        run_id=run_id,
        store=storage.resolve(args.store or storage.join(env.store or DEFAULT_STORE, run_id)),
        processor=args.processor,
        generator=args.generator,
        format=args.format,
        retries=args.retries,
        part_format=args.part_format,
        batch_format=args.batch_format,
    )


class StepFailed(WorkersError):
    """Raised when a step of the local pipeline exits non-zero after its retries."""


def _step(
    step: str, args: list[str], retries: int, log: Logger
) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", f"workers.{step}", *args]
    for attempt in range(retries + 1):
        proc = subprocess.run(cmd, capture_output=True, check=False)
        sys.stderr.buffer.write(proc.stderr)
        if proc.returncode == exitcodes.OK:
            return proc
        if proc.returncode != exitcodes.TRANSIENT or attempt == retries:
            err = StepFailed(f"{step} exited {proc.returncode}")
            err.exit_code = proc.returncode
            raise err
        time.sleep(min(2**attempt, 10))
    raise AssertionError("unreachable")


def run_pipeline(cfg: PipelineConfig, log: Logger) -> dict[str, str]:
    t0 = time.perf_counter()
    # The count and the shard list are local files: beside the run in a local store.
    tmp = (
        cfg.store.join("tmp").local_path if cfg.store.is_local else os.path.join(".", "workers-tmp")
    )
    os.makedirs(tmp, exist_ok=True)
    count_file = os.path.join(tmp, "count")
    shards_file = os.path.join(tmp, "shards.json")
    store = cfg.store.url
    run = ["--run-id", cfg.run_id]
    produce = [*run, "--rows", str(cfg.rows), "--count-file", count_file]
    if cfg.generator:
        produce += ["--generator", cfg.generator]
    # Every parameter a step would refuse, refused before produce writes a row.
    check = [*run, "--rows", str(cfg.rows), "--rows-per-shard", str(cfg.rows_per_shard)]
    check += ["--max-shards", str(cfg.max_shards), "--store", store]
    check += ["--generator", cfg.generator or "", "--processor", cfg.processor or ""]
    check += ["--part-format", cfg.part_format, "--format", cfg.format]
    _step("check", check, cfg.retries, log)
    _step("produce", produce, cfg.retries, log)
    # split pins the processor, its batch format and the part format in the plan; every shard
    # must then run the same (a shard reads the part format from the plan).
    processor = ["--processor", cfg.processor or "", "--batch-format", cfg.batch_format]
    _step(
        "split",
        [
            *run,
            *processor,
            "--count-file",
            count_file,
            "--rows-per-shard",
            str(cfg.rows_per_shard),
            "--max-shards",
            str(cfg.max_shards),
            "--store",
            store,
            "--output-file",
            shards_file,
            "--part-format",
            cfg.part_format,
        ],
        cfg.retries,
        log,
    )
    with open(shards_file, "rb") as f:
        items = orjson.loads(f.read())
    done = 0

    def one(item: dict[str, object]) -> None:
        args = ["--shard", orjson.dumps(item).decode(), *run, "--store", store, *processor]
        _step("shard", args, cfg.retries, log)

    with ThreadPoolExecutor(max_workers=cfg.parallel) as pool:
        for _ in pool.map(one, items):
            done += 1
    log.info("shards-done", shards=done, of=len(items))
    _step("merge", ["--store", store, "--format", cfg.format], cfg.retries, log)
    summary = storage.join(cfg.store, "summary.json")
    # What merge wrote (a file, a manifest or a Delta table), as its summary names it.
    merged = str(orjson.loads(storage.read_small(summary, 16 << 20, "run summary"))["output"])
    log.info(
        "pipeline-done", seconds=round(time.perf_counter() - t0, 3), output=merged, summary=summary
    )
    return {"output": merged, "summary": summary}


def _work(cfg: PipelineConfig, log: Logger) -> int:
    result = run_pipeline(cfg, log)
    out = output.declared()  # stdout: what user code prints goes to stderr meanwhile
    out.write(f"merged output: {result['output']}\nrun summary:   {result['summary']}\n".encode())
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step(
        "pipeline",
        build_parser(),
        argv,
        build_config,
        _work,
        context=lambda c: {"run_id": c.run_id},
    )
