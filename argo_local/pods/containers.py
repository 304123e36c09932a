"""The containers of a pod as local processes: for each container (main, init, sidecar, a
containerSet's members, an exec probe's command) its mounts, environment, working folder and
argv, wrapped in a bubblewrap namespace of its own or remapped to host paths; the main
container's view with its input artifacts placed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from argo_local.expr import params
from argo_local.model import checks
from argo_local.model.images import of_image
from argo_local.model.nodes import Node
from argo_local.model.spec import SpecError, check_host_aliases
from argo_local.pods import artifacts, daemons, hosts, safepath, sandbox
from argo_local.pods.podenv import EnvRun, PodEnvironment, remap_container, working_dir


class ContainerRun(EnvRun, Protocol):
    """What a pod's containers need of their run, besides the pod's environment."""

    artifact_repository: Path
    code: Path
    mode: str
    podenv: PodEnvironment


@dataclass
class Pod:
    """What every container of one attempt shares."""

    node: Node
    name: str
    node_id: str
    dir: Path
    tmpl: dict[str, Any]
    where: str
    files: artifacts.PodFiles | None = None  # set for the main container (artifacts.py)
    scope: dict[str, str] = field(default_factory=dict)  # resolves its volumes (podenv.py)


@dataclass
class Process:
    """One container of a pod as a local process: what runs, and where it writes."""

    name: str
    argv0: str
    cmd: list[str]
    env: dict[str, str]
    cwd: str | None
    mounts: list[sandbox.Mount]
    stdout: Path
    stderr: Path
    files: artifacts.PodFiles | None = None  # the main container's artifacts and view
    tty: bool = False  # stdin is a terminal (the container's ``tty``)


class Containers:
    """Makes the processes of one run's pods (:class:`Process`), given the run and how its
    pods' secrets are looked up."""

    def __init__(self, run: ContainerRun, secret: Callable[[str, str], str | None]) -> None:
        self.run = run
        self.secret = secret

    def user_containers(
        self,
        tmpl: dict[str, Any],
        main: dict[str, Any],
        field: str,
        scope: dict[str, str],
        where: str,
    ) -> list[dict[str, Any]]:
        """A pod's init containers or sidecars, substituted, with ``mirrorVolumeMounts`` applied
        (the main container's mounts appended, as workflowpod.go mirrorVolumeMounts does)."""
        out = []
        for i, raw in enumerate(tmpl.get(field) or []):
            u = params.substitute(dict(raw), scope, f"{where}.{field}[{i}]")
            if not u.get("name"):
                raise SpecError(f"{where}.{field}[{i}]: every container needs a name")
            if u.pop("mirrorVolumeMounts", False):
                own = {str(m.get("mountPath")) for m in u.get("volumeMounts") or []}
                mirrored = [
                    m for m in main.get("volumeMounts") or [] if str(m["mountPath"]) not in own
                ]
                u["volumeMounts"] = [*(u.get("volumeMounts") or []), *mirrored]
            out.append(u)
        return out

    def container_set(
        self,
        pod: Pod,
        cs: dict[str, Any],
        tmp_dir: Path,
        inputs: list[dict[str, Any]],
        outputs: dict[str, Any],
    ) -> tuple[list[tuple[Process, list[str]]], dict[str, Any]]:
        """A containerSet's containers, each a process with the set's ``volumeMounts`` added
        and its ``dependencies`` (docs/container-set-template.md); and the dict whose mounts
        ``mirrorVolumeMounts`` copies (the container named main, else the set's mounts). The
        artifacts are the main container's, as a container template's are (its view is made
        by artifacts.prepare_pod, its inputs placed there: workflowpod.go
        addInputArtifactsVolumes mounts them in main only)."""
        shared = list(cs.get("volumeMounts") or [])
        members = []
        mirror: dict[str, Any] = {"volumeMounts": shared}
        for raw in cs.get("containers") or []:
            c = dict(raw)
            deps = [str(d) for d in c.pop("dependencies", None) or []]
            c["volumeMounts"] = [*(c.get("volumeMounts") or []), *shared]
            name = str(c["name"])
            tmp = tmp_dir if name == "main" else self.own_tmp(pod, c)
            files = None
            if name == "main":
                mirror = c
                if inputs or outputs.get("artifacts"):
                    files = self.artifact_view(pod, c, tmp, inputs, outputs)
            members.append((self.container(pod, c, "container", name, tmp, files), deps))
        return members, mirror

    def artifact_view(
        self,
        pod: Pod,
        c: dict[str, Any],
        tmp_dir: Path,
        inputs: list[dict[str, Any]],
        outputs: dict[str, Any],
    ) -> artifacts.PodFiles:
        """The main container's view with its input artifacts placed and the folders its
        outputs need (artifacts.prepare_pod, stage_inputs)."""
        pod.files = artifacts.prepare_pod(
            self.run.mode,
            inputs,
            outputs,
            self.run.podenv.mounts(pod.tmpl, c, pod.dir, tmp_dir, pod.where, pod.scope),
            pod.dir,
            pod.where,
        )
        artifacts.stage_inputs(
            self.run.artifact_repository, inputs, pod.files, self.secret, pod.where
        )
        return pod.files

    def main_working_dir(self, c: dict[str, Any], kind: str) -> str:
        """The working folder of a pod's main container (``c``: the template's container,
        script, or containerSet whose member named main is the main container)."""
        if kind == "containerSet":
            members = c.get("containers") or []
            c = next((m for m in members if isinstance(m, dict) and m.get("name") == "main"), {})
        return working_dir(c, self.run.options.image_workdirs())

    def own_tmp(self, pod: Pod, container: dict[str, Any]) -> Path:
        """Each container has its own image, so its own /tmp: only volumes are shared."""
        path = pod.dir / "containers" / str(container["name"]) / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def container(
        self,
        pod: Pod,
        c: dict[str, Any],
        kind: str,
        name: str,
        tmp_dir: Path,
        files: artifacts.PodFiles | None = None,
    ) -> Process:
        """One container of the pod as a command line: its mounts, environment and argv, in
        a bubblewrap namespace of its own (the network, like a pod's, is shared). ``files``:
        the main container's view with its artifacts (artifacts.prepare_pod)."""
        where = pod.where if name == "main" else f"{pod.where}: container {name}"
        if files is not None:
            mounts = files.present()
        else:
            mounts = self.run.podenv.mounts(pod.tmpl, c, pod.dir, tmp_dir, where, pod.scope)
        layers = dict(files.layers) if files is not None else {}
        # Every container starts in a working folder of its pod's own (its image's WORKDIR,
        # ``/`` when unknown), never in one the run's pods share: relative writes of two pods
        # must not meet, as they never do on a cluster.
        root = pod.dir / "root" if name == "main" else pod.dir / "containers" / name / "root"
        wd = working_dir(c, self.run.options.image_workdirs())
        workdir, host_cwd, layer = working_folder(wd, mounts, root, where)
        layers.update(layer)
        if self.run.mode == "remap" and hosts.aliases(self.run.spec, pod.tmpl):
            raise SpecError(hosts.REMAP_REFUSAL.format(where=where))
        if self.run.mode == "remap":
            # Only the template's own strings: the runner's paths (sys.executable,
            # PYTHONPATH) are host paths already, and may lie under a mount target.
            c = remap_container(c, mounts)
        env = self.run.podenv.environment(
            c, where, pod_name=pod.name, node=pod.node, node_id=pod.node_id
        )
        env["ARGO_CONTAINER_NAME"] = name
        argv = self.run.podenv.argv(c, kind, pod.dir, where)
        if self.run.mode == "bwrap":
            keep = [
                (self.run.work_dir, True),
                (pod.dir, False),
                (Path(sys.prefix), False),
                (Path(sys.base_prefix), False),
                *((p, False) for p in self.run.import_paths if p.exists()),
                # --image-path folders: the image's programs, wherever they lie (even below /tmp)
                *((Path(d), False) for d in of_image(c.get("image"), self.run.options.image_paths)),
            ]
            if any(m.target == str(self.run.code) for m in mounts):
                self.run.warn_once(
                    f"code folder {self.run.code} is where pods mount a volume, so its files are "
                    "hidden in them: run from (or pass --code) the project's own folder"
                )
            etc_hosts = hosts.write(pod.dir, pod.name, self.host_aliases(pod))
            cmd = sandbox.bwrap_command(argv, mounts, keep, workdir, layers, etc_hosts)
            cwd = None
        else:
            cmd = argv
            env["TMPDIR"] = str(tmp_dir)
            cwd = str(host_cwd)
        logs = pod.dir if name == "main" else pod.dir / "containers" / name
        return Process(
            name,
            argv[0],
            cmd,
            env,
            cwd,
            mounts,
            logs / "stdout.log",
            logs / "stderr.log",
            files,
            tty=bool(c.get("tty")),
        )

    def host_aliases(self, pod: Pod) -> list[dict[str, Any]]:
        """The pod's ``hostAliases`` (the workflow's, then the template's), substituted."""
        entries = params.substitute(hosts.aliases(self.run.spec, pod.tmpl), pod.scope, pod.where)
        check_host_aliases(entries, pod.where)
        return list(entries)

    def probes(
        self,
        pod: Pod,
        main: dict[str, Any],
        tmp_dir: Path,
        sides: list[Process],
        where: str,
    ) -> list[daemons.Readiness]:
        """The readiness probes of a daemon's containers (Argo daemons a pod once every
        container is ready: operator.go assessNodeStatus)."""
        found = []
        containers = [(main, "main", tmp_dir)]
        for i, s in enumerate(pod.tmpl.get("sidecars") or []):
            containers.append(
                (dict(s), sides[i].name, pod.dir / "containers" / sides[i].name / "tmp")
            )
        for c, name, tmp in containers:
            probe = c.get("readinessProbe")
            if probe is None:
                continue
            pwhere = f"{where}: container {name}: readinessProbe"
            checks.check_probe(probe, pwhere)
            ports = {
                str(p["name"]): int(p["containerPort"])
                for p in c.get("ports") or []
                if isinstance(p, dict) and p.get("name") and p.get("containerPort") is not None
            }

            def run_exec(
                argv: list[str],
                timeout: float,
                c: dict[str, Any] = c,
                name: str = name,
                tmp: Path = tmp,
            ) -> int:
                # The command runs in the container's own view: its mounts, env and /tmp.
                probe_c = {**c, "command": argv, "args": []}
                proc = self.container(pod, probe_c, "container", name, tmp)
                try:
                    done = subprocess.run(
                        proc.cmd,
                        env=proc.env,
                        cwd=proc.cwd,
                        timeout=timeout,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    return 1
                return done.returncode

            found.append(daemons.Readiness(probe, ports, run_exec))
        return found


def working_folder(
    path: str, mounts: list[sandbox.Mount], root: Path, where: str
) -> tuple[str, Path, dict[str, Path]]:
    """A container's working folder (``workingDir``, else its image's WORKDIR, ``/`` when
    unknown: :func:`~argo_local.pods.podenv.working_dir`): its path in the pod, the host folder behind it, and the layer to add.

    Kubernetes starts the container there (core/v1 Container.workingDir: "If not specified,
    the container runtime's default will be used, which might be configured in the container
    image"), in a root filesystem that is writable and the container's own. A path under one
    of the pod's mounts (its /tmp, a volume, an input artifact) is that folder. Any other is a
    path of its image: it becomes a folder of the container's own (``root``, below its pod
    folder) layered over the host's (:func:`sandbox.own_folder_layer`), so a relative
    ``open("result.txt", "w")`` in an image whose WORKDIR is ``/`` creates the ``/result.txt``
    an output declares, seen by no other pod and never written to the host's root. A missing
    folder is created, so the process can start there.
    """
    if not path.startswith("/"):
        # the container runtime refuses a relative cwd (OCI runtime spec: process.cwd
        # "MUST be an absolute path")
        raise SpecError(f"{where}: workingDir {path!r} is not an absolute path")
    try:
        path = artifacts.clean(path, f"{where}: workingDir")
    except artifacts.ArtifactError as exc:
        raise SpecError(str(exc)) from None
    mount = next(
        (
            m
            for m in sorted(mounts, key=lambda m: len(m.target), reverse=True)
            if path == m.target.rstrip("/") or path.startswith(m.target.rstrip("/") + "/")
        ),
        None,
    )
    if mount is not None:
        host = sandbox.host_path(path, mounts)
        if not mount.readonly:
            rest = path[len(mount.target.rstrip("/")) :].strip("/")
            try:
                # an earlier pod may have left a link on the way: never made outside the mount
                host = safepath.subfolder(mount.host, rest) if rest else host
            except safepath.EscapeError as exc:
                raise SpecError(f"{where}: workingDir {path}: {exc}") from None
            host.mkdir(parents=True, exist_ok=True)
        return path, host, {}
    try:
        layer = sandbox.own_folder_layer(path)
    except sandbox.PodPathError as exc:
        raise SpecError(f"{where}: workingDir {exc}") from None
    host = root / path.lstrip("/")
    host.mkdir(parents=True, exist_ok=True)
    return path, host, {layer: root / layer.lstrip("/")}
