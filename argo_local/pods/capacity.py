"""How many pods this machine runs at once, and the wait for a slot.

A cluster runs a workflow's pods on as many nodes as it has; what does not fit waits Pending
until the scheduler finds room. One machine has one CPU, one memory and one process table,
so the runner starts no more pods at once than a cap drawn from them (or ``--max-pods``);
the others wait, Pending, as they would on a full cluster. Whatever a template's
``parallelism`` says, a 7,000-wide loop then never asks for 7,000 processes and threads
at once (it crashed the runner near 5,600 threads).

The cap is the smallest of: CPUs x :data:`PODS_PER_CPU`, available memory / :data:`POD_MEMORY`,
the room under ``RLIMIT_NPROC`` (which counts every thread and process of the user; root is
exempt) and under the cgroup's ``pids.max``, each divided by :data:`POD_TASKS`, and the open
files ``RLIMIT_NOFILE`` allows / :data:`POD_FILES`. A fork or a thread refused anyway (another
program took the room) is waited out: the pod stays Pending and starts once a pod of the run
ends (:func:`retry_exhausted`); only when none runs and the machine still refuses does the run
stop, with one line that says so.
"""

from __future__ import annotations

import errno
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

PODS_PER_CPU = 16
"""Pods per CPU: most pods of a fan-out wait (on a database, a bucket, ``sleep``); a CPU-bound
one shares its core, as pods share a node's."""
POD_MEMORY = 64 << 20
"""Memory one local pod may take: a Python step's interpreter and imports (about 30 MB), a
shell pod far less."""
POD_TASKS = 8
"""Processes and threads one pod costs: bubblewrap and the namespace's init, the container's
own processes, and the runner's threads that start, watch and read it."""
POD_FILES = 16
"""File descriptors one pod costs the runner: its logs, its stderr pipe, a terminal."""

EXHAUSTED_ERRNOS = (errno.EAGAIN, errno.ENOMEM)
"""What fork and clone return when the user's task limit, a cgroup's pids.max or the memory
is reached (fork(2))."""

GIVE_UP_S = 30.0
"""How long a start refused by the machine is retried while no pod of the run is running
(nothing of the run's own will free the room): then the run stops."""


class Exhausted(RuntimeError):
    """The machine refuses a process or thread and nothing of the run will free room."""


@dataclass(frozen=True)
class Cap:
    """The most pods at once and what set it (for the run's header and the Pending message)."""

    pods: int
    why: str


def _user_tasks(uid: int) -> int:
    """Processes and threads of ``uid`` (what RLIMIT_NPROC counts), from /proc."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        except OSError:
            continue
        try:
            if int(fields[b"Uid"].split()[0]) == uid:
                count += int(fields[b"Threads"].strip())
        except (KeyError, ValueError, IndexError):
            continue
    return count


def _pids_room() -> int | None:
    """Tasks the cgroup's ``pids.max`` still allows (cgroup v1 or v2), None without a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = "/sys/fs/cgroup" + path
        elif "pids" in controllers.split(","):
            base = "/sys/fs/cgroup/pids" + path
        else:
            continue
        try:
            with open(os.path.join(base, "pids.max")) as f:
                most = f.read().strip()
            with open(os.path.join(base, "pids.current")) as f:
                current = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if most != "max":
            return int(most) - current
    return None


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def task_room() -> int | None:
    """Processes and threads the machine lets this runner start now: the least of the room
    under RLIMIT_NPROC (root is exempt) and under the cgroup's pids.max; None: no limit.
    Zombies count until reaped (a bubblewrap namespace's init is reaped by the machine's own
    init, which some reap late), so this is read again before each pod starts."""
    rooms = []
    nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if nproc != resource.RLIM_INFINITY and os.geteuid() != 0:
        rooms.append(nproc - _user_tasks(os.getuid()))
    pids = _pids_room()
    if pids is not None:
        rooms.append(pids)
    return min(rooms) if rooms else None


def machine_cap() -> Cap:
    """The most pods this machine holds at once (see the module's docstring)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bounds = {f"{cpus or 1} CPUs": (cpus or 1) * PODS_PER_CPU}
    memory = _available_memory()
    if memory is not None:
        bounds[f"{memory >> 20} MiB available"] = memory // POD_MEMORY
    room = task_room()
    if room is not None:
        bounds[f"task limit, {max(room, 0)} tasks free"] = room // POD_TASKS
    nofile, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile != resource.RLIM_INFINITY:
        bounds[f"RLIMIT_NOFILE {nofile}"] = (nofile - 64) // POD_FILES
    why, pods = min(bounds.items(), key=lambda kv: kv[1])
    return Cap(max(pods, 1), why)


class PodSlots:
    """The run's pod slots: a pod's processes run while it holds one; the others wait."""

    def __init__(self, cap: Cap) -> None:
        self.cap = cap
        self._cond = threading.Condition()
        self.running = 0
        self.peak = 0
        # a task limit near what the run may use is read again before each start (other
        # programs and zombies take from it); a far one (a desktop's ulimit -u) is not, as
        # reading RLIMIT_NPROC's count walks /proc
        room = task_room()
        self._limited = room is not None and room < 4 * POD_TASKS * cap.pods

    def _full(self) -> bool:
        if self.running >= self.cap.pods:
            return True
        if not self._limited or self.running == 0:
            # with no pod of the run running, none would free room: it tries (and a start
            # the machine refuses is waited out, retry_exhausted)
            return False
        room = task_room()
        return room is not None and room < POD_TASKS

    def message(self) -> str:
        """A waiting pod's message (run.json shows it Pending with it, as a pod the
        scheduler has not placed yet)."""
        return (
            f"Pending: all {self.cap.pods} local pod slots are busy ({self.cap.why}; "
            "--max-pods sets it)"
        )

    @contextmanager
    def hold(self, cancelled: threading.Event, waiting: Callable[[bool], None]) -> Iterator[None]:
        """A slot for the body; ``waiting(True)`` when the pod must wait for one,
        ``waiting(False)`` once it has it. A cancelled run stops the wait (the caller's
        cancel check raises then)."""
        with self._cond:
            waited = self._full()
            if waited:
                waiting(True)
            while not cancelled.is_set() and self._full():
                # woken when a pod ends; the timeout sees room other programs freed
                self._cond.wait(0.2)
            self.running += 1
            self.peak = max(self.peak, self.running)
        if waited:
            waiting(False)
        try:
            yield
        finally:
            self.freed()

    def freed(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify_all()

    def wait_for_room(self, seconds: float) -> None:
        """Sleep until a pod ends or ``seconds`` pass (a start the machine refused waits so)."""
        with self._cond:
            self._cond.wait(seconds)


T = TypeVar("T")


def is_exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine refusing a process or a thread (not a bad command)."""
    if isinstance(exc, OSError):
        return exc.errno in EXHAUSTED_ERRNOS
    return isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)


def retry_exhausted(
    start: Callable[[], T],
    what: str,
    *,
    others_running: Callable[[], bool],
    wait: Callable[[float], None],
    cancelled: threading.Event | None = None,
) -> T:
    """``start()`` (a fork, a thread's start), retried while the machine refuses it: while
    ``others_running()`` (something of the run will end and free room) for as long as it
    takes, else for :data:`GIVE_UP_S`, then :class:`Exhausted` with one line."""
    delay = 0.02
    alone_since: float | None = None
    while True:
        try:
            return start()
        except (OSError, RuntimeError) as exc:
            if not is_exhausted(exc):
                raise
            reason = exc
        if cancelled is not None and cancelled.is_set():
            raise Exhausted(f"cannot start {what}: {reason}")
        if others_running():
            alone_since = None
        else:
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since > GIVE_UP_S:
                raise Exhausted(
                    f"cannot start {what}: {_strerror(reason)}, and no pod of this run is "
                    "running to free room: raise the limit (ulimit -u, the cgroup's pids.max) "
                    "or free memory"
                )
        wait(delay)
        delay = min(delay * 2, 0.5)


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    return str(exc)


def start_thread(
    thread: threading.Thread, what: str, *, others_running: Callable[[], bool]
) -> None:
    """Start ``thread``, waiting while the machine refuses a new one ("can't start new
    thread": the task limit) as :func:`retry_exhausted` waits."""
    retry_exhausted(thread.start, what, others_running=others_running, wait=time.sleep)
