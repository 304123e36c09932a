"""What flows between nodes: a template's inputs resolved from its arguments, the outputs a
pod leaves (stdout, parameter files) and a steps/DAG template declares, their publication to
the steps and tasks after them, and their aggregation over a loop's items."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.runner import artifacts, exprlang, params, sandbox
from workers.runner.nodes import RUNNING, Attempt, Node
from workers.runner.params import ParamError

if TYPE_CHECKING:
    from workers.runner.engine import Run


def resolve_inputs(
    run: Run, tmpl: Mapping[str, Any], arguments: Mapping[str, Any], where: str, *, lenient: bool
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
        text = params.substitute(params.render(value), run.scope, f"{where}: input {pname}")
        enum = p.get("enum")
        if enum and text not in [params.render(e) for e in enum]:
            raise ParamError(f"{where}: inputs.parameters.{pname}={text!r} is not one of {enum}")
        out[pname] = text
    if not lenient:
        extra = sorted(set(given) - {str(p["name"]) for p in declared})
        if extra:
            run.warn(f"{where}: arguments {extra} are not declared inputs (ignored, as in Argo)")
    return out


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
        # A steps or dag template's output artifact is another node's (steps.go/dag.go
        # resolveArtifact): the record it names, under this output's name.
        awhere = f"{where}: outputs.artifacts.{art['name']}"
        try:
            text = params.substitute(str(art.get("from") or ""), scope, awhere)
        except ParamError:
            if art.get("optional"):
                continue
            raise
        arts.append({**artifacts.parse_reference(text, awhere), "name": art["name"]})
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
            outs[p["name"]] = exprlang.output_parameter(
                str(vf["expression"]), scope, vf.get("default")
            )
        elif p.get("value") is not None:
            outs[p["name"]] = params.render(p["value"])
    if outs:
        node.outputs["parameters"] = outs


def empty_outputs(tmpl: Mapping[str, Any]) -> dict[str, Any]:
    names = [p["name"] for p in (tmpl.get("outputs") or {}).get("parameters") or []]
    return {"parameters": dict.fromkeys(names, "[]"), "result": "[]"}


def pod_outputs(
    attempt: Attempt,
    outputs: Mapping[str, Any],
    mounts: list[sandbox.Mount],
    where: str,
    *,
    remapped: bool = False,
) -> dict[str, Any]:
    """A finished pod's outputs: its stdout as ``result`` and its parameter files, read as
    the pod sees them (``remapped``: it ran on host paths, see :func:`sandbox.pod_file`)."""
    result: dict[str, Any] = {}
    stdout = Path(attempt.stdout).read_bytes().decode(errors="replace")
    result["result"] = stdout[:-1] if stdout.endswith("\n") else stdout
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


def publish(scope: dict[str, str], prefix: str, node: Node) -> None:
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
    if node.daemoned and node.phase == RUNNING:
        # a daemon's pod IP: every local pod shares this machine's network (daemons.py)
        scope[f"{prefix}.ip"] = "127.0.0.1"
    outs = node.outputs
    for k, v in (outs.get("parameters") or {}).items():
        scope[f"{prefix}.outputs.parameters.{k}"] = v
    if "result" in outs:
        scope[f"{prefix}.outputs.result"] = outs["result"]
    if LIST in outs:
        scope[f"{prefix}.outputs.parameters"] = outs[LIST]
    if "exitCode" in outs:
        scope[f"{prefix}.exitCode"] = outs["exitCode"]
    scope.update(artifacts.scope_entries(f"{prefix}.outputs", outs.get("artifacts") or []))


def aggregate(children: list[Node], tmpl: Mapping[str, Any]) -> dict[str, Any]:
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
        LIST: parameter_list(children),
    }


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
