"""Loading workflow YAML and checking it against what this runner implements.

Every field of a document is either *supported* (it means the same here as in a
cluster), *ignored locally* (it only matters to Kubernetes: scheduling, workflow-level
metrics, garbage collection; each use is noted in the run log), or rejected before anything
runs with its field path and file. Silently dropping a field would make a local run
"pass" for a workflow the cluster runs differently.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from argo_local.expr import params


class SpecError(ValueError):
    """A document cannot be run locally; the message names the field path and the file."""


LEAF = "leaf"
"""Supported scalar (or free-form value such as a withItems list)."""

EXPRESSION = "expression"
"""Supported scalar that may hold ``{{=...}}`` (a metric's value: Argo evaluates it)."""

EXPR_LANG = "expr-lang"
"""A whole expr-lang expression (``retryStrategy.expression``, ``valueFrom.expression``)."""

IGNORED = "ignored"
"""Accepted, has no local meaning, noted in the run log."""

FREE = "free"
"""Supported free-form mapping (labels, annotations)."""

# Typed scalars, checked before running as the CRD's OpenAPI schema (and the controller's Go
# types) check them: a type error is one line naming the field, never a traceback mid-run.
INT = "int"
"""An integer (Go ``*int64``): a string, even ``"2"``, is refused as the CRD refuses it."""

INT_OR_STRING = "int-or-string"
"""Kubernetes ``IntOrString``: an integer, or a string holding one or a ``{{...}}`` tag."""

BOOL = "bool"
"""A boolean (Go ``*bool``)."""

STRING_LIST = "string-list"
"""A list of strings (``command``, ``args``, ``dependencies``); scalars in it are accepted as
YAML writes them (``[sleep, 5]``), a lone string or a nested list is not."""

DURATION = "duration"
"""A duration string: seconds (``"30"``) or Go units (``"1m30s"``), or a ``{{...}}`` tag."""

TYPED = (INT, INT_OR_STRING, BOOL, STRING_LIST, DURATION)

Schema = dict[str, Any]


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys are the user's names (``hooks``: one entry per hook), each value
    checked against ``value``."""

    value: Any


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
    "priorityClassName",
    "priority",
    "schedulerName",
    "imagePullSecrets",
    "podMetadata",
    "podPriorityClassName",
    "podDisruptionBudget",
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
    # Pod-level requests/limits and Dynamic Resource Allocation claims (workflowpod.go copies
    # them into the pod spec): scheduling hints, like a container's ``resources``. What Argo's
    # validation refuses of them is refused here (check_pod_resources).
    "podResources",
    "resourceClaims",
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
)


def _ignored(*names: str) -> Schema:
    return dict.fromkeys(names, IGNORED)


CONFIG_MAP_KEY_REF: Schema = {"name": LEAF, "key": LEAF, "optional": BOOL}

PARAMETER: Schema = {
    "name": LEAF,
    "value": LEAF,
    "default": LEAF,
    "enum": LEAF,
    "description": LEAF,
    # a ConfigMap's key (runner/configmaps.py), its default when the ConfigMap or key is missing
    "valueFrom": {"configMapKeyRef": CONFIG_MAP_KEY_REF, "default": LEAF},
}

OUTPUT_PARAMETER: Schema = {
    "name": LEAF,
    "description": LEAF,
    "default": LEAF,
    # a literal (substituted) value: the executor reports the template's outputs as they are,
    # filling in only valueFrom.path (executor.go SaveParameters, ReportOutputs)
    "value": LEAF,
    # exported as {{workflow.outputs.parameters.NAME}} and in status.outputs (runner/hooks.py)
    "globalName": LEAF,
    "valueFrom": {
        "path": LEAF,
        "default": LEAF,
        "parameter": LEAF,
        "expression": EXPR_LANG,
        # a suspend template's output: its default when the suspension's duration expires
        "supplied": FREE,
    },
}

SECRET_REF: Schema = {"name": LEAF, "key": LEAF, "optional": LEAF}

ARTIFACT: Schema = {
    "name": LEAF,
    "path": LEAF,
    "mode": LEAF,
    "recurseMode": LEAF,
    "optional": LEAF,
    "from": LEAF,
    "subPath": LEAF,
    "description": LEAF,
    # expr-lang picking a child's artifact (a steps/dag template's outputs; arguments beside a
    # location): evaluated as scope.go resolveArtifact evaluates it (runner/dataflow.py)
    "fromExpression": LEAF,
    # exported as {{workflow.outputs.artifacts.NAME}} and in status.outputs (workflowscope.py)
    "globalName": LEAF,
    "archive": {"none": FREE, "tar": {"compressionLevel": LEAF}, "zip": FREE},
    "raw": {"data": LEAF},
    # Without a bucket: a key in the run's own repository; with one, through fsspec.
    "s3": {
        "bucket": LEAF,
        "key": LEAF,
        "endpoint": LEAF,
        "region": LEAF,
        "insecure": LEAF,
        "useSDKCreds": LEAF,
        "accessKeySecret": SECRET_REF,
        "secretKeySecret": SECRET_REF,
    },
    "gcs": {"bucket": LEAF, "key": LEAF, "serviceAccountKeySecret": SECRET_REF},
    # Accepted by the schema so artifactspec.check_artifact names the reason it cannot run.
    **dict.fromkeys(("http", "git", "artifactory", "hdfs", "oss", "azure", "plugin"), FREE),
    # Kubernetes-side cleanup of the bucket's objects.
    **_ignored("artifactGC", "deleted"),
}

ARGUMENTS: Schema = {"parameters": [PARAMETER], "artifacts": [ARTIFACT]}

ENV: Schema = {
    "name": LEAF,
    "value": LEAF,
    "valueFrom": {
        "secretKeyRef": {"name": LEAF, "key": LEAF, "optional": BOOL},
        "configMapKeyRef": CONFIG_MAP_KEY_REF,
        # The downward API: metadata.name is the pod's name (the runner's pod folder).
        "fieldRef": {"fieldPath": LEAF, "apiVersion": LEAF},
    },
}

VOLUME_MOUNT: Schema = {
    "name": LEAF,
    "mountPath": LEAF,
    "readOnly": BOOL,
    "subPath": LEAF,
    **_ignored("mountPropagation"),
}

CONTAINER: Schema = {
    "name": LEAF,
    "command": STRING_LIST,
    "args": STRING_LIST,
    "env": [ENV],
    # every key of a ConfigMap as a variable; a secretRef is refused by wiring.py with its reason
    "envFrom": [
        {"prefix": LEAF, "configMapRef": {"name": LEAF, "optional": BOOL}, "secretRef": FREE}
    ],
    "workingDir": LEAF,
    "volumeMounts": [VOLUME_MOUNT],
    "tty": BOOL,  # stdin a pseudo-terminal (processes.py)
    **_ignored(*_CONTAINER_IGNORED),
}

SCRIPT: Schema = {**CONTAINER, "source": LEAF}

# An init container or a sidecar: a container of the same pod (runner/processes.py).
USER_CONTAINER: Schema = {**CONTAINER, "mirrorVolumeMounts": LEAF}

# docs/container-set-template.md: containers of one pod ordered by their dependencies (the
# inner retryStrategy, which the executor applies inside the pod, is not implemented).
CONTAINER_SET: Schema = {
    "containers": [{**CONTAINER, "dependencies": LEAF}],
    "volumeMounts": [VOLUME_MOUNT],
}

KEY_TO_PATH: Schema = {"key": LEAF, "path": LEAF, "mode": LEAF}

VOLUME: Schema = {
    "name": LEAF,
    "emptyDir": {"medium": IGNORED, "sizeLimit": IGNORED},
    "persistentVolumeClaim": {"claimName": LEAF, "readOnly": LEAF},
    # files written per pod from a local ConfigMap, or from secrets found as secretKeyRef finds
    # them (runner/podenv.py)
    "configMap": {"name": LEAF, "items": [KEY_TO_PATH], "defaultMode": LEAF, "optional": BOOL},
    "secret": {"secretName": LEAF, "items": [KEY_TO_PATH], "defaultMode": LEAF, "optional": BOOL},
}

PVC_TEMPLATE: Schema = {
    "metadata": {"name": LEAF, "labels": IGNORED, "annotations": IGNORED},
    "spec": _ignored(
        "accessModes", "resources", "storageClassName", "volumeMode", "selector", "dataSource"
    ),
}

RETRY: Schema = {
    "limit": INT_OR_STRING,
    "retryPolicy": LEAF,
    "expression": EXPR_LANG,
    "backoff": {
        "duration": DURATION,
        "factor": INT_OR_STRING,
        "maxDuration": DURATION,
        "cap": DURATION,
    },
    **_ignored("affinity"),
}

TEMPLATE_REF: Schema = {"name": LEAF, "template": LEAF, "clusterScope": LEAF}

SEQUENCE: Schema = {
    "count": INT_OR_STRING,
    "start": INT_OR_STRING,
    "end": INT_OR_STRING,
    "format": LEAF,
}

# A lifecycle hook (runner/hooks.py): ``exit`` is an exit handler, any other name needs an
# ``expression`` and runs once when it becomes true.
HOOK: Schema = {
    "template": LEAF,
    "templateRef": TEMPLATE_REF,
    "arguments": ARGUMENTS,
    "expression": LEAF,
}

PLAIN_STEP: Schema = {
    "name": LEAF,
    "template": LEAF,
    "templateRef": TEMPLATE_REF,
    "arguments": ARGUMENTS,
    "withItems": LEAF,
    "withParam": LEAF,
    "withSequence": SEQUENCE,
    "when": LEAF,
    "continueOn": {"failed": BOOL, "error": BOOL},
    "description": LEAF,
    "onExit": LEAF,
    "hooks": MapOf(HOOK),
}

PLAIN_TASK: Schema = {**PLAIN_STEP, "dependencies": STRING_LIST, "depends": LEAF}

METRIC: Schema = {
    "name": LEAF,
    "help": LEAF,
    "labels": [{"key": LEAF, "value": LEAF}],
    "when": LEAF,
    "gauge": {"value": EXPRESSION, "realtime": LEAF, "operation": LEAF},
    "histogram": {"value": EXPRESSION, "buckets": LEAF},
    "counter": {"value": EXPRESSION},
}

MEMOIZE: Schema = {
    "key": LEAF,
    "maxAge": DURATION,
    "cache": {"configMap": {"name": LEAF}},
}

# v4 has only the plural forms (workflow_types.go Synchronization): the v3.5 singular
# ``mutex``/``semaphore`` are unknown fields to a v4 controller, so they are refused here too.
SYNCHRONIZATION: Schema = {
    "mutexes": [{"name": LEAF, "namespace": LEAF, "database": BOOL}],
    "semaphores": [
        {
            "configMapKeyRef": {"name": LEAF, "key": LEAF, "optional": BOOL},
            "namespace": LEAF,
            "database": {"key": LEAF},
        }
    ],
}


# core/v1 HostAlias: one line of the pod's /etc/hosts
HOST_ALIAS: Schema = {"ip": LEAF, "hostnames": STRING_LIST}

# http_types.go HTTP: the request Argo's agent makes (workflow/executor/agent.go)
HTTP: Schema = {
    "method": LEAF,
    "url": LEAF,
    "headers": [
        {
            "name": LEAF,
            "value": LEAF,
            "valueFrom": {"secretKeyRef": {"name": LEAF, "key": LEAF, "optional": BOOL}},
        }
    ],
    "timeoutSeconds": INT,
    # expr-lang over request and response, parsed before running
    "successCondition": EXPR_LANG,
    "body": LEAF,
    "bodyFrom": {"bytes": LEAF},
    "insecureSkipVerify": BOOL,
}


def _template(step: Schema, task: Schema) -> Schema:
    return {
        "name": LEAF,
        "inputs": {"parameters": [PARAMETER], "artifacts": [ARTIFACT]},
        "outputs": {"parameters": [OUTPUT_PARAMETER], "artifacts": [ARTIFACT]},
        "container": CONTAINER,
        "script": SCRIPT,
        "steps": [[step]],
        "dag": {"tasks": [task], "target": LEAF, "failFast": BOOL},
        "retryStrategy": RETRY,
        "parallelism": INT,
        "failFast": BOOL,
        "activeDeadlineSeconds": INT_OR_STRING,
        "memoize": MEMOIZE,
        "synchronization": SYNCHRONIZATION,
        "timeout": LEAF,
        "volumes": [VOLUME],
        "description": LEAF,
        # Template.Annotations: workflows.argoproj.io/display-name names the node
        # (runner/scheduling.py _display_name); Argo reads no other key.
        "annotations": MapOf(LEAF),
        # lifetimes (runner/pods.py, runner/daemons.py): a daemon lives until its scope ends;
        # (runner/processes.py) init containers run before the main one, sidecars beside it
        # until it exits
        "daemon": BOOL,
        "initContainers": [USER_CONTAINER],
        "sidecars": [USER_CONTAINER],
        "suspend": {"duration": LEAF},
        "containerSet": CONTAINER_SET,
        **_ignored(*_POD_IGNORED),
        # A YAML or JSON PodSpec merged into the pod (pods/podspecpatch.py): its containers'
        # env, command, args and workingDir apply locally, the rest is listed as ignored.
        "podSpecPatch": LEAF,
        # Computed per node into the run folder's metrics.prom (runner/metrics.py).
        "metrics": {"prometheus": [METRIC]},
        # the pod's /etc/hosts (pods/hosts.py), after the workflow's own entries
        "hostAliases": [HOST_ALIAS],
        # a request from the runner, as Argo's agent makes it (pods/httptemplate.py)
        "http": HTTP,
    }


# docs/inline-templates.md: "You can only inline once": an inline template's own steps or
# tasks cannot inline again.
INLINE_TEMPLATE: Schema = _template(PLAIN_STEP, PLAIN_TASK)

STEP: Schema = {**PLAIN_STEP, "inline": INLINE_TEMPLATE}

TASK: Schema = {**PLAIN_TASK, "inline": INLINE_TEMPLATE}

TEMPLATE: Schema = _template(STEP, TASK)

# spec.templateDefaults is a Template (workflow_types.go TemplateDefaults *Template), merged
# into every template (runner/defaults.py).
TEMPLATE_DEFAULTS: Schema = TEMPLATE

SPEC: Schema = {
    "entrypoint": LEAF,
    "arguments": ARGUMENTS,
    "templates": [TEMPLATE],
    "templateDefaults": TEMPLATE_DEFAULTS,
    "retryStrategy": RETRY,
    "synchronization": SYNCHRONIZATION,
    "parallelism": INT,
    "activeDeadlineSeconds": INT,
    "volumeClaimTemplates": [PVC_TEMPLATE],
    "volumes": [VOLUME],
    "workflowTemplateRef": {"name": LEAF, "clusterScope": LEAF},
    "onExit": LEAF,
    "hooks": MapOf(HOOK),
    "hostAliases": [HOST_ALIAS],
    **_ignored(*_POD_IGNORED),
    "podSpecPatch": LEAF,  # every pod's, before its template's (pods/podspecpatch.py)
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

KINDS = ("container", "script", "containerSet", "steps", "dag", "suspend", "http")
"""The template kinds this runner runs (resource, data, plugin need a cluster)."""

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


_SPACED_EXPRESSION_TAG = re.compile(r"\{\{\s+=")


def _check_expressions(doc: Any, path: str, source: str, *, whole: bool) -> None:
    """Parse every expr-lang expression (``{{=...}}`` tags, or the whole string) and refuse a
    function the runner does not implement, before anything runs."""
    from argo_local.expr import exprlang
    from argo_local.expr.depends import ExprError

    for text_path, text in strings(doc, path):
        # a whole expression may hold {{inputs...}} tags, substituted before it is evaluated
        found = (
            [params.TAG.sub("nil", text)]
            if whole
            else [m.group(1) for m in params.EXPRESSION_TAG.finditer(text)]
        )
        if not whole and _SPACED_EXPRESSION_TAG.search(text):
            raise SpecError(
                f"{source}: {text_path}: '{{{{ =' is not an expression tag in Argo "
                "(the = must follow {{ directly: {{=...}})"
            )
        for expression in found:
            try:
                exprlang.check(expression)
            except ExprError as exc:
                raise SpecError(f"{source}: {text_path}: {exc}") from None


def check(doc: Any, schema: Any, path: str, source: str, notes: Notes) -> None:
    """Raise SpecError for the first field outside ``schema``; note ignored ones."""
    if schema in TYPED:
        problem = scalar_problem(doc, schema)
        if problem:
            raise SpecError(f"{source}: {path}: {problem}")
        schema = LEAF
    if schema in (LEAF, EXPRESSION, EXPR_LANG):
        _check_expressions(doc, path, source, whole=schema == EXPR_LANG)
        return
    if schema in (IGNORED, FREE):
        return
    if isinstance(schema, MapOf):
        if doc is None:
            return
        if not isinstance(doc, dict):
            raise SpecError(f"{source}: {path}: expected a mapping, got {type(doc).__name__}")
        for key, value in doc.items():
            check(value, schema.value, f"{path}.{key}", source, notes)
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
            if schema is SYNCHRONIZATION and key in ("mutex", "semaphore"):
                plural = "mutexes" if key == "mutex" else "semaphores"
                raise SpecError(
                    f"{source}: {child}: the singular form was removed in Argo v4; "
                    f"use {plural}: [...]"
                )
            raise SpecError(
                f"{source}: {child}: field not supported by the local runner "
                "(neither implemented nor on the ignored-locally list)"
            )
        if sub == IGNORED:
            notes.add(f"{source}: {child} ignored locally")
            continue
        check(value, sub, child, source, notes)


_TAG = re.compile(r"\{\{.*?\}\}")
_INTEGER = re.compile(r"[+-]?\d+")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def scalar_problem(value: Any, kind: str) -> str:
    """Why ``value`` does not fit a typed field, or "" when it does (``None``: unset)."""
    if value is None:
        return ""
    if kind == INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return ""
        return f"expected an integer, got {_kind(value)}"
    if kind == BOOL:
        return "" if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"
    if kind == INT_OR_STRING:
        if isinstance(value, int) and not isinstance(value, bool):
            return ""
        if isinstance(value, str) and (_INTEGER.fullmatch(value.strip()) or _TAG.search(value)):
            return ""
        return f"expected an integer (or a string holding one), got {_kind(value)}"
    if kind == STRING_LIST:
        if not isinstance(value, list):
            return f"expected a list of strings, got {_kind(value)}"
        for item in value:
            if isinstance(item, (list, dict)) or item is None:
                return f"expected a list of strings, got an item that is {_kind(item)}"
        return ""
    if kind == DURATION:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return ""
        if isinstance(value, str):
            text = value.strip()
            if _TAG.search(text) or params.GO_DURATION.fullmatch(text):
                return ""
            try:
                float(text)
                return ""
            except ValueError:
                pass
        return f'expected a duration such as "30s", "2m" or "1h", got {_kind(value)}'
    raise AssertionError(kind)


def leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every scalar in a YAML tree with its dotted path."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}")
    else:
        yield path, value


def strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a YAML tree with its dotted path (where ``{{...}}`` may hide)."""
    return ((p, v) for p, v in leaves(value, path) if isinstance(v, str))


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


# Kubernetes object names (RFC 1123 subdomain) and volume names (RFC 1123 label); Argo's own
# pattern for template, step and task names (validate.go workflowFieldNameFmt). Each of these
# becomes a folder or file name in the run folder, so none may hold "/" or be "..".
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")


def _check_name(value: Any, pattern: re.Pattern[str], limit: int, what: str, where: str) -> None:
    text = str(value)
    if len(text) <= limit and pattern.fullmatch(text):
        return
    if pattern is _FIELD_NAME:
        rule = "alpha-numeric characters or '-', starting with an alpha-numeric character"
    elif pattern is _SUBDOMAIN:
        rule = "lowercase letters, digits and '-', with '.' between parts"
    else:
        rule = "lowercase letters, digits and '-'"
    raise SpecError(f"{where}: {what} {text!r} is not a valid name: {rule}, at most {limit} long")


def check_names(doc: Document) -> None:
    """The names that become paths in the run folder, checked as Kubernetes and Argo do."""
    meta = doc.body.get("metadata") or {}
    src = doc.source
    if meta.get("name") is not None:
        _check_name(meta["name"], _SUBDOMAIN, 253, "metadata.name", src)
    if meta.get("generateName") is not None:
        # The controller appends five characters to the prefix; the result must be a name.
        _check_name(str(meta["generateName"]) + "x", _SUBDOMAIN, 253, "metadata.generateName", src)
    spec = doc.spec
    for i, t in enumerate(spec.get("templates") or []):
        if isinstance(t, dict) and t.get("name") is not None:
            _check_name(t["name"], _FIELD_NAME, 128, "name", f"{src}: spec.templates[{i}]")
        for v in (t.get("volumes") or []) if isinstance(t, dict) else []:
            if isinstance(v, dict) and v.get("name") is not None:
                where = f"{src}: spec.templates[{t.get('name')}].volumes"
                _check_name(v["name"], _LABEL, 63, "volume name", where)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict) and v.get("name") is not None:
            _check_name(v["name"], _LABEL, 63, "volume name", f"{src}: spec.volumes")
    for pvc in spec.get("volumeClaimTemplates") or []:
        name = ((pvc or {}).get("metadata") or {}).get("name") if isinstance(pvc, dict) else None
        if name is not None:
            where = f"{src}: spec.volumeClaimTemplates"
            _check_name(name, _LABEL, 63, "metadata.name", where)


# wfv1.TemplateType, as Argo's messages name a template's kind
_ARGO_TYPES = {"steps": "Steps", "dag": "DAG", "suspend": "Suspend", "http": "HTTP"}


def check_host_aliases(entries: Any, where: str) -> None:
    """The API server's ValidateHostAliases (core/validation): each entry a valid IP with
    RFC 1123 subdomain hostnames (a ``{{...}}`` one is checked once substituted)."""
    for i, entry in enumerate(entries or []):
        at = f"{where}.hostAliases[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{at}: expected a mapping with ip and hostnames")
        ip = str(entry.get("ip") or "")
        if "{{" not in ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise SpecError(f"{at}.ip: {ip!r} must be a valid IP address") from None
        for name in entry.get("hostnames") or []:
            text = str(name)
            if "{{" not in text and (len(text) > 253 or not _SUBDOMAIN.fullmatch(text)):
                raise SpecError(
                    f"{at}.hostnames: {text!r} must be a lowercase RFC 1123 subdomain "
                    "(lowercase letters, digits, '-' and '.')"
                )


def _check_pod_resources(value: Any, where: str) -> None:
    """validate.go validatePodResources: pod-level resources are ``cpu``, ``memory`` and
    ``hugepages-*`` only, without ``claims`` (anything else the API server would refuse at pod
    creation, mid-workflow, so Argo refuses it at submission)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping, got {_kind(value)}")
    if value.get("claims"):
        raise SpecError(f"{where}.claims is not supported for pod-level resources")
    for key in ("limits", "requests"):
        for name in value.get(key) or {}:
            if name not in ("cpu", "memory") and not str(name).startswith("hugepages-"):
                raise SpecError(
                    f'{where}: "{name}" is not a valid pod-level resource, only cpu, memory and '
                    "hugepages-* are supported"
                )


def _check_own_timeout(tmpl: Mapping[str, Any], kind: str, where: str) -> None:
    """validate.go validateTemplate: a ``timeout`` written on a template that is not a leaf
    (steps, dag, suspend) is refused, and so is a whole number on a leaf. Validation sees the templates as written, without
    ``templateDefaults``: a default ``timeout`` reaches every template at run time
    (operator.go mergedTemplateDefaultsInto), where it is a deadline for a pod and for a
    (Pending) suspend node, and no-op for a Steps or DAG node, which starts Running
    (checkTemplateTimeouts only fails a Pending node)."""
    timeout = tmpl.get("timeout")
    if timeout in (None, ""):
        return
    if kind in _ARGO_TYPES:
        raise SpecError(f"{where}: {_ARGO_TYPES[kind]} template doesn't support timeout field")
    text = str(timeout).strip()
    if _INTEGER.fullmatch(text):
        # "timeout should not be a whole number" (the controller would read it as seconds)
        raise SpecError(f"{where}: timeout {text!r}: invalid duration format (give a unit: 10s)")


def _inline_templates(tmpl: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    steps = [s for group in tmpl.get("steps") or [] for s in group or []]
    tasks = list((tmpl.get("dag") or {}).get("tasks") or [])
    for step in (*steps, *tasks):
        if isinstance(step, dict) and isinstance(step.get("inline"), dict):
            yield step["inline"]


def validate(doc: Document, notes: Notes) -> None:
    schema = CRON_DOCUMENT if doc.kind == "CronWorkflow" else DOCUMENT
    check(doc.body, schema, "", doc.source, notes)
    check_names(doc)
    spec = doc.spec
    _check_pod_resources(spec.get("podResources"), f"{doc.source}: spec.podResources")
    check_host_aliases(spec.get("hostAliases"), f"{doc.source}: spec")
    for t in spec.get("templates") or []:
        kinds = [k for k in KINDS if t.get(k) is not None]
        if len(kinds) != 1:
            raise SpecError(
                f"{doc.source}: spec.templates[{t.get('name')}]: a template needs exactly one of "
                f"{', '.join(KINDS)} (found {kinds or 'none'})"
            )
        where = f"{doc.source}: templates.{t.get('name')}"
        _check_own_timeout(t, kinds[0], f"{doc.source}: template {t.get('name')}")
        for holder in _inline_templates(t):
            inline_kinds = [k for k in KINDS if holder.get(k) is not None]
            if inline_kinds:
                _check_own_timeout(holder, inline_kinds[0], f"{where} (inline)")
        _check_pod_resources(t.get("podResources"), f"{where}.podResources")
        check_host_aliases(t.get("hostAliases"), where)
        if t.get("resourceClaims") and kinds[0] not in ("container", "script", "containerSet"):
            # validate.go validateTemplate: claims go on the pod a template runs
            raise SpecError(
                f"{where}.resourceClaims is not supported for {_ARGO_TYPES[kinds[0]]} templates, "
                "which do not create a pod"
            )
        if t.get("daemon"):
            # A daemon waits for its readiness probes (runner/daemons.py): they are not ignored.
            probes = f"{doc.source}: spec.templates[{t.get('name')}]."
            notes.ignored[:] = [
                n for n in notes.ignored if not (n.startswith(probes) and "readinessProbe" in n)
            ]


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
        _check_json_floats(body, path)
        docs.append(Document(str(body["kind"]), str(name), body, str(path)))
    return docs


def _check_json_floats(body: Any, path: Path) -> None:
    """YAML's .nan/.inf have no JSON form: the CLI and the API server marshal the object with
    encoding/json and refuse it before the controller sees it."""
    from argo_local.expr.golang import GoError, json_float

    for at, value in leaves(body, ""):
        if isinstance(value, float):
            try:
                json_float(value)
            except GoError as exc:
                raise SpecError(
                    f"{path}: {at.lstrip('.')}: {exc} (Argo cannot submit it)"
                ) from None


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
