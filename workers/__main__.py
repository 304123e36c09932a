"""The ``workers`` command (also ``python -m workers``): every step and the local runners by name.

``workers produce ...`` is ``python -m workers.produce ...``, and so on for each step; the
modules stay the entrypoints pods run, this only dispatches to their ``main``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

USAGE = """usage: workers COMMAND [...]        (or python -m workers COMMAND [...])

commands:
  run        run an Argo Workflow/WorkflowTemplate from manifests/ with local processes
             (workers run workers-pipeline -p rows=1000; see workers run --help)
  pipeline   run produce -> split -> shards in parallel -> merge on this machine
  timeline   render timeline.html from a Workflow's JSON: a local run.json or argo get -o json
             (workers timeline workers-runs/NAME/run.json; see workers timeline --help)

steps (what a pod runs; workers STEP is python -m workers.STEP, each has --help):
  check      refuse the pipeline's parameters before produce runs (imports, signatures, ranges)
  produce    write synthetic or generated rows to the database
  split      plan the shards: the JSON list Argo's withParam fans out over
  shard      process one shard into a part file and its commit record
  merge      verify every part and write the merged document
  cleanup    remove a finished run's rows and generation from the database

options:
  -h, --help     this message
  --version      print the version and exit
"""


def _command(name: str) -> Callable[[Sequence[str]], int] | None:
    """The ``main`` of a command, imported only when that command runs (start-up per pod)."""
    if name == "run":
        from workers.runadapter import main as run_main

        return run_main
    if name == "timeline":
        from workers.timeline import main as timeline_main

        return timeline_main
    if name == "pipeline":
        from workers.pipeline import main as pipeline_main

        return pipeline_main
    if name == "check":
        from workers.check import main as check_main

        return check_main
    if name == "produce":
        from workers.produce import main as produce_main

        return produce_main
    if name == "split":
        from workers.split import main as split_main

        return split_main
    if name == "shard":
        from workers.shard import main as shard_main

        return shard_main
    if name == "merge":
        from workers.merge import main as merge_main

        return merge_main
    if name == "cleanup":
        from workers.cleanup import main as cleanup_main

        return cleanup_main
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a command; its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] == "--version":
        from workers import version_text

        sys.stdout.write(version_text() + "\n")
        return 0
    command = _command(args[0])
    if command is None:
        sys.stderr.write(f"workers: unknown command {args[0]!r} (see workers --help)\n")
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
