"""Executing a workflow: nodes, steps, DAGs, loops, retries, deadlines, parallelism.

One thread per running node; a leaf (container or script template) is one local
process per attempt, started in its own session so that a deadline can kill the
whole process group. Node phases and outputs follow Argo's documented semantics;
where a local run must differ (no image, no scheduler) the run log says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import redaction
from workers.runner import expr, metrics, params, sandbox
from workers.runner.params import ParamError
from workers.runner.spec import Document, Library, Notes, SpecError

SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED, RUNNING = (
    "Succeeded",
    "Failed",
    "Error",
    "Skipped",
    "Omitted",
    "Running",
)
DONE = (SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED)

PYTHON_NAMES = ("python", "python3", *tuple(f"python3.{n}" for n in range(8, 20)))

# The environment a pod would inherit from its image, not from the user's shell.
_DATABASE_ENV = ("WORKERS_DATABASE_URL", "DATABASE_URL")
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

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Attempt:
    number: int
    pod_name: str
    started: float
    finished: float | None = None
    phase: str = RUNNING
    exit_code: int | None = None
    message: str = ""
    backoff_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    mounts: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # ``started`` is when the process was spawned (after any workflow parallelism slot);
    # ``created`` when the attempt began waiting for it, ``first_log`` the first stderr line.
    created: float = 0.0
    first_log: float | None = None


@dataclass
class Node:
    id: str
    name: str
    display: str
    type: str
    template: str
    parent: str | None
    phase: str = "Pending"
    started: float | None = None
    finished: float | None = None
    message: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    loop_phases: list[str] = field(default_factory=list)
    loop_total: int = 0
    index: int = -1  # position in its loop, for ordering
    handled: bool = False  # a failure a continueOn or a depends clause takes care of
    retry: bool = False  # a retryStrategy: Argo shows a Retry node with one Pod per attempt
    after: list[str] = field(default_factory=list)  # ids of the DAG tasks it depended on
    reused: bool = False  # kept from the run this one resumes (--resume): not run again

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


class Cancelled(Exception):
    pass


@dataclass
class Options:
    sandbox: str = "auto"
    verbose: bool = False
    env_file: Path | None = None
    code: Path | None = None  # the user's project, importable in every pod; default: cwd
    # An image's ENTRYPOINT by image name (with or without its tag): a container without
    # ``command`` runs it with ``args`` after it, as a container runtime would (--entrypoint).
    entrypoints: dict[str, list[str]] = field(default_factory=dict)


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
        # The user's project and the host's PYTHONPATH: on every pod's PYTHONPATH after the
        # runner's own package, and bound read-only into its mount namespace, so a generator
        # or processor imports the same way wherever the runner was started.
        self.code = (options.code or Path.cwd()).resolve()
        self.import_paths = sandbox.import_paths(
            self.code, os.environ.get("PYTHONPATH"), Path.cwd()
        )
        self.volumes: dict[str, Path] = {}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        limit = spec.get("parallelism")
        self.wf_limit = threading.BoundedSemaphore(int(limit)) if limit else None
        self._dotenv: dict[str, str] | None = None
        self._warned_once: set[str] = set()
        self.metrics = metrics.Registry()
        # --resume: the pod steps that succeeded in the earlier run, by node name (resume.py)
        self.resumed: dict[str, Any] = {}
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
        self.scope["workflow.parameters"] = json.dumps(
            [{"name": k, "value": v} for k, v in parameters.items()]
        )

    # ---------------------------------------------------------------- setup

    def prepare(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for pvc in self.spec.get("volumeClaimTemplates") or []:
            vname = pvc["metadata"]["name"]
            self.volumes[vname] = self._volume_dir(vname)
        for vol in self.spec.get("volumes") or []:
            if "persistentVolumeClaim" in vol:
                self.volumes[vol["name"]] = self._volume_dir(vol["name"])
                self.warn(
                    f"volume {vol['name']}: claim {vol['persistentVolumeClaim'].get('claimName')} "
                    "is a fresh per-run folder locally"
                )
        if self.mode == "remap":
            self.warn(
                f"no bubblewrap ({self.mode_reason}): container paths are rewritten to host "
                "folders in command, args, env, script source and output paths"
            )

    def _volume_dir(self, vname: str) -> Path:
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
        """The template a step names: ``template`` in the same document, or ``templateRef``."""
        if ref.get("templateRef"):
            return self.library.resolve(ref["templateRef"], where)
        name = ref.get("template")
        if not name:
            raise SpecError(f"{where}: needs template or templateRef")
        tmpl = doc.template(str(name)) if doc is not self.doc else self._own_template(str(name))
        if tmpl is None:
            raise SpecError(f"{doc.source}: {where}: no template named {name!r}")
        return doc, tmpl

    def _own_template(self, name: str) -> dict[str, Any] | None:
        for t in self.spec.get("templates") or []:
            if t.get("name") == name:
                return dict(t)
        return None

    # ---------------------------------------------------------------- nodes

    def new_node(
        self, name: str, display: str, type_: str, template: str, parent: Node | None
    ) -> Node:
        node_id = node_id_of(self.name, name)
        node = Node(node_id, name, display, type_, template, parent.id if parent else None)
        with self.lock:
            self.nodes[node_id] = node
            if parent is not None:
                parent.children.append(node_id)
        return node

    def finish(self, node: Node, phase: str, message: str = "") -> Node:
        with self.lock:
            node.phase = phase
            node.message = message or node.message
            if node.started is None:
                node.started = time.time()
            node.finished = time.time()
        self.progress("finished", node)
        return node

    # ---------------------------------------------------------------- execution

    def execute(self) -> Node:
        entry = str(self.spec.get("entrypoint") or "")
        where = f"{self.doc.source}: spec.entrypoint"
        doc, tmpl = self.find_template(self.doc, {"template": entry}, where)
        args = {"parameters": [{"name": k, "value": v} for k, v in self.parameters.items()]}
        deadline = self.spec.get("activeDeadlineSeconds")
        timer = None
        if deadline:
            seconds = float(params.substitute(str(deadline), self.scope, "activeDeadlineSeconds"))

            def expire() -> None:
                self.stop(f"workflow exceeded activeDeadlineSeconds={seconds:g}")

            timer = threading.Timer(seconds, expire)
            timer.daemon = True
            timer.start()
        try:
            return self.run_template(doc, tmpl, args, self.name, self.name, None, lenient=True)
        finally:
            if timer is not None:
                timer.cancel()

    def stop(self, reason: str) -> None:
        """Cancel the run: no new nodes, running process groups killed."""
        with self.lock:
            if not self.cancel_reason:
                self.cancel_reason = reason
            # Under the lock: a process registered after this sweep sees the flag (_wait).
            self.cancel.set()
            procs = list(self.processes.values())
        for proc in procs:
            _kill(proc)

    def run_template(
        self,
        doc: Document,
        tmpl: dict[str, Any],
        arguments: Mapping[str, Any],
        name: str,
        display: str,
        parent: Node | None,
        *,
        lenient: bool = False,
    ) -> Node:
        kind = next(k for k in ("container", "script", "steps", "dag") if k in tmpl)
        type_ = {"container": "Pod", "script": "Pod", "steps": "Steps", "dag": "DAG"}[kind]
        node = self.new_node(name, display, type_, str(tmpl.get("name")), parent)
        node.started = time.time()
        node.phase = RUNNING
        where = f"{doc.source}: template {tmpl.get('name')}"
        try:
            node.inputs = self.resolve_inputs(tmpl, arguments, where, lenient=lenient)
            scope = dict(self.scope)
            for k, v in node.inputs.items():
                scope[f"inputs.parameters.{k}"] = v
            if type_ == "Pod":
                self.run_pod(node, doc, tmpl, scope, where)
            elif type_ == "Steps":
                self.run_steps(node, doc, tmpl, scope, where)
            else:
                self.run_dag(node, doc, tmpl, scope, where)
        except (ParamError, SpecError, expr.ExprError) as exc:
            self.finish(node, ERROR, str(exc))
        except Cancelled:
            self.finish(node, FAILED, self.cancel_reason or "cancelled")
        if node.reused:
            return node  # its metrics were the earlier run's
        outputs = node.outputs if node.phase == SUCCEEDED else _declared_defaults(tmpl)
        self.template_metrics(
            tmpl, node, where, node.phase, node.duration or 0.0, len(node.attempts) - 1, outputs
        )
        return node

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

    def resolve_inputs(
        self, tmpl: Mapping[str, Any], arguments: Mapping[str, Any], where: str, *, lenient: bool
    ) -> dict[str, str]:
        given = {
            str(p["name"]): p.get("value")
            for p in (arguments.get("parameters") or [])
            if isinstance(p, dict)
        }
        out: dict[str, str] = {}
        declared = (tmpl.get("inputs") or {}).get("parameters") or []
        for p in declared:
            pname = str(p["name"])
            if pname in given and given[pname] is not None:
                value: Any = given[pname]
            elif p.get("default") is not None:
                value = p["default"]
            elif p.get("value") is not None:
                value = p["value"]
            else:
                raise ParamError(f"{where}: inputs.parameters.{pname} was not supplied")
            # defaults such as "{{workflow.name}}" see the workflow's variables
            text = params.substitute(params.render(value), self.scope, f"{where}: input {pname}")
            enum = p.get("enum")
            if enum and text not in [params.render(e) for e in enum]:
                raise ParamError(
                    f"{where}: inputs.parameters.{pname}={text!r} is not one of {enum}"
                )
            out[pname] = text
        if not lenient:
            extra = sorted(set(given) - {str(p["name"]) for p in declared})
            if extra:
                self.warn(
                    f"{where}: arguments {extra} are not declared inputs (ignored, as in Argo)"
                )
        return out

    # ---------------------------------------------------------------- steps

    def run_steps(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        limiter = _limiter(tmpl, scope, where)
        failed = ""
        for gi, group in enumerate(tmpl["steps"] or []):
            self.check_cancel()
            gname = f"{node.name}[{gi}]"
            gnode = self.new_node(gname, f"[{gi}]", "StepGroup", "", node)
            gnode.started = time.time()
            results: dict[str, Node] = {}
            threads = []
            for step in group or []:
                sname = str(step["name"])
                swhere = f"{where}: steps[{gi}][{sname}]"

                def work(
                    step: dict[str, Any] = step,
                    sname: str = sname,
                    w: str = swhere,
                    gname: str = gname,
                    gnode: Node = gnode,
                    results: dict[str, Node] = results,
                ) -> None:
                    results[sname] = self.run_task(
                        step, doc, dict(scope), f"{gname}.{sname}", sname, gnode, limiter, w
                    )

                threads.append(_start(work, self, f"{gname}.{sname}"))
            for t in threads:
                t.join()
            group_failed = [
                r for r in results.values() if r.phase in (FAILED, ERROR) and not r.handled
            ]
            for sname, r in results.items():
                _publish(scope, f"steps.{sname}", r)
            self.finish(gnode, FAILED if group_failed else SUCCEEDED)
            if group_failed:
                failed = f"child {group_failed[0].display} {group_failed[0].phase.lower()}"
                break
        self.check_cancel()
        if failed:
            self.finish(node, FAILED, failed)
            return
        self.template_outputs(node, tmpl, scope, where)
        self.finish(node, SUCCEEDED)

    def template_outputs(
        self, node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
    ) -> None:
        outs: dict[str, str] = {}
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            if "parameter" in vf:
                try:
                    outs[p["name"]] = params.substitute(
                        str(vf["parameter"]), scope, f"{where}: outputs.parameters.{p['name']}"
                    )
                except ParamError:
                    if vf.get("default") is None:
                        raise
                    outs[p["name"]] = params.render(vf["default"])
            elif "expression" in vf:
                value = expr.evaluate(str(vf["expression"]), scope)
                if value is None and vf.get("default") is not None:
                    value = vf["default"]
                outs[p["name"]] = params.render(value)
            elif p.get("value") is not None:
                outs[p["name"]] = params.render(p["value"])
        if outs:
            node.outputs["parameters"] = outs

    # ---------------------------------------------------------------- one step / task

    def run_task(
        self,
        step: dict[str, Any],
        doc: Document,
        scope: dict[str, str],
        name: str,
        display: str,
        parent: Node,
        limiter: Limiter | None,
        where: str,
    ) -> Node:
        """A step or DAG task: expand its loop, check ``when``, run the template per item."""
        try:
            tdoc, tmpl = self.find_template(doc, step, where)
            items = self.loop_items(step, scope, where)
        except (ParamError, SpecError, expr.ExprError) as exc:
            node = self.new_node(name, display, "Skipped", str(step.get("template", "")), parent)
            return self.finish(node, ERROR, str(exc))
        if items is None:
            result = self.run_item(step, tdoc, tmpl, scope, name, display, parent, limiter, where)
            if result.phase in (FAILED, ERROR) and _continues(step, result.phase):
                result.handled = True
            return result
        group = self.new_node(name, display, "TaskGroup", str(tmpl.get("name")), parent)
        group.started = time.time()
        group.phase = RUNNING
        if not items:
            group.outputs = self._empty_outputs(tmpl)
            return self.finish(group, SKIPPED, "loop over an empty list")
        group.loop_total = len(items)
        self.progress("loop-start", group)
        children: list[Node | None] = [None] * len(items)
        pending = iter(enumerate(items))
        take = threading.Lock()

        def work() -> None:
            # Items start in order as slots free up, as the controller starts them; a bounded
            # loop needs no more threads than it has slots (10,000 items, parallelism 10: 10).
            while True:
                with take:
                    i, item = next(pending, (-1, None))
                if i < 0:
                    return
                label = params.loop_label(i, item)
                children[i] = child = self.run_item(
                    step,
                    tdoc,
                    tmpl,
                    {**scope, **params.item_scope(item)},
                    f"{name}{label}",
                    f"{display}{label}",
                    group,
                    limiter,
                    where,
                )
                child.index = i

        slots = len(items) if limiter is None else min(len(items), limiter.size)
        threads = [_start(work, self, f"{name}[{k}]") for k in range(slots)]
        for t in threads:
            t.join()
        done = [c for c in children if c is not None]
        group.loop_phases = [c.phase for c in done]
        group.outputs = _aggregate(done, tmpl)
        bad = [c for c in done if c.phase in (FAILED, ERROR)]
        if bad:
            self.finish(group, bad[0].phase, f"{len(bad)} of {len(items)} failed")
            group.handled = _continues(step, bad[0].phase)
        elif len(done) < len(items):
            self.finish(group, FAILED, self.cancel_reason or "not all items ran")
        else:
            self.finish(group, SUCCEEDED)
        return group

    def _empty_outputs(self, tmpl: Mapping[str, Any]) -> dict[str, Any]:
        names = [p["name"] for p in (tmpl.get("outputs") or {}).get("parameters") or []]
        return {"parameters": dict.fromkeys(names, "[]"), "result": "[]"}

    def loop_items(
        self, step: Mapping[str, Any], scope: Mapping[str, str], where: str
    ) -> list[Any] | None:
        if "withItems" in step:
            raw = step["withItems"]
            if not isinstance(raw, list):
                raise ParamError(f"{where}.withItems: expected a list")
            return [params.substitute(i, scope, f"{where}.withItems") for i in raw]
        if "withParam" in step:
            text = params.substitute(str(step["withParam"]), scope, f"{where}.withParam")
            return params.parse_list(text, f"{where}.withParam")
        if "withSequence" in step:
            seq = params.substitute(dict(step["withSequence"]), scope, f"{where}.withSequence")
            return list(params.sequence(seq, f"{where}.withSequence"))
        return None

    def run_item(
        self,
        step: Mapping[str, Any],
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        name: str,
        display: str,
        parent: Node,
        limiter: Limiter | None,
        where: str,
    ) -> Node:
        try:
            when = step.get("when")
            if when is not None:
                text = params.substitute(str(when), scope, f"{where}.when")
                if not expr.condition(text, bare_words=True):
                    node = self.new_node(name, display, "Skipped", str(tmpl.get("name")), parent)
                    return self.finish(node, SKIPPED, f"when '{text}' evaluated false")
            arguments = params.substitute(
                dict(step.get("arguments") or {}), scope, f"{where}.arguments"
            )
        except (ParamError, expr.ExprError) as exc:
            node = self.new_node(name, display, "Skipped", str(tmpl.get("name")), parent)
            return self.finish(node, ERROR, str(exc))
        with limiter or nullcontext():
            if self.cancel.is_set():
                node = self.new_node(name, display, "Skipped", str(tmpl.get("name")), parent)
                return self.finish(node, FAILED, self.cancel_reason or "cancelled")
            return self.run_template(doc, tmpl, arguments, name, display, parent)

    # ---------------------------------------------------------------- dag

    def run_dag(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        limiter = _limiter(tmpl, scope, where)
        tasks = {str(t["name"]): t for t in tmpl["dag"].get("tasks") or []}
        deps: dict[str, str] = {}
        for tname, t in tasks.items():
            if t.get("depends") and t.get("dependencies"):
                raise SpecError(f"{where}: task {tname}: use depends or dependencies, not both")
            text = str(t.get("depends") or " && ".join(t.get("dependencies") or []))
            for dep in expr.depends_names(text) if text else []:
                if dep not in tasks:
                    raise SpecError(f"{where}: task {tname} depends on unknown task {dep!r}")
            deps[tname] = text
        results: dict[str, Node] = {}
        running: set[str] = set()
        cond = threading.Condition(self.lock)

        def operand(task: str, result: str | None) -> bool:
            n = results[task]
            phases = n.loop_phases
            if result is None:
                return n.phase in (SUCCEEDED, SKIPPED)
            if result == "Errored":
                return n.phase == ERROR
            if result == "Completed":
                return n.phase in DONE
            if result == "AnySucceeded":
                return any(p == SUCCEEDED for p in phases) or (n.phase == SUCCEEDED and not phases)
            if result == "AllFailed":
                return bool(phases) and all(p in (FAILED, ERROR) for p in phases)
            if result == "Daemoned":
                return False
            return bool(n.phase == result)

        def launch(tname: str) -> None:
            t = tasks[tname]
            tscope = dict(scope)

            def work() -> None:
                r: Node | None = None
                try:
                    r = self.run_task(
                        t,
                        doc,
                        tscope,
                        f"{node.name}.{tname}",
                        tname,
                        node,
                        limiter,
                        f"{where}: dag.tasks[{tname}]",
                    )
                finally:
                    with cond:
                        if r is None:
                            r = self.new_node(f"{node.name}.{tname}", tname, "Skipped", "", node)
                            r.phase, r.message = ERROR, "internal error"
                        results[tname] = r
                        r.after = _dependency_ids(deps[tname], results)
                        _publish(scope, f"tasks.{tname}", r)
                        running.discard(tname)
                        cond.notify_all()

            running.add(tname)
            _start(work, self, f"{node.name}.{tname}")

        with cond:
            while len(results) < len(tasks):
                if self.cancel.is_set() and not running:
                    break
                for tname in tasks:
                    if tname in results or tname in running or self.cancel.is_set():
                        continue
                    names = expr.depends_names(deps[tname]) if deps[tname] else []
                    if not all(d in results for d in names):
                        continue
                    if deps[tname] and not expr.depends(deps[tname], operand):
                        skipped = self.new_node(f"{node.name}.{tname}", tname, "Skipped", "", node)
                        skipped.after = _dependency_ids(deps[tname], results)
                        results[tname] = self.finish(
                            skipped, OMITTED, f"depends '{deps[tname]}' evaluated false"
                        )
                        _publish(scope, f"tasks.{tname}", skipped)
                        continue
                    launch(tname)
                if len(results) < len(tasks):
                    cond.wait(0.5)
        self.check_cancel()
        # A failure counts unless continueOn covers it or a task that ran depended on it.
        consumed = {
            dep
            for tname, r in results.items()
            if r.phase != OMITTED and deps[tname]
            for dep in expr.depends_names(deps[tname])
            if _names_failure(deps[tname], dep)
        }
        bad = [
            r
            for tname, r in results.items()
            if r.phase in (FAILED, ERROR) and not r.handled and tname not in consumed
        ]
        if bad:
            self.finish(node, FAILED, f"task {bad[0].display} {bad[0].phase.lower()}")
            return
        self.template_outputs(node, tmpl, scope, where)
        self.finish(node, SUCCEEDED)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    # ---------------------------------------------------------------- pods

    def run_pod(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        rs = tmpl.get("retryStrategy") or {}
        prior = self.resumed.get(node.name)
        if prior is not None:
            # As argo retry keeps a succeeded node: its outputs feed the steps after it.
            with self.lock:
                node.reused = True
                node.outputs = dict(prior.outputs)
                node.started = prior.started or node.started
            self.finish(node, SUCCEEDED, "succeeded in the run this one resumes (kept)")
            if prior.finished is not None:
                node.finished = prior.finished
            return
        limit = int(params.substitute(str(rs.get("limit", 0)), scope, f"{where}.retryStrategy"))
        policy = rs.get("retryPolicy") or ("Always" if rs.get("expression") else "OnFailure")
        if policy not in ("Always", "OnFailure", "OnError", "OnTransientError"):
            raise SpecError(f"{where}: retryStrategy.retryPolicy {policy!r} is not an Argo policy")
        if policy == "OnTransientError":
            self.warn(f"{where}: retryPolicy OnTransientError retries Error nodes locally")
        backoff = rs.get("backoff") or {}
        node.retry = bool(rs)
        first = time.time()
        attempt: Attempt | None = None
        for n in range(limit + 1):
            self.check_cancel()
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
                if self.cancel.wait(delay):
                    raise Cancelled()
            attempt = self.run_attempt(node, doc, tmpl, scope, where, n)
            attempt.backoff_s = delay
            if attempt.phase == SUCCEEDED or n == limit:
                break
            if not _should_retry(policy, rs.get("expression"), attempt, where):
                break
            # Argo also computes the metrics of an attempt it retries (the retry node's last
            # child), with that attempt's status and duration.
            self.template_metrics(
                tmpl,
                node,
                where,
                attempt.phase,
                (attempt.finished or attempt.started) - attempt.started,
                n,
                _declared_defaults(tmpl),
            )
            self.progress("retry", node)
        assert attempt is not None
        self.finish(node, attempt.phase, attempt.message)

    def run_attempt(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        number: int,
    ) -> Attempt:
        base = f"{node.name}({number})" if number else node.name
        pod_name = f"{self.name}-{tmpl.get('name')}-{zlib.crc32(base.encode())}"
        now = time.time()
        attempt = Attempt(number, pod_name, now, created=now)
        with self.lock:
            node.attempts.append(attempt)
        ascope = {**scope, "retries": str(number), "pod.name": pod_name, "node.name": node.name}
        pod_dir = self.run_dir / "pods" / pod_name
        tmp_dir = pod_dir / "tmp"
        if self.resumed and tmp_dir.exists():
            # The earlier run's attempt of this name left its /tmp (output files included):
            # a new pod starts with an empty one.
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        kind = "script" if "script" in tmpl else "container"
        try:
            c = params.substitute(dict(tmpl[kind]), ascope, f"{where}.{kind}")
            outputs = params.substitute(dict(tmpl.get("outputs") or {}), ascope, f"{where}.outputs")
            deadline_raw = tmpl.get("activeDeadlineSeconds")
            deadline = (
                float(params.substitute(str(deadline_raw), ascope, where)) if deadline_raw else None
            )
            mounts = self.mounts(tmpl, c, pod_dir, tmp_dir, where)
            workdir = str(self.work_dir)
            if c.get("workingDir"):
                wd = str(c["workingDir"])
                if any(wd == m.target or wd.startswith(m.target.rstrip("/") + "/") for m in mounts):
                    workdir = wd
                else:
                    self.warn(
                        f"{where}: workingDir {wd} is in the image; the run's work folder is used"
                    )
            if self.mode == "remap":
                # Only the template's own strings: the runner's paths (sys.executable,
                # PYTHONPATH) are host paths already, and may lie under a mount target.
                c = _remap_container(c, mounts)
            # A retried step is a Retry node; its pods are the attempt nodes run.json lists.
            pod_node_id = node_id_of(self.name, f"{node.name}({number})") if node.retry else node.id
            env = self.environment(c, where, pod_name=pod_name, node=node, node_id=pod_node_id)
            argv = self.argv(c, kind, pod_dir, where)
        except (ParamError, SpecError) as exc:
            return self._end(attempt, ERROR, None, str(exc))
        attempt.mounts = [(m.target, str(m.host)) for m in mounts]
        if self.mode == "bwrap":
            keep = [
                (self.work_dir, True),
                (pod_dir, False),
                (PACKAGE_ROOT, False),
                (Path(sys.prefix), False),
                (Path(sys.base_prefix), False),
                *((p, False) for p in self.import_paths if p.exists()),
            ]
            if any(m.target == str(self.code) for m in mounts):
                self.warn_once(
                    f"code folder {self.code} is where pods mount a volume, so its files are "
                    "hidden in them: run from (or pass --code) the project's own folder"
                )
            cmd = sandbox.bwrap_command(argv, mounts, keep, workdir)
            cwd = None
        else:
            cmd = argv
            env["TMPDIR"] = str(tmp_dir)
            # the run's work folder is a host path already; a container workingDir is not
            cwd = (
                str(sandbox.host_path(workdir, mounts))
                if workdir != str(self.work_dir)
                else workdir
            )
        attempt.stdout = str(pod_dir / "stdout.log")
        attempt.stderr = str(pod_dir / "stderr.log")
        self.progress("start", node)
        try:
            with open(attempt.stdout, "wb") as out, open(attempt.stderr, "wb") as err:
                try:
                    ctx = self.wf_limit or nullcontext()
                    with ctx:
                        self.check_cancel()
                        attempt.started = time.time()
                        proc = subprocess.Popen(
                            cmd,
                            stdout=out,
                            stderr=subprocess.PIPE,
                            env=env,
                            cwd=cwd,
                            start_new_session=True,
                        )
                        self.progress("running", node)
                        code, timed_out = self._wait(proc, err, attempt, node, deadline)
                except OSError as exc:
                    return self._end(attempt, ERROR, None, f"cannot start {argv[0]}: {exc}")
        except Cancelled:
            return self._end(attempt, FAILED, None, self.cancel_reason or "cancelled")
        if timed_out:
            return self._end(
                attempt,
                FAILED,
                code,
                f"Pod was active on the node longer than the specified deadline ({deadline:g}s)",
            )
        if self.cancel.is_set():
            return self._end(attempt, FAILED, code, self.cancel_reason)
        node.outputs = {"exitCode": str(code)}
        if code != 0:
            return self._end(attempt, FAILED, code, f"Error (exit code {code})")
        try:
            node.outputs.update(self.pod_outputs(attempt, outputs, mounts, where))
        except ParamError as exc:
            return self._end(attempt, ERROR, code, str(exc))
        return self._end(attempt, SUCCEEDED, code, "")

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
    ) -> tuple[int, bool]:
        with self.lock:
            self.processes[proc.pid] = proc
            cancelled = self.cancel.is_set()
        reader = threading.Thread(
            target=self._read_stderr, args=(proc, err_file, attempt, node), daemon=True
        )
        reader.start()
        timed_out = False
        try:
            # Block until the exit (or the deadline), never poll: a poll interval is latency
            # every pod pays. stop() kills registered processes itself; one registered after
            # its sweep sees the flag here.
            if cancelled:
                _kill(proc)
            left = None if deadline is None else deadline - (time.time() - attempt.started)
            try:
                code = proc.wait(timeout=None if left is None else max(left, 0.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill(proc)
                code = proc.wait()
        finally:
            with self.lock:
                self.processes.pop(proc.pid, None)
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
            if self.options.verbose:
                sys.stderr.write(f"  {node.display} | {line.decode(errors='replace')}")
            if line.startswith(b"{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    attempt.events.append(event)
                    if event.get("rows") is not None:
                        self.progress("event", node)

    def pod_outputs(
        self,
        attempt: Attempt,
        outputs: Mapping[str, Any],
        mounts: list[sandbox.Mount],
        where: str,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        stdout = Path(attempt.stdout).read_bytes().decode(errors="replace")
        result["result"] = stdout[:-1] if stdout.endswith("\n") else stdout
        values: dict[str, str] = {}
        for p in outputs.get("parameters") or []:
            vf = p.get("valueFrom") or {}
            if "path" in vf:
                path = sandbox.host_path(str(vf["path"]), mounts)
                try:
                    text = path.read_text()
                    # Argo trims one trailing newline, no more.
                    values[p["name"]] = text.removesuffix("\n")
                except OSError:
                    default = vf.get("default", p.get("default"))
                    if default is None:
                        raise ParamError(
                            f"{where}: outputs.parameters.{p['name']}: "
                            f"valueFrom.path {vf['path']} was not written"
                        ) from None
                    values[p["name"]] = params.render(default)
            elif p.get("value") is not None:
                values[p["name"]] = params.render(p["value"])
            else:
                raise ParamError(
                    f"{where}: outputs.parameters.{p['name']}: a container needs valueFrom.path"
                )
        if values:
            result["parameters"] = values
        return result

    # ---------------------------------------------------------------- pod pieces

    def mounts(
        self,
        tmpl: Mapping[str, Any],
        container: Mapping[str, Any],
        pod_dir: Path,
        tmp_dir: Path,
        where: str,
    ) -> list[sandbox.Mount]:
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        volumes.update({v["name"]: v for v in tmpl.get("volumes") or []})
        mounts = [sandbox.Mount(tmp_dir, "/tmp")]
        for vm in container.get("volumeMounts") or []:
            vname, target = str(vm["name"]), str(vm["mountPath"]).rstrip("/") or "/"
            if vname in volumes and "emptyDir" in volumes[vname]:
                host = tmp_dir if target == "/tmp" else pod_dir / "emptydir" / vname
            elif vname in self.volumes:
                host = self.volumes[vname]
            elif vname in volumes and "persistentVolumeClaim" in volumes[vname]:
                host = self.volumes.setdefault(vname, self._volume_dir(vname))
            else:
                raise SpecError(f"{where}: volumeMounts[{vname}]: no volume named {vname!r}")
            if vm.get("subPath"):
                host = host / str(vm["subPath"])
            host.mkdir(parents=True, exist_ok=True)
            mounts = [m for m in mounts if m.target != target]
            mounts.append(sandbox.Mount(host, target, bool(vm.get("readOnly"))))
        return mounts

    def warn_once(self, message: str) -> None:
        if message not in self._warned_once:
            self._warned_once.add(message)
            self.warn(message)

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
        pythonpath = [str(PACKAGE_ROOT), *(str(p) for p in self.import_paths)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(pythonpath))
        # What Argo's controller adds to every main container (workflowpod.go; the workflow
        # name since 4.1), so a step sees the same names here as in a cluster.
        env.update(
            ARGO_NODE_ID=node_id or node.id,
            ARGO_CONTAINER_NAME="main",
            ARGO_WORKFLOW_NAME=self.name,
        )
        # An image ships compiled bytecode; a sandboxed pod cannot write __pycache__ next to a
        # read-only source tree, so without this every pod compiled every module again (~25%
        # of a trivial shard's CPU). One cache per run, in its writable work folder.
        env["PYTHONPYCACHEPREFIX"] = str(self.work_dir / "pycache")
        for e in container.get("env") or []:
            name = str(e["name"])
            if "value" in e:
                env[name] = params.render(e["value"])
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
                if name in _DATABASE_ENV:
                    # Pods of one run must share one database: the embedded default is a
                    # SQLite file in the working folder, which differs per pod, so point
                    # every pod at one file in the run's work folder instead.
                    env[name] = f"sqlite:///{self.work_dir / 'workers.db'}"
                    self.warn_once(
                        f"secret {ref.get('name')}/{ref.get('key')} not found locally (looked for "
                        f"{', '.join(looked)} in the environment and .env): every pod uses the "
                        f"embedded SQLite database {self.work_dir / 'workers.db'}"
                    )
                    continue
                if not ref.get("optional"):
                    self.warn(
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
        self.secret_values.update(found)
        if redaction.too_short(found):
            self.warn_once(
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
            self._dotenv = {}
            path = self.options.env_file or Path(".env")
            if path.is_file():
                for line in path.read_text().splitlines():
                    line = line.strip()
                    if not line or line.startswith("#") or "=" not in line:
                        continue
                    k, v = line.removeprefix("export ").split("=", 1)
                    self._dotenv[k.strip()] = v.strip().strip("'\"")
        return self._dotenv

    def argv(self, container: Mapping[str, Any], kind: str, pod_dir: Path, where: str) -> list[str]:
        command = [str(a) for a in container.get("command") or []]
        args = [str(a) for a in container.get("args") or []]
        if kind == "script":
            script = pod_dir / "script"
            script.write_text(str(container.get("source") or ""))
            command = command or ["sh"]
            argv = [*command, str(script), *args]
        else:
            command = command or entrypoint_of(container.get("image"), self.options.entrypoints)
            argv = [*command, *args]
            if not command:
                self.warn(
                    f"{where}: no container.command: args run as the command (image has no ENTRYPOINT)"
                )
        if not argv:
            raise SpecError(f"{where}: container has neither command nor args")
        if os.path.basename(argv[0]) in PYTHON_NAMES:
            argv[0] = sys.executable
        return argv


# -------------------------------------------------------------------- helpers


def entrypoint_of(image: Any, entrypoints: Mapping[str, list[str]]) -> list[str]:
    """The ENTRYPOINT given for ``image``: its exact name first, then its name without the tag
    (``registry:5000/team/tool:v2`` -> ``registry:5000/team/tool``) or digest."""
    if not isinstance(image, str) or not entrypoints:
        return []
    name = image.split("@", 1)[0]
    repo, colon, tag = name.rpartition(":")
    untagged = repo if colon and "/" not in tag else name
    for key in (image, name, untagged):
        if key in entrypoints:
            return list(entrypoints[key])
    return []


def node_id_of(workflow: str, name: str) -> str:
    """Argo's node id: the workflow's name for the root, else NAME-FNV32a(node name)."""
    if name == workflow:
        return workflow
    h = 0x811C9DC5
    for byte in name.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{workflow}-{h}"


def _dependency_ids(text: str, results: Mapping[str, Node]) -> list[str]:
    return [results[d].id for d in (expr.depends_names(text) if text else []) if d in results]


def _declared_defaults(tmpl: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs a failed pod still reports: output parameters with a ``valueFrom.default``
    (Argo's wait container falls back to it when the file is missing)."""
    values = {
        str(p["name"]): params.render(p["valueFrom"]["default"])
        for p in (tmpl.get("outputs") or {}).get("parameters") or []
        if isinstance(p.get("valueFrom"), dict) and p["valueFrom"].get("default") is not None
    }
    return {"parameters": values} if values else {}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return

    def hard() -> None:
        time.sleep(2)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    threading.Thread(target=hard, daemon=True).start()


def _start(work: Callable[[], None], run: Run, name: str) -> threading.Thread:
    def guarded() -> None:
        try:
            work()
        except Exception as exc:  # a runner bug must fail its node, not hang the run
            run.warn(f"{name}: internal error {type(exc).__name__}: {exc}")
            run.stop(f"internal error in {name}")

    t = threading.Thread(target=guarded, name=name, daemon=True)
    t.start()
    return t


def _remap_container(c: dict[str, Any], mounts: list[sandbox.Mount]) -> dict[str, Any]:
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


class Limiter(threading.BoundedSemaphore):
    """A template's ``parallelism``: a semaphore that knows its size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _limiter(tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str) -> Limiter | None:
    raw = tmpl.get("parallelism")
    if raw is None:
        return None
    return Limiter(int(params.substitute(str(raw), scope, f"{where}.parallelism")))


def _continues(step: Mapping[str, Any], phase: str) -> bool:
    cont = step.get("continueOn") or {}
    return bool(cont.get("failed")) if phase == FAILED else bool(cont.get("error"))


def _publish(scope: dict[str, str], prefix: str, node: Node) -> None:
    scope[f"{prefix}.status"] = node.phase
    scope[f"{prefix}.id"] = node.id
    if node.started:
        scope[f"{prefix}.startedAt"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(node.started)
        )
    if node.finished:
        scope[f"{prefix}.finishedAt"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(node.finished)
        )
    outs = node.outputs
    for k, v in (outs.get("parameters") or {}).items():
        scope[f"{prefix}.outputs.parameters.{k}"] = v
    if "result" in outs:
        scope[f"{prefix}.outputs.result"] = outs["result"]
    if "exitCode" in outs:
        scope[f"{prefix}.exitCode"] = outs["exitCode"]


def _aggregate(children: list[Node], tmpl: Mapping[str, Any]) -> dict[str, Any]:
    names = [p["name"] for p in (tmpl.get("outputs") or {}).get("parameters") or []]
    per: dict[str, list[str]] = {n: [] for n in names}
    results: list[str] = []
    for c in children:
        for k, v in (c.outputs.get("parameters") or {}).items():
            per.setdefault(k, []).append(v)
        if "result" in c.outputs:
            results.append(c.outputs["result"])
    return {
        "parameters": {k: params.aggregate(v) for k, v in per.items()},
        "result": params.aggregate_results(results),
    }


def _seconds(value: Any) -> float:
    """An Argo duration: a number of seconds or a Go duration string (``10s``, ``2m``, ``1h30m``)."""
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ParamError(f"bad duration {value!r}")
    for number, unit in parts:
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def _should_retry(policy: str, expression: Any, attempt: Attempt, where: str) -> bool:
    if policy == "OnFailure" and attempt.phase != FAILED:
        return False
    if policy in ("OnError", "OnTransientError") and attempt.phase != ERROR:
        return False
    if expression:
        names = {
            "lastRetry.exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
            "lastRetry.status": attempt.phase,
            "lastRetry.duration": str(int((attempt.finished or time.time()) - attempt.started)),
            "lastRetry.message": attempt.message,
        }
        try:
            return expr.condition(str(expression), names)
        except expr.ExprError as exc:
            raise SpecError(f"{where}: retryStrategy.expression: {exc}") from None
    return True


def _names_failure(text: str, dep: str) -> bool:
    """Whether a depends expression looks at ``dep`` failing (so the failure is handled)."""
    results = ("Failed", "Errored", "Completed", "AllFailed", "AnySucceeded")
    return any(re.search(rf"(?<![\w-]){re.escape(dep)}\.{r}\b", text) for r in results)
