"""DAG scheduling: a DAG's tasks start as their ``depends`` allow (dag.go executeDAG), only
those ``dag.target`` needs, and the DAG's phase comes from its leaves (assessDAGPhase)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from argo_local.engine import steps, workflowscope
from argo_local.engine.concurrency import Limiter, parallelism_limit, start_thread
from argo_local.engine.steps import StepsScheduler
from argo_local.expr import depends as expr
from argo_local.expr import params
from argo_local.model.nodes import (
    ERROR,
    FAIL_FAST,
    FAILED,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Node,
    continues,
)
from argo_local.model.spec import Document, SpecError
from argo_local.pods import dataflow


def run_dag(
    sched: StepsScheduler,
    node: Node,
    doc: Document,
    tmpl: dict[str, Any],
    scope: dict[str, str],
    where: str,
) -> None:
    """Run a DAG template's tasks for ``node`` (dag.go executeDAG): each starts on its own thread
    once its ``depends`` hold, within the template's ``parallelism``; then the DAG ends with the
    phase its leaves give it."""
    limiter = parallelism_limit(tmpl, scope, where)
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
    wanted = _targets(tmpl, tasks, deps, scope, where)
    if wanted is not None:
        tasks = {k: v for k, v in tasks.items() if k in wanted}
    # dag.failFast (default true) needs nothing here: the controller (dag.go
    # assessDAGPhase) keeps a DAG Running while any of its nodes runs and starts every
    # task whose dependencies resolve in the meantime, so with or without it a DAG runs
    # what it can and fails once nothing runs. The template's own failFast stops it.
    fail_fast = threading.Event() if tmpl.get("failFast") else None
    dag = _Dag(sched, node, doc, tmpl, scope, where, tasks, deps, limiter, fail_fast)
    dag.schedule()
    dag.conclude()


class _Dag:
    """One DAG node's run: its tasks, their results, and those running (under ``cond``)."""

    def __init__(
        self,
        sched: StepsScheduler,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        tasks: dict[str, Any],
        deps: dict[str, str],
        limiter: Limiter | None,
        fail_fast: threading.Event | None,
    ) -> None:
        self.sched, self.run = sched, sched.run
        self.node, self.doc, self.tmpl, self.scope, self.where = node, doc, tmpl, scope, where
        self.tasks, self.deps, self.limiter, self.fail_fast = tasks, deps, limiter, fail_fast
        self.stopped: set[str] = set()  # tasks failFast kept from starting
        self.results: dict[str, Node] = {}
        self.running: set[str] = set()
        self.omitted: list[str] = []
        self.cond = threading.Condition(sched.run.lock)

    def operand(self, task: str, result: str | None) -> bool:
        # evaluateDependsLogic (workflow/controller/dag.go) over a finished dependency
        n = self.results[task]
        phases = n.loop_phases if n.type == "TaskGroup" else []
        daemoned = n.daemoned and n.phase == RUNNING
        if result is None:
            # a bare name (or a `dependencies` entry) is expandDependency's
            # (T.Succeeded || T.Skipped || T.Daemoned), plus T.Failed / T.Errored when T
            # has continueOn for them (workflow/common/ancestry.go)
            return (
                n.phase in (SUCCEEDED, SKIPPED) or daemoned or continues(self.tasks[task], n.phase)
            )
        if result == "Errored":
            return n.phase == ERROR
        if result == "AnySucceeded":
            return any(p == SUCCEEDED for p in phases)
        if result == "AllFailed":
            return bool(phases) and all(p == FAILED for p in phases)
        if result == "Daemoned":
            return daemoned
        return bool(n.phase == result)

    def ancestors(self, tname: str) -> list[str]:
        deps = self.deps
        seen: list[str] = []
        todo = list(expr.depends_names(deps[tname]) if deps[tname] else [])
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.append(d)
                todo.extend(expr.depends_names(deps[d]) if deps[d] else [])
        return seen

    def unaggregatable(self, names: list[str]) -> str:
        """Why a loop among ``names`` has an outputs.result this DAG reads but Argo cannot
        aggregate (its stdouts are not JSON): the controller errors when it builds the
        scope of the tasks after it (buildLocalScopeFromTask) and of the DAG's outputs."""
        for d in names:
            r = self.results.get(d)
            if (
                r is not None
                and r.result_error
                and dataflow.result_referenced(self.tmpl, "tasks", d)
            ):
                return f"tasks.{d}: {r.result_error}"
        return ""

    def launch(self, tname: str) -> None:
        node, scope = self.node, self.scope
        tscope = workflowscope.refresh(self.run, dict(scope))
        broken = self.unaggregatable(self.ancestors(tname))
        if broken:
            errored = self.run.new_node(f"{node.name}.{tname}", tname, "Skipped", "", node)
            errored.after = _dependency_ids(self.deps[tname], self.results)
            self.results[tname] = self.run.finish(errored, ERROR, broken)
            dataflow.publish(scope, f"tasks.{tname}", errored)
            return
        self.running.add(tname)
        start_thread(lambda: self.work(tname, tscope), self.run, f"{node.name}.{tname}")

    def work(self, tname: str, tscope: dict[str, str]) -> None:
        """A task's thread: run it, then record its result and wake the scheduling loop."""
        node, t, fail_fast = self.node, self.tasks[tname], self.fail_fast
        r: Node | None = None
        try:
            r = steps.run_task(
                self.sched,
                t,
                self.doc,
                tscope,
                f"{node.name}.{tname}",
                tname,
                node,
                self.limiter,
                f"{self.where}: dag.tasks[{tname}]",
                fail_fast,
            )
            if r is not None and r.template_error:
                # dag.go executeDAGTask: an error executeTemplate returns is the task's, as
                # "task 'NODE' errored: ..." (its continueOn still applies, unlike a step's)
                with self.run.lock:
                    r.message = f"task '{r.name}' errored: {r.message}"
        finally:
            with self.cond:
                if r is None and fail_fast is not None and fail_fast.is_set():
                    self.stopped.add(tname)  # never started: no node, as in Argo
                else:
                    if r is None:
                        r = self.run.new_node(f"{node.name}.{tname}", tname, "Skipped", "", node)
                        r.phase, r.message = ERROR, "internal error"
                    self.results[tname] = r
                    r.after = _dependency_ids(self.deps[tname], self.results)
                    template = self.sched.template_of(self.doc, t)
                    dataflow.publish(self.scope, f"tasks.{tname}", r, template)
                self.running.discard(tname)
                self.cond.notify_all()

    def schedule(self) -> None:
        """Start each task once its dependencies finished and its ``depends`` holds (an omitted
        one when it does not), until every task has a result or the run stops."""
        tasks, results, cancel = self.tasks, self.results, self.run.cancel
        with self.cond:
            while len(results) < len(tasks):
                if cancel.is_set() and not self.running:
                    break
                halted = self.fail_fast is not None and self.fail_fast.is_set()
                if halted and not self.running:
                    break
                for tname in tasks:
                    if tname in results or tname in self.running or cancel.is_set():
                        continue
                    if halted:
                        break
                    deps = self.deps[tname]
                    names = expr.depends_names(deps) if deps else []
                    if not all(d in results for d in names):
                        continue
                    if deps and not expr.depends(deps, self.operand):
                        self.omit(tname)
                        continue
                    self.launch(tname)
                if len(results) < len(tasks):
                    self.cond.wait(0.5)

    def omit(self, tname: str) -> None:
        node = self.node
        skipped = self.run.new_node(f"{node.name}.{tname}", tname, "Skipped", "", node)
        skipped.after = _dependency_ids(self.deps[tname], self.results)
        self.results[tname] = self.run.finish(
            skipped, OMITTED, f"depends '{self.deps[tname]}' evaluated false"
        )
        template = self.sched.template_of(self.doc, self.tasks[tname])
        dataflow.publish(self.scope, f"tasks.{tname}", skipped, template)
        self.omitted.append(tname)

    def conclude(self) -> None:
        """The omitted tasks' hooks, then the DAG's phase from its leaves and branches."""
        run, node, where, tasks, results = self.run, self.node, self.where, self.tasks, self.results
        for tname in self.omitted:
            # an omitted task's hooks still see its status (dag.go executeDAGTask evaluates
            # them for every fulfilled task); it never ran, so it has no exit handler
            hooks = run.hooks.step(
                tasks[tname],
                self.doc,
                {},
                dict(self.scope),
                "tasks",
                f"{where}: dag.tasks[{tname}]",
            )
            if hooks is not None:
                hooks.done(results[tname], tname)
        run.check_cancel()
        if self.fail_fast is not None and self.fail_fast.is_set():
            run.finish(node, FAILED, FAIL_FAST)
            return
        # dag.target may have left tasks out: only those that ran have leaves and branches
        phase, culprit = assess_phase(tasks, {t: self.deps[t] for t in tasks}, results)
        if phase != SUCCEEDED:
            r = results[culprit]
            how = "" if r.phase == phase else f" ({r.phase.lower()} under a {phase.lower()} branch)"
            run.finish(node, phase, f"task {culprit} {phase.lower()}{how}")
            return
        broken = self.unaggregatable(list(tasks))
        if broken:
            run.finish(node, ERROR, f"{where}: {broken}")
            return
        dataflow.template_outputs(node, self.tmpl, self.scope, where)
        run.finish(node, SUCCEEDED)


def _targets(
    tmpl: Mapping[str, Any],
    tasks: Mapping[str, Any],
    deps: Mapping[str, str],
    scope: Mapping[str, str],
    where: str,
) -> set[str] | None:
    """``dag.target``: the named tasks (space-separated, after substitution) and every task
    they depend on, directly or not (dag.go executeDAG/executeDAGTask); None runs them all."""
    raw = (tmpl.get("dag") or {}).get("target")
    if raw in (None, ""):
        return None
    text = str(params.substitute(str(raw), scope, f"{where}.dag.target"))
    names = text.split()
    if not names:
        return None
    for t in names:
        if t not in tasks:
            raise SpecError(f"{where}: dag.target: target {t!r} is not defined")
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        t = todo.pop()
        if t in wanted:
            continue
        wanted.add(t)
        todo.extend(expr.depends_names(deps[t]) if deps[t] else [])
    return wanted


def _dependency_ids(text: str, results: Mapping[str, Node]) -> list[str]:
    return [results[d].id for d in (expr.depends_names(text) if text else []) if d in results]


_COMPLETED = (SUCCEEDED, FAILED, ERROR)


def assess_phase(
    tasks: Mapping[str, Mapping[str, Any]], deps: Mapping[str, str], results: Mapping[str, Node]
) -> tuple[str, str]:
    """A finished DAG's phase and the leaf that decides it (assessDAGPhase, dag.go).

    Only the leaves count (the tasks no other task depends on, by name). A leaf that ran has
    its own phase; a Skipped or Omitted one inherits its branch's: the phase of the last node
    that ran on a path from a root, a Failed or Errored path winning over a Succeeded one. So
    an Omitted leaf under a failed task fails the DAG, and a failure that a task after it
    handles (it ran) does not. A leaf's own continueOn for its phase excuses it. The first
    failing leaf in name order decides between Failed and Error."""
    children: dict[str, list[str]] = {t: [] for t in tasks}
    for t, text in deps.items():
        for d in dict.fromkeys(expr.depends_names(text) if text else []):
            children[d].append(t)
    leaves = sorted(t for t in tasks if not children[t])
    deduced: dict[str, str] = {}
    queue: deque[tuple[str, str]] = deque((t, SUCCEEDED) for t in tasks if not deps[t])
    seen: set[tuple[str, str]] = set()
    while queue:
        t, incoming = queue.popleft()
        if (t, incoming) in seen or t not in results:
            continue
        seen.add((t, incoming))
        n = results[t]
        branch = n.phase if n.phase in _COMPLETED else incoming
        if t in leaves and deduced.get(t) not in (FAILED, ERROR):
            deduced[t] = branch
        # the tasks after a loop hang off each of its items (the group's outbound nodes)
        outgoing = [p if p in _COMPLETED else branch for p in n.loop_phases] or [branch]
        for c in children[t]:
            queue.extend((c, p) for p in dict.fromkeys(outgoing))
    for leaf in leaves:
        phase = deduced.get(leaf, SUCCEEDED)
        if phase in (FAILED, ERROR) and not continues(tasks[leaf], phase):
            return phase, leaf
    return SUCCEEDED, ""
