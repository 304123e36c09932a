"""Argo's ``jsonpath(json, path)`` expression function (github.com/evilmonkeyinc/jsonpath v0.8).

Supported selectors (the library's README): ``$``, ``.key`` and ``['key']``, ``[n]`` (negative
from the end), ``*`` and ``[*]``, unions ``[0,1]`` and ``['a','b']``, ranges ``[start:end:step]``,
recursive ``..key``, ``.length``, and filters ``[?(...)]`` with ``@``/``$`` paths, literals,
``! && || == != < <= > >= =~ + - * / % **``. A path that names one thing gives that value (a
missing key is an error); a wildcard, union, range, filter or recursive step gives a list, in
which an element the rest of the path does not reach is left out. Script subscripts
``[(...)]`` are refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from argo_local.expr import golang
from argo_local.expr.depends import ExprError


class JsonPathError(ExprError):
    """A malformed selector, or a definite path that does not exist in the data."""


@dataclass(frozen=True)
class _Step:
    kind: str  # key, index, wildcard, union, range, filter, recursive, length
    arg: Any = None


_KEY_CHARS = re.compile(r"[^.\[\]\s]+")


def _parse(path: str) -> list[_Step]:
    text = path.strip()
    if not text.startswith("$"):
        raise JsonPathError(f"invalid JSONPath selector {path!r}: it must start with $")
    steps: list[_Step] = []
    i = 1
    while i < len(text):
        if text.startswith("..", i):
            i += 2
            if i < len(text) and text[i] == "[":
                steps.append(_Step("recursive"))
                continue
            m = _KEY_CHARS.match(text, i)
            if not m:
                raise JsonPathError(f"invalid JSONPath selector {path!r} at {i}")
            steps.append(_Step("recursive"))
            steps.append(_Step("wildcard") if m.group() == "*" else _Step("key", m.group()))
            i = m.end()
        elif text[i] == ".":
            m = _KEY_CHARS.match(text, i + 1)
            if not m:
                raise JsonPathError(f"invalid JSONPath selector {path!r} at {i}")
            word = m.group()
            steps.append(
                _Step("wildcard")
                if word == "*"
                else _Step("length")
                if word == "length"
                else _Step("key", word)
            )
            i = m.end()
        elif text[i] == "[":
            end = _closing(text, i, path)
            steps.append(_subscript(text[i + 1 : end].strip(), path))
            i = end + 1
        else:
            raise JsonPathError(f"invalid JSONPath selector {path!r} at {i}")
    return steps


def _closing(text: str, start: int, path: str) -> int:
    depth = 0
    quote = ""
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise JsonPathError(f"invalid JSONPath selector {path!r}: unclosed [")


def _unquote(part: str) -> str | None:
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", part[1:-1])
    return None


def _split_commas(body: str) -> list[str]:
    parts, quote, current = [], "", []
    for ch in body:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == ",":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def _subscript(body: str, path: str) -> _Step:
    if body == "*":
        return _Step("wildcard")
    if body.startswith("?(") and body.endswith(")"):
        return _Step("filter", _FilterParser(body[2:-1], path).parse())
    if body.startswith("("):
        raise JsonPathError(f"script subscripts in {path!r} are not supported by the local runner")
    parts = _split_commas(body)
    if len(parts) > 1:
        return _Step("union", [_key_or_index(p, path) for p in parts])
    single = parts[0]
    if ":" in single and _unquote(single) is None:
        bounds = single.split(":")
        if len(bounds) > 3:
            raise JsonPathError(f"invalid range {single!r} in {path!r}")
        numbers = [int(b) if b.strip() else None for b in bounds] + [None] * (3 - len(bounds))
        return _Step("range", numbers)
    key = _key_or_index(single, path)
    return _Step("index", key) if isinstance(key, int) else _Step("key", key)


def _key_or_index(part: str, path: str) -> str | int:
    quoted = _unquote(part)
    if quoted is not None:
        return quoted
    try:
        return int(part)
    except ValueError:
        raise JsonPathError(f"invalid subscript {part!r} in {path!r}") from None


def query(path: str, data: Any) -> Any:
    """The value (or list of values) ``path`` selects in ``data`` (parsed JSON)."""
    return _apply(_parse(path), data, data)


def _apply(steps: list[_Step], root: Any, current: Any) -> Any:
    if not steps:
        return current
    step, rest = steps[0], steps[1:]
    if step.kind == "key":
        if not isinstance(current, dict):
            raise JsonPathError(f"key: invalid token target, expected map got {_kind(current)}")
        if step.arg not in current:
            raise JsonPathError(f"key: invalid token key '{step.arg}' not found")
        return _apply(rest, root, current[step.arg])
    if step.kind == "length":
        if isinstance(current, dict) and "length" in current:
            return _apply(rest, root, current["length"])
        if isinstance(current, (list, dict, str)):
            return _apply(rest, root, float(len(current)))
        raise JsonPathError(f"length: invalid token target {_kind(current)}")
    if step.kind == "index":
        items = _elements(current, "index")
        index = step.arg + len(items) if step.arg < 0 else step.arg
        if not 0 <= index < len(items):
            raise JsonPathError(f"index: invalid token out of range: {step.arg}")
        return _apply(rest, root, items[index])
    if step.kind == "wildcard":
        return _each(_elements(current, "wildcard"), rest, root)
    if step.kind == "union":
        picked = []
        for key in step.arg:
            if isinstance(key, int):
                items = _elements(current, "union")
                index = key + len(items) if key < 0 else key
                if not 0 <= index < len(items):
                    raise JsonPathError(f"union: invalid token out of range: {key}")
                picked.append(items[index])
            else:
                if not isinstance(current, dict) or key not in current:
                    raise JsonPathError(f"union: invalid token key '{key}' not found")
                picked.append(current[key])
        return _each(picked, rest, root)
    if step.kind == "range":
        items = _elements(current, "range")
        start, stop, stride = step.arg
        selected = items[slice(start, stop)]
        if stride is not None and stride != 0:
            selected = selected[:: abs(stride)]
            if stride < 0:
                selected.reverse()
        return _each(selected, rest, root)
    if step.kind == "filter":
        items = _elements(current, "filter")
        matched = [x for x in items if _truthy(_eval(step.arg, root, x))]
        return _each(matched, rest, root)
    if step.kind == "recursive":
        return _each(list(_walk(current)), rest, root)
    raise JsonPathError(f"unknown step {step.kind}")


def _elements(current: Any, what: str) -> list[Any]:
    if isinstance(current, list):
        return current
    if isinstance(current, dict):
        return [current[k] for k in sorted(current)]
    raise JsonPathError(f"{what}: invalid token target, expected array or map got {_kind(current)}")


def _each(items: list[Any], rest: list[_Step], root: Any) -> list[Any]:
    out = []
    for item in items:
        try:
            value = _apply(rest, root, item)
        except JsonPathError:
            continue
        if value is not None:
            out.append(value)
    return out


def _walk(value: Any) -> Any:
    yield value
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _walk(value[k])
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return type(value).__name__


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return value is not None and value != ""


# ------------------------------------------------------------------ filters

_FILTER_TOKEN = re.compile(
    r"""\s*(?:
      (?P<path>[@$](?:\.\.?[^\s.\[\]()=!<>&|+*/%-]+|\[[^\]]*\]|\.\*)*)
    | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>\|\||&&|==|!=|<=|>=|=~|\*\*|not\s+in\b|in\b|[<>!()+\-*/%])
    | (?P<word>true|false|nil|null)\b
    )""",
    re.VERBOSE,
)


class _FilterParser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _FILTER_TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise JsonPathError(f"invalid filter {text!r} in {path!r} at {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.binary(0)
        if self.peek()[0] != "end":
            raise JsonPathError(f"invalid filter in {self.path!r}: unexpected {self.peek()[1]!r}")
        return node

    _LEVELS = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">=", "=~", "in", "not in"),
        ("+", "-"),
        ("*", "/", "%"),
        ("**",),
    )

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            kind, value = self.peek()
            op = re.sub(r"\s+", " ", value)
            if kind != "op" or op not in self._LEVELS[level]:
                return left
            self.take()
            left = ("op", op, left, self.binary(level + 1))

    def unary(self) -> Any:
        kind, value = self.take()
        if kind == "op" and value == "!":
            return ("not", self.unary())
        if kind == "op" and value == "-":
            return ("neg", self.unary())
        if kind == "op" and value == "(":
            node = self.binary(0)
            if self.take() != ("op", ")"):
                raise JsonPathError(f"invalid filter in {self.path!r}: unbalanced parentheses")
            return node
        if kind == "num":
            return ("lit", float(value))
        if kind == "str":
            return ("lit", _unquote(value))
        if kind == "word":
            return ("lit", {"true": True, "false": False}.get(value))
        if kind == "path":
            return ("path", value[0], _parse("$" + value[1:]) if len(value) > 1 else [])
        raise JsonPathError(f"invalid filter in {self.path!r}: unexpected {value!r}")


def _eval(node: Any, root: Any, current: Any) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "path":
        try:
            return _apply(node[2], root, root if node[1] == "$" else current)
        except JsonPathError:
            return None
    if tag == "not":
        return not _truthy(_eval(node[1], root, current))
    if tag == "neg":
        value = _eval(node[1], root, current)
        return -value if isinstance(value, float) else None
    _, op, lnode, rnode = node
    if op == "&&":
        return _truthy(_eval(lnode, root, current)) and _truthy(_eval(rnode, root, current))
    if op == "||":
        return _truthy(_eval(lnode, root, current)) or _truthy(_eval(rnode, root, current))
    a, b = _eval(lnode, root, current), _eval(rnode, root, current)
    if op == "==":
        return type(a) is type(b) and a == b
    if op == "!=":
        return not (type(a) is type(b) and a == b)
    if op in ("in", "not in"):
        found = isinstance(b, list) and any(type(x) is type(a) and x == a for x in b)
        return found if op == "in" else not found
    if op == "=~":
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        try:
            return golang.regex(b).search(a) is not None
        except golang.GoError as exc:
            raise JsonPathError(str(exc)) from None
    if not (isinstance(a, float) and isinstance(b, float)):
        return False if op in ("<", "<=", ">", ">=") else None
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else None
    if op == "%":
        return math.fmod(a, b) if b else None
    if op == "**":
        return math.pow(a, b)
    raise JsonPathError(f"unknown filter operator {op}")
