"""The pod runtime: a pod template's attempts, each a fresh pod whose containers run as local
processes (:mod:`processes`); retries with backoff and ``retryStrategy``;
``activeDeadlineSeconds`` and ``timeout``; a daemon's attempts in a thread of their own
(:mod:`daemons`)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from argo_local.expr import depends as expr
from argo_local.expr import exprlang, gotime, params
from argo_local.expr.params import ParamError
from argo_local.model.annotations import keeps
from argo_local.model.artifactspec import anchored
from argo_local.model.nodes import (
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    attempt_node_name,
    node_id_of,
    pod_name_of,
)
from argo_local.model.spec import Document, SpecError
from argo_local.pods import artifacts, daemons, dataflow, podspecpatch
from argo_local.pods.containers import Containers, Pod, Process
from argo_local.pods.daemons import DaemonRun, Daemons
from argo_local.pods.podenv import (
    SECRETS_DIR,
)
from argo_local.pods.processes import PodProcesses, ProcessRun, end


class PodsRun(ProcessRun, DaemonRun, Protocol):
    """What the pod runtime needs of a run (the scheduler's side: :meth:`PodRuntime.run_pod`)."""

    daemons: Daemons
    resumed: dict[str, Any]
    spec: dict[str, Any]
    run_dir: Path
    wf_limit: threading.BoundedSemaphore | None

    def check_cancel(self) -> None: ...
    def template_metrics(
        self,
        tmpl: Mapping[str, Any],
        node: Node,
        where: str,
        status: str,
        duration: float,
        retries: int,
        outputs: Mapping[str, Any],
    ) -> None: ...


class PodRuntime:
    """Starts, waits for and retries the pods of one :class:`~argo_local.engine.run.Run`."""

    def __init__(self, run: PodsRun) -> None:
        self.run = run
        self.containers = Containers(run, self.secret)
        self.pod_processes = PodProcesses(run, self.secret)

    def run_pod(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        prior = self.run.resumed.get(node.name)
        if prior is not None and keeps(tmpl):
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
                delay = params.duration(backoff.get("duration", 0)) * float(
                    backoff.get("factor", 1) or 1
                ) ** (n - 1)
                if backoff.get("cap"):
                    delay = min(delay, params.duration(backoff["cap"]))
                stop = _past_max_duration(backoff, first, delay)
                if stop:
                    node.message = stop
                    break
                if limit is None:
                    # processNodeRetries waits out a backoff only under a retryStrategy.limit;
                    # without one the next attempt starts at once
                    delay = 0.0
                if delay > 0:
                    # processNodeRetries: the Retry node says how long it waits, until the
                    # next attempt starts
                    with self.run.lock:
                        node.message = f"Backoff for {gotime.humanize_duration(delay)}"
                    self.run.progress("backoff", node)
                if daemon is not None and daemon.wait_released(delay):
                    break
                if self.run.cancel.wait(0 if daemon is not None else delay):
                    raise Cancelled()
                with self.run.lock:
                    node.message = ""
            attempt = self.run_attempt(node, doc, tmpl, scope, where, n, daemon)
            attempt.backoff_s = delay
            if attempt.phase == SUCCEEDED or not retried:
                break
            if not should_retry(policy, None, attempt, where):
                break
            if limit is not None and n >= limit:
                node.message = "No more retries left"
                break
            if not should_retry(policy, rs.get("expression"), attempt, where):
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
        # Argo names the pod after the node it runs as: a retried node's attempt NAME(N)
        pod_name = pod_name_of(
            self.run.name,
            attempt_node_name(node.name, number, node.retry),
            str(tmpl.get("name") or ""),
        )
        now = time.time()
        attempt = Attempt(number, pod_name, now, created=now)
        with self.run.lock:
            node.attempts.append(attempt)
        ascope = {**scope, "retries": str(number), "pod.name": pod_name, "node.name": node.name}
        pod_dir = self.run.run_dir / "pods" / pod_name
        tmp_dir = self._fresh_tmp(pod_dir)
        kind = next(k for k in ("script", "container", "containerSet") if k in tmpl)
        # A retried step is a Retry node; its pods are the attempt nodes run.json lists.
        pod_node_id = node_id_of(self.run.name, f"{node.name}({number})") if node.retry else node.id
        pod = Pod(
            node, pod_name, pod_node_id, pod_dir, tmpl, where, scope={**node.caller_scope, **ascope}
        )
        members: list[tuple[Process, list[str]]] = []
        try:
            # Outputs first: their paths are variables of the container ({{outputs.*.path}}),
            # each evaluated once per pod (a random name in a path is the same in both).
            outputs = params.substitute(dict(tmpl.get("outputs") or {}), ascope, f"{where}.outputs")
            ascope.update(artifacts.path_scope(node.input_artifacts, outputs))
            c = params.substitute(dict(tmpl[kind]), ascope, f"{where}.{kind}")
            mirror = _set_mirror(c) if kind == "containerSet" else c
            init_specs = self.containers.user_containers(
                tmpl, mirror, "initContainers", ascope, where
            )
            side_specs = self.containers.user_containers(tmpl, mirror, "sidecars", ascope, where)
            self._patch(node, tmpl, kind, c, init_specs, side_specs, ascope, where)
            # a relative output path is the main container's working folder's (emissary.go),
            # after a podSpecPatch that sets its workingDir
            outputs = anchored(outputs, self.containers.main_working_dir(c, kind))
            deadline = self._deadline(tmpl, ascope, where)
            if kind == "containerSet":
                members, c = self.containers.container_set(
                    pod, c, tmp_dir, node.input_artifacts, outputs
                )
                main = next((p for p, _ in members if p.name == "main"), None)
            else:
                # The main container's view: its mounts plus where its input artifacts go and
                # the folders its outputs need (artifacts.prepare_pod).
                files = self.containers.artifact_view(
                    pod, c, tmp_dir, node.input_artifacts, outputs
                )
                main = self.containers.container(pod, c, kind, "main", tmp_dir, files)
            inits = [
                self.containers.container(
                    pod, u, "container", str(u["name"]), self.containers.own_tmp(pod, u)
                )
                for u in init_specs
            ]
            sides = [
                self.containers.container(
                    pod, u, "container", str(u["name"]), self.containers.own_tmp(pod, u)
                )
                for u in side_specs
            ]
            probes = (
                self.containers.probes(pod, c, tmp_dir, sides, where) if daemon is not None else []
            )
        except (ParamError, SpecError, artifacts.ArtifactError) as exc:
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)
            return end(attempt, ERROR, None, str(exc))
        if main is not None:
            attempt.mounts = [(m.target, str(m.host)) for m in main.mounts]
        # a container set without a "main" container has no outputs (its logs are per container)
        attempt.stdout = str(pod_dir / "stdout.log")
        attempt.stderr = str(pod_dir / "stderr.log")
        self.run.progress("start", node)
        try:
            ctx = self.run.wf_limit or nullcontext()
            with ctx, self._slot(node, daemon):
                self.run.check_cancel()
                attempt.started = time.time()
                return self.pod_processes.run_containers(
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
            return end(attempt, FAILED, None, self.run.cancel_reason or "cancelled")
        finally:
            # secret values are not left on disk once the pod is gone
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)

    def _fresh_tmp(self, pod_dir: Path) -> Path:
        """The pod's /tmp folder, made. Resumed, the earlier run's attempt of this name left
        its /tmp (output files included) and what it created in its image's folders: a new pod
        starts from its image again (and so does each of its other containers)."""
        tmp_dir = pod_dir / "tmp"
        if self.run.resumed:
            for old in (tmp_dir, pod_dir / "containers", pod_dir / "root"):
                if old.exists():
                    shutil.rmtree(old)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir

    def _slot(self, node: Node, daemon: daemons.Daemon | None) -> AbstractContextManager[None]:
        """One of the machine's pod slots for the attempt's processes (capacity.py); the node
        is Pending while it waits, as a pod the scheduler has not placed. A daemon takes
        none: it runs until its scope ends, and a step waiting for a slot that daemons hold
        would wait for ever."""
        if daemon is not None:
            return nullcontext()

        def waiting(wait: bool) -> None:
            with self.run.lock:
                if wait:
                    node.phase, node.message = PENDING, self.run.slots.message()
                elif node.phase == PENDING:
                    node.phase, node.message = RUNNING, ""
            if wait:
                self.run.progress("waiting", node)

        return self.run.slots.hold(self.run.cancel, waiting)

    def _patch(
        self,
        node: Node,
        tmpl: dict[str, Any],
        kind: str,
        c: dict[str, Any],
        inits: list[dict[str, Any]],
        sides: list[dict[str, Any]],
        scope: dict[str, str],
        where: str,
    ) -> None:
        """The workflow's and the template's ``podSpecPatch`` applied to the pod's containers
        (their dicts, before any becomes a process); what they set without a local meaning
        listed in one note."""
        try:
            texts = podspecpatch.patches(self.run.spec, tmpl, scope, where)
            if not texts:
                return
            # a container set's containers are the pod's, each by its name; else the main one
            if kind == "containerSet":
                named = [(str(m.get("name")), m) for m in c.get("containers") or []]
            else:
                named = [("main", c)]
            ignored = podspecpatch.apply(
                texts,
                [*named, *((str(u["name"]), u) for u in sides)],
                [(str(u["name"]), u) for u in inits],
            )
        except podspecpatch.PatchError as exc:
            # createWorkflowPod's error: executeTemplate returns it (the step group errors)
            node.template_error = True
            self.run.warn_once(f"{where}: podSpecPatch: {exc.detail}")
            raise
        if ignored:
            self.run.warn_once(
                f"{where}: podSpecPatch: {', '.join(ignored)} ignored locally (no meaning "
                f"outside Kubernetes; a container's {', '.join(podspecpatch.LOCAL_FIELDS)} apply)"
            )

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
                seconds = params.duration(text)
            except ParamError:
                raise ParamError(f"{where}.timeout: {text!r} is not a duration") from None
            deadline = seconds if deadline is None else min(deadline, seconds)
        return deadline

    def secret(self, name: str, key: str) -> str | None:
        """A secret an artifact location names, found as env secrets are (and redacted)."""
        value, _ = self.run.podenv.secret(name, key, "")
        if value is not None:
            self.run.podenv.add_secret(value, f"secret {name}/{key}")
        return value


def _set_mirror(cs: Mapping[str, Any]) -> dict[str, Any]:
    """What ``mirrorVolumeMounts`` copies in a container set: its container named main with
    the set's mounts, else the set's mounts (as Containers.container_set returns it)."""
    shared = list(cs.get("volumeMounts") or [])
    for raw in cs.get("containers") or []:
        if str(raw.get("name")) == "main":
            return {**raw, "volumeMounts": [*(raw.get("volumeMounts") or []), *shared]}
    return {"volumeMounts": shared}


def _past_max_duration(backoff: Mapping[str, Any], first: float, delay: float) -> str:
    """operator.go processNodeRetries' words when ``backoff.maxDuration`` (from the first
    attempt's start) stops the retries: already past, or past once the backoff is waited;
    else ""."""
    max_d = backoff.get("maxDuration")
    if not max_d:
        return ""
    deadline = first + params.duration(max_d)
    if time.time() > deadline:
        return "Max duration limit exceeded"
    if time.time() + delay > deadline:
        return "Backoff would exceed max duration limit"
    return ""


def should_retry(policy: str, expression: Any, attempt: Attempt, where: str) -> bool:
    """Whether a retryStrategy's policy and expression allow another attempt after ``attempt``
    (pods and whole steps/DAG templates share the rule: operator.go processNodeRetries)."""
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
