"""``workers timeline FILE [--store URL]``: the command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


MAX_WORKFLOW_BYTES = 256 << 20
"""The largest Workflow JSON read (a 10,000-shard run's is a few tens of MB)."""


def build_parser() -> argparse.ArgumentParser:
    from workers import cli

    p = cli.Parser(
        prog="python -m workers timeline",
        description="Render timeline.html from an Argo Workflow's JSON (a local run.json too).",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="Workflow JSON (argo get -o json); - for stdin")
    p.add_argument("--store", metavar="URL", help="the run's store, for its commit records")
    p.add_argument(
        "-o",
        "--output",
        help="where to write (default: timeline.html beside FILE; stdout for -)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Bad input (a file that is not a Workflow, a device, a FIFO, a folder as ``-o``) is exit 2
    and one JSON log line, as for every step (:func:`workers.cli.run_step`)."""
    from workers import cli

    return cli.run_step("timeline", build_parser(), argv, lambda args, env: args, _work)


def _work(args: argparse.Namespace, log: Any) -> int:
    from workers import storage
    from workers.errors import UsageError

    wf = _read(args.file)
    out = None
    if args.output is not None or args.file != "-":
        out = args.output or str(Path(args.file).with_name("timeline.html"))
        storage.check_destination(out, "--output")  # a folder, FIFO or device: before any work
    if args.store:
        storage.check_store(args.store)
    try:
        page = render_workflow(wf, args.store)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        # a field of an unexpected type deep in the status: the file's fault, not ours
        raise UsageError(
            f"{args.file}: not an Argo Workflow this can read ({type(exc).__name__}: {exc})"
        ) from None
    # A lone surrogate (JSON's "\\ud800") has no UTF-8: it is shown as U+FFFD's stand-in.
    data = page.encode("utf-8", "replace")
    if out is None:
        from workers import output

        stdout = output.declared()  # the real stdout: sys.stdout is the log's during a step
        stdout.write(data)
        stdout.flush()
        return 0
    storage.write_bytes(out, data)
    sys.stderr.write(f"timeline: {out}\n")
    return 0


def _read(name: str) -> dict[str, Any]:
    """The Workflow in file ``name`` (``-``: stdin), bounded; only a regular file is opened, so
    a FIFO or a device is refused instead of blocking or reading forever."""
    from workers import storage
    from workers.errors import UsageError

    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_WORKFLOW_BYTES + 1)
            if len(data) > MAX_WORKFLOW_BYTES:
                raise UsageError(f"stdin is over the {MAX_WORKFLOW_BYTES}-byte limit")
        else:
            data = storage.read_small(name, MAX_WORKFLOW_BYTES, "workflow file")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"cannot read {name}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {name}: not UTF-8 ({exc.reason})") from None
    try:
        return load(text, name)
    except NotAWorkflow as exc:
        raise UsageError(str(exc)) from None
