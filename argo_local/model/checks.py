"""Checks of a document's fields before anything runs, beside the wiring between templates
(:mod:`wiring`): what the runner can run of a readiness probe; and the workflow metadata
variables the checks resolve tags against."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from argo_local.model.spec import Document, SpecError

PROBE_KINDS = ("exec", "httpGet", "tcpSocket")


def check_probe(probe: Any, where: str) -> None:
    """A readiness probe this runner can run, or a SpecError naming the field."""
    if not isinstance(probe, Mapping):
        raise SpecError(f"{where}: expected a mapping")
    kinds = [k for k in PROBE_KINDS if probe.get(k) is not None]
    if "grpc" in probe:
        raise SpecError(f"{where}.grpc: gRPC readiness probes are not run locally")
    if len(kinds) != 1:
        raise SpecError(f"{where}: needs exactly one of {', '.join(PROBE_KINDS)}")
    for key in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold"):
        if key in probe and not _is_number(probe[key]):
            raise SpecError(f"{where}.{key}: expected a number of seconds, got {probe[key]!r}")
    if kinds[0] == "exec" and not isinstance(probe["exec"].get("command"), list):
        raise SpecError(f"{where}.exec.command: expected a list")
    if kinds[0] in ("httpGet", "tcpSocket") and probe[kinds[0]].get("port") is None:
        raise SpecError(f"{where}.{kinds[0]}.port: required")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metadata_scope(doc: Document, spec: Mapping[str, Any], created: str) -> dict[str, str]:
    """docs/variables.md's workflow metadata variables: ``workflow.labels.<NAME>`` and
    ``workflow.annotations.<NAME>`` (and ``.json``), ``workflow.mainEntrypoint``,
    ``workflow.creationTimestamp.RFC3339``, and for a CronWorkflow ``workflow.scheduledTime``,
    which a local run of it, started now, takes as its creation time."""
    meta = doc.body.get("metadata") or {}
    scope = {
        "workflow.mainEntrypoint": str(spec.get("entrypoint") or ""),
        "workflow.creationTimestamp.RFC3339": created,
    }
    for kind in ("labels", "annotations"):
        values = {str(k): str(v) for k, v in (meta.get(kind) or {}).items()}
        for k, v in values.items():
            scope[f"workflow.{kind}.{k}"] = v
        scope[f"workflow.{kind}.json"] = json.dumps(values, sort_keys=True, separators=(",", ":"))
    if doc.kind == "CronWorkflow":
        scope["workflow.scheduledTime"] = created
    return scope
