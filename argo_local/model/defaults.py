"""``spec.templateDefaults`` merged into a template, as the controller merges them
(operator.go ``mergedTemplateDefaultsInto``).

The defaults are the base and the template the patch of a Kubernetes strategic merge: a
mapping merges key by key, a value the template sets wins, and a list replaces the default's
list unless the Go type marks it ``patchStrategy:"merge"``, in which case the items merge by
their ``patchMergeKey`` (parameters and volumes by ``name``, ``env`` by ``name``,
``volumeMounts`` by ``mountPath``). The type-specific defaults (``container``, ``script``,
``steps``, ``dag``) only reach templates of that type.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

KINDS = ("container", "script", "steps", "dag")

# The list fields Argo's and Kubernetes' Go types merge by key (workflow_types.go and
# core/v1 types.go ``patchMergeKey`` tags), by their path from the template.
_MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("volumes",): "name",
    ("inputs", "parameters"): "name",
    ("outputs", "parameters"): "name",
    ("dag", "tasks"): "name",
    ("container", "env"): "name",
    ("script", "env"): "name",
    ("container", "volumeMounts"): "mountPath",
    ("script", "volumeMounts"): "mountPath",
}


def apply(defaults: Mapping[str, Any] | None, tmpl: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``tmpl`` with ``defaults`` merged under it (the template's values win)."""
    if not defaults:
        return dict(tmpl)
    kind = next((k for k in KINDS if tmpl.get(k) is not None), None)
    base = {k: v for k, v in defaults.items() if k not in KINDS or k == kind}
    # ``name`` identifies the template; a default one would rename every template.
    base.pop("name", None)
    return _merge(copy.deepcopy(base), tmpl, ())


def _merge(base: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if patch is None:
        return base
    if isinstance(base, dict) and isinstance(patch, Mapping):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                continue  # an unset field leaves the default, as Go's omitempty does
            out[key] = _merge(base.get(key), value, (*path, str(key)))
        return out
    key = _MERGE_KEYS.get(path)
    if key is not None and isinstance(base, list) and isinstance(patch, list):
        merged = [dict(item) if isinstance(item, dict) else item for item in base]
        index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
        for item in patch:
            at = index.get(item.get(key)) if isinstance(item, Mapping) else None
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = _merge(merged[at], item, path)
        return merged
    return copy.deepcopy(patch)


def effective(spec: Mapping[str, Any], tmpl: Mapping[str, Any]) -> dict[str, Any]:
    """The template as the controller runs it: ``templateDefaults`` merged in, then
    ``spec.retryStrategy`` when it has none of its own (operator.go ``retryStrategy``: the
    workflow's strategy applies to every template without one, steps and DAGs included)."""
    out = apply(spec.get("templateDefaults"), tmpl)
    if out.get("retryStrategy") is None and spec.get("retryStrategy") is not None:
        out["retryStrategy"] = copy.deepcopy(spec["retryStrategy"])
    return out
