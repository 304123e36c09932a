"""The pod's environment: its mounts (volumes, emptyDirs, /tmp), environment variables
(what the controller adds, secrets from the local environment or .env), and argv (command,
args, script file), as the pod would see them in a cluster."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from argo_local.embedding import Secretless
from argo_local.expr import params
from argo_local.model.configmaps import ConfigMaps
from argo_local.model.images import PYTHON_NAMES, entrypoint_of, image_key, image_search_path
from argo_local.model.nodes import Node
from argo_local.model.options import Options
from argo_local.model.secretrefs import read_dotenv, secret_volume_keys
from argo_local.model.spec import SpecError
from argo_local.pods import safepath, sandbox
from workers import redaction


class EnvRun(Protocol):
    """What a pod's environment needs of its run."""

    name: str
    spec: dict[str, Any]
    scope: dict[str, str]
    config_maps: ConfigMaps
    import_paths: list[Path]
    options: Options
    secret_values: set[str]
    volumes: dict[str, Path]
    work_dir: Path

    def volume_dir(self, vname: str) -> Path: ...
    def warn(self, text: str) -> None: ...
    def warn_once(self, message: str) -> None: ...


# The environment a pod would inherit from its image, not from the user's shell.
_BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "SYSTEMROOT",
    "COVERAGE_PROCESS_START",
)

SECRETS_DIR = "secrets"
"""A pod folder's subfolder for its secret volumes' files, removed when the pod ends."""


class PodEnvironment:
    """What each pod of one :class:`~argo_local.engine.run.Run` sees."""

    def __init__(self, run: EnvRun) -> None:
        self.run = run
        self._dotenv: dict[str, str] | None = None

    def mounts(
        self,
        tmpl: Mapping[str, Any],
        container: Mapping[str, Any],
        pod_dir: Path,
        tmp_dir: Path,
        where: str,
        scope: Mapping[str, str] | None = None,
    ) -> list[sandbox.Mount]:
        """The container's mounts; ``scope`` resolves ``{{...}}`` in a configMap or secret
        volume (the controller substitutes the workflow's volumes with the scope of the step or
        task that creates the pod, then with the pod's globals and inputs)."""
        volumes = {v["name"]: v for v in self.run.spec.get("volumes") or []}
        volumes.update({v["name"]: v for v in tmpl.get("volumes") or []})
        mounts = [sandbox.Mount(tmp_dir, "/tmp")]
        for vm in container.get("volumeMounts") or []:
            vname, target = str(vm["name"]), str(vm["mountPath"]).rstrip("/") or "/"
            read_only = bool(vm.get("readOnly"))
            projected = volumes.get(vname) or {}
            if "configMap" in projected or "secret" in projected:
                # The kubelet mounts both read-only whatever the volumeMount says.
                host = self.projected(projected, pod_dir, scope or self.run.scope, where)
                read_only = True
            elif vname in volumes and "emptyDir" in volumes[vname]:
                # One folder per emptyDir and pod, shared by its containers; the main
                # container's /tmp folder when that is where the main container mounts it.
                main = tmpl.get("script") or tmpl.get("container") or {}
                at_tmp = any(
                    str(m.get("name")) == vname and str(m.get("mountPath")).rstrip("/") == "/tmp"
                    for m in main.get("volumeMounts") or []
                )
                host = pod_dir / "tmp" if at_tmp else pod_dir / "emptydir" / vname
            elif vname in self.run.volumes:
                host = self.run.volumes[vname]
            elif vname in volumes and "persistentVolumeClaim" in volumes[vname]:
                host = self.run.volumes.setdefault(vname, self.run.volume_dir(vname))
            else:
                raise SpecError(f"{where}: volumeMounts[{vname}]: no volume named {vname!r}")
            if vm.get("subPath"):
                sub = str(vm["subPath"])
                # Kubernetes refuses these when it validates the pod (validation.go
                # validateLocalDescendingPath): a subPath stays below its volume.
                if sub.startswith("/") or ".." in sub.split("/"):
                    raise SpecError(
                        f"{where}: volumeMounts[{vname}].subPath {sub!r}: must be a relative "
                        "path without '..' (Kubernetes rejects the pod)"
                    )
                host.mkdir(parents=True, exist_ok=True)
                try:
                    # An earlier pod may have made it a link: followed only inside the volume.
                    host = safepath.subfolder(host, sub)
                except safepath.EscapeError as exc:
                    raise SpecError(f"{where}: volumeMounts[{vname}].subPath {exc}") from None
            if not host.exists():
                host.mkdir(parents=True)
            mounts = [m for m in mounts if m.target != target]
            mounts.append(sandbox.Mount(host, target, read_only))
        return mounts

    def projected(
        self, volume: Mapping[str, Any], pod_dir: Path, scope: Mapping[str, str], where: str
    ) -> Path:
        """A ``configMap`` or ``secret`` volume as the kubelet fills it: one file per key (or
        per ``items`` entry, at its ``path``), mode ``defaultMode`` (0644) or the item's own.
        Written once per pod; a secret's folder is removed when the pod ends (pods.py)."""
        vname = str(volume["name"])
        kind = "configMap" if "configMap" in volume else "secret"
        where = f"{where}: volumes[{vname}].{kind}"
        source = params.substitute(dict(volume[kind] or {}), scope, where)
        folder = pod_dir / ("configmaps" if kind == "configMap" else SECRETS_DIR) / vname
        if folder.is_dir():
            return folder
        if kind == "configMap":
            files = self.config_map_files(source, where)
        else:
            files = self.secret_files(source, where)
        default_mode = file_mode(source.get("defaultMode"), 0o644, f"{where}.defaultMode")
        folder.mkdir(parents=True, mode=0o700)
        items = source.get("items")
        wanted = (
            [(str(i["key"]), str(i.get("path") or i["key"]), i.get("mode")) for i in items]
            if items
            else [(k, k, None) for k in files]
        )
        for key, rel, mode in wanted:
            if key not in files:
                continue  # an optional source without it (checked by the *_files methods)
            if rel.startswith("/") or ".." in rel.split("/"):
                raise SpecError(f"{where}.items[{key}].path {rel!r}: must be relative, no '..'")
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[key])
            path.chmod(file_mode(mode, default_mode, f"{where}.items[{key}].mode"))
        return folder

    def config_map_files(self, source: Mapping[str, Any], where: str) -> dict[str, bytes]:
        name = str(source.get("name") or "")
        cm = self.run.config_maps.get(name)
        optional = bool(source.get("optional"))
        if cm is None:
            if optional:
                return {}  # an optional volume of a missing ConfigMap is an empty folder
            raise SpecError(
                f"{where}: configmap {name!r} not found (no kind: ConfigMap document of that "
                f"name in {self.run.config_maps.where()}): the kubelet would not start the pod"
            )
        files = cm.files()
        for item in source.get("items") or []:
            if str(item.get("key")) not in files and not optional:
                raise SpecError(
                    f"{where}: configmap {name!r} ({cm.source}) has no key {item.get('key')!r}: "
                    "the kubelet would not start the pod"
                )
        return files

    def secret_files(self, source: Mapping[str, Any], where: str) -> dict[str, bytes]:
        """A Secret's keys from the environment or ``.env`` (``<SECRET>_<KEY>``), as
        secretKeyRef reads them: the keys ``items`` names, else those the workflow names."""
        name = str(source.get("secretName") or "")
        keys = secret_volume_keys(source, self.run.spec)
        files: dict[str, bytes] = {}
        for key in keys:
            value, looked = self.secret(name, key, "")
            if value is None:
                if source.get("optional"):
                    continue
                raise SpecError(
                    f"{where}: secret {name}/{key} not found locally: set {looked[0]} in the "
                    "environment or .env"
                )
            self.add_secret(value, f"secret {name}/{key}")
            files[key] = value.encode()
        return files

    def environment(
        self,
        container: Mapping[str, Any],
        where: str,
        *,
        pod_name: str,
        node: Node,
        node_id: str | None = None,
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env["PATH"] = image_search_path(container.get("image"), self.run.options.image_paths)
        pythonpath = [str(p) for p in self.run.import_paths]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(pythonpath))
        # What Argo's controller adds to every main container (workflowpod.go; the workflow
        # name since 4.1), so a step sees the same names here as in a cluster.
        env.update(
            ARGO_NODE_ID=node_id or node.id,
            ARGO_CONTAINER_NAME="main",
            ARGO_WORKFLOW_NAME=self.run.name,
        )
        # An image ships compiled bytecode; a sandboxed pod cannot write __pycache__ next to a
        # read-only source tree, so without this every pod compiled every module again (~25%
        # of a trivial shard's CPU). One cache per run, in its writable work folder.
        env["PYTHONPYCACHEPREFIX"] = str(self.run.work_dir / "pycache")
        # envFrom first: a variable of env wins over one of envFrom (as in Kubernetes).
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or {}
            cm = self.run.config_maps.get(str(ref.get("name") or ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise SpecError(
                    f"{where}: envFrom: configmap {ref.get('name')!r} not found (no kind: "
                    f"ConfigMap document of that name in {self.run.config_maps.where()})"
                )
            for k, v in cm.data.items():
                env[f"{source.get('prefix') or ''}{k}"] = v
        for e in container.get("env") or []:
            name = str(e["name"])
            if "value" in e:
                env[name] = params.render(e["value"])
                continue
            cm_ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if cm_ref is not None:
                cm = self.run.config_maps.get(str(cm_ref.get("name") or ""))
                key = str(cm_ref.get("key") or "")
                if cm is not None and key in cm.data:
                    env[name] = cm.data[key]
                elif not cm_ref.get("optional"):
                    missing = (
                        f"configmap {cm_ref.get('name')!r} not found (no kind: ConfigMap document "
                        f"of that name in {self.run.config_maps.where()})"
                        if cm is None
                        else f"couldn't find key {key} in ConfigMap {cm.name} ({cm.source})"
                    )
                    raise SpecError(f"{where}: env {name}: {missing}")
                continue
            field_ref = (e.get("valueFrom") or {}).get("fieldRef")
            if field_ref is not None:
                path = str(field_ref.get("fieldPath"))
                if path != "metadata.name":
                    raise SpecError(
                        f"{where}: env {name}: fieldRef {path}: only metadata.name (the pod's "
                        "name) has a local value"
                    )
                env[name] = pod_name
                continue
            ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or {}
            if not ref:
                env[name] = ""
                continue
            value, looked = self.secret(str(ref.get("name")), str(ref.get("key")), name)
            if value is None:
                # The embedding product may have a value for it (workers: one SQLite file for
                # every pod of the run when its database secret is not found).
                secret = f"{ref.get('name')}/{ref.get('key')}"
                unset = Secretless(name, secret, ", ".join(looked), self.run.work_dir)
                default = self.run.options.embedding.secretless_env(unset)
                if default is not None:
                    env[name], note = default
                    self.run.warn_once(note)
                    continue
                if not ref.get("optional"):
                    self.run.warn(
                        f"{where}: env {name}: secret {ref.get('name')}/{ref.get('key')} not found "
                        f"locally (looked for {', '.join(looked)} in the environment and .env): "
                        "left unset, the step's embedded default applies"
                    )
                continue
            self.add_secret(value, f"secret {ref.get('name')}/{ref.get('key')}")
            env[name] = value
        return env

    def add_secret(self, value: str, what: str) -> None:
        """Remember a secret's value (and a URL's password) for redaction; warn if too short."""
        found = {value, *redaction.secret_values_of_url(value)}
        self.run.secret_values.update(found)
        if redaction.too_short(found):
            self.run.warn_once(
                f"{what}: shorter than {redaction.MIN_SECRET_LEN} characters, so it is masked "
                "only in URL password and password= positions of what the runner writes"
            )

    def secret(self, secret: str, key: str, env_name: str) -> tuple[str | None, list[str]]:
        """A secret's value from ``<SECRET>_<KEY>`` or the container's own env var name."""
        names = [f"{secret}_{key}".upper().replace("-", "_").replace(".", "_"), env_name]
        for n in names:
            if os.environ.get(n):
                return os.environ[n], names
        dotenv = self.dotenv()
        for n in names:
            if dotenv.get(n):
                return dotenv[n], names
        return None, names

    def dotenv(self) -> dict[str, str]:
        if self._dotenv is None:
            self._dotenv = read_dotenv(self.run.options.env_file)
        return self._dotenv

    def argv(self, container: Mapping[str, Any], kind: str, pod_dir: Path, where: str) -> list[str]:
        command = [str(a) for a in container.get("command") or []]
        args = [str(a) for a in container.get("args") or []]
        if kind == "script":
            # no command: the image's ENTRYPOINT when --entrypoint names it (argosay's `args`
            # scripts), else sh, which every image the examples use has
            command = (
                command
                or entrypoint_of(container.get("image"), self.run.options.entrypoints)
                or ["sh"]
            )
            source = str(container.get("source") or "")
            if source:
                # As the controller builds it (executeScript): the staged script, mode 0755
                # (executor StageFiles), is the last argument, after the template's args.
                script = pod_dir / "script"
                script.write_text(source)
                script.chmod(0o755)
                argv = [*command, *args, str(script)]
            else:
                self.run.warn(
                    f"{where}: script.source is empty: nothing is appended to the command "
                    "(as in Argo; a container template says so better)"
                )
                argv = [*command, *args]
        else:
            command = command or entrypoint_of(container.get("image"), self.run.options.entrypoints)
            argv = [*command, *args]
            if not command:
                self.run.warn(
                    f"{where}: no container.command: args run as the command (image has no ENTRYPOINT)"
                )
        if not argv:
            raise SpecError(f"{where}: container has neither command nor args")
        if os.path.basename(argv[0]) in PYTHON_NAMES:
            argv[0] = sys.executable
        return argv


def file_mode(value: Any, default: int, where: str) -> int:
    """A volume file's mode: an integer (YAML's 0644 is octal already, JSON's 420 decimal)."""
    if value is None or value == "":
        return default
    try:
        mode = (
            int(value) if not isinstance(value, str) else int(value, 8 if value[:1] == "0" else 10)
        )
    except ValueError:
        raise SpecError(f"{where}: {value!r} is not a file mode") from None
    if not 0 <= mode <= 0o777:
        raise SpecError(f"{where}: {value!r} is not a file mode between 0 and 0777")
    return mode


def remap_container(c: dict[str, Any], mounts: list[sandbox.Mount]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        return sandbox.remap_text(v, mounts) if isinstance(v, str) else v

    out = dict(c)
    for key in ("command", "args"):
        if out.get(key):
            out[key] = [r(a) for a in out[key]]
    if out.get("source"):
        out["source"] = r(out["source"])
    out["env"] = [
        {**e, "value": r(e["value"])} if "value" in e else e for e in out.get("env") or []
    ]
    return out


def working_dir(container: Mapping[str, Any], workdirs: Mapping[str, str]) -> str:
    """A container's working folder as Kubernetes gives it: its ``workingDir``, else its
    image's WORKDIR when ``workdirs`` (``--workdir``, the embedding's own images) names it,
    else ``/``: the container runtime's default for an image without WORKDIR (alpine,
    busybox, python, debian and ubuntu set none), a folder of the pod's own either way."""
    if container.get("workingDir"):
        return str(container["workingDir"])
    key = image_key(container.get("image"), workdirs)
    return workdirs[key] if key is not None else "/"
