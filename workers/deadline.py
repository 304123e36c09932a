"""The step deadline (``WORKERS_TIMEOUT``): raised where the step is, never swallowed.

:class:`Deadline` derives from BaseException, so a user's ``except Exception: skip the
row`` cannot catch it (nor can any ``except Exception`` of ours or of a library). A
processor or generator that catches BaseException could still swallow it, so the alarm
also sets a flag that :func:`check` reads after every return from user code and before a
commit: a step that ran out of time never commits, it exits 75 (transient) in
:func:`workers.cli.run_step`.
"""

from __future__ import annotations

import signal
from typing import Any

from workers import stop


class Deadline(BaseException):
    """The step deadline passed."""


_expired = False


def _alarm(signum: int, frame: Any) -> None:
    global _expired
    _expired = True
    raise Deadline()


def arm(timeout: float) -> None:
    """Raise :class:`Deadline` in the main thread ``timeout`` seconds from now."""
    global _expired
    _expired = False
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)


def disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def expired() -> bool:
    """Whether the deadline passed (even when whatever it interrupted swallowed it)."""
    return _expired


def check() -> None:
    """Raise :class:`Deadline` again if it passed: user code may have caught it; likewise
    the spot notice (:func:`workers.stop.check`)."""
    if _expired:
        raise Deadline()
    stop.check()
