"""Argo's ``{{...}}`` substitution, loop expansion and output aggregation.

Values in a scope are strings, as in Argo; items and aggregated outputs are
rendered as compact JSON with sorted keys, like the controller's Go ``json.Marshal``.

A ``{{= expression }}`` tag (the ``=`` right after the braces) is an expr-lang expression over
the same scope (util/template/expression_template.go), evaluated by workers/runner/exprlang.py:
its value replaces the tag, a string as it is and anything else as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
EXPRESSION_TAG = re.compile(r"\{\{=(.*?)\}\}", re.DOTALL)
"""``{{=...}}`` up to the first ``}}``, as Argo's fasttemplate cuts tags."""


class ParamError(ValueError):
    """A ``{{...}}`` reference, loop or parameter that cannot be resolved."""


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


def substitute(value: Any, scope: Mapping[str, str], where: str) -> Any:
    """Replace every ``{{name}}`` and ``{{= expression }}`` in strings of ``value``; an unknown
    name or a failing expression is an error."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            key = m.group(1)
            if key in scope:
                return scope[key]
            raise ParamError(f"{where}: cannot resolve {{{{{key}}}}}")

        if "{{=" not in value:
            return TAG.sub(one, value)
        # One pass, as Argo's: an expression's value is not substituted again.
        parts: list[str] = []
        pos = 0
        env: dict[str, Any] | None = None
        for m in EXPRESSION_TAG.finditer(value):
            parts.append(TAG.sub(one, value[pos : m.start()]))
            if env is None:
                from workers.runner import exprlang

                env = exprlang.environment(scope)
            parts.append(expression(m.group(1), env, where))
            pos = m.end()
        parts.append(TAG.sub(one, value[pos:]))
        return "".join(parts)
    if isinstance(value, list):
        return [substitute(v, scope, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope, where) for k, v in value.items()}
    return value


def expression(text: str, env: Mapping[str, Any], where: str) -> str:
    """The text of one ``{{=text}}`` tag in ``env`` (an exprlang environment)."""
    from workers.runner import exprlang
    from workers.runner.expr import ExprError

    try:
        return exprlang.render(exprlang.evaluate(text, env))
    except ExprError as exc:
        raise ParamError(f"{where}: {{{{={text}}}}}: {exc}") from None


def item_scope(item: Any) -> dict[str, str]:
    """``{{item}}`` and ``{{item.field}}`` (nested fields joined by dots) for one loop item."""
    scope = {"item": render(item)}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                scope[f"{prefix}.{k}"] = render(sub)
                walk(f"{prefix}.{k}", sub)

    walk("item", item)
    return scope


_ATOI = re.compile(r"[+-]?[0-9]+")


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
    """``withParam``: the substituted value must be a JSON array."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamError(f"{where}: withParam value is not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(value, list):
        raise ParamError(f"{where}: withParam value is not a JSON list: {text[:200]!r}")
    return value


def aggregate(values: list[str]) -> str:
    """Looped outputs as one JSON array: parsed values if every one is JSON, else the strings."""
    parsed: list[Any] = []
    for v in values:
        try:
            parsed.append(json.loads(v))
        except (json.JSONDecodeError, TypeError):
            return json.dumps(values, separators=(",", ":"))
    return json.dumps(parsed, separators=(",", ":"))


def aggregate_results(values: list[str]) -> str:
    """Looped ``outputs.result``: each stdout parsed as JSON when it is JSON, else kept as a string."""
    out: list[Any] = []
    for v in values:
        try:
            out.append(json.loads(v))
        except (json.JSONDecodeError, TypeError):
            out.append(v)
    return json.dumps(out, separators=(",", ":"))


def loop_label(index: int, item: Any) -> str:
    text = render(item)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"({index}:{text})"
