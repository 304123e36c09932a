"""Checks before anything runs: the workflow spec, its parameters, and the wiring between templates.

A renamed input, an output a later step reads but the template no longer
declares, a volume mount without a volume: each is reported with its template
and file before the first process starts, instead of after the slow steps.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from argo_local.expr import depends as expr
from argo_local.expr import params
from argo_local.model import artifactspec, checks, defaults
from argo_local.model.checks import metadata_scope
from argo_local.model.configmaps import ConfigMapError, ConfigMaps
from argo_local.model.images import PYTHON_NAMES, entrypoint_of, image_search_path
from argo_local.model.secretrefs import secret_lookup, secret_volume_keys
from argo_local.model.spec import (
    IGNORED,
    TEMPLATE,
    Document,
    Library,
    Notes,
    SpecError,
    strings,
    validate,
)

# validate.go addOutputsToScope: hostNodeName is in every step's and task's scope
NODE_FIELDS = (
    "status",
    "id",
    "exitCode",
    "startedAt",
    "finishedAt",
    "hostNodeName",
    "outputs.result",
)
METRIC_VARIABLES = ("status", "duration", "exitCode", "retries", "outputs.result")
"""What Argo offers a template's metrics about the node itself (docs/variables.md, Metrics)."""

GLOBALS = (
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.creationTimestamp",
    "workflow.serviceAccountName",
    "workflow.parameters",
    "workflow.parameters.json",
    "workflow.status",
    "workflow.duration",
    "retries",
    "pod.name",
    "node.name",
)
EXIT_GLOBALS = ("workflow.failures",)
"""Set once the entrypoint is done; Argo's validation offers them where an exit handler exists."""

OUTPUTS = "workflow.outputs.parameters."
ARTIFACTS = "workflow.outputs.artifacts."


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
    spec: Mapping[str, Any],
    overrides: Mapping[str, str],
    source: str,
    config_maps: ConfigMaps | None = None,
) -> dict[str, str]:
    """``spec.arguments.parameters`` with ``-p`` values applied; enum and presence checked.

    A ``valueFrom.configMapKeyRef`` is read as operator.go setGlobalParameters reads it: a value
    wins; else the ConfigMap's key, else (any error) the ``valueFrom.default``. Without one the
    controller fails the workflow ("failed to set global parameters"); here it is refused
    before anything runs, with the same reason."""
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
        _check_value_from(p, f"{source}: spec.arguments.parameters.")
        ref = (p.get("valueFrom") or {}).get("configMapKeyRef")
        if name in overrides:
            value: Any = overrides[name]
        elif p.get("value") is not None:
            value = p["value"]
        elif ref:
            value = _global_from_config_map(p, ref, config_maps, source)
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


def _global_from_config_map(
    p: Mapping[str, Any],
    ref: Mapping[str, Any],
    config_maps: ConfigMaps | None,
    source: str,
) -> Any:
    cm, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    try:
        if config_maps is None:
            raise ConfigMapError("no ConfigMaps are available", not_found=True)
        return config_maps.parameter(cm, key)
    except ConfigMapError as exc:
        default = (p.get("valueFrom") or {}).get("default")
        if default is not None:
            return default
        raise SpecError(
            f"{source}: failed to set global parameters: failed to set global parameter "
            f"{p['name']} from configmap with name {cm} and key {key}: {exc} (Argo fails the "
            "workflow)"
        ) from None


def _check_value_from(p: Mapping[str, Any], prefix: str) -> None:
    """validate.go validateArgumentsValues: an argument's valueFrom reads a ConfigMap (the
    ``supplied`` and ``event`` forms are for a cluster's resume and events)."""
    if "valueFrom" in p and not (p.get("valueFrom") or {}).get("configMapKeyRef"):
        raise SpecError(
            f"{prefix}{p['name']}.valueFrom only allows: default, configMapKeyRef and supplied "
            "(and supplied needs a cluster's `argo resume`)"
        )


def _has_source(p: Mapping[str, Any]) -> bool:
    """An input that needs no argument: a default, a value, or a ConfigMap key to read."""
    return (
        p.get("default") is not None
        or p.get("value") is not None
        or bool((p.get("valueFrom") or {}).get("configMapKeyRef"))
    )


def local_tags(tmpl: Mapping[str, Any]) -> set[str]:
    """The artifact and output-path variables a template has (validate.go validateLeaf,
    validateNonLeaf): ``{{inputs.artifacts.X}}`` everywhere, their ``.path``, and
    ``{{outputs.artifacts|parameters.X.path}}`` in a container or script."""
    leaf = any(k in tmpl for k in artifactspec.LEAF_KINDS)  # Template.IsLeaf
    tags: set[str] = set()
    for art in (tmpl.get("inputs") or {}).get("artifacts") or []:
        tags.add(f"inputs.artifacts.{art.get('name')}")
        if leaf:
            tags.add(f"inputs.artifacts.{art.get('name')}.path")
    if leaf:
        outputs = tmpl.get("outputs") or {}
        for art in outputs.get("artifacts") or []:
            tags.add(f"outputs.artifacts.{art.get('name')}.path")
        for p in outputs.get("parameters") or []:
            if (p.get("valueFrom") or {}).get("path"):
                tags.add(f"outputs.parameters.{p.get('name')}.path")
    return tags


class Wiring:
    """Walks every template reachable from the entrypoint, following template and templateRef."""

    def __init__(
        self,
        doc: Document,
        spec: Mapping[str, Any],
        library: Library,
        parameters: Mapping[str, str],
        notes: Notes,
        secret: artifactspec.SecretLookup | None = None,
        entrypoints: Mapping[str, list[str]] | None = None,
        config_maps: ConfigMaps | None = None,
        image_paths: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.secret = secret or secret_lookup(None)
        self.config_maps = config_maps or ConfigMaps([])
        self.entrypoints = dict(entrypoints or {})
        self.image_paths = dict(image_paths or {})
        # workflow.labels.X, workflow.mainEntrypoint ...: the names exist whatever the values
        self.metadata = metadata_scope(doc, spec, "")
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
        self.has_hooks = bool(spec.get("onExit") or spec.get("hooks"))
        # globalName exports seen in the templates visited, and the references to check
        # against them once every template was visited
        self.global_names: set[str] = set()
        self.any_global = False  # a globalName made of {{...}}: known only at run time
        self.global_refs: list[tuple[str, str]] = []
        # the same for output artifacts (workflow.outputs.artifacts.NAME)
        self.global_artifacts: set[str] = set()
        self.any_global_artifact = False
        self.global_artifact_refs: list[tuple[str, str]] = []

    def template(self, doc: Document, ref: Mapping[str, Any], where: str) -> tuple[Document, Any]:
        """The template a step runs, as the run resolves it (engine.Run.find_template)."""
        if ref.get("inline") is not None:
            inline = ref["inline"]
            kinds = [k for k in defaults.KINDS if inline.get(k) is not None]
            if len(kinds) != 1:
                raise SpecError(
                    f"{where}.inline: a template needs exactly one of container, script, "
                    f"steps, dag (found {kinds or 'none'})"
                )
            if ref.get("template") or ref.get("templateRef"):
                raise SpecError(f"{where}: inline cannot be used with template or templateRef")
            return doc, defaults.effective(self.spec, inline)
        if ref.get("templateRef"):
            tref = ref["templateRef"]
            target = self.library.get_ref(tref, f"{where}.templateRef")
            if target.source + target.name not in self.validated:
                validate(target, self.notes)
                self.validated.add(target.source + target.name)
            tdoc, referenced = self.library.resolve(tref, where)
            return tdoc, defaults.effective(self.spec, referenced)
        name = str(ref.get("template") or "")
        tmpl: dict[str, Any] | None
        if doc is self.doc:
            tmpl = next((t for t in self.spec.get("templates") or [] if t["name"] == name), None)
        else:
            tmpl = doc.template(name)
        if tmpl is None:
            raise SpecError(f"{where}: no template named {name!r} in {doc.source}")
        return doc, defaults.effective(self.spec, tmpl)

    def check(self) -> None:
        entry = str(self.spec.get("entrypoint") or "")
        if not entry:
            raise SpecError(f"{self.doc.source}: spec.entrypoint is required")
        doc, tmpl = self.template(
            self.doc, {"template": entry}, f"{self.doc.source}: spec.entrypoint"
        )
        where = f"{self.doc.source}: spec"
        args = self.spec.get("arguments") or {}
        self.wrap(lambda: artifactspec.check_arguments(args, where, self.secret))
        self.check_supplied(args, doc, tmpl, f"{where}.arguments")
        self.visit(doc, tmpl)
        workflow_args = {str(k) for k in self.parameters}
        self.hooks(self.doc, self.spec, f"{self.doc.source}: spec", workflow_args)
        for name, where in self.global_refs:
            if name not in self.global_names and not self.any_global:
                known = ", ".join(sorted(self.global_names)) or "none"
                raise SpecError(
                    f"{where}: {{{{{OUTPUTS}{name}}}}} but no output parameter has "
                    f"globalName {name!r} (globalNames: {known})"
                )
        for name, where in self.global_artifact_refs:
            # validate.go addOutputsToScope: an output artifact's globalName is a variable
            if name not in self.global_artifacts and not self.any_global_artifact:
                known = ", ".join(sorted(self.global_artifacts)) or "none"
                raise SpecError(
                    f"{where}: {{{{{ARTIFACTS}{name}}}}} but no output artifact has "
                    f"globalName {name!r} (globalNames: {known})"
                )

    def hooks(
        self, doc: Document, holder: Mapping[str, Any], where: str, workflow_args: set[str]
    ) -> None:
        """A spec's, step's or task's ``onExit`` and ``hooks``: every hook but ``exit`` needs an
        ``expression`` (validate.go validateHooks), its template exists and gets its inputs
        (an exit handler without arguments gets the workflow's)."""
        hooks = {f"hooks.{k}": (str(k), v) for k, v in (holder.get("hooks") or {}).items()}
        if holder.get("onExit"):
            hooks["onExit"] = ("exit", {"template": holder["onExit"]})  # wins over hooks.exit
        for field, (name, hook) in hooks.items():
            hwhere = f"{where}.{field}"
            if not isinstance(hook, dict):
                raise SpecError(f"{hwhere}: expected a mapping")
            if name != "exit" and not str(hook.get("expression") or "").strip():
                raise SpecError(f"{hwhere}: expression required (only the exit hook has none)")
            if not hook.get("template") and not hook.get("templateRef"):
                raise SpecError(f"{hwhere}: needs template or templateRef")
            hdoc, htmpl = self.template(doc, hook, hwhere)
            args = (hook.get("arguments") or {}).get("parameters") or []
            given = {str(p["name"]) for p in args}
            if name == "exit" and not args:
                given = workflow_args
            for p in (htmpl.get("inputs") or {}).get("parameters") or []:
                if p["name"] in given or _has_source(p):
                    continue
                raise SpecError(
                    f"{hwhere}: does not supply input parameter {p['name']!r} of template "
                    f"{htmpl.get('name')} ({hdoc.source})"
                )
            self.visit(hdoc, htmpl)

    @staticmethod
    def wrap(check: Any) -> None:
        """Run an artifacts check; its errors are SpecErrors before running."""
        try:
            check()
        except artifactspec.ArtifactError as exc:
            raise SpecError(str(exc)) from None

    def check_supplied(
        self, arguments: Mapping[str, Any], doc: Document, tmpl: Mapping[str, Any], where: str
    ) -> None:
        """An input artifact without a location, not optional, needs an argument
        (common/util.go ProcessArgs, run by validation too)."""
        given = {str(a.get("name")) for a in arguments.get("artifacts") or []}
        for art in (tmpl.get("inputs") or {}).get("artifacts") or []:
            if art.get("optional") or artifactspec.has_location(art) or art.get("name") in given:
                continue
            raise SpecError(
                f"{where}: does not supply input artifact {art.get('name')!r} of template "
                f"{tmpl.get('name')} ({doc.source})"
            )

    def visit(self, doc: Document, tmpl: Mapping[str, Any]) -> None:
        """Check one template, then each template its steps or tasks run (a walker per kind:
        :meth:`visit_suspend`, :meth:`visit_composite`, :meth:`visit_pod`, :meth:`visit_step`)."""
        # an inline template has no name: each is its own template
        key = (doc.source, doc.name, str(tmpl.get("name") or f"inline-{id(tmpl)}"))
        if key in self.seen:
            return
        self.seen.add(key)
        where = f"{doc.source}: template {tmpl.get('name') or '(inline)'}"
        self.wrap(lambda: artifactspec.check_template(tmpl, where, self.secret))
        _check_output_parameters(tmpl, where)
        local = local_tags(tmpl)
        _check_pod_fields(tmpl, where)
        children: dict[str, tuple[Document, Any]] = {}
        steps: list[dict[str, Any]] = []
        if "suspend" in tmpl:
            self.visit_suspend(tmpl, where)
        elif "steps" in tmpl or "dag" in tmpl:
            steps, children = self.visit_composite(doc, tmpl, where)
        elif "http" in tmpl:
            self.visit_http(tmpl, where)
        else:
            self.visit_pod(tmpl, where)
        tags = _TagContext(
            inputs={str(p["name"]) for p in (tmpl.get("inputs") or {}).get("parameters") or []},
            children=children,
            prefix="steps" if "steps" in tmpl else "tasks",
            looped={str(s["name"]) for s in steps if _loops(s)},
        )
        self.check_template_tags(tmpl, where, local, tags)
        self.collect_globals(tmpl)
        self.check_metric_tags(tmpl, where, tags)
        for s in steps:
            self.visit_step(doc, tmpl, s, children, where)

    def visit_suspend(self, tmpl: Mapping[str, Any], where: str) -> None:
        self.check_suspend(tmpl, where)

    def visit_composite(
        self, doc: Document, tmpl: Mapping[str, Any], where: str
    ) -> tuple[list[dict[str, Any]], dict[str, tuple[Document, Any]]]:
        """A steps or DAG template: its steps (or tasks) and the template each runs."""
        if tmpl.get("activeDeadlineSeconds") is not None:
            # fields.md Template.activeDeadlineSeconds: "only applicable to container
            # and script templates"; the controller gives it no meaning elsewhere.
            self.notes.add(
                f"{where}: activeDeadlineSeconds on a steps/dag template has no effect "
                "(Argo applies it to container and script templates only)"
            )
        if "steps" in tmpl:
            steps = [s for group in tmpl["steps"] or [] for s in group or []]
        else:
            steps = list(tmpl["dag"].get("tasks") or [])
        children: dict[str, tuple[Document, Any]] = {}
        for s in steps:
            swhere = f"{where}: step {s.get('name')}"
            children[str(s["name"])] = self.template(doc, s, swhere)
        if "dag" in tmpl:
            self.check_target(tmpl, {str(s["name"]) for s in steps}, where)
        return steps, children

    def visit_http(self, tmpl: Mapping[str, Any], where: str) -> None:
        """An http template (pods/httptemplate.py): its url is required (the CRD's ``url``
        has no omitempty); it runs no pod, so it has no files for artifacts."""
        http = tmpl.get("http") or {}
        if not http.get("url"):
            raise SpecError(f"{where}: http.url is required")
        for side in ("inputs", "outputs"):
            if (tmpl.get(side) or {}).get("artifacts"):
                raise SpecError(
                    f"{where}: {side}.artifacts: an http template runs no pod, so it has no "
                    "files to load or save artifacts (Argo's agent makes only the request)"
                )

    def visit_pod(self, tmpl: Mapping[str, Any], where: str) -> None:
        self.check_pod(tmpl, where)
        artifactspec.check_output_paths(tmpl, where)

    def check_template_tags(
        self, tmpl: Mapping[str, Any], where: str, local: set[str], tags: _TagContext
    ) -> None:
        """Every ``{{...}}`` of the template's fields (not its metrics: they have variables of
        their own, nor fields ignored locally, never substituted) resolves."""
        meaningful = {
            k: v for k, v in tmpl.items() if TEMPLATE.get(k) != IGNORED and k != "metrics"
        }
        # an inline template's strings are its own (its inputs are not this template's)
        if "steps" in meaningful:
            meaningful["steps"] = [
                [{k: v for k, v in st.items() if k != "inline"} for st in group or []]
                for group in meaningful["steps"] or []
            ]
        if "dag" in meaningful:
            meaningful["dag"] = {
                **meaningful["dag"],
                "tasks": [
                    {k: v for k, v in t.items() if k != "inline"}
                    for t in meaningful["dag"].get("tasks") or []
                ],
            }
        for path, text in strings(meaningful, ""):
            for m in params.TAG.finditer(text):
                if m.group(1).startswith("="):
                    continue  # an expression: spec.py checked its functions, names bind at run time
                if m.group(1) in local:
                    continue
                self.check_tag(
                    m.group(1),
                    tags.inputs,
                    tags.children,
                    tags.prefix,
                    f"{where}: {path.lstrip('.')}",
                    tags.looped,
                )

    def collect_globals(self, tmpl: Mapping[str, Any]) -> None:
        """The global outputs (parameters and artifacts) the template exports."""
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            gname = str(p.get("globalName") or "")
            if params.TAG.search(gname):
                self.any_global = True
            elif gname:
                self.global_names.add(gname)
        for a in (tmpl.get("outputs") or {}).get("artifacts") or []:
            gname = str(a.get("globalName") or "")
            if params.TAG.search(gname):
                self.any_global_artifact = True
            elif gname:
                self.global_artifacts.add(gname)

    def check_metric_tags(self, tmpl: Mapping[str, Any], where: str, tags: _TagContext) -> None:
        """A metric's tags: the node's own variables, declared outputs, or what the template sees."""
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
                self.check_tag(tag, tags.inputs, tags.children, tags.prefix, mwhere, tags.looped)

    def visit_step(
        self,
        doc: Document,
        tmpl: Mapping[str, Any],
        s: dict[str, Any],
        children: dict[str, tuple[Document, Any]],
        where: str,
    ) -> None:
        """One step or task: its arguments against the template it runs, its dependencies, then
        that template, and its hooks."""
        sdoc, stmpl = children[str(s["name"])]
        swhere = f"{where}: step {s['name']}"
        sargs = s.get("arguments") or {}
        self.wrap(
            lambda sargs=sargs, swhere=swhere: artifactspec.check_arguments(
                sargs, swhere, self.secret
            )
        )
        self.check_supplied(sargs, sdoc, stmpl, swhere)
        if "dag" in tmpl:
            names = _ancestry(tmpl, str(s["name"]))
            for art in sargs.get("artifacts") or []:
                ref = str(art.get("from") or "")
                if ref.startswith("{{tasks."):
                    task = ref.removeprefix("{{tasks.").split(".")[0]
                    if task not in names:
                        # validate.go validateDAGTaskArgumentDependency
                        raise SpecError(
                            f"{swhere}: missing dependency '{task}' for artifact "
                            f"'{art.get('name')}'"
                        )
        given = {str(p["name"]) for p in (s.get("arguments") or {}).get("parameters") or []}
        for p in (s.get("arguments") or {}).get("parameters") or []:
            _check_value_from(p, f"{where}: step {s['name']}: arguments.parameters.")
            if p.get("enum") is not None:
                value = None if p.get("value") is None else params.render(p["value"])
                _check_enum(p, value, f"{where}: step {s['name']}: arguments.parameters")
        for p in (stmpl.get("inputs") or {}).get("parameters") or []:
            if p["name"] in given or _has_source(p):
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
        if s.get("hooks") or s.get("onExit"):
            workflow_args = {str(k) for k in self.parameters}
            self.hooks(doc, s, f"{where}: step {s['name']}", workflow_args)

    def check_target(self, tmpl: Mapping[str, Any], names: set[str], where: str) -> None:
        """validate.go validateDAGTargets: each literal target names a task."""
        raw = (tmpl.get("dag") or {}).get("target")
        if not isinstance(raw, str):
            return
        for target in raw.split():
            if params.TAG.search(target):
                continue
            if target not in names:
                raise SpecError(f"{where}: dag.target: target {target!r} is not defined")

    def check_container_set(
        self, cs: Mapping[str, Any], where: str
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """A containerSet's containers: named, unique, dependencies on siblings, no cycle."""
        members = list(cs.get("containers") or [])
        if not members:
            raise SpecError(f"{where}: containerSet.containers: at least one container")
        names = [str(c.get("name") or "") for c in members]
        if "" in names or len(set(names)) != len(names):
            raise SpecError(f"{where}: containerSet.containers: names must be given and unique")
        deps = {str(c["name"]): [str(d) for d in c.get("dependencies") or []] for c in members}
        for name, ds in deps.items():
            for d in ds:
                if d not in deps:
                    raise SpecError(
                        f"{where}: containerSet.containers[{name}].dependencies: no container {d!r}"
                    )
        seen: set[str] = set()
        while len(seen) < len(deps):
            ready = [n for n, ds in deps.items() if n not in seen and set(ds) <= seen]
            if not ready:
                raise SpecError(f"{where}: containerSet.containers: dependency cycle")
            seen.update(ready)
        shared = {"volumeMounts": cs.get("volumeMounts") or []}
        return [("containerSet", shared)] + [
            (f"containerSet.containers[{c['name']}]", c) for c in members
        ]

    def check_suspend(self, tmpl: Mapping[str, Any], where: str) -> None:
        """A suspend template runs locally only with a ``duration`` (its outputs then take
        their defaults); without one it waits for ``argo resume``, a cluster API."""
        duration = (tmpl.get("suspend") or {}).get("duration")
        if duration in (None, ""):
            raise SpecError(
                f"{where}: suspend without a duration waits for `argo resume` (a cluster API): "
                "not supported locally (give suspend.duration)"
            )
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            if vf.get("default") is None and p.get("default") is None:
                raise SpecError(
                    f"{where}: outputs.parameters[{p['name']}]: a suspend's output is supplied by "
                    "`argo resume` (a cluster API); locally it needs valueFrom.default"
                )

    def check_pod(self, tmpl: Mapping[str, Any], where: str) -> None:
        kind = next(k for k in ("script", "container", "containerSet") if k in tmpl)
        own = {v["name"] for v in tmpl.get("volumes") or []}
        if kind == "containerSet":
            cs = tmpl["containerSet"] or {}
            containers = self.check_container_set(cs, where)
            inputs, outputs = tmpl.get("inputs") or {}, tmpl.get("outputs") or {}
            has_main = any(c.get("name") == "main" for c in cs.get("containers") or [])
            if not has_main and (
                inputs.get("artifacts") or outputs.get("parameters") or outputs.get("artifacts")
            ):
                # validate.go validateLeaf: inputs and outputs are the main container's
                raise SpecError(
                    f'{where}: containerSet.containers must have a container named "main" '
                    "for input or output"
                )
        else:
            containers = [(kind, tmpl[kind] or {})]
        for field in ("initContainers", "sidecars"):
            for u in tmpl.get(field) or []:
                if not u.get("name"):
                    raise SpecError(f"{where}: {field}: every container needs a name")
                containers.append((f"{field}[{u['name']}]", u))
        for label, c in containers:
            for vm in c.get("volumeMounts") or []:
                if vm["name"] not in own | self.volumes:
                    raise SpecError(
                        f"{where}: {label}.volumeMounts[{vm['name']}]: no volume or "
                        "volumeClaimTemplate of that name"
                    )
            for e in c.get("env") or []:
                if "value" not in e and "valueFrom" not in e:
                    raise SpecError(
                        f"{where}: {label}.env[{e.get('name')}] needs value or valueFrom"
                    )
            self.check_config_sources(tmpl, c, f"{where}: {label}")
            if tmpl.get("daemon") and c.get("readinessProbe") is not None:
                checks.check_probe(c["readinessProbe"], f"{where}: {label}.readinessProbe")
            wd = c.get("workingDir")
            if wd and "{{" not in str(wd) and not str(wd).startswith("/"):
                # the container runtime refuses it (OCI runtime spec: process.cwd "MUST be an
                # absolute path"); the pod would never start
                raise SpecError(f"{where}: {label}.workingDir {wd!r} is not an absolute path")
            self.check_runnable(label, c, where)
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            if "supplied" in (p.get("valueFrom") or {}):
                raise SpecError(
                    f"{where}: outputs.parameters[{p['name']}]: valueFrom.supplied is for "
                    "suspend templates"
                )
            if "path" not in (p.get("valueFrom") or {}) and p.get("value") is None:
                raise SpecError(
                    f"{where}: outputs.parameters[{p['name']}]: a {kind} output needs valueFrom.path"
                )

    def check_config_sources(
        self, tmpl: Mapping[str, Any], c: Mapping[str, Any], where: str
    ) -> None:
        """What the kubelet needs before it starts the container: the ConfigMaps its
        ``configMap`` volumes, ``configMapKeyRef`` and ``envFrom`` name, and the secrets its
        ``secret`` volumes hold; a missing one that is not ``optional`` would keep the pod from
        starting, so it is refused here. A name with ``{{...}}`` is checked when the pod starts."""
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        volumes.update({v["name"]: v for v in tmpl.get("volumes") or []})
        for vm in c.get("volumeMounts") or []:
            vol = volumes.get(vm["name"]) or {}
            vwhere = f"{where}.volumeMounts[{vm['name']}]"
            if "configMap" in vol:
                src = vol["configMap"] or {}
                keys = [str(i.get("key")) for i in src.get("items") or []]
                self.check_config_map(src, keys, vwhere)
            elif "secret" in vol:
                self.check_secret_volume(vol["secret"] or {}, vwhere)
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if ref is not None:
                self.check_config_map(ref, [str(ref.get("key"))], f"{where}.env[{e['name']}]")
        for i, source in enumerate(c.get("envFrom") or []):
            if "secretRef" in source:
                raise SpecError(
                    f"{where}.envFrom[{i}].secretRef: a Secret's keys cannot be listed locally "
                    "(secrets come from the environment or .env): name each one with "
                    "env[].valueFrom.secretKeyRef"
                )
            if "configMapRef" not in source:
                raise SpecError(f"{where}.envFrom[{i}]: needs configMapRef")
            self.check_config_map(source["configMapRef"] or {}, [], f"{where}.envFrom[{i}]")

    def check_config_map(self, ref: Mapping[str, Any], keys: list[str], where: str) -> None:
        name = str(ref.get("name") or "")
        if not name:
            raise SpecError(f"{where}: a ConfigMap name is required")
        if "{{" in name or ref.get("optional"):
            return
        cm = self.config_maps.get(name)
        if cm is None:
            raise SpecError(
                f"{where}: no ConfigMap {name!r} (looked for a kind: ConfigMap document in "
                f"{self.config_maps.where()}): the pod would not start; add one or set "
                "optional: true"
            )
        for key in keys:
            if "{{" not in key and key not in cm.files():
                raise SpecError(
                    f"{where}: ConfigMap {name!r} ({cm.source}) has no key {key!r}: the pod "
                    "would not start"
                )

    def check_secret_volume(self, src: Mapping[str, Any], where: str) -> None:
        name = str(src.get("secretName") or "")
        if not name:
            raise SpecError(f"{where}: secret.secretName is required")
        if "{{" in name:
            return
        keys = secret_volume_keys(src, self.spec)
        if not keys:
            raise SpecError(
                f"{where}: secret {name}: list its keys in secret.items (locally a Secret's "
                "keys come from the environment or .env, which cannot list them)"
            )
        if src.get("optional"):
            return
        for key in keys:
            if "{{" not in key and self.secret(name, key) is None:
                variable = f"{name}_{key}".upper().replace("-", "_").replace(".", "_")
                raise SpecError(
                    f"{where}: secret {name}/{key} not found locally: set {variable} in the "
                    "environment or .env"
                )

    def check_runnable(self, label: str, c: Mapping[str, Any], where: str) -> None:
        """The program a container starts must be one this machine has: a local pod runs
        this machine's programs, not its image's. A container without ``command`` and
        ``args`` runs its image's ENTRYPOINT and CMD, which a local run cannot know unless
        ``--entrypoint`` names them. Both are refused before running rather than failing (or
        hanging on a missing server) halfway through."""
        if label == "containerSet":
            return
        image = c.get("image")
        command = [str(a) for a in c.get("command") or []]
        args = [str(a) for a in c.get("args") or []]
        run = command or entrypoint_of(image, self.entrypoints)
        if label == "script":
            program = (run or ["sh"])[0]
        elif run or args:
            program = (run or args)[0]
        else:
            raise SpecError(
                f"{where}: {label} has neither command nor args: it runs the ENTRYPOINT and CMD "
                f"of image {image!r}, which a local run does not know (give --entrypoint "
                f"{image}=COMMAND)"
            )
        # A path (/mnt/run.sh, ./tool) may be written by the pod itself; a {{...}} is known at
        # run time: only a bare program name is looked up on PATH here.
        if "/" in program or "{{" in program or os.path.basename(program) in PYTHON_NAMES:
            return
        if shutil.which(program, path=image_search_path(image, self.image_paths)) is None:
            raise SpecError(
                f"{where}: {label}: {program!r} is not a program on this machine (a local pod "
                f"runs this machine's programs, not those of image {image!r})"
            )

    def check_tag(
        self,
        tag: str,
        inputs: set[str],
        children: Mapping[str, tuple[Document, Any]],
        prefix: str,
        where: str,
        looped: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        if tag in GLOBALS or tag == "item" or tag.startswith("item."):
            return
        if tag in self.metadata:
            return
        if tag in EXIT_GLOBALS and self.has_hooks:
            return
        if tag.startswith(OUTPUTS):
            self.global_refs.append((tag.removeprefix(OUTPUTS), where))
            return
        if tag.startswith(ARTIFACTS):
            self.global_artifact_refs.append((tag.removeprefix(ARTIFACTS), where))
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
            if field == "outputs.parameters":
                # the whole list exists for a loop only (operator.go processAggregateNodeOutputs)
                if step not in looped:
                    raise SpecError(
                        f"{where}: {{{{{tag}}}}}: the whole outputs.parameters list exists "
                        f"only for a {head[:-1]} with withItems, withParam or withSequence"
                    )
                return
            if field == "ip":
                # validate.go addOutputsToScope: a node's ip exists for daemon templates only
                _, target = children[step]
                if not target.get("daemon"):
                    raise SpecError(
                        f"{where}: {{{{{tag}}}}}: template {target.get('name')} is not a daemon "
                        "(only a daemon's pod IP can be referenced)"
                    )
                return
            if field.startswith("outputs.artifacts."):
                aname = field.removeprefix("outputs.artifacts.")
                _, target = children[step]
                declared = {
                    str(a["name"]) for a in (target.get("outputs") or {}).get("artifacts") or []
                }
                if aname not in declared:
                    raise SpecError(
                        f"{where}: {{{{{tag}}}}}: template {target.get('name')} declares no "
                        f"output artifact {aname!r}"
                    )
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
        if not params.argo_variable(tag):
            # validate.go resolveAllVariables: "Skip the custom variable references"; the run
            # leaves the tag as written (params.substitute).
            # the run log's summary keys a note by its text after the last ": " (no dots)
            self.notes.add(
                f"{where}: {{{{{tag}}}}}: tag without an Argo prefix (item, steps, inputs, "
                "outputs, pod, workflow, tasks) left as written"
            )
            return
        raise SpecError(f"{where}: {{{{{tag}}}}}: variable not supported by the local runner")


def _loops(step: Mapping[str, Any]) -> bool:
    return any(k in step for k in ("withItems", "withParam", "withSequence"))


def _check_timeout(value: Any, where: str) -> None:
    """A template's timeout, once ``templateDefaults`` are merged, must be what the controller
    reads (v1alpha1 ParseStringToDuration: whole seconds or a Go duration). A whole number
    written on the template itself is refused by spec.validate, as validate.go refuses it; one
    from ``templateDefaults`` (which validation does not see) counts seconds."""
    if value is None:
        return
    text = str(value).strip()
    if "{{" in text:
        return
    from argo_local.expr.params import ParamError, duration

    try:
        duration(text)
    except ParamError:
        raise SpecError(f"{where}: timeout {text!r} is not a duration") from None


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


@dataclass(frozen=True)
class _TagContext:
    """What a template's ``{{...}}`` tags may name: its inputs, its steps' (or tasks') outputs."""

    inputs: set[str]
    children: dict[str, tuple[Document, Any]]
    prefix: str  # "steps" or "tasks"
    looped: set[str]


def _check_output_parameters(tmpl: Mapping[str, Any], where: str) -> None:
    """Each output parameter has a value or a valueFrom, not both."""
    for p in (tmpl.get("outputs") or {}).get("parameters") or []:
        # validate.go validateOutputParameter: a literal value or a valueFrom, not both
        pwhere = f"{where}: outputs.parameters[{p.get('name')}]"
        if p.get("value") is not None and p.get("valueFrom") is not None:
            raise SpecError(f"{pwhere} has both valueFrom and value specified, choose one")
        if p.get("value") is None and p.get("valueFrom") is None:
            raise SpecError(f"{pwhere} does not have valueFrom or value specified")


def _direct(task: Mapping[str, Any]) -> set[str]:
    deps = str(task.get("depends") or " && ".join(task.get("dependencies") or []))
    return set(expr.depends_names(deps)) if deps.strip() else set()


def _ancestry(tmpl: Mapping[str, Any], name: str) -> set[str]:
    """The tasks ``name`` depends on, directly or through others (common.GetTaskAncestry,
    which validate.go validateDAGTaskArgumentDependency checks a ``from`` against)."""
    tasks = {str(t.get("name")): t for t in (tmpl.get("dag") or {}).get("tasks") or []}
    found: set[str] = set()
    todo = list(_direct(tasks.get(name) or {}))
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(_direct(tasks.get(dep) or {}))
    return found


def _check_pod_fields(tmpl: Mapping[str, Any], where: str) -> None:
    """A DAG's shape, pod-only fields on a template that runs a pod, and a merged timeout."""
    if "dag" in tmpl:
        check_dag(tmpl, where)
    leaf = any(k in tmpl for k in ("container", "script", "containerSet"))
    for field in ("daemon", "sidecars", "initContainers"):
        if tmpl.get(field) and not (leaf and (field != "daemon" or "containerSet" not in tmpl)):
            raise SpecError(
                f"{where}: {field} needs a container or script template (it runs a pod)"
            )
    # A steps, dag or suspend template's own timeout is refused by spec.validate (validate.go
    # checks the templates as written); one merged from templateDefaults is checked here.
    _check_timeout(tmpl.get("timeout"), where)
