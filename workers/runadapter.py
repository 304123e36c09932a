"""``workers run``: the local runner (:mod:`argo_local`) with what the workers product adds.

The one module of ``workers`` that imports the runner: its command name and help, the runs
folder, the ``workers`` package importable in every pod, one SQLite database for every pod of
a run when the database secret is not found, merge's output and row count in the summary,
and ``timeline.html``. The runner knows none of these; they reach it as an
:class:`argo_local.embedding.Embedding`.

:data:`RECORD_FIELD` is the side field of a local run's ``run.json`` (what only a local run
knows: its sandbox, folders, pods' mounts); :mod:`workers.timeline` reads it by this name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from argo_local.embedding import Embedding, LogEvent, Secretless

RECORD_FIELD = "workersRunner"

PROG = "python -m workers run"

EPILOG = """examples:
  python -m workers run workers-pipeline                 # the pipeline on SQLite + a local folder
  python -m workers run workers-pipeline -p rows=1000000 -p rows-per-shard=100000
  python -m workers run manifests/examples/workflow.yaml
  python -m workers run my-workflow.yaml --sandbox remap # without bubblewrap
  cd examples/orders && python -m workers run workers-pipeline \\
      -p generator=orders.generate:orders -p processor=orders.enrich:enrich
                                                         # your own code, from the current folder
  python -m workers run workers-pipeline -p rows=1000000 --resume workers-pipeline-x7k2p
                                                         # a failed run again, keeping what succeeded

Pods import your code from the current folder (or --code DIR) and every PYTHONPATH
entry, bound read-only into each pod. Finished runs beyond the newest --keep are
removed from the runs folder when a run starts.

Secrets (env valueFrom.secretKeyRef) come from the environment: <SECRET>_<KEY>
(uppercased, - and . as _) or the container's env var name, else from .env.

exit codes: 0 the workflow succeeded, 1 it failed, 2 it cannot run locally
"""

DATABASE_ENV = ("WORKERS_DATABASE_URL", "DATABASE_URL")

IMAGE_WORKDIRS = {"ghcr.io/workers-project/workers": "/work"}
"""The project image's WORKDIR (the Dockerfile's), every tag: its pods start there, in the
``/work`` emptyDir each template mounts, as on a cluster; an image built FROM it under
another name is told with ``--workdir``."""

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The folder holding the ``workers`` package: on every pod's PYTHONPATH (pods run
``python -m workers.<step>``; they never need the runner)."""


def local_side(wf: Mapping[str, Any]) -> dict[str, Any] | None:
    """What only a local run's record (``run.json``) holds: its sandbox, folders and each pod's
    mounts; None for a cluster's Workflow object."""
    side = wf.get(RECORD_FIELD)
    return side if isinstance(side, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from argo_local.cli import main as run_main
    except ModuleNotFoundError as exc:
        if exc.name != "argo_local":
            raise
        # The container image leaves the runner out (its pods never use it).
        sys.stderr.write(
            f"{PROG}: the local runner (package argo_local) is not installed here; the "
            "workers image holds only the steps: run workflows from a pip install of "
            "fanout-workers\n"
        )
        return 2
    return run_main(argv, embedding())


def embedding() -> Embedding:
    from argo_local.embedding import Embedding
    from workers import version_text

    return Embedding(
        prog=PROG,
        epilog=EPILOG,
        version=version_text(),
        runs_folder=Path("workers-runs"),
        record_field=RECORD_FIELD,
        annotations={"workers.dev/runner": "python -m workers run (local processes)"},
        default_manifests=default_manifests,
        pod_import_paths=(PACKAGE_ROOT,),
        secretless_env=shared_database,
        summary_lines=merge_lines,
        timeline=timeline_page,
        image_workdirs=IMAGE_WORKDIRS,
    )


def default_manifests() -> Path:
    """``./manifests`` if present, else the library this package was installed with.

    A wheel carries the repository's ``manifests/`` as ``workers/manifests`` (package data);
    a source checkout or an editable install has it next to the package instead.
    """
    here = Path("manifests")
    if here.is_dir():
        return here
    package = Path(__file__).resolve().parent
    shipped = package / "manifests"
    if shipped.is_dir():
        return shipped
    return package.parent / "manifests"


def shared_database(missing: Secretless) -> tuple[str, str] | None:
    """Pods of one run must share one database: the embedded default is a SQLite file in the
    working folder, which differs per pod, so every pod gets one file in the run's work folder."""
    if missing.name not in DATABASE_ENV:
        return None
    db = missing.work_dir / "workers.db"
    note = (
        f"secret {missing.secret} not found locally (looked for {missing.looked} in the "
        f"environment and .env): every pod uses the embedded SQLite database {db}"
    )
    return f"sqlite:///{db}", note


def merge_lines(events: Iterable[LogEvent]) -> list[str]:
    """Where merge wrote its document and summary (its ``merged`` log line, mapped to host
    paths), and the summary's rows reconciled with what produce wrote."""
    for ev in events:
        fields = ev.fields
        if fields.get("event") != "merged" or fields.get("output") in (None, "-"):
            continue
        lines = [f"merged output: {_on_host(ev, str(fields['output']))}"]
        if fields.get("summary"):
            summary = _on_host(ev, str(fields["summary"]))
            lines.append(f"merge summary: {summary}")
            line = _reconcile(ev, summary)
            if line is not None:
                lines.append(line)
        return lines
    return []


def _on_host(ev: LogEvent, url: str) -> Path | str:
    """Where a file merge logged is on this machine: a local one through the pod's mounts, a
    bucket's URL as it is (a Path would fold its ``//``)."""
    from workers import storage
    from workers.errors import UsageError

    try:
        where = storage.resolve(url)
    except UsageError:
        return url  # no store of ours: shown as logged
    return ev.host_path(where.local_path) if where.is_local else url


def rows_line(totals: dict[str, object]) -> str | None:
    """The summary's rows line: merged against produced, and what the processor changed."""
    rows, expected, shards = totals.get("rows"), totals.get("rows_expected"), totals.get("shards")
    if not isinstance(rows, int):
        return None
    if not isinstance(expected, int) or rows == expected:
        produced = f"{expected:,}" if isinstance(expected, int) else "?"
        return f"rows:          merged {rows:,} == produced {produced} in {shards} shards"
    # merge succeeded, so every shard read its whole key range: any difference is the
    # processor's own doing (it may drop rows or emit several values per row).
    if rows < expected:
        change = f"the processor dropped {expected - rows:,}"
    else:
        change = f"the processor added {rows - expected:,}"
    return (
        f"rows:          merged {rows:,} of {expected:,} produced rows in {shards} shards; {change}"
    )


def _reconcile(ev: LogEvent, summary: Path | str) -> str | None:
    """The rows line from merge's summary: a file in the run folder (read through no link), or
    an object in the run's bucket (read with this process's credentials, as the step's own are
    the same secret); a summary that cannot be read says why instead."""
    from workers import storage
    from workers.errors import WorkersError

    try:
        if isinstance(summary, Path):
            text = ev.read_text(summary)
        else:
            text = storage.read_small(summary, 64 << 20, "merge summary").decode()
        totals = json.loads(text).get("totals") or {}
    except (OSError, ValueError, AttributeError, WorkersError) as exc:
        return f"rows:          not read from {summary} ({type(exc).__name__})"
    return rows_line(totals)


def timeline_page(record: dict[str, Any]) -> str:
    from workers.timeline.html import render_workflow

    return render_workflow(record)
