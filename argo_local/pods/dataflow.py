"""What flows between nodes: a template's inputs resolved from its arguments, the outputs a
pod leaves (stdout, parameter files) and a steps/DAG template declares, their publication to
the steps and tasks after them, and their aggregation over a loop's items."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from argo_local.expr import depends as expr
from argo_local.expr import exprlang, params
from argo_local.expr.params import ParamError
from argo_local.model.configmaps import ConfigMapError, ConfigMaps
from argo_local.model.nodes import OMITTED, RUNNING, SKIPPED, SUCCEEDED, Attempt, Node
from argo_local.pods import artifacts, hosts, sandbox

MAX_RESULT_BYTES = 256 * 1024
"""The executor's ``maxAnnotationSize`` (workflow/executor/executor.go CaptureScriptResult)."""


class FlowRun(Protocol):
    """What inputs and outputs need of a run: its global scope and ConfigMaps."""

    scope: dict[str, str]
    config_maps: ConfigMaps

    def warn(self, text: str) -> None: ...


def resolve_inputs(
    run: FlowRun,
    tmpl: Mapping[str, Any],
    arguments: Mapping[str, Any],
    where: str,
    *,
    lenient: bool,
) -> dict[str, str]:
    """A template's input parameters as common.ProcessArgs sets them: the argument's value, else
    a ``valueFrom.configMapKeyRef`` (the argument's, which replaces the input's, or the
    input's own), else the input's default or value."""
    args = {str(p["name"]): p for p in (arguments.get("parameters") or []) if isinstance(p, dict)}
    given = {k: p.get("value") for k, p in args.items()}
    out: dict[str, str] = {}
    declared = (tmpl.get("inputs") or {}).get("parameters") or []
    # The controller substitutes the template with its inputs once they are known, its own
    # inputs section included: a default may use the inputs before it (and {{= }} on them).
    scope = dict(run.scope)
    for p in declared:
        pname = str(p["name"])
        supplied = pname in given and given[pname] is not None
        value_from = p.get("valueFrom") or {}
        if not supplied and (args.get(pname) or {}).get("valueFrom"):
            value_from = args[pname]["valueFrom"]  # overwriteWithArguments
        ref = value_from.get("configMapKeyRef")
        if supplied and given[pname] == params.ABSENT_ARGUMENT:
            # The argument was only a reference to a skipped producer's defaultless output: as
            # unsupplied, so the input's own default applies (common.ProcessArgs).
            supplied = False
            if p.get("default") is None and p.get("value") is None and not ref:
                raise ParamError(
                    f"{where}: inputs.parameters.{pname}: argument references an absent "
                    "optional (skipped/omitted node output with no default)"
                )
        if supplied:
            value: Any = given[pname]
        elif ref:
            value = _from_config_map(run, pname, ref, value_from, where)
        elif p.get("default") is not None:
            value = p["default"]
        elif p.get("value") is not None:
            value = p["value"]
        else:
            raise ParamError(f"{where}: inputs.parameters.{pname} was not supplied")
        # defaults such as "{{workflow.name}}" see the workflow's variables. An input's enum is
        # not checked here: Argo validates enums on arguments only (validate.go
        # validateArgumentsValues), a template's inputs.parameters[].enum is for the UI.
        out[pname] = params.substitute(params.render(value), scope, f"{where}: input {pname}")
        scope[f"inputs.parameters.{pname}"] = out[pname]
    if not lenient:
        extra = sorted(set(given) - {str(p["name"]) for p in declared})
        if extra:
            run.warn(f"{where}: arguments {extra} are not declared inputs (ignored, as in Argo)")
    return out


def _from_config_map(
    run: FlowRun, pname: str, ref: Mapping[str, Any], value_from: Mapping[str, Any], where: str
) -> Any:
    """common/util.go substituteAndGetConfigMapValue: the ConfigMap's name and key see the
    global variables; a missing ConfigMap or key (not a wrong label) falls back to
    ``valueFrom.default``; any other failure is the node's error."""
    cm = params.substitute(str(ref.get("name") or ""), run.scope, f"{where}: input {pname}")
    key = params.substitute(str(ref.get("key") or ""), run.scope, f"{where}: input {pname}")
    try:
        return run.config_maps.parameter(cm, key)
    except ConfigMapError as exc:
        if value_from.get("default") is None or not exc.not_found:
            raise ParamError(
                f"{where}: unable to retrieve inputs.parameters.{pname} from ConfigMap: {exc}"
            ) from None
        return value_from["default"]


def step_arguments(arguments: Mapping[str, Any], scope: Mapping[str, str], where: str) -> Any:
    """A step's or task's arguments substituted (steps.go resolveReferences, dag.go
    resolveDependencyReferences): a tag naming an output artifact may stay unresolved in an
    artifact's ``from`` (template.simpleReplaceStrict lets it through to the artifact
    resolution, where an ``optional`` argument that names nothing is left out and any other is
    an error: :func:`artifacts.resolve_inputs`); a ``fromExpression`` picks its artifact here."""
    given = arguments.get("artifacts")
    out = params.substitute({k: v for k, v in arguments.items() if k != "artifacts"}, scope, where)
    if not given:
        return out
    resolved: list[dict[str, Any]] = []
    for raw in given:
        art = dict(raw)
        ref, chooser = art.pop("from", None), art.pop("fromExpression", None)
        art = params.substitute(art, scope, f"{where}.artifacts")
        if ref is not None:
            art["from"] = params.TAG.sub(lambda m: _known(m, scope), str(ref))
        elif chooser is not None:
            try:
                found = artifact_expression(str(chooser), scope, f"{where}.artifacts")
            except artifacts.ArtifactError as exc:
                if art.get("optional"):
                    continue
                raise artifacts.ArtifactError(f"unable to resolve references: {exc}") from None
            art["from"] = json.dumps(found)
        resolved.append(art)
    out["artifacts"] = resolved
    return out


def _known(m: re.Match[str], scope: Mapping[str, str]) -> str:
    value = scope.get(m.group(1))
    return m.group(0) if value is None or isinstance(value, params.Absent) else value


def input_artifacts(
    tmpl: Mapping[str, Any], arguments: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> list[dict[str, Any]]:
    """The template's input artifacts, supplied by the arguments; their paths substituted
    with the template's inputs (a path may name a parameter)."""
    arts = artifacts.resolve_inputs(tmpl, arguments, where)
    for art in arts:
        awhere = f"{where}: inputs.artifacts.{art['name']}"
        for key in ("path", "s3", "gcs"):
            if key in art:
                art[key] = params.substitute(art[key], scope, f"{awhere}.{key}")
        if isinstance(art.get("raw"), dict) and isinstance(art["raw"].get("data"), str):
            # As the controller substitutes a template (allowUnresolved): a tag it cannot
            # resolve in file content stays as written.
            text = art["raw"]["data"]
            art["raw"] = {
                **art["raw"],
                "data": params.TAG.sub(lambda m: scope.get(m.group(1), m.group(0)), text),
            }
    return arts


def template_outputs(
    node: Node, tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> None:
    arts: list[dict[str, Any]] = []
    for art in (tmpl.get("outputs") or {}).get("artifacts") or []:
        # A steps or dag template's output artifact is another node's (operator.go
        # getTemplateOutputsFromScope, scope.go resolveArtifact): the record its from or
        # fromExpression names, under this output's name; an optional one that resolves to
        # nothing is left out.
        awhere = f"{where}: outputs.artifacts.{art['name']}"
        try:
            if "fromExpression" in art:
                found = artifact_expression(str(art["fromExpression"]), scope, awhere)
            else:
                text = params.substitute(str(art.get("from") or ""), scope, awhere)
                found = artifacts.parse_reference(text, awhere)
        except (ParamError, artifacts.ArtifactError) as exc:
            if art.get("optional"):
                continue
            raise artifacts.ArtifactError(f"unable to resolve outputs from scope: {exc}") from None
        arts.append({**found, "name": art["name"]})
    if arts:
        node.outputs["artifacts"] = arts
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
            # an absent output (a skipped producer's, no default) is nil to an expression
            names = {k: None if isinstance(v, params.Absent) else v for k, v in scope.items()}
            outs[p["name"]] = exprlang.output_parameter(
                str(vf["expression"]), names, vf.get("default")
            )
        elif p.get("value") is not None:
            outs[p["name"]] = params.render(p["value"])
    if outs:
        node.outputs["parameters"] = outs


def artifact_expression(text: str, scope: Mapping[str, str], where: str) -> dict[str, Any]:
    """The artifact a ``fromExpression`` picks (scope.go resolveArtifact): expr-lang over the
    scope, where each published artifact is its record; nil or anything but an artifact is an
    error."""
    names = {k: None if isinstance(v, params.Absent) else v for k, v in scope.items()}
    try:
        value = exprlang.evaluate(text, exprlang.environment(names))
    except expr.ExprError as exc:
        raise artifacts.ArtifactError(f"{where}: fromExpression {text!r}: {exc}") from None
    if value is None:
        raise artifacts.ArtifactError(f"{where}: Unable to resolve: {text!r}")
    return artifacts.parse_reference(str(value), where)


def skipped_outputs(tmpl: Mapping[str, Any]) -> dict[str, str]:
    """What a Skipped or Omitted node that produced nothing offers the nodes after it
    (addSkippedNodeOutputsToScope, workflow/controller/scope.go): each declared output parameter
    is its ``valueFrom.default``, or :class:`~argo_local.expr.params.Absent` without one; its
    ``outputs.result`` is not there at all."""
    out: dict[str, str] = {}
    for p in (tmpl.get("outputs") or {}).get("parameters") or []:
        vf = p.get("valueFrom") or {}
        default = vf.get("default") if isinstance(vf, dict) else None
        out[str(p["name"])] = params.Absent() if default is None else params.render(default)
    return out


def pod_outputs(
    attempt: Attempt,
    outputs: Mapping[str, Any],
    mounts: list[sandbox.Mount],
    where: str,
    warn: Callable[[str], None] | None = None,
    *,
    remapped: bool = False,
) -> dict[str, Any]:
    """A finished pod's outputs: its stdout as ``result`` and its parameter files, read as
    the pod sees them (``remapped``: it ran on host paths, see :func:`sandbox.pod_file`)."""
    result: dict[str, Any] = {}
    stdout = Path(attempt.stdout).read_bytes()
    # Argo's executor (CaptureScriptResult) trims one newline and keeps the last 256 kB.
    stdout = stdout.removesuffix(b"\n")
    if len(stdout) > MAX_RESULT_BYTES:
        if warn is not None:
            warn(
                f"{where}: outputs.result is {len(stdout):,} bytes; only the last 256 kB were "
                "kept, as Argo's executor keeps them"
            )
        stdout = stdout[-MAX_RESULT_BYTES:]
    result["result"] = stdout.decode(errors="replace")
    values: dict[str, str] = {}
    for p in outputs.get("parameters") or []:
        vf = p.get("valueFrom") or {}
        if "path" in vf:
            try:
                text = sandbox.read_pod_text(str(vf["path"]), mounts, remapped=remapped)
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
            except sandbox.PodPathError as exc:
                raise ParamError(f"{where}: outputs.parameters.{p['name']}: {exc}") from None
        elif p.get("value") is not None:
            values[p["name"]] = params.render(p["value"])
        else:
            raise ParamError(
                f"{where}: outputs.parameters.{p['name']}: a container needs valueFrom.path"
            )
    if values:
        result["parameters"] = values
    return result


def declared_defaults(tmpl: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs a failed pod still reports: output parameters with a ``valueFrom.default``
    (Argo's wait container falls back to it when the file is missing)."""
    values = {
        str(p["name"]): params.render(p["valueFrom"]["default"])
        for p in (tmpl.get("outputs") or {}).get("parameters") or []
        if isinstance(p.get("valueFrom"), dict) and p["valueFrom"].get("default") is not None
    }
    return {"parameters": values} if values else {}


def publish(
    scope: dict[str, str], prefix: str, node: Node, tmpl: Mapping[str, Any] | None = None
) -> None:
    """Offer a finished node's fields to the nodes after it; ``tmpl``, the template it would
    have run, gives a Skipped or Omitted node's outputs (:func:`skipped_outputs`)."""
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
    if node.type == "Pod" and node.attempts:
        # operator.go buildLocalScope: the node's HostNodeName (its pod's spec.nodeName), set
        # once a pod was made for it; a local pod's node is this machine (hosts.py)
        scope[f"{prefix}.hostNodeName"] = hosts.node_name()
    if node.daemoned and node.phase == RUNNING:
        # a daemon's pod IP: every local pod shares this machine's network (daemons.py)
        scope[f"{prefix}.ip"] = "127.0.0.1"
    outs = node.outputs
    if not outs and tmpl is not None and node.phase in (SKIPPED, OMITTED):
        for k, v in skipped_outputs(tmpl).items():
            scope[f"{prefix}.outputs.parameters.{k}"] = v
    for k, v in (outs.get("parameters") or {}).items():
        scope[f"{prefix}.outputs.parameters.{k}"] = v
    if "result" in outs:
        scope[f"{prefix}.outputs.result"] = outs["result"]
    if LIST in outs:
        scope[f"{prefix}.outputs.parameters"] = outs[LIST]
    if "exitCode" in outs:
        scope[f"{prefix}.exitCode"] = outs["exitCode"]
    scope.update(artifacts.scope_entries(f"{prefix}.outputs", outs.get("artifacts") or []))


def aggregate(children: list[Node]) -> tuple[dict[str, Any], str]:
    """A loop's outputs (processAggregateNodeOutputs, workflow/controller/operator.go): from its
    Succeeded children in item order, one JSON list per output parameter a child produced and
    the list of their results. The second value says why the results cannot be aggregated (a
    stdout that is not JSON), which fails the template only if it reads them."""
    per: dict[str, list[str]] = {}
    results: list[str] = []
    for c in children:
        if c.phase != SUCCEEDED:
            continue
        for k, v in (c.outputs.get("parameters") or {}).items():
            per.setdefault(k, []).append(v)
        if "result" in c.outputs:
            results.append(c.outputs["result"])
    outputs: dict[str, Any] = {
        "parameters": {k: params.aggregate(v) for k, v in per.items()},
        LIST: parameter_list(children),
    }
    try:
        outputs["result"] = params.aggregate_results(results)
    except ParamError as exc:
        return outputs, str(exc)
    return outputs, ""


LIST = "parameterList"
"""The key of a loop's whole ``{{steps|tasks.X.outputs.parameters}}`` in its group's outputs."""


def parameter_list(children: list[Node]) -> str:
    """``{{steps.X.outputs.parameters}}`` of a loop: one map of name to value per succeeded
    item that has output parameters, in item order, as JSON (operator.go
    processAggregateNodeOutputs: Go's json.Marshal of []map[string]string, so keys sorted and
    ``<``, ``>``, ``&`` escaped)."""
    import json

    rows = [
        dict(c.outputs["parameters"])
        for c in children
        if c.phase == "Succeeded" and c.outputs.get("parameters")
    ]
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def result_referenced(tmpl: Mapping[str, Any], prefix: str, name: str) -> bool:
    """Whether a steps/DAG template reads ``{{steps.NAME.outputs.result}}`` (or
    ``steps['NAME'].outputs.result``): only then do Argo's pods of NAME capture their stdout
    (hasOutputResultRef, workflow/controller/operator.go)."""
    import json
    import re

    text = json.dumps(tmpl)
    return bool(
        re.search(rf"{prefix}\.{re.escape(name)}\.outputs\.result", text)
        # on the template's JSON, as the controller matches it: a double-quoted subscript is
        # escaped there (\"), so only steps['NAME'] matches
        or re.search(rf"{prefix}\[['\"]{re.escape(name)}['\"]\]\.outputs.result", text)
    )
