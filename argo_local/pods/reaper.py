"""A pod's processes end with it, as a container's do when its main process exits.

Each container process starts in a session of its own (its pid is the session id) with a
marker in its environment naming the run and the process. When it exits, what it left
running is killed: every process of its session (``cmd &``, a job-control shell's own
process groups) and every process that carries its marker (one that called ``setsid`` to
leave the session). At the run's end every process that carries the run's marker is
killed. bubblewrap's PID namespace does the same for a sandboxed pod (``--unshare-pid``,
``--die-with-parent``); remap mode has only this. Found through ``/proc`` (Linux); elsewhere
the session's process group is killed.

What escapes: a process that leaves the session *and* clears its environment; a pod that
must leave something running is a daemon step, whose scope ends it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

MARKER = "WORKERS_RUN_PROCESS"
"""The environment variable holding ``<run uid>/<n>``, the n-th container process the run
started."""


def _stat(pid: str) -> tuple[int, int] | None:
    """(session id, start time in clock ticks) of a live process, None for a zombie or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[3]), int(fields[19])


def _carries(pid: str, value: bytes, *, prefix: bool) -> bool | None:
    """Whether the environment of ``pid`` holds ``value`` (or an entry starting with it); None
    when it cannot be read yet: a process in the middle of ``execve`` shows an empty one."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        # gone, or not ours to read (another user's): not one of the run's
        return False
    if not env:
        return None
    return any(e.startswith(value) if prefix else e == value for e in env.split(b"\0"))


def _own_start_ticks() -> int:
    found = _stat(str(os.getpid()))
    return found[1] if found is not None else 0


_PASSES = 8
_SETTLE_SECONDS = 0.02


def end(session: int | None, marked: str, since: int | None = None) -> int:
    """Kill (SIGKILL) every process of ``session`` and every one whose environment has
    ``MARKER=<marked>`` (``marked`` ending in ``/``: every process of that run); ``since``
    (clock ticks) skips processes started before it. Returns how many were killed.

    One look at ``/proc`` races what the pod left behind: a child forked as its parent exits,
    or one between ``setsid()`` and ``execve`` (``setsid sleep &``), whose environment reads
    empty for that moment. So the scan repeats, a moment apart, until one finds nothing to
    kill and nothing it could not read."""
    if not os.path.isdir("/proc/self"):
        if session is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(session, signal.SIGKILL)
        return 0
    floor = _own_start_ticks() if since is None else since
    exact = f"{MARKER}={marked}".encode()
    killed = 0
    for n in range(_PASSES):
        if n:
            time.sleep(_SETTLE_SECONDS)
        hits, unsure = _scan(session, exact, prefix=marked.endswith("/"), floor=floor)
        killed += hits
        if not hits and not unsure:
            break
    return killed


def _scan(session: int | None, exact: bytes, *, prefix: bool, floor: int) -> tuple[int, int]:
    """One pass of :func:`end`: (processes killed, live processes whose marker was unreadable)."""
    me = os.getpid()
    killed = unsure = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        found = _stat(entry)
        if found is None:
            continue
        sid, started = found
        if sid == 0:
            continue  # a kernel thread: no environment, never the run's
        if sid != session:
            # Only processes started since the runner can carry its marker: the cheap test
            # first, the environment read only for those.
            if started < floor:
                continue
            carries = _carries(entry, exact, prefix=prefix)
            if carries is None:
                unsure += _stat(entry) is not None
                continue
            if not carries:
                continue
        with suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry), signal.SIGKILL)
            killed += 1
    return killed, unsure


@contextmanager
def terminate_interrupts() -> Iterator[None]:
    """While the run executes, SIGTERM (``kill``, a CI job's cancel, ``timeout``) stops it as
    Ctrl-C does: its pods are killed and the report is written, instead of the runner dying
    and leaving every pod running. Outside the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux
    ``PR_SET_CHILD_SUBREAPER``): bubblewrap's parent process exits as soon as the namespace's
    init reports the exit code, before reaping it, and that zombie would otherwise wait for
    the machine's own init, which some reap late (each counts against the task limit until
    then). False where it cannot be set."""
    if not os.path.isdir("/proc/self"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _in_child_namespace(pid: int) -> bool:
    """Whether ``pid`` lives in a PID namespace below ours (``NSpid`` lists more than one
    id): never a process this runner started itself, so no ``Popen`` waits for it."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        return False
    return False


def reap_orphans() -> int:
    """Reap the adopted zombies (:func:`adopt_orphans`): those of a namespace below ours
    only, so a container process a thread still waits for is never taken from it. Returns
    how many were reaped."""
    reaped = 0
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or not _in_child_namespace(info.si_pid):
            # none waitable, or the first is one of ours, which its own thread waits for
            return reaped
        with suppress(ChildProcessError):
            os.waitpid(info.si_pid, os.WNOHANG)
            reaped += 1
