"""Where a run's files live under its store URL, and the plan and commit record formats.

    STORE/plan.json                  written by split: run id, expected total, every shard
    STORE/parts/part-00007.jsonl     shard 7's data (JSON Lines), committed atomically
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

PLAN_VERSION = 1

MAX_PLAN_BYTES = 16 << 20
"""Ceiling for plan.json: the shard list is capped at 200 KiB compact (shards.MAX_ITEMS_BYTES),
which indented is under 1 MiB; 16 MiB leaves room for provenance and never for a runaway file."""

MAX_RECORD_BYTES = 64 << 10
"""Ceiling for one commit record: a few hundred bytes of numbers, hashes and names."""


def plan_url(store: str) -> str:
    return storage.join(store, "plan.json")


def part_url(store: str, index: int) -> str:
    return storage.join(store, "parts", f"part-{index:05d}.jsonl")


def commit_url(store: str, index: int) -> str:
    return storage.join(store, "commits", f"part-{index:05d}.json")


@dataclass(frozen=True)
class Plan:
    run_id: str
    total: int | None
    shards: tuple[Shard, ...]
    meta: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": PLAN_VERSION,
                "run_id": self.run_id,
                "total": self.total,
                "shards": [s.to_dict() for s in self.shards],
                **self.meta,
            },
            option=orjson.OPT_INDENT_2,
        )


def write_plan(store: str, plan: Plan) -> str:
    url = plan_url(store)
    storage.write_bytes(url, plan.to_bytes() + b"\n")
    return url


def read_plan(url: str) -> Plan:
    try:
        raw = storage.read_small(url, MAX_PLAN_BYTES, "plan")
    except FileNotFoundError:
        raise IncompleteError(f"no plan at {url}: did split run with --store?") from None
    try:
        obj = orjson.loads(raw)
        shards = tuple(
            Shard(int(s["index"]), s.get("lo"), s.get("hi"), s.get("rows")) for s in obj["shards"]
        )
        meta = {k: v for k, v in obj.items() if k not in ("version", "run_id", "total", "shards")}
        plan = Plan(str(obj["run_id"]), obj.get("total"), shards, meta)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"plan {url} is not a valid plan: {exc}") from None
    if [s.index for s in plan.shards] != list(range(len(plan.shards))):
        raise UsageError(f"plan {url}: shard indexes are not 0..{len(plan.shards) - 1}")
    return plan
