"""Step 1, produce: generate a run's rows into a database table, then write the row count.

The run's rows are replaced in one transaction, so running produce twice for a run
leaves exactly one copy. The same transaction records the run's **generation** (a
new id, the row count, the generator and its arguments) in ``workers_generations``:
split pins it in the plan and every shard checks it, so a re-run of produce can
never be mixed with, or mistaken for, the previous one. The count file is written
only after the commit.
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workers import cli, db, deadline, failures, plugins, storage, usercode
from workers.config import DEFAULT_TABLE, Environment, check_run_id, new_run_id
from workers.errors import ProcessingError
from workers.log import Logger, rate
from workers.provenance import Generation

EPILOG = (
    """examples:
  # 100,000 synthetic rows into the embedded SQLite database (./workers.db)
  python -m workers.produce --rows 100000 --count-file /tmp/count

  # your own generator, into PostgreSQL (URL from the environment, never from argv)
  WORKERS_DATABASE_URL=postgresql://app@db:5432/app \\
    python -m workers.produce --generator mypkg.gen:rows --run-id nightly-42 --count-file /tmp/count

A generator is a callable returning an iterable of dicts; it is called with the
keyword arguments it declares among rows, seed and run_id.

"""
    + cli.EXIT_CODES_EPILOG
)


@dataclass(frozen=True)
class ProduceConfig:
    database_url: str
    connect_timeout: float
    source: db.Source
    run_id: str
    rows: int
    seed: int
    generator: str | None
    count_file: str | None


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.produce", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "--rows", type=cli.non_negative_int, default=1000, help="rows to generate (default 1000)"
    )
    p.add_argument(
        "--seed", type=cli.int64, default=0, help="seed of the synthetic generator (default 0)"
    )
    p.add_argument(
        "--generator",
        metavar="MODULE:FUNC",
        help="generator import path (default: built-in synthetic)",
    )
    p.add_argument("--table", default=DEFAULT_TABLE, help=f"target table (default {DEFAULT_TABLE})")
    p.add_argument(
        "--run-id", help="run id (default: $WORKERS_RUN_ID, $ARGO_WORKFLOW_NAME, else a new id)"
    )
    p.add_argument(
        "--count-file",
        metavar="PATH",
        help="write the committed row count here (for valueFrom.path)",
    )
    cli.add_grace_argument(p)
    return p


def build_config(args: argparse.Namespace, env: Environment) -> ProduceConfig:
    if args.generator:
        plugins.load(args.generator, "--generator")  # fail before any work, with the flag's name
    # An explicit --run-id '' is a templating mistake, never a request for a new id.
    run_id = args.run_id if args.run_id is not None else env.run_id or new_run_id()
    if args.count_file:
        # Checked now: the count is written after the rows are committed.
        storage.check_destination(args.count_file, "--count-file")
    return ProduceConfig(
        database_url=env.effective_database_url,
        connect_timeout=env.connect_timeout,
        source=db.Source(args.table),
        run_id=check_run_id(run_id),
        rows=args.rows,
        seed=args.seed,
        generator=args.generator,
        count_file=args.count_file,
    )


def generator_kwargs(
    func: Callable[..., Any], rows: int, seed: int, run_id: str, path: str = "generator"
) -> dict[str, Any] | None:
    """The keyword arguments a generator declares among rows, seed and run_id (None: it has
    no signature Python can read); exit 3 when it cannot be called with them."""
    offered = {"rows": rows, "seed": seed, "run_id": run_id}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    plugins.check_call(
        func,
        path,
        "generator",
        "a generator is called with the keyword arguments it declares among rows, seed and run_id",
        **kwargs,
    )
    return kwargs


def call_generator(
    func: Callable[..., Any], rows: int, seed: int, run_id: str, path: str = "generator"
) -> Iterable[Any]:
    """Call a generator with the keyword arguments it declares among rows, seed and run_id."""
    kwargs = generator_kwargs(func, rows, seed, run_id, path)
    return func(**(kwargs or {}))  # type: ignore[no-any-return]


def _guarded(objects: Iterable[Any], path: str) -> Iterable[Any]:
    """Re-raise anything the user's generator raises as a ProcessingError naming it."""
    it = iter(objects)
    while True:
        try:
            obj = next(it)
        except StopIteration:
            deadline.check()
            return
        except Exception as exc:
            raise failures.user_code_error(
                f"generator {path}", f"raised {type(exc).__name__}: {exc}", exc, module=path
            ) from None
        deadline.check()  # a generator that swallowed the deadline must not commit its rows
        yield obj


def produce(cfg: ProduceConfig, log: Logger | None = None) -> Generation:
    """Replace the run's rows with the generator's output; returns the committed generation."""
    if cfg.generator:
        func = plugins.load(cfg.generator, "--generator")
        try:
            objects = call_generator(func, cfg.rows, cfg.seed, cfg.run_id, cfg.generator)
        except ProcessingError:
            raise
        except Exception as exc:
            raise failures.user_code_error(
                f"generator {cfg.generator}",
                f"raised {type(exc).__name__}: {exc}",
                exc,
                module=cfg.generator,
            ) from None
        try:
            iter(objects)
        except TypeError:
            raise ProcessingError(
                f"generator {cfg.generator} returned an object of type {type(objects).__name__!r}, "
                "not an iterable of dicts"
                + (f" (defined at {w})" if (w := plugins.definition(func)) else "")
            ) from None
        rows = usercode.encode_rows(_guarded(objects, cfg.generator), cfg.generator, func)
    else:
        from workers.synth import generate_json

        rows = generate_json(cfg.rows, cfg.seed)  # the same bytes, without a dict per row
    pending = Generation.new(0, cfg.generator or "synthetic", {"rows": cfg.rows, "seed": cfg.seed})
    with db.connect(cfg.database_url, cfg.connect_timeout) as database:
        database.check_columns(cfg.source, creating=True)
        return database.replace_run(cfg.source, cfg.run_id, rows, pending)


def write_count(path: str, count: int) -> None:
    storage.write_bytes(path, f"{count}\n".encode())


def _work(cfg: ProduceConfig, log: Logger) -> int:
    t0 = time.perf_counter()
    log.info(
        "start",
        table=cfg.source.table,
        generator=cfg.generator or "synthetic",
        rows_requested=cfg.rows,
    )
    generation = produce(cfg, log)
    count = generation.rows
    seconds = time.perf_counter() - t0
    if cfg.count_file:
        write_count(cfg.count_file, count)
    log.info(
        "committed",
        rows=count,
        generation=generation.id,
        seconds=round(seconds, 3),
        rows_per_s=rate(count, seconds),
        count_file=cfg.count_file,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step(
        "produce", build_parser(), argv, build_config, _work, context=lambda c: {"run_id": c.run_id}
    )


if __name__ == "__main__":
    raise SystemExit(main())
