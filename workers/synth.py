"""Built-in generator and processor: deterministic synthetic rows and the identity.

Rows depend only on (key, seed), so any re-run reproduces them byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

_CITIES = ("Lisbon", "Oslo", "Taipei", "Lima", "Accra", "Perth", "Quito", "Kyiv", "Dakar", "Hanoi")
_KINDS = ("visit", "dwell", "journey", "pass")


def generate(rows: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``rows`` synthetic records with ids 1..rows; the same seed gives the same rows."""
    mult, mod = 2654435761, 1 << 32
    for i in range(1, rows + 1):
        h = (i * mult + seed * 40503) % mod
        yield {
            "id": i,
            "city": _CITIES[h % 10],
            "kind": _KINDS[(h >> 4) % 4],
            "dwell_s": h % 3600,
            "score": (h % 10_000) / 100,
        }


def identity(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The default processor: rows pass through unchanged."""
    return batch
