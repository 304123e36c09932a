"""Template memoization (docs/memoization.md): a template's outputs cached under a key, so a
later node (in this run or a later one) with the same key takes them instead of running.

Argo keeps each cache in a ConfigMap named by ``memoize.cache.configMap.name``; locally each
cache is one file in the runs folder, ``.caches/<name>.json``, holding what that ConfigMap
would hold (its ``data`` maps a key to the entry the controller writes: ``nodeID``,
``outputs`` in the Workflow's shape, ``creationTimestamp``, ``lastHitTimestamp``;
controller/cache/configmap_cache.go). A run reads and writes it under a file lock, so runs
started side by side share it as workflows share a ConfigMap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argo_local.expr.params import ParamError, seconds

KEY = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
"""controller/cache/cache.go cacheKeyRegex: a key outside it is an error, not a miss."""

LABEL = {"workflows.argoproj.io/configmap-type": "Cache"}


class Caches:
    """The memoization caches of one runs folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            # a ConfigMap name is a DNS subdomain; it also keeps the file inside the folder
            raise ParamError(f"memoize.cache.configMap.name {name!r} is not a ConfigMap name")
        return self.folder / f"{name}.json"

    @contextlib.contextmanager
    def _open(self, name: str) -> Iterator[dict[str, Any]]:
        """The cache's ConfigMap, locked for the block and written back after it."""
        path = self.path(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".{name}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                cm = json.loads(path.read_text()) if path.exists() else {}
            except ValueError:
                raise ParamError(f"memoization cache {path} is not JSON") from None
            if not isinstance(cm, dict):
                raise ParamError(f"memoization cache {path} is not a ConfigMap")
            cm.setdefault("apiVersion", "v1")
            cm.setdefault("kind", "ConfigMap")
            cm.setdefault("metadata", {"name": name, "labels": dict(LABEL)})
            data = cm.setdefault("data", {})
            before = json.dumps(data, sort_keys=True)
            yield cm
            if json.dumps(data, sort_keys=True) != before:
                tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(cm, indent=1, sort_keys=True) + "\n")
                os.replace(tmp, path)

    def load(self, name: str, key: str, max_age: Any) -> dict[str, Any] | None:
        """The cached outputs (the runner's shape) for ``key``, or None on a miss: no entry,
        or one older than ``maxAge`` (entry.GetOutputsWithMaxAge)."""
        check_key(key)
        with self._open(name) as cm:
            raw = cm["data"].get(key)
            if not raw:
                return None
            try:
                entry = json.loads(raw)
            except ValueError:
                raise ParamError(
                    f"malformed cache entry {key!r} in {self.path(name)}: not JSON"
                ) from None
            if not entry.get("nodeID"):
                return None
            if max_age not in (None, ""):
                try:
                    limit = seconds(max_age)
                except ValueError:
                    raise ParamError(f"invalid maxAge: {max_age!r}") from None
                if time.time() - _parse_time(entry.get("creationTimestamp")) > limit:
                    return None
            entry["lastHitTimestamp"] = _stamp(time.time())
            cm["data"][key] = json.dumps(entry, separators=(",", ":"))
            return from_argo(entry.get("outputs") or {})

    def save(self, name: str, key: str, node_id: str, outputs: Mapping[str, Any]) -> None:
        check_key(key)
        now = _stamp(time.time())
        entry = {
            "nodeID": node_id,
            "outputs": to_argo(outputs),
            "creationTimestamp": now,
            "lastHitTimestamp": now,
        }
        with self._open(name) as cm:
            cm["metadata"].setdefault("labels", {}).update(LABEL)
            cm["data"][key] = json.dumps(entry, separators=(",", ":"))


def check_key(key: str) -> None:
    if not KEY.match(key):
        raise ParamError(f"invalid cache key: {key}")


def to_argo(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's outputs as the Workflow's ``Outputs`` JSON (parameters as a list)."""
    out: dict[str, Any] = {}
    if outputs.get("parameters"):
        out["parameters"] = [{"name": k, "value": v} for k, v in outputs["parameters"].items()]
    for field in ("result", "exitCode"):
        if outputs.get(field) is not None:
            out[field] = outputs[field]
    return out


def from_argo(outputs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = {
        str(p["name"]): str(p.get("value", ""))
        for p in outputs.get("parameters") or []
        if isinstance(p, dict) and "name" in p
    }
    if params:
        out["parameters"] = params
    for field in ("result", "exitCode"):
        if outputs.get(field) is not None:
            out[field] = str(outputs[field])
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> float:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0  # an unreadable timestamp is as old as can be: expired under any maxAge
