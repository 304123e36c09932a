"""The seam between the runner and the program that embeds it.

The runner knows Argo. What a product adds to it (its command's name, help and version, its
runs folder, its package importable in every pod, a value for an environment variable whose
secret is not found locally, lines its steps' logs add to the summary, its timeline page, the
name of the run record's side field) comes in one :class:`Embedding`, built by the product's
adapter (``workers/runadapter.py`` for ``workers run``) and handed to :func:`argo_local.cli.main`.
The defaults are the runner's own, with no product behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LogEvent:
    """One JSON log line of a pod attempt that succeeded, and how to find a path it names."""

    fields: Mapping[str, Any]
    host_path: Callable[[str], Path | str]
    """A local path as the pod saw it (its mounts, its working folder) -> the same file on this
    host. Only local paths: a URL (a bucket's, ``file://``) is the embedding's to recognise, as
    the runner knows no store."""
    read_text: Callable[[Path], str]
    """A host file a step named, read only inside the run folder and through no link (OSError
    otherwise): a step's log is the workflow's to write, not a way to read the host."""


@dataclass(frozen=True)
class Secretless:
    """A pod's environment variable whose ``secretKeyRef`` is not found locally."""

    name: str
    secret: str  # "NAME/KEY"
    looked: str  # where the runner looked, for the note
    work_dir: Path  # the run's own folder for what its pods share by name (not their cwd)


def _no_default(_: Secretless) -> tuple[str, str] | None:
    return None


def _no_lines(_: Iterable[LogEvent]) -> list[str]:
    return []


@dataclass(frozen=True)
class Embedding:
    """What the program running the runner adds to it (see the module's docstring)."""

    prog: str = "argo-local"
    """The command as users type it: usage lines, errors and the resume command use it."""
    epilog: str = ""
    version: str = "argo-local"
    runs_folder: Path = Path("argo-runs")
    record_field: str = "argoLocal"
    """The run record's (``run.json``) side field for what only a local run knows."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    default_manifests: Callable[[], Path] = lambda: Path("manifests")
    """The template library when ``--manifests`` is not given."""
    pod_import_paths: tuple[Path, ...] = ()
    """First on every pod's ``PYTHONPATH``, bound read-only into its mount namespace."""
    secretless_env: Callable[[Secretless], tuple[str, str] | None] = _no_default
    """A value for a pod's variable whose secret is not found, and the note that says so."""
    summary_lines: Callable[[Iterable[LogEvent]], list[str]] = _no_lines
    """Lines the summary adds from the log events of the pods that succeeded (newest first)."""
    timeline: Callable[[dict[str, Any]], str] | None = None
    """``timeline.html`` from the run record; None writes none."""
    image_workdirs: Mapping[str, str] = field(default_factory=dict)
    """The WORKDIR of the product's own images (by name, with or without the tag), as
    ``--workdir`` gives it for others: images are not pulled, so the runner cannot read it."""
