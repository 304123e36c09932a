"""Processors and generators for the spot-notice tests, named as ``plugins.spot:<name>``.

Each behaves as user code that makes stopping hard: it sends the notice itself, swallows
every exception (BaseException included) and never returns, or replaces the SIGTERM handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

_calls = 0


def notice_on_first_batch(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """SIGTERM this very process during the first batch (as the kubelet would), then carry on;
    only with WORKERS_TEST_NOTICE=1, so the retry (the same processor) runs to the end."""
    global _calls
    _calls += 1
    if _calls == 1 and os.environ.get("WORKERS_TEST_NOTICE") == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    return batch


def never_stops(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """From the third batch on, sleep forever, swallowing everything (KeyboardInterrupt, our
    own BaseExceptions): only the grace's forced exit ends the process."""
    global _calls
    _calls += 1
    while _calls >= 3:
        with contextlib.suppress(BaseException):  # the point: user code swallowing everything
            time.sleep(0.05)
    time.sleep(float(os.environ.get("WORKERS_TEST_SLOW", "0.01")))
    return batch


def sleeps_swallowing(rows: int) -> Iterator[dict[str, Any]]:
    """A generator that swallows every exception while it sleeps between rows."""
    for i in range(rows):
        with contextlib.suppress(BaseException):  # user code swallowing everything
            time.sleep(0.02)
        yield {"n": i}


# A library that takes SIGTERM for itself when it is imported.
signal.signal(signal.SIGTERM, signal.SIG_IGN)


def paced(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows through unchanged, WORKERS_TEST_SLOW seconds per batch (a test can aim its notice)."""
    time.sleep(float(os.environ.get("WORKERS_TEST_SLOW", "0.01")))
    return batch
