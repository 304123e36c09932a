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


def copy_text_blocks(rows: int, seed: int, prefix: str) -> Iterator[tuple[str, int]]:
    """:func:`generate`'s rows as COPY text for :class:`workers.db.CopyBlocks`, 1,000 a block.

    Each JSON is byte for byte ``orjson.dumps`` of the dict :func:`generate` yields
    (the same serializer formats every string and float), and the key is the id.
    One f-string per row costs about half of building a dict, serializing it, and
    formatting the COPY line, which is most of produce's client CPU.
    """
    import orjson

    cities = [orjson.dumps(c).decode() for c in _CITIES]
    kinds = [orjson.dumps(k).decode() for k in _KINDS]
    scores = [orjson.dumps(v / 100).decode() for v in range(10_000)]
    mult, mod, salt = 2654435761, 1 << 32, seed * 40503
    for start in range(1, rows + 1, 1000):
        stop = min(start + 1000, rows + 1)
        hs = [(i, (i * mult + salt) % mod) for i in range(start, stop)]
        yield (
            "".join(
                [
                    f'{prefix}{i}\t{{"id":{i},"city":{cities[h % 10]},"kind":{kinds[(h >> 4) % 4]},'
                    f'"dwell_s":{h % 3600},"score":{scores[h % 10_000]}}}\n'
                    for i, h in hs
                ]
            ),
            stop - start,
        )


def identity(batch: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The default processor: rows pass through unchanged."""
    return batch
