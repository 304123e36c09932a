"""Paths the runner opens for a workflow, never followed through a link out of their root.

The runner runs as the user, with every host file in reach; a pod can leave symlinks in
what it shares (its output folders, volumes, the artifact repository in remap mode). So each
path the runner opens below a root it owns (the run's artifact repository, a volume, a pod's
folder) is walked one component at a time from the root with ``O_NOFOLLOW`` (the
``openat`` walk kubelet's safe subpath does; ``openat2``'s ``RESOLVE_BENEATH`` is Linux
only): a component that is a symlink is refused, never followed, and a file the runner
creates is created with ``O_EXCL`` in a folder it just opened. What the runner stores keeps
only symlinks that resolve inside what is stored.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class EscapeError(ValueError):
    """A path that would go through a symlink, or ``..``, out of its root."""


def parts(rel: str | Sequence[str]) -> list[str]:
    """A relative path's components (``''`` and ``.`` dropped); ``..`` or an absolute path is
    refused: nothing the runner opens for a workflow climbs out of its root."""
    items = rel.split("/") if isinstance(rel, str) else list(rel)
    if isinstance(rel, str) and rel.startswith("/"):
        raise EscapeError(f"{rel}: not a relative path")
    out = [p for p in items if p not in ("", ".")]
    if ".." in out:
        raise EscapeError(f"{'/'.join(items)}: '..' leaves its folder")
    return out


def _open_root(root: Path, create: bool) -> int:
    if create:
        root.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(root, _DIR)
    except OSError as exc:
        if os.path.islink(root):
            raise EscapeError(f"{root} is a symlink") from None
        raise exc


@contextmanager
def folder(root: Path, rel: str | Sequence[str], *, create: bool = False) -> Iterator[int]:
    """A file descriptor of the folder ``root/rel``, reached without following a link;
    ``create`` makes the missing folders (``root`` itself included)."""
    fd = _open_root(root, create)
    try:
        shown = str(root)
        for part in parts(rel):
            shown = f"{shown}/{part}"
            try:
                nxt = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):  # made meanwhile: opened (and checked) below
                    os.mkdir(part, 0o777, dir_fd=fd)
                nxt = os.open(part, _DIR, dir_fd=fd)
            except OSError:
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise EscapeError(f"{shown} is a symlink: not followed") from None
                raise
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def check(root: Path, rel: str | Sequence[str]) -> Path:
    """``root/rel`` once no existing component below ``root`` (the last one included) is a
    symlink; for the APIs that take a path (a copy, a bind mount)."""
    items = parts(rel)
    current = root
    for part in items:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise EscapeError(f"{current} is a symlink: not followed")
    return root.joinpath(*items)


def subfolder(root: Path, rel: str) -> Path:
    """A ``subPath`` of a volume as the kubelet resolves it (pkg/volume/util/subpath
    ``doSafeMakeDir``/``safeOpenSubPath``): a symlink on the way is followed only while it
    stays inside the volume; missing folders are created. The real path is returned, so a
    bind mount or a rewritten path never follows a link made later."""
    root.mkdir(parents=True, exist_ok=True)  # a folder of the runner's (a volume, a pod's own)
    base = os.path.realpath(root)
    current = base
    for part in parts(rel):
        step = os.path.join(current, part)
        if os.path.islink(step):
            real = os.path.realpath(step)
            if not _inside(real, base):
                raise EscapeError(f"{rel!r}: {part} is a symlink that leaves its volume")
            step = real
        elif not os.path.lexists(step):
            with suppress(FileExistsError):
                os.mkdir(step)
            if os.path.islink(step):
                raise EscapeError(f"{rel!r}: {part} became a symlink while it was made")
        current = step
    return Path(current)


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def links_leaving(tree: Path) -> list[str]:
    """The symlinks in ``tree`` (a folder, or a single entry) whose target resolves outside
    it, relative to it: an absolute link, ``..`` climbing out, a chain of links doing so."""
    if not os.path.isdir(tree) or os.path.islink(tree):
        return [tree.name] if os.path.islink(tree) else []
    base = os.path.realpath(tree)
    found = []
    for here, dirs, names in os.walk(tree):
        for n in [*dirs, *names]:
            p = os.path.join(here, n)
            if os.path.islink(p) and not _inside(os.path.realpath(p), base):
                found.append(os.path.relpath(p, tree))
    return sorted(found)


def refuse_links_leaving(tree: Path, what: str) -> None:
    """:func:`links_leaving` as an error naming the first link and its target."""
    leaving = links_leaving(tree)
    if leaving:
        first = tree / leaving[0] if os.path.isdir(tree) and not tree.is_symlink() else tree
        raise EscapeError(
            f"{what}: {leaving[0]} is a symlink to {os.readlink(first)}, which leaves the "
            "artifact: only links that stay inside it are stored"
        )


def remove_at(parent_fd: int, name: str) -> None:
    """Remove the entry ``name`` of an open folder (a folder with what it holds), a link
    itself never followed."""
    try:
        info = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=parent_fd)
    else:
        os.unlink(name, dir_fd=parent_fd)


def store(source: Path, root: Path, rel: str | Sequence[str], what: str) -> None:
    """Copy the file or folder ``source`` to ``root/rel``, replacing what is there.

    The copy is made in a fresh folder below ``root`` (the stored entry appears whole, by a
    rename), its symlinks are kept only when they resolve inside it, and the folders on the
    way to ``rel`` are opened without following a link (:func:`folder`).
    """
    items = parts(rel)
    if not items:
        raise EscapeError(f"{what}: an empty path")
    with folder(root, items[:-1], create=True) as parent:
        staging = Path(tempfile.mkdtemp(prefix=".store-", dir=root))
        try:
            copy = staging / "entry"
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, copy, symlinks=True)
            else:
                shutil.copyfile(source, copy, follow_symlinks=False)
            refuse_links_leaving(copy, what)
            remove_at(parent, items[-1])
            with folder(staging, []) as sfd:
                os.replace("entry", items[-1], src_dir_fd=sfd, dst_dir_fd=parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def fetch(root: Path, rel: str | Sequence[str], dest: Path) -> bool:
    """Copy ``root/rel`` (a file or a folder) to ``dest``, a path the caller just made its
    own; False when it is absent. No component, the last included, may be a symlink."""
    items = parts(rel)
    if not items:
        raise EscapeError("an empty key")
    try:
        with folder(root, items[:-1]):
            pass
    except FileNotFoundError:
        return False
    source = check(root, items)
    if not os.path.lexists(source):
        return False
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True)
        refuse_links_leaving(dest, "/".join(items))
    else:
        shutil.copyfile(source, dest, follow_symlinks=False)
    return True


@contextmanager
def fresh_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder of the runner's own in ``parent`` (``mkdtemp``: no name an earlier
    process could have planted a link at), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_text(root: Path, path: Path) -> str:
    """The regular file ``path``, which must lie below ``root``, read without following a
    link on the way (a FIFO or a device is refused, never waited on)."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        raise EscapeError(f"{path}: outside {root}") from None
    items = parts(rel.as_posix())
    if not items:
        raise EscapeError(f"{path}: not a file")
    with folder(root, items[:-1]) as parent:
        flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(items[-1], flags, dir_fd=parent)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise EscapeError(f"{path}: not a regular file")
        return f.read().decode(errors="replace")


def open_below(path: Path, roots: Sequence[Path], flags: int = os.O_RDONLY) -> int:
    """Open ``path``, which lies below one of ``roots`` (the longest that holds it), walking
    from that root one component at a time without following a link, the last included: a
    folder on the way swapped for a link after the caller resolved ``path`` is refused, not
    followed. The root itself is the runner's own (a pod's mount), so its own links count."""
    text = os.path.abspath(path)
    best: tuple[int, str, Path] | None = None
    for root in roots:
        for base in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
            # a root that is the path itself (a file mounted at its own path) is no folder
            # to walk from: the nearest root above it is
            if text != base and _inside(text, base) and (best is None or len(base) > best[0]):
                best = (len(base), base, root)
    if best is None:
        if any(text in (os.path.abspath(r), os.path.realpath(r)) for r in roots):
            # a file the runner mounted at its own path (an output in a pod's private root):
            # walk from the folder above its folder (the runner's), so neither that folder (a
            # pod may swap its own root for a link) nor the file is followed as a link
            holder = os.path.dirname(text)
            with folder(Path(os.path.dirname(holder)), [os.path.basename(holder)]) as above:
                return os.open(os.path.basename(text), flags | os.O_NOFOLLOW, dir_fd=above)
        raise EscapeError(f"{path}: outside the pod's folders")
    _, base, root = best
    items = parts(os.path.relpath(text, base).replace(os.sep, "/"))
    if not items:
        raise EscapeError(f"{path}: a folder, not a file")
    with folder(Path(os.path.realpath(root)), items[:-1]) as parent:
        return os.open(items[-1], flags | os.O_NOFOLLOW, dir_fd=parent)
