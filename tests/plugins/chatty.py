"""A generator and a processor that log through Python's ``logging`` and ``warnings``, the way
user code does; the steps must turn each record into one of their JSON log lines."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)


def generator(rows: int) -> Iterator[dict[str, Any]]:
    log.warning("generating %d rows", rows)
    # A URL's password in a user's message must come out masked.
    log.error("connecting to %s", os.environ.get("CHATTY_URL", ""))
    warnings.warn("an old option", UserWarning, stacklevel=1)
    try:
        raise ValueError("caught and logged")
    except ValueError:
        log.exception("recovered")
    # A driver's record (urllib3 under botocore): dropped unless WORKERS_DEBUG is set.
    logging.getLogger("urllib3.connectionpool").warning("driver noise")
    for i in range(rows):
        yield {"i": i}


def processor(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    logging.getLogger("chatty.processor").warning("batch of %d", len(batch))
    return batch
