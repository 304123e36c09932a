"""Scheduling: a template run as a node. Its inputs and display name, retries of whole steps
and DAG templates, ``suspend`` durations, memoize and synchronization around the node; steps
templates and the loops, ``when`` and arguments of a step or task in :mod:`steps`, DAGs in
:mod:`dags`, a pod template handed to :mod:`pods`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from argo_local.engine import dags, steps, workflowscope
from argo_local.engine.memoize import Caches
from argo_local.engine.steps import StepsRun
from argo_local.engine.synchronization import Lock, Locks, StopWaiting
from argo_local.expr import depends as expr
from argo_local.expr import params
from argo_local.expr.params import ParamError
from argo_local.model.nodes import (
    ERROR,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
)
from argo_local.model.spec import KINDS, Document, SpecError
from argo_local.pods import artifacts, dataflow, httptemplate
from argo_local.pods.pods import PodRuntime, PodsRun, should_retry


class SchedRun(StepsRun, PodsRun, Protocol):
    """What scheduling needs of a run: its nodes, the pod runtime, memoize caches and
    synchronization locks."""

    caches: Caches
    locks: Locks
    pods: PodRuntime


class Scheduler:
    """Runs templates as nodes of one :class:`~argo_local.engine.run.Run`."""

    def __init__(self, run: SchedRun) -> None:
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
            "http": "HTTP",
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
                    elif type_ == "HTTP":
                        self.run_http(node, tmpl, scope, where)
                    else:
                        try:
                            if whole_retry:
                                self.run_retried(node, doc, tmpl, scope, where, type_)
                            elif type_ == "Steps":
                                steps.run_steps(self, node, doc, tmpl, scope, where)
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
        try:
            max_age = params.substitute(memo.get("maxAge"), scope, f"{where}.memoize.maxAge")
            outputs = self.run.caches.load(cache, key, max_age)
        except ParamError:
            # operator.go executeTemplate returns the cache's Load error (a key outside
            # cache.go cacheKeyRegex, a bad maxAge) rather than running the node: its step
            # group errors (steps.go executeStepGroup), continueOn or not.
            node.template_error = True
            raise
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
                delay = params.duration(backoff.get("duration", 0)) * float(
                    params.substitute(str(backoff.get("factor", 1) or 1), scope, where)
                ) ** (n - 1)
                if backoff.get("cap"):
                    delay = min(delay, params.duration(backoff["cap"]))
                max_d = backoff.get("maxDuration")
                if max_d and time.time() + delay - first > params.duration(max_d):
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
                    steps.run_steps(self, child, doc, tmpl, ascope, where)
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
            if not should_retry(policy, rs.get("expression"), last, where):
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
            seconds = params.duration(text)
        except ParamError:
            raise ParamError(f"{where}.suspend.duration: {text!r} is not a duration") from None
        # A timeout merged from templateDefaults (a suspend's own is refused before running):
        # the suspend node is Pending, and operator.go checkTemplateTimeouts fails a Pending
        # node once its timeout passed, with ErrTimeout's message.
        timeout = tmpl.get("timeout")
        limit = (
            params.duration(params.substitute(str(timeout), scope, f"{where}.timeout"))
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

    def run_http(self, node: Node, tmpl: dict[str, Any], scope: dict[str, str], where: str) -> None:
        """An http template: the runner makes the request Argo's agent would make
        (pods/httptemplate.py); the response body is the node's result."""
        request = httptemplate.substituted(tmpl, scope, where)
        outcome = httptemplate.call(request, self.run.pods.secret, where)
        if outcome.result is not None:
            node.outputs["result"] = outcome.result
        self.run.finish(node, outcome.phase, outcome.message)

    def template_of(self, doc: Document, step: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The template a step or task names, for the outputs it offers when it never ran."""
        try:
            return self.run.find_template(doc, step, "")[1]
        except SpecError:
            return None


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
