"""Scheduling: which node runs when. A template's steps group by group, a DAG's tasks as
their ``depends`` allow, a loop's items as ``parallelism`` frees slots, ``when`` and
``continueOn``; one thread per running node, a pod template handed to :mod:`pods`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from workers.runner import dataflow, expr, params, workflowscope
from workers.runner.nodes import (
    DONE,
    ERROR,
    FAILED,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Cancelled,
    Node,
)
from workers.runner.params import ParamError
from workers.runner.spec import Document, SpecError

if TYPE_CHECKING:
    from workers.runner.engine import Run


class Scheduler:
    """Runs templates as nodes of one :class:`~workers.runner.engine.Run`."""

    def __init__(self, run: Run) -> None:
        self.run = run

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
        hooked: bool = False,
    ) -> Node:
        kind = next(k for k in ("container", "script", "steps", "dag") if k in tmpl)
        type_ = {"container": "Pod", "script": "Pod", "steps": "Steps", "dag": "DAG"}[kind]
        node = self.run.new_node(name, display, type_, str(tmpl.get("name")), parent, hooked=hooked)
        node.started = time.time()
        node.phase = RUNNING
        self.run.hooks.running(node)
        where = f"{doc.source}: template {tmpl.get('name')}"
        scope: dict[str, str] | None = None
        try:
            node.inputs = dataflow.resolve_inputs(self.run, tmpl, arguments, where, lenient=lenient)
            scope = workflowscope.refresh(self.run, dict(self.run.scope))
            for k, v in node.inputs.items():
                scope[f"inputs.parameters.{k}"] = v
            if type_ == "Pod":
                self.run.pods.run_pod(node, doc, tmpl, scope, where)
            elif type_ == "Steps":
                self.run_steps(node, doc, tmpl, scope, where)
            else:
                self.run_dag(node, doc, tmpl, scope, where)
        except (ParamError, SpecError, expr.ExprError) as exc:
            self.run.finish(node, ERROR, str(exc))
        except Cancelled:
            self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
        if scope is not None and node.outputs.get("parameters"):
            try:
                workflowscope.export(self.run, node, tmpl, scope, where)
            except ParamError as exc:
                self.run.warn(str(exc))
        if node.reused:
            return node  # its metrics were the earlier run's
        outputs = node.outputs if node.phase == SUCCEEDED else dataflow.declared_defaults(tmpl)
        self.run.template_metrics(
            tmpl, node, where, node.phase, node.duration or 0.0, len(node.attempts) - 1, outputs
        )
        return node

    def run_steps(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        limiter = _limiter(tmpl, scope, where)
        failed = ""
        for gi, group in enumerate(tmpl["steps"] or []):
            self.run.check_cancel()
            workflowscope.refresh(self.run, scope)
            gname = f"{node.name}[{gi}]"
            gnode = self.run.new_node(gname, f"[{gi}]", "StepGroup", "", node)
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

                threads.append(_start(work, self.run, f"{gname}.{sname}"))
            for t in threads:
                t.join()
            group_failed = [
                r for r in results.values() if r.phase in (FAILED, ERROR) and not r.handled
            ]
            for sname, r in results.items():
                dataflow.publish(scope, f"steps.{sname}", r)
            self.run.finish(gnode, FAILED if group_failed else SUCCEEDED)
            if group_failed:
                failed = f"child {group_failed[0].display} {group_failed[0].phase.lower()}"
                break
        self.run.check_cancel()
        if failed:
            self.run.finish(node, FAILED, failed)
            return
        dataflow.template_outputs(node, tmpl, scope, where)
        self.run.finish(node, SUCCEEDED)

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
            tdoc, tmpl = self.run.find_template(doc, step, where)
            items = self.loop_items(step, scope, where)
        except (ParamError, SpecError, expr.ExprError) as exc:
            node = self.run.new_node(
                name, display, "Skipped", str(step.get("template", "")), parent
            )
            return self.run.finish(node, ERROR, str(exc))
        # A step's hooks see it as steps.NAME (a loop item as steps.NAME(i:item)); a task's as
        # tasks.NAME, loop items included (steps.go executeStepGroup, dag.go executeDAGTask).
        in_dag = parent.type == "DAG"
        hooks = self.run.hooks.step(step, doc, tmpl, scope, "tasks" if in_dag else "steps", where)
        if items is None:
            if hooks is not None:
                hooks.expect(name, display)
            result = self.run_item(step, tdoc, tmpl, scope, name, display, parent, limiter, where)
            if hooks is not None:
                hooks.done(result, display)
            if result.phase in (FAILED, ERROR) and _continues(step, result.phase):
                result.handled = True
            return result
        group = self.run.new_node(name, display, "TaskGroup", str(tmpl.get("name")), parent)
        group.started = time.time()
        group.phase = RUNNING
        if hooks is not None and in_dag:
            hooks.evaluate(group, display, RUNNING)
        if not items:
            group.outputs = dataflow.empty_outputs(tmpl)
            self.run.finish(group, SKIPPED, "loop over an empty list")
            if hooks is not None and in_dag:
                hooks.done(group, display)
            return group
        group.loop_total = len(items)
        self.run.progress("loop-start", group)
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
                variables = params.item_scope(item)
                if hooks is not None and not in_dag:
                    hooks.expect(f"{name}{label}", f"{display}{label}", variables)
                child = self.run_item(
                    step,
                    tdoc,
                    tmpl,
                    {**scope, **variables},
                    f"{name}{label}",
                    f"{display}{label}",
                    group,
                    limiter,
                    where,
                )
                child.index = i
                if hooks is not None:
                    # an item of a task has only its exit handler; the task's other hooks
                    # watch the task's group node
                    key = display if in_dag else f"{display}{label}"
                    hooks.done(child, key, variables, expressions=not in_dag)
                children[i] = child

        slots = len(items) if limiter is None else min(len(items), limiter.size)
        threads = [_start(work, self.run, f"{name}[{k}]") for k in range(slots)]
        for t in threads:
            t.join()
        done = [c for c in children if c is not None]
        group.loop_phases = [c.phase for c in done]
        group.outputs = dataflow.aggregate(done, tmpl)
        bad = [c for c in done if c.phase in (FAILED, ERROR)]
        if bad:
            self.run.finish(group, bad[0].phase, f"{len(bad)} of {len(items)} failed")
            group.handled = _continues(step, bad[0].phase)
        elif len(done) < len(items):
            self.run.finish(group, FAILED, self.run.cancel_reason or "not all items ran")
        else:
            self.run.finish(group, SUCCEEDED)
        if hooks is not None and in_dag:
            hooks.done(group, display)
        return group

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
                    node = self.run.new_node(
                        name, display, "Skipped", str(tmpl.get("name")), parent
                    )
                    return self.run.finish(node, SKIPPED, f"when '{text}' evaluated false")
            arguments = params.substitute(
                dict(step.get("arguments") or {}), scope, f"{where}.arguments"
            )
        except (ParamError, expr.ExprError) as exc:
            node = self.run.new_node(name, display, "Skipped", str(tmpl.get("name")), parent)
            return self.run.finish(node, ERROR, str(exc))
        with limiter or nullcontext():
            if self.run.cancel.is_set():
                node = self.run.new_node(name, display, "Skipped", str(tmpl.get("name")), parent)
                return self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
            return self.run_template(doc, tmpl, arguments, name, display, parent)

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
        omitted: list[str] = []
        cond = threading.Condition(self.run.lock)

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
            tscope = workflowscope.refresh(self.run, dict(scope))

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
                            r = self.run.new_node(
                                f"{node.name}.{tname}", tname, "Skipped", "", node
                            )
                            r.phase, r.message = ERROR, "internal error"
                        results[tname] = r
                        r.after = _dependency_ids(deps[tname], results)
                        dataflow.publish(scope, f"tasks.{tname}", r)
                        running.discard(tname)
                        cond.notify_all()

            running.add(tname)
            _start(work, self.run, f"{node.name}.{tname}")

        with cond:
            while len(results) < len(tasks):
                if self.run.cancel.is_set() and not running:
                    break
                for tname in tasks:
                    if tname in results or tname in running or self.run.cancel.is_set():
                        continue
                    names = expr.depends_names(deps[tname]) if deps[tname] else []
                    if not all(d in results for d in names):
                        continue
                    if deps[tname] and not expr.depends(deps[tname], operand):
                        skipped = self.run.new_node(
                            f"{node.name}.{tname}", tname, "Skipped", "", node
                        )
                        skipped.after = _dependency_ids(deps[tname], results)
                        results[tname] = self.run.finish(
                            skipped, OMITTED, f"depends '{deps[tname]}' evaluated false"
                        )
                        dataflow.publish(scope, f"tasks.{tname}", skipped)
                        omitted.append(tname)
                        continue
                    launch(tname)
                if len(results) < len(tasks):
                    cond.wait(0.5)
        for tname in omitted:
            # an omitted task's hooks still see its status (dag.go executeDAGTask evaluates
            # them for every fulfilled task); it never ran, so it has no exit handler
            hooks = self.run.hooks.step(
                tasks[tname], doc, {}, dict(scope), "tasks", f"{where}: dag.tasks[{tname}]"
            )
            if hooks is not None:
                hooks.done(results[tname], tname)
        self.run.check_cancel()
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
            self.run.finish(node, FAILED, f"task {bad[0].display} {bad[0].phase.lower()}")
            return
        dataflow.template_outputs(node, tmpl, scope, where)
        self.run.finish(node, SUCCEEDED)


def _dependency_ids(text: str, results: Mapping[str, Node]) -> list[str]:
    return [results[d].id for d in (expr.depends_names(text) if text else []) if d in results]


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


def _names_failure(text: str, dep: str) -> bool:
    """Whether a depends expression looks at ``dep`` failing (so the failure is handled)."""
    results = ("Failed", "Errored", "Completed", "AllFailed", "AnySucceeded")
    return any(re.search(rf"(?<![\w-]){re.escape(dep)}\.{r}\b", text) for r in results)
