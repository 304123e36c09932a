"""Shard descriptors: how split cuts a run into key ranges and how a shard item is read back.

A shard of a count (``split --count``, the dense keys 1..N produce writes) is a closed integer
range ``[lo, hi]``. A shard of a table (``split --from-db``) names its key's type (``key``,
see :mod:`workers.keys`) and is half-open, ``lo <= key < hi``: the cuts are key values the
database chose, so no key of any type can fall between two shards. ``None`` leaves an end
open, so the first and last shards catch every row. Ranges are walked through the key's
index, never with OFFSET, so the last shard costs what the first does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from workers import keys
from workers.errors import UsageError

MAX_KEY = (1 << 63) - 1
MAX_ITEMS_BYTES = 200 * 1024
"""Ceiling for a list written for ``withParam`` (split's ``--output-file``): Argo parameters live
in a workflow object capped at ~1 MiB. The templates fan out by index instead (``withSequence``
over split's ``--shard-count-file``), which no plan can push over any limit."""

MAX_INDEX = 999_999
"""Highest shard index: part names have room for six digits."""

MAX_ITEM_BYTES = 64 * 1024
"""Ceiling for one shard item (inline or ``@file``): four integers need under 100 bytes, two
text keys at most what a btree index entry holds (PostgreSQL: ~2.7 KB), JSON-escaped."""

MAX_COUNT_FILE_BYTES = 64
"""Ceiling for a count file: 19 digits and some whitespace."""

DEFAULT_MAX_SHARDS = 1000
"""Argo controllers struggle with thousands of nodes; a fan-out above this is almost always a sizing bug."""


@dataclass(frozen=True)
class Shard:
    index: int
    lo: keys.KeyValue | None
    hi: keys.KeyValue | None
    rows: int | None
    key: str | None = None
    """The key's kind for a half-open range of a table (:mod:`workers.keys`); None for the
    closed integer range of a count."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "lo": self.lo, "hi": self.hi, "rows": self.rows}
        if self.key is not None:
            d["key"] = self.key
        return d

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def describe(self) -> str:
        """The range as a message shows it: ``[lo, hi]`` closed, ``[lo, hi)`` half-open."""
        lo = "-inf" if self.lo is None else keys.shown(self.lo, 60)
        hi = "+inf" if self.hi is None else keys.shown(self.hi, 60)
        return f"[{lo}, {hi}{']' if self.key is None else ')'}"


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
    unknown = set(obj) - {"index", "lo", "hi", "rows", "key"}
    if unknown:
        raise UsageError(f"shard item has unknown fields: {', '.join(sorted(map(str, unknown)))}")
    index = _int_field(obj, "index", nullable=False, minimum=0)
    assert index is not None
    kind = obj.get("key")
    if kind is not None and kind not in keys.KINDS:
        raise UsageError(
            f"shard item: 'key' must be one of {', '.join(sorted(keys.KINDS))}, got {kind!r}"
        )
    lo: keys.KeyValue | None
    hi: keys.KeyValue | None
    if kind is None:
        lo = _int_field(obj, "lo", nullable=True, minimum=-MAX_KEY)
        hi = _int_field(obj, "hi", nullable=True, minimum=-MAX_KEY)
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"shard item: lo {lo} is above hi {hi}")
    else:
        # Typed bounds are ordered by the database (collation), never compared here.
        lo, hi = keys.check_value(obj.get("lo"), "lo"), keys.check_value(obj.get("hi"), "hi")
    rows = _int_field(obj, "rows", nullable=True, minimum=0)
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
    return Shard(index, lo, hi, rows, kind)


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


@dataclass(frozen=True)
class Candidate:
    """A row the database picked while walking the key's index in order (see
    :func:`workers.db.cuts_sql`): its key and 1-based position, the position of the first row
    holding that key (``rank``) and of the last (``last``), and the key after a run of a
    repeated key (``following``, None at the end of the table)."""

    value: keys.KeyValue
    position: int
    rank: int
    last: int
    following: keys.KeyValue | None


@dataclass(frozen=True)
class Heavy:
    """A key value repeated more than a shard's worth: the one shard that holds all of it."""

    value: keys.KeyValue
    rows: int
    shard: int


def by_cuts(
    candidates: Sequence[Candidate], count: int, rows_per_shard: int, kind: str
) -> tuple[list[Shard], list[Heavy]]:
    """Half-open shards over a table's ``count`` rows, cut at the candidates' keys.

    A shard starts at the key of every ``rows_per_shard``-th row, moved back to the first row
    holding that key: a repeated key never spans two shards. A key repeated more than
    ``rows_per_shard`` times gets a shard of its own (the next one starts at the key after it),
    and is returned as :class:`Heavy`. Keys are told apart by their positions, never compared
    here: equality is the database's (the column's collation).
    """
    cuts: list[tuple[keys.KeyValue, int]] = []  # (key, position of its first row)
    runs: list[tuple[keys.KeyValue, int, int]] = []  # (key, first row, rows)
    for c in candidates:
        if c.position > 1 and (c.position - 1) % rows_per_shard == 0:
            cuts.append((c.value, c.rank))
        if c.position == c.last and c.last - c.rank + 1 > rows_per_shard:
            runs.append((c.value, c.rank, c.last - c.rank + 1))
            if c.following is not None:
                cuts.append((c.following, c.last + 1))
    starts: list[tuple[keys.KeyValue | None, int]] = [(None, 1)]
    for value, rank in cuts:
        if rank > starts[-1][1]:  # positions rise in key order; an equal one is the same key
            starts.append((value, rank))
    if count == 0:
        return [], []
    items = []
    for i, (lo, first) in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else (None, count + 1)
        items.append(Shard(i, lo, nxt[0], nxt[1] - first, kind))
    heavy = []
    for value, first, rows in runs:
        shard = max(i for i, (_, start) in enumerate(starts) if start <= first)
        heavy.append(Heavy(value, rows, shard))
    return items, heavy


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
