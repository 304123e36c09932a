"""What a run leaves behind: the final summary and ``run.json``, an Argo Workflow object
(the live progress is :mod:`argo_local.report.progress`, ``timeline.html`` is the embedding program's).

Secrets taken from the environment are replaced by ``***`` everywhere the runner
writes; the per-pod stdout/stderr files are the processes' own output and are
kept as-is under ``pods/``, like pod logs.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from argo_local.embedding import LogEvent
from argo_local.engine.run import DONE, Attempt, Node, Run, node_id_of
from argo_local.pods import hosts, safepath
from argo_local.pods.sandbox import Mount, host_path
from argo_local.report import errorlines
from workers.redaction import redact, redact_values
from workers.timeline.model import percentile, short_name

_MARK = {
    "Succeeded": "ok  ",
    "Failed": "FAIL",
    "Error": "ERR ",
    "Skipped": "skip",
    "Omitted": "omit",
}

LOOP_COLLAPSE = 5
"""Loops with more items than this are one summary line plus their slowest and failed items."""


def rfc3339(t: float | None) -> str | None:
    """Argo's timestamp format; milliseconds kept (Go's time.Parse reads them) for local runs."""
    if t is None:
        return None
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return stamp[:-3] + "Z"


def _parameters(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if outputs.get("parameters"):
        out["parameters"] = _parameters(outputs["parameters"])
    if outputs.get("artifacts"):
        out["artifacts"] = outputs["artifacts"]
    for key in ("result", "exitCode"):
        if outputs.get(key) is not None:
            out[key] = outputs[key]
    return out


def _status_node(
    node_id: str,
    name: str,
    display: str,
    type_: str,
    template: str,
    phase: str,
    boundary: str | None,
    started: float | None,
    finished: float | None,
    message: str,
    inputs: dict[str, str],
    outputs: dict[str, Any],
    input_artifacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": node_id,
        "name": name,
        "displayName": display,
        "type": type_,
        "phase": phase,
        "startedAt": rfc3339(started),
        "finishedAt": rfc3339(finished),
    }
    if template:
        rec["templateName"] = template
    if boundary:
        rec["boundaryID"] = boundary
    if message:
        rec["message"] = message
    if inputs or input_artifacts:
        rec["inputs"] = {}
        if inputs:
            rec["inputs"]["parameters"] = _parameters(inputs)
        if input_artifacts:
            rec["inputs"]["artifacts"] = input_artifacts
    outs = _outputs(outputs)
    if outs:
        rec["outputs"] = outs
    if type_ == "Pod":
        rec["progress"] = "1/1" if phase == "Succeeded" else "0/1"
        if started is not None:
            # NodeStatus.HostNodeName (operator.go: pod.Spec.NodeName): this machine
            rec["hostNodeName"] = hosts.node_name()
    return rec


def _children(run: Run) -> dict[str, list[str]]:
    """Argo's ``children``: a Steps node holds its first group, each step of a group the next
    group, a DAG its tasks without dependencies and each task the tasks that depend on it."""
    kids: dict[str, list[str]] = {n.id: [] for n in run.nodes.values()}
    for n in run.nodes.values():
        if n.type == "Steps":
            groups = n.children
            if groups:
                kids[n.id].append(groups[0])
            for prev, nxt in itertools.pairwise(groups):
                prev_node = run.nodes.get(prev)
                for step in prev_node.children if prev_node else []:
                    kids[step].append(nxt)
        elif n.type == "DAG":
            for c in n.children:
                task = run.nodes.get(c)
                if task is None:
                    continue
                if not task.after:
                    kids[n.id].append(c)
                for dep in task.after:
                    kids.setdefault(dep, []).append(c)
        else:
            kids[n.id].extend(n.children)
    for n in run.nodes.values():
        # Argo adds hook and exit-handler nodes to the children of the node they hook.
        kids[n.id].extend(n.hooks)
    return kids


def workflow_record(run: Run, root: Node, finished: float, files: list[str]) -> dict[str, Any]:
    """``run.json``: an Argo Workflow object (metadata, spec, status with Argo's NodeStatus map),
    so one reader serves ``argo get -o json``, ``kubectl get wf -o json`` and local runs.

    What only this runner knows (sandbox, folders, per-pod process details, ignored fields)
    is under the side field the embedding names (:attr:`Embedding.record_field`).
    """
    nodes, pods, progress = _status_nodes(run)
    phase, message = workflow_phase(run, root)
    spec = dict(run.spec)
    if run.parameters:
        spec["arguments"] = {"parameters": _parameters(run.parameters)}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": _metadata(run, phase),
        "spec": spec,
        "status": _status(run, phase, message, finished, progress, nodes),
        run.options.embedding.record_field: _local_side(run, files, pods),
    }


def _boundaries(run: Run) -> dict[str, str | None]:
    """Each node's ``boundaryID``: the steps or DAG node it runs in (None for the root)."""
    boundary: dict[str, str | None] = {}
    for n in run.nodes.values():
        parent = run.nodes.get(n.parent) if n.parent else None
        if parent is None:
            boundary[n.id] = None
        elif n.hooked:
            boundary[n.id] = boundary.get(parent.id)  # a hook shares its step's boundary
        elif parent.type in ("Steps", "DAG"):
            boundary[n.id] = parent.id
        else:
            boundary[n.id] = boundary.get(parent.id)
    return boundary


def _status_nodes(run: Run) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """Argo's ``status.nodes``, the side record of each pod by node id, and
    ``status.progress`` (pods succeeded / pods)."""
    nodes: dict[str, dict[str, Any]] = {}
    pods: dict[str, dict[str, Any]] = {}
    boundary = _boundaries(run)
    kids = _children(run)
    pods_total = pods_done = 0
    for n in run.nodes.values():
        bid = boundary[n.id]
        # A retried pod step is a Retry node with one Pod node per attempt, as on a cluster.
        retried = n.type == "Pod" and (n.retry or len(n.attempts) > 1)
        ids: list[str] = []
        if retried:
            ids = _attempt_nodes(run, n, bid, nodes, pods)
        elif n.attempts:
            pods[n.id] = _pod_side(n.attempts[-1])
        nodes[n.id] = _node_record(n, bid, retried, ids + kids.get(n.id, []))
        if retried:
            # Argo's progress counts pods: each attempt of a Retry node is one
            pods_total += len(n.attempts)
            pods_done += sum(a.phase == "Succeeded" for a in n.attempts)
        elif n.type == "Pod":
            pods_total += 1
            pods_done += n.phase == "Succeeded"
    return nodes, pods, f"{pods_done}/{pods_total}"


def _attempt_nodes(
    run: Run,
    n: Node,
    bid: str | None,
    nodes: dict[str, dict[str, Any]],
    pods: dict[str, dict[str, Any]],
) -> list[str]:
    """The Pod nodes of a Retry node's attempts, added to ``nodes`` and ``pods``; their ids."""
    ids: list[str] = []
    for a in n.attempts:
        aname = f"{n.name}({a.number})"
        aid = node_id_of(run.name, aname)
        ids.append(aid)
        last = a is n.attempts[-1]
        outs = n.outputs if last else {}
        if not last and a.exit_code is not None:
            outs = {"exitCode": str(a.exit_code)}
        nodes[aid] = _status_node(
            aid,
            aname,
            f"{n.display}({a.number})",
            "Pod",
            n.template,
            a.phase,
            bid,
            a.created or a.started,
            a.finished,
            a.message,
            n.inputs,
            outs,
            n.input_artifacts,
        )
        pods[aid] = _pod_side(a)
    return ids


def _node_record(n: Node, bid: str | None, retried: bool, children: list[str]) -> dict[str, Any]:
    """A node's NodeStatus (a Retry node for a retried pod step)."""
    rec = _status_node(
        n.id,
        n.name,
        n.display,
        "Retry" if retried else n.type,
        n.template,
        n.phase,
        bid,
        n.started,
        n.finished,
        n.message,
        n.inputs,
        n.outputs,
        n.input_artifacts,
    )
    if not n.attempts:
        rec.pop("hostNodeName", None)  # no pod was made for it
    if n.memoization is not None:
        rec["memoizationStatus"] = dict(n.memoization)
    if children or retried:
        rec["children"] = children
    if n.hooked:
        rec["nodeFlag"] = {"hooked": True}
    return rec


def _status(
    run: Run,
    phase: str,
    message: str,
    finished: float,
    progress: str,
    nodes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The Workflow's ``status``: phase, times, progress, nodes and global outputs."""
    status: dict[str, Any] = {
        "phase": phase,
        "startedAt": rfc3339(run.created),
        "finishedAt": rfc3339(finished),
        "progress": progress,
        "nodes": nodes,
    }
    if message and phase != "Succeeded":
        status["message"] = message
    if run.global_outputs or run.global_artifacts:
        # globalName exports (runner/workflowscope.py), as Argo's status.outputs
        status["outputs"] = {}
        if run.global_outputs:
            status["outputs"]["parameters"] = _parameters(run.global_outputs)
        if run.global_artifacts:
            status["outputs"]["artifacts"] = list(run.global_artifacts.values())
    return status


def _metadata(run: Run, phase: str) -> dict[str, Any]:
    """The Workflow's ``metadata``, labelled completed with its phase as the controller does."""
    meta = run.doc.body.get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": run.name,
        "namespace": "local",
        "uid": run.uid,
        "creationTimestamp": rfc3339(run.created),
        "labels": {
            "workflows.argoproj.io/phase": phase,
            "workflows.argoproj.io/completed": "true",
        },
        "annotations": dict(run.options.embedding.annotations),
    }
    if meta.get("generateName"):
        metadata["generateName"] = meta["generateName"]
    return metadata


def _local_side(run: Run, files: list[str], pods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What only this runner knows, under the embedding's side field."""
    return {
        "kind": run.doc.kind,
        "source": run.doc.source,
        "files": files,
        "parameters": run.parameters,
        "sandbox": {"mode": run.mode, "why": run.mode_reason},
        "runFolder": str(run.run_dir),
        "workFolder": str(run.work_dir),
        "volumes": {k: str(v) for k, v in run.volumes.items()},
        # The local artifact repository: an artifact's s3.key (without a bucket) is a
        # path below this folder.
        "artifactRepository": str(run.artifact_repository),
        "ignoredLocally": run.notes.ignored,
        "notes": run.warnings,
        "pods": pods,
    }


def workflow_phase(run: Run, root: Node) -> tuple[str, str]:
    """The workflow's phase and message: the entrypoint's, or its exit handler's failure when
    the entrypoint succeeded (runner/hooks.py); Failed when the run stopped before deciding."""
    if run.phase is not None:
        return run.phase, run.message
    phase = root.phase if root.phase in DONE else "Failed"
    if phase in ("Skipped", "Omitted"):
        phase = "Succeeded"
    return phase, root.message or run.cancel_reason


def _pod_side(a: Attempt) -> dict[str, Any]:
    """One attempt's process: what a cluster keeps in the pod, not in the Workflow status
    (a failed attempt's last log lines too, which ``kubectl logs`` would show)."""
    failed = a.phase in ("Failed", "Error") and a.stderr
    return {
        **({"logTail": _tail(Path(a.stderr))} if failed else {}),
        "podName": a.pod_name,
        "attempt": a.number,
        "exitCode": a.exit_code,
        "podStartedAt": rfc3339(a.started),
        "firstLogAt": rfc3339(a.first_log),
        "backoff_s": a.backoff_s,
        "stdout": a.stdout,
        "stderr": a.stderr,
        "mounts": dict(a.mounts),
    }


def write_json(path: Path, record: dict[str, Any], secrets: set[str]) -> None:
    # Strings are redacted before JSON escapes them: "\\nsecret" would hide a secret's start.
    text = json.dumps(redact_values(record, secrets), indent=2, default=str)
    path.write_text(redact(text, secrets) + "\n")


def log_events(run: Run) -> Iterator[LogEvent]:
    """The JSON log events of the pod attempts that succeeded, the newest node's first (each
    attempt's last event first), with the mapping of a path a pod names to the host's."""
    for node in sorted(run.nodes.values(), key=lambda n: n.finished or 0, reverse=True):
        for a in reversed(node.attempts):
            if a.phase != "Succeeded":
                continue
            # remap: the step's paths are host paths already (mapping them again broke a
            # run folder under /tmp, itself a mount target)
            mounts = [] if run.mode == "remap" else [Mount(Path(h), t) for t, h in a.mounts]
            for ev in reversed(a.events):
                # a path a step logged is read only inside the run folder, through no link
                yield LogEvent(
                    ev,
                    partial(_host, mounts=mounts, cwd=run.work_dir),
                    partial(safepath.read_text, run.run_dir),
                )


def _host(path: str, mounts: list[Mount], cwd: Path) -> Path | str:
    """A step's path on this machine; a bucket URL as it is (a Path would fold its ``//``)."""
    if "://" in path and not path.startswith("file://"):
        return path
    path = path.removeprefix("file://")
    if not path.startswith("/"):
        return cwd / path
    return host_path(path, mounts)


def summary_text(run: Run, root: Node) -> str:
    """The end summary: one line per step; a loop of more than :data:`LOOP_COLLAPSE` items is
    its counts by phase, time percentiles, skew, its slowest items and its failed ones."""
    phase, message = workflow_phase(run, root)
    # the step that failed and why, not the nodes omitted after it (errorlines.py)
    lines = [errorlines.headline(run, phase, message)]
    lines.append(f"{'NODE':44} {'PHASE':10} {'ATT':>3} {'DURATION':>9}  OUTPUTS")
    skip: set[str] = set()
    # the workflow's exit handler is a top-level node of its own, listed after the entrypoint
    on_exit = [n for n in run.nodes.values() if n.hooked and n.parent is None]
    for n in tree(run, root) + [m for h in on_exit for m in tree(run, h)]:
        if n.type in ("StepGroup",) or n is root or n.id in skip:
            continue
        items = [run.nodes[c] for c in n.children if c in run.nodes]
        if n.type == "TaskGroup" and len(items) > LOOP_COLLAPSE:
            skip.update(_descendants(run, n))
            lines.extend(_loop_lines(run, n, items))
            continue
        lines.extend(_node_lines(run, n))
    return redact("\n".join(lines), tuple(run.secret_values))


def _short(run: Run, n: Node) -> str:
    name = short_name(n.name.removeprefix(run.name))
    return name if len(name) <= 44 else name[:41] + "..."


def _node_lines(run: Run, n: Node) -> list[str]:
    outs = dict(n.outputs.get("parameters") or {})
    if n.type == "Pod" and n.outputs.get("result"):
        outs["result"] = n.outputs["result"]
    text = ", ".join(f"{k}={v}" for k, v in outs.items())
    if len(text) > 70:
        text = text[:67] + "..."
    dur = f"{n.duration:.2f}s" if n.duration is not None else "-"
    lines = [f"{_short(run, n):44} {n.phase:10} {len(n.attempts) or '':>3} {dur:>9}  {text}"]
    if n.phase in ("Failed", "Error") and n.message and n.type in ("Pod", "Skipped"):
        lines.append(f"{'':44} {n.message}")
        lines.extend(f"{'':44} {t}" for t in errorlines.attempt_lines(n))
        if n.attempts and n.attempts[-1].stderr:
            tail = _tail(Path(n.attempts[-1].stderr))
            lines.extend(f"{'':46}| {t}" for t in tail)
    return lines


def _loop_lines(run: Run, group: Node, items: list[Node]) -> list[str]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.phase] = counts.get(item.phase, 0) + 1
    dur = f"{group.duration:.2f}s" if group.duration is not None else "-"
    phases = ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    lines = [
        f"{_short(run, group) + f' ({len(items)} items)':44} {group.phase:10} {'':>3} {dur:>9}  "
        f"{phases}"
    ]
    timed = sorted(
        (i for i in items if i.duration is not None), key=lambda i: i.duration or 0.0, reverse=True
    )
    if timed:
        values = sorted(i.duration or 0.0 for i in timed)
        p50, p95 = percentile(values, 50), percentile(values, 95)
        skew = f"  skew {values[-1] / p50:.2f}x (max/p50)" if p50 > 0 else ""
        lines.append(f"{'':4}p50 {p50:.2f}s  p95 {p95:.2f}s  max {values[-1]:.2f}s{skew}")
        slowest = ", ".join(f"{_short(run, i)} {i.duration or 0.0:.2f}s" for i in timed[:5])
        lines.append(f"{'':4}slowest: {slowest}")
    failed = [i for i in items if i.phase in ("Failed", "Error")]
    for item in failed[:LOOP_COLLAPSE]:
        lines.extend(_node_lines(run, item))
    if len(failed) > LOOP_COLLAPSE:
        lines.append(f"{'':4}... and {len(failed) - LOOP_COLLAPSE} more failed (see run.json)")
    return lines


def _descendants(run: Run, node: Node) -> set[str]:
    out: set[str] = set()
    stack = list(node.children)
    while stack:
        c = stack.pop()
        if c in out:
            continue
        out.add(c)
        child = run.nodes.get(c)
        if child is not None:
            stack.extend(child.children + child.hooks)
    return out


def tree(run: Run, root: Node) -> list[Node]:
    """Nodes depth-first from the root; loop items by index, others by start time."""
    out: list[Node] = []

    def walk(node: Node) -> None:
        out.append(node)
        kids = [run.nodes[c] for c in node.children + node.hooks if c in run.nodes]
        for kid in sorted(kids, key=lambda k: (k.index, k.started or 0, k.name)):
            walk(kid)

    walk(root)
    return out


def artifact_lines(run: Run, limit: int = 10) -> list[str]:
    """Where the pods' output artifacts were saved: the repository, then one line per artifact
    (the first ``limit``), a bucket's as its URL."""
    found: list[tuple[str, str]] = []
    for n in sorted(run.nodes.values(), key=lambda n: n.finished or 0):
        if n.type != "Pod":
            continue
        for art in n.outputs.get("artifacts") or []:
            loc = art.get("s3") or art.get("gcs") or {}
            if loc.get("bucket"):
                where = f"{'s3' if 's3' in art else 'gs'}://{loc['bucket']}/{loc.get('key')}"
            else:
                where = str(run.artifact_repository / str(loc.get("key")))
            found.append((f"{n.display}.{art.get('name')}", where))
    if not found:
        return []
    lines = [f"artifacts:     {run.artifact_repository} ({len(found)} saved)"]
    lines += [f"  {name}: {where}" for name, where in found[:limit]]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more (outputs.artifacts in run.json)")
    return lines


def ignored_summary(notes: list[str]) -> str:
    """``image x5, metrics x4, ...``: which ignored fields occur, without one line per use."""
    counts: dict[str, int] = {}
    for note in notes:
        path = note.rsplit(": ", 1)[-1].removesuffix(" ignored locally")
        field = re.sub(r"\[[^]]*\]", "", path).split(".")
        key = ".".join(field[-2:]) if field[-2:-1] in (["container"], ["script"]) else field[-1]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(counts.items()))


def _tail(path: Path, n: int = 5) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []
