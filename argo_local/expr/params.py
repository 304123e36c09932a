"""Argo's ``{{...}}`` substitution, loop expansion and output aggregation.

Values in a scope are strings, as in Argo. Items and aggregated outputs are rendered as the
controller renders them with Go's ``encoding/json``: compact, ``<``, ``>`` and ``&`` escaped,
decoded maps with sorted keys, raw JSON (a withParam item, a stdout) with its own key order.

A ``{{= expression }}`` tag (the ``=`` right after the braces) is an expr-lang expression over
the same scope (util/template/expression_template.go), evaluated by argo_local/expr/exprlang.py:
its value replaces the tag, a string as it is and anything else as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from argo_local.expr import gojson
from argo_local.expr.golang import json_float, json_string

TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
EXPRESSION_TAG = re.compile(r"\{\{=(.*?)\}\}", re.DOTALL)
"""``{{=...}}`` up to the first ``}}``, as Argo's fasttemplate cuts tags."""


class ParamError(ValueError):
    """A ``{{...}}`` reference, loop or parameter that cannot be resolved."""


class Absent(str):
    """The output of a Skipped or Omitted producer that declares no ``valueFrom.default``: in a
    scope it is *absent*, not empty (docs/variables.md, "Outputs of Skipped and Omitted Nodes").
    A simple tag naming it is an error; an argument that is only that tag lets the consumer's
    input default apply; an expression sees ``nil``."""


ABSENT_ARGUMENT = "__argo-internal.absent-optional-output__"
"""What an argument that was only a reference to an absent output becomes before substitution
(the controller's ``common.AbsentOptionalArgumentValue``): the input's own default applies."""


def absent_message(tag: str) -> str:
    return (
        f"unable to substitute {{{{{tag}}}}}: output is an absent optional "
        "(skipped/omitted node with no default)"
    )


def absent_reference(value: Any, scope: Mapping[str, str]) -> bool:
    """Whether ``value`` is one whole ``{{tag}}`` naming an absent output (scope.absentOptionalRef)."""
    if not isinstance(value, str) or not value.startswith("{{") or not value.endswith("}}"):
        return False
    key = value[2:-2].strip()
    if "{{" in key or "}}" in key:
        return False
    return isinstance(scope.get(key), Absent)


def render(value: Any) -> str:
    """An item or parameter value as Argo prints it into a template."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


ARGO_PREFIXES = ("item.", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
"""The variable prefixes Argo resolves (common.go GlobalVarValidWorkflowVariablePrefix); any other
``{{...}}`` is left for another template language (docs/walk-through/
custom-template-variable-reference.md)."""


def argo_variable(tag: str) -> bool:
    """Whether Argo's validation checks ``tag`` (validate.go resolveAllVariables skips a tag
    without one of :data:`ARGO_PREFIXES`)."""
    return tag.strip().startswith(ARGO_PREFIXES)


def substitute(value: Any, scope: Mapping[str, str], where: str, *, strict: bool = False) -> Any:
    """Replace every ``{{name}}`` and ``{{= expression }}`` in strings of ``value``.

    An unknown name with an Argo prefix (``inputs.``, ``steps.``...) or a failing expression is
    an error (the wiring checks refuse those before running). An unknown name without one is
    written back as it is, as the controller's substitution does (simple_template.go
    simpleReplaceStrict: "allow unresolved ... just write the same string back"); ``strict``
    makes it an error too, as a metric's substitution (operator.go, ``Replace(..., false)``)."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            key = m.group(1)
            if key in scope:
                if isinstance(scope[key], Absent):
                    raise ParamError(f"{where}: {absent_message(key)}")
                return scope[key]
            if not strict and not argo_variable(key):
                return m.group(0)
            # simple_template.go replace: Argo's own words for a tag nothing resolves
            raise ParamError(f"{where}: failed to resolve {{{{{key}}}}}")

        if "{{=" not in value:
            return TAG.sub(one, value)
        # One pass, as Argo's: an expression's value is not substituted again.
        parts: list[str] = []
        pos = 0
        env: dict[str, Any] | None = None
        for m in EXPRESSION_TAG.finditer(value):
            parts.append(TAG.sub(one, value[pos : m.start()]))
            if env is None:
                from argo_local.expr import exprlang

                env = exprlang.environment(scope)
            parts.append(expression(m.group(1), env, where))
            pos = m.end()
        parts.append(TAG.sub(one, value[pos:]))
        return "".join(parts)
    if isinstance(value, list):
        return [substitute(v, scope, where, strict=strict) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope, where, strict=strict) for k, v in value.items()}
    return value


def expression(text: str, env: Mapping[str, Any], where: str) -> str:
    """The text of one ``{{=text}}`` tag in ``env`` (an exprlang environment)."""
    from argo_local.expr import exprlang
    from argo_local.expr.depends import ExprError

    try:
        return exprlang.render(exprlang.evaluate(text, env))
    except ExprError as exc:
        raise ParamError(f"{where}: {{{{={text}}}}}: {exc}") from None


_ATOI = re.compile(r"[+-]?[0-9]+")


GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: Any) -> float:
    """A duration in seconds: a number, or a Go duration string (``10s``, ``2m``, ``1h30m``);
    ValueError otherwise."""
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if not GO_DURATION.fullmatch(text):
        raise ValueError(f"bad duration {value!r}")
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def integer(value: Any, what: str) -> int:
    """An integer field written as a number or a string of one (Kubernetes' IntOrString)."""
    return _int(value, what)


def duration(value: Any) -> float:
    """An Argo duration: a number of seconds or a Go duration string (``10s``, ``2m``, ``1h30m``)."""
    try:
        return seconds(value)
    except ValueError:
        raise ParamError(f"bad duration {value!r}") from None


def _int(value: Any, what: str) -> int:
    # Go's strconv.Atoi, as the controller parses withSequence: no spaces, no underscores.
    text = render(value)
    if not _ATOI.fullmatch(text):
        raise ParamError(f"{what}: expected an integer, got {value!r}")
    return int(text)


def sequence(spec: Mapping[str, Any], where: str) -> list[str]:
    """``withSequence`` as the controller expands it (``expandSequence``): ``start`` (default 0)
    to ``end`` inclusive, either direction, or ``count`` items from ``start`` (a count of 0 is
    no items; a negative one counts down, as ``end = start + count - 1`` does there); every item
    is a string, ``format`` (default ``%d``, so no zero padding) applied to each number."""
    start = _int(spec.get("start", 0), f"{where}.start")
    if "count" in spec and "end" in spec:
        raise ParamError(f"{where}: only one of count or end can be defined in withSequence")
    if "end" in spec:
        end = _int(spec["end"], f"{where}.end")
    elif "count" in spec:
        count = _int(spec["count"], f"{where}.count")
        if count == 0:
            return []
        end = start + count - 1
    else:
        raise ParamError(f"{where}: neither end nor count was specified in withSequence")
    numbers = range(start, end + 1) if start <= end else range(start, end - 1, -1)
    fmt = str(spec.get("format") or "%d")
    try:
        return [fmt % n for n in numbers]
    except (TypeError, ValueError) as exc:
        raise ParamError(f"{where}.format {fmt!r}: {exc}") from None


def parse_list(text: str, where: str) -> list[Any]:
    """``withParam``: the substituted value must be a JSON array. Its items stay raw JSON, as
    the controller's ``[]wfv1.Item`` keeps them: numbers as written, maps in their key order."""
    # steps.go expandStepGroup, dag.go expandTask: json.Unmarshal into []wfv1.Item, its error
    # after the value; JSON null is no items (a nil slice).
    shown = text.strip()
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    head = f"{where}: withParam value could not be parsed as a JSON list: {shown}"
    try:
        value = loads_raw(text)
    except ValueError as exc:
        raise ParamError(f"{head}: {exc}") from None
    if value is None:
        return []
    if not isinstance(value, list):
        kind = "string" if isinstance(value, str) else "object" if isinstance(value, dict) else ""
        kind = kind or ("bool" if isinstance(value, bool) else "number")
        raise ParamError(
            f"{head}: json: cannot unmarshal {kind} into Go value of type []v1alpha1.Item"
        )
    return value


# ---------------------------------------------------------------- Go's encoding/json


class RawNumber(str):
    """A JSON number kept as written (Go's ``json.RawMessage`` inside an Item)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def loads_raw(text: str) -> Any:
    """JSON as Go reads it into ``wfv1.Item``: numbers kept as written, NaN/Infinity refused."""
    try:
        return json.loads(
            text, parse_int=RawNumber, parse_float=RawNumber, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:
        raise ValueError(gojson.error_of(text, exc)) from None


def go_json(value: Any, *, sort_keys: bool = True) -> str:
    """``json.Marshal``: compact, HTML characters escaped, non-ASCII kept; maps decoded from JSON
    have their keys sorted (``sort_keys``), raw ones keep their order. Strings and floats are
    written by :mod:`golang`'s encoders, as :func:`golang.marshal` writes them, but an Item's raw
    values (``_Raw``, ``RawNumber``) are kept as written and a negative zero is ``0`` (Go
    writes ``-0``)."""

    def enc(v: Any) -> str:
        if isinstance(v, _Raw):
            return v.text
        if isinstance(v, RawNumber):
            return str.__str__(v)
        if isinstance(v, str):
            return json_string(v)
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return "0" if v == 0 else json_float(v)
        if isinstance(v, dict):
            keys = sorted(v) if sort_keys else list(v)
            return "{" + ",".join(f"{json_string(str(k))}:{enc(v[k])}" for k in keys) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(enc(x) for x in v) + "]"
        return json_string(str(v))

    return enc(value)


def _fix(text: str) -> str:
    # util/json.Fix: Item.String() undoes json.Marshal's HTML escaping.
    return text.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")


def item_string(value: Any) -> str:
    """``wfv1.Item.String()``: the item's JSON, a string's without its quotes (still escaped)."""
    text = go_json(value, sort_keys=False)
    if text.startswith('"'):
        text = text[1:-1]
    return _fix(text)


def sort_item(value: Any) -> Any:
    """A withItems item as the controller reads it back from the cluster: the API server stores
    a Workflow as a JSON map, so every map in it has its keys sorted."""
    if isinstance(value, dict):
        return {k: sort_item(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_item(v) for v in value]
    return value


def item_scope(item: Any) -> dict[str, str]:
    """``{{item}}`` and ``{{item.KEY}}`` as ``processItem`` (workflow/controller/operator.go)
    fills them: a string as it is, a number or bool as written, a map as JSON with its keys
    sorted (nested maps keep their order) and one ``item.KEY`` per top-level key, a list as JSON.
    There is no ``item.a.b``: the controller resolves only top-level keys."""
    if isinstance(item, str) and not isinstance(item, RawNumber):
        return {"item": item}
    if isinstance(item, dict):
        scope = {f"item.{k}": item_string(v) for k, v in item.items()}
        scope["item"] = go_json({k: _Raw(v) for k, v in item.items()})
        return scope
    if isinstance(item, list) or item is None:
        return {"item": go_json(_raw_tree(item))}
    return {"item": item_string(item)}


class _Raw:
    """A value that ``go_json`` writes without sorting its maps (a ``json.RawMessage``)."""

    def __init__(self, value: Any) -> None:
        self.text = go_json(value, sort_keys=False)


def _raw_tree(value: Any) -> Any:
    return [_Raw(v) for v in value] if isinstance(value, list) else value


def loop_label(index: int, item: Any) -> str:
    """The ``(i:desc)`` a loop child's name ends with (``generateNodeName``): a map as its sorted
    ``key:value`` pairs joined by commas, a list as ``[a b]``, parentheses dropped."""
    if isinstance(item, dict):
        desc = ",".join(sorted(f"{k}:{item_string(v)}" for k, v in item.items()))
    elif isinstance(item, list):
        desc = "[" + " ".join(item_string(v) for v in item) + "]"
    elif item is None:
        desc = "[]"
    else:
        desc = item_string(item)
    return f"({index}:{desc.replace('(', '').replace(')', '')})"


def _float64(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"cannot unmarshal number {text} into Go value of type float64")
    return value


def aggregate(values: list[str]) -> str:
    """A looped output parameter (``aggregatedJSONValueList``, workflow/controller/operator.go):
    the values decoded only when every one is a JSON object or list, else the list of strings,
    so ``1`` and ``3`` aggregate to ``["1","3"]``."""
    decoded: list[Any] = []
    for v in values:
        try:
            # Go decodes every number into a float64 (and refuses one out of its range)
            parsed = json.loads(
                v, parse_int=_float64, parse_float=_float64, parse_constant=_no_constant
            )
        except ValueError:
            return go_json(values)
        if not isinstance(parsed, (dict, list)):
            return go_json(values)
        decoded.append(parsed)
    return go_json(decoded)


def aggregate_results(values: list[str]) -> str:
    """A loop's ``outputs.result`` (``processAggregateNodeOutputs``): each stdout read as a raw
    JSON value, so numbers stay numbers and a map keeps its key order; a stdout that is not
    JSON raises ParamError, as the controller's ``json.Unmarshal`` fails the template."""
    items: list[Any] = []
    for i, v in enumerate(values):
        try:
            items.append(_Raw(loads_raw(v)))
        except ValueError as exc:
            raise ParamError(
                f"outputs.result of loop item {i} is not JSON ({exc}): {v[:80]!r}; Argo cannot "
                "aggregate it"
            ) from None
    return go_json(items)
