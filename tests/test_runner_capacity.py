"""A run starts no more pods than the machine holds; the others wait Pending, as on a cluster.

On a cluster a workflow's pods are created whatever their number, and those the scheduler
cannot place wait in phase Pending until a node has room (Kubernetes, "Pod Lifecycle": Pending
"includes time a Pod spends waiting to be scheduled"); Argo shows such a node Pending (its
workflow/controller/operator.go assessNodeStatus maps the pod's phase). A template's
``parallelism`` bounds what Argo creates, not what a node can hold. So locally a
``withSequence`` of thousands of items runs at most ``--max-pods`` (default: the machine's cap
from its CPUs, memory and task and file limits) pods at once, and a machine that refuses a
fork or a thread (``EAGAIN``: ``RLIMIT_NPROC``, a cgroup's ``pids.max``) keeps pods Pending
instead of failing them, or stops the run with one line when nothing of it can free room.
However the runner ends (the workflow's end, Ctrl-C, SIGTERM), no pod process outlives it.

Every run test is a real ``python -m workers run`` in a child process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import MODES, newest_record, write_yaml
from test_runner_progress import run_on_tty, status_lines

from argo_local.pods import capacity, reaper

WIDE = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: wide-}}
spec:
  entrypoint: main
  volumes: [{{name: shared, persistentVolumeClaim: {{claimName: shared}}}}]
  templates:
  - name: main
    steps:
    - - name: each
        template: one
        withSequence: {{count: "{count}"}}
  - name: one
    container:
      image: busybox
      command: [sh, -c, 'echo start $(date +%s%N) >> /data/log; {work}; echo end $(date +%s%N) >> /data/log']
      volumeMounts: [{{name: shared, mountPath: /data}}]
"""


def wide(count: int, work: str = "true") -> str:
    return WIDE.format(count=count, work=work)


def runner(tmp_path: Path, body: str, *args: str, prefix: list[str] | None = None) -> list[str]:
    path = write_yaml(tmp_path, body)
    return [
        *(prefix or []),
        sys.executable,
        "-m",
        "workers",
        "run",
        str(path),
        "--runs",
        str(tmp_path / "runs"),
        *args,
    ]


def most_at_once(runs: Path) -> int:
    """The most pods whose command ran at once, from the start and end lines they appended to
    the run's shared volume (each a subset of the time its pod held a slot)."""
    (log,) = runs.glob("*/volumes/shared/log")
    events = sorted(
        (int(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def marked(uid: str) -> list[int]:
    """Live processes carrying the run's marker (every pod process has it: reaper.py)."""
    value = f"{reaper.MARKER}={uid}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in (b"Z", b"X") and any(e.startswith(value) for e in env):
            found.append(int(entry))
    return found


def with_text(token: str) -> list[int]:
    """Live processes whose command line holds ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def pod_phases(record: dict[str, Any]) -> list[str]:
    return [n["phase"] for n in record["status"]["nodes"].values() if n["type"] == "Pod"]


def test_a_loop_wider_than_max_pods_runs_that_many_at_once(tmp_path: Path) -> None:
    """30 items, no parallelism, ``--max-pods 3``: never more than three pods at once, all
    thirty Succeed, and the live line counts the others pending."""
    proc = subprocess.run(
        runner(tmp_path, wide(30, "sleep 0.2"), "--max-pods", "3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pods: at most 3 at once (--max-pods)" in proc.stderr
    assert 2 <= most_at_once(tmp_path / "runs") <= 3
    record = newest_record(tmp_path / "runs")
    assert pod_phases(record) == ["Succeeded"] * 30
    assert not marked(record["metadata"]["uid"])


def test_the_live_line_shows_pods_waiting_for_a_slot_as_pending(tmp_path: Path) -> None:
    """On a terminal the status line counts the pods that wait for a slot as pending (Argo's
    phase for a pod not started yet), beside the two that run."""
    path = write_yaml(tmp_path, wide(8, "sleep 0.5"))
    code, out = run_on_tty(
        [str(path), "--runs", str(tmp_path / "runs"), "--max-pods", "2"], tmp_path
    )
    assert code == 0, out
    lines = status_lines(out)
    assert any(re.search(r"2 running, [1-6] pending", s) for s in lines), lines


@pytest.mark.slow
def test_a_2000_wide_sequence_stays_under_the_machines_cap(tmp_path: Path) -> None:
    """A 2,000-wide ``withSequence`` of short pods with no ``parallelism``: all Succeed, never
    more at once than the cap the run's header states (the machine's, no option given), and
    no process of the run is left once it ended."""
    proc = subprocess.run(
        runner(tmp_path, wide(2000)),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"pods: at most (\d+) at once", proc.stderr)
    assert found is not None, proc.stderr
    cap = int(found.group(1))
    peak = most_at_once(tmp_path / "runs")
    assert 1 <= peak <= cap, (peak, cap)
    record = newest_record(tmp_path / "runs")
    phases = pod_phases(record)
    assert len(phases) == 2000 and set(phases) == {"Succeeded"}
    assert not marked(record["metadata"]["uid"])
    assert "internal error" not in proc.stdout + proc.stderr


@contextmanager
def task_limit(tasks: int) -> Iterator[list[str]]:
    """A command prefix that runs the runner under a limit of ``tasks`` processes and threads.

    Not root: ``prlimit --nproc`` (RLIMIT_NPROC counts every task of the user, so the tasks
    it has already are added). Root ignores RLIMIT_NPROC, so there: a cgroup of its own with
    ``pids.max`` (v1's pids hierarchy or v2's unified one), the runner moved into it by the
    shell that execs it. Neither possible fails the test: the case must be tested."""
    if os.geteuid() != 0:
        prlimit = shutil.which("prlimit")
        assert prlimit, "prlimit (util-linux) is needed to test a task limit"
        used = capacity._user_tasks(os.getuid())
        yield [prlimit, f"--nproc={used + tasks}"]
        return
    base = None
    for candidate in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(candidate, "cgroup.procs")) and (
            candidate.endswith("pids")
            or "pids" in Path(candidate, "cgroup.subtree_control").read_text()
        ):
            base = candidate
            break
    assert base is not None, "running as root: a pids cgroup is needed to test a task limit"
    group = Path(base) / f"workers-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "pids.max").write_text(f"{tasks}\n")
        yield ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:  # its last tasks are still exiting
                time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_wide_loop_under_a_task_limit_waits_pending_then_succeeds(
    tmp_path: Path, mode: str
) -> None:
    """Under a limit of 20 tasks (RLIMIT_NPROC or a cgroup's pids.max) a 40-wide loop has its
    pods wait, Pending, for room: every one Succeeds, none is an "internal error" (before,
    the loop's threads could not start and the run failed its pods so)."""
    with task_limit(20) as prefix:
        proc = subprocess.run(
            runner(tmp_path, wide(40), "--sandbox", mode, prefix=prefix),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "internal error" not in output and "Traceback" not in output
    assert re.search(r"pods: at most \d+ at once \(task limit", proc.stderr), proc.stderr
    record = newest_record(tmp_path / "runs")
    assert pod_phases(record) == ["Succeeded"] * 40


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "tasks"),
    [("remap", 2), pytest.param("bwrap", 4, marks=pytest.mark.bwrap)],
)
def test_a_limit_no_pod_fits_under_fails_the_run_with_one_line(
    tmp_path: Path, mode: str, tasks: int
) -> None:
    """A limit under which not even one pod can start (the runner's main thread and a loop's
    thread take two tasks; remapped, the pod's fork is refused; under bubblewrap, the fork of
    its namespace's command) is no internal error: after waiting for room that nothing of
    the run can free, the run fails, its message one line naming the refused start and what
    to raise, and nothing is left running."""
    with task_limit(tasks) as prefix:
        proc = subprocess.run(
            runner(tmp_path, wide(5), "--sandbox", mode, prefix=prefix),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "internal error" not in output and "Traceback" not in output
    headline = proc.stdout.splitlines()[0]
    assert "cannot start" in headline and "raise the limit" in headline, headline
    record = newest_record(tmp_path / "runs")
    assert record["status"]["phase"] == "Failed"
    assert not marked(record["metadata"]["uid"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_runner_mid_run_leaves_no_pod_process(
    tmp_path: Path, mode: str, signum: int
) -> None:
    """Ctrl-C or SIGTERM while a wide loop's pods run: the runner ends every pod's process
    group (Argo's ``argo stop`` ends the pods; a local run must not leave them running), its
    report is written, and no process of the run is left."""
    token = f"podfs{uuid.uuid4().hex[:10]}"
    body = wide(40, f"sleep 60 # {token}")
    proc = subprocess.Popen(
        runner(tmp_path, body, "--sandbox", mode, "--max-pods", "4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(with_text(token)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert with_text(token), "no pod started"
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err
    record = newest_record(tmp_path / "runs")
    assert record["status"]["phase"] == "Failed"
    time.sleep(0.5)  # a SIGKILLed process leaves /proc a moment after the signal
    assert not with_text(token), "pod processes outlived the runner"
    assert not marked(record["metadata"]["uid"])


def test_max_pods_must_be_a_positive_whole_number(tmp_path: Path) -> None:
    for bad in ("0", "-1", "many"):
        proc = subprocess.run(
            runner(tmp_path, wide(1), "--max-pods", bad),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert "--max-pods" in proc.stderr and "Traceback" not in proc.stderr


def test_the_machine_cap_names_what_bounds_it() -> None:
    """The default cap is at least one pod, and says which of the machine's resources set it
    (CPUs, memory, a task limit or the open files)."""
    cap = capacity.machine_cap()
    assert cap.pods >= 1
    assert re.search(r"CPUs|MiB available|task limit|RLIMIT_NOFILE", cap.why), cap.why
