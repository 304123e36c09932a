"""A run's commit records (``STORE/commits/part-NNNNN.json``): which shards to read, where a
local run's store is on this machine, and reading them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers.runadapter import local_side
from workers.timeline.model import ATTEMPT, item_index, parameters


def read_records(store: str, indexes: Iterable[int]) -> tuple[dict[int, dict[str, Any]], int]:
    """Commit records by shard index (missing ones left out), and how many were unreadable."""
    from concurrent.futures import ThreadPoolExecutor

    from workers import layout, storage

    def one(index: int) -> tuple[int, dict[str, Any] | None, bool]:
        try:
            data = storage.read_small(
                layout.commit_url(store, index), layout.MAX_RECORD_BYTES, "commit record"
            )
            rec = json.loads(data)
        except FileNotFoundError:
            return index, None, False
        except Exception:  # a bad record must not stop the picture; it is counted instead
            return index, None, True
        return index, rec if isinstance(rec, dict) else None, not isinstance(rec, dict)

    out: dict[int, dict[str, Any]] = {}
    bad = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        for index, rec, broken in pool.map(one, sorted(set(indexes))):
            if rec is not None:
                out[index] = rec
            bad += broken
    return out, bad


def shard_indexes(wf: dict[str, Any]) -> list[int]:
    out = []
    for n in (wf.get("status") or {}).get("nodes", {}).values():
        attempt = n.get("type") == "Pod" and ATTEMPT.search(str(n.get("name") or ""))
        if n.get("type") in ("Pod", "Retry") and not attempt:  # a Retry's pods share its inputs
            index = item_index(parameters(n).get("shard"))
            if index is not None:
                out.append(index)
    return out


def local_store(wf: dict[str, Any]) -> str | None:
    """A local run's store on this machine: a shard's ``store`` input through its pod's mounts
    (None for a bucket: pass it as --store)."""
    runner = local_side(wf)
    if runner is None:
        return None
    pods = runner.get("pods") or {}
    for n in (wf.get("status") or {}).get("nodes", {}).values():
        store = parameters(n).get("store")
        if n.get("type") != "Pod" or not isinstance(store, str) or not parameters(n).get("shard"):
            continue
        from workers import storage
        from workers.errors import UsageError

        try:
            where = storage.resolve(store)
        except UsageError:
            return None  # no store a step could have used: nothing to find
        if not where.is_local:
            # a bucket may need credentials only the pods had, and may stall: ask for --store
            return None
        mounts = (pods.get(n.get("id")) or {}).get("mounts") or {}
        path = where.local_path
        best = max(
            (t for t in mounts if path == t or path.startswith(t.rstrip("/") + "/")),
            key=len,
            default=None,
        )
        host = Path(mounts[best]) / path[len(best) :].lstrip("/") if best else Path(path)
        return str(host) if host.is_dir() else None
    return None
