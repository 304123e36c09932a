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

import html
import json
import math
from collections.abc import Iterable
from typing import Any

from workers.timeline.model import (
    Loop,
    Model,
    Task,
    build,
    fmt_s,
    percentile,
)
from workers.timeline.records import local_store, read_records, shard_indexes

COLLAPSE = 40
"""Loops with more items than this show a histogram, the slowest items and the failed ones."""
SLOWEST = 10
MAX_FAILED_ROWS = 10
LABEL_PX = 300


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
