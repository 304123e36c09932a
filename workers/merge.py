"""Step 4, merge: the fan-in. Proves every shard is committed and verified, then writes one document.

With a plan (``--store``), merge reads ``plan.json`` and each shard's commit
record by name, checks run, bounds, provenance (every record's generation and
processor identity equal the plan's), row counts, sizes and sha256, and writes
nothing if anything is missing or wrong. Without one it is a drop-in for
``jq -s .`` over explicit paths or a ``--glob``. Either way memory is bounded by
a constant, whatever the parts' sizes (they are streamed in chunks; a part
vouched for by its record is hashed and copied, never parsed again), and the
output appears atomically or not at all. The summary,
naming the output's sha256, is published last: the output counts only with it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import cli, failures, fanin, layout, output, provenance, storage
from workers.config import Environment
from workers.errors import IncompleteError, UsageError
from workers.log import Logger, rate
from workers.splice import Output, Part, write_merged

FORMATS = ("json", "jsonl", "parquet", "dataset", "delta")

_DEFAULT_NAMES = {
    "json": "merged.json",
    "jsonl": "merged.jsonl",
    "parquet": "merged.parquet",
    "dataset": "manifest.json",
    "delta": "parts",  # the table's root: its log is parts/_delta_log
}

EPILOG = (
    """examples:
  # fan-in of a run: verify every shard of STORE/plan.json, write STORE/merged.json + summary.json
  python -m workers.merge --store /mnt/shared/my-run

  # JSON Lines to a bucket
  python -m workers.merge --store s3://bucket/runs/my-run --format jsonl --output s3://bucket/out/my-run.jsonl

  # drop-in for `jq -s . /mnt/shared/message-*.json` (byte order of names, output to stdout)
  python -m workers.merge --glob '/mnt/shared/message-*.json'
  python -m workers.merge a.json b.json c.json --output all.json

  # a partial fan-in: write what 99% or more of the shards committed, name the missing ones
  python -m workers.merge --store s3://bucket/runs/my-run --min-success-ratio 0.99

"""
    + cli.EXIT_CODES_EPILOG
)

MAX_LISTED = 20


@dataclass(frozen=True)
class MergeConfig:
    store: storage.Store | None
    paths: tuple[str, ...]
    glob: str | None
    output: str | None
    format: str
    summary: str | None
    min_success_ratio: float = 1.0
    stats_dir: str | None = None


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m workers.merge", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="part files to merge without a plan (like jq -s .)"
    )
    p.add_argument(
        "--store", metavar="URL", help="run folder/URL holding plan.json, parts/ and commits/"
    )
    p.add_argument(
        "--glob", metavar="PATTERN", help="merge the files matching PATTERN, in byte order of names"
    )
    p.add_argument(
        "--output",
        metavar="URL",
        help="output (default: STORE/merged.json[l], or stdout without a store)",
    )
    p.add_argument(
        "--format",
        default="json",
        help="json: one array, like jq -s . (default); jsonl: one value per line; parquet: one "
        "Parquet file (Parquet parts); dataset: a manifest of the verified Parquet parts, no copy; "
        "delta: the verified Parquet parts as one version of a Delta table at STORE/parts",
    )
    p.add_argument(
        "--summary", metavar="URL", help="run summary JSON (default: STORE/summary.json)"
    )
    p.add_argument(
        "--min-success-ratio",
        type=fanin.ratio,
        default=1.0,
        metavar="R",
        help="write the output when at least R (0 < R <= 1) of the plan's shards committed, "
        "naming the missing ones in the summary (complete: false), the log and --stats-dir; "
        "below R exit 4 (default 1.0: every shard)",
    )
    p.add_argument(
        "--stats-dir",
        metavar="DIR",
        help="write the plan's shard count and the missing shards' count here, one file each "
        "(for valueFrom.path and the metrics)",
    )
    cli.add_grace_argument(p)
    return p


def build_config(args: argparse.Namespace, env: Environment) -> MergeConfig:
    if args.format not in FORMATS:
        raise UsageError(f"unknown --format {args.format!r}: choose {', '.join(FORMATS)}")
    if args.format in ("parquet", "dataset", "delta") and not args.store:
        raise UsageError(f"--format {args.format} merges the verified parts of a run: pass --store")
    modes = sum(bool(x) for x in (args.store, args.paths, args.glob))
    if modes != 1:
        raise UsageError("give exactly one of --store, --glob or PATH...")
    output = args.output
    if args.store and not output:
        output = storage.join(args.store, _DEFAULT_NAMES[args.format])
    summary = args.summary
    if args.store and not summary:
        summary = storage.join(args.store, "summary.json")
    store = storage.check_store(args.store) if args.store else None
    if args.format == "delta" and args.output:
        raise UsageError("--format delta commits to the table at STORE/parts: no --output")
    if output is not None and output != "-" and args.format != "delta":
        storage.check_destination(output, "--output")
    if summary is not None:
        storage.check_destination(summary, "--summary")
        if summary == output:
            raise UsageError("--summary and --output name the same file")
    if args.min_success_ratio < 1 and not args.store:
        raise UsageError("--min-success-ratio needs the plan of a run: pass --store")
    if args.stats_dir is not None:
        fanin.check_stats_dir(args.stats_dir)
    return MergeConfig(
        store,
        tuple(args.paths),
        args.glob,
        output,
        args.format,
        summary,
        args.min_success_ratio,
        args.stats_dir,
    )


def verify_commits(
    store: storage.Store, min_ratio: float = 1.0
) -> tuple[layout.Plan, list[Part], list[dict[str, Any]]]:
    """Every shard of the plan has a commit record for this run whose numbers add up; or, with
    ``min_ratio`` below 1, enough of them do: the third value lists the missing ones."""
    plan = layout.read_plan(layout.plan_url(store))
    part_format = layout.part_format(plan)
    problems: list[str] = []
    parts: list[Part] = []
    total_in = 0
    records: dict[int, dict[str, Any]] = {}
    for s in plan.shards:
        url = layout.commit_url(store, s.index)
        try:
            rec = orjson.loads(storage.read_small(url, layout.MAX_RECORD_BYTES, "commit record"))
        except FileNotFoundError:
            problems.append(f"{s.name} missing (no commit record)")
            continue
        except (orjson.JSONDecodeError, UsageError):
            problems.append(f"{s.name} has a corrupt commit record")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{s.name} has a corrupt commit record")
            continue
        if rec.get("run_id") != plan.run_id:
            problems.append(
                f"{s.name} was committed by run {rec.get('run_id')!r}, not {plan.run_id!r}"
            )
            continue
        if (rec.get("index"), rec.get("lo"), rec.get("hi"), rec.get("key")) != (
            s.index,
            s.lo,
            s.hi,
            s.key,
        ):
            problems.append(f"{s.name} was committed for other key bounds")
            continue
        rows_in = rec.get("rows_in")
        if s.rows is not None and rows_in != s.rows:
            problems.append(f"{s.name} read {rows_in} rows, the plan expects {s.rows}")
            continue
        if not all(isinstance(rec.get(k), int) for k in ("rows", "bytes")) or not isinstance(
            rec.get("sha256"), str
        ):
            problems.append(f"{s.name} has an incomplete commit record")
            continue
        if rec.get("format", "jsonl") != part_format:
            problems.append(
                f"{s.name} was written as {rec.get('format')}, the plan pins {part_format}"
            )
            continue
        total_in += int(rows_in or 0)
        records[s.index] = rec
        parts.append(
            Part(
                layout.part_url(store, s.index, part_format),
                s.index,
                rec["rows"],
                rec["bytes"],
                rec["sha256"],
                rec,
                layout.part_location(store, s.index, part_format),
            )
        )
    n = len(plan.shards)
    if problems and not fanin.enough(len(records), n, min_ratio):
        raise IncompleteError(_listing(problems, n) + fanin.shortfall(len(records), n, min_ratio))
    if plan.meta.get("mode") == "files":
        from workers import filesource  # every planned unit read exactly once, rows adding up

        # A partial fan-in reconciles the units of the shards it includes.
        uncovered = filesource.unit_problems(plan, records, partial=bool(problems))
        if uncovered:
            raise IncompleteError(f"the files' units do not reconcile: {_listing_of(uncovered)}")
    stale = provenance_problems(plan, records)
    if stale:
        raise failures.error("stale", "not the plan's data: " + "; ".join(stale))
    if not problems and plan.total is not None and total_in != plan.total:
        raise IncompleteError(
            f"shards read {total_in} rows in all, the producer committed {plan.total}"
        )
    # One problem per unusable shard, in plan order: the shards without a verified record.
    left_out = [s for s in plan.shards if s.index not in records]
    missing = fanin.missing(store, left_out, problems)
    if missing and plan.meta.get("mode") == "files":
        from workers import filesource

        for entry in missing:  # a files plan's shard is its files, not a key range
            entry["files"] = filesource.shard_units(plan, entry["index"])
    return plan, parts, missing


def provenance_problems(plan: layout.Plan, records: dict[int, dict[str, Any]]) -> list[str]:
    """Shards whose generation or processor differs from the plan's, grouped by the difference.

    A plan without a generation (none was recorded when split ran) or without a processor
    (split was not told one) still requires every record to name the same one as the first
    shard: parts of two produce runs, or of two processors, are never merged.
    """
    groups: dict[str, list[int]] = {}
    want_gen = plan.generation
    check_gen = want_gen is not None
    if not check_gen and records:
        want_gen = records[min(records)].get("generation")
        seen = {provenance.generation_id(r.get("generation")) for r in records.values()}
        check_gen = len(seen) > 1
    want_proc = plan.processor
    if want_proc is None and records:
        want_proc = records[min(records)].get("processor")
    for index, rec in sorted(records.items()):
        gen = rec.get("generation")
        if check_gen and provenance.generation_id(gen) != provenance.generation_id(want_gen):
            what = "the plan's" if plan.generation is not None else "the first shard's"
            groups.setdefault(
                f"made from {provenance.describe(gen)}, not {what} {provenance.describe(want_gen)}",
                [],
            ).append(index)
        if want_proc is not None:
            diffs = provenance.identity_differences(want_proc, rec.get("processor"))
            if diffs:
                whose = "the plan's" if plan.processor is not None else "the first shard's"
                groups.setdefault(f"made by {'; '.join(diffs)} ({whose})", []).append(index)
    return [f"{_names(indexes)} {why}" for why, indexes in groups.items()]


def _names(indexes: list[int]) -> str:
    shown = ", ".join(f"part-{i:05d}" for i in indexes[:MAX_LISTED])
    more = f" and {len(indexes) - MAX_LISTED} more" if len(indexes) > MAX_LISTED else ""
    return f"{shown}{more} {'was' if len(indexes) == 1 else 'were'}"


def _listing(problems: list[str], n_shards: int) -> str:
    return f"{len(problems)} of {n_shards} shards not usable: {_listing_of(problems)}"


def _listing_of(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{shown}{more}"


def summarize(
    plan: layout.Plan,
    parts: Sequence[Part],
    output: str,
    fmt: str,
    seconds: float,
    missing: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    import statistics  # deferred: only the summary needs it

    per_shard = [
        {
            "index": p.index,
            "rows": p.rows,
            "bytes": p.bytes,
            "duration_s": p.record.get("duration_s"),
            "attempt": p.record.get("attempt"),
        }
        for p in parts
    ]
    durations = [
        (float(s["duration_s"]), s["index"])
        for s in per_shard
        if isinstance(s["duration_s"], (int, float))
    ]
    summary: dict[str, Any] = {
        "run_id": plan.run_id,
        # What the merge certified: every part came from this generation and processor.
        "generation": parts[0].record.get("generation") if parts else plan.generation,
        "processor": parts[0].record.get("processor") if parts else plan.processor,
        "output": output,
        "format": fmt,
        # A partial fan-in (--min-success-ratio) says so: the output lacks these shards' rows.
        "complete": not missing,
        "missing": list(missing),
        "totals": {
            "shards": len(parts),
            "shards_expected": len(plan.shards),
            "rows": sum(p.rows or 0 for p in parts),
            "rows_expected": _rows_expected(plan, parts),
            "bytes": sum(p.bytes or 0 for p in parts),
            "merge_seconds": round(seconds, 4),
        },
        "shards": per_shard,
    }
    if durations:
        slow, fast = max(durations), min(durations)
        median = statistics.median(d for d, _ in durations)
        summary["skew"] = {
            "slowest": {"index": slow[1], "duration_s": slow[0]},
            "fastest": {"index": fast[1], "duration_s": fast[0]},
            "median_s": round(median, 4),
            "slowest_over_median": round(slow[0] / median, 3) if median > 0 else None,
            "shard_seconds_total": round(sum(d for d, _ in durations), 4),
        }
    return summary


def _rows_expected(plan: layout.Plan, parts: Sequence[Part]) -> int | None:
    """The plan's total; for files whose rows only a read counts (JSON Lines, CSV), the rows of
    the units, each read exactly once (merge reconciled them with the plan)."""
    if plan.total is not None or plan.meta.get("mode") != "files":
        return plan.total
    return sum(int(p.record.get("rows_in") or 0) for p in parts)


def merge(cfg: MergeConfig, log: Logger | None = None) -> dict[str, Any]:
    """Run the fan-in; returns the summary (plan mode) or a small report (plain mode)."""
    t0 = time.perf_counter()
    plan: layout.Plan | None = None
    part_format = "jsonl"
    missing: list[dict[str, Any]] = []
    if cfg.store:
        plan, parts, missing = verify_commits(cfg.store, cfg.min_success_ratio)
        part_format = layout.part_format(plan)
        if part_format == "parquet" or cfg.format in ("parquet", "dataset", "delta"):
            from workers import parquetmerge

            parquetmerge.check_parts_format(cfg.format, part_format, cfg.store)
            if cfg.format == "dataset":
                assert plan is not None and cfg.store
                return _merge_dataset(cfg, plan, parts, t0, missing)
            if cfg.format == "delta":
                assert plan is not None and cfg.store
                return _merge_delta(cfg, plan, parts, t0, missing)
    else:
        urls = list(cfg.paths) if cfg.paths else storage.glob(cfg.glob or "")
        if cfg.glob and not urls:
            raise UsageError(f"--glob {cfg.glob!r} matches no file")
        parts = [Part(u) for u in urls]
    # stdout gets the document only once it is complete: spool to a temp file first.
    # The summary vouches for the output by its sha256: hash it only when there is one.
    to_stdout = cfg.output is None or cfg.output == "-"
    target = _StdoutSpool() if to_stdout else storage.AtomicWriter(str(cfg.output))
    with target as writer:
        out = Output(writer, digest=cfg.summary is not None)
        try:
            if part_format == "parquet":
                from workers import parquetmerge

                if cfg.format == "parquet":
                    values = parquetmerge.write_parquet(parts, out)
                else:
                    values = parquetmerge.write_json(parts, out, cfg.format)
            else:
                values = write_merged(parts, out, cfg.format)
            digest = out.sha256() if cfg.summary else None
        finally:
            out.close()
        seconds = time.perf_counter() - t0
        report: dict[str, Any]
        if plan is not None:
            report = summarize(plan, parts, cfg.output or "-", cfg.format, seconds, missing)
        else:
            report = {
                "output": cfg.output or "-",
                "format": cfg.format,
                "totals": {"files": len(parts), "rows": values},
            }
        if cfg.summary:
            report["output_bytes"] = writer.bytes
            report["output_sha256"] = digest
            publish_with_summary(writer, cfg.summary, report, None if to_stdout else cfg.output)
        else:
            writer.commit()
    report["_values"] = values
    report["_bytes"] = writer.bytes
    return report


def _merge_dataset(
    cfg: MergeConfig,
    plan: layout.Plan,
    parts: list[Part],
    t0: float,
    missing: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``--format dataset``: publish the manifest of the verified parts, the success marker,
    then the summary (each removed first, so a failed merge leaves no marker)."""
    import hashlib

    from workers import parquetmerge

    assert cfg.store and cfg.output and cfg.summary
    doc, rows = parquetmerge.manifest(cfg.store, plan, parts)
    digest = hashlib.sha256(doc).hexdigest()
    marker = parquetmerge.success_url(cfg.store)
    report = summarize(plan, parts, cfg.output, cfg.format, time.perf_counter() - t0, missing)
    report["output_bytes"] = len(doc)
    report["output_sha256"] = digest
    # A partial fan-in publishes no _SUCCESS: readers that wait for it never see a dataset
    # short of shards (the summary lists them).
    report["success_marker"] = None if missing else marker
    storage.remove(marker)
    try:
        with storage.AtomicWriter(cfg.output) as writer:
            writer.write(doc)
            publish_with_summary(
                writer,
                cfg.summary,
                report,
                cfg.output,
                before_summary=None
                if missing
                else lambda: storage.write_bytes(
                    marker, orjson.dumps({"manifest": cfg.output, "sha256": digest}) + b"\n"
                ),
            )
    except BaseException:
        with contextlib.suppress(Exception):  # no marker without its summary
            storage.remove(marker)
        raise
    report["_values"] = rows
    report["_bytes"] = len(doc)
    return report


def _merge_delta(
    cfg: MergeConfig,
    plan: layout.Plan,
    parts: list[Part],
    t0: float,
    missing: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``--format delta``: the verified parts become one version of the Delta table at
    STORE/parts (the summary is withdrawn first and names the version's log entry after)."""
    import hashlib

    from workers import parquetmerge

    assert cfg.store and cfg.summary
    storage.remove(cfg.summary)
    entry, data, rows = parquetmerge.commit_delta(cfg.store, parts)
    table = storage.join(cfg.store, "parts")
    report = summarize(plan, parts, table, cfg.format, time.perf_counter() - t0, missing)
    report["delta_log_entry"] = entry
    report["output_bytes"] = len(data)
    report["output_sha256"] = hashlib.sha256(data).hexdigest()
    storage.write_bytes(cfg.summary, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    report["_values"] = rows
    report["_bytes"] = len(data)
    return report


def publish_with_summary(
    writer: storage.AtomicWriter,
    summary_url: str,
    summary: dict[str, Any],
    output: str | None,
    before_summary: Any = None,
) -> None:
    """Publish the finished output, then the summary that vouches for it (its sha256).

    The summary is the fan-in's commit record: a reader trusts the output only when
    the summary is there and names its sha256. So the previous summary is withdrawn
    before the output changes, the new one is spooled before the output is published
    (an unusable summary store fails first), and if publishing the summary fails the
    output is withdrawn too: a failed merge leaves neither.
    """
    with storage.AtomicWriter(summary_url) as summary_writer:
        summary_writer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        storage.remove(summary_url)
        writer.commit()
        try:
            if before_summary is not None:
                before_summary()  # the dataset's success marker, between the two
            summary_writer.commit()
        except BaseException:
            if output is not None:
                with contextlib.suppress(Exception):  # best effort: the rule above still holds
                    storage.remove(output)
            raise


class _StdoutSpool(storage.AtomicWriter):
    """An AtomicWriter whose commit copies the finished spool to stdout."""

    def __init__(self) -> None:
        super().__init__("spool://stdout")

    def commit(self) -> None:
        self._file.flush()
        self._file.seek(0)
        out = output.declared()
        shutil.copyfileobj(self._file, out, 1 << 20)
        out.flush()
        self.abort()
        self._committed = True


def _work(cfg: MergeConfig, log: Logger) -> int:
    log.info(
        "start", store=cfg.store, inputs=len(cfg.paths) or None, glob=cfg.glob, format=cfg.format
    )
    report = merge(cfg, log)
    missing = report.get("missing") or []
    if missing:
        log.warning(
            "partial",
            missing_shards=len(missing),
            shards=report["totals"].get("shards_expected"),
            min_success_ratio=cfg.min_success_ratio,
            missing=fanin.log_fields(missing),
            summary=cfg.summary,
        )
    if cfg.stats_dir:
        fanin.write_stats(
            cfg.stats_dir, report.get("totals", {}).get("shards_expected") or 0, len(missing)
        )
    seconds = report.get("totals", {}).get("merge_seconds") or 0.0
    values = report.pop("_values")
    size = report.pop("_bytes")
    log.info(
        "merged",
        rows=values,
        bytes=size,
        shards=report["totals"].get("shards"),
        seconds=seconds or None,
        rows_per_s=rate(values, seconds) if seconds else None,
        output=cfg.output or "-",
        summary=cfg.summary,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_step("merge", build_parser(), argv, build_config, _work)


if __name__ == "__main__":
    raise SystemExit(main())
