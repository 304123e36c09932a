"""A processor for the partial fan-in tests, named as ``plugins.fanin:<name>``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def fails_on_n(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows unchanged; the batch holding the row whose ``n`` is WORKERS_TEST_FAIL_N fails (only
    while that variable is set, so a retry without it is the same processor, succeeding)."""
    bad = os.environ.get("WORKERS_TEST_FAIL_N")
    if bad is not None and any(row.get("n") == int(bad) for row in batch):
        raise ValueError(f"row n={bad} is malformed (on purpose)")
    return batch
