"""Steps templates (steps.go executeSteps): step groups one after another, the steps of a group
side by side; and what a step or a DAG task (:mod:`dags`) runs: its loop expanded
(``withItems``, ``withParam``, ``withSequence``) into items started as ``parallelism`` frees
slots, ``when`` checked, arguments resolved, its template run per item by the
:class:`~argo_local.engine.scheduling.Scheduler`."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from argo_local.engine import workflowscope
from argo_local.engine.concurrency import Limiter, Stoppable, parallelism_limit, start_thread
from argo_local.engine.hooks import Hooks, StepHooks
from argo_local.engine.needs import NodeRun, TemplateRunner
from argo_local.engine.workflowscope import ScopeRun
from argo_local.expr import depends as expr
from argo_local.expr import govaluate, params
from argo_local.expr.params import ParamError
from argo_local.model.nodes import (
    ERROR,
    FAIL_FAST,
    FAILED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Node,
    continues,
)
from argo_local.model.spec import Document, SpecError
from argo_local.pods import dataflow
from argo_local.pods.capacity import PodSlots


class StepsRun(NodeRun, ScopeRun, Stoppable, Protocol):
    """What steps and DAGs need of a run."""

    hooks: Hooks
    slots: PodSlots


class StepsScheduler(TemplateRunner, Protocol):
    """What steps and DAGs need of the scheduler (:mod:`scheduling` runs them)."""

    @property
    def run(self) -> StepsRun: ...
    def template_of(self, doc: Document, step: Mapping[str, Any]) -> Mapping[str, Any] | None: ...


def run_steps(
    sched: StepsScheduler,
    node: Node,
    doc: Document,
    tmpl: dict[str, Any],
    scope: dict[str, str],
    where: str,
) -> None:
    """Run a steps template's groups for ``node``, one after another (steps.go executeSteps):
    a group's steps start side by side and the next group waits for them all."""
    limiter = parallelism_limit(tmpl, scope, where)
    fail_fast = threading.Event() if tmpl.get("failFast") else None
    failed = ""
    gnode: Node | None = None
    for gi, group in enumerate(tmpl["steps"] or []):
        sched.run.check_cancel()
        workflowscope.refresh(sched.run, scope)
        gname = f"{node.name}[{gi}]"
        gnode = sched.run.new_node(gname, f"[{gi}]", "StepGroup", "", node)
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
                r = run_task(
                    sched,
                    step,
                    doc,
                    dict(scope),
                    f"{gname}.{sname}",
                    sname,
                    gnode,
                    limiter,
                    w,
                    fail_fast,
                )
                if r is not None:
                    results[sname] = r

            threads.append(start_thread(work, sched.run, f"{gname}.{sname}"))
        for t in threads:
            t.join()
        errored = _template_errored(sched.run, [results[s] for s in _names(group) if s in results])
        if errored is not None:
            # steps.go executeStepGroup: an error executeTemplate returns errors the group
            # at once, whatever the step's continueOn says; executeSteps fails the template
            # with the group's message.
            failed = f"step group deemed errored due to child {errored.name} error: "
            sched.run.finish(gnode, ERROR, failed + errored.message)
            failed += errored.message
            break
        group_failed = [r for r in results.values() if r.phase in (FAILED, ERROR) and not r.handled]
        if fail_fast is not None and fail_fast.is_set():
            break  # the group's node is failed below, with the template's
        sched.run.finish(gnode, FAILED if group_failed else SUCCEEDED)
        if group_failed:
            failed = f"child {group_failed[0].display} {group_failed[0].phase.lower()}"
            break
        for step in group or []:
            sname = str(step["name"])
            r = results[sname]
            if r.result_error and dataflow.result_referenced(tmpl, "steps", sname):
                # the controller fails the steps template when it adds the group's
                # outputs to its scope (executeSteps -> processAggregateNodeOutputs)
                sched.run.finish(node, ERROR, f"{where}: steps.{sname}: {r.result_error}")
                return
            dataflow.publish(scope, f"steps.{sname}", r, sched.template_of(doc, step))
    sched.run.check_cancel()
    if fail_fast is not None and fail_fast.is_set():
        # operator.go checkParallelism: the template and its last step group are failed
        # once no child runs, whatever continueOn says.
        if gnode is not None:
            sched.run.finish(gnode, FAILED, FAIL_FAST)
        sched.run.finish(node, FAILED, FAIL_FAST)
        return
    if failed:
        sched.run.finish(node, FAILED, failed)
        return
    dataflow.template_outputs(node, tmpl, scope, where)
    sched.run.finish(node, SUCCEEDED)


def run_task(
    sched: StepsScheduler,
    step: dict[str, Any],
    doc: Document,
    scope: dict[str, str],
    name: str,
    display: str,
    parent: Node,
    limiter: Limiter | None,
    where: str,
    fail_fast: threading.Event | None = None,
) -> Node | None:
    """A step or DAG task: expand its loop, check ``when``, run the template per item.
    None when the template's ``failFast`` stopped it before it started (Argo creates no
    node then)."""
    try:
        tdoc, tmpl = sched.run.find_template(doc, step, where)
        items = loop_items(step, scope, where)
    except (ParamError, SpecError, expr.ExprError) as exc:
        node = sched.run.new_node(name, display, "Skipped", str(step.get("template", "")), parent)
        return sched.run.finish(node, ERROR, str(exc))
    # A step's hooks see it as steps.NAME (a loop item as steps.NAME(i:item)); a task's as
    # tasks.NAME, loop items included (steps.go executeStepGroup, dag.go executeDAGTask).
    in_dag = parent.type == "DAG"
    hooks = sched.run.hooks.step(step, doc, tmpl, scope, "tasks" if in_dag else "steps", where)
    if items is None:
        if hooks is not None:
            hooks.expect(name, display)
        result = run_item(
            sched, step, tdoc, tmpl, scope, name, display, parent, limiter, where, fail_fast
        )
        if result is None:
            if hooks is not None:
                hooks.forget(name)
            return None
        if hooks is not None:
            hooks.done(result, display)
        if result.phase in (FAILED, ERROR) and continues(step, result.phase):
            result.handled = not result.template_error
        return result
    if not items:
        # A Skipped node with no outputs, as the controller makes it ("Skipped, empty
        # params"): what it offers the nodes after it is its template's skipped outputs.
        empty = sched.run.new_node(name, display, "Skipped", str(tmpl.get("name") or ""), parent)
        sched.run.finish(empty, SKIPPED, "Skipped, empty params")
        if hooks is not None and in_dag:
            hooks.done(empty, display)
        return empty
    return _run_loop(
        sched,
        step,
        tdoc,
        tmpl,
        scope,
        name,
        display,
        parent,
        limiter,
        where,
        fail_fast,
        items,
        hooks,
    )


def _run_loop(
    sched: StepsScheduler,
    step: dict[str, Any],
    tdoc: Document,
    tmpl: dict[str, Any],
    scope: dict[str, str],
    name: str,
    display: str,
    parent: Node,
    limiter: Limiter | None,
    where: str,
    fail_fast: threading.Event | None,
    items: list[Any],
    hooks: StepHooks | None,
) -> Node:
    """A looped step or task: a TaskGroup node whose items start in order as ``parallelism``
    frees slots; its phase from theirs, its outputs their aggregate."""
    in_dag = parent.type == "DAG"
    group = sched.run.new_node(name, display, "TaskGroup", str(tmpl.get("name") or ""), parent)
    group.started = time.time()
    group.phase = RUNNING
    if hooks is not None and in_dag:
        hooks.evaluate(group, display, RUNNING)
    group.loop_total = len(items)
    sched.run.progress("loop-start", group)
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
            child = run_item(
                sched,
                step,
                tdoc,
                tmpl,
                {**scope, **variables},
                f"{name}{label}",
                f"{display}{label}",
                group,
                limiter,
                where,
                fail_fast,
                # the items the loop's first pass starts (one per slot); later ones start
                # as slots free up, in a pass that knows of any failure before it
                launched=i < slots,
            )
            if child is None:
                if hooks is not None and not in_dag:
                    hooks.forget(f"{name}{label}")
                continue
            child.index = i
            if hooks is not None:
                # an item of a task has only its exit handler; the task's other hooks
                # watch the task's group node
                key = display if in_dag else f"{display}{label}"
                hooks.done(child, key, variables, expressions=not in_dag)
            children[i] = child

    slots = len(items) if limiter is None else min(len(items), limiter.size)
    # Items beyond what the machine runs at once would only wait for a pod slot
    # (capacity.py): they wait for a thread instead, unstarted (Pending), so a 7,000-wide
    # loop never asks for 7,000 threads.
    threads = [
        start_thread(work, sched.run, f"{name}[{k}]")
        for k in range(min(slots, sched.run.slots.cap.pods))
    ]
    for t in threads:
        t.join()
    done = [c for c in children if c is not None]
    group.loop_phases = [c.phase for c in done]
    group.outputs, group.result_error = dataflow.aggregate(done)
    bad = [c for c in done if c.phase in (FAILED, ERROR)]
    if bad:
        sched.run.finish(group, bad[0].phase, f"{len(bad)} of {len(items)} failed")
        group.handled = continues(step, bad[0].phase) and not any(c.template_error for c in bad)
    elif len(done) < len(items):
        sched.run.finish(group, FAILED, sched.run.cancel_reason or "not all items ran")
    else:
        sched.run.finish(group, SUCCEEDED)
    if hooks is not None and in_dag:
        hooks.done(group, display)
    return group


def _names(group: Any) -> list[str]:
    return [str(step["name"]) for step in group or []]


def _template_errored(run: StepsRun, results: list[Node]) -> Node | None:
    """The first node of a step group (a loop's items included: the controller expands them
    into the group) whose error executeTemplate returned, else None."""
    for r in results:
        if r.template_error:
            return r
        if r.type == "TaskGroup":
            with run.lock:
                items = [run.nodes[c] for c in r.children if c in run.nodes]
            found = next((c for c in items if c.template_error), None)
            if found is not None:
                return found
    return None


def loop_items(step: Mapping[str, Any], scope: Mapping[str, str], where: str) -> list[Any] | None:
    if "withItems" in step:
        raw = step["withItems"]
        if not isinstance(raw, list):
            raise ParamError(f"{where}.withItems: expected a list")
        return [params.sort_item(params.substitute(i, scope, f"{where}.withItems")) for i in raw]
    if "withParam" in step:
        text = params.substitute(str(step["withParam"]), scope, f"{where}.withParam")
        return params.parse_list(text, f"{where}.withParam")
    if "withSequence" in step:
        seq = params.substitute(dict(step["withSequence"]), scope, f"{where}.withSequence")
        return list(params.sequence(seq, f"{where}.withSequence"))
    return None


def run_item(
    sched: StepsScheduler,
    step: Mapping[str, Any],
    doc: Document,
    tmpl: dict[str, Any],
    scope: dict[str, str],
    name: str,
    display: str,
    parent: Node,
    limiter: Limiter | None,
    where: str,
    fail_fast: threading.Event | None = None,
    *,
    launched: bool = True,
) -> Node | None:
    """Run one step, task or loop item under the template's ``parallelism``. None when
    ``failFast`` keeps it from starting: a failure was known in the pass that would start it,
    i.e. it is not among the items its scheduler ``launched`` in a pass that knew of none, or it
    had to wait for a slot (operator.go checkParallelism). Deciding by when the failure
    happened rather than when this thread runs keeps a busy machine from changing the outcome."""
    try:
        when = step.get("when")
        if when is not None:
            text = params.substitute(str(when), scope, f"{where}.when")
            if not govaluate.should_execute(text):
                node = sched.run.new_node(
                    name, display, "Skipped", str(tmpl.get("name") or ""), parent
                )
                return sched.run.finish(node, SKIPPED, f"when '{text}' evaluated false")
        arguments = dataflow.step_arguments(
            _mark_absent(dict(step.get("arguments") or {}), scope), scope, f"{where}.arguments"
        )
    except (ParamError, expr.ExprError) as exc:
        node = sched.run.new_node(name, display, "Skipped", str(tmpl.get("name") or ""), parent)
        return sched.run.finish(node, ERROR, str(exc))
    waited = False
    if limiter is not None and not limiter.acquire(blocking=False):
        waited = True
        limiter.acquire()
    try:
        if fail_fast is not None and fail_fast.is_set() and (waited or not launched):
            return None
        if sched.run.cancel.is_set():
            node = sched.run.new_node(name, display, "Skipped", str(tmpl.get("name") or ""), parent)
            return sched.run.finish(node, FAILED, sched.run.cancel_reason or "cancelled")
        return sched.run_template(
            doc, tmpl, arguments, name, display, parent, fail_fast=fail_fast, caller_scope=scope
        )
    finally:
        if limiter is not None:
            limiter.release()


def _mark_absent(arguments: dict[str, Any], scope: Mapping[str, str]) -> dict[str, Any]:
    """Arguments whose value is only a reference to an absent output (a skipped producer's, no
    default) become the sentinel that lets the consumer's input default apply
    (markAbsentOptionalArgs, workflow/controller/scope.go), before substitution."""
    given = arguments.get("parameters")
    if not given:
        return arguments
    marked = [
        {**p, "value": params.ABSENT_ARGUMENT}
        if isinstance(p, dict) and params.absent_reference(p.get("value"), scope)
        else p
        for p in given
    ]
    return {**arguments, "parameters": marked}
