"""``workers timeline FILE [--store URL]``: the command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from workers.timeline.html import render_workflow
from workers.timeline.model import NotAWorkflow, load

EPILOG = """examples:
  python -m workers timeline workers-runs/workers-pipeline-x7k2p/run.json
  argo get my-run -o json > my-run.json && python -m workers timeline my-run.json \\
      --store s3://bucket/runs/my-run --output my-run.html
  kubectl get wf my-run -o json | python -m workers timeline - --store /mnt/shared/my-run

Without --store, a local run's store folder is found through its pods' mounts; a bucket
store, and a cluster run's, must be named with --store for the bars to split into waiting,
start-up, work and commit (the commit records).

exit codes: 0 written, 2 the file is not a Workflow (or cannot be read)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workers timeline",
        description="Render timeline.html from an Argo Workflow's JSON (a local run.json too).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    from workers import cli

    cli.add_version_argument(p)
    p.add_argument("file", metavar="FILE", help="Workflow JSON (argo get -o json); - for stdin")
    p.add_argument("--store", metavar="URL", help="the run's store, for its commit records")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write (default: timeline.html beside FILE; stdout for -)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"python -m workers timeline: cannot read {args.file}: {exc}\n")
        return 2
    try:
        wf = load(text, args.file)
    except NotAWorkflow as exc:
        sys.stderr.write(f"python -m workers timeline: {exc}\n")
        return 2
    page = render_workflow(wf, args.store)
    if args.output is None and args.file == "-":
        sys.stdout.write(page)
        return 0
    out = args.output or Path(args.file).with_name("timeline.html")
    from workers import storage

    storage.write_bytes(str(out), page.encode())
    sys.stderr.write(f"timeline: {out}\n")
    return 0
