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


def generate_json(rows: int, seed: int = 0) -> Iterator[bytes]:
    """The rows of :func:`generate` as ``orjson.dumps`` makes them, without making the dicts.

    produce's built-in source: the same bytes (a test compares them row by row), at a
    fraction of the per-row work, which is what separates produce from ``psql \\copy``.
    Each of the 40 (city, kind) pairs has a line template; the score is one of 10,000
    hundredths, whose shortest float repr is what orjson writes too.
    """
    mult, mod = 2654435761, 1 << 32
    templates = [
        b'{"id":%d,"city":"'
        + city.encode()
        + b'","kind":"'
        + kind.encode()
        + b'","dwell_s":%d,"score":%b}'
        for kind in _KINDS
        for city in _CITIES
    ]
    scores = [repr(v / 100).encode() for v in range(10_000)]
    step = seed * 40503
    for i in range(1, rows + 1):
        h = (i * mult + step) % mod
        yield templates[h % 10 + 10 * ((h >> 4) % 4)] % (i, h % 3600, scores[h % 10_000])


def identity(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The default processor: rows pass through unchanged."""
    return batch
