"""Executing a workflow: one :class:`Run` holds a run's state (nodes, scope, volumes,
cancellation, warnings, metrics) and hands the work to its parts, each in its own module:

* :mod:`~argo_local.engine.scheduling`: a template as a node (memoize, synchronization, retries);
* :mod:`~argo_local.engine.steps`: steps, loops, ``when``, ``continueOn``, parallelism;
* :mod:`~argo_local.engine.dags`: DAG tasks and their ``depends``;
* :mod:`~argo_local.pods.pods`: the pod runtime (attempts, retries, deadlines);
* :mod:`~argo_local.pods.processes`: a pod's containers as processes, their exit codes and outputs;
* :mod:`~argo_local.pods.podenv`: what a pod sees (mounts, environment, secrets, argv);
* :mod:`~argo_local.pods.dataflow`: inputs, outputs, their publication and aggregation;
* :mod:`~argo_local.engine.hooks`: exit handlers and lifecycle hooks, the workflow's final phase;
* :mod:`~argo_local.engine.workflowscope`: ``workflow.status``, ``workflow.duration``,
  ``workflow.failures`` and the global outputs (``globalName``).

Node phases and outputs follow Argo's documented semantics; where a local run must differ
(no image, no scheduler) the run log says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from argo_local.engine import metrics, workflowscope
from argo_local.engine.hooks import Hooks
from argo_local.engine.memoize import Caches
from argo_local.engine.scheduling import Scheduler
from argo_local.engine.synchronization import Locks, StopWaiting
from argo_local.expr import params
from argo_local.model import checks, configmaps, defaults
from argo_local.model.configmaps import ConfigMaps
from argo_local.model.nodes import (
    DONE,
    ERROR,
    FAILED,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    node_id_of,
)
from argo_local.model.options import Options
from argo_local.model.spec import Document, Library, Notes, SpecError
from argo_local.pods import artifacts, capacity, daemons, hosts, sandbox
from argo_local.pods.podenv import PodEnvironment
from argo_local.pods.pods import PodRuntime
from argo_local.pods.signals import kill

# Re-exported: the report, progress and CLI modules read a run's records through this module.
__all__ = [
    "DONE",
    "ERROR",
    "FAILED",
    "OMITTED",
    "RUNNING",
    "SKIPPED",
    "SUCCEEDED",
    "Attempt",
    "Cancelled",
    "Node",
    "Options",
    "Run",
    "node_id_of",
]


class Run:
    """One execution of a workflow document."""

    def __init__(
        self,
        doc: Document,
        library: Library,
        spec: dict[str, Any],
        name: str,
        parameters: dict[str, str],
        run_dir: Path,
        notes: Notes,
        options: Options,
        progress: Callable[[str, Node | None], None],
    ) -> None:
        self.doc = doc
        self.library = library
        self.spec = spec
        self.name = name
        self.uid = str(uuid.uuid4())
        self.parameters = parameters
        self.run_dir = run_dir
        self.work_dir = run_dir / "work"
        self.artifact_repository = run_dir / artifacts.REPOSITORY
        self.notes = notes
        self.options = options
        self.progress = progress
        self.nodes: dict[str, Node] = {}
        self.lock = threading.RLock()
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self.warnings: list[str] = []
        self.secret_values: set[str] = set()
        self.created = time.time()
        self.mode, self.mode_reason = sandbox.choose(options.sandbox)
        if self.mode == "remap":
            aliased = [t for t in spec.get("templates") or [] if t.get("hostAliases")]
            if spec.get("hostAliases") or aliased:
                # refused before any pod runs (a template reached through a templateRef is
                # refused when its pod starts: pods/containers.py)
                raise SpecError(hosts.REMAP_REFUSAL.format(where=doc.source))
        # The user's project and the host's PYTHONPATH: on every pod's PYTHONPATH after the
        # embedding product's own package, and bound read-only into its mount namespace, so a
        # generator or processor imports the same way wherever the runner was started.
        self.code = (options.code or Path.cwd()).resolve()
        paths = sandbox.import_paths(self.code, os.environ.get("PYTHONPATH"), Path.cwd())
        own = [p.resolve() for p in options.embedding.pod_import_paths]
        self.import_paths = list(dict.fromkeys([*own, *paths]))
        self.volumes: dict[str, Path] = {}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.daemons = daemons.Daemons(self)
        limit = spec.get("parallelism")
        self.wf_limit = threading.BoundedSemaphore(int(limit)) if limit else None
        # the pods this machine runs at once, whatever the templates' parallelism says
        cap = (
            capacity.Cap(options.max_pods, "--max-pods")
            if options.max_pods
            else capacity.machine_cap()
        )
        self.slots = capacity.PodSlots(cap)
        self._warned_once: set[str] = set()
        self.metrics = metrics.Registry()
        # --resume: the pod steps that succeeded in the earlier run, by node name (resume.py)
        self.resumed: dict[str, Any] = {}
        # memoize caches and synchronization locks live in the runs folder, shared by runs
        self.caches = Caches(run_dir.parent / ".caches")
        self.config_maps = ConfigMaps(configmaps.files_for(doc.source, options.manifests))
        self.locks = Locks(run_dir.parent / ".locks", "local", self.config_maps, self.warn)
        self.scheduler = Scheduler(self)
        self.pods = PodRuntime(self)
        self.podenv = PodEnvironment(self)
        self.hooks = Hooks(self)
        # The workflow's phase and message once the entrypoint and its exit handler are done
        # (an exit handler's failure fails a workflow whose entrypoint succeeded).
        self.phase: str | None = None
        self.message = ""
        self.deadline_exceeded = False
        # globalName -> value, in the order first exported (run.json status.outputs)
        self.global_outputs: dict[str, str] = {}
        # globalName -> the exported artifact record (run.json status.outputs.artifacts)
        self.global_artifacts: dict[str, dict[str, Any]] = {}
        self.scope: dict[str, str] = {
            "workflow.name": name,
            "workflow.namespace": "local",
            "workflow.uid": self.uid,
            "workflow.creationTimestamp": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)
            ),
            "workflow.serviceAccountName": "local",
        }
        for k, v in parameters.items():
            self.scope[f"workflow.parameters.{k}"] = v
        # docs/variables.md: all of them as a JSON string; the bare name is deprecated in favour
        # of .json, which expression tags can reach (a parameter named json keeps its value).
        every = json.dumps([{"name": k, "value": v} for k, v in parameters.items()])
        self.scope["workflow.parameters"] = every
        self.scope.setdefault("workflow.parameters.json", every)
        self.scope.update(
            checks.metadata_scope(doc, spec, self.scope["workflow.creationTimestamp"])
        )
        workflowscope.start(self)

    # ---------------------------------------------------------------- setup

    def prepare(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for pvc in self.spec.get("volumeClaimTemplates") or []:
            vname = pvc["metadata"]["name"]
            self.volumes[vname] = self.volume_dir(vname)
        for vol in self.spec.get("volumes") or []:
            if "persistentVolumeClaim" in vol:
                self.volumes[vol["name"]] = self.volume_dir(vol["name"])
                self.warn(
                    f"volume {vol['name']}: claim {vol['persistentVolumeClaim'].get('claimName')} "
                    "is a fresh per-run folder locally"
                )
        if self.mode == "remap":
            self.warn(
                f"no bubblewrap ({self.mode_reason}): container paths are rewritten to host "
                "folders in command, args, env, script source and output paths"
            )

    def volume_dir(self, vname: str) -> Path:
        path = self.run_dir / "volumes" / vname
        path.mkdir(parents=True, exist_ok=True)
        return path

    def warn(self, text: str) -> None:
        with self.lock:
            if text in self.warnings:
                return
            self.warnings.append(text)
        self.progress(f"note: {text}", None)

    # ---------------------------------------------------------------- templates

    def find_template(
        self, doc: Document, ref: Mapping[str, Any], where: str
    ) -> tuple[Document, dict[str, Any]]:
        """The template a step names: ``template`` in the same document, ``templateRef``, or
        ``inline``; with the workflow's ``templateDefaults`` and ``retryStrategy`` applied."""
        if ref.get("inline") is not None:
            return doc, defaults.effective(self.spec, dict(ref["inline"]))
        if ref.get("templateRef"):
            tdoc, referenced = self.library.resolve(ref["templateRef"], where)
            return tdoc, defaults.effective(self.spec, referenced)
        name = ref.get("template")
        if not name:
            raise SpecError(f"{where}: needs template, templateRef or inline")
        tmpl = doc.template(str(name)) if doc is not self.doc else self._own_template(str(name))
        if tmpl is None:
            raise SpecError(f"{doc.source}: {where}: no template named {name!r}")
        return doc, defaults.effective(self.spec, tmpl)

    def _own_template(self, name: str) -> dict[str, Any] | None:
        for t in self.spec.get("templates") or []:
            if t.get("name") == name:
                return dict(t)
        return None

    # ---------------------------------------------------------------- nodes

    def new_node(
        self,
        name: str,
        display: str,
        type_: str,
        template: str,
        parent: Node | None,
        *,
        hooked: bool = False,
    ) -> Node:
        """A node; with ``hooked`` a hook of ``parent`` (listed in its ``hooks``, not among the
        steps, groups or tasks its ``children`` hold), or without a parent the exit handler."""
        node_id = node_id_of(self.name, name)
        node = Node(node_id, name, display, type_, template, parent.id if parent else None)
        node.hooked = hooked
        with self.lock:
            self.nodes[node_id] = node
            if parent is not None:
                (parent.hooks if hooked else parent.children).append(node_id)
        return node

    def finish(self, node: Node, phase: str, message: str = "") -> Node:
        with self.lock:
            node.phase = phase
            node.message = message or node.message
            if node.started is None:
                node.started = time.time()
            node.finished = time.time()
        self.progress("finished", node)
        self.hooks.changed()
        return node

    # ---------------------------------------------------------------- execution

    def execute(self) -> Node:
        entry = str(self.spec.get("entrypoint") or "")
        where = f"{self.doc.source}: spec.entrypoint"
        doc, tmpl = self.find_template(self.doc, {"template": entry}, where)
        args = {
            "parameters": [{"name": k, "value": v} for k, v in self.parameters.items()],
            # spec.arguments.artifacts supply the entrypoint's input artifacts
            "artifacts": (self.spec.get("arguments") or {}).get("artifacts") or [],
        }
        deadline = self.spec.get("activeDeadlineSeconds")
        timer = None
        if deadline:
            seconds = float(params.substitute(str(deadline), self.scope, "activeDeadlineSeconds"))

            def expire() -> None:
                self.deadline_exceeded = True
                self.stop(f"workflow exceeded activeDeadlineSeconds={seconds:g}")

            timer = threading.Timer(seconds, expire)
            timer.daemon = True
            timer.start()
        try:
            root = self._run_entrypoint(doc, tmpl, args)
        finally:
            if timer is not None:
                timer.cancel()
            # an entrypoint that is itself a daemon has no steps or DAG to end it
            self.daemons.release_all()
        self.phase, self.message = self.hooks.finish(root)
        return root

    def _run_entrypoint(self, doc: Document, tmpl: dict[str, Any], args: Mapping[str, Any]) -> Node:
        """The entrypoint, under the workflow's own mutexes and semaphores (held for the
        whole run; the workflow waits, Pending, for them as a queued workflow waits)."""
        sync = self.spec.get("synchronization")
        if not sync:
            return self.scheduler.run_template(
                doc, tmpl, args, self.name, self.name, None, lenient=True
            )
        where = f"{self.doc.source}: spec.synchronization"
        try:
            locks = self.locks.resolve(params.substitute(dict(sync), self.scope, where), where)
        except params.ParamError as exc:
            return self._root_error(str(exc))

        def waiting(lock: Any) -> None:
            if lock is not None:
                self.progress(f"waiting for the workflow's lock {lock.name}", None)

        try:
            with self.locks.hold(locks, self.cancel, waiting):
                return self.scheduler.run_template(
                    doc, tmpl, args, self.name, self.name, None, lenient=True
                )
        except StopWaiting:
            node = self._root_error(self.cancel_reason or "stopped waiting for a lock")
            node.phase = FAILED
            return node

    def _root_error(self, message: str) -> Node:
        node = self.new_node(self.name, self.name, "Steps", "", None)
        node.started = time.time()
        return self.finish(node, ERROR, message)

    def stop(self, reason: str) -> None:
        """Cancel the run: no new nodes, running process groups killed."""
        # A stopped workflow ends every scope, so its daemons end Succeeded as their scope's
        # end would (test/e2e signals_test.go TestStopBehaviorWithDaemon).
        self.daemons.flag_all()
        with self.lock:
            if not self.cancel_reason:
                self.cancel_reason = reason
            # Under the lock: a process registered after this sweep sees the flag (_wait).
            self.cancel.set()
            procs = list(self.processes.values())
        for proc in procs:
            kill(proc)

    def settle(self, grace: float = 10.0) -> None:
        """Before the report: daemons ended, and no node left Running or Pending.

        After an interruption or an internal error some node threads may still be winding
        down; they get ``grace`` seconds, then whatever is still unfinished is Failed with the
        run's stop reason, as Argo fails the nodes of a stopped workflow."""
        self.daemons.release_all()
        end = time.time() + grace
        while time.time() < end:
            with self.lock:
                unfinished = [n for n in self.nodes.values() if n.phase not in DONE]
            if not unfinished or not self.cancel.is_set():
                break
            time.sleep(0.05)
        now = time.time()
        with self.lock:
            for n in self.nodes.values():
                if n.phase in DONE:
                    n.finished = n.finished or now  # the root of an interrupted run
                    continue
                n.phase = FAILED
                n.message = n.message or self.cancel_reason or "the run ended before this node did"
                n.started = n.started or now
                n.finished = now
                for a in n.attempts:
                    if a.phase not in DONE:
                        a.phase, a.message, a.finished = FAILED, n.message, now

    def template_metrics(
        self,
        tmpl: Mapping[str, Any],
        node: Node,
        where: str,
        status: str,
        duration: float,
        retries: int,
        outputs: Mapping[str, Any],
    ) -> None:
        """Compute the template's ``metrics.prometheus`` for a completed node or attempt; one
        that cannot be computed is a warning, as Argo makes it a condition, not a failure."""
        entries = (tmpl.get("metrics") or {}).get("prometheus") or []
        if not entries:
            return
        base = dict(self.scope)
        for k, v in node.inputs.items():
            base[f"inputs.parameters.{k}"] = v
        exit_code = node.outputs.get("exitCode")
        scope = metrics.node_scope(
            base,
            status=status,
            duration=duration,
            exit_code=exit_code,
            retries=max(retries, 0),
            outputs=outputs,
        )
        for m in entries:
            try:
                self.metrics.emit(m, scope, f"{where}: metrics.prometheus")
            except metrics.MetricError as exc:
                self.warn_once(f"metric not recorded: {exc}")

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def warn_once(self, message: str) -> None:
        if message not in self._warned_once:
            self._warned_once.add(message)
            self.warn(message)
