"""Shard descriptors: how split cuts a run into key ranges and how a shard item is read back.

A shard is a closed key range ``[lo, hi]``; ``None`` leaves that end open, so the
first and last shards of a table read from the database catch every row. Ranges
are walked through the primary key index, never with OFFSET, so the last shard
costs what the first does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers.errors import UsageError

MAX_KEY = (1 << 63) - 1
MAX_ITEMS_BYTES = 200 * 1024
"""Ceiling for a list written for ``withParam`` (split's ``--output-file``): Argo parameters live
in a workflow object capped at ~1 MiB. The templates fan out by index instead (``withSequence``
over split's ``--shard-count-file``), which no plan can push over any limit."""

MAX_INDEX = 999_999
"""Highest shard index: part names have room for six digits."""

MAX_ITEM_BYTES = 4096
"""Ceiling for one shard item (inline or ``@file``): four integers need under 100 bytes."""

MAX_COUNT_FILE_BYTES = 64
"""Ceiling for a count file: 19 digits and some whitespace."""

DEFAULT_MAX_SHARDS = 1000
"""Argo controllers struggle with thousands of nodes; a fan-out above this is almost always a sizing bug."""


@dataclass(frozen=True)
class Shard:
    index: int
    lo: int | None
    hi: int | None
    rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "lo": self.lo, "hi": self.hi, "rows": self.rows}

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


def _int_field(obj: dict[str, Any], key: str, *, nullable: bool, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        if nullable:
            return None
        raise UsageError(f"shard item: {key!r} is required")
    if type(value) is not int:
        raise UsageError(
            f"shard item: {key!r} must be an integer{' or null' if nullable else ''}, got {value!r}"
        )
    if not minimum <= value <= MAX_KEY:
        raise UsageError(f"shard item: {key!r} = {value} is out of range")
    return value


def parse_index(text: str) -> int | None:
    """The shard index an item names when it is a bare integer (``withSequence``'s ``{{item}}``),
    None when it is something else (a JSON object: :func:`parse_item` reads it)."""
    s = text.strip()
    digits = s.removeprefix("-")
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    if s.startswith("-") or len(s) > 19 or int(s) > MAX_INDEX:
        raise UsageError(f"shard index {s[:40]} is out of range (0..{MAX_INDEX})")
    return int(s)


def parse_item(text: str) -> Shard:
    """Validate one item of split's output; any defect is a one-line UsageError."""
    if len(text) > MAX_ITEM_BYTES:
        raise UsageError(f"shard item is {len(text)} characters; expected one small JSON object")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"shard item is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"shard item must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"index", "lo", "hi", "rows"}
    if unknown:
        raise UsageError(f"shard item has unknown fields: {', '.join(sorted(map(str, unknown)))}")
    index = _int_field(obj, "index", nullable=False, minimum=0)
    assert index is not None
    lo = _int_field(obj, "lo", nullable=True, minimum=-MAX_KEY)
    hi = _int_field(obj, "hi", nullable=True, minimum=-MAX_KEY)
    rows = _int_field(obj, "rows", nullable=True, minimum=0)
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"shard item: lo {lo} is above hi {hi}")
    if index > MAX_INDEX:
        raise UsageError(f"shard item: index {index} is out of range")
    # split writes every key: a missing one is a hand-made or truncated item, and reading it
    # as null would silently open the range to the end of the table (or skip the row check).
    missing = [repr(k) for k in ("lo", "hi", "rows") if k not in obj]
    if missing:
        raise UsageError(
            f"shard item: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
            "(null for an open end or an unknown row count)"
        )
    return Shard(index, lo, hi, rows)


def parse_count(text: str, source: str = "count") -> int:
    """A bare non-negative integer (surrounding whitespace allowed), as produce writes it."""
    s = text.strip()
    if not s:
        raise UsageError(f"{source} is empty; expected a row count")
    if not s.isascii() or not s.isdigit():
        raise UsageError(f"{source} must be a non-negative integer, got {s[:40]!r}")
    if len(s) > 19 or int(s) > MAX_KEY:
        raise UsageError(f"{source} {s[:40]} is too large")
    return int(s)


def _guard(n_shards: int, count: int, rows_per_shard: int, max_shards: int) -> None:
    if n_shards > max_shards:
        need = math.ceil(count / max_shards)
        raise UsageError(
            f"{count} rows at --rows-per-shard {rows_per_shard} would make {n_shards} shards, "
            f"over --max-shards {max_shards}: raise --rows-per-shard to at least {need}"
        )


def by_count(count: int, rows_per_shard: int, max_shards: int = DEFAULT_MAX_SHARDS) -> list[Shard]:
    """Shards over the dense keys 1..count that produce writes."""
    if count < 0:
        raise UsageError(f"count must be >= 0, got {count}")
    n = math.ceil(count / rows_per_shard)
    _guard(n, count, rows_per_shard, max_shards)
    return [
        Shard(
            i,
            i * rows_per_shard + 1,
            min((i + 1) * rows_per_shard, count),
            min(rows_per_shard, count - i * rows_per_shard),
        )
        for i in range(n)
    ]


def by_dense_range(
    min_key: int, count: int, rows_per_shard: int, max_shards: int = DEFAULT_MAX_SHARDS
) -> list[Shard]:
    """Shards over an existing table whose keys are min_key..min_key+count-1, ends left open."""
    shards = by_count(count, rows_per_shard, max_shards)
    out = [
        Shard(s.index, (s.lo or 0) + min_key - 1, (s.hi or 0) + min_key - 1, s.rows) for s in shards
    ]
    return _open_ends(out)


def by_boundaries(boundaries: Sequence[int], count: int, rows_per_shard: int) -> list[Shard]:
    """Shards cut at the keys of rows rows_per_shard, 2*rows_per_shard, ... (sparse keys)."""
    cuts = list(boundaries)
    if cuts and len(cuts) * rows_per_shard >= count:
        cuts = cuts[:-1]  # the last cut is the maximum key: nothing would follow it
    shards, prev = [], None
    for i, cut in enumerate(cuts):
        shards.append(Shard(i, None if prev is None else prev + 1, cut, rows_per_shard))
        prev = cut
    if count:
        shards.append(
            Shard(
                len(cuts),
                None if prev is None else prev + 1,
                None,
                count - rows_per_shard * len(cuts),
            )
        )
    return _open_ends(shards)


def _open_ends(shards: list[Shard]) -> list[Shard]:
    if not shards:
        return shards
    first, last = shards[0], shards[-1]
    shards[0] = Shard(first.index, None, first.hi if len(shards) > 1 else None, first.rows)
    if len(shards) > 1:
        shards[-1] = Shard(last.index, last.lo, None, last.rows)
    return shards


def encode(shards: Sequence[Shard]) -> bytes:
    """The shard list as compact JSON (split's stdout)."""
    return orjson.dumps([s.to_dict() for s in shards])


def check_parameter_size(data: bytes) -> bytes:
    """A list meant for ``withParam``, guarded against Argo's parameter limits."""
    if len(data) > MAX_ITEMS_BYTES:
        raise UsageError(
            f"shard list is {len(data)} bytes, over the {MAX_ITEMS_BYTES} byte limit for a workflow "
            "parameter: fan out by index (withSequence over --shard-count-file, shard --shard N "
            "reads its bounds from the plan) or raise --rows-per-shard"
        )
    return data
