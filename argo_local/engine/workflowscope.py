"""The workflow's own variables, as the controller keeps them in its global scope:
``workflow.status`` and ``workflow.duration`` (current while the workflow runs, final for its
exit handler), ``workflow.failures`` (once the entrypoint is done) and the global outputs an
output parameter's or artifact's ``globalName`` exports as ``workflow.outputs.parameters.NAME``
or ``workflow.outputs.artifacts.NAME`` (controller/operator.go: setGlobalRuntimeParameters,
operate, addParamToGlobalScope, addArtifactToGlobalScope)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from argo_local.expr import params
from argo_local.model.nodes import ERROR, FAILED, SUCCEEDED, Node, attempt_node_name, pod_name_of

if TYPE_CHECKING:
    pass


class ScopeRun(Protocol):
    """What the workflow's own variables are made of."""

    name: str
    created: float
    scope: dict[str, str]
    nodes: dict[str, Node]
    lock: threading.RLock
    global_outputs: dict[str, str]
    global_artifacts: dict[str, dict[str, Any]]


RUNNING = "Running"
OUTPUTS = "workflow.outputs.parameters."
ARTIFACTS = "workflow.outputs.artifacts."


def start(run: ScopeRun) -> None:
    """The runtime variables while the workflow runs (``setGlobalRuntimeParameters``)."""
    run.scope["workflow.status"] = RUNNING
    run.scope["workflow.duration"] = duration(run)


def duration(run: ScopeRun) -> str:
    """Seconds since the workflow started, formatted as Go's ``%f`` (six decimals)."""
    return f"{max(time.time() - run.created, 0.0):f}"


def refresh(run: ScopeRun, scope: dict[str, str]) -> dict[str, str]:
    """Bring a template's scope up to date with the workflow's: the controller adds the global
    outputs to a steps or DAG scope at each pass (``addWorkflowOutputsToLocalScope``) and the
    runtime variables at each reconciliation."""
    with run.lock:
        run.scope["workflow.duration"] = duration(run)
        for key in ("workflow.status", "workflow.duration", "workflow.failures"):
            if key in run.scope:
                scope[key] = run.scope[key]
        for name, value in run.global_outputs.items():
            scope[OUTPUTS + name] = value
        for name, art in run.global_artifacts.items():
            scope[ARTIFACTS + name] = json.dumps(art)
    return scope


def workflow_status(phase: str) -> str:
    """The workflow phase an entrypoint node's phase makes (Skipped and Omitted succeed)."""
    if phase in (FAILED, ERROR):
        return phase
    if phase == RUNNING:
        return FAILED  # stopped before it finished: no node is left running
    return SUCCEEDED


def failures(run: ScopeRun) -> str:
    """``workflow.failures``: every Failed or Error node as ``{displayName, message,
    templateName, phase, podName, finishedAt}``, JSON as Go marshals it, then quoted with Go's
    ``strconv.Quote`` as the controller stores it (so it survives a shell's double quotes);
    ``"null"`` (quotes included) when nothing failed."""
    rows: list[dict[str, Any]] = []
    with run.lock:
        nodes = list(run.nodes.values())
    for n in nodes:
        # A retried step is a Retry node whose attempts are Pod nodes of their own (report.py).
        if n.type == "Pod" and (n.retry or len(n.attempts) > 1):
            for a in n.attempts:
                if a.phase in (FAILED, ERROR):
                    name = attempt_node_name(n.name, a.number, retried=True)
                    rows.append(
                        _failure(
                            run, name, f"{n.display}({a.number})", n, a.phase, a.message, a.finished
                        )
                    )
        if n.phase in (FAILED, ERROR):
            rows.append(_failure(run, n.name, n.display, n, n.phase, n.message, n.finished))
    return go_quote(go_json(rows or None))


def _failure(
    run: ScopeRun,
    name: str,
    display: str,
    n: Node,
    phase: str,
    message: str,
    finished: float | None,
) -> dict[str, Any]:
    return {
        "displayName": display,
        "message": message,
        "templateName": n.template,
        "phase": phase,
        "podName": pod_name_of(run.name, name, n.template),
        "finishedAt": _rfc3339(finished),
    }


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_GO_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_GO_JSON_ESCAPES.get(c, c) for c in text)


_GO_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: double quotes, backslash escapes, printable characters kept."""
    out = ['"']
    for c in text:
        if c in _GO_QUOTE_ESCAPES:
            out.append(_GO_QUOTE_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        elif c != " " and not c.isprintable():
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def export(
    run: ScopeRun, node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> None:
    """A node's output parameters and artifacts with a ``globalName``: set (or overwritten, the
    latest node winning) as ``workflow.outputs.parameters.NAME`` /
    ``workflow.outputs.artifacts.NAME`` and in the workflow's ``status.outputs``
    (operator.go addOutputsToGlobalScope). The name may use the template's inputs
    (``{{inputs.parameters.x}}``)."""
    values = node.outputs.get("parameters") or {}
    for p in (tmpl.get("outputs") or {}).get("parameters") or []:
        if not isinstance(p, dict) or p.get("globalName") in (None, "") or p["name"] not in values:
            continue
        name = params.substitute(
            str(p["globalName"]), scope, f"{where}: outputs.parameters.{p['name']}.globalName"
        )
        with run.lock:
            run.global_outputs[name] = values[p["name"]]
            run.scope[OUTPUTS + name] = values[p["name"]]
    saved = {str(a.get("name")): a for a in node.outputs.get("artifacts") or []}
    for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
        if not isinstance(art, dict) or art.get("globalName") in (None, ""):
            continue
        record = saved.get(str(art.get("name")))
        if record is None:
            continue  # an optional artifact that was not produced exports nothing
        name = params.substitute(
            str(art["globalName"]), scope, f"{where}: outputs.artifacts.{art['name']}.globalName"
        )
        # addArtifactToGlobalScope: the artifact renamed to its globalName, without globalName
        # and path; a later export of the same name overwrites it in place
        exported = {k: v for k, v in record.items() if k not in ("globalName", "path")}
        exported["name"] = name
        with run.lock:
            run.global_artifacts[name] = exported
            run.scope[ARTIFACTS + name] = json.dumps(exported)
