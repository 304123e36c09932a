"""``workers run --resume RUN``: run a failed local run again, keeping what succeeded.

Argo's ``argo retry`` semantics, for a local run: the same workflow name (so the same run
id, run folder, embedded database and store), the same parameters, and every pod step that
succeeded in the earlier run kept as it was, its outputs included, instead of running again.
The steps that failed, errored or never ran run now. A shard that committed before its pod
failed is reused by shard's own commit check; one killed mid-part resumes after its last
checkpoint. produce is not repeated when it succeeded, so the data's generation (and every
committed shard of it) stays valid.

One exception to keeping a succeeded step: a template annotated ``workers.dev/resume: rerun``
runs again, because it checks for itself what it can reuse (shard reuses a commit only when
the processor's code is the same, split re-pins the processor): after the user fixed the code,
resuming recomputes exactly what the old code made.

The earlier run's record is its ``run.json`` (an Argo Workflow object).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argo_local.model.annotations import keeps
from argo_local.runs import RECORD


@dataclass(frozen=True)
class Prior:
    """A pod step that succeeded in the run being resumed: what it output, and when it ran."""

    outputs: dict[str, Any]
    started: float | None
    finished: float | None


@dataclass(frozen=True)
class Earlier:
    """What ``--resume`` reads of the earlier run."""

    name: str
    phase: str
    parameters: dict[str, str]
    succeeded: dict[str, Prior]  # by node name


class ResumeError(RuntimeError):
    """Raised when the earlier run cannot be resumed as asked (bad record, other parameters)."""


def reruns(documents: list[Any]) -> list[str]:
    """The names of the templates ``--resume`` runs again even when they succeeded."""
    return sorted(
        {
            str(t.get("name"))
            for d in documents
            for t in ((d.body.get("spec") or {}).get("templates") or [])
            if isinstance(t, dict) and not keeps(t)
        }
    )


def run_folder(value: str, runs: Path) -> Path:
    """``--resume`` takes a run folder, or a run's name in the runs folder."""
    path = Path(value)
    if "/" in value or (path.is_dir() and (path / RECORD).is_file()):
        return path
    return runs / value


def read(folder: Path) -> Earlier:
    """The earlier run's name, phase, parameters and succeeded pod steps, from its run.json."""
    from workers.timeline.model import parse_time

    if not (folder / RECORD).is_file():
        raise ResumeError(
            f"--resume {folder}: no {RECORD} there (not a finished run of this runner)"
        )
    try:
        record = json.loads((folder / RECORD).read_text())
        name = str(record["metadata"]["name"])
        status = record.get("status") or {}
        nodes = status.get("nodes") or {}
        arguments = (record.get("spec") or {}).get("arguments") or {}
        parameters = {
            str(p["name"]): str(p.get("value", "")) for p in arguments.get("parameters") or []
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResumeError(
            f"{folder / RECORD}: not a run record this runner wrote ({exc})"
        ) from None
    succeeded: dict[str, Prior] = {}
    for node in nodes.values():
        # Retry nodes stand for a pod step with a retryStrategy; their attempts are its children.
        if node.get("type") not in ("Pod", "Retry") or node.get("phase") != "Succeeded":
            continue
        if str(node.get("name")).startswith(f"{name}.onExit"):
            continue  # argo retry runs the workflow's exit handler again (util.go)
        succeeded[str(node.get("name"))] = Prior(
            _outputs(node.get("outputs") or {}),
            parse_time(node.get("startedAt")),
            parse_time(node.get("finishedAt")),
        )
    return Earlier(name, str(status.get("phase") or ""), parameters, succeeded)


def _outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Argo's ``outputs`` (parameters as a name/value list) in the engine's form (a dict)."""
    out: dict[str, Any] = {}
    params = {str(p["name"]): p.get("value", "") for p in outputs.get("parameters") or []}
    if params:
        out["parameters"] = params
    for key in ("result", "exitCode", "artifacts"):
        if key in outputs:
            out[key] = outputs[key]
    return out


def check_parameters(earlier: Earlier, parameters: dict[str, str]) -> None:
    """A resumed run keeps its parameters: what succeeded was computed from them."""
    changed = [
        f"{k}={earlier.parameters.get(k)!r} -> {v!r}"
        for k, v in parameters.items()
        if earlier.parameters.get(k) != v
    ]
    changed += [f"{k} (no longer given)" for k in earlier.parameters if k not in parameters]
    if changed:
        raise ResumeError(
            f"--resume {earlier.name}: the run's parameters differ ({', '.join(sorted(changed))}); "
            "resume with the parameters it ran with, or start a new run"
        )
