"""Artifacts in a local run, as Argo's executor loads and saves them.

The run's artifact repository is the folder ``RUN/artifacts``: an output artifact is stored
under Argo's default key, ``{{workflow.name}}/{{pod.name}}/<file>`` (``<name>.tgz`` for the
default tar+gzip archive, ``<name>.zip`` for zip, the path's own base name with
``archive: none``), or under the key the artifact names (a key-only ``s3: {key: ...}``).
run.json lists it on the node as Argo does: ``{name, path, s3: {key}}``. An artifact that
names a bucket (``s3`` or ``gcs``) is read or written there through fsspec, with the
credentials its ``secretKeyRef``s name, resolved as the runner resolves env secrets.

What a pod sees (workflow/executor/executor.go ``loadArtifact``, ``unarchiveArtifact``,
``stageArchiveFile``; util/archive): an input artifact is placed at its ``path`` inside the
pod's own view (its /tmp, an emptyDir, a volume, or a bind of its own), unpacked when it is
a tarball; outputs are read after the main process exits, resolved inside the pod's view:
a symlink is followed as the pod would follow it, and a path that leads outside the pod's
own folders is refused, never read from the host.

A path outside /tmp, the emptyDirs and volumes is in the image's filesystem in a cluster.
Locally the pod creates what the host does not have (``/outputs/x``, ``/hello.txt``,
``/mnt/out``) in a folder of its own: with bubblewrap the folder that would hold the new
entry is a host folder of the pod's with the host's entries shown read-only over it, in
remap mode the entry is rewritten to that folder. An output at a path the host has
(``/etc``, ``/etc/hosts``) would be the host's file, not an image's: it is refused before
running.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argo_local.model.artifactspec import (
    ETC_HOSTS,
    LOCATIONS,
    ArtifactError,
    SecretLookup,
    _covered,
    clean,
    has_location,
    image_path_message,
    new_entry,
    output_paths,
)
from argo_local.model.mounts import Mount
from argo_local.pods import safepath, sandbox

REPOSITORY = "artifacts"
"""The run folder's artifact repository (``RUN/artifacts/<key>``)."""


# ------------------------------------------------------------------ checks before running


# ------------------------------------------------------------------ inputs of a template


def resolve_inputs(
    tmpl: Mapping[str, Any], arguments: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:
    """The template's input artifacts with what the arguments supply (common/util.go
    ProcessArgs): an argument replaces the declared artifact, keeping its path and mode."""
    given: dict[str, dict[str, Any]] = {}
    for arg in arguments.get("artifacts") or []:
        art = dict(arg)
        if "from" in art:
            try:
                found = parse_reference(str(art["from"]), f"{where}: arguments.artifacts")
            except ArtifactError:
                # steps.go resolveReferences / dag.go / exit_handler.go: an optional argument
                # whose from names no artifact is left out; any other is an error
                if arg.get("optional"):
                    continue
                raise ArtifactError(
                    f"{where}: arguments.artifacts.{arg.get('name')}: unable to resolve "
                    f"references: Unable to resolve: {str(art['from'])!r}"
                ) from None
            art = {**found, **{k: v for k, v in art.items() if k not in ("from",)}}
            art.pop("subPath", None)
            sub = arg.get("subPath")
            if sub:
                art = _append_key(art, str(sub))
        given[str(arg["name"])] = art
    out: list[dict[str, Any]] = []
    for declared in (tmpl.get("inputs") or {}).get("artifacts") or []:
        name = str(declared["name"])
        arg = given.get(name)
        if not declared.get("optional") and not has_location(declared):
            if arg is None:
                raise ArtifactError(f"{where}: inputs.artifacts.{name} was not supplied")
            if not has_location(arg):
                raise ArtifactError(
                    f"{where}: inputs.artifacts.{name} missing location information"
                )
        art = dict(declared)
        if arg is not None:
            art = {**arg, "name": name}
            for k in ("path", "mode", "recurseMode"):
                if k in declared:
                    art[k] = declared[k]
                else:
                    art.pop(k, None)
        out.append(art)
    return out


def parse_reference(text: str, where: str) -> dict[str, Any]:
    """An artifact a ``from: "{{steps.X.outputs.artifacts.Y}}"`` names: the scope holds each
    published artifact as its JSON record, so the substituted ``from`` is that record."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: from {text!r} is not an artifact")
    return value


def _append_key(art: dict[str, Any], sub: str) -> dict[str, Any]:
    for kind in ("s3", "gcs"):
        if isinstance(art.get(kind), dict) and art[kind].get("key"):
            loc = dict(art[kind])
            loc["key"] = f"{str(loc['key']).rstrip('/')}/{sub.lstrip('/')}"
            return {**art, kind: loc}
    if art.get("optional"):
        return art
    raise ArtifactError(f"artifact {art.get('name')}: subPath {sub!r} needs a key to append to")


def scope_entries(prefix: str, artifacts: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{{<prefix>.artifacts.X}}`` for each artifact, as its JSON record (a ``from`` reads it)."""
    return {f"{prefix}.artifacts.{a['name']}": json.dumps(dict(a)) for a in artifacts}


def path_scope(inputs: Sequence[Mapping[str, Any]], outputs: Mapping[str, Any]) -> dict[str, str]:
    """``{{inputs.artifacts.X.path}}``, ``{{outputs.artifacts.X.path}}``,
    ``{{outputs.parameters.X.path}}`` (common/util.go SubstituteParams)."""
    scope: dict[str, str] = {}
    for art in inputs:
        if art.get("path"):
            scope[f"inputs.artifacts.{art['name']}.path"] = str(art["path"])
    for art in outputs.get("artifacts") or []:
        if art.get("path"):
            scope[f"outputs.artifacts.{art['name']}.path"] = str(art["path"])
    for p in outputs.get("parameters") or []:
        vf = p.get("valueFrom") or {}
        if vf.get("path"):
            scope[f"outputs.parameters.{p['name']}.path"] = str(vf["path"])
    return scope


# ------------------------------------------------------------------ the pod's view


@dataclass
class PodFiles:
    """What the artifacts add to one pod: mounts, a root folder of its own, its view."""

    mounts: list[Mount]
    inputs: list[Mount] = field(default_factory=list)  # folders of the pod's own for inputs
    # bwrap: host folders shown writable over these pod folders (their host entries on top)
    layers: dict[str, Path] = field(default_factory=dict)
    view: list[Mount] = field(default_factory=list)  # where the runner resolves pod paths

    def present(self) -> list[Mount]:
        """The pod's mounts without input folders an absent optional artifact left empty."""
        return [m for m in self.mounts if m not in self.inputs or os.path.lexists(m.host)]


def prepare_pod(
    mode: str,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Any],
    mounts: list[Mount],
    pod_dir: Path,
    where: str,
) -> PodFiles:
    """Mounts and folders of its own the pod needs for its artifact and output paths."""
    root = pod_dir / "root"
    extra: list[Mount] = []
    entries: set[str] = set()
    for art in inputs:
        if not art.get("path") or not has_location(art):
            continue
        path = clean(str(art["path"]), f"{where}: inputs.artifacts.{art['name']}")
        if _covered(path, mounts) or _covered(path, extra):
            continue
        entry = new_entry(path)
        if entry is not None:
            entries.add(entry)
        else:
            # As Argo mounts an input artifact over its path (workflowpod.go
            # addInputArtifactsVolumes): a folder of the pod's own at that path.
            extra.append(Mount(pod_dir / "inputs" / str(art["name"]), path))
    hosts_file = False
    for what, raw in output_paths(outputs):
        path = clean(raw, f"{where}: {what}")
        if _covered(path, mounts) or _covered(path, extra):
            continue
        if path == ETC_HOSTS and mode == "bwrap":
            hosts_file = True  # the pod's own /etc/hosts (pods/hosts.py), read as the pod's
            continue
        entry = new_entry(path)
        if entry is None:
            raise ArtifactError(image_path_message(f"{where}: {what}", path))
        entries.add(entry)
    files = PodFiles(mounts=[*mounts, *extra], inputs=extra)
    # What the pod creates at a new entry lands in its own folder, at the same relative path.
    own = [Mount(root / e.lstrip("/"), e) for e in sorted(entries)]
    if mode == "bwrap":
        for e in entries:
            parent = os.path.dirname(e)
            backing = root / parent.lstrip("/")
            backing.mkdir(parents=True, exist_ok=True)
            files.layers[parent] = backing
        files.view = [*files.mounts, *own]
        if hosts_file:
            # read where containers.py writes it; bound at /etc/hosts by bwrap_command, not
            # as one of the pod's mounts
            files.view.append(Mount(pod_dir / "etc-hosts", ETC_HOSTS, readonly=True))
    else:
        # remap: the rewrite sends the pod's paths there (a file or a folder it creates).
        for m in own:
            m.host.parent.mkdir(parents=True, exist_ok=True)
        files.mounts += own
        files.view = list(files.mounts)
    return files


def resolve(path: str, view: Sequence[Mount]) -> tuple[str, Path]:
    """``path`` as the pod sees it: its final path in the pod and the host file behind it,
    symlinks followed in the pod's own view (:func:`argo_local.pods.sandbox.pod_path`); a path
    that ends outside the pod's folders is refused, as the runner never reads the host's."""
    try:
        return sandbox.pod_path(path, view)
    except sandbox.PodPathError as exc:
        raise ArtifactError(str(exc)) from None


def _host(path: str, view: Sequence[Mount]) -> Path:
    """The host file behind a pod path under one of ``view``'s mounts (the longest target)."""
    best = max((m for m in view if _covered(path, [m])), key=lambda m: len(m.target.rstrip("/")))
    rest = path[len(best.target.rstrip("/")) :].lstrip("/")
    return best.host / rest if rest else best.host


# ------------------------------------------------------------------ loading inputs


def stage_inputs(
    repo: Path,
    inputs: Sequence[Mapping[str, Any]],
    files: PodFiles,
    secret: SecretLookup,
    where: str,
) -> list[str]:
    """Place each input artifact at its path in the pod (executor.go loadArtifact); the
    names of optional artifacts that were absent (skipped, as Argo does)."""
    skipped: list[str] = []
    for art in inputs:
        name = str(art["name"])
        awhere = f"{where}: inputs.artifacts.{name}"
        if not has_location(art):
            if art.get("optional"):
                skipped.append(name)
                continue
            raise ArtifactError(f"{awhere}: required artifact '{name}' not supplied")
        path = clean(str(art["path"]), awhere)
        if any(m.target.rstrip("/") == path for m in files.view):
            dest = _host(path, files.view)  # a folder of the pod's own at exactly this path
        else:
            # The parent as the pod sees it; the last component is replaced, never followed.
            _, host_parent = resolve(os.path.dirname(path), files.view)
            dest = host_parent / os.path.basename(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Staged in a folder made now (mkdtemp), never at a name next to the path, where an
        # earlier pod sharing the volume could have left a link to a host file.
        scratch = Path(tempfile.mkdtemp(prefix=".input-", dir=dest.parent))
        temp = scratch / dest.name
        try:
            found = _load(repo, art, temp, secret, awhere)
            if not found:
                if art.get("optional"):
                    skipped.append(name)
                    continue
                raise ArtifactError(f"{awhere}: artifact {_describe(art)} not found")
            _unarchive(art, temp, dest, awhere)
            if art.get("mode") is not None:
                _chmod(dest, int(art["mode"]), bool(art.get("recurseMode")))
        finally:
            _remove(scratch)
    return skipped


def _describe(art: Mapping[str, Any]) -> str:
    for kind in ("s3", "gcs"):
        loc = art.get(kind)
        if isinstance(loc, dict):
            bucket = loc.get("bucket")
            return f"{kind}://{bucket}/{loc.get('key')}" if bucket else f"key {loc.get('key')}"
    return str(art.get("name"))


def _load(repo: Path, art: Mapping[str, Any], dest: Path, secret: SecretLookup, where: str) -> bool:
    if "raw" in art:
        dest.write_text(str((art.get("raw") or {}).get("data") or ""))
        return True
    kind, loc = _location(art)
    if loc.get("bucket"):
        fs, remote = _filesystem(kind, loc, secret, where)
        if not fs.exists(remote):
            return False
        if fs.isdir(remote):
            fs.get(remote.rstrip("/") + "/", str(dest), recursive=True)
        else:
            fs.get(remote, str(dest))
        return True
    repository_path(repo, str(loc.get("key")), where)
    try:
        # Every component of the key below the repository is opened without following a link
        # (one to /proc/self would read the runner's own process).
        return safepath.fetch(repo, str(loc.get("key")), dest)
    except safepath.EscapeError as exc:
        raise ArtifactError(f"{where}: artifact key: {exc}") from None


def _location(art: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    for kind in ("s3", "gcs"):
        if isinstance(art.get(kind), dict):
            return kind, dict(art[kind])
    raise ArtifactError(f"artifact {art.get('name')}: no location")


def repository_path(repo: Path, key: str, where: str) -> Path:
    """Where a key lives in the run's repository; a key never leaves it."""
    parts = [p for p in key.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise ArtifactError(f"{where}: artifact key {key!r} is not a path inside the repository")
    return repo.joinpath(*parts)


def _unarchive(art: Mapping[str, Any], temp: Path, dest: Path, where: str) -> None:
    archive = art.get("archive") or {}
    if "none" in archive:
        kind = "none"
    elif "zip" in archive:
        kind = "zip"
    elif "tar" in archive or _is_tarball(temp):
        kind = "tar"
    else:
        kind = "none"
    try:
        if kind == "none":
            _replace(temp, dest)
            return
        unpacked = temp.with_name(temp.name + ".tmpdir")  # in the caller's fresh folder
        unpacked.mkdir()
        try:
            if kind == "tar":
                with tarfile.open(temp, "r:*") as tf:
                    tf.extractall(unpacked, filter="data")
            else:
                _unzip(temp, unpacked)
            entries = os.listdir(unpacked)
            if len(entries) == 1:
                _replace(unpacked / entries[0], dest)
            else:
                _replace(unpacked, dest)
        finally:
            _remove(unpacked)
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{where}: cannot unpack into {art.get('path')}: {exc}") from None


def _replace(source: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink() and source.is_dir():
        if any(dest.iterdir()):
            raise OSError(f"{dest.name} exists and is not empty")
        dest.rmdir()
    os.replace(source, dest)


def _unzip(path: Path, dest: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            target = os.path.normpath(dest / info.filename)
            if not target.startswith(str(dest) + os.sep):
                raise OSError(f"{info.filename}: illegal file path")
        zf.extractall(dest)


def _is_tarball(path: Path) -> bool:
    """executor.go isTarball: gzip whose first tar header reads."""
    try:
        with tarfile.open(path, "r:gz") as tf:
            return tf.next() is not None
    except (OSError, tarfile.TarError, EOFError):
        return False


def _chmod(path: Path, mode: int, recurse: bool) -> None:
    if not path.is_symlink():
        os.chmod(path, mode)
    if recurse and path.is_dir() and not path.is_symlink():
        for folder, dirs, names in os.walk(path):
            for n in [*dirs, *names]:
                p = Path(folder) / n
                if not p.is_symlink():
                    os.chmod(p, mode)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


# ------------------------------------------------------------------ saving outputs


def save_outputs(
    repo: Path,
    outputs: Mapping[str, Any],
    view: Sequence[Mount],
    key_prefix: str,
    staging: Path,
    secret: SecretLookup,
    where: str,
) -> list[dict[str, Any]]:
    """Archive and store each output artifact once the main process has exited (executor.go
    SaveArtifacts); the records run.json lists. A missing optional artifact is left out; a
    missing required one is an error, as the wait container's."""
    saved: list[dict[str, Any]] = []
    errors: list[str] = []
    for art in outputs.get("artifacts") or []:
        name = str(art["name"])
        awhere = f"{where}: outputs.artifacts.{name}"
        try:
            record = _save(repo, art, view, key_prefix, staging, secret, awhere)
        except ArtifactError as exc:
            errors.append(str(exc))
            continue
        if record is not None:
            saved.append(record)
    if errors:
        raise ArtifactError("; ".join(errors))
    return saved


def _save(
    repo: Path,
    art: Mapping[str, Any],
    view: Sequence[Mount],
    key_prefix: str,
    staging_dir: Path,
    secret: SecretLookup,
    where: str,
) -> dict[str, Any] | None:
    path = clean(str(art["path"]), where)
    try:
        _, host = resolve(path, view)
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    try:
        info = os.lstat(host)
    except OSError:
        if art.get("optional"):
            return None
        raise ArtifactError(f"{where}: {path} no such file or directory") from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ArtifactError(f"{where}: {path} is not a regular file or directory")
    archive = art.get("archive") or {"tar": {}}
    record = {k: v for k, v in art.items() if k not in LOCATIONS}
    kind, loc = "s3", dict[str, Any]()
    if any(isinstance(art.get(k), dict) for k in ("s3", "gcs")):
        kind, loc = _location(art)
    if "none" in archive:
        file_name = os.path.basename(path) or str(art["name"])
    elif "zip" in archive:
        file_name = f"{art['name']}.zip"
    else:
        file_name = f"{art['name']}.tgz"
    key = str(loc.get("key") or f"{key_prefix}/{file_name}")
    staging_dir.mkdir(parents=True, exist_ok=True)
    # a folder of its own per archive (mkdtemp): no link planted at a fixed name is written through
    staging = Path(tempfile.mkdtemp(dir=staging_dir)) / file_name
    try:
        if "none" in archive:
            source = host
        elif "zip" in archive:
            _zip(host, staging, os.path.basename(path))
            source = staging
        else:
            level = (archive.get("tar") or {}).get("compressionLevel")
            _targz(
                host,
                staging,
                os.path.basename(path),
                6 if level is None or level < 0 else int(level),
            )
            source = staging
        if loc.get("bucket"):
            fs, remote = _filesystem(kind, {**loc, "key": key}, secret, where)
            if source.is_dir():
                # fsspec's put follows links: one leaving the folder would upload host files
                safepath.refuse_links_leaving(source, f"{where}: {path}")
                fs.put(str(source).rstrip("/") + "/", remote.rstrip("/") + "/", recursive=True)
            else:
                fs.put(str(source), remote)
        else:
            repository_path(repo, key, where)
            # No component of the key is followed through a link (one stored earlier would
            # lead the copy to a host folder), and a stored folder keeps only links inside it.
            safepath.store(source, repo, key, f"{where}: {path}")
    except safepath.EscapeError as exc:
        raise ArtifactError(str(exc)) from None
    except OSError as exc:
        raise ArtifactError(f"{where}: cannot save {path}: {exc}") from None
    finally:
        _remove(staging.parent)
    record[kind] = {**loc, "key": key}
    return record


def _targz(source: Path, dest: Path, name: str, level: int) -> None:
    """util/archive TarGzToWriter: the entry named for the path's base name, a folder's
    symlinks kept as links (never followed)."""
    with tarfile.open(dest, "w:gz", compresslevel=level) as tf:
        tf.add(source, arcname=name, recursive=True)


def _zip(source: Path, dest: Path, name: str) -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        if source.is_dir():
            for folder, _, names in os.walk(source):
                for n in names:
                    p = Path(folder) / n
                    if p.is_file() and not p.is_symlink():
                        zf.write(p, str(Path(name) / p.relative_to(source)))
        else:
            zf.write(source, name)


def _filesystem(
    kind: str, loc: Mapping[str, Any], secret: SecretLookup, where: str
) -> tuple[Any, str]:
    """An fsspec filesystem for a bucket location, with its secrets, and the object's path."""
    import fsspec

    options: dict[str, Any] = {}
    if kind == "s3":
        key_ref, secret_ref = loc.get("accessKeySecret"), loc.get("secretKeySecret")
        if key_ref and secret_ref:
            options["key"] = _secret(key_ref, secret, where)
            options["secret"] = _secret(secret_ref, secret, where)
        if loc.get("endpoint"):
            scheme = "http" if loc.get("insecure") else "https"
            options["endpoint_url"] = f"{scheme}://{loc['endpoint']}"
        if loc.get("region"):
            options["client_kwargs"] = {"region_name": loc["region"]}
        protocol = "s3"
    else:
        ref = loc.get("serviceAccountKeySecret")
        if ref:
            options["token"] = json.loads(_secret(ref, secret, where))
        protocol = "gcs"
    try:
        fs = fsspec.filesystem(protocol, **options)
    except (ImportError, ValueError) as exc:
        raise ArtifactError(f"{where}: {kind}: {exc}") from None
    return fs, f"{loc['bucket']}/{str(loc.get('key') or '').lstrip('/')}"


def _secret(ref: Mapping[str, Any], secret: SecretLookup, where: str) -> str:
    value = secret(str(ref.get("name")), str(ref.get("key")))
    if value is None:
        raise ArtifactError(f"{where}: secret {ref.get('name')}/{ref.get('key')} not found locally")
    return value
