"""Mutexes and semaphores (docs/synchronization.md): ``synchronization.mutexes`` and
``synchronization.semaphores`` on the workflow (held for the whole run) or on a template
(held while one of its nodes runs, retries included).

Locally a lock is a set of slot files under the runs folder, ``.locks/``: a mutex has one
slot, a semaphore as many as its limit, and holding a slot is holding an exclusive
``flock`` on its file. So a lock is enforced between the nodes of one run and between runs
started side by side from the same runs folder, as a controller enforces it between
workflows of a namespace; the kernel frees the slots of a runner that dies.

A semaphore's limit comes, as in Argo, from the ConfigMap key it names: a ``kind: ConfigMap``
document in the file being run or in a YAML file of the manifests folder. When no ConfigMap
of that name exists locally the limit is 1 and the run log says so (the cluster's ConfigMap
is not available here); a ConfigMap without the key, or a value that is not an integer, is an
error, as in the controller (controller.go: "Sync configuration key ... not found").
``database`` locks (shared by several controllers through a database) are local locks here,
their limits unknown: 1, noted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argo_local.expr.params import ParamError
from argo_local.model.configmaps import ConfigMaps

POLL_S = 0.05
"""How often a waiting node tries the slots again (flock has no timed wait)."""


@dataclass(frozen=True)
class Lock:
    """One lock a workflow or template asks for."""

    kind: str  # "Mutex" or "Semaphore"
    name: str  # Argo's lock name, e.g. local/ConfigMap/my-config/template or local/Mutex/bar
    limit: int

    @property
    def file_stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)


class Locks:
    """The locks of one run: limits looked up once, slots taken under the runs folder."""

    def __init__(
        self,
        folder: Path,
        namespace: str,
        config_maps: ConfigMaps,
        warn: Callable[[str], None],
    ) -> None:
        self.folder = folder
        self.namespace = namespace
        self.config_maps = config_maps
        self.warn = warn

    def resolve(self, sync: Mapping[str, Any], where: str) -> list[Lock]:
        """The locks a ``synchronization`` block names, in a fixed order (no two nodes wait
        for each other's second lock)."""
        locks: list[Lock] = []
        for m in sync.get("mutexes") or []:
            ns = str(m.get("namespace") or self.namespace)
            if not m.get("name"):
                raise ParamError(f"{where}: synchronization.mutexes: a mutex needs a name")
            if m.get("database"):
                self.warn(f"{where}: database mutex {m['name']} is a lock among local runs")
            locks.append(Lock("Mutex", f"{ns}/Mutex/{m['name']}", 1))
        for s in sync.get("semaphores") or []:
            ns = str(s.get("namespace") or self.namespace)
            ref = s.get("configMapKeyRef")
            if ref:
                locks.append(self._semaphore(ns, ref, where))
            elif s.get("database"):
                key = (s["database"] or {}).get("key")
                self.warn(
                    f"{where}: database semaphore {key}: its limit is in the controllers' "
                    "database; limit 1 locally"
                )
                locks.append(Lock("Semaphore", f"{ns}/Database/{key}", 1))
            else:
                raise ParamError(
                    f"{where}: synchronization.semaphores: needs configMapKeyRef or database"
                )
        return sorted(set(locks), key=lambda lock: lock.name)

    def _semaphore(self, ns: str, ref: Mapping[str, Any], where: str) -> Lock:
        cm_name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
        name = f"{ns}/ConfigMap/{cm_name}/{key}"
        cm = self.config_maps.get(cm_name)
        if cm is None:
            self.warn(
                f"{where}: semaphore {name}: no ConfigMap {cm_name!r} in the file being run or "
                "the manifests folder; limit 1 locally (Argo reads it from the cluster's ConfigMap)"
            )
            return Lock("Semaphore", name, 1)
        if key not in cm.data:
            raise ParamError(
                f"{where}: Sync configuration key '{key}' not found in ConfigMap {cm_name} "
                f"({cm.source})"
            )
        text = cm.data[key].strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ParamError(
                f"{where}: semaphore {name}: ConfigMap value {cm.data[key]!r} is not an integer"
            )
        return Lock("Semaphore", name, int(text))

    @contextlib.contextmanager
    def hold(
        self,
        locks: list[Lock],
        stop: threading.Event,
        waiting: Callable[[Lock | None], None],
    ) -> Iterator[None]:
        """Hold every lock for the block; ``waiting(lock)`` is told which one it waits for
        (``None`` once all are held). ``stop`` set while waiting: raises StopWaiting."""
        held: list[int] = []
        try:
            for lock in locks:
                held.append(self._take(lock, stop, waiting))
            if locks:
                waiting(None)
            yield
        finally:
            for fd in held:
                os.close(fd)  # closing the descriptor releases its flock

    def _take(
        self, lock: Lock, stop: threading.Event, waiting: Callable[[Lock | None], None]
    ) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            # a limit of 0 admits nobody: the node waits, as Argo's waits for the ConfigMap
            for slot in range(lock.limit):
                fd = os.open(
                    self.folder / f"{lock.file_stem}.{slot}",
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return fd
            if not told:
                waiting(lock)
                told = True
            if stop.wait(POLL_S):
                raise StopWaiting()


class StopWaiting(Exception):
    """The run stopped while a node waited for a lock."""
