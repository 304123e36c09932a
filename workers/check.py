"""Step 0, check: refuse a pipeline's parameters before produce runs.

The pipeline runs this first, so a typo (``processor=mod:typo``, ``rows-per-shard=0``,
a generator with the wrong signature, a fan-out wider than ``max-shards``) fails in
seconds with the step's one-line error instead of after produce has written every row.
It imports the generator and the processor and checks that each can be called the way
produce and shard call it, and refuses a merge ``--format`` the parts' ``--part-format`` cannot
give (the rule merge applies); it touches neither the database nor the store.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from workers import cli, fanin, plugins, shards, storage
from workers.config import Environment, check_run_id
from workers.log import Logger
from workers.merge import FORMATS

EPILOG = (
    """examples:
  # what the pipeline's first step runs (manifests/base/templates/check.yaml)
  python -m workers.check --rows 1000000 --rows-per-shard 100000 --max-shards 200 \\
    --generator mypkg.gen:rows --processor mypkg.proc:enrich --run-id my-run \\
    --store /mnt/shared/my-run
  # a Parquet fan-in over JSON Lines parts is refused here, exit 2, before produce runs
  python -m workers.check --format parquet --part-format jsonl

"""
    + cli.EXIT_CODES_EPILOG
)


@dataclass(frozen=True)
class CheckConfig:
    checked: tuple[str, ...]


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.check", description=__doc__, epilog=EPILOG)
    p.add_argument("--rows", type=cli.non_negative_int, default=1000, help="rows produce makes")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")
    p.add_argument("--generator", metavar="MODULE:FUNC", help="generator import path")
    p.add_argument(
        "--from-db",
        choices=("true", "false"),
        default="false",
        help="true: split reads an existing table, produce does not run (--rows unused)",
    )
    p.add_argument("--rows-per-shard", type=cli.positive_int, default=100_000)
    p.add_argument("--max-shards", type=cli.positive_int, default=shards.DEFAULT_MAX_SHARDS)
    cli.add_source_arguments(p, "source table")
    cli.add_processor_arguments(p)
    p.add_argument("--run-id", help="run id (default: $WORKERS_RUN_ID, $ARGO_WORKFLOW_NAME)")
    p.add_argument("--store", metavar="URL", help="run folder/URL the steps will write")
    cli.add_part_format_argument(p, pinned=True)
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="the format merge will write; refused when the parts cannot give it (parquet, "
        "dataset and delta need --part-format parquet; delta a local store)",
    )
    p.add_argument(
        "--min-success-ratio",
        type=fanin.ratio,
        default=1.0,
        metavar="R",
        help="merge's share of shards that must commit (0 < R <= 1), refused here if out of range",
    )
    return p


def build_config(args: argparse.Namespace, env: Environment) -> CheckConfig:
    """Every check is made here: the flags' own types did the numbers' ranges."""
    from workers import produce

    checked = ["numbers"]
    store = None
    run_id = args.run_id if args.run_id is not None else env.run_id
    if run_id is not None:
        check_run_id(run_id)
        checked.append("run-id")
    if args.store:
        # The URL's form and scheme only: check's pod holds no store credentials, and split
        # connects to the store itself (storage.check_store) moments later.
        store = storage.resolve(args.store)
        checked.append("store")
    if args.format:
        from workers import parquetmerge  # pyarrow stays unimported: only the rule is used

        parquetmerge.check_parts_format(args.format, args.part_format, store)
        checked.append("formats")
    if args.from_db == "false":
        shards.by_count(args.rows, args.rows_per_shard, args.max_shards)  # the fan-out's width
        checked.append("width")
        if args.generator:
            func = plugins.load(args.generator, "--generator")
            produce.generator_kwargs(func, args.rows, args.seed, run_id or "run", args.generator)
            checked.append("generator")
    if args.processor:
        func = plugins.load(args.processor, "--processor")
        plugins.check_call(
            func,
            args.processor,
            "processor",
            "a processor is called with one list of row dicts",
            [],
        )
        checked.append("processor")
    return CheckConfig(tuple(checked))


def _work(cfg: CheckConfig, log: Logger) -> int:
    log.info("checked", checks=list(cfg.checked))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step("check", build_parser(), argv, build_config, _work)


if __name__ == "__main__":
    raise SystemExit(main())
