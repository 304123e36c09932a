"""The runs folder: one folder per local run, locked while it runs; old finished ones pruned.

A run of a million rows leaves about 300 MB (the SQLite database, the parts, the merged
output), so runs are not kept forever: before a run starts, the finished runs beyond the
newest ``keep`` (the new one counts) are removed. A run is finished when its ``run.json``
exists and no runner holds its lock; a folder without either is left alone and only
counted, whatever made it (a runner killed before it wrote run.json, or a folder that is
not a run at all).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK = ".running"
RECORD = "run.json"


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` removed and what else the runs folder holds (besides this run)."""

    removed: int
    freed: int
    kept: int
    kept_bytes: int
    running: int
    unfinished: int
    unfinished_bytes: int


def create(path: Path) -> int:
    """Make the run folder (an existing one is an error) and lock it; returns the lock's fd.

    The lock is taken before the folder gets its name, so a concurrent :func:`prune` never
    sees the run unlocked: the folder is made under a temporary name, locked, then renamed
    (a rename onto an existing folder with entries fails, keeping ``exist_ok=False``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.{os.getpid()}.new"
    staging.mkdir()
    fd = os.open(staging / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if path.exists():
            raise FileExistsError(f"{path} exists")
        os.rename(staging, path)
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return fd


def reopen(path: Path) -> int:
    """Lock an existing, finished run folder for ``--resume``; returns the lock's fd.

    Refused while another runner holds the folder, or when it holds no ``run.json`` (a run
    killed before it wrote one has no record of what succeeded).
    """
    if not (path / RECORD).is_file():
        raise FileNotFoundError(f"{path}: no {RECORD} (not a finished run of this runner)")
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"{path} is still running (another runner holds its lock)") from None
    return fd


def _locked_by_a_runner(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # a run from before the lock: run.json alone says it finished
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def disk_usage(path: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, so sparse files count what they use)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _runs(runs: Path, current: Path) -> Iterator[tuple[Path, str]]:
    """Every run folder but ``current``: ``finished``, ``running`` or ``unfinished``."""
    try:
        entries = list(os.scandir(runs))
    except FileNotFoundError:
        return
    for entry in entries:
        folder = Path(entry.path)
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        if folder.resolve() == current.resolve():
            continue
        if _locked_by_a_runner(folder):
            yield folder, "running"
        elif (folder / RECORD).is_file():
            yield folder, "finished"
        else:
            yield folder, "unfinished"


def prune(runs: Path, current: Path, keep: int) -> Pruned:
    """Remove finished runs in ``runs`` beyond the newest ``keep`` (``current`` counts as one).

    ``keep`` 0 removes nothing. Newest is by the time run.json was written, the end of a
    run. A run still running, or one without run.json (a runner killed outright, or a folder
    that is not a run), is never removed: the result counts it and its size instead.
    """
    finished: list[tuple[float, Path]] = []
    running = unfinished = unfinished_bytes = 0
    for folder, state in _runs(runs, current):
        if state == "finished":
            with contextlib.suppress(OSError):
                finished.append(((folder / RECORD).stat().st_mtime, folder))
        elif state == "running":
            running += 1
        else:
            unfinished += 1
            unfinished_bytes += disk_usage(folder)
    finished.sort(reverse=True)
    doomed = finished[max(keep - 1, 0) :] if keep > 0 else []
    freed = 0
    for _, folder in doomed:
        freed += disk_usage(folder)
        shutil.rmtree(folder, ignore_errors=True)
    kept = [folder for _, folder in finished[: len(finished) - len(doomed)]]
    return Pruned(
        removed=len(doomed),
        freed=freed,
        kept=len(kept),
        kept_bytes=sum(disk_usage(folder) for folder in kept),
        running=running,
        unfinished=unfinished,
        unfinished_bytes=unfinished_bytes,
    )


def human(n: float) -> str:
    """A byte count read at a glance: ``282 MB``, ``1.4 GB``."""
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.1f} {units[i]}" if n < 10 and i else f"{n:.0f} {units[i]}"
