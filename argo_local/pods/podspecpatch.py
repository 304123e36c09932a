"""``podSpecPatch``: the workflow's and the template's patches applied to a pod's containers.

The controller (workflow/controller/workflowpod.go createWorkflowPod, processPodSpecPatch)
substitutes each patch string, the workflow's first then the template's, with the global
parameters and ``{{pod.name}}``; util.ApplyPodSpecPatch reads each as YAML or JSON, checks it
is a PodSpec and merges it into the pod spec as a Kubernetes strategic merge patch. Locally a
pod is processes, so the fields that mean something here are applied: a container's ``env``,
``command``, ``args`` and ``workingDir``, for the main container (named ``main``), a container
set's containers, init containers and sidecars, each found by name. Everything else in the
patch (resources, scheduling, security, a container the pod does not have locally, such as
the executor's ``wait``) is listed, so the run says once what it ignored.

The merge follows the strategic merge patch rules for these fields: ``containers``,
``initContainers`` and a container's ``env`` are merged by ``name`` (new entries appended, an
entry's ``$patch: delete`` removes it, a ``null`` field removes that field); ``command`` and
``args`` are replaced whole, ``workingDir`` set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from argo_local.expr import params
from argo_local.expr.params import ParamError

LOCAL_FIELDS = ("env", "command", "args", "workingDir")
_LISTS = ("containers", "initContainers")
FAILED = "Error applying PodSpecPatch"
"""workflowpod.go: the node's message when a patch cannot be applied (errors.Wrap keeps only
this text as the error's message)."""
UNSUBSTITUTED = "Failed to substitute the PodSpecPatch variables"


class PatchError(ParamError):
    """A patch Argo cannot apply; ``detail`` says why (the node's message is Argo's)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def patches(
    spec: Mapping[str, Any], tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str
) -> list[str]:
    """The pod's patch strings, substituted: the workflow's, then the template's."""
    out = []
    for owner, raw in (("spec", spec.get("podSpecPatch")), ("template", tmpl.get("podSpecPatch"))):
        if raw in (None, ""):
            continue
        try:
            out.append(str(params.substitute(str(raw), scope, f"{where}.podSpecPatch")))
        except ParamError as exc:
            raise PatchError(UNSUBSTITUTED, f"{owner} podSpecPatch: {exc}") from None
    return out


def apply(
    texts: list[str],
    containers: list[tuple[str, dict[str, Any]]],
    init_containers: list[tuple[str, dict[str, Any]]],
) -> list[str]:
    """Merge each patch of ``texts`` into the named container dicts (changed in place); the
    patch's fields ignored locally, each once, in the order met."""
    ignored: list[str] = []
    pod = {"containers": containers, "initContainers": init_containers}
    for text in texts:
        patch = _parse(text)
        for key, value in patch.items():
            if key in _LISTS:
                _merge_containers(pod[key], value, key, ignored)
            else:
                _note(ignored, key)
    return ignored


def _parse(text: str) -> dict[str, Any]:
    """A patch string as ApplyPodSpecPatch reads it: YAML (JSON being YAML), a PodSpec."""
    try:
        patch = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PatchError(FAILED, f"not YAML or JSON: {' '.join(str(exc).split())}") from None
    if patch is None:
        return {}
    if not isinstance(patch, dict):
        raise PatchError(FAILED, f"invalid podSpecPatch {text!r}: not a PodSpec (a mapping)")
    return patch


def _merge_containers(
    existing: list[tuple[str, dict[str, Any]]], patch: Any, field: str, ignored: list[str]
) -> None:
    if patch is None:
        _note(ignored, f"{field}: null")
        return
    if not isinstance(patch, list):
        raise PatchError(FAILED, f"{field} must be a list of containers")
    by_name = dict(existing)
    for item in patch:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise PatchError(FAILED, f"every entry of {field} needs a name (its merge key)")
        name = item["name"]
        target = by_name.get(name)
        if target is None:
            _note(ignored, f"{field}[{name}] (no such container locally)")
            continue
        if item.get("$patch") is not None:
            _note(ignored, f"{field}[{name}].$patch: {item['$patch']}")
            continue
        for key, value in item.items():
            if key == "name":
                continue
            if key == "env":
                _merge_env(target, value, f"{field}[{name}].env")
            elif key in ("command", "args"):
                _set_list(target, key, value, f"{field}[{name}].{key}")
            elif key == "workingDir":
                if value is None:
                    target.pop(key, None)
                elif not isinstance(value, str):
                    raise PatchError(FAILED, f"{field}[{name}].workingDir must be a string")
                else:
                    target[key] = value
            else:
                _note(ignored, f"{field}[{name}].{key}")


def _set_list(target: dict[str, Any], key: str, value: Any, where: str) -> None:
    """``command`` and ``args`` are atomic lists: the patch's replaces the container's."""
    if value is None:
        target.pop(key, None)
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PatchError(FAILED, f"{where} must be a list of strings")
    target[key] = list(value)


def _merge_env(target: dict[str, Any], patch: Any, where: str) -> None:
    """``env`` merged by name: an entry updates the variable of its name (field by field, a
    null field removed) or is appended; ``$patch: delete`` removes the variable."""
    if patch is None:
        target.pop("env", None)
        return
    if not isinstance(patch, list):
        raise PatchError(FAILED, f"{where} must be a list")
    env = [dict(e) for e in target.get("env") or []]
    for item in patch:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise PatchError(FAILED, f"every entry of {where} needs a name (its merge key)")
        at = next((i for i, e in enumerate(env) if e.get("name") == item["name"]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del env[at]
            continue
        if "value" in item and item["value"] is not None and not isinstance(item["value"], str):
            raise PatchError(FAILED, f"{where}[{item['name']}].value must be a string")
        if at is None:
            env.append({k: v for k, v in item.items() if v is not None and k != "$patch"})
            continue
        for key, value in item.items():
            if value is None:
                env[at].pop(key, None)
            elif key != "$patch":
                env[at][key] = value
    target["env"] = env


def _note(ignored: list[str], text: str) -> None:
    if text not in ignored:
        ignored.append(text)
