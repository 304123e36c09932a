"""Loading workflow YAML and checking it against what this runner implements.

Every field of a document is either *supported* (it means the same here as in a
cluster), *ignored locally* (it only matters to Kubernetes: scheduling, workflow-level
metrics, garbage collection; each use is noted in the run log), or rejected before anything
runs with its field path and file. Silently dropping a field would make a local run
"pass" for a workflow the cluster runs differently.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SpecError(ValueError):
    """A document cannot be run locally; the message names the field path and the file."""


LEAF = "leaf"
"""Supported scalar (or free-form value such as a withItems list)."""

EXPRESSION = "expression"
"""Supported scalar that may hold ``{{=...}}`` (a metric's value: Argo evaluates it)."""

IGNORED = "ignored"
"""Accepted, has no local meaning, noted in the run log."""

FREE = "free"
"""Supported free-form mapping (labels, annotations)."""

Schema = dict[str, Any]

# Fields that only concern Kubernetes scheduling, security, observability or cleanup.
_POD_IGNORED = (
    "metrics",
    "podGC",
    "ttlStrategy",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "automountServiceAccountToken",
    "podSpecPatch",
    "priorityClassName",
    "priority",
    "schedulerName",
    "imagePullSecrets",
    "podMetadata",
    "podPriorityClassName",
    "podDisruptionBudget",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "executor",
    "archiveLocation",
    "archiveLogs",
    "artifactRepositoryRef",
    "artifactGC",
    "volumeClaimGC",
    "workflowMetadata",
    "metadata",
    "tolerations",
)

_CONTAINER_IGNORED = (
    "image",
    "imagePullPolicy",
    "resources",
    "securityContext",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "stdinOnce",
    "tty",
)


def _ignored(*names: str) -> Schema:
    return dict.fromkeys(names, IGNORED)


PARAMETER: Schema = {
    "name": LEAF,
    "value": LEAF,
    "default": LEAF,
    "enum": LEAF,
    "description": LEAF,
}

OUTPUT_PARAMETER: Schema = {
    "name": LEAF,
    "description": LEAF,
    "default": LEAF,
    "valueFrom": {"path": LEAF, "default": LEAF, "parameter": LEAF, "expression": LEAF},
}

ARGUMENTS: Schema = {"parameters": [PARAMETER]}

ENV: Schema = {
    "name": LEAF,
    "value": LEAF,
    "valueFrom": {
        "secretKeyRef": {"name": LEAF, "key": LEAF, "optional": LEAF},
        # The downward API: metadata.name is the pod's name (the runner's pod folder).
        "fieldRef": {"fieldPath": LEAF, "apiVersion": LEAF},
    },
}

VOLUME_MOUNT: Schema = {
    "name": LEAF,
    "mountPath": LEAF,
    "readOnly": LEAF,
    "subPath": LEAF,
    **_ignored("mountPropagation"),
}

CONTAINER: Schema = {
    "name": LEAF,
    "command": LEAF,
    "args": LEAF,
    "env": [ENV],
    "workingDir": LEAF,
    "volumeMounts": [VOLUME_MOUNT],
    **_ignored(*_CONTAINER_IGNORED),
}

SCRIPT: Schema = {**CONTAINER, "source": LEAF}

VOLUME: Schema = {
    "name": LEAF,
    "emptyDir": {"medium": IGNORED, "sizeLimit": IGNORED},
    "persistentVolumeClaim": {"claimName": LEAF, "readOnly": LEAF},
}

PVC_TEMPLATE: Schema = {
    "metadata": {"name": LEAF, "labels": IGNORED, "annotations": IGNORED},
    "spec": _ignored(
        "accessModes", "resources", "storageClassName", "volumeMode", "selector", "dataSource"
    ),
}

RETRY: Schema = {
    "limit": LEAF,
    "retryPolicy": LEAF,
    "expression": LEAF,
    "backoff": {"duration": LEAF, "factor": LEAF, "maxDuration": LEAF, "cap": LEAF},
    **_ignored("affinity"),
}

TEMPLATE_REF: Schema = {"name": LEAF, "template": LEAF, "clusterScope": LEAF}

SEQUENCE: Schema = {"count": LEAF, "start": LEAF, "end": LEAF, "format": LEAF}

STEP: Schema = {
    "name": LEAF,
    "template": LEAF,
    "templateRef": TEMPLATE_REF,
    "arguments": ARGUMENTS,
    "withItems": LEAF,
    "withParam": LEAF,
    "withSequence": SEQUENCE,
    "when": LEAF,
    "continueOn": {"failed": LEAF, "error": LEAF},
    "description": LEAF,
}

TASK: Schema = {**STEP, "dependencies": LEAF, "depends": LEAF}

METRIC: Schema = {
    "name": LEAF,
    "help": LEAF,
    "labels": [{"key": LEAF, "value": LEAF}],
    "when": LEAF,
    "gauge": {"value": EXPRESSION, "realtime": LEAF, "operation": LEAF},
    "histogram": {"value": EXPRESSION, "buckets": LEAF},
    "counter": {"value": EXPRESSION},
}

TEMPLATE: Schema = {
    "name": LEAF,
    "inputs": {"parameters": [PARAMETER]},
    "outputs": {"parameters": [OUTPUT_PARAMETER]},
    "container": CONTAINER,
    "script": SCRIPT,
    "steps": [[STEP]],
    "dag": {"tasks": [TASK]},
    "retryStrategy": RETRY,
    "parallelism": LEAF,
    "activeDeadlineSeconds": LEAF,
    "volumes": [VOLUME],
    "description": LEAF,
    **_ignored(*_POD_IGNORED),
    # Computed per node into the run folder's metrics.prom (runner/metrics.py).
    "metrics": {"prometheus": [METRIC]},
}

SPEC: Schema = {
    "entrypoint": LEAF,
    "arguments": ARGUMENTS,
    "templates": [TEMPLATE],
    "parallelism": LEAF,
    "activeDeadlineSeconds": LEAF,
    "volumeClaimTemplates": [PVC_TEMPLATE],
    "volumes": [VOLUME],
    "workflowTemplateRef": {"name": LEAF, "clusterScope": LEAF},
    **_ignored(*_POD_IGNORED),
}

METADATA: Schema = {
    "name": LEAF,
    "generateName": LEAF,
    "namespace": IGNORED,
    "labels": IGNORED,
    "annotations": IGNORED,
}

DOCUMENT: Schema = {"apiVersion": LEAF, "kind": LEAF, "metadata": METADATA, "spec": SPEC}

CRON_SPEC: Schema = {
    "workflowSpec": SPEC,
    "workflowMetadata": IGNORED,
    **_ignored(
        "schedule",
        "schedules",
        "timezone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "suspend",
        "stopStrategy",
        "when",
    ),
}

CRON_DOCUMENT: Schema = {**DOCUMENT, "spec": CRON_SPEC}

RUNNABLE_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")


@dataclass
class Notes:
    """What the run log says about fields accepted without local meaning."""

    ignored: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.ignored:
            self.ignored.append(text)


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"[{item['name']}]"
    return f"[{index}]"


_EXPRESSION_TAG = re.compile(r"\{\{\s*=")


def check(doc: Any, schema: Any, path: str, source: str, notes: Notes) -> None:
    """Raise SpecError for the first field outside ``schema``; note ignored ones."""
    if schema == LEAF:
        for text_path, text in strings(doc, path):
            if _EXPRESSION_TAG.search(text):
                raise SpecError(
                    f"{source}: {text_path}: expression tags {{{{=...}}}} are not supported "
                    "by the local runner (use {{inputs...}}, {{steps...}}, {{item}})"
                )
        return
    if schema in (IGNORED, FREE, EXPRESSION):
        return
    if isinstance(schema, list):
        if doc is None:
            return
        if not isinstance(doc, list):
            raise SpecError(f"{source}: {path}: expected a list, got {type(doc).__name__}")
        for i, item in enumerate(doc):
            check(item, schema[0], f"{path}{_label(item, i)}", source, notes)
        return
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: {path}: expected a mapping, got {type(doc).__name__}")
    for key, value in doc.items():
        sub = schema.get(key)
        child = f"{path}.{key}" if path else str(key)
        if sub is None:
            raise SpecError(
                f"{source}: {child}: field not supported by the local runner "
                "(neither implemented nor on the ignored-locally list)"
            )
        if sub == IGNORED:
            notes.add(f"{source}: {child} ignored locally")
            continue
        check(value, sub, child, source, notes)


def strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a YAML tree with its dotted path (where ``{{...}}`` may hide)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}")


@dataclass
class Document:
    """One runnable YAML document and where it came from."""

    kind: str
    name: str
    body: dict[str, Any]
    source: str

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec") or {}
        if self.kind == "CronWorkflow":
            return dict(spec.get("workflowSpec") or {})
        return dict(spec)

    def template(self, name: str) -> dict[str, Any] | None:
        for t in self.spec.get("templates") or []:
            if isinstance(t, dict) and t.get("name") == name:
                return t
        return None


def validate(doc: Document, notes: Notes) -> None:
    schema = CRON_DOCUMENT if doc.kind == "CronWorkflow" else DOCUMENT
    check(doc.body, schema, "", doc.source, notes)
    spec = doc.spec
    for t in spec.get("templates") or []:
        kinds = [k for k in ("container", "script", "steps", "dag") if t.get(k) is not None]
        if len(kinds) != 1:
            raise SpecError(
                f"{doc.source}: spec.templates[{t.get('name')}]: a template needs exactly one of "
                f"container, script, steps, dag (found {kinds or 'none'})"
            )


def load_documents(path: Path) -> list[Document]:
    """The Argo documents of one YAML file (other kinds are skipped)."""
    try:
        raw = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    docs = []
    for body in raw:
        if not isinstance(body, dict) or body.get("kind") not in RUNNABLE_KINDS:
            continue
        meta = body.get("metadata") or {}
        name = meta.get("name") or meta.get("generateName") or path.stem
        docs.append(Document(str(body["kind"]), str(name), body, str(path)))
    return docs


class Library:
    """WorkflowTemplates and ClusterWorkflowTemplates by name, from a manifests folder (and the
    file being run). They are two namespaces, as in a cluster: a ``templateRef`` (or
    ``workflowTemplateRef``) with ``clusterScope: true`` names a ClusterWorkflowTemplate, one
    without it a WorkflowTemplate (templateresolution, fetchWorkflowSpec in operator.go)."""

    def __init__(self) -> None:
        self.templates: dict[str, Document] = {}
        self.cluster_templates: dict[str, Document] = {}

    def _kind(self, doc: Document) -> dict[str, Document] | None:
        if doc.kind == "WorkflowTemplate":
            return self.templates
        if doc.kind == "ClusterWorkflowTemplate":
            return self.cluster_templates
        return None

    def add(self, doc: Document, *, wins: bool = False) -> None:
        table = self._kind(doc)
        if table is not None:
            if wins:
                table[doc.name] = doc
            else:
                table.setdefault(doc.name, doc)

    def documents(self) -> list[Document]:
        return [*self.templates.values(), *self.cluster_templates.values()]

    @classmethod
    def scan(cls, folder: Path | None) -> Library:
        lib = cls()
        if folder is None or not folder.is_dir():
            return lib
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                try:
                    docs = load_documents(path)
                except SpecError:
                    continue  # a broken unrelated file must not block running another
                for doc in docs:
                    lib.add(doc)
        return lib

    def get(self, name: str, where: str, *, cluster: bool = False) -> Document:
        table = self.cluster_templates if cluster else self.templates
        doc = table.get(name)
        if doc is None:
            kind = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
            known = ", ".join(sorted(table)) or "none"
            other = self.templates if cluster else self.cluster_templates
            hint = ""
            if name in other:
                hint = (
                    "; a ClusterWorkflowTemplate of that name needs clusterScope: true"
                    if not cluster
                    else "; a WorkflowTemplate of that name needs clusterScope false or unset"
                )
            raise SpecError(f"{where}: {kind} {name!r} not found (known: {known}){hint}")
        return doc

    def get_ref(self, ref: Mapping[str, Any], where: str) -> Document:
        """The document a ``templateRef`` or ``workflowTemplateRef`` names."""
        cluster = ref.get("clusterScope")
        if cluster not in (None, True, False):
            raise SpecError(f"{where}.clusterScope: expected true or false, got {cluster!r}")
        return self.get(str(ref.get("name")), where, cluster=bool(cluster))

    def resolve(self, tref: Mapping[str, Any], where: str) -> tuple[Document, dict[str, Any]]:
        """The WorkflowTemplate (or ClusterWorkflowTemplate) and template a ``templateRef`` names."""
        target = self.get_ref(tref, f"{where}.templateRef")
        tmpl = target.template(str(tref.get("template")))
        if tmpl is None:
            raise SpecError(
                f"{where}.templateRef: {target.kind} {target.name} ({target.source}) "
                f"has no template {tref.get('template')!r}"
            )
        return target, tmpl


def default_manifests() -> Path:
    """``./manifests`` if present, else the library this package was installed with.

    A wheel carries the repository's ``manifests/`` as ``workers/manifests`` (package data);
    a source checkout or an editable install has it next to the package instead.
    """
    here = Path("manifests")
    if here.is_dir():
        return here
    package = Path(__file__).resolve().parents[1]
    shipped = package / "manifests"
    if shipped.is_dir():
        return shipped
    return package.parent / "manifests"


def resolve_target(target: str, manifests: Path | None) -> tuple[Document, Library]:
    """The document to run for ``FILE|TEMPLATE_NAME`` and the template library around it."""
    lib = Library.scan(manifests)
    path = Path(target)
    if path.is_file():
        docs = load_documents(path)
        if not docs:
            raise SpecError(f"{target}: no Workflow, WorkflowTemplate or CronWorkflow in the file")
        for doc in docs:
            # a template in the file being run wins over a same-named one in manifests/
            lib.add(doc, wins=True)
        runnable = [d for d in docs if d.kind in RUNNABLE_KINDS]
        if len(runnable) > 1:
            names = ", ".join(f"{d.kind}/{d.name}" for d in runnable)
            raise SpecError(f"{target}: several runnable documents ({names}): split the file")
        return runnable[0], lib
    if os.sep in target or target.endswith((".yaml", ".yml")):
        raise SpecError(f"{target}: no such file")
    where = f"manifests folder {manifests}"
    if target not in lib.templates and target in lib.cluster_templates:
        return lib.get(target, where, cluster=True), lib
    return lib.get(target, where), lib


def workflow_name(doc: Document) -> str:
    """``metadata.name``, or ``generateName`` plus five random characters like the controller."""
    meta = doc.body.get("metadata") or {}
    if doc.kind == "Workflow" and meta.get("name"):
        return str(meta["name"])
    base = meta.get("generateName") or f"{meta.get('name') or doc.name}-"
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return str(base) + "".join(secrets.choice(alphabet) for _ in range(5))
