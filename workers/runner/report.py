"""What a run leaves behind: progress lines, the final summary, ``run.json`` and ``timeline.html``.

Secrets taken from the environment are replaced by ``***`` everywhere the runner
writes; the per-pod stdout/stderr files are the processes' own output and are
kept as-is under ``pods/``, like pod logs.
"""

from __future__ import annotations

import bisect
import html
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from workers.redaction import redact, redact_values
from workers.runner.engine import Node, Run
from workers.runner.sandbox import Mount, host_path

_MARK = {
    "Succeeded": "ok  ",
    "Failed": "FAIL",
    "Error": "ERR ",
    "Skipped": "skip",
    "Omitted": "omit",
}


def _fmt_rate(rows: float) -> str:
    return f"{rows:,.0f} rows/s"


class Progress:
    """Prints one line per finished node, with loop counts and rows/s from step logs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()  # never the run's lock: the run calls us while holding it
        self.t0 = time.time()
        self.loops: dict[str, list[int]] = {}
        self.loop_rows: dict[str, int] = {}  # a running sum: no walk over 10,000 siblings per event
        self.secrets: set[str] = set()
        self.run: Run | None = None

    def __call__(self, event: str, node: Node | None) -> None:
        with self.lock:
            self._event(event, node)

    def _write(self, text: str) -> None:
        if self.run is not None:
            text = redact(text, tuple(self.run.secret_values))
        self.stream.write(f"[{time.time() - self.t0:7.2f}s] {text}\n")
        self.stream.flush()

    def _event(self, event: str, node: Node | None) -> None:
        if node is None:
            self._write(event)
            return
        if event == "loop-start":
            self.loops[node.id] = [0, node.loop_total]
            self._write(f"{'':4} {node.display}: {node.loop_total} items")
            return
        if event == "retry":
            last = node.attempts[-1]
            self._write(
                f"{'RETRY':4} {node.display}: attempt {last.number + 1} {last.phase} "
                f"(exit {last.exit_code}): {last.message}"
            )
            return
        if event != "finished" or node.type in ("StepGroup",):
            return
        if node.type == "TaskGroup" and node.phase != "Skipped":
            counts = self.loops.get(node.id)
            self._write(
                f"{_MARK.get(node.phase, node.phase):4} {node.display}: {node.phase} "
                f"({counts[0] if counts else 0}/{counts[1] if counts else 0} done)"
                + (f" {node.message}" if node.message else "")
            )
            return
        extra = ""
        if node.type == "Pod" and node.attempts:
            a = node.attempts[-1]
            for ev in reversed(a.events):
                if ev.get("rows") is not None and ev.get("rows_per_s") is not None:
                    extra = f"  rows={ev['rows']:,} ({_fmt_rate(float(ev['rows_per_s']))})"
                    if node.parent is not None:
                        self.loop_rows[node.parent] = self.loop_rows.get(node.parent, 0) + int(
                            ev["rows"]
                        )
                    break
            if len(node.attempts) > 1:
                extra += f"  attempts={len(node.attempts)}"
        loop = ""
        if node.parent in self.loops:
            counts = self.loops[node.parent]
            counts[0] += 1
            loop = f"  [{counts[0]}/{counts[1]}]"
            if self.run is not None:
                parent = self.run.nodes.get(node.parent)
                if parent is not None and parent.started:
                    rows = self.loop_rows.get(parent.id, 0)
                    if rows:
                        loop += f" {rows:,} rows, {_fmt_rate(rows / max(time.time() - parent.started, 1e-6))}"
        duration = f"{node.duration:.2f}s" if node.duration is not None else ""
        message = f"  {node.message}" if node.phase in ("Failed", "Error") and node.message else ""
        self._write(
            f"{_MARK.get(node.phase, node.phase):4} {node.display} {duration}{extra}{loop}{message}"
        )


def node_record(node: Node, t0: float) -> dict[str, Any]:
    return {
        "id": node.id,
        "name": node.name,
        "displayName": node.display,
        "type": node.type,
        "templateName": node.template,
        "phase": node.phase,
        "message": node.message,
        "startedAt": node.started,
        "finishedAt": node.finished,
        "offset_s": round(node.started - t0, 4) if node.started else None,
        "duration_s": round(node.duration, 4) if node.duration is not None else None,
        "inputs": {"parameters": node.inputs},
        "outputs": node.outputs,
        "children": node.children,
        "parent": node.parent,
        "attempts": [
            {
                "number": a.number,
                "podName": a.pod_name,
                "phase": a.phase,
                "exitCode": a.exit_code,
                "message": a.message,
                "startedAt": a.started,
                "finishedAt": a.finished,
                "duration_s": round(a.finished - a.started, 4) if a.finished else None,
                "backoff_s": a.backoff_s,
                "stdout": a.stdout,
                "stderr": a.stderr,
                "mounts": dict(a.mounts),
            }
            for a in node.attempts
        ],
    }


def run_record(run: Run, root: Node, finished: float, files: list[str]) -> dict[str, Any]:
    t0 = run.created
    return {
        "workflow": run.name,
        "uid": run.uid,
        "kind": run.doc.kind,
        "source": run.doc.source,
        "files": files,
        "phase": root.phase,
        "message": root.message or run.cancel_reason,
        "startedAt": t0,
        "finishedAt": finished,
        "duration_s": round(finished - t0, 3),
        "parameters": run.parameters,
        "sandbox": {"mode": run.mode, "why": run.mode_reason},
        "runFolder": str(run.run_dir),
        "workFolder": str(run.work_dir),
        "volumes": {k: str(v) for k, v in run.volumes.items()},
        "ignoredLocally": run.notes.ignored,
        "notes": run.warnings,
        "nodes": [node_record(n, t0) for n in run.nodes.values()],
    }


def write_json(path: Path, record: dict[str, Any], secrets: set[str]) -> None:
    # Strings are redacted before JSON escapes them: "\\nsecret" would hide a secret's start.
    text = json.dumps(redact_values(record, secrets), indent=2, default=str)
    path.write_text(redact(text, secrets) + "\n")


_COLORS = {
    "Succeeded": "#3c9d5d",
    "Failed": "#d64545",
    "Error": "#b5179e",
    "Skipped": "#9aa5b1",
    "Omitted": "#cbd2d9",
    "Running": "#f0b429",
}


def timeline_html(run: Run, root: Node, finished: float) -> str:
    """A self-contained Gantt chart: one row per node, attempts as bars, gaps labelled."""
    t0 = run.created
    span = max(finished - t0, 1e-3)
    rows = [n for n in tree(run, root) if n.type not in ("StepGroup",) and n.started]
    # Finish times in order: the gap before a pod is one bisect, not a scan of every pod
    # (10,000 pods made that 10^8 comparisons).
    ends = sorted(n.finished for n in rows if n.type == "Pod" and n.finished)
    width = 900

    def x(t: float) -> float:
        return round((t - t0) / span * width, 2)

    out: list[str] = []
    for i, n in enumerate(rows):
        y = i * 22
        label = html.escape(n.display if len(n.display) < 48 else n.display[:45] + "...")
        depth = n.name.count(".") - 1
        out.append(f'<text x="{4 + 8 * max(depth, 0)}" y="{y + 15}" class="l">{label}</text>')
        segments = (
            [(a.started, a.finished or finished, a.phase, a.number) for a in n.attempts]
            if n.attempts
            else [(n.started or t0, n.finished or finished, n.phase, -1)]
        )
        for start, end, phase, number in segments:
            color = _COLORS.get(phase, "#7b8794")
            opacity = "1" if n.type == "Pod" else "0.35"
            title = html.escape(
                f"{n.name} {phase} {end - start:.3f}s"
                + (f" attempt {number}" if number >= 0 else "")
            )
            out.append(
                f'<rect x="{320 + x(start)}" y="{y + 3}" width="{max(x(end) - x(start), 1.5)}" '
                f'height="16" fill="{color}" opacity="{opacity}"><title>{title}</title></rect>'
            )
        if n.type == "Pod" and n.started:
            # A pod finishes after it starts, so every end at or before this start is another's.
            k = bisect.bisect_right(ends, n.started)
            if k:
                last = ends[k - 1]
                gap = n.started - last
                gx = 320 + x(last)
                out.append(
                    f'<line x1="{gx}" y1="{y + 11}" x2="{320 + x(n.started)}" y2="{y + 11}" '
                    f'class="g"><title>gap {gap * 1000:.0f} ms after the previous pod finished'
                    f"</title></line>"
                )
                if gap >= 0.05:
                    out.append(
                        f'<text x="{320 + x(n.started) + max(x(n.finished or finished) - x(n.started), 1.5) + 4}" '
                        f'y="{y + 15}" class="s">+{gap * 1000:.0f} ms</text>'
                    )
    height = len(rows) * 22 + 40
    ticks = []
    for k in range(11):
        tx = 320 + width * k / 10
        ticks.append(
            f'<line x1="{tx}" y1="0" x2="{tx}" y2="{height - 30}" class="t"/>'
            f'<text x="{tx}" y="{height - 14}" class="s" text-anchor="middle">{span * k / 10:.1f}s</text>'
        )
    legend = " ".join(
        f'<span style="background:{c}"></span>{html.escape(p)}' for p, c in _COLORS.items()
    )
    title = html.escape(f"{run.name}: {root.phase} in {span:.2f}s ({run.mode})")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font:13px system-ui,sans-serif;margin:16px;color:#1f2933}}
.l{{font:12px ui-monospace,monospace;fill:#1f2933}} .s{{font:11px system-ui;fill:#52606d}}
.t{{stroke:#e4e7eb}} .g{{stroke:#7b8794;stroke-dasharray:3 2}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
</style></head><body>
<h2>{title}</h2>
<p class="legend">{legend} &nbsp; dashed line: gap since the previous pod finished</p>
<svg width="{320 + width + 80}" height="{height}" xmlns="http://www.w3.org/2000/svg">
{"".join(ticks)}
{"".join(out)}
</svg></body></html>
"""


def merged_output(run: Run) -> tuple[Path | None, Path | None]:
    """Where merge wrote its document and summary, from its log, mapped to host paths."""
    for node in sorted(run.nodes.values(), key=lambda n: n.finished or 0, reverse=True):
        for a in reversed(node.attempts):
            if a.phase != "Succeeded":
                continue
            mounts = [Mount(Path(h), t) for t, h in a.mounts]
            for ev in reversed(a.events):
                if ev.get("event") == "merged" and ev.get("output") not in (None, "-"):
                    cwd = run.work_dir
                    out = _host(str(ev["output"]), mounts, cwd)
                    summary = _host(str(ev["summary"]), mounts, cwd) if ev.get("summary") else None
                    return out, summary
    return None, None


def _host(path: str, mounts: list[Mount], cwd: Path) -> Path:
    if "://" in path and not path.startswith("file://"):
        return Path(path)
    path = path.removeprefix("file://")
    if not path.startswith("/"):
        return cwd / path
    return host_path(path, mounts)


def summary_text(run: Run, root: Node) -> str:
    lines = [
        f"workflow {run.name}: {root.phase}"
        + (f" ({root.message})" if root.message and root.phase != "Succeeded" else "")
    ]
    lines.append(f"{'NODE':44} {'PHASE':10} {'ATT':>3} {'DURATION':>9}  OUTPUTS")
    for n in tree(run, root):
        if n.type in ("StepGroup",) or n is root:
            continue
        outs = dict(n.outputs.get("parameters") or {})
        if n.type == "Pod" and n.outputs.get("result"):
            outs["result"] = n.outputs["result"]
        text = ", ".join(f"{k}={v}" for k, v in outs.items())
        if len(text) > 70:
            text = text[:67] + "..."
        dur = f"{n.duration:.2f}s" if n.duration is not None else "-"
        name = n.name.removeprefix(run.name)
        name = name if len(name) <= 44 else name[:41] + "..."
        lines.append(f"{name:44} {n.phase:10} {len(n.attempts) or '':>3} {dur:>9}  {text}")
        if n.phase in ("Failed", "Error") and n.message and n.type == "Pod":
            lines.append(f"{'':44} {n.message}")
            if n.attempts and n.attempts[-1].stderr:
                tail = _tail(Path(n.attempts[-1].stderr))
                lines.extend(f"{'':46}| {t}" for t in tail)
    return redact("\n".join(lines), tuple(run.secret_values))


def tree(run: Run, root: Node) -> list[Node]:
    """Nodes depth-first from the root; loop items by index, others by start time."""
    out: list[Node] = []

    def walk(node: Node) -> None:
        out.append(node)
        kids = [run.nodes[c] for c in node.children if c in run.nodes]
        for kid in sorted(kids, key=lambda k: (k.index, k.started or 0, k.name)):
            walk(kid)

    walk(root)
    return out


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
