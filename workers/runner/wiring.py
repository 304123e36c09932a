"""Checks before anything runs: the workflow spec, its parameters, and the wiring between templates.

A renamed input, an output a later step reads but the template no longer
declares, a volume mount without a volume: each is reported with its template
and file before the first process starts, instead of after the slow steps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workers.runner import expr, params
from workers.runner.spec import (
    IGNORED,
    TEMPLATE,
    Document,
    Library,
    Notes,
    SpecError,
    strings,
    validate,
)

NODE_FIELDS = ("status", "id", "exitCode", "startedAt", "finishedAt", "outputs.result")
METRIC_VARIABLES = ("status", "duration", "exitCode", "retries", "outputs.result")
"""What Argo offers a template's metrics about the node itself (docs/variables.md, Metrics)."""

GLOBALS = (
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.creationTimestamp",
    "workflow.serviceAccountName",
    "workflow.parameters",
    "retries",
    "pod.name",
    "node.name",
)


def effective_spec(doc: Document, library: Library, notes: Notes) -> dict[str, Any]:
    """The workflow spec to run: ``workflowTemplateRef`` resolved, the Workflow's fields winning."""
    validate(doc, notes)
    spec = doc.spec
    ref = spec.get("workflowTemplateRef")
    if not ref:
        return spec
    base_doc = library.get_ref(ref, f"{doc.source}: spec.workflowTemplateRef")
    validate(base_doc, notes)
    base = base_doc.spec
    merged = {**base, **{k: v for k, v in spec.items() if k != "workflowTemplateRef"}}
    by_name: dict[str, dict[str, Any]] = {}
    for p in (base.get("arguments") or {}).get("parameters") or []:
        by_name[p["name"]] = dict(p)
    for p in (spec.get("arguments") or {}).get("parameters") or []:
        by_name[p["name"]] = {**by_name.get(p["name"], {}), **p}
    merged["arguments"] = {"parameters": list(by_name.values())}
    names = {t["name"] for t in spec.get("templates") or []}
    merged["templates"] = [
        *(spec.get("templates") or []),
        *(t for t in base.get("templates") or [] if t["name"] not in names),
    ]
    return merged


def workflow_parameters(
    spec: Mapping[str, Any], overrides: Mapping[str, str], source: str
) -> dict[str, str]:
    """``spec.arguments.parameters`` with ``-p`` values applied; enum and presence checked."""
    declared = (spec.get("arguments") or {}).get("parameters") or []
    names = [str(p["name"]) for p in declared]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise SpecError(
            f"{source}: -p {unknown[0]}: no such workflow parameter (declared: {', '.join(names) or 'none'})"
        )
    out: dict[str, str] = {}
    for p in declared:
        name = str(p["name"])
        if name in overrides:
            value: Any = overrides[name]
        elif p.get("value") is not None:
            value = p["value"]
        elif p.get("default") is not None:
            value = p["default"]
        else:
            raise SpecError(
                f"{source}: spec.arguments.parameters[{name}] has no value: pass -p {name}=..."
            )
        text = params.render(value)
        _check_enum(p, text, f"{source}: spec.arguments.parameters[{name}]")
        out[name] = text
    return out


class Wiring:
    """Walks every template reachable from the entrypoint, following template and templateRef."""

    def __init__(
        self,
        doc: Document,
        spec: Mapping[str, Any],
        library: Library,
        parameters: Mapping[str, str],
        notes: Notes,
    ) -> None:
        self.doc = doc
        self.spec = spec
        self.library = library
        self.parameters = parameters
        self.notes = notes
        self.seen: set[tuple[str, str, str]] = set()
        self.validated: set[str] = {doc.source + doc.name}
        volumes = {v["name"] for v in spec.get("volumes") or []}
        volumes |= {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates") or []}
        self.volumes = volumes

    def template(self, doc: Document, ref: Mapping[str, Any], where: str) -> tuple[Document, Any]:
        if ref.get("templateRef"):
            tref = ref["templateRef"]
            target = self.library.get_ref(tref, f"{where}.templateRef")
            if target.source + target.name not in self.validated:
                validate(target, self.notes)
                self.validated.add(target.source + target.name)
            return self.library.resolve(tref, where)
        name = str(ref.get("template") or "")
        if doc is self.doc:
            tmpl = next((t for t in self.spec.get("templates") or [] if t["name"] == name), None)
        else:
            tmpl = doc.template(name)
        if tmpl is None:
            raise SpecError(f"{where}: no template named {name!r} in {doc.source}")
        return doc, tmpl

    def check(self) -> None:
        entry = str(self.spec.get("entrypoint") or "")
        if not entry:
            raise SpecError(f"{self.doc.source}: spec.entrypoint is required")
        doc, tmpl = self.template(
            self.doc, {"template": entry}, f"{self.doc.source}: spec.entrypoint"
        )
        self.visit(doc, tmpl)

    def visit(self, doc: Document, tmpl: Mapping[str, Any]) -> None:
        key = (doc.source, doc.name, str(tmpl.get("name")))
        if key in self.seen:
            return
        self.seen.add(key)
        where = f"{doc.source}: template {tmpl.get('name')}"
        inputs = {str(p["name"]) for p in (tmpl.get("inputs") or {}).get("parameters") or []}
        children: dict[str, tuple[Document, Any]] = {}
        steps: list[dict[str, Any]] = []
        if "dag" in tmpl:
            check_dag(tmpl, where)
        if "steps" in tmpl or "dag" in tmpl:
            for field in ("retryStrategy", "activeDeadlineSeconds"):
                if field in tmpl:
                    raise SpecError(
                        f"{where}: {field} on a steps/dag template is not supported locally "
                        "(put it on the container or script templates)"
                    )
            if "steps" in tmpl:
                steps = [s for group in tmpl["steps"] or [] for s in group or []]
            else:
                steps = list(tmpl["dag"].get("tasks") or [])
            for s in steps:
                swhere = f"{where}: step {s.get('name')}"
                children[str(s["name"])] = self.template(doc, s, swhere)
        else:
            self.check_pod(tmpl, where)
        prefix = "steps" if "steps" in tmpl else "tasks"
        # fields ignored locally are never substituted; metrics have variables of their own
        meaningful = {
            k: v for k, v in tmpl.items() if TEMPLATE.get(k) != IGNORED and k != "metrics"
        }
        for path, text in strings(meaningful, ""):
            for m in params.TAG.finditer(text):
                self.check_tag(m.group(1), inputs, children, prefix, f"{where}: {path.lstrip('.')}")
        outputs = {str(p["name"]) for p in (tmpl.get("outputs") or {}).get("parameters") or []}
        for path, text in strings(tmpl.get("metrics") or {}, "metrics"):
            for m in params.TAG.finditer(text):
                tag = m.group(1)
                if tag.startswith("=") or tag in METRIC_VARIABLES:
                    continue  # an expression is evaluated (or reported) when the node completes
                mwhere = f"{where}: {path}"
                if tag.startswith("outputs.parameters."):
                    if tag.removeprefix("outputs.parameters.") not in outputs:
                        raise SpecError(
                            f"{mwhere}: {{{{{tag}}}}} but the template declares no "
                            "such output parameter"
                        )
                    continue
                self.check_tag(tag, inputs, children, prefix, mwhere)
        for s in steps:
            sdoc, stmpl = children[str(s["name"])]
            given = {str(p["name"]) for p in (s.get("arguments") or {}).get("parameters") or []}
            for p in (s.get("arguments") or {}).get("parameters") or []:
                if p.get("enum") is not None:
                    value = None if p.get("value") is None else params.render(p["value"])
                    _check_enum(p, value, f"{where}: step {s['name']}: arguments.parameters")
            for p in (stmpl.get("inputs") or {}).get("parameters") or []:
                if p["name"] in given or p.get("default") is not None or p.get("value") is not None:
                    continue
                raise SpecError(
                    f"{where}: step {s['name']} does not supply input parameter {p['name']!r} "
                    f"of template {stmpl.get('name')} ({sdoc.source})"
                )
            if "depends" in s:
                try:
                    for dep in expr.depends_names(str(s["depends"])):
                        if dep not in children:
                            raise SpecError(
                                f"{where}: task {s['name']} depends on unknown task {dep!r}"
                            )
                except expr.ExprError as exc:
                    raise SpecError(f"{where}: task {s['name']}: {exc}") from None
            self.visit(sdoc, stmpl)

    def check_pod(self, tmpl: Mapping[str, Any], where: str) -> None:
        kind = "script" if "script" in tmpl else "container"
        c = tmpl[kind] or {}
        own = {v["name"] for v in tmpl.get("volumes") or []}
        for vm in c.get("volumeMounts") or []:
            if vm["name"] not in own | self.volumes:
                raise SpecError(
                    f"{where}: {kind}.volumeMounts[{vm['name']}]: no volume or "
                    "volumeClaimTemplate of that name"
                )
        for e in c.get("env") or []:
            if "value" not in e and "valueFrom" not in e:
                raise SpecError(f"{where}: {kind}.env[{e.get('name')}] needs value or valueFrom")
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            if "path" not in (p.get("valueFrom") or {}) and p.get("value") is None:
                raise SpecError(
                    f"{where}: outputs.parameters[{p['name']}]: a {kind} output needs valueFrom.path"
                )

    def check_tag(
        self,
        tag: str,
        inputs: set[str],
        children: Mapping[str, tuple[Document, Any]],
        prefix: str,
        where: str,
    ) -> None:
        if tag in GLOBALS or tag == "item" or tag.startswith("item."):
            return
        if tag.startswith("inputs.parameters."):
            name = tag.removeprefix("inputs.parameters.")
            if name not in inputs:
                raise SpecError(
                    f"{where}: {{{{{tag}}}}} but the template declares no input {name!r}"
                )
            return
        if tag.startswith("workflow.parameters."):
            name = tag.removeprefix("workflow.parameters.")
            if name not in self.parameters:
                raise SpecError(
                    f"{where}: {{{{{tag}}}}} but the workflow has no parameter {name!r}"
                )
            return
        if tag.startswith(("steps.", "tasks.")):
            head, _, rest = tag.partition(".")
            step, _, field = rest.partition(".")
            if head != prefix or step not in children:
                raise SpecError(f"{where}: {{{{{tag}}}}}: no {head[:-1]} named {step!r} here")
            if field in NODE_FIELDS:
                return
            if field.startswith("outputs.parameters."):
                pname = field.removeprefix("outputs.parameters.")
                _, target = children[step]
                declared = {
                    str(p["name"]) for p in (target.get("outputs") or {}).get("parameters") or []
                }
                if pname not in declared:
                    raise SpecError(
                        f"{where}: {{{{{tag}}}}}: template {target.get('name')} declares no "
                        f"output parameter {pname!r}"
                    )
                return
            raise SpecError(f"{where}: {{{{{tag}}}}}: unsupported field {field!r}")
        raise SpecError(f"{where}: {{{{{tag}}}}}: variable not supported by the local runner")


def _check_enum(p: Mapping[str, Any], value: str | None, where: str) -> None:
    """An argument's ``enum``, as validateArgumentsValues (workflow/validate/validate.go) checks
    it. Only arguments are checked: a template's ``inputs.parameters[].enum`` is not, neither
    here nor when the step runs."""
    enum = p.get("enum")
    if enum is None:
        return
    name = p.get("name")
    if not enum:
        raise SpecError(f"{where}: {name}.enum should contain at least one value")
    if value is None:
        raise SpecError(f"{where}: {name}.value is required")
    if value not in [params.render(e) for e in enum]:
        raise SpecError(f"{where}: {name}={value!r} is not one of the values of its enum {enum}")


TASK_RESULTS = (
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
)
"""The results a ``depends`` operand may name (common.ValidateTaskResults): no ``Completed``."""

_TASK_RESULT = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)")


def check_dag(tmpl: Mapping[str, Any], where: str) -> None:
    """What Argo's validateDAG (workflow/validate/validate.go) rejects about dependencies."""
    tasks = [t for t in (tmpl.get("dag") or {}).get("tasks") or [] if isinstance(t, dict)]
    by_name = {str(t.get("name")): t for t in tasks}
    using_depends = any(t.get("depends") for t in tasks)
    for t in tasks:
        name = str(t.get("name"))
        twhere = f"{where}: dag.tasks[{name}]"
        if (using_depends or t.get("dependencies")) and name[:1].isdigit():
            raise SpecError(
                f"{twhere}: name cannot begin with a digit when using either 'depends' or "
                "'dependencies'"
            )
        if using_depends and t.get("dependencies"):
            raise SpecError(
                f"{twhere}: cannot use both 'depends' and 'dependencies' in the same DAG template"
            )
        if using_depends and t.get("continueOn") is not None:
            raise SpecError(
                f"{twhere}: cannot use 'continueOn' when using 'depends'. Instead use "
                "'dep-task.Failed'/'dep-task.Errored'"
            )
        for operand in _TASK_RESULT.findall(str(t.get("depends") or "")):
            dep, _, result = operand.partition(".")
            if result not in TASK_RESULTS:
                raise SpecError(
                    f"{twhere}: task result '{result}' for task '{dep}' is invalid "
                    f"(valid: {', '.join(TASK_RESULTS)})"
                )
            target = by_name.get(dep)
            if (
                result in ("AnySucceeded", "AllFailed")
                and target is not None
                and not any(target.get(k) for k in ("withItems", "withParam", "withSequence"))
            ):
                raise SpecError(
                    f"{twhere}: dependency '{dep}' uses an items-based condition such as "
                    ".AnySucceeded or .AllFailed but does not contain any items"
                )
