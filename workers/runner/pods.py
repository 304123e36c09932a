"""The pod runtime: one local process per container of an attempt, each in its own session so
a deadline or a stopped run kills its whole process group; init containers in order before the
main one, sidecars beside it until it exits; retries with backoff and ``retryStrategy``;
``activeDeadlineSeconds`` and ``timeout``; a daemon's attempts in a thread of their own
(:mod:`daemons`); stderr read live for progress events; exit codes and outputs turned into a
phase."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.runner import artifacts, daemons, dataflow, expr, exprlang, params, sandbox
from workers.runner.nodes import (
    ERROR,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    node_id_of,
)
from workers.runner.params import ParamError
from workers.runner.podenv import (
    PACKAGE_ROOT,
    SECRETS_DIR,
    of_image,
    remap_container,
    working_dir,
)
from workers.runner.spec import Document, SpecError, seconds

if TYPE_CHECKING:
    from workers.runner.engine import Run


class PodRuntime:
    """Starts, waits for and retries the pods of one :class:`~workers.runner.engine.Run`."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def run_pod(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        prior = self.run.resumed.get(node.name)
        if prior is not None:
            # As argo retry keeps a succeeded node: its outputs feed the steps after it.
            with self.run.lock:
                node.reused = True
                node.outputs = dict(prior.outputs)
                node.started = prior.started or node.started
            self.run.finish(node, SUCCEEDED, "succeeded in the run this one resumes (kept)")
            if prior.finished is not None:
                node.finished = prior.finished
            return
        if not tmpl.get("daemon"):
            self._attempts(node, doc, tmpl, scope, where, None)
            return
        # A daemon: its attempts run in a thread of their own; the step returns (and the
        # steps after it start) once it is ready, and its scope's end kills it (daemons.py).
        daemon = daemons.Daemon(node, daemons.boundary_of(self.run, node))

        def life() -> None:
            try:
                self._attempts(node, doc, tmpl, scope, where, daemon)
            except Cancelled:
                self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
            except (ParamError, SpecError, expr.ExprError) as exc:
                self.run.finish(node, ERROR, str(exc))
            except Exception as exc:  # a runner bug must end the node, never leave it Running
                self.run.finish(node, ERROR, f"internal error {type(exc).__name__}: {exc}")
            finally:
                daemon.mark_done()
            if node.daemoned:  # its step returned long ago: the metrics are computed here
                outputs = node.outputs if node.phase == SUCCEEDED else {}
                self.run.template_metrics(
                    tmpl,
                    node,
                    where,
                    node.phase,
                    node.duration or 0.0,
                    len(node.attempts) - 1,
                    outputs or dataflow.declared_defaults(tmpl),
                )

        daemon.thread = threading.Thread(target=life, name=f"daemon {node.name}", daemon=True)
        daemon.thread.start()
        if daemon.wait_started():
            self.run.daemons.add(daemon)
            self.run.progress("daemoned", node)
            return
        daemon.thread.join()

    def _attempts(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        daemon: daemons.Daemon | None,
    ) -> None:
        """The node's attempts as its ``retryStrategy`` allows; the node ends with the last."""
        # `retryStrategy: {}` is a strategy (an empty one), not none
        retried = tmpl.get("retryStrategy") is not None
        rs = tmpl.get("retryStrategy") or {}
        # The controller substitutes the whole template, retryStrategy included, before it reads
        # it: {{inputs.parameters.X}} works in limit and expression alike.
        rs = params.substitute(dict(rs), scope, f"{where}.retryStrategy")
        # No limit is no limit: processNodeRetries stops on "No more retries left" only when
        # retryStrategy.limit is set, so `retryStrategy: {}` retries until the pod succeeds.
        limit: int | None = None
        if rs.get("limit") is not None:
            limit = params.integer(rs["limit"], f"{where}.retryStrategy.limit")
        policy = rs.get("retryPolicy") or ("Always" if rs.get("expression") else "OnFailure")
        if policy not in ("Always", "OnFailure", "OnError", "OnTransientError"):
            raise SpecError(f"{where}: retryStrategy.retryPolicy {policy!r} is not an Argo policy")
        if policy == "OnTransientError":
            self.run.warn(f"{where}: retryPolicy OnTransientError retries Error nodes locally")
        backoff = rs.get("backoff") or {}
        node.retry = retried
        first = time.time()
        attempt: Attempt | None = None
        n = -1
        while True:
            n += 1
            self.run.check_cancel()
            if daemon is not None and daemon.released:
                break
            delay = 0.0
            if n > 0 and backoff:
                delay = _seconds(backoff.get("duration", 0)) * float(
                    backoff.get("factor", 1) or 1
                ) ** (n - 1)
                if backoff.get("cap"):
                    delay = min(delay, _seconds(backoff["cap"]))
                max_d = backoff.get("maxDuration")
                if max_d and time.time() + delay - first > _seconds(max_d):
                    node.message = f"retries stopped: backoff.maxDuration {max_d} reached"
                    break
                if daemon is not None and daemon.wait_released(delay):
                    break
                if self.run.cancel.wait(0 if daemon is not None else delay):
                    raise Cancelled()
            attempt = self.run_attempt(node, doc, tmpl, scope, where, n, daemon)
            attempt.backoff_s = delay
            if attempt.phase == SUCCEEDED or not retried:
                break
            if not _should_retry(policy, None, attempt, where):
                break
            if limit is not None and n >= limit:
                node.message = "No more retries left"
                break
            if not _should_retry(policy, rs.get("expression"), attempt, where):
                node.message = "retryStrategy.expression evaluated to false"
                break
            # Argo also computes the metrics of an attempt it retries (the retry node's last
            # child), with that attempt's status and duration.
            self.run.template_metrics(
                tmpl,
                node,
                where,
                attempt.phase,
                (attempt.finished or attempt.started) - attempt.started,
                n,
                dataflow.declared_defaults(tmpl),
            )
            self.run.progress("retry", node)
        if daemon is not None and daemon.released and node.daemoned:
            # Its scope ended while it ran or waited to retry: Argo's killDaemonedChildren
            # marks a daemoned node Succeeded whatever its pod does next.
            self.run.finish(node, SUCCEEDED, "")
            return
        assert attempt is not None
        self.run.finish(node, attempt.phase, node.message or attempt.message)

    def run_attempt(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        number: int,
        daemon: daemons.Daemon | None = None,
    ) -> Attempt:
        base = f"{node.name}({number})" if number else node.name
        pod_name = f"{self.run.name}-{tmpl.get('name')}-{zlib.crc32(base.encode())}"
        now = time.time()
        attempt = Attempt(number, pod_name, now, created=now)
        with self.run.lock:
            node.attempts.append(attempt)
        ascope = {**scope, "retries": str(number), "pod.name": pod_name, "node.name": node.name}
        pod_dir = self.run.run_dir / "pods" / pod_name
        tmp_dir = pod_dir / "tmp"
        if self.run.resumed:
            # The earlier run's attempt of this name left its /tmp (output files included) and
            # what it created in its image's folders: a new pod starts from its image again
            # (and so does each of its other containers).
            for old in (tmp_dir, pod_dir / "containers", pod_dir / "root"):
                if old.exists():
                    shutil.rmtree(old)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        kind = next(k for k in ("script", "container", "containerSet") if k in tmpl)
        # A retried step is a Retry node; its pods are the attempt nodes run.json lists.
        pod_node_id = node_id_of(self.run.name, f"{node.name}({number})") if node.retry else node.id
        pod = _Pod(
            node, pod_name, pod_node_id, pod_dir, tmpl, where, scope={**node.caller_scope, **ascope}
        )
        members: list[tuple[_Process, list[str]]] = []
        try:
            # Outputs first: their paths are variables of the container ({{outputs.*.path}}),
            # each evaluated once per pod (a random name in a path is the same in both).
            outputs = params.substitute(dict(tmpl.get("outputs") or {}), ascope, f"{where}.outputs")
            ascope.update(artifacts.path_scope(node.input_artifacts, outputs))
            c = params.substitute(dict(tmpl[kind]), ascope, f"{where}.{kind}")
            deadline = self._deadline(tmpl, ascope, where)
            if kind == "containerSet":
                members, c = self._container_set(pod, c, tmp_dir, node.input_artifacts, outputs)
                main = next((p for p, _ in members if p.name == "main"), None)
            else:
                # The main container's view: its mounts plus where its input artifacts go and
                # the folders its outputs need (artifacts.prepare_pod).
                files = self._artifact_view(pod, c, tmp_dir, node.input_artifacts, outputs)
                main = self._container(pod, c, kind, "main", tmp_dir, files)
            inits = [
                self._container(pod, u, "container", str(u["name"]), self._own_tmp(pod, u))
                for u in self._user_containers(tmpl, c, "initContainers", ascope, where)
            ]
            sides = [
                self._container(pod, u, "container", str(u["name"]), self._own_tmp(pod, u))
                for u in self._user_containers(tmpl, c, "sidecars", ascope, where)
            ]
            probes = self._probes(pod, c, tmp_dir, sides, where) if daemon is not None else []
        except (ParamError, SpecError, artifacts.ArtifactError) as exc:
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)
            return self._end(attempt, ERROR, None, str(exc))
        if main is not None:
            attempt.mounts = [(m.target, str(m.host)) for m in main.mounts]
        # a container set without a "main" container has no outputs (its logs are per container)
        attempt.stdout = str(pod_dir / "stdout.log")
        attempt.stderr = str(pod_dir / "stderr.log")
        self.run.progress("start", node)
        try:
            ctx = self.run.wf_limit or nullcontext()
            with ctx:
                self.run.check_cancel()
                attempt.started = time.time()
                return self._run_containers(
                    node,
                    attempt,
                    main,
                    members,
                    inits,
                    sides,
                    probes,
                    deadline,
                    outputs,
                    where,
                    daemon,
                )
        except Cancelled:
            return self._end(attempt, FAILED, None, self.run.cancel_reason or "cancelled")
        finally:
            # secret values are not left on disk once the pod is gone
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)

    def _deadline(self, tmpl: dict[str, Any], scope: dict[str, str], where: str) -> float | None:
        """``activeDeadlineSeconds`` and ``timeout``, whichever ends first: for a pod template
        Argo turns ``timeout`` into the pod's activeDeadlineSeconds (workflowpod.go)."""
        deadline: float | None = None
        raw = tmpl.get("activeDeadlineSeconds")
        if raw:
            deadline = float(params.substitute(str(raw), scope, f"{where}.activeDeadlineSeconds"))
        raw = tmpl.get("timeout")
        if raw:
            text = params.substitute(str(raw), scope, f"{where}.timeout")
            try:
                seconds = _seconds(text)
            except ParamError:
                raise ParamError(f"{where}.timeout: {text!r} is not a duration") from None
            deadline = seconds if deadline is None else min(deadline, seconds)
        return deadline

    def _user_containers(
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

    def _container_set(
        self,
        pod: _Pod,
        cs: dict[str, Any],
        tmp_dir: Path,
        inputs: list[dict[str, Any]],
        outputs: dict[str, Any],
    ) -> tuple[list[tuple[_Process, list[str]]], dict[str, Any]]:
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
            tmp = tmp_dir if name == "main" else self._own_tmp(pod, c)
            files = None
            if name == "main":
                mirror = c
                if inputs or outputs.get("artifacts"):
                    files = self._artifact_view(pod, c, tmp, inputs, outputs)
            members.append((self._container(pod, c, "container", name, tmp, files), deps))
        return members, mirror

    def _artifact_view(
        self,
        pod: _Pod,
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

    def _own_tmp(self, pod: _Pod, container: dict[str, Any]) -> Path:
        """Each container has its own image, so its own /tmp: only volumes are shared."""
        path = pod.dir / "containers" / str(container["name"]) / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _container(
        self,
        pod: _Pod,
        c: dict[str, Any],
        kind: str,
        name: str,
        tmp_dir: Path,
        files: artifacts.PodFiles | None = None,
    ) -> _Process:
        """One container of the pod as a command line: its mounts, environment and argv, in
        a bubblewrap namespace of its own (the network, like a pod's, is shared). ``files``:
        the main container's view with its artifacts (artifacts.prepare_pod)."""
        where = pod.where if name == "main" else f"{pod.where}: container {name}"
        if files is not None:
            mounts = files.present()
        else:
            mounts = self.run.podenv.mounts(pod.tmpl, c, pod.dir, tmp_dir, where, pod.scope)
        layers = dict(files.layers) if files is not None else {}
        workdir, host_cwd = str(self.run.work_dir), self.run.work_dir
        wd = working_dir(c, self.run.options.workdirs)
        if wd is not None:
            root = pod.dir / "root" if name == "main" else pod.dir / "containers" / name / "root"
            workdir, host_cwd, layer = _working_folder(wd, mounts, root, where)
            layers.update(layer)
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
                (PACKAGE_ROOT, False),
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
            cmd = sandbox.bwrap_command(argv, mounts, keep, workdir, layers)
            cwd = None
        else:
            cmd = argv
            env["TMPDIR"] = str(tmp_dir)
            cwd = str(host_cwd)
        logs = pod.dir if name == "main" else pod.dir / "containers" / name
        return _Process(
            name, argv[0], cmd, env, cwd, mounts, logs / "stdout.log", logs / "stderr.log", files
        )

    def _probes(
        self,
        pod: _Pod,
        main: dict[str, Any],
        tmp_dir: Path,
        sides: list[_Process],
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
            daemons.check_probe(probe, pwhere)
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
                proc = self._container(pod, probe_c, "container", name, tmp)
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

    def _run_containers(
        self,
        node: Node,
        attempt: Attempt,
        main: _Process | None,
        members: list[tuple[_Process, list[str]]],
        inits: list[_Process],
        sides: list[_Process],
        probes: list[daemons.Readiness],
        deadline: float | None,
        outputs: dict[str, Any],
        where: str,
        daemon: daemons.Daemon | None,
    ) -> Attempt:
        """A pod's life: its init containers one after another (a failure fails the pod),
        then the main container with its sidecars, which are killed once the main exits."""
        for init in inits:
            try:
                with open(_fresh(init.stdout), "wb") as out, open(init.stderr, "wb") as err:
                    proc = self._popen(init, out, err, daemon)
                code, timed_out = self._wait(proc, None, attempt, node, deadline, daemon)
            except OSError as exc:
                return self._end(attempt, ERROR, None, f"cannot start {init.argv0}: {exc}")
            if timed_out:
                return self._timed_out(attempt, code, deadline)
            if self.run.cancel.is_set():
                return self._end(attempt, FAILED, code, self.run.cancel_reason)
            if code != 0:
                # inferFailedReason: an init container's failure is the pod's message
                return self._end(attempt, FAILED, code, f"{init.name}: Error (exit code {code})")
        running: list[tuple[_Process, subprocess.Popen[bytes]]] = []
        side_codes: list[tuple[str, int]] = []
        failure = ""
        try:
            if members:
                for s in sides:
                    with open(_fresh(s.stdout), "wb") as sout, open(s.stderr, "wb") as serr:
                        running.append((s, self._popen(s, sout, serr, daemon)))
                code, timed_out, failure = self._run_set(node, attempt, members, deadline)
            else:
                assert main is not None
                code, timed_out = self._run_main(
                    node, attempt, main, sides, running, probes, deadline, daemon
                )
        except OSError as exc:
            return self._end(attempt, ERROR, None, str(exc))
        finally:
            side_codes = self._stop_sidecars(running, daemon)
        if timed_out:
            return self._timed_out(attempt, code, deadline)
        if daemon is not None:
            if daemon.killed_by_scope(attempt.number):
                return self._end(attempt, SUCCEEDED, code, "")
            if self.run.cancel.is_set():
                return self._end(attempt, FAILED, code, self.run.cancel_reason)
            # operator.go: a daemon's pod that succeeds is marked Failed, as daemons should
            # run until their scope ends.
            text = f"Error (exit code {code})" if code else "daemon exited (exit code 0)"
            return self._end(attempt, FAILED, code, text)
        if self.run.cancel.is_set():
            return self._end(attempt, FAILED, code, self.run.cancel_reason)
        node.outputs = {"exitCode": str(code)}
        if failure:
            return self._end(attempt, FAILED, code, failure)
        if code != 0:
            return self._end(attempt, FAILED, code, f"Error (exit code {code})")
        for name, scode in side_codes:
            # inferFailedReason: a sidecar's own failure fails the pod; 137 and 143 (killed
            # by SIGKILL or SIGTERM, as the executor kills sidecars) are ignored.
            if scode not in (0, 137, 143):
                return self._end(attempt, FAILED, code, f"{name}: Error (exit code {scode})")
        if main is None:
            return self._end(attempt, SUCCEEDED, code, "")
        # the pod's whole view: its mounts and the folders its outputs were given
        view = main.files.view if main.files is not None else main.mounts
        try:
            node.outputs.update(
                dataflow.pod_outputs(
                    attempt, outputs, view, where, self.run.warn, remapped=self.run.mode == "remap"
                )
            )
            saved = artifacts.save_outputs(
                self.run.artifact_repository,
                outputs,
                view,
                f"{self.run.name}/{attempt.pod_name}",
                main.stdout.parent / "staging",
                self.secret,
                where,
            )
        except (ParamError, artifacts.ArtifactError) as exc:
            return self._end(attempt, ERROR, code, str(exc))
        if saved:
            node.outputs["artifacts"] = saved
        return self._end(attempt, SUCCEEDED, code, "")

    def _run_main(
        self,
        node: Node,
        attempt: Attempt,
        main: _Process,
        sides: list[_Process],
        running: list[tuple[_Process, subprocess.Popen[bytes]]],
        probes: list[daemons.Readiness],
        deadline: float | None,
        daemon: daemons.Daemon | None,
    ) -> tuple[int, bool]:
        """The main container with its sidecars started first (``running`` collects them)."""
        with open(main.stdout, "wb") as out, open(main.stderr, "wb") as err:
            starting = main
            try:
                for s in sides:
                    starting = s
                    with open(_fresh(s.stdout), "wb") as sout, open(s.stderr, "wb") as serr:
                        running.append((s, self._popen(s, sout, serr, daemon)))
                starting = main
                proc = self._popen(main, out, subprocess.PIPE, daemon)
            except OSError as exc:
                raise OSError(f"cannot start {starting.argv0}: {exc}") from None
            self.run.progress("running", node)
            if daemon is not None:
                threading.Thread(
                    target=daemons.wait_ready,
                    args=(
                        daemon,
                        attempt.number,
                        probes,
                        lambda: proc.poll() is None,
                        self.run.cancel,
                    ),
                    daemon=True,
                ).start()
            code, timed_out = self._wait(proc, err, attempt, node, deadline, daemon)
            if daemon is not None:
                daemon.poke()
        return code, timed_out

    def _run_set(
        self,
        node: Node,
        attempt: Attempt,
        members: list[tuple[_Process, list[str]]],
        deadline: float | None,
    ) -> tuple[int, bool, str]:
        """A containerSet: every container a process, started once its dependencies exited
        0 (the emissary waits for them, and fails with exit code 64 when one failed); each a
        Container node under the pod node, as operator.go assessNodeStatus records them.
        Returns the main container's exit code, whether the deadline hit, and the pod's
        failure message (inferFailedReason: the main container's first, then the others)."""
        base = f"{node.name}({attempt.number})" if node.retry else node.name
        cnodes = {
            p.name: self.run.new_node(f"{base}.{p.name}", p.name, "Container", node.template, node)
            for p, _ in members
        }
        done = {p.name: threading.Event() for p, _ in members}
        codes: dict[str, int] = {}
        timed: dict[str, bool] = {}

        def one(p: _Process, deps: list[str]) -> None:
            cnode = cnodes[p.name]
            cnode.started = time.time()
            try:
                for d in deps:
                    done[d].wait()
                failed = [d for d in deps if codes.get(d) != 0]
                if failed or self.run.cancel.is_set():
                    codes[p.name] = 64
                    why = (
                        f"dependency {failed[0]!r} exited with non-zero code: {codes.get(failed[0])}"
                        if failed
                        else self.run.cancel_reason
                    )
                    self.run.finish(cnode, ERROR, f"{p.name}: Error (exit code 64): {why}")
                    return
                cnode.phase = RUNNING
                main = p.name == "main"
                with open(_fresh(p.stdout), "wb") as out, open(p.stderr, "wb") as err:
                    proc = self._popen(p, out, subprocess.PIPE if main else err, None)
                    code, timed[p.name] = self._wait(
                        proc, err if main else None, attempt, node, deadline, None
                    )
                codes[p.name] = code if code >= 0 else 128 - code
                if code == 0:
                    self.run.finish(cnode, SUCCEEDED)
                else:
                    self.run.finish(cnode, FAILED, f"{p.name}: Error (exit code {codes[p.name]})")
            except OSError as exc:
                codes[p.name] = 64
                self.run.finish(cnode, ERROR, f"{p.name}: cannot start {p.argv0}: {exc}")
            finally:
                done[p.name].set()

        threads = [
            threading.Thread(target=one, args=(p, deps), name=f"{node.name}.{p.name}", daemon=True)
            for p, deps in members
        ]
        self.run.progress("running", node)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        order = sorted(members, key=lambda m: m[0].name != "main")
        failure = next(
            (f"{p.name}: Error (exit code {codes[p.name]})" for p, _ in order if codes[p.name]),
            "",
        )
        return codes.get("main", 0), any(timed.values()), failure

    def _timed_out(self, attempt: Attempt, code: int, deadline: float | None) -> Attempt:
        return self._end(
            attempt,
            FAILED,
            code,
            f"Pod was active on the node longer than the specified deadline ({deadline:g}s)",
        )

    def _popen(
        self, p: _Process, out: Any, err: Any, daemon: daemons.Daemon | None
    ) -> subprocess.Popen[bytes]:
        """Start a container's process in its own session, registered so that a stopped run
        (and a daemon's scope) can kill its whole process group."""
        proc = subprocess.Popen(
            p.cmd, stdout=out, stderr=err, env=p.env, cwd=p.cwd, start_new_session=True
        )
        with self.run.lock:
            self.run.processes[proc.pid] = proc
            cancelled = self.run.cancel.is_set()
        if daemon is not None:
            daemon.own(proc)
        # stop() kills registered processes itself; one registered after its sweep sees the
        # flag here.
        if cancelled:
            kill(proc)
        return proc

    def _forget(self, proc: subprocess.Popen[bytes], daemon: daemons.Daemon | None) -> None:
        with self.run.lock:
            self.run.processes.pop(proc.pid, None)
        if daemon is not None:
            daemon.disown(proc)

    def _stop_sidecars(
        self,
        running: list[tuple[_Process, subprocess.Popen[bytes]]],
        daemon: daemons.Daemon | None,
    ) -> list[tuple[str, int]]:
        """Kill the sidecars once the main container exited (the executor sends SIGTERM, then
        SIGKILL) and return their exit codes, a signal's as 128 + its number."""
        for _, proc in running:
            if proc.poll() is None:
                kill(proc)
        codes = []
        for s, proc in running:
            code = proc.wait()
            self._forget(proc, daemon)
            codes.append((s.name, code if code >= 0 else 128 - code))
        return codes

    def secret(self, name: str, key: str) -> str | None:
        """A secret an artifact location names, found as env secrets are (and redacted)."""
        value, _ = self.run.podenv.secret(name, key, "")
        if value is not None:
            self.run.podenv.add_secret(value, f"secret {name}/{key}")
        return value

    def _end(self, attempt: Attempt, phase: str, code: int | None, message: str) -> Attempt:
        attempt.phase = phase
        attempt.exit_code = code
        attempt.message = message
        attempt.finished = time.time()
        return attempt

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        err_file: Any,
        attempt: Attempt,
        node: Node,
        deadline: float | None,
        daemon: daemons.Daemon | None,
    ) -> tuple[int, bool]:
        reader = None
        if err_file is not None:
            reader = threading.Thread(
                target=self._read_stderr, args=(proc, err_file, attempt, node), daemon=True
            )
            reader.start()
        timed_out = False
        try:
            # Block until the exit (or the deadline), never poll: a poll interval is latency
            # every pod pays.
            left = None if deadline is None else deadline - (time.time() - attempt.started)
            try:
                code = proc.wait(timeout=None if left is None else max(left, 0.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                kill(proc)
                code = proc.wait()
        finally:
            self._forget(proc, daemon)
        if reader is not None:
            reader.join(timeout=5)
        return code, timed_out

    def _read_stderr(
        self, proc: subprocess.Popen[bytes], err_file: Any, attempt: Attempt, node: Node
    ) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if attempt.first_log is None:
                attempt.first_log = time.time()
            err_file.write(line)
            err_file.flush()
            if self.run.options.verbose:
                sys.stderr.write(f"  {node.display} | {line.decode(errors='replace')}")
            if line.startswith(b"{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    attempt.events.append(event)
                    if event.get("rows") is not None:
                        self.run.progress("event", node)


@dataclass
class _Pod:
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
class _Process:
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


def _fresh(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return

    def hard() -> None:
        time.sleep(2)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    threading.Thread(target=hard, daemon=True).start()


def _working_folder(
    path: str, mounts: list[sandbox.Mount], root: Path, where: str
) -> tuple[str, Path, dict[str, Path]]:
    """A container's working folder (``workingDir``, else its image's WORKDIR from
    ``--workdir``): its path in the pod, the host folder behind it, and the layer to add.

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
            host.mkdir(parents=True, exist_ok=True)
        return path, host, {}
    try:
        layer = sandbox.own_folder_layer(path)
    except sandbox.PodPathError as exc:
        raise SpecError(f"{where}: workingDir {exc}") from None
    host = root / path.lstrip("/")
    host.mkdir(parents=True, exist_ok=True)
    return path, host, {layer: root / layer.lstrip("/")}


def _seconds(value: Any) -> float:
    """An Argo duration: a number of seconds or a Go duration string (``10s``, ``2m``, ``1h30m``)."""
    try:
        return seconds(value)
    except ValueError:
        raise ParamError(f"bad duration {value!r}") from None


def _should_retry(policy: str, expression: Any, attempt: Attempt, where: str) -> bool:
    if policy == "OnFailure" and attempt.phase != FAILED:
        return False
    if policy in ("OnError", "OnTransientError") and attempt.phase != ERROR:
        return False
    if expression:
        names = {
            "retries": str(attempt.number),
            "lastRetry.exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
            "lastRetry.status": attempt.phase,
            # whole seconds: Argo's node timestamps have a one-second resolution
            "lastRetry.duration": str(int((attempt.finished or time.time()) - attempt.started)),
            "lastRetry.message": attempt.message,
        }
        try:
            return exprlang.condition(str(expression), exprlang.environment(names))
        except expr.ExprError as exc:
            raise SpecError(f"{where}: retryStrategy.expression: {exc}") from None
    return True
