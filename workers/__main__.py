"""``python -m workers``: the commands that are not a single pod's step."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: python -m workers COMMAND [...]

commands:
  pipeline   run produce -> split -> shards in parallel -> merge on this machine
  run        run an Argo Workflow/WorkflowTemplate from manifests/ with local processes
             (python -m workers run workers-pipeline; see python -m workers run --help)
  timeline   render timeline.html from a Workflow's JSON: a local run.json or argo get -o json
             (python -m workers timeline workers-runs/NAME/run.json; see --help)

steps (what a pod runs):
  python -m workers.produce | workers.split | workers.shard | workers.merge   (each has --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] == "pipeline":
        from workers.pipeline import main as pipeline_main

        return pipeline_main(args[1:])
    if args[0] == "run":
        from workers.runner.cli import main as run_main

        return run_main(args[1:])
    if args[0] == "timeline":
        from workers.timeline import main as timeline_main

        return timeline_main(args[1:])
    sys.stderr.write(f"python -m workers: unknown command {args[0]!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
