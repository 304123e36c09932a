"""Each node's own filesystem view: its /tmp, its emptyDirs and the run's volumes at their mountPaths.

With bubblewrap the process runs in a mount namespace: the host root read-only,
the node's folder over ``/tmp``, volume folders at their ``mountPath``s, and the
run's work folder (where the embedded SQLite database lives) writable at its
own path. Without bubblewrap (macOS, CI runners that forbid user namespaces) the
container paths are rewritten to the host folders in command, args, env, script
source and output paths; that is weaker (a path built at run time escapes it),
so the run log says which mode ran.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from functools import lru_cache
from pathlib import Path

from argo_local.model.mounts import Mount

NOT_INSTALLED = "bwrap not installed"


class PodPathError(ValueError):
    """A path a pod names (an output file) leads outside the pod's own mounts."""


@lru_cache(maxsize=1)
def bwrap_works() -> tuple[bool, str]:
    """Whether bubblewrap can create a mount namespace here (it cannot in every CI)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False, NOT_INSTALLED
    try:
        proc = subprocess.run(
            [exe, *_base_args(), "--", "true"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap failed to start: {exc}"
    if proc.returncode != 0:
        return False, "bwrap cannot create namespaces: " + proc.stderr.decode(
            errors="replace"
        ).strip()
    return True, exe


def choose(mode: str) -> tuple[str, str]:
    """``bwrap`` or ``remap`` for a requested mode (auto, bwrap, remap) and why.

    ``auto`` falls back to remap only where bubblewrap is absent (the run log says so). A
    bubblewrap that is installed but cannot create namespaces (a container without user
    namespaces, a sysctl) is a machine to fix or a choice to make, never a silent downgrade
    to the weaker mode: the run stops and says to pass ``--sandbox remap``.
    """
    if sys.platform != "linux" and mode != "remap":
        if mode == "bwrap":
            raise RuntimeError("--sandbox bwrap needs Linux")
        return "remap", f"{sys.platform}: no mount namespaces"
    if mode == "remap":
        return "remap", "requested"
    ok, why = bwrap_works()
    if ok:
        return "bwrap", why
    if mode == "bwrap":
        raise RuntimeError(f"--sandbox bwrap: {why}")
    if why != NOT_INSTALLED:
        raise RuntimeError(
            f"{why}; pods would run without their own mounts: fix bubblewrap, or pass "
            "--sandbox remap to run with container paths rewritten instead"
        )
    return "remap", why


def _base_args() -> list[str]:
    return ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]


def _existing_ancestor(target: str) -> str:
    p = Path(target)
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)


def _shadow(folder: str, backing: Path | None = None) -> list[str]:
    """Make ``folder`` writable (a tmpfs, or the host folder ``backing``) while showing the
    host's entries again, read-only.

    bwrap must create a mount point for a target that does not exist on the host
    (``/mnt/shared``), which the read-only root forbids. A ``backing`` folder keeps what the
    pod creates there (a new top-level output folder) for the runner to read afterwards.
    """
    args = ["--bind", str(backing), folder] if backing is not None else ["--tmpfs", folder]
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return args
    for entry in entries:
        path = os.path.join(folder, entry.name)
        if folder == "/" and entry.name in ("proc", "dev"):
            continue
        if entry.is_symlink():
            if backing is not None:
                # made in the backing folder itself, once: bwrap's --symlink fails on the one
                # an earlier container of the pod left there (a daemon and its exec probe
                # share the folder, and may start together)
                _plant_link(os.readlink(path), backing / entry.name)
            else:
                args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return args


def _plant_link(target: str, where: Path) -> None:
    """A symlink to ``target`` at ``where``, unless an entry is there already (the pod's own
    entry, or the same link made by another of its containers)."""
    with suppress(FileExistsError):
        os.symlink(target, where)


def bwrap_command(
    argv: Sequence[str],
    mounts: Sequence[Mount],
    keep: Sequence[tuple[Path, bool]],
    cwd: str,
    layers: Mapping[str, Path] | None = None,
    etc_hosts: Path | None = None,
) -> list[str]:
    """The bwrap command line running ``argv`` with ``mounts``; ``keep`` host paths stay visible.

    ``etc_hosts``: the pod's own hosts file, bound read-only at ``/etc/hosts`` (hosts.py).

    ``layers``: folders of the pod (``/``, ``/mnt``) backed by host folders of its own, where
    the entries it creates there land (the host's own entries are shown read-only over them).
    """
    layers = layers or {}

    def under_other_mount(target: str) -> bool:
        return any(
            o.target != target and target.startswith(o.target.rstrip("/") + "/") for o in mounts
        )

    # A missing target under another mount is created in that (writable) host folder.
    shadows = sorted(
        {
            _existing_ancestor(m.target)
            for m in mounts
            if not os.path.isdir(m.target) and not under_other_mount(m.target)
        },
        key=len,
    )
    shadows = sorted(set(shadows) | set(layers), key=len)
    args = ["bwrap"]
    if "/" in shadows:
        args += [
            *_shadow("/", layers.get("/")),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-pid",
        ]
        shadows.remove("/")
    else:
        args += _base_args()
    for folder in shadows:
        args += _shadow(folder, layers.get(folder))
    for m in sorted(mounts, key=lambda m: m.target.count("/")):
        args += ["--ro-bind" if m.readonly else "--bind", str(m.host), m.target]
    # A host path under a mount target (a run folder below /tmp, a venv below /mnt) would be
    # hidden by the mount: bind it back at its own path.
    # Shallow paths first: binding the repo after a run folder inside it would hide the latter.
    for path, writable in sorted(keep, key=lambda k: len(Path(k[0]).parts)):
        if not writable and covers_a_mount(str(path), mounts):
            # The read-only root shows it already; binding it would hide the mount below.
            continue
        args += ["--bind" if writable else "--ro-bind", str(path), str(path)]
    if etc_hosts is not None:
        args += ["--ro-bind", str(etc_hosts), "/etc/hosts"]
    args += ["--die-with-parent", "--chdir", cwd, "--", *argv]
    return args


def own_folder_layer(path: str) -> str:
    """The host folder a pod's own working folder at ``path`` (a path of its image, under no
    mount) is layered over: ``path`` itself where the host has that folder (``/``), else its
    deepest ancestor the host has (``/`` for ``/app``). A pod's own host folder is bound
    there, with the host's entries shown read-only over it (:func:`bwrap_command`), so what
    the pod creates there is its own; the path's missing part is created in that folder.

    The same layer :func:`argo_local.pods.artifacts.prepare_pod` gives an output at a new path
    below it, so an output written relative to the working folder is read where it landed.
    """
    if not path.startswith("/") or ".." in path.split("/"):
        raise PodPathError(f"{path}: not an absolute path without '..'")
    current = "/"
    for part in (p for p in path.split("/") if p and p != "."):
        step = os.path.join(current, part)
        if os.path.islink(step):
            raise PodPathError(
                f"{path}: {step} is a symlink on this machine, whose root a local pod shares: "
                "it cannot have a folder of its own there"
            )
        if not os.path.lexists(step):
            return current
        if not os.path.isdir(step):
            raise PodPathError(f"{path}: {step} is a file on this machine, not a folder")
        current = step
    return current


def covers_a_mount(path: str, mounts: Sequence[Mount]) -> bool:
    """Whether ``path`` is a mount target or one of its ancestors (``/`` covers every one)."""
    base = path.rstrip("/") + "/"
    return any((m.target.rstrip("/") + "/").startswith(base) for m in mounts)


def import_paths(code: Path, pythonpath: str | None, cwd: Path) -> list[Path]:
    """Where pods import the user's code from: ``code``, then each entry of ``pythonpath``.

    Absolute, in order, without repeats. A relative entry (and the empty one, which Python
    reads as the working folder) is taken relative to ``cwd``, the runner's working folder,
    because a pod runs in a working folder of its own where it would mean nothing.
    """
    found: list[Path] = []
    for entry in [str(code), *(pythonpath.split(os.pathsep) if pythonpath else [])]:
        path = Path(os.path.normpath(cwd / entry))
        if path not in found:
            found.append(path)
    return found


def remap_text(text: str, mounts: Sequence[Mount]) -> str:
    """Rewrite container paths in ``text`` to their host folders.

    One pass over one alternation, longest target first: a host folder that itself lies
    under another target (a run folder below /tmp) must not be rewritten again.
    """
    ordered = sorted(mounts, key=lambda m: len(m.target), reverse=True)
    if not ordered:
        return text
    hosts = {m.target.rstrip("/"): str(m.host) for m in ordered}
    alternation = "|".join(re.escape(m.target.rstrip("/")) for m in ordered)
    pattern = re.compile(r"(?<![\w.\-/])(" + alternation + r")(?=/|$|[^\w.\-])")
    return pattern.sub(lambda m: hosts[m.group(1)], text)


def host_path(path: str, mounts: Sequence[Mount]) -> Path:
    """Where a path inside the node lives on the host (outside every mount: the host path)."""
    best = _mount_of(path, mounts)
    if best is None:
        return Path(path)
    rest = path[len(best.target.rstrip("/")) :].lstrip("/")
    return best.host / rest if rest else best.host


# Linux's own limit on symlinks followed while resolving one path (ELOOP).
_MAX_LINKS = 40


def pod_file(path: str, mounts: Sequence[Mount], *, remapped: bool = False) -> Path:
    """The host file behind ``path`` as the pod sees it, for the runner to read an output.

    Symlinks are followed the way the pod would follow them. In a mount namespace an absolute
    target starts again at the pod's root, so a link the step planted in its /tmp can only
    lead to another of the pod's own mounts. In remap mode the step ran on the host's paths,
    so its links hold host paths: they are followed on the host, and must end in one of the
    pod's folders. A path that ends outside every mount (``/proc/self/environ``, the host's
    ``/etc``, a link to them) is refused: it would be the runner's file, not the pod's, and in
    a cluster the wait container reads the pod's filesystem, never the node's.
    """
    if not path.startswith("/"):
        raise PodPathError(f"{path}: not an absolute path")
    if remapped:
        return _remapped_file(path, mounts)
    return pod_path(path, mounts)[1]


def pod_path(path: str, mounts: Sequence[Mount]) -> tuple[str, Path]:
    """``path`` as a pod in a mount namespace sees it: its final path in the pod, after its
    symlinks, and the host file behind it (see :func:`pod_file`)."""
    todo = [p for p in path.split("/") if p]
    current: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = "/" + "/".join([*current, part])
        host = host_path(candidate, mounts)
        if _mount_of(candidate, mounts) is not None and host.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise PodPathError(f"{path}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                current = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        current.append(part)
    final = "/" + "/".join(current)
    if _mount_of(final, mounts) is None:
        raise _outside(path, final)
    return final, host_path(final, mounts)


def _remapped_file(path: str, mounts: Sequence[Mount]) -> Path:
    final = os.path.normpath(path)
    if _mount_of(final, mounts) is None:
        raise _outside(path, final)
    real = os.path.realpath(host_path(final, mounts))
    for m in mounts:
        folder = os.path.realpath(m.host)
        if real == folder or real.startswith(folder.rstrip("/") + "/"):
            return Path(real)
    raise _outside(path, real)


def _outside(path: str, final: str) -> PodPathError:
    return PodPathError(
        f"{path}: outside the pod's /tmp, emptyDirs and volumes"
        + (f" (resolves to {final})" if final != path else "")
        + "; a local pod shares the host's read-only root, so only those are its own"
    )


def _mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    best: Mount | None = None
    for m in mounts:
        t = m.target.rstrip("/") or "/"
        if (path == t or path.startswith(t + "/")) and (best is None or len(t) > len(best.target)):
            best = m
    return best


def read_pod_text(path: str, mounts: Sequence[Mount], *, remapped: bool = False) -> str:
    """A pod's text file, read without following a last-moment symlink (see :func:`pod_file`)."""
    host = pod_file(path, mounts, remapped=remapped)
    from argo_local.pods import safepath

    try:
        # opened from its mount down, no link followed: another pod sharing the volume cannot
        # swap a folder on the way for a link between the resolution above and this open
        fd = safepath.open_below(
            host, [m.host for m in mounts], os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        )
    except safepath.EscapeError as exc:
        raise PodPathError(f"{path}: {exc}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise PodPathError(f"{path}: not a regular file")
        return f.read().decode(errors="replace")
