"""What ``workers run`` prints while a workflow runs.

On a terminal: one status line, redrawn in place twice a second and on every node event
(running / pending / done / failed, rows per second, elapsed, ETA from the loop's finished
items), with steps, retries, failures and finished loops printed above it. Elsewhere (a pipe,
a CI log): one line per finished node, as a log. ``NO_COLOR`` (any value) or ``TERM=dumb``
turns colours off.

Every event costs O(1): counters are updated, never recomputed from the run's nodes, so a
10,000-item loop costs the same per item as a 10-item one.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from argo_local.report.errorlines import with_error_line
from workers.redaction import redact
from workers.timeline.model import fmt_s, short_name

if TYPE_CHECKING:
    from argo_local.engine.run import Node, Run

_MARK = {
    "Succeeded": "ok  ",
    "Failed": "FAIL",
    "Error": "ERR ",
    "Skipped": "skip",
    "Omitted": "omit",
}
_COLOR = {"Succeeded": "32", "Failed": "31", "Error": "35", "RETRY": "33"}
REDRAW_S = 0.5


def _fmt_rate(rows: float) -> str:
    return f"{rows:,.0f} rows/s"


@dataclass
class _Loop:
    label: str
    total: int
    started_at: float
    started: int = 0
    done: int = 0
    failed: int = 0
    rows: int = 0


class Progress:
    """The runner's ``progress(event, node)`` callback."""

    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, redraw_s: float = REDRAW_S
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.color = (
            self.tty and "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb"
        )
        self.lock = threading.Lock()  # never the run's lock: the run calls us while holding it
        self.t0 = time.time()
        self.run: Run | None = None
        self.loops: dict[str, _Loop] = {}  # loops still running, by group node id
        self.steps: dict[str, str] = {}  # running pods outside loops: id -> name
        self.running = 0
        self.spawning = 0  # attempts waiting for a workflow-level parallelism slot
        self.queued = 0  # loop items not started yet
        self.done = 0
        self.failed = 0
        self.rows_total = 0
        self.rows: dict[str, int] = {}
        self._live: set[str] = set()
        self._waiting: set[str] = set()
        self._shown = False
        self._drawn = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.redraw_s = redraw_s

    # ------------------------------------------------------------ the callback

    def __call__(self, event: str, node: Node | None) -> None:
        with self.lock:
            self._event(event, node)
            if self.tty:
                # at most 10 redraws a second from events: 10,000 shards finishing together
                # must not turn into 10,000 terminal writes; the ticker catches up
                if not self._shown or time.time() - self._drawn >= 0.1:
                    self._draw()
                if self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()

    def close(self) -> None:
        """Stop redrawing and clear the status line (the summary follows)."""
        self._stop.set()
        with self.lock:
            if self.tty and self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    def _tick(self) -> None:
        while not self._stop.wait(self.redraw_s):
            with self.lock:
                if not self._stop.is_set():
                    self._draw()

    # ------------------------------------------------------------ output

    def _paint(self, text: str, key: str) -> str:
        code = _COLOR.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def _redact(self, text: str) -> str:
        return redact(text, tuple(self.run.secret_values)) if self.run is not None else text

    def _write(self, text: str, key: str = "") -> None:
        line = f"[{time.time() - self.t0:7.2f}s] {self._redact(text)}"
        if self.tty:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self._shown = False
            if key:
                mark, _, rest = line.partition("] ")
                line = f"{mark}] {self._paint(rest[:4], key)}{rest[4:]}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def status_line(self) -> str:
        """The live line: what runs, how far the loops are, throughput and ETA."""
        now = time.time()
        elapsed = now - self.t0
        parts = []
        if self.steps:
            names = list(self.steps.values())
            parts.append(", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else ""))
        for lp in list(self.loops.values())[-2:]:
            text = f"{lp.label} {lp.done}/{lp.total}"
            if lp.done and lp.done < lp.total:
                eta = (now - lp.started_at) / lp.done * (lp.total - lp.done)
                text += f" ETA {fmt_s(eta)}"
            parts.append(text)
        # Pending, as Argo shows a pod not started yet: a loop's items not begun, pods
        # waiting for parallelism or for one of the machine's pod slots (capacity.py)
        counts = f"{self.running} running, {self.queued + self.spawning} pending, {self.done} done"
        if self.failed:
            counts += f", {self.failed} failed"
        parts.append(counts)
        if self.rows_total:
            parts.append(_fmt_rate(self.rows_total / max(elapsed, 1e-6)))
        return f"[{elapsed:7.2f}s] " + " | ".join(parts)

    def _draw(self) -> None:
        width = shutil.get_terminal_size((120, 24)).columns
        # cut to the terminal's width before colouring: a wrapped line cannot be redrawn in place
        line = self._redact(self.status_line())[: max(width - 1, 20)]
        failed = f"{self.failed} failed"
        if self.failed and failed in line:
            line = line.replace(failed, self._paint(failed, "Failed"))
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._shown = True
        self._drawn = time.time()

    # ------------------------------------------------------------ events

    def _event(self, event: str, node: Node | None) -> None:
        if node is None:
            self._write(event)
            return
        if event == "loop-start":
            label = short_name(node.display)
            self.loops[node.id] = _Loop(label, node.loop_total, time.time())
            self.queued += node.loop_total
            self._write(f"{'':4} {node.display}: {node.loop_total} items")
        elif event == "start":
            self._attempt_started(node)
        elif event == "running":
            if node.id in self._waiting:
                self._waiting.discard(node.id)
                self.spawning -= 1
            if node.id not in self._live:
                self._live.add(node.id)
                self.running += 1
        elif event == "event":
            self._rows(node)
        elif event == "retry":
            self._pod_gone(node)
            last = node.attempts[-1]
            self._write(
                f"{'RETRY':4} {node.display}: attempt {last.number + 1} {last.phase} "
                f"(exit {last.exit_code}): {with_error_line(last.message, last)}",
                "RETRY",
            )
        elif event == "backoff":
            self._write(f"{'':4} {node.display}: {node.message}")
        elif event == "daemoned":
            self._write(f"{'up':4} {node.display}: daemon ready, runs until its scope ends")
        elif event == "finished":
            self._finished(node)

    def _attempt_started(self, node: Node) -> None:
        loop = self.loops.get(node.parent or "")
        if loop is not None and len(node.attempts) == 1:
            loop.started += 1
            self.queued -= 1
        elif loop is None and node.parent is not None:
            self.steps[node.id] = short_name(node.display)
        if node.id not in self._waiting:
            self._waiting.add(node.id)
            self.spawning += 1

    def _pod_gone(self, node: Node) -> None:
        if node.id in self._live:
            self._live.discard(node.id)
            self.running -= 1
        if node.id in self._waiting:
            self._waiting.discard(node.id)
            self.spawning -= 1

    def _rows(self, node: Node) -> None:
        if not node.attempts or not node.attempts[-1].events:
            return
        rows = node.attempts[-1].events[-1].get("rows")
        if not isinstance(rows, int):
            return
        delta = rows - self.rows.get(node.id, 0)
        self.rows[node.id] = rows
        self.rows_total += delta
        loop = self.loops.get(node.parent or "")
        if loop is not None:
            loop.rows += delta

    def _finished(self, node: Node) -> None:
        if node.type == "StepGroup":
            return
        if node.type == "TaskGroup":
            loop = self.loops.pop(node.id, None)
            if loop is not None:
                self.queued -= loop.total - loop.started
            if node.phase != "Skipped":
                done = f"{loop.done}/{loop.total}" if loop else "0/0"
                rate = ""
                if loop and loop.rows and node.duration:
                    rate = (
                        f", {loop.rows:,} rows, {_fmt_rate(loop.rows / max(node.duration, 1e-6))}"
                    )
                self._write(
                    f"{_MARK.get(node.phase, node.phase):4} {node.display}: {node.phase} "
                    f"({done} done{rate})" + (f" {node.message}" if node.message else ""),
                    node.phase,
                )
            return
        bad = node.phase in ("Failed", "Error")
        if node.type == "Pod":
            self._pod_gone(node)
            self.steps.pop(node.id, None)
            self.done += node.phase == "Succeeded"
            self.failed += bad
        loop = self.loops.get(node.parent or "")
        if loop is not None:
            if node.reused:  # kept by --resume: it never started, so it never left the queue
                loop.started += 1
                self.queued -= 1
            loop.done += 1
            loop.failed += bad
        if self.tty and loop is not None and not bad:
            return  # the status line counts it; one line per shard is the log's job
        if node.type in ("Steps", "DAG") and not bad:
            return
        self._write(self._node_line(node, loop), node.phase)

    def _node_line(self, node: Node, loop: _Loop | None) -> str:
        extra = ""
        if node.type == "Pod" and node.attempts:
            for ev in reversed(node.attempts[-1].events):
                if ev.get("rows") is not None and ev.get("rows_per_s") is not None:
                    extra = f"  rows={ev['rows']:,} ({_fmt_rate(float(ev['rows_per_s']))})"
                    break
            if len(node.attempts) > 1:
                extra += f"  attempts={len(node.attempts)}"
        where = ""
        if loop is not None:
            where = f"  [{loop.done}/{loop.total}]"
            if loop.rows:
                where += f" {loop.rows:,} rows, {_fmt_rate(loop.rows / max(time.time() - loop.started_at, 1e-6))}"
        duration = f"{node.duration:.2f}s" if node.duration is not None else ""
        message = f"  {node.message}" if node.phase in ("Failed", "Error") and node.message else ""
        if message and node.type == "Pod" and node.attempts:
            # the last attempt's own reason (its log's error line), not only its exit code
            message = "  " + with_error_line(node.message, node.attempts[-1])
        return f"{_MARK.get(node.phase, node.phase):4} {node.display} {duration}{extra}{where}{message}"
