"""Threads and parallelism of a run: one thread per running node, whose failure ends the run
instead of hanging it, and a template's ``parallelism`` as a semaphore. How many pods run at
once on this machine is :mod:`argo_local.pods.capacity`'s."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from argo_local.expr import params
from argo_local.pods import capacity


class Stoppable(Protocol):
    """A run a failing thread stops."""

    # the run's live container processes: while one runs, its end will free a task
    processes: dict[int, subprocess.Popen[bytes]]

    def stop(self, reason: str) -> None: ...
    def warn(self, text: str) -> None: ...


def start_thread(work: Callable[[], None], run: Stoppable, name: str) -> threading.Thread:
    """``work`` on a thread of its own. The machine refusing a process or a thread for it
    is no runner bug: it is waited out (capacity.py), and when nothing can free room the
    run stops with that one line."""

    def guarded() -> None:
        try:
            work()
        except capacity.Exhausted as exc:
            run.stop(str(exc))
        except Exception as exc:  # a runner bug must fail its node, not hang the run
            run.warn(f"{name}: internal error {type(exc).__name__}: {exc}")
            run.stop(f"internal error in {name}")

    t = threading.Thread(target=guarded, name=name, daemon=True)
    try:
        # a thread refused waits only while a pod process of the run runs: the threads
        # alive may all wait on this one, and would never free the room
        capacity.start_thread(t, name, others_running=lambda: bool(run.processes))
    except capacity.Exhausted as exc:
        run.stop(str(exc))
        return _NeverStarted(name=name, daemon=True)  # its caller joins it: nothing to wait for
    return t


class _NeverStarted(threading.Thread):
    """A thread the machine would not start, whose work the stopped run skips."""

    def join(self, timeout: float | None = None) -> None:
        return None


class Limiter(threading.BoundedSemaphore):
    """A template's ``parallelism``: a semaphore that knows its size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def parallelism_limit(
    tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> Limiter | None:
    raw = tmpl.get("parallelism")
    if raw is None:
        return None
    return Limiter(int(params.substitute(str(raw), scope, f"{where}.parallelism")))
