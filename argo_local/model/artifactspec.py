"""What a template's artifacts may say, checked before anything runs (Argo's validate.go
validateInputs/Outputs/ArgumentsValues, and what a local run cannot do), and the pure path
rules the pod layer (:mod:`argo_local.pods.artifacts`) applies again when it runs them:
Argo's ``CleanPath``, the entry a pod creates in its image's filesystem, the output paths
a template reads."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from argo_local.model.mounts import Mount

LOCATIONS = ("s3", "gcs", "raw", "http", "git", "artifactory", "hdfs", "oss", "azure", "plugin")


_REJECTED = {
    "http": "an http artifact is downloaded from the network, which a local run does not do "
    "(put the file in a raw artifact, or in a volume)",
    "git": "a git artifact clones a repository over the network, which a local run does not do",
    "artifactory": "Artifactory needs its server",
    "hdfs": "HDFS needs its cluster",
    "oss": "Alibaba OSS has no local driver",
    "azure": "Azure Blob Storage has no local driver",
    "plugin": "artifact plugins run as sidecars in a cluster",
}


_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")


LEAF_KINDS = ("container", "script", "containerSet", "resource", "data", "http", "plugin")
"""The template types Argo's ``Template.IsLeaf`` names: their artifacts have paths."""


SecretLookup = Callable[[str, str], str | None]


class ArtifactError(ValueError):
    """An artifact that cannot be loaded or saved; the node ends in Error, as when Argo's
    init or wait container fails."""


def check_template(tmpl: Mapping[str, Any], where: str, secret: SecretLookup) -> None:
    """Argo's validation of a template's artifacts (validate.go validateInputs/Outputs),
    and what a local run cannot do, rejected with the reason."""
    # Template.IsLeaf (workflow_types.go): a containerSet's artifacts are its main container's
    leaf = any(k in tmpl for k in LEAF_KINDS)
    for side in ("inputs", "outputs"):
        for art in (tmpl.get(side) or {}).get("artifacts") or []:
            name = str(art.get("name") or "")
            awhere = f"{where}: {side}.artifacts[{name}]"
            if not _NAME.match(name):
                raise_(f"{awhere}: name must consist of alpha-numeric characters, '_' or '-'")
            if leaf and not art.get("path") and (side == "outputs" or "from" not in art):
                raise_(
                    f"{awhere}: path is required in a container, script or containerSet template"
                )
            if not leaf and art.get("path"):
                raise_(f"{awhere}.path only valid in container/script templates")
            if "from" in art and "fromExpression" in art:
                raise_(f"{awhere}: shouldn't have both `from` and `fromExpression` in Artifact")
            if side == "inputs" and "fromExpression" in art:
                raise_(f"{awhere}.fromExpression: an input artifact is supplied by its arguments")
            if side == "inputs" and "from" in art:
                raise_(f"{awhere}.from not valid in inputs")
            if side == "outputs" and not leaf and "from" not in art and "fromExpression" not in art:
                raise_(f"{awhere}: a steps or dag template's output artifact needs from")
            check_artifact(art, awhere, secret)


def check_arguments(arguments: Mapping[str, Any], where: str, secret: SecretLookup) -> None:
    """``arguments.artifacts`` (validate.go validateArgumentsValues): each needs ``from``, a
    location or a key."""
    for art in arguments.get("artifacts") or []:
        name = str(art.get("name") or "")
        awhere = f"{where}: arguments.artifacts[{name}]"
        if "from" in art and "fromExpression" in art:
            raise_(f"{awhere}: shouldn't have both `from` and `fromExpression` in Artifact")
        # validate.go validateArgumentsValues: a fromExpression alone is not enough
        if "from" not in art and not has_location(art):
            raise_(f"{awhere}: from, artifact location, or key is required")
        check_artifact(art, awhere, secret)


def check_artifact(art: Mapping[str, Any], where: str, secret: SecretLookup) -> None:
    gname = art.get("globalName")
    if gname not in (None, "") and "{{" not in str(gname) and not _NAME.match(str(gname)):
        # validate.go validateOutputs: isValidParamOrArtifactName
        raise_(f"{where}.globalName: must consist of alpha-numeric characters, '_' or '-'")
    kinds = [k for k in LOCATIONS if k in art]
    if len(kinds) > 1:
        raise_(f"{where}: more than one location ({', '.join(kinds)})")
    for kind in kinds:
        if kind in _REJECTED:
            raise_(f"{where}.{kind}: not supported by the local runner: {_REJECTED[kind]}")
    archive = art.get("archive")
    if archive is not None:
        chosen = [k for k in ("none", "tar", "zip") if k in (archive or {})]
        if len(chosen) != 1:
            raise_(f"{where}.archive: exactly one of none, tar, zip")
        level = ((archive or {}).get("tar") or {}).get("compressionLevel")
        if level is not None and (
            isinstance(level, bool) or not isinstance(level, int) or not -1 <= level <= 9
        ):
            raise_(f"{where}.archive.tar.compressionLevel: expected -1 to 9, got {level!r}")
    mode = art.get("mode")
    if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int)):
        raise_(f"{where}.mode: expected an integer file mode, got {mode!r}")
    if "raw" in art and not isinstance((art.get("raw") or {}).get("data"), str):
        raise_(f"{where}.raw.data: expected a string")
    for kind in ("s3", "gcs"):
        loc = art.get(kind)
        if loc is None:
            continue
        if not isinstance(loc, dict):
            raise_(f"{where}.{kind}: expected a mapping")
        if loc.get("bucket"):
            _check_remote(kind, loc, f"{where}.{kind}", secret)
        elif not loc.get("key"):
            raise_(f"{where}.{kind}: needs a key (the local repository's) or a bucket")


def _check_remote(kind: str, loc: Mapping[str, Any], where: str, secret: SecretLookup) -> None:
    module = {"s3": "s3fs", "gcs": "gcsfs"}[kind]
    try:
        __import__(module)
    except ImportError:
        raise_(
            f"{where}: bucket {loc.get('bucket')} needs {module} (pip install 'fanout-workers[{kind}]')"
        )
    refs = ("accessKeySecret", "secretKeySecret") if kind == "s3" else ("serviceAccountKeySecret",)
    for ref_name in refs:
        ref = loc.get(ref_name)
        if not ref:
            continue
        if "{{" in f"{ref.get('name')}{ref.get('key')}":
            continue  # a parameter: looked up when the pod starts
        if secret(str(ref.get("name")), str(ref.get("key"))) is None:
            raise_(
                f"{where}.{ref_name}: secret {ref.get('name')}/{ref.get('key')} not found locally "
                f"(set {_secret_var(str(ref.get('name')), str(ref.get('key')))} in the "
                "environment or .env)"
            )


def _secret_var(name: str, key: str) -> str:
    return f"{name}_{key}".upper().replace("-", "_").replace(".", "_")


def raise_(message: str) -> None:
    from argo_local.model.spec import SpecError

    raise SpecError(message)


def has_location(art: Mapping[str, Any]) -> bool:
    """Argo's ``HasLocationOrKey``: a place to load the artifact from."""
    for kind in LOCATIONS:
        loc = art.get(kind)
        if kind == "raw" and isinstance(loc, dict):
            return True
        if isinstance(loc, dict) and (loc.get("key") or loc.get("bucket")):
            return True
        if loc is not None and kind not in ("s3", "gcs", "raw"):
            return True
    return False


def clean(path: str, where: str) -> str:
    """Argo's ``CleanPath``: an absolute path without ``..`` segments."""
    if not path.startswith("/"):
        raise ArtifactError(f"{where}: path {path!r} is not absolute")
    if ".." in path.split("/"):
        raise ArtifactError(f"{where}: path {path!r} must not contain '..'")
    return "/" + "/".join(p for p in path.split("/") if p and p != ".")


def _covered(path: str, mounts: Sequence[Mount]) -> bool:
    return any(
        path == m.target.rstrip("/") or path.startswith(m.target.rstrip("/") + "/") for m in mounts
    )


def new_entry(path: str) -> str | None:
    """The first component of ``path`` the host does not have (the entry a pod creates in
    its image's filesystem), or None when the whole path, or a symlink on its way, is the
    host's."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        if os.path.islink(current):
            return None
        if not os.path.lexists(current):
            return current
    return None


def anchored(outputs: Mapping[str, Any], cwd: str) -> dict[str, Any]:
    """``outputs`` with each relative path resolved against the main container's working
    folder ``cwd``, as Argo reads it: the emissary, which runs in the container's working
    folder, opens a parameter's ``valueFrom.path`` and stats an artifact's ``path`` as given
    (cmd/argoexec/commands/emissary.go saveParameter ``os.Open(filepath.Clean(srcPath))``,
    saveArtifact ``os.Stat(srcPath)``), and Argo's validation requires neither to be absolute
    (Artifact.CleanPath only refuses ``..``)."""

    def absolute(path: Any) -> Any:
        text = str(path)
        if not text or text.startswith("/") or "{{" in text:
            return path
        return posixpath.join(cwd, text)

    out = dict(outputs)
    if out.get("artifacts"):
        out["artifacts"] = [
            {**a, "path": absolute(a["path"])} if isinstance(a, dict) and a.get("path") else a
            for a in out["artifacts"]
        ]
    if out.get("parameters"):
        params = []
        for p in out["parameters"]:
            vf = p.get("valueFrom") if isinstance(p, dict) else None
            if isinstance(vf, dict) and vf.get("path"):
                p = {**p, "valueFrom": {**vf, "path": absolute(vf["path"])}}
            params.append(p)
        out["parameters"] = params
    return out


def output_paths(outputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The container paths a pod's outputs are read from, with the output they belong to."""
    paths = [
        (f"outputs.artifacts.{a['name']}", str(a["path"]))
        for a in outputs.get("artifacts") or []
        if a.get("path")
    ]
    paths += [
        (f"outputs.parameters.{p['name']}", str(p["valueFrom"]["path"]))
        for p in outputs.get("parameters") or []
        if (p.get("valueFrom") or {}).get("path")
    ]
    return paths


ETC_HOSTS = "/etc/hosts"
"""The one file of a pod's image filesystem a local pod has of its own, under bubblewrap:
the hosts file the kubelet would write (pods/hosts.py), which an output may read."""


def image_path_message(where: str, path: str) -> str:
    return (
        f"{where}: path {path} is in the image's filesystem, which a local pod does not have "
        "(there it is the host's, read-only, never read by the runner): write it under /tmp, "
        "an emptyDir or a volume, or at a path the host does not have"
    )


def check_output_paths(tmpl: Mapping[str, Any], where: str) -> None:
    """The check :func:`prepare_pod` makes, before running, for literal output paths."""
    if "containerSet" in tmpl:
        # the outputs are read in the main container's view: its mounts and the set's
        cs = tmpl["containerSet"] or {}
        main: dict[str, Any] = next(
            (c for c in cs.get("containers") or [] if c.get("name") == "main"), {}
        )
        mounts_of = [*(main.get("volumeMounts") or []), *(cs.get("volumeMounts") or [])]
    else:
        kind = "script" if "script" in tmpl else "container"
        if kind not in tmpl:
            return
        mounts_of = list((tmpl[kind] or {}).get("volumeMounts") or [])
    targets = ["/tmp"]
    targets += [str(vm.get("mountPath") or "") for vm in mounts_of]
    targets += [
        str(a.get("path"))
        for a in (tmpl.get("inputs") or {}).get("artifacts") or []
        if a.get("path")
    ]
    mounts = [Mount(Path("/"), t.rstrip("/") or "/") for t in targets if t]
    for what, path in output_paths(tmpl.get("outputs") or {}):
        if "{{" in path or not path.startswith("/"):
            continue
        try:
            path = clean(path, what)
        except ArtifactError as exc:
            raise_(f"{where}: {exc}")
        if path == ETC_HOSTS:
            continue  # the pod's own file under bubblewrap (pods/hosts.py); remap refuses it
        if not _covered(path, mounts) and new_entry(path) is None:
            raise_(image_path_message(f"{where}: {what}", path))
