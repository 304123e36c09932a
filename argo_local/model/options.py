"""A run's options: what the command line (and the embedding program) set for every pod."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from argo_local.embedding import Embedding


@dataclass
class Options:
    sandbox: str = "auto"
    verbose: bool = False
    env_file: Path | None = None
    code: Path | None = None  # the user's project, importable in every pod; default: cwd
    manifests: Path | None = None  # the WorkflowTemplate folder, and its ConfigMaps
    # An image's ENTRYPOINT by image name (with or without its tag): a container without
    # ``command`` runs it with ``args`` after it, as a container runtime would (--entrypoint).
    entrypoints: dict[str, list[str]] = field(default_factory=dict)
    # Folders of an image's own programs, first on its pods' PATH (--image-path): a local pod
    # runs this machine's programs, so where the image's differ (busybox's sh in alpine),
    # the user names where to find its own.
    image_paths: dict[str, list[str]] = field(default_factory=dict)
    # An image's WORKDIR by image name (--workdir): the working folder of its containers
    # without ``workingDir``, as the container runtime gives it; images are not pulled.
    workdirs: dict[str, str] = field(default_factory=dict)
    # What the program running the runner adds: its package in every pod, its defaults.
    embedding: Embedding = field(default_factory=Embedding)
    # The most pods that run at once (--max-pods); None: what the machine holds (capacity.py).
    max_pods: int | None = None

    def image_workdirs(self) -> dict[str, str]:
        """Every WORKDIR the runner is told of: the embedding's own images', then
        ``--workdir``'s, which wins for the same name."""
        return {**self.embedding.image_workdirs, **self.workdirs}
