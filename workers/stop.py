"""The spot notice: SIGTERM stops a step within ``--grace-seconds`` and exits 75.

A spot or preemptible node's notice (GKE: 30 s, of which pods get 15) reaches the step as
SIGTERM; the kubelet kills it for good when the pod's ``terminationGracePeriodSeconds`` ends.
So a step must be gone before that, with nothing half-visible, and a retry should lose as
little work as it can:

- By default the handler raises :class:`Terminated` where the main thread is (as the step
  deadline raises :class:`~workers.deadline.Deadline`): produce and merge unwind, their
  atomic writers discard the temp files and the transaction rolls back; exit 75.
- A shard reading rows runs :func:`at_boundaries`: the handler only records the notice, and
  the part writer, at the end of the batch in progress, checkpoints what it holds and then
  raises :class:`Terminated` (see :meth:`workers.checkpoints.PartWriter.end_batch`), so the
  retry resumes there instead of at the last periodic checkpoint.

:class:`Terminated` derives from BaseException, so ``except Exception`` in user code cannot
catch it; code that catches BaseException, or never returns, cannot keep the step alive
either: the handler also starts a timer that, ``grace`` seconds after the notice, logs and
ends the process with exit 75 (``os._exit``: the temp files left are hidden ones a retry
sweeps or resumes; nothing visible is half-written, since every visible write is atomic).
The notice is remembered, so :func:`check` (called with the deadline's after every return
from user code and before every commit) raises it again when user code swallowed it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from workers import exitcodes

DEFAULT_GRACE_S = 10.0
"""Seconds from SIGTERM to the exit: GKE gives a spot node's pods 15 s, the templates' pods
``terminationGracePeriodSeconds: 15`` (grace plus a margin for the container runtime)."""


class Terminated(BaseException):
    """The pod was asked to stop (SIGTERM): stop, keep what is safe, exit 75."""


_noticed: float | None = None
_defer = 0
_grace = DEFAULT_GRACE_S
_on_exit: Callable[[str], None] | None = None
_timer: threading.Timer | None = None
_installed = False
_before: Any = None


def _handler(signum: int, frame: Any) -> None:
    global _noticed, _timer
    if _noticed is None:
        _noticed = time.monotonic()
        _timer = threading.Timer(_grace, _give_up)
        _timer.daemon = True
        _timer.start()
    if not _defer:
        raise Terminated()


def _give_up() -> None:
    """The grace ran out before the step unwound: exit 75 now (the kubelet's SIGKILL is near)."""
    if _on_exit is not None:
        with contextlib.suppress(BaseException):
            _on_exit(f"SIGTERM: still running {_grace:g}s after the notice, exiting")
    os._exit(exitcodes.TRANSIENT)


def install(grace: float = DEFAULT_GRACE_S, on_exit: Callable[[str], None] | None = None) -> None:
    """Handle SIGTERM from now on (main thread only); ``on_exit`` logs a forced exit."""
    global _grace, _on_exit, _installed, _before
    _grace = grace
    _on_exit = on_exit
    _before = signal.signal(signal.SIGTERM, _handler)
    _installed = True


def reset() -> None:
    """Put back the handler :func:`install` replaced, forget a notice and stop its timer (a
    step that ran in-process, as tests do, leaves the process as it found it)."""
    global _noticed, _timer, _defer, _installed
    if _timer is not None:
        _timer.cancel()
    _noticed, _timer, _defer = None, None, 0
    if _installed:
        signal.signal(signal.SIGTERM, _before if _before is not None else signal.SIG_DFL)
        _installed = False


def noticed() -> bool:
    """Whether SIGTERM arrived. Also puts the handler back if user code replaced it (a library
    that installs its own, or ``SIG_IGN``): the next notice must reach us."""
    with contextlib.suppress(ValueError):  # not the main thread: nothing to reassert
        if _installed and signal.getsignal(signal.SIGTERM) is not _handler:
            signal.signal(signal.SIGTERM, _handler)
    return _noticed is not None


def seconds_left() -> float | None:
    """Seconds of the grace left since the notice (None: no notice)."""
    if _noticed is None:
        return None
    return _grace - (time.monotonic() - _noticed)


def check() -> None:
    """Raise :class:`Terminated` if the notice came and nothing defers it (user code may
    have swallowed it)."""
    if _noticed is not None and not _defer:
        raise Terminated()


@contextlib.contextmanager
def at_boundaries() -> Iterator[None]:
    """While inside, SIGTERM only records the notice: the code inside stops at its next safe
    point (:func:`noticed`) and raises :class:`Terminated` itself."""
    global _defer
    _defer += 1
    try:
        yield
    finally:
        _defer -= 1
    check()  # a notice the block did not reach a safe point for
