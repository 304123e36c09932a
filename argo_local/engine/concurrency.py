"""Threads and parallelism of a run: one thread per running node, whose failure ends the run
instead of hanging it, and a template's ``parallelism`` as a semaphore."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from argo_local.expr import params


class Stoppable(Protocol):
    """A run a failing thread stops."""

    def stop(self, reason: str) -> None: ...
    def warn(self, text: str) -> None: ...


def start_thread(work: Callable[[], None], run: Stoppable, name: str) -> threading.Thread:
    def guarded() -> None:
        try:
            work()
        except Exception as exc:  # a runner bug must fail its node, not hang the run
            run.warn(f"{name}: internal error {type(exc).__name__}: {exc}")
            run.stop(f"internal error in {name}")

    t = threading.Thread(target=guarded, name=name, daemon=True)
    t.start()
    return t


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
