"""A host folder as a node sees it: the value the pod layer mounts and the checks before a
run reason about (which output paths a template's mounts cover)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mount:
    """A host folder seen at ``target`` inside the node."""

    host: Path
    target: str
    readonly: bool = False
