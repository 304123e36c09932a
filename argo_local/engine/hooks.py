"""Exit handlers and lifecycle hooks, run as the controller runs them (controller/operator.go
``operate``, hooks.go, exit_handler.go, steps.go ``executeStepGroup``, dag.go
``executeDAGTask``; docs/lifecyclehook.md, docs/walk-through/exit-handlers.md):

* the workflow's exit handler (``spec.onExit`` or ``spec.hooks.exit``) runs once the
  entrypoint is done, as the top-level node ``WF.onExit``, seeing the final
  ``workflow.status``, ``workflow.failures`` and ``workflow.duration``; given no arguments of
  its own it gets the workflow's. If the entrypoint succeeded, the handler's failure or error
  becomes the workflow's phase and message;
* a step's or task's exit handler (``onExit`` or ``hooks.exit``) runs when that node has
  completed (Succeeded, Failed or Error; not Skipped or Omitted), as ``NODE.onExit``; it sees
  ``steps.NAME.status`` and the node's output parameters, and the steps after it (or the
  tasks depending on it) wait for it. Its phase does not change the step's;
* any other hook needs an ``expression``: the workflow's (``workflow.status == "Running"``)
  is evaluated while the workflow runs and once more with its final status, a step's
  (``steps["x"].status == "Succeeded"``) when the step starts and when it ends; the first time
  it is true its template runs once, in parallel, as ``PARENT.hooks.NAME``. The workflow's exit
  handler waits for the workflow's hooks, a step's successors for the step's. A hook's failure
  changes no phase.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from argo_local.engine import workflowscope
from argo_local.engine.concurrency import Stoppable
from argo_local.engine.needs import NodeRun, TemplateRunner
from argo_local.engine.workflowscope import ScopeRun
from argo_local.expr import depends as expr
from argo_local.expr import exprlang, params
from argo_local.model.nodes import ERROR, FAILED, RUNNING, SKIPPED, SUCCEEDED, Node
from argo_local.model.spec import Document, SpecError
from argo_local.pods import artifacts


class HookRun(NodeRun, ScopeRun, Stoppable, Protocol):
    """What exit handlers and lifecycle hooks need of a run."""

    doc: Document
    parameters: dict[str, str]
    deadline_exceeded: bool

    @property
    def scheduler(self) -> TemplateRunner: ...


EXIT = "exit"
COMPLETED = (SUCCEEDED, FAILED, ERROR)  # Argo's NodeStatus.Completed(): not Skipped/Omitted


def exit_hook(holder: Mapping[str, Any]) -> dict[str, Any] | None:
    """The exit handler of a workflow spec, step or task: ``onExit`` (a template name) wins over
    ``hooks.exit`` (``GetExitHook`` in workflow_types.go)."""
    if holder.get("onExit"):
        return {"template": holder["onExit"]}
    hook = (holder.get("hooks") or {}).get(EXIT)
    return dict(hook) if isinstance(hook, dict) else None


def expression_hooks(holder: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The hooks other than ``exit``, by name."""
    return {
        str(k): dict(v)
        for k, v in (holder.get("hooks") or {}).items()
        if str(k) != EXIT and isinstance(v, dict)
    }


def _arguments(hook: Mapping[str, Any]) -> dict[str, Any] | None:
    """A hook's own arguments, None when it gives none (an exit handler then gets the
    workflow's: ``LifecycleHook.WithArgs``)."""
    args = hook.get("arguments") or {}
    return dict(args) if args.get("parameters") or args.get("artifacts") else None


def _true(text: str, scope: Mapping[str, str]) -> bool:
    """A hook's ``expression`` (expr-lang, as hooks.go evaluates it with argoexpr.EvalBool).
    A step that has no status yet is nil, not an error: ``steps.b.status == "Succeeded"`` is
    false before step b has run."""
    env = exprlang.environment(scope)
    for top in ("steps", "tasks", "workflow", "inputs", "outputs"):
        env.setdefault(top, {})
    return bool(exprlang.evaluate(text, env) is True)


def _lenient(value: Any, scope: Mapping[str, str]) -> Any:
    """Substitute what the scope knows and keep other ``{{...}}`` as written, as the
    controller resolves a hook's arguments (``resolveExitTmplArgument``: no strict prefixes)."""
    if isinstance(value, str):
        return params.TAG.sub(lambda m: scope.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_lenient(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: _lenient(v, scope) for k, v in value.items()}
    return value


@dataclass
class _Fired:
    """Hooks started for one hooked node: their names and the threads running them."""

    names: set[str] = field(default_factory=set)
    threads: list[threading.Thread] = field(default_factory=list)


class Hooks:
    """The exit handlers and lifecycle hooks of one :class:`~argo_local.engine.run.Run`."""

    def __init__(self, run: HookRun) -> None:
        self.run = run
        self.lock = threading.Lock()
        self.workflow = _Fired()
        self.final = False  # the workflow's hooks had their last evaluation
        # node name -> its step's hooks, its name in steps.NAME, its loop item's variables
        self.watching: dict[str, tuple[StepHooks, str, dict[str, str]]] = {}

    # ------------------------------------------------------------ workflow level

    def changed(self) -> None:
        """A node finished: the controller re-evaluates the workflow's hooks at each pass."""
        if self.final or not expression_hooks(self.run.spec):
            return
        self._evaluate_workflow_hooks()

    def _evaluate_workflow_hooks(self) -> None:
        run = self.run
        scope = workflowscope.refresh(run, dict(run.scope))
        root = run.nodes.get(run.name)
        if root is None:
            return
        for name, hook in expression_hooks(run.spec).items():
            hname = f"{run.name}.hooks.{name}"
            # Under the lock up to the thread's start: finish() then waits for every hook a
            # concurrent evaluation starts, and none starts after it stopped evaluating.
            with self.lock:
                if self.final or hname in self.workflow.names:
                    continue
                try:
                    fire = _true(str(hook.get("expression") or ""), scope)
                except expr.ExprError as exc:
                    run.warn(f"{run.doc.source}: spec.hooks.{name}.expression: {exc}")
                    fire = False
                if not fire:
                    continue
                self.workflow.names.add(hname)
                args = _lenient(_arguments(hook) or {}, scope)
                where = f"{run.doc.source}: spec.hooks.{name}"
                self.workflow.threads.append(
                    _spawn(
                        run,
                        hname,
                        lambda h=hook, n=hname, a=args, w=where: self._run(
                            run.doc, h, a, n, n, root, w
                        ),
                    )
                )

    def finish(self, root: Node) -> tuple[str, str]:
        """The entrypoint is done: the workflow's final hooks and its exit handler; returns the
        workflow's phase and message."""
        run = self.run
        status = workflowscope.workflow_status(root.phase)
        if run.deadline_exceeded and run.cancel.is_set():
            # Exit handlers are not subject to the workflow's deadline (workflowpod.go).
            with run.lock:
                run.cancel.clear()
        with run.lock:
            run.scope["workflow.status"] = status
            run.scope["workflow.failures"] = workflowscope.failures(run)
        if expression_hooks(run.spec):
            self._evaluate_workflow_hooks()
        with self.lock:
            self.final = True
            started = list(self.workflow.threads)
        for t in started:
            t.join()
        message = root.message or run.cancel_reason
        hook = exit_hook(run.spec)
        if hook is None:
            return status, message if status != SUCCEEDED else ""
        if run.cancel.is_set():
            run.warn(f"exit handler not run: {run.cancel_reason or 'the run was stopped'}")
            return status, message
        with run.lock:
            # The controller recomputes the failures at each pass, so the handler sees the
            # workflow hooks' failures too.
            run.scope["workflow.failures"] = workflowscope.failures(run)
        scope = workflowscope.refresh(run, dict(run.scope))
        args = _lenient(_arguments(hook) or self._workflow_arguments(), scope)
        name = f"{run.name}.onExit"
        where = f"{run.doc.source}: spec.onExit"
        node = self._run(run.doc, hook, args, name, name, None, where)
        if status == SUCCEEDED and node.phase in (FAILED, ERROR):
            return node.phase, node.message
        return status, message if status != SUCCEEDED else ""

    def _workflow_arguments(self) -> dict[str, Any]:
        return {"parameters": [{"name": k, "value": v} for k, v in self.run.parameters.items()]}

    # ------------------------------------------------------------ steps and tasks

    def step(
        self,
        step: Mapping[str, Any],
        doc: Document,
        tmpl: Mapping[str, Any],
        scope: dict[str, str],
        prefix: str,
        where: str,
    ) -> StepHooks | None:
        """The hooks of a step (``prefix`` ``steps``) or task (``tasks``), if it has any."""
        if not step.get("hooks") and not step.get("onExit"):
            return None
        return StepHooks(self, step, doc, tmpl, scope, prefix, where)

    def running(self, node: Node) -> None:
        """A node started: the workflow's own node starts its hooks' evaluation (``Running``);
        a hooked step's node its step's."""
        if node.name == self.run.name:
            self.changed()
        if not self.watching:
            return
        with self.lock:
            watch = self.watching.pop(node.name, None)
        if watch is not None:
            hooks, key, item = watch
            hooks.evaluate(node, key, RUNNING, item)

    # ------------------------------------------------------------ running a hook

    def _run(
        self,
        doc: Document,
        hook: Mapping[str, Any],
        arguments: Mapping[str, Any],
        name: str,
        display: str,
        hooked: Node | None,
        where: str,
    ) -> Node:
        """Run a hook's template as node ``name``, a hook of ``hooked`` (None: the workflow's
        exit handler, a node of its own)."""
        run = self.run
        try:
            tdoc, tmpl = run.find_template(doc, hook, where)
        except SpecError as exc:
            node = run.new_node(
                name, display, "Skipped", str(hook.get("template", "")), hooked, hooked=True
            )
            return run.finish(node, ERROR, str(exc))
        return run.scheduler.run_template(
            tdoc, tmpl, arguments, name, display, hooked, lenient=True, hooked=True
        )


class StepHooks:
    """The ``hooks`` and ``onExit`` of one step or task, for the nodes it makes (a loop makes
    one per item)."""

    def __init__(
        self,
        hooks: Hooks,
        step: Mapping[str, Any],
        doc: Document,
        tmpl: Mapping[str, Any],
        scope: dict[str, str],
        prefix: str,
        where: str,
    ) -> None:
        self.hooks = hooks
        self.run = hooks.run
        self.step = step
        self.doc = doc
        self.tmpl = tmpl
        self.scope = scope
        self.prefix = prefix
        self.where = where
        self.expressions = expression_hooks(step)
        self.exit = exit_hook(step)
        self.fired: dict[str, _Fired] = {}  # hooked node id -> its hooks

    def expect(self, name: str, key: str, item: Mapping[str, str] | None = None) -> None:
        """Node ``name`` is about to start: evaluate the hooks when it runs, ``key`` naming it in
        ``steps.KEY.status``, ``item`` the loop item's variables (a loop expands them into the
        hooks too)."""
        if self.expressions:
            with self.hooks.lock:
                self.hooks.watching[name] = (self, key, dict(item or {}))

    def forget(self, name: str) -> None:
        """Node ``name`` was expected but never started (failFast kept it back)."""
        with self.hooks.lock:
            self.hooks.watching.pop(name, None)

    def evaluate(
        self, node: Node, key: str, phase: str, item: Mapping[str, str] | None = None
    ) -> None:
        """Start the expression hooks that ``phase`` makes true and have not run yet."""
        if not self.expressions:
            return
        scope = workflowscope.refresh(self.run, {**self.scope, **(item or {})})
        scope[f"{self.prefix}.{key}.status"] = phase
        fired = self.fired.setdefault(node.id, _Fired())
        for name, hook in self.expressions.items():
            hname = f"{node.name}.hooks.{name}"
            with self.hooks.lock:
                if hname in fired.names:
                    continue
                try:
                    fire = _true(str(hook.get("expression") or ""), scope)
                except expr.ExprError as exc:
                    self.run.warn(f"{self.where}.hooks.{name}.expression: {exc}")
                    fire = False
                if not fire:
                    continue
                fired.names.add(hname)
            args = _lenient(_arguments(hook) or {}, self._exit_scope(node, key, item))
            display = f"{node.display}.hooks.{name}"
            where = f"{self.where}.hooks.{name}"
            fired.threads.append(
                _spawn(
                    self.run,
                    hname,
                    lambda h=hook, n=hname, d=display, a=args, w=where: self.hooks._run(
                        self.doc, h, a, n, d, node, w
                    ),
                )
            )

    def done(
        self,
        node: Node,
        key: str,
        item: Mapping[str, str] | None = None,
        *,
        expressions: bool = True,
    ) -> None:
        """The node ended: its last hook evaluation, then wait for the hooks it started, then
        its exit handler (a completed node only), as its step group or DAG does."""
        with self.hooks.lock:
            self.hooks.watching.pop(node.name, None)
        if self.prefix == "steps" and node.phase == SKIPPED:
            return  # a step whose ``when`` is false has no hooks in Argo's step group
        if expressions:
            self.evaluate(node, key, node.phase, item)
        for t in list(self.fired.get(node.id, _Fired()).threads):
            t.join()
        if self.exit is None or node.phase not in COMPLETED:
            return
        scope = self._exit_scope(node, key, item)
        condition = str(self.exit.get("expression") or "")
        try:
            # a step's exit hook may carry an expression too (exit_handler.go runOnExitNode)
            if condition and not _true(condition, scope):
                return
        except expr.ExprError as exc:
            self.run.warn(f"{self.where}.hooks.exit.expression: {exc}")
            return
        args = _lenient(_arguments(self.exit) or self.hooks._workflow_arguments(), scope)
        self.hooks._run(
            self.doc,
            self.exit,
            args,
            f"{node.name}.onExit",
            f"{node.display}.onExit",
            node,
            f"{self.where}.onExit",
        )

    def _exit_scope(
        self, node: Node, key: str, item: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """What a hook's arguments see: the step's scope, the node's status and its output
        parameters (a declared one without a value is empty, as ``resolveExitTmplArgument``
        sets it)."""
        scope = workflowscope.refresh(self.run, {**self.scope, **(item or {})})
        scope[f"{self.prefix}.{key}.status"] = node.phase
        values = node.outputs.get("parameters") or {}
        for p in (self.tmpl.get("outputs") or {}).get("parameters") or []:
            if isinstance(p, dict) and p.get("name"):
                scope[f"{self.prefix}.{key}.outputs.parameters.{p['name']}"] = str(
                    values.get(p["name"], "")
                )
        # and its output artifacts (examples/exit-handler-with-artifacts.yaml passes one on)
        prefix = f"{self.prefix}.{key}.outputs"
        scope.update(artifacts.scope_entries(prefix, node.outputs.get("artifacts") or []))
        return scope


def _spawn(run: HookRun, name: str, work: Any) -> threading.Thread:
    from argo_local.engine.concurrency import start_thread

    return start_thread(work, run, name)
