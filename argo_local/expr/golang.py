"""Go's printing of values and Go's regular expressions, as Argo's controller produces them.

Argo renders an expression's result with Go: ``fmt.Sprintf("%v")`` for an output parameter's
``valueFrom.expression`` and expr-lang's ``string()``, ``encoding/json`` for a ``{{=...}}`` tag,
``toJson`` and ``toJSON``. Go prints floats differently from Python (``1e+06`` for ``%v`` of a
million, ``1000000`` in JSON, ``3`` for ``3.0``), sorts map keys, and escapes ``<>&`` in JSON, so
a local run prints what a cluster prints only if these rules are followed.

Go's ``regexp`` (RE2) differs from Python's ``re``: ``\\d``, ``\\w``, ``\\s`` are ASCII-only, ``$``
is the end of the text (not before a final newline), ``\\z`` ends the text, and lookaround and
backreferences are rejected. :func:`regex` translates a Go pattern to an equivalent Python one
and rejects what Go rejects.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from argo_local.expr import gojson


class GoError(ValueError):
    """A value Go cannot print (NaN in JSON) or a pattern Go's regexp rejects."""


def _digits(x: float) -> tuple[str, int]:
    """The shortest decimal digits of ``abs(x)`` and the position of the decimal point."""
    _sign, digits, exp = Decimal(repr(abs(x))).as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    assert isinstance(exp, int)
    if not text:
        return "0", 1
    stripped = text.rstrip("0")
    exp += len(text) - len(stripped)
    return stripped, len(stripped) + exp


def _e(x: float, digits: str, dp: int, two_digit_exp: bool = True) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = dp - 1
    sign = "-" if exp < 0 else "+"
    number = f"{abs(exp):02d}" if two_digit_exp else str(abs(exp))
    return ("-" if x < 0 else "") + f"{mantissa}e{sign}{number}"


def _f(x: float, digits: str, dp: int) -> str:
    if dp <= 0:
        text = "0." + "0" * -dp + digits
    elif dp >= len(digits):
        text = digits + "0" * (dp - len(digits))
    else:
        text = digits[:dp] + "." + digits[dp:]
    return ("-" if x < 0 else "") + text


def format_float(x: float) -> str:
    """``fmt.Sprint(x)`` of a float64: ``%g`` with the shortest digits, in exponent form from
    1e+06 up and below 1e-04 (strconv.FormatFloat(x, 'g', -1, 64))."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    digits, dp = _digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _e(x, digits, dp)
    return _f(x, digits, dp)


def json_float(x: float) -> str:
    """A float64 as ``encoding/json`` writes it: plain decimals between 1e-6 and 1e21, else an
    exponent without a leading zero (``1e-07``, ``1e+21``)."""
    if math.isnan(x) or math.isinf(x):
        raise GoError(f"json: unsupported value: {format_float(x)}")
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    digits, dp = _digits(x)
    if abs(x) < 1e-6 or abs(x) >= 1e21:
        return _e(x, digits, dp, two_digit_exp=False)
    return _f(x, digits, dp)


def sprint(value: Any) -> str:
    """``fmt.Sprintf("%v", value)`` of a JSON-like value (maps as ``map[k:v]``, lists as
    ``[a b]``, nil as ``<nil>``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{sprint(k)}:{sprint(v)}" for k, v in items) + "]"
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    from argo_local.expr import gotime

    if isinstance(value, gotime.Time):
        try:
            return value.string()
        except gotime.TimeError as exc:
            raise GoError(str(exc)) from None
    return str(value)


# What encoding/json escapes beyond what Python's json module does (its HTMLEscape).
_JSON_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_JSON_HTML_RE = re.compile("[<>&\u2028\u2029]")


def json_string(text: str) -> str:
    """A string as ``encoding/json`` writes it: quoted, control characters, ``<>&`` and
    U+2028/U+2029 escaped, other non-ASCII kept."""
    # json's own encoder (in C) escapes the rest as Go does, in the same forms (\n, \u001f):
    # a withParam of 10,000 items passes here once per item and key.
    text = encode_basestring(text)
    return text.translate(_JSON_HTML) if _JSON_HTML_RE.search(text) else text


def marshal(value: Any, indent: str | None = None, _level: int = 0) -> str:
    """``json.Marshal`` (or ``json.MarshalIndent(v, "", indent)``): sorted keys, Go floats,
    ``<>&`` escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, bytes):
        import base64

        return '"' + base64.b64encode(value).decode() + '"'
    if isinstance(value, (list, tuple, dict)):
        if isinstance(value, dict):
            items = [
                json_string(str(k))
                + (": " if indent is not None else ":")
                + marshal(v, indent, _level + 1)
                for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            ]
            open_, close = "{", "}"
        else:
            items = [marshal(v, indent, _level + 1) for v in value]
            open_, close = "[", "]"
        if not items:
            return open_ + close
        if indent is None:
            return open_ + ",".join(items) + close
        inner = "\n" + indent * (_level + 1)
        return open_ + inner + ("," + inner).join(items) + "\n" + indent * _level + close
    from argo_local.expr import gotime

    if isinstance(value, gotime.Time):
        try:
            return value.json()
        except gotime.TimeError as exc:
            raise GoError(f"json: error calling MarshalJSON for type time.Time: {exc}") from None
    raise GoError(f"json: unsupported type: {type(value).__name__}")


def from_json(text: str) -> Any:
    """``json.Unmarshal`` into ``any``: every number a float64."""
    import json

    try:
        return json.loads(text, parse_int=float, parse_constant=_no_constant)
    except (ValueError, TypeError, RecursionError) as exc:
        # expr's fromJSON and sprig's fromJson return json.Unmarshal's error as it is
        raise GoError(gojson.error_of(text, exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


# ------------------------------------------------------------------ regular expressions

_CLASS_ESCAPES = {
    "d": "0-9",
    "w": "0-9A-Za-z_",
    "s": "\\t\\n\\f\\r ",
}
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_CACHE: dict[str, re.Pattern[str]] = {}


def regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) pattern with Go's meaning, or raise :class:`GoError` as Go would."""
    cached = _CACHE.get(pattern)
    if cached is not None:
        return cached
    out: list[str] = []
    i = 0
    n = len(pattern)
    multiline = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "dws":
                out.append(f"[{_CLASS_ESCAPES[nxt]}]")
            elif nxt in "DWS":
                out.append(f"[^{_CLASS_ESCAPES[nxt.lower()]}]")
            elif nxt == "z":
                out.append(r"\Z")
            elif nxt == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
                continue
            elif nxt.isdigit() and nxt != "0":
                raise GoError(
                    f"invalid escape sequence: \\{nxt} (Go's regexp has no backreferences)"
                )
            elif nxt in "pP":
                raise GoError(f"unicode classes \\{nxt} are not supported by the local runner")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[":
            j, text = _char_class(pattern, i)
            out.append(text)
            i = j
            continue
        if ch == "(" and pattern.startswith("(?", i):
            m = re.match(r"\(\?([imsU-]*)(\)|:)", pattern[i:])
            if m is None:
                if pattern.startswith("(?P<", i) or pattern.startswith("(?<", i):
                    out.append("(?P<")
                    i += 4 if pattern.startswith("(?P<", i) else 3
                    continue
                raise GoError(f"invalid or unsupported Perl syntax: {pattern[i : i + 3]!r}")
            flags = m.group(1)
            if "U" in flags:
                raise GoError("the U (ungreedy) flag is not supported by the local runner")
            if "m" in flags.split("-")[0]:
                multiline = True
            if m.group(2) == ")" and out:
                raise GoError(
                    "flags after the start of a pattern are not supported by the local runner"
                )
            out.append(m.group(0))
            i += len(m.group(0))
            continue
        if ch == "$" and not multiline:
            out.append(r"(?!(?s:.))")  # Go's $ is the end of the text, not before a final newline
            i += 1
            continue
        out.append(ch)
        i += 1
    try:
        compiled = re.compile("".join(out))
    except re.error as exc:
        raise GoError(f"error parsing regexp: {exc}: {pattern!r}") from None
    _CACHE[pattern] = compiled
    return compiled


def _char_class(pattern: str, start: int) -> tuple[int, str]:
    i = start + 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            out.append("]")
            return i + 1, "".join(out)
        first = False
        if ch == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end > 0:
                name = pattern[i + 2 : end]
                negate = name.startswith("^")
                body = _POSIX.get(name.lstrip("^"))
                if body is None:
                    raise GoError(f"invalid character class range: [:{name}:]")
                if negate:
                    raise GoError("negated POSIX classes are not supported by the local runner")
                out.append(body)
                i = end + 2
                continue
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "dws":
                out.append(_CLASS_ESCAPES[nxt])
            elif nxt in "DWS":
                raise GoError("negated classes inside [] are not supported by the local runner")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[":
            out.append("\\[")
            i += 1
            continue
        out.append(ch)
        i += 1
    raise GoError(f"error parsing regexp: missing closing ]: {pattern[start:]!r}")


def type_name(value: Any) -> str:
    """A value's Go type as expr-lang's error messages print it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if callable(value):
        return "func"
    from argo_local.expr import gotime

    if isinstance(value, gotime.Time):
        return "time.Time"
    return type(value).__name__
