"""The timeline's model: a Workflow object's nodes as tasks with segments (waiting, start-up,
work, commit, exit), loops and their items, and the small helpers the local runner's summary
shares (loop item names, percentiles, Argo's timestamps, durations)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workers.runadapter import local_side

LOOP_ITEM = re.compile(r"^(?P<prefix>.*)\((?P<index>\d+):(?P<label>.*)\)$")
ATTEMPT = re.compile(r"\((\d+)\)$")


# ---------------------------------------------------------------- small helpers


def short_name(name: str) -> str:
    """``x.shard(7:{"index":7,...})`` -> ``x.shard(7)``: a loop item by its index."""
    m = LOOP_ITEM.match(name)
    return f"{m['prefix']}({m['index']})" if m else name


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of sorted ``values`` (q in 0..100)."""
    if not values:
        return 0.0
    pos = (len(values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def parse_time(text: Any) -> float | None:
    """An RFC 3339 timestamp (Argo's ``2024-01-01T00:00:00Z``, fractions allowed) as epoch seconds."""
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parameters(node: dict[str, Any], which: str = "inputs") -> dict[str, Any]:
    """A node's ``inputs``/``outputs`` parameters (Argo's list of name/value) as a dict."""
    items = (node.get(which) or {}).get("parameters") or []
    return {str(p.get("name")): p.get("value") for p in items if isinstance(p, dict)}


def fmt_s(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


# ---------------------------------------------------------------- model


@dataclass
class Segment:
    kind: str  # wait, startup, work, commit, run
    start: float
    end: float
    phase: str = "Succeeded"


@dataclass
class Task:
    """One step execution: a Pod, or a Retry node with its attempt pods (or a Skipped node)."""

    id: str
    name: str
    display: str
    type: str
    phase: str
    message: str
    start: float | None
    end: float | None
    pods: list[dict[str, Any]]
    inputs: dict[str, Any]
    log_tail: list[str] = field(default_factory=list)
    loop: str | None = None
    index: int | None = None
    queued_from: float | None = None
    shard: int | None = None
    record: dict[str, Any] | None = None
    segments: list[Segment] = field(default_factory=list)
    waiting: float = 0.0
    startup: float | None = None
    pod_time: float = 0.0

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(self.end - self.start, 0.0)

    @property
    def label(self) -> str:
        return short_name(self.display)

    @property
    def failed(self) -> bool:
        return self.phase in ("Failed", "Error")


@dataclass
class Loop:
    key: str
    label: str
    tasks: list[Task]

    @property
    def start(self) -> float:
        return min(t.queued_from or t.start or 0.0 for t in self.tasks)

    @property
    def end(self) -> float:
        return max(t.end or t.start or 0.0 for t in self.tasks)


@dataclass
class Model:
    name: str
    phase: str
    message: str
    start: float
    end: float
    where: str
    tasks: list[Task]
    loops: dict[str, Loop]
    notes: list[str] = field(default_factory=list)


class NotAWorkflow(ValueError):
    pass


def load(text: str, what: str) -> dict[str, Any]:
    """The Workflow object in ``text`` (a one-item ``List`` too), or NotAWorkflow."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NotAWorkflow(f"{what}: not JSON ({exc})") from None
    except RecursionError:
        raise NotAWorkflow(f"{what}: JSON nested too deeply") from None
    if isinstance(doc, dict) and doc.get("kind") == "List" and len(doc.get("items") or []) == 1:
        doc = doc["items"][0]
    if not isinstance(doc, dict) or not isinstance((doc.get("status") or {}).get("nodes"), dict):
        raise NotAWorkflow(
            f"{what}: not an Argo Workflow with status.nodes (argo get NAME -o json writes one)"
        )
    return doc


def build(wf: dict[str, Any], records: dict[int, dict[str, Any]] | None = None) -> Model:
    """The timeline's model of a Workflow object, joined with commit records by shard index."""
    status = wf.get("status") or {}
    nodes: dict[str, dict[str, Any]] = status.get("nodes") or {}
    side = (local_side(wf) or {}).get("pods") or {}
    retry_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for nid, n in nodes.items():
        for c in n.get("children") or []:
            child = nodes.get(c)
            if child is None:
                continue
            if n.get("type") == "Retry" and str(child.get("name", "")).startswith(
                str(n.get("name")) + "("
            ):
                retry_of[c] = nid
            elif n.get("type") in ("StepGroup", "TaskGroup"):
                group_of.setdefault(c, nid)
    starts = [t for n in nodes.values() if (t := parse_time(n.get("startedAt"))) is not None]
    ends = [t for n in nodes.values() if (t := parse_time(n.get("finishedAt"))) is not None]
    t0 = parse_time(status.get("startedAt")) or (min(starts) if starts else 0.0)
    # the latest of the status's end and every node's: a status taken mid-run has no end
    t1 = max([parse_time(status.get("finishedAt")) or t0, *ends, *starts])
    attempts: dict[str, list[dict[str, Any]]] = {}
    for c, r in retry_of.items():
        attempts.setdefault(r, []).append(nodes[c])
    tasks: list[Task] = []
    loops: dict[str, Loop] = {}
    for nid, n in nodes.items():
        type_ = n.get("type")
        if type_ == "Pod" and nid in retry_of:
            continue
        if type_ not in ("Pod", "Retry", "Skipped"):
            continue
        pods = [n] if type_ == "Pod" else attempts.get(nid, [])
        pods.sort(key=_attempt_number)
        name = str(n.get("name") or nid)
        task = Task(
            id=nid,
            name=name,
            display=str(n.get("displayName") or name),
            type=str(type_),
            phase=str(n.get("phase") or "Pending"),
            message=str(n.get("message") or ""),
            start=parse_time(n.get("startedAt")),
            end=parse_time(n.get("finishedAt")),
            pods=pods,
            inputs=parameters(n),
        )
        last_pod = pods[-1] if pods else {}
        if type_ == "Retry" and last_pod.get("message") and last_pod["message"] != task.message:
            # the attempt says what broke; the Retry node only why it stopped retrying
            task.message = "; ".join(x for x in (str(last_pod["message"]), task.message) if x)
        if task.start is not None and task.end is None and task.phase not in ("Skipped", "Omitted"):
            task.end = t1  # still running when the status was taken
        m = LOOP_ITEM.match(name)
        if m:
            task.loop, task.index = m["prefix"], int(m["index"])
            group = nodes.get(group_of.get(nid, ""))
            task.queued_from = parse_time(group.get("startedAt")) if group else None
        tail = (side.get(str(last_pod.get("id"))) or {}).get("logTail")
        task.log_tail = [str(line) for line in tail] if isinstance(tail, list) else []
        task.shard = _shard_index(task)
        if records and task.shard is not None:
            task.record = records.get(task.shard)
        _split(task, side, t1)
        tasks.append(task)
        if task.loop is not None:
            loop = loops.get(task.loop)
            if loop is None:
                label = LOOP_ITEM.match(task.display)
                loop = loops[task.loop] = Loop(
                    task.loop, label["prefix"] if label else task.loop, []
                )
            loop.tasks.append(task)
    for loop in loops.values():
        loop.tasks.sort(key=lambda t: t.index or 0)
    tasks.sort(key=lambda t: (t.start if t.start is not None else t1, t.index or 0, t.name))
    runner = local_side(wf)
    where = (
        f"local run, sandbox {runner['sandbox']['mode']}"
        if runner is not None and isinstance(runner.get("sandbox"), dict)
        else f"cluster run, namespace {(wf.get('metadata') or {}).get('namespace', '?')}"
    )
    return Model(
        name=str((wf.get("metadata") or {}).get("name") or "workflow"),
        phase=str(status.get("phase") or "Unknown"),
        message=str(status.get("message") or ""),
        start=t0,
        end=max(t1, t0 + 1e-3),
        where=where,
        tasks=tasks,
        loops=loops,
    )


def _attempt_number(node: dict[str, Any]) -> int:
    m = ATTEMPT.search(str(node.get("name") or ""))
    return int(m.group(1)) if m else 0


def item_index(raw: Any) -> int | None:
    """The shard index a shard node's ``shard`` input names: a plain index (the templates'
    ``withSequence`` item) or one of split's JSON items."""
    if not isinstance(raw, str):
        return None
    if raw.isdigit():
        return int(raw)
    if raw.startswith("{"):
        try:
            index = json.loads(raw).get("index")
        except (ValueError, AttributeError):
            return None
        if isinstance(index, int):
            return index
    return None


def _shard_index(task: Task) -> int | None:
    return item_index(task.inputs.get("shard"))


def _seconds(value: Any) -> float | None:
    """A commit record's time field: a finite number of seconds, else None (a record written
    by hand or by another tool may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clamp(t: float | None, lo: float, hi: float) -> float | None:
    return None if t is None else min(max(t, lo), hi)


def _split(task: Task, side: dict[str, Any], t_end: float) -> None:
    """The bar's segments, attempt by attempt (see the module docstring)."""
    for i, pod in enumerate(task.pods):
        p0 = parse_time(pod.get("startedAt"))
        if p0 is None:
            continue
        p1 = parse_time(pod.get("finishedAt")) or t_end
        p1 = max(p1, p0)
        phase = str(pod.get("phase") or "Pending")
        info = side.get(str(pod.get("id"))) or {}
        pod_start = _clamp(parse_time(info.get("podStartedAt")), p0, p1) or p0
        queued = task.queued_from if i == 0 and task.queued_from is not None else p0
        queued = min(queued, p0)
        if pod_start > queued:
            task.segments.append(Segment("wait", queued, pod_start))
            task.waiting += pod_start - queued
        task.pod_time += p1 - p0
        rec = (task.record or {}) if pod is task.pods[-1] else {}
        work_start = work_end = None
        started = _seconds(rec.get("started"))
        duration, commit = (_seconds(rec.get(k)) or 0.0 for k in ("duration_s", "commit_s"))
        # a reused record of an earlier attempt is not this one
        if started is not None and p0 - 1 <= started <= p1 + 1:
            work_start = _clamp(started, pod_start, p1)
            work_end = _clamp(started + max(duration - commit, 0.0), work_start or p0, p1)
        if work_start is None:
            work_start = _clamp(parse_time(info.get("firstLogAt")), pod_start, p1)
        if work_start is None:
            task.segments.append(Segment("run", pod_start, p1, phase))
            continue
        task.startup = (task.startup or 0.0) + (work_start - pod_start)
        task.segments.append(Segment("startup", pod_start, work_start))
        if work_end is None:
            task.segments.append(Segment("work", work_start, p1, phase))
        else:
            committed = _clamp(work_start + duration, work_end, p1)
            assert committed is not None
            task.segments.append(Segment("work", work_start, work_end, phase))
            task.segments.append(Segment("commit", work_end, committed, phase))
            task.segments.append(Segment("exit", committed, p1, phase))
