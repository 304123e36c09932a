"""What ``workers run`` prints while it runs: a live status line on a terminal, a log elsewhere.

The terminal cases run the real command under a pseudo-terminal (python's pty module), so the
runner sees a TTY exactly as in an interactive shell.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from argo_local.engine.run import Attempt, Node
from argo_local.report.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "argo_examples" / "progress.yaml"
HANG_GUARD_S = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI")}
    env.update({"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", **extra})
    return env


def run_on_tty(args: list[str], cwd: Path, **env: str) -> tuple[int, str]:
    """Run ``python -m workers run ARGS`` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "run", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_env(**env),
        cwd=cwd,
    )
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + HANG_GUARD_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return code, out.decode(errors="replace")


def status_lines(out: str) -> list[str]:
    """Each redraw of the status line (the text after a carriage return and erase-line)."""
    return [chunk.split("\r")[0].split("\n")[0] for chunk in out.split("\r\x1b[K")[1:]]


def test_tty_shows_a_live_status_line_and_a_collapsed_summary(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, out = run_on_tty([str(EXAMPLE), "--runs", str(runs)], tmp_path)
    assert code == 1, out  # item 5 fails, as written
    lines = [line for line in status_lines(out) if line.strip()]
    assert len(lines) >= 10, out
    # while the loop runs: two at a time (parallelism 2), the rest pending, progress and ETA
    assert any(re.search(r"each \d/8 ETA [\d.]+ s \| 2 running, [1-6] pending", s) for s in lines)
    assert any("each 0/8 | 0 running, 8 pending" in s for s in lines), lines[:12]
    assert any("rows/s" in s for s in lines)
    # the log above the line: steps and failures, not one line per successful loop item
    assert re.search(r"ok  \x1b\[0m prepare", out)
    assert "\x1b[31mFAIL\x1b[0m each(5:5)" in out
    assert not re.search(r"ok  \x1b\[0m each\(\d:\d\)", out)
    # the end summary: the loop is one line plus percentiles and its slowest items
    assert "each (8 items)" in out and "7 Succeeded, 1 Failed" in out
    assert re.search(r"p50 [\d.]+s  p95 [\d.]+s  max [\d.]+s  skew [\d.]+x", out)
    assert "slowest: [1].each(" in out
    assert "item 5 refused its input" in out  # the failed item's stderr tail
    assert f"resume:        python -m workers run {EXAMPLE} --runs {runs} --resume {runs}/" in out
    assert out.count("[1].each(") < 10  # no table row per item


def test_no_color_keeps_the_status_line_without_colours(tmp_path: Path) -> None:
    code, out = run_on_tty(
        [str(EXAMPLE), "--runs", str(tmp_path / "runs"), "-p", "sleep=0.2"], tmp_path, NO_COLOR="1"
    )
    assert code == 1
    assert "\r\x1b[K" in out
    assert not re.search(r"\x1b\[\d+m", out), "a colour code despite NO_COLOR"
    assert "FAIL each(5:5)" in out


def test_off_a_tty_one_line_per_node(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "run", str(EXAMPLE), "--runs", str(tmp_path / "runs")],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    assert proc.returncode == 1
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    finished = re.findall(r"^\[ *[\d.]+s\] (ok  |FAIL) each\((\d):\d\)", proc.stderr, re.M)
    assert sorted(int(i) for _, i in finished) == list(range(8))
    assert ("FAIL", "5") in finished
    # The printed command resumes the run, as printed: only the failed item runs again.
    rerun = next(line for line in proc.stdout.splitlines() if line.startswith("resume:"))
    argv = shlex.split(rerun.removeprefix("resume:"))
    assert argv[:4] == ["python", "-m", "workers", "run"] and "--resume" in argv
    again = subprocess.run(
        [sys.executable, *argv[1:]],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    assert again.returncode == 1, again.stderr  # item 5 still refuses its input
    assert "7 pod steps that succeeded are kept" not in again.stderr  # prepare is one more
    assert "8 pod steps that succeeded are kept" in again.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the same run folder


def _node(i: int, parent: str) -> Node:
    node = Node(f"n{i}", f"wf.shard({i}:{i})", f"shard({i}:{i})", "Pod", "shard", parent)
    node.attempts.append(Attempt(0, f"pod-{i}", time.time()))
    return node


@pytest.mark.parametrize("tty", [True, False])
def test_counters_of_a_10000_item_loop(tty: bool) -> None:
    """Every event updates counters in place: after 10,000 items the line is right and the
    terminal got far fewer writes than events (redraws are throttled)."""
    out = io.StringIO()
    progress = Progress(out, tty=tty, redraw_s=3600)
    group = Node("g", "wf.shard", "shard", "TaskGroup", "shard", "wf")
    group.loop_total = 10_000
    progress("loop-start", group)
    nodes = [_node(i, "g") for i in range(10_000)]
    for i, node in enumerate(nodes):
        progress("start", node)
        progress("running", node)
        node.attempts[-1].events.append({"rows": 10})
        progress("event", node)
        if i >= 100:  # keep 100 running
            done = nodes[i - 100]
            done.phase, done.started, done.finished = "Succeeded", 1.0, 2.0
            progress("finished", done)
    assert "| 100 running, 0 pending, 9900 done" in progress.status_line()
    assert "shard 9900/10000 ETA" in progress.status_line()
    assert progress.rows_total == 100_000
    for node in nodes[-100:]:
        node.phase, node.started, node.finished = "Failed", 1.0, 2.0
        progress("finished", node)
    group.phase, group.started, group.finished = "Failed", 0.0, 3.0
    progress("finished", group)
    progress.close()
    line = re.sub(r"\x1b\[\d*m", "", progress.status_line())
    assert "] 0 running, 0 pending, 9900 done, 100 failed | " in line
    assert progress.loops == {} and progress.running == 0 and progress.queued == 0
    text = re.sub(r"\x1b\[\d*m", "", out.getvalue())
    if tty:
        assert text.count("\r\x1b[K") < 2_000  # 40,000 events
        assert "ok   shard(" not in text
    else:
        assert text.count("ok   shard(") == 9_900
    assert "FAIL shard: Failed (10000/10000 done, 100,000 rows" in text
