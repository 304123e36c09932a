"""Scheduling: which node runs when. A template's steps group by group, a loop's items as
``parallelism`` frees slots, ``when`` and ``continueOn``, retries of whole templates, memoize
and synchronization around a node; DAGs in :mod:`dags`, a pod template handed to :mod:`pods`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from workers.runner import artifacts, dags, dataflow, expr, govaluate, params, workflowscope
from workers.runner.concurrency import Limiter, parallelism_limit, start_thread
from workers.runner.nodes import (
    ERROR,
    FAIL_FAST,
    FAILED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    continues,
)
from workers.runner.params import ParamError
from workers.runner.pods import _seconds, _should_retry
from workers.runner.spec import KINDS, Document, SpecError
from workers.runner.synchronization import Lock, StopWaiting

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
        fail_fast: threading.Event | None = None,
        hooked: bool = False,
        caller_scope: Mapping[str, str] | None = None,
    ) -> Node:
        kind = next(k for k in KINDS if k in tmpl)
        type_ = {
            "container": "Pod",
            "script": "Pod",
            "containerSet": "Pod",
            "steps": "Steps",
            "dag": "DAG",
            "suspend": "Suspend",
        }[kind]
        # A steps or DAG template with a retryStrategy (its own, or spec.retryStrategy) is a
        # Retry node whose children are its attempts, each a whole Steps/DAG node
        # (operator.go executeTemplate: the retry node wraps any template type).
        whole_retry = type_ in ("Steps", "DAG") and tmpl.get("retryStrategy") is not None
        node = self.run.new_node(
            name,
            display,
            "Retry" if whole_retry else type_,
            str(tmpl.get("name") or ""),
            parent,
            hooked=hooked,
        )
        node.started = time.time()
        node.phase = RUNNING
        node.caller_scope = dict(caller_scope or {})
        self.run.hooks.running(node)
        where = f"{doc.source}: template {tmpl.get('name') or f'(inline in {display})'}"
        scope: dict[str, str] | None = None
        try:
            node.inputs = dataflow.resolve_inputs(self.run, tmpl, arguments, where, lenient=lenient)
            scope = workflowscope.refresh(self.run, dict(self.run.scope))
            for k, v in node.inputs.items():
                scope[f"inputs.parameters.{k}"] = v
            _display_name(node, tmpl, scope, where)
            node.input_artifacts = dataflow.input_artifacts(tmpl, arguments, scope, where)
            if type_ != "Pod":
                # {{inputs.artifacts.X}}: a steps or dag template passes its inputs on by from
                scope.update(artifacts.scope_entries("inputs", node.input_artifacts))
            with self._synchronized(node, tmpl, scope, where):
                if not self._memoized(node, tmpl, scope, where):
                    if type_ == "Pod":
                        self.run.pods.run_pod(node, doc, tmpl, scope, where)
                    elif type_ == "Suspend":
                        self.run_suspend(node, tmpl, scope, where)
                    else:
                        try:
                            if whole_retry:
                                self.run_retried(node, doc, tmpl, scope, where, type_)
                            elif type_ == "Steps":
                                self.run_steps(node, doc, tmpl, scope, where)
                            else:
                                dags.run_dag(self, node, doc, tmpl, scope, where)
                        finally:
                            # Argo's killDaemonedChildren: the daemons this scope started end
                            # with it.
                            self.run.daemons.release(node)
                    self._memoize_save(node, where)
        except (ParamError, SpecError, expr.ExprError, artifacts.ArtifactError) as exc:
            self.run.finish(node, ERROR, str(exc))
        except (Cancelled, StopWaiting):
            self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
        if fail_fast is not None and node.phase in (FAILED, ERROR):
            fail_fast.set()
        if scope is not None and (node.outputs.get("parameters") or node.outputs.get("artifacts")):
            try:
                workflowscope.export(self.run, node, tmpl, scope, where)
            except ParamError as exc:
                self.run.warn(str(exc))
        if node.reused or node.phase == RUNNING or (node.memoization or {}).get("hit"):
            # kept from the earlier run or a memoized hit (no metrics of this run), or a
            # daemon that runs on (its metrics are computed when it ends: pods.py)
            return node
        outputs = node.outputs if node.phase == SUCCEEDED else dataflow.declared_defaults(tmpl)
        self.run.template_metrics(
            tmpl, node, where, node.phase, node.duration or 0.0, len(node.attempts) - 1, outputs
        )
        return node

    def _synchronized(
        self, node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
    ) -> AbstractContextManager[None]:
        """The template's mutexes and semaphores, held while its node runs (retries included);
        the node is Pending while it waits, as in Argo."""
        sync = tmpl.get("synchronization")
        if not sync:
            return nullcontext()
        sync = params.substitute(dict(sync), scope, f"{where}.synchronization")
        locks = self.run.locks.resolve(sync, f"{where}: synchronization")

        def waiting(lock: Lock | None) -> None:
            with self.run.lock:
                if lock is None:
                    node.phase, node.message = RUNNING, ""
                else:
                    node.phase, node.message = "Pending", f"Waiting for {lock.name} lock"
            self.run.progress("waiting" if lock else "running", node)

        return self.run.locks.hold(locks, self.run.cancel, waiting)

    def _memoized(
        self, node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
    ) -> bool:
        """Whether the node took its outputs from its ``memoize`` cache (a hit: Succeeded,
        nothing run); on a miss the node records the key it saves under when it succeeds."""
        memo = tmpl.get("memoize")
        if not memo:
            return False
        key = str(params.substitute(str(memo.get("key") or ""), scope, f"{where}.memoize.key"))
        cache = str(((memo.get("cache") or {}).get("configMap") or {}).get("name") or "")
        if not cache:
            raise SpecError(f"{where}: memoize.cache.configMap.name is required")
        max_age = params.substitute(memo.get("maxAge"), scope, f"{where}.memoize.maxAge")
        outputs = self.run.caches.load(cache, key, max_age)
        node.memoization = {"hit": outputs is not None, "key": key, "cacheName": cache}
        if outputs is None:
            return False
        with self.run.lock:
            node.outputs = outputs
        self.run.finish(node, SUCCEEDED)
        return True

    def _memoize_save(self, node: Node, where: str) -> None:
        memo = node.memoization
        if memo is None or memo["hit"] or node.phase != SUCCEEDED:
            return
        try:
            self.run.caches.save(memo["cacheName"], memo["key"], node.id, node.outputs)
        except (OSError, ParamError) as exc:
            # operator.go: a node whose outputs cannot be saved to its cache is an Error
            self.run.finish(node, ERROR, f"Failed to save node outputs to cache: {exc}")

    def run_retried(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        type_: str,
    ) -> None:
        """A steps or DAG template retried whole: attempt ``name(n)`` runs every step again."""
        rs = tmpl.get("retryStrategy") or {}
        raw = rs.get("limit")
        # a nil limit retries until the template succeeds (retryStrategy: {} in Argo)
        limit = None if raw is None else int(params.substitute(str(raw), scope, f"{where}.limit"))
        policy = rs.get("retryPolicy") or ("Always" if rs.get("expression") else "OnFailure")
        backoff = rs.get("backoff") or {}
        first = time.time()
        n = 0
        while True:
            self.run.check_cancel()
            if n > 0 and backoff:
                delay = _seconds(backoff.get("duration", 0)) * float(
                    params.substitute(str(backoff.get("factor", 1) or 1), scope, where)
                ) ** (n - 1)
                if backoff.get("cap"):
                    delay = min(delay, _seconds(backoff["cap"]))
                max_d = backoff.get("maxDuration")
                if max_d and time.time() + delay - first > _seconds(max_d):
                    node.message = f"retries stopped: backoff.maxDuration {max_d} reached"
                    break
                if self.run.cancel.wait(delay):
                    raise Cancelled()
            child = self.run.new_node(
                f"{node.name}({n})", f"{node.display}({n})", type_, node.template, node
            )
            child.started, child.phase = time.time(), RUNNING
            child.inputs = dict(node.inputs)
            ascope = {**scope, "retries": str(n)}
            try:
                if type_ == "Steps":
                    self.run_steps(child, doc, tmpl, ascope, where)
                else:
                    dags.run_dag(self, child, doc, tmpl, ascope, where)
            except (ParamError, SpecError, expr.ExprError) as exc:
                self.run.finish(child, ERROR, str(exc))
            except Cancelled:
                self.run.finish(child, FAILED, self.run.cancel_reason or "cancelled")
                raise
            finally:
                self.run.daemons.release(child)
            if child.phase == SUCCEEDED or (limit is not None and n >= limit):
                break
            last = Attempt(n, "", child.started or first, child.finished, child.phase)
            last.message = child.message
            if not _should_retry(policy, rs.get("expression"), last, where):
                break
            n += 1
        with self.run.lock:
            node.outputs = dict(child.outputs)
        self.run.finish(node, child.phase, child.message)

    def run_suspend(
        self, node: Node, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        """A suspend template with a ``duration``: it waits that long and succeeds, its
        outputs taking their defaults (operator.go executeSuspend). One without a duration
        waits for ``argo resume`` and is refused before the run (wiring.py)."""
        raw = (tmpl.get("suspend") or {}).get("duration")
        text = params.substitute(str(raw), scope, f"{where}.suspend.duration")
        try:
            seconds = _seconds(text)
        except ParamError:
            raise ParamError(f"{where}.suspend.duration: {text!r} is not a duration") from None
        # A timeout merged from templateDefaults (a suspend's own is refused before running):
        # the suspend node is Pending, and operator.go checkTemplateTimeouts fails a Pending
        # node once its timeout passed, with ErrTimeout's message.
        timeout = tmpl.get("timeout")
        limit = (
            _seconds(params.substitute(str(timeout), scope, f"{where}.timeout"))
            if timeout
            else None
        )
        if limit is not None and limit < seconds:
            if self.run.cancel.wait(limit):
                raise Cancelled()
            self.run.finish(node, FAILED, "timeout")
            return
        if self.run.cancel.wait(seconds):
            raise Cancelled()
        values = {
            str(p["name"]): params.render(
                (p.get("valueFrom") or {}).get("default", p.get("default"))
            )
            for p in (tmpl.get("outputs") or {}).get("parameters") or []
        }
        if values:
            node.outputs["parameters"] = values
        self.run.finish(node, SUCCEEDED)

    def run_steps(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        limiter = parallelism_limit(tmpl, scope, where)
        fail_fast = threading.Event() if tmpl.get("failFast") else None
        failed = ""
        gnode: Node | None = None
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
                    r = self.run_task(
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

                threads.append(start_thread(work, self.run, f"{gname}.{sname}"))
            for t in threads:
                t.join()
            group_failed = [
                r for r in results.values() if r.phase in (FAILED, ERROR) and not r.handled
            ]
            if fail_fast is not None and fail_fast.is_set():
                break  # the group's node is failed below, with the template's
            self.run.finish(gnode, FAILED if group_failed else SUCCEEDED)
            if group_failed:
                failed = f"child {group_failed[0].display} {group_failed[0].phase.lower()}"
                break
            for step in group or []:
                sname = str(step["name"])
                r = results[sname]
                if r.result_error and dataflow.result_referenced(tmpl, "steps", sname):
                    # the controller fails the steps template when it adds the group's
                    # outputs to its scope (executeSteps -> processAggregateNodeOutputs)
                    self.run.finish(node, ERROR, f"{where}: steps.{sname}: {r.result_error}")
                    return
                dataflow.publish(scope, f"steps.{sname}", r, self.template_of(doc, step))
        self.run.check_cancel()
        if fail_fast is not None and fail_fast.is_set():
            # operator.go checkParallelism: the template and its last step group are failed
            # once no child runs, whatever continueOn says.
            if gnode is not None:
                self.run.finish(gnode, FAILED, FAIL_FAST)
            self.run.finish(node, FAILED, FAIL_FAST)
            return
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
        fail_fast: threading.Event | None = None,
    ) -> Node | None:
        """A step or DAG task: expand its loop, check ``when``, run the template per item.
        None when the template's ``failFast`` stopped it before it started (Argo creates no
        node then)."""
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
            result = self.run_item(
                step, tdoc, tmpl, scope, name, display, parent, limiter, where, fail_fast
            )
            if result is None:
                if hooks is not None:
                    hooks.forget(name)
                return None
            if hooks is not None:
                hooks.done(result, display)
            if result.phase in (FAILED, ERROR) and continues(step, result.phase):
                result.handled = True
            return result
        if not items:
            # A Skipped node with no outputs, as the controller makes it ("Skipped, empty
            # params"): what it offers the nodes after it is its template's skipped outputs.
            empty = self.run.new_node(name, display, "Skipped", str(tmpl.get("name") or ""), parent)
            self.run.finish(empty, SKIPPED, "Skipped, empty params")
            if hooks is not None and in_dag:
                hooks.done(empty, display)
            return empty
        group = self.run.new_node(name, display, "TaskGroup", str(tmpl.get("name") or ""), parent)
        group.started = time.time()
        group.phase = RUNNING
        if hooks is not None and in_dag:
            hooks.evaluate(group, display, RUNNING)
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
                    fail_fast,
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
        threads = [start_thread(work, self.run, f"{name}[{k}]") for k in range(slots)]
        for t in threads:
            t.join()
        done = [c for c in children if c is not None]
        group.loop_phases = [c.phase for c in done]
        group.outputs, group.result_error = dataflow.aggregate(done)
        bad = [c for c in done if c.phase in (FAILED, ERROR)]
        if bad:
            self.run.finish(group, bad[0].phase, f"{len(bad)} of {len(items)} failed")
            group.handled = continues(step, bad[0].phase)
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
            return [
                params.sort_item(params.substitute(i, scope, f"{where}.withItems")) for i in raw
            ]
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
        fail_fast: threading.Event | None = None,
    ) -> Node | None:
        try:
            when = step.get("when")
            if when is not None:
                text = params.substitute(str(when), scope, f"{where}.when")
                if not govaluate.should_execute(text):
                    node = self.run.new_node(
                        name, display, "Skipped", str(tmpl.get("name") or ""), parent
                    )
                    return self.run.finish(node, SKIPPED, f"when '{text}' evaluated false")
            arguments = dataflow.step_arguments(
                _mark_absent(dict(step.get("arguments") or {}), scope), scope, f"{where}.arguments"
            )
        except (ParamError, expr.ExprError) as exc:
            node = self.run.new_node(name, display, "Skipped", str(tmpl.get("name") or ""), parent)
            return self.run.finish(node, ERROR, str(exc))
        with limiter or nullcontext():
            if fail_fast is not None and fail_fast.is_set():
                return None
            if self.run.cancel.is_set():
                node = self.run.new_node(
                    name, display, "Skipped", str(tmpl.get("name") or ""), parent
                )
                return self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
            return self.run_template(
                doc, tmpl, arguments, name, display, parent, fail_fast=fail_fast, caller_scope=scope
            )

    def template_of(self, doc: Document, step: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The template a step or task names, for the outputs it offers when it never ran."""
        try:
            return self.run.find_template(doc, step, "")[1]
        except SpecError:
            return None


"""The message of a steps/DAG template its ``failFast`` failed (operator.go checkParallelism)."""


DISPLAY_NAME = "workflows.argoproj.io/display-name"
_DISPLAY_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-.]{0,61}[a-zA-Z0-9]")


def _display_name(
    node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> None:
    """A template's ``annotations`` (workflow_types.go Template.Annotations): the one Argo
    reads, ``workflows.argoproj.io/display-name``, substituted with the template's inputs,
    becomes the node's displayName; one that is not a valid name errors the node
    (operator.go executeTemplate, ``displayNameRegex``; docs/walk-through/annotations.md)."""
    raw = (tmpl.get("annotations") or {}).get(DISPLAY_NAME)
    if raw is None or raw == "":
        return
    text = str(params.substitute(str(raw), scope, f"{where}.annotations"))
    if not _DISPLAY_NAME_RE.fullmatch(text):
        raise ParamError(
            f"{where}: displayName must match the regex ^{_DISPLAY_NAME_RE.pattern}$ (got {text!r})"
        )
    node.display = text


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
