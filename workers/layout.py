"""Where a run's files live under its store URL, and the plan and commit record formats.

    STORE/plan.json                  written by split: run id, expected total, every shard,
                                     the generation and the processor identity it pins
    STORE/parts/part-00007.jsonl     shard 7's data (JSON Lines), committed atomically
                                     (or part-00007.parquet: the plan pins one part format)
    STORE/commits/part-00007.json    shard 7's commit record, written after its data
    STORE/merged.json                merge's output (default), then STORE/summary.json,
                                     which names its sha256: the output counts only with it

The fan-in reads the plan and the commit records by name; it never lists a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from workers import storage
from workers.errors import IncompleteError, UsageError
from workers.shards import Shard

PLAN_VERSION = 2
"""2 added ``generation`` and ``processor``; a plan without them cannot vouch for provenance."""

MAX_PLAN_BYTES = 16 << 20
"""Ceiling for plan.json: about 90 bytes a shard indented, so 10,000 shards take ~1 MiB and the
ceiling ~170,000 (far past any --max-shards an Argo controller survives); split refuses to
write a larger plan, so every shard and merge can read the one it wrote."""

MAX_RECORD_BYTES = 64 << 10
"""Ceiling for one commit record: a few hundred bytes of numbers, hashes and names."""


def plan_url(store: storage.Store | str) -> str:
    return storage.join(store, "plan.json")


def part_url(store: storage.Store | str, index: int, fmt: str = "jsonl") -> str:
    """Shard ``index``'s part: ``.jsonl``, or ``.parquet`` with ``--part-format parquet``."""
    return storage.join(store, "parts", f"part-{index:05d}.{fmt}")


def part_location(store: storage.Store, index: int, fmt: str = "jsonl") -> storage.Store:
    """:func:`part_url` as a location in ``store`` (for what asks its backend)."""
    return store.join("parts", f"part-{index:05d}.{fmt}")


def part_format(plan: Plan | None) -> str:
    """The part format a plan pins (plans from before ``--part-format``: JSON Lines)."""
    value = plan.meta.get("part_format") if plan is not None else None
    return value if isinstance(value, str) else "jsonl"


def commit_url(store: storage.Store | str, index: int) -> str:
    return storage.join(store, "commits", f"part-{index:05d}.json")


def failure_url(store: storage.Store | str, index: int) -> str:
    """Shard ``index``'s last failure (cause, exit code, message): what a partial merge names."""
    return storage.join(store, "failures", f"part-{index:05d}.json")


_FIELDS = ("version", "run_id", "total", "generation", "processor", "shards")


@dataclass(frozen=True)
class Plan:
    """What split promised: every shard, the total, and the provenance every part must share.

    ``generation`` is produce's generation of the run (None when split found none, e.g.
    ``--count`` without a recorded produce, or a table without a run column); ``processor``
    is the identity every shard must run (see :mod:`workers.provenance`).
    """

    run_id: str
    total: int | None
    shards: tuple[Shard, ...]
    meta: dict[str, Any]
    generation: dict[str, Any] | None = None
    processor: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": PLAN_VERSION,
                "run_id": self.run_id,
                "total": self.total,
                "generation": self.generation,
                "processor": self.processor,
                **self.meta,
                "shards": [s.to_dict() for s in self.shards],
            },
            option=orjson.OPT_INDENT_2,
        )

    def shard(self, index: int) -> Shard | None:
        return self.shards[index] if 0 <= index < len(self.shards) else None


def write_plan(store: storage.Store | str, plan: Plan) -> str:
    url = plan_url(store)
    data = plan.to_bytes() + b"\n"
    if len(data) > MAX_PLAN_BYTES:
        raise UsageError(
            f"the plan of {len(plan.shards)} shards is {len(data)} bytes, over the "
            f"{MAX_PLAN_BYTES} byte limit for plan.json: raise --rows-per-shard"
        )
    storage.write_bytes(url, data)
    return url


def read_plan(url: str) -> Plan:
    try:
        raw = storage.read_small(url, MAX_PLAN_BYTES, "plan")
    except FileNotFoundError:
        raise IncompleteError(f"no plan at {url}: did split run with --store?") from None
    return parse_plan(raw, url)


def read_plan_if_any(store: storage.Store | str) -> Plan | None:
    """The run's plan, or None where split wrote none (a shard run on its own)."""
    url = plan_url(store)
    try:
        raw = storage.read_small(url, MAX_PLAN_BYTES, "plan")
    except FileNotFoundError:
        return None
    return parse_plan(raw, url)


def parse_plan(raw: bytes, url: str) -> Plan:
    try:
        obj = orjson.loads(raw)
        if not isinstance(obj, dict):
            raise TypeError("not a JSON object")
        version = obj.get("version")
        if version != PLAN_VERSION:
            raise UsageError(
                f"plan {url} has version {version!r}, this workers reads {PLAN_VERSION}: "
                "re-run split (and the shards) with this version"
            )
        shards = tuple(
            Shard(int(s["index"]), s.get("lo"), s.get("hi"), s.get("rows"), s.get("key"))
            for s in obj["shards"]
        )
        meta = {k: v for k, v in obj.items() if k not in _FIELDS}
        plan = Plan(
            str(obj["run_id"]),
            obj.get("total"),
            shards,
            meta,
            obj.get("generation"),
            obj.get("processor"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"plan {url} is not a valid plan: {exc}") from None
    if [s.index for s in plan.shards] != list(range(len(plan.shards))):
        raise UsageError(f"plan {url}: shard indexes are not 0..{len(plan.shards) - 1}")
    return plan
