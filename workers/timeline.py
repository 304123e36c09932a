"""``workers timeline FILE [--store URL]``: where a workflow's time went, as one HTML page.

Reads an Argo Workflow object: ``argo get -o json``, ``kubectl get wf -o json`` or the
``run.json`` of a local run (the same format). With the run's store reachable, each shard's
commit record (``STORE/commits/part-NNNNN.json``: when its work started, how long the work
and the part's commit took) splits the shard's bar into

    waiting   loop start (or pod created) -> pod start: a parallelism slot, scheduling
    start-up  pod start -> work start: image pull, container start, Python imports
    work      work start -> the part's commit
    commit    the part's commit (rename or upload)
    exit      the commit record, the last log line, the process exit

A local run also knows when each process started and its first log line, so its steps
without commit records split too. On a cluster the pod's own start is not in the Workflow
status: start-up there runs from the pod's creation (scheduling and image pulls included).

Above the bars: failures with their messages, p50/p95/max shard time and the slowest shards
by name, start-up overhead as a share of pod time, and the gaps between steps. Loops of more
than :data:`COLLAPSE` items are a histogram plus their slowest and failed items, so a
10,000-shard run is a page of a few dozen rows. The page has no scripts and no external links.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

LOOP_ITEM = re.compile(r"^(?P<prefix>.*)\((?P<index>\d+):(?P<label>.*)\)$")
ATTEMPT = re.compile(r"\((\d+)\)$")
RUNNER_FIELD = "workersRunner"  # the local runner's side field (workers.runner.report)
COLLAPSE = 40
"""Loops with more items than this show a histogram, the slowest items and the failed ones."""
SLOWEST = 10
MAX_FAILED_ROWS = 10
LABEL_PX = 300

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
    side = (wf.get(RUNNER_FIELD) or {}).get("pods") or {}
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
    runner = wf.get(RUNNER_FIELD)
    where = (
        f"local run, sandbox {runner['sandbox']['mode']}"
        if isinstance(runner, dict) and isinstance(runner.get("sandbox"), dict)
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


def read_records(store: str, indexes: Iterable[int]) -> tuple[dict[int, dict[str, Any]], int]:
    """Commit records by shard index (missing ones left out), and how many were unreadable."""
    from concurrent.futures import ThreadPoolExecutor

    from workers import layout, storage

    def one(index: int) -> tuple[int, dict[str, Any] | None, bool]:
        try:
            data = storage.read_small(
                layout.commit_url(store, index), layout.MAX_RECORD_BYTES, "commit record"
            )
            rec = json.loads(data)
        except FileNotFoundError:
            return index, None, False
        except Exception:  # a bad record must not stop the picture; it is counted instead
            return index, None, True
        return index, rec if isinstance(rec, dict) else None, not isinstance(rec, dict)

    out: dict[int, dict[str, Any]] = {}
    bad = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        for index, rec, broken in pool.map(one, sorted(set(indexes))):
            if rec is not None:
                out[index] = rec
            bad += broken
    return out, bad


def shard_indexes(wf: dict[str, Any]) -> list[int]:
    out = []
    for n in (wf.get("status") or {}).get("nodes", {}).values():
        attempt = n.get("type") == "Pod" and ATTEMPT.search(str(n.get("name") or ""))
        if n.get("type") in ("Pod", "Retry") and not attempt:  # a Retry's pods share its inputs
            index = item_index(parameters(n).get("shard"))
            if index is not None:
                out.append(index)
    return out


def local_store(wf: dict[str, Any]) -> str | None:
    """A local run's store on this machine: a shard's ``store`` input through its pod's mounts
    (None for a bucket: pass it as --store)."""
    runner = wf.get(RUNNER_FIELD)
    if not isinstance(runner, dict):
        return None
    pods = runner.get("pods") or {}
    for n in (wf.get("status") or {}).get("nodes", {}).values():
        store = parameters(n).get("store")
        if n.get("type") != "Pod" or not isinstance(store, str) or not parameters(n).get("shard"):
            continue
        from workers import storage

        if not storage.is_local(store):
            # a bucket may need credentials only the pods had, and may stall: ask for --store
            return None
        mounts = (pods.get(n.get("id")) or {}).get("mounts") or {}
        path = store.removeprefix("file://")
        best = max(
            (t for t in mounts if path == t or path.startswith(t.rstrip("/") + "/")),
            key=len,
            default=None,
        )
        host = Path(mounts[best]) / path[len(best) :].lstrip("/") if best else Path(path)
        return str(host) if host.is_dir() else None
    return None


# ---------------------------------------------------------------- page


_CSS = """
body{font:13px system-ui,sans-serif;margin:0;color:#1f2933;background:#fff}
header{padding:10px 16px 4px}
h1{font-size:18px;margin:0 0 6px} h1 small{font-weight:normal;color:#52606d;font-size:13px}
h2{font-size:14px;margin:8px 0 4px}
.failures{background:#fdecec;border-left:4px solid #d64545;padding:4px 10px;margin:6px 0}
.failures li{margin:2px 0} .failures .m{font-family:ui-monospace,monospace;color:#8a1c1c}
.failures pre{margin:2px 0 4px 16px;white-space:pre-wrap;font-size:11px}
table.stats{border-collapse:collapse;margin:4px 0} .stats td,.stats th{padding:2px 10px 2px 0;
text-align:left;font-variant-numeric:tabular-nums} .stats th{color:#52606d;font-weight:600}
p{margin:4px 0} .muted{color:#52606d}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
#chart{position:relative;padding:0 140px 24px 0}
.row.axis{position:sticky;top:0;z-index:3;background:#f5f7fa;border-bottom:1px solid #cbd2d9;height:22px}
.row{position:relative;height:20px;display:flex}
.row:hover{background:#f0f4f8}
.label{width:LABELpx;min-width:LABELpx;overflow:hidden;white-space:nowrap;
text-overflow:ellipsis;font:12px ui-monospace,monospace;padding:3px 8px 0 16px;box-sizing:border-box}
.track{position:relative;flex:1}
.tick{position:absolute;top:0;bottom:0;border-left:1px solid #e4e7eb;pointer-events:none}
.axis .tick span{position:absolute;top:4px;left:3px;font-size:11px;color:#52606d;white-space:nowrap}
.seg{position:absolute;top:4px;height:12px;min-width:1px}
.wait{background:repeating-linear-gradient(45deg,#d9e2ec 0 3px,#f0f4f8 3px 6px)}
.startup{background:#9fb3c8} .work{background:#3c9d5d} .commit{background:#1f6f43}
.exit{background:#7fc29b} .run{background:#5f9e78}
.Failed{background:#d64545} .Error{background:#b5179e} .Running{background:#f0b429}
.span{background:#7b8794;opacity:.35} .skip{background:#cbd2d9}
.dur{position:absolute;top:3px;font-size:11px;color:#323f4b;white-space:nowrap}
.msg{color:#b42318;font-weight:600} .before{background:rgba(255,255,255,.85);padding:0 3px}
.row.loop .label{font-weight:700}
.row.fail .label{color:#b42318;font-weight:700}
.hist{display:flex;padding:2px 0 6px}
.hist .label{height:auto;font:12px system-ui;white-space:normal}
.grid{position:absolute;top:0;bottom:0;left:LABELpx;right:140px;pointer-events:none}
""".replace("LABEL", str(LABEL_PX))

_LEGEND = (
    ("wait", "waiting for a slot / scheduling"),
    ("startup", "pod start-up"),
    ("work", "work"),
    ("commit", "commit"),
    ("exit", "record + exit"),
    ("run", "ran (not split)"),
    ("Failed", "failed"),
    ("Error", "error"),
    ("span", "step / loop span"),
)


_PHASE_CLASSES = frozenset({"Failed", "Error", "Running"})
"""Phases the style sheet colours; any other phase (a crafted one too) gets none."""


def _phase_class(phase: str) -> str:
    return phase if phase in _PHASE_CLASSES else ""


class _Page:
    def __init__(self, model: Model) -> None:
        self.m = model
        self.span = max(model.end - model.start, 1e-3)

    def pct(self, t: float) -> float:
        return round(max(min((t - self.m.start) / self.span, 1.0), 0.0) * 100, 3)

    def seg(self, kind: str, a: float, b: float, title: str) -> str:
        left, right = self.pct(a), self.pct(b)
        return (
            f'<div class="seg {html.escape(kind)}" style="left:{left}%;width:{max(right - left, 0.05):.3f}%" '
            f'title="{html.escape(title)}"></div>'
        )

    def row(self, label: str, title: str, body: str, cls: str = "", data: str = "") -> str:
        return (
            f'<div class="row {html.escape(cls)}"{data}><div class="label" title="{html.escape(title)}">'
            f'{html.escape(label)}</div><div class="track">{body}</div></div>'
        )

    def task_row(self, t: Task, indent: bool = False) -> str:
        body = []
        for s in t.segments:
            kind = s.kind
            if kind in ("work", "run", "commit", "exit") and s.phase != "Succeeded":
                kind = f"{kind} {_phase_class(s.phase)}"
            what = {"run": "ran", "wait": "waiting"}.get(s.kind, s.kind)
            body.append(
                self.seg(kind, s.start, s.end, f"{t.label}: {what} {fmt_s(s.end - s.start)}")
            )
        if not t.segments and t.start is not None:
            body.append(self.seg("skip", t.start, t.end or t.start, f"{t.label}: {t.phase}"))
        end = t.end if t.end is not None else t.start
        text = fmt_s(t.duration) if t.duration is not None and t.segments else html.escape(t.phase)
        if len(t.pods) > 1:
            text += f" ({len(t.pods)} attempts)"
        if t.failed and t.message:
            text += f' <span class="msg">{html.escape(t.message[:300])}</span>'
        elif t.phase in ("Skipped", "Omitted") and t.message:
            text = f"{html.escape(t.phase)}: {html.escape(t.message[:120])}"
        if end is not None:
            work = [x for x in t.segments if x.kind != "wait"] or t.segments
            start = work[0].start if work else end
            body.append(self.text(text, start, end))
        cls = "fail" if t.failed else ""
        label = ("  " if indent else "") + t.label
        return self.row(
            label,
            f"{t.name} {t.phase}",
            "".join(body),
            cls,
            f' data-node="{html.escape(t.id)}" data-label="{html.escape(t.label)}"',
        )

    def text(self, text: str, start: float, end: float) -> str:
        """A bar's label after its end, or before its start when the bar ends near the right
        edge (a message there would run off the screen)."""
        if self.pct(end) <= 70:
            return f'<span class="dur" style="left:calc({self.pct(end)}% + 4px)">{text}</span>'
        right = round(100 - self.pct(start), 3)
        return f'<span class="dur before" style="right:calc({right}% + 4px)">{text}</span>'

    def ticks(self, with_labels: bool) -> str:
        steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
        step = next(
            (s for s in steps if self.span / s <= 12), steps[-1] * math.ceil(self.span / 43200)
        )
        out = []
        k = 0
        while k * step <= self.span + 1e-9:
            left = round(k * step / self.span * 100, 3)
            label = f"<span>{fmt_s(k * step) if k else '0'}</span>" if with_labels else ""
            out.append(f'<div class="tick" style="left:{left}%">{label}</div>')
            k += 1
        return "".join(out)


def render(model: Model) -> str:
    """The self-contained page for ``model``."""
    page = _Page(model)
    m = model
    title = f"{m.name}: {m.phase} in {fmt_s(m.end - m.start)}"
    parts = [
        f'<header id="summary"><h1>{html.escape(title)} <small>({html.escape(m.where)})</small></h1>'
    ]
    failed = [t for t in m.tasks if t.failed]
    if failed or (m.phase in ("Failed", "Error") and m.message):
        items = "".join(_failure(t) for t in failed[:5])
        more = f"<li>... and {len(failed) - 5} more</li>" if len(failed) > 5 else ""
        head = f"{len(failed)} failed" if failed else "failed"
        why = f" &mdash; {html.escape(m.message)}" if m.message else ""
        parts.append(
            f'<section class="failures" id="failures"><h2>{head}{why}</h2><ul>{items}{more}</ul></section>'
        )
    parts.append(_stats(m))
    parts.append(_overhead(m))
    parts.append(_gaps(m))
    parts.extend(f'<p class="muted">{html.escape(n)}</p>' for n in m.notes)
    legend = "".join(f'<span class="{k}"></span>{html.escape(v)}' for k, v in _LEGEND)
    parts.append(f'<p class="legend muted">{legend}</p></header>')
    rows = [
        f'<div id="chart"><div class="grid">{page.ticks(False)}</div>'
        f'<div class="row axis" id="axis"><div class="label muted">time since start</div>'
        f'<div class="track">{page.ticks(True)}</div></div>'
    ]
    shown_loops: set[str] = set()
    for t in m.tasks:
        if t.loop is None:
            rows.append(page.task_row(t))
            continue
        if t.loop in shown_loops:
            continue
        shown_loops.add(t.loop)
        rows.extend(_loop_rows(page, m.loops[t.loop]))
    rows.append("</div>")
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(parts)}{''.join(rows)}</body></html>\n"
    )


def _readable(line: str) -> str | None:
    """A log line for the failure box: a step's JSON error event as its message, other JSON
    events left out, anything else (a traceback, a script's own output) as it is."""
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except ValueError:
            return line
        if isinstance(event, dict):
            if event.get("level") in ("error", "warning") and event.get("message"):
                return f"{event['level']}: {event['message']}"
            return None
    return line


def _failure(t: Task) -> str:
    lines = [x for x in (_readable(line) for line in t.log_tail) if x]
    tail = "\n".join(line[:400] for line in lines[-3:])
    return (
        f"<li><b>{html.escape(t.label)}</b> {html.escape(t.phase)}: "
        f'<span class="m">{html.escape(t.message or "(no message)")}</span>'
        + (f'<pre class="m">{html.escape(tail)}</pre>' if tail else "")
        + "</li>"
    )


def _durations(tasks: Iterable[Task]) -> list[tuple[float, Task]]:
    return sorted(
        ((t.duration, t) for t in tasks if t.duration is not None and t.segments),
        key=lambda x: -x[0],
    )


def _stats(m: Model) -> str:
    loops = sorted(m.loops.values(), key=lambda lp: -len(lp.tasks))[:3]
    if not loops:
        return ""
    rows = []
    for lp in loops:
        timed = _durations(lp.tasks)
        if not timed:
            continue
        values = sorted(d for d, _ in timed)
        p50, p95 = percentile(values, 50), percentile(values, 95)
        slow = ", ".join(
            f"<b>{html.escape(t.label)}</b> {fmt_s(d)}"
            + (f" ({len(t.pods)} attempts)" if len(t.pods) > 1 else "")
            for d, t in timed[:5]
        )
        skew = f"{values[-1] / p50:.2f}x" if p50 > 0 else "-"
        rows.append(
            f"<tr><td><b>{html.escape(lp.label)}</b></td><td>{len(lp.tasks)}</td>"
            f"<td>{fmt_s(p50)}</td><td>{fmt_s(p95)}</td><td>{fmt_s(values[-1])}</td>"
            f'<td>{skew}</td><td id="slowest-{html.escape(lp.label)}">{slow}</td></tr>'
        )
    if not rows:
        return ""
    return (
        '<table class="stats" id="stats"><tr><th>loop</th><th>items</th><th>p50</th><th>p95</th>'
        "<th>max</th><th>skew (max/p50)</th><th>slowest</th></tr>" + "".join(rows) + "</table>"
    )


def _overhead(m: Model) -> str:
    pods = [t for t in m.tasks if t.pod_time > 0]
    if not pods:
        return ""
    pod_time = sum(t.pod_time for t in pods)
    known = [t for t in pods if t.startup is not None]
    waiting = sum(t.waiting for t in pods)
    text = []
    if known:
        startup = sum(t.startup or 0.0 for t in known)
        share = startup / max(sum(t.pod_time for t in known), 1e-9)
        text.append(
            f"Pod start-up: <b>{fmt_s(startup)}</b> of {fmt_s(pod_time)} pod time "
            f"(<b>{share:.1%}</b>, {len(known)} of {len(pods)} pods split)"
        )
    else:
        text.append(
            f"Pod time {fmt_s(pod_time)} in {len(pods)} pods; start-up not split "
            "(no commit records: pass --store)"
        )
    if waiting > 0.0005:
        text.append(
            f"waiting for a parallelism slot or scheduling: <b>{fmt_s(waiting)}</b> in total"
        )
    return f'<p id="overhead">{"; ".join(text)}.</p>'


def _gaps(m: Model) -> str:
    stages: list[tuple[str, float, float]] = []
    for t in m.tasks:
        if t.loop is None and t.start is not None and t.end is not None and t.segments:
            stages.append((t.label, t.start, t.end))
    for lp in m.loops.values():
        starts = [t.start for t in lp.tasks if t.start is not None]
        if starts:
            stages.append((lp.label, min(starts), lp.end))
    stages.sort(key=lambda s: s[1])
    out = []
    for name, start, _ in stages:
        before = [s for s in stages if s[2] <= start and s[0] != name]
        if not before:
            continue
        prev = max(before, key=lambda s: s[2])
        out.append(
            f"{html.escape(prev[0])} &rarr; {html.escape(name)} <b>{fmt_s(start - prev[2])}</b>"
        )
    if not out:
        return ""
    return f'<p id="gaps">Gaps between steps: {" &middot; ".join(out)}</p>'


def _loop_rows(page: _Page, lp: Loop) -> list[str]:
    counts: dict[str, int] = {}
    for t in lp.tasks:
        counts[t.phase] = counts.get(t.phase, 0) + 1
    phases = ", ".join(
        f"{v} {html.escape(k)}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    span = page.seg("span", lp.start, lp.end, f"{lp.label}: {fmt_s(lp.end - lp.start)}")
    head = span + page.text(
        f"{fmt_s(lp.end - lp.start)} &middot; {len(lp.tasks)} items: {phases}", lp.start, lp.end
    )
    rows = [page.row(f"{lp.label} x{len(lp.tasks)}", lp.key, head, "loop")]
    if len(lp.tasks) <= COLLAPSE:
        rows.extend(page.task_row(t, indent=True) for t in lp.tasks)
        return rows
    timed = _durations(lp.tasks)
    rows.append(_histogram([d for d, _ in timed], len(lp.tasks)))
    failed = [t for t in lp.tasks if t.failed]
    # the slowest first (what the summary names), then the failed ones by index
    picked = [t for _, t in timed[:SLOWEST]]
    shown = {t.id for t in picked}
    picked += [t for t in failed if t.id not in shown][:MAX_FAILED_ROWS]
    rows.extend(page.task_row(t, indent=True) for t in picked)
    hidden = len(lp.tasks) - len(picked)
    extra = (
        f"; {len(failed) - MAX_FAILED_ROWS} more failed" if len(failed) > MAX_FAILED_ROWS else ""
    )
    rows.append(
        page.row(
            "",
            "",
            f'<span class="dur muted" style="left:0">the slowest {min(SLOWEST, len(timed))} '
            f"and the failed items are shown; {hidden} more in the histogram{extra}</span>",
        )
    )
    return rows


def _histogram(values: list[float], total: int, bins: int = 24) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    top = max(counts)
    bar_w, h = 22, 60
    bars = []
    for i, c in enumerate(counts):
        bh = round(c / top * h, 1) if top else 0
        x = i * bar_w
        a, b = lo + i * width, lo + (i + 1) * width
        bars.append(
            f'<rect x="{x}" y="{h - bh}" width="{bar_w - 2}" height="{bh}" fill="#3c9d5d">'
            f"<title>{c} items {fmt_s(a)} - {fmt_s(b)}</title></rect>"
        )
        if c:
            count = f"{c / 1000:.1f}k" if c >= 1000 else str(c)
            bars.append(
                f'<text x="{x + bar_w / 2 - 1}" y="{h - bh - 2}" font-size="8" '
                f'text-anchor="middle">{count}</text>'
            )
    axis = (
        f'<text x="0" y="{h + 12}" font-size="10">{fmt_s(lo)}</text>'
        f'<text x="{bins * bar_w - 2}" y="{h + 12}" font-size="10" text-anchor="end">{fmt_s(hi)}</text>'
    )
    svg = (
        f'<svg width="{bins * bar_w}" height="{h + 16}" viewBox="0 -10 {bins * bar_w} {h + 26}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{axis}</svg>'
    )
    return (
        f'<div class="hist"><div class="label muted">time per item, {len(values)} of {total} '
        f"timed</div><div>{svg}</div></div>"
    )


def render_workflow(wf: dict[str, Any], store: str | None = None) -> str:
    """Join ``wf`` with the commit records in ``store`` (default: a local run's own) and render."""
    notes = []
    records: dict[int, dict[str, Any]] = {}
    store = store or local_store(wf)
    indexes = shard_indexes(wf)
    if store and indexes:
        records, bad = read_records(store, indexes)
        notes.append(
            f"commit records: {len(records)} of {len(set(indexes))} shards read from {store}"
            + (f", {bad} unreadable" if bad else "")
        )
    elif indexes:
        notes.append("commit records not read (no --store): shard bars are not split into work")
    model = build(wf, records)
    model.notes = notes
    return render(model)


# ---------------------------------------------------------------- command


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
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
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
