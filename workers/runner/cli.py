"""``python -m workers run FILE|TEMPLATE_NAME [-p name=value ...]``: run a workflow on this machine."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from workers.config import redact
from workers.runner import report, spec
from workers.runner.engine import ERROR, Node, Options, Run
from workers.runner.spec import Notes, SpecError
from workers.runner.wiring import Wiring, effective_spec, workflow_parameters

EPILOG = """examples:
  python -m workers run workers-pipeline                 # the pipeline on SQLite + a local folder
  python -m workers run workers-pipeline -p rows=1000000 -p rows-per-shard=100000
  python -m workers run manifests/examples/workflow.yaml
  python -m workers run my-workflow.yaml --sandbox remap # without bubblewrap

Secrets (env valueFrom.secretKeyRef) come from the environment: <SECRET>_<KEY>
(uppercased, - and . as _) or the container's env var name, else from .env.

exit codes: 0 the workflow succeeded, 1 it failed, 2 it cannot run locally
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workers run",
        description="Run an Argo Workflow, WorkflowTemplate or CronWorkflow with local processes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a misspelt flag is an error, never a guess at another one
    )
    p.add_argument("target", metavar="FILE|TEMPLATE_NAME")
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="workflow parameter, like argo submit -p (repeatable)",
    )
    p.add_argument(
        "--manifests", type=Path, help="WorkflowTemplate folder (default ./manifests or the repo's)"
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("workers-runs"),
        help="runs folder (default ./workers-runs)",
    )
    p.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "remap"),
        default="auto",
        help="bwrap: mount namespaces; remap: rewrite container paths; auto: bwrap if it works",
    )
    p.add_argument("--env-file", type=Path, help="secrets file (default ./.env)")
    p.add_argument("-v", "--verbose", action="store_true", help="stream every pod's stderr")
    return p


def _overrides(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError(f"-p {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = report.Progress()
    notes = Notes()
    try:
        manifests = args.manifests or spec.default_manifests()
        doc, library = spec.resolve_target(args.target, manifests)
        wf_spec = effective_spec(doc, library, notes)
        parameters = workflow_parameters(wf_spec, _overrides(args.parameter), doc.source)
        Wiring(doc, wf_spec, library, parameters, notes).check()
        name = spec.workflow_name(doc)
        run_dir = args.runs / name
        run_dir.mkdir(parents=True, exist_ok=False)
        run = Run(
            doc,
            library,
            wf_spec,
            name,
            parameters,
            run_dir.resolve(),
            notes,
            Options(args.sandbox, args.verbose, args.env_file),
            progress,
        )
    except (SpecError, RuntimeError) as exc:
        sys.stderr.write(f"python -m workers run: {exc}\n")
        return 2
    progress.run = run
    sys.stderr.write(
        f"workflow {name} from {doc.kind}/{doc.name} ({doc.source})\n"
        f"  sandbox: {run.mode} ({run.mode_reason})\n  run folder: {run_dir}\n"
    )
    if notes.ignored:
        progress(
            f"ignored locally (no meaning outside Kubernetes; each use is listed in run.json): "
            f"{report.ignored_summary(notes.ignored)}",
            None,
        )
    run.prepare()
    try:
        root = run.execute()
    except KeyboardInterrupt:
        run.stop("interrupted")
        root = next(iter(run.nodes.values()), None) or Node(name, name, name, "Steps", "", None)
        root.phase, root.message = "Failed", "interrupted"
    finished = time.time()
    if root.phase == ERROR and not root.started:
        root.started = run.created
    files = sorted({doc.source, *(d.source for d in library.templates.values())})
    record = report.run_record(run, root, finished, files)
    report.write_json(run_dir / "run.json", record, run.secret_values)
    (run_dir / "metrics.prom").write_text(
        redact(run.metrics.exposition(), tuple(run.secret_values))
    )
    (run_dir / "timeline.html").write_text(
        redact(report.timeline_html(run, root, finished), tuple(run.secret_values))
    )
    print(report.summary_text(run, root))
    output, summary = report.merged_output(run)
    if output is not None:
        print(f"merged output: {output}")
    if summary is not None:
        print(f"merge summary: {summary}")
        _reconcile(summary)
    print(f"run log:       {run_dir / 'run.json'}")
    print(f"timeline:      {run_dir / 'timeline.html'}")
    print(f"metrics:       {run_dir / 'metrics.prom'}")
    print(f"duration:      {finished - run.created:.2f}s")
    return 0 if root.phase == "Succeeded" else 1


def _reconcile(summary: Path) -> None:
    import json

    try:
        totals = json.loads(summary.read_text()).get("totals") or {}
    except (OSError, ValueError):
        return
    rows, expected = totals.get("rows"), totals.get("rows_expected")
    if rows is not None:
        mark = "==" if rows == expected else "!="
        print(
            f"rows:          merged {rows:,} {mark} produced {expected:,} in {totals.get('shards')} shards"
        )
