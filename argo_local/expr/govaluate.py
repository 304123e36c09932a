"""A step's or task's ``when``, and a metric's ``when``, as Argo evaluates them: govaluate.

Argo substitutes ``{{...}}`` first, then hands the text to ``shouldExecute``
(workflow/controller/steps.go), which parses it with github.com/Knetic/govaluate, turns every
bare word (a govaluate *variable*) into a string, and evaluates it with no parameters. The result
must be a boolean. What follows from govaluate (its MANUAL.md, parsing.go, lexerState.go,
stagePlanner.go, evaluationStage.go):

* Numbers are float64: ``1 == 1.0`` is true. A quoted literal is a string: ``'1' == '1.0'`` is
  false, and a number never equals a string (``reflect.DeepEqual``). A quoted literal that reads
  as a date (``'2024-01-31'``, RFC 3339, ...) becomes its Unix time, a number.
* A bare word (letters, digits, ``_``) is a string: ``heads == heads`` is true. A word with a dot
  is a struct accessor, and with no parameters it is an error (``No parameter 'a' found.``); a
  ``-`` is the minus operator, so ``my-value`` subtracts two strings, an error. ``1.2.3`` is a
  malformed number. Quote such values.
* Operators, weakest first: ``,`` (makes a list), ``?`` ``:`` ``??``, ``||``, ``&&``, comparators
  (``== != < <= > >= =~ !~ in``), ``& | ^``, ``<< >>``, ``+ -``, ``* / %``, ``**``, then the
  prefixes ``- ! ~``; all left-associative. ``<`` and friends need two numbers or two strings;
  ``+`` concatenates when either side is a string; ``in`` needs a parenthesised list
  (``x in ('a', 'b')``); ``=~`` matches a Go regular expression anywhere in the string.
* Operator symbols are read up to the next letter, digit, quote, bracket or space, so ``a ==-1``
  is the invalid token ``==-`` (Argo then hints to quote the value).
"""

from __future__ import annotations

import calendar
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argo_local.expr import golang
from argo_local.expr.depends import ExprError


class GovaluateError(ExprError):
    """The ``when`` text cannot be parsed or evaluated, as govaluate would refuse it."""


# Token kinds (govaluate's TokenKind).
PREFIX = "PREFIX"
NUMERIC = "NUMERIC"
BOOLEAN = "BOOLEAN"
STRING = "STRING"
PATTERN = "PATTERN"
TIME = "TIME"
VARIABLE = "VARIABLE"
FUNCTION = "FUNCTION"
ACCESSOR = "ACCESSOR"
COMPARATOR = "COMPARATOR"
LOGICALOP = "LOGICALOP"
MODIFIER = "MODIFIER"
CLAUSE = "CLAUSE"
CLAUSE_CLOSE = "CLAUSE_CLOSE"
TERNARY = "TERNARY"
SEPARATOR = "SEPARATOR"

_VALUES = (NUMERIC, BOOLEAN, STRING, TIME, VARIABLE)
# Which token kind may follow which (lexerState.go); the first entry is the start state.
_NEXT: dict[str | None, tuple[str, ...]] = {
    None: (PREFIX, NUMERIC, BOOLEAN, VARIABLE, PATTERN, FUNCTION, ACCESSOR, STRING, TIME, CLAUSE),
    CLAUSE: (
        PREFIX,
        NUMERIC,
        BOOLEAN,
        VARIABLE,
        PATTERN,
        FUNCTION,
        ACCESSOR,
        STRING,
        TIME,
        CLAUSE,
        CLAUSE_CLOSE,
    ),
    CLAUSE_CLOSE: (
        COMPARATOR,
        MODIFIER,
        NUMERIC,
        BOOLEAN,
        VARIABLE,
        STRING,
        PATTERN,
        TIME,
        CLAUSE,
        CLAUSE_CLOSE,
        LOGICALOP,
        TERNARY,
        SEPARATOR,
    ),
    NUMERIC: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR),
    BOOLEAN: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR),
    STRING: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR),
    TIME: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, SEPARATOR),
    PATTERN: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, SEPARATOR),
    VARIABLE: (MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR),
    MODIFIER: (
        PREFIX,
        NUMERIC,
        VARIABLE,
        FUNCTION,
        ACCESSOR,
        STRING,
        BOOLEAN,
        CLAUSE,
        CLAUSE_CLOSE,
    ),
    COMPARATOR: (
        PREFIX,
        NUMERIC,
        BOOLEAN,
        VARIABLE,
        FUNCTION,
        ACCESSOR,
        STRING,
        TIME,
        CLAUSE,
        CLAUSE_CLOSE,
        PATTERN,
    ),
    LOGICALOP: (
        PREFIX,
        NUMERIC,
        BOOLEAN,
        VARIABLE,
        FUNCTION,
        ACCESSOR,
        STRING,
        TIME,
        CLAUSE,
        CLAUSE_CLOSE,
    ),
    PREFIX: (NUMERIC, BOOLEAN, VARIABLE, FUNCTION, ACCESSOR, CLAUSE, CLAUSE_CLOSE),
    TERNARY: (
        PREFIX,
        NUMERIC,
        BOOLEAN,
        STRING,
        TIME,
        VARIABLE,
        FUNCTION,
        ACCESSOR,
        CLAUSE,
        SEPARATOR,
    ),
    FUNCTION: (CLAUSE,),
    ACCESSOR: (CLAUSE, MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR),
    SEPARATOR: (PREFIX, NUMERIC, BOOLEAN, STRING, TIME, VARIABLE, FUNCTION, ACCESSOR, CLAUSE),
}
# Kinds after which the expression may end (isEOF).
_CAN_END = {CLAUSE_CLOSE, NUMERIC, BOOLEAN, STRING, TIME, PATTERN, VARIABLE, ACCESSOR}

_PREFIXES = ("-", "!", "~")
_MODIFIERS = ("+", "-", "*", "/", "%", "**", "&", "|", "^", ">>", "<<")
_LOGICAL = ("&&", "||")
_COMPARATORS = ("==", "!=", ">", ">=", "<", "<=", "=~", "!~", "in")
_TERNARIES = ("?", ":", "??")


@dataclass
class Token:
    kind: str
    value: Any


def _is_digit(ch: str) -> bool:
    return ch.isdecimal()  # Go's unicode.IsDigit is the Nd category


def _is_numeric(ch: str) -> bool:
    return _is_digit(ch) or ch == "."


def _is_variable_char(ch: str) -> bool:
    return ch.isalpha() or _is_digit(ch) or ch in "_."


def _is_symbol_char(ch: str) -> bool:
    return not (_is_digit(ch) or ch.isalpha() or ch in "()[]'\"")


class _Stream:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def can_read(self) -> bool:
        return self.pos < len(self.text)

    def read(self) -> str:
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def read_until(
        self, cond: Callable[[str], bool], *, keep_space: bool, break_space: bool
    ) -> tuple[str, bool]:
        """govaluate's readUntilFalse: backslash escapes anything."""
        buf: list[str] = []
        while self.can_read():
            ch = self.read()
            if ch == "\\":
                if self.can_read():
                    buf.append(self.read())
                continue
            if ch.isspace():
                if break_space and buf:
                    return "".join(buf), True
                if not keep_space:
                    continue
            if cond(ch):
                buf.append(ch)
            else:
                self.pos -= 1
                return "".join(buf), True
        return "".join(buf), False

    def read_token(self, cond: Callable[[str], bool]) -> str:
        self.pos -= 1
        return self.read_until(cond, keep_space=True, break_space=True)[0]


def _lex(text: str) -> list[Token]:
    stream = _Stream(text)
    tokens: list[Token] = []
    state: str | None = None
    while stream.can_read():
        tok = _read_token(stream, state)
        if tok is None:
            break
        tokens.append(tok)
        state = tok.kind
    _check_balance(tokens)
    return tokens


def _read_token(stream: _Stream, state: str | None) -> Token | None:
    while stream.can_read():
        ch = stream.read()
        if ch.isspace():
            continue
        if _is_numeric(ch):
            if ch == "0" and stream.can_read():
                nxt = stream.read()
                if nxt == "x" and stream.can_read():
                    digits = stream.read_until(
                        lambda c: c in "0123456789abcdefABCDEF", keep_space=False, break_space=True
                    )[0]
                    try:
                        return Token(NUMERIC, float(int(digits, 16)))
                    except ValueError:
                        raise GovaluateError(
                            f"Unable to parse hex value '{digits}' to uint64"
                        ) from None
                stream.pos -= 1
            text = stream.read_token(_is_numeric)
            if not re.fullmatch(r"[0-9.]+", text):
                raise GovaluateError(f"Unable to parse numeric value '{text}' to float64")
            try:
                return Token(NUMERIC, float(text))
            except ValueError:
                raise GovaluateError(f"Unable to parse numeric value '{text}' to float64") from None
        if ch == ",":
            return Token(SEPARATOR, ",")
        if ch == "[":
            name, done = stream.read_until(lambda c: c != "]", keep_space=True, break_space=False)
            if not done:
                raise GovaluateError("Unclosed parameter bracket")
            stream.pos += 1
            return Token(VARIABLE, name)
        if ch.isalpha():
            word = stream.read_token(_is_variable_char)
            if word in ("true", "false"):
                return Token(BOOLEAN, word == "true")
            if word in ("in", "IN"):
                return Token(COMPARATOR, "in")
            if word.find(".") > 0:
                if word.endswith("."):
                    raise GovaluateError(f"Hanging accessor on token '{word}'")
                parts = word.split(".")
                for part in parts[1:]:
                    if part and part[0].upper() != part[0]:
                        raise GovaluateError(
                            f"Unable to access unexported field '{part}' in token '{word}'"
                        )
                return Token(ACCESSOR, parts)
            return Token(VARIABLE, word)
        if ch in "'\"":
            body, done = stream.read_until(
                lambda c: c not in "'\"", keep_space=True, break_space=False
            )
            if not done:
                raise GovaluateError("Unclosed string literal")
            stream.pos += 1
            when = _parse_time(body)
            if when is not None:
                return Token(TIME, when)
            return Token(STRING, body)
        if ch == "(":
            return Token(CLAUSE, "(")
        if ch == ")":
            return Token(CLAUSE_CLOSE, ")")
        symbol = stream.read_token(_is_symbol_char)
        if symbol in _PREFIXES and PREFIX in _NEXT[state]:
            return Token(PREFIX, symbol)
        if symbol in _MODIFIERS:
            return Token(MODIFIER, symbol)
        if symbol in _LOGICAL:
            return Token(LOGICALOP, symbol)
        if symbol in _COMPARATORS:
            return Token(COMPARATOR, symbol)
        if symbol in _TERNARIES:
            return Token(TERNARY, symbol)
        raise GovaluateError(f"Invalid token: '{symbol}'")
    return None


def _check_balance(tokens: list[Token]) -> None:
    depth = sum(1 if t.kind == CLAUSE else -1 if t.kind == CLAUSE_CLOSE else 0 for t in tokens)
    if depth:
        raise GovaluateError("Unbalanced parenthesis")


def _show(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return golang.sprint(value)
    if isinstance(value, re.Pattern):
        return value.pattern
    return golang.sprint(value)


def _check_syntax(tokens: list[Token]) -> None:
    state: str | None = None
    last: Token | None = None
    for tok in tokens:
        if tok.kind not in _NEXT[state]:
            if last is not None and last.kind == VARIABLE and tok.kind == CLAUSE:
                raise GovaluateError(f"Undefined function {last.value}")
            raise GovaluateError(
                f"Cannot transition token types from {state or 'UNKNOWN'} "
                f"[{_show(last.value) if last else '<nil>'}] to {tok.kind} [{_show(tok.value)}]"
            )
        state = tok.kind
        last = tok
    if state not in _CAN_END:
        raise GovaluateError("Unexpected end of expression")


def _optimize(tokens: list[Token]) -> None:
    """A constant string right of ``=~``/``!~`` is compiled once (optimizeTokens)."""
    for i, tok in enumerate(tokens[:-1]):
        if tok.kind == COMPARATOR and tok.value in ("=~", "!~") and tokens[i + 1].kind == STRING:
            try:
                tokens[i + 1] = Token(PATTERN, golang.regex(tokens[i + 1].value))
            except golang.GoError as exc:
                raise GovaluateError(str(exc)) from None


# ------------------------------------------------------------------ parsing

_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SEPARATOR, (",",)),
    (TERNARY, _TERNARIES),
    (LOGICALOP, ("||",)),
    (LOGICALOP, ("&&",)),
    (COMPARATOR, _COMPARATORS),
    (MODIFIER, ("&", "|", "^")),
    (MODIFIER, ("<<", ">>")),
    (MODIFIER, ("+", "-")),
    (MODIFIER, ("*", "/", "%")),
    (MODIFIER, ("**",)),
)

Node = tuple[Any, ...]  # ("lit", v) | ("param", name) | ("access", parts) | ("op", sym, l, r)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def level(self, n: int) -> Node | None:
        if n == len(_LEVELS):
            return self.value()
        kind, symbols = _LEVELS[n]
        left = self.level(n + 1)
        while True:
            tok = self.peek()
            if tok is None or tok.kind != kind or tok.value not in symbols:
                return left
            self.i += 1
            right = self.level(n + 1)
            left = ("op", tok.value, left, right)

    def value(self) -> Node | None:
        tok = self.peek()
        if tok is None:
            return None
        self.i += 1
        if tok.kind == CLAUSE:
            inner = self.level(0)
            self.i += 1  # the balance check guarantees the closing parenthesis
            return ("group", inner)
        if tok.kind == CLAUSE_CLOSE:
            self.i -= 1
            return None
        if tok.kind == VARIABLE:
            return ("param", tok.value)
        if tok.kind == ACCESSOR:
            return ("access", tok.value)
        if tok.kind == PREFIX:
            return ("op", "prefix" + tok.value, None, self.value())
        if tok.kind in (NUMERIC, STRING, PATTERN, BOOLEAN, TIME):
            return ("lit", tok.value)
        raise GovaluateError(f"Unable to plan token kind: '{tok.kind}', value: '{tok.value}'")


# ------------------------------------------------------------------ evaluation

_LOGICAL_FMT = "Value '{}' cannot be used with the logical operator '{}', it is not a bool"
_MODIFIER_FMT = "Value '{}' cannot be used with the modifier '{}', it is not a number"
_COMPARATOR_FMT = "Value '{}' cannot be used with the comparator '{}', it is not a number"
_TERNARY_FMT = "Value '{}' cannot be used with the ternary operator '{}', it is not a bool"
_PREFIX_FMT = "Value '{}' cannot be used with the prefix '{}'"
_SKIP = object()


def _is_num(v: Any) -> bool:
    return isinstance(v, float)


def _deep_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, re.Pattern):
        return a is b
    return bool(a == b)


def _int64(x: float) -> int:
    if math.isnan(x) or math.isinf(x):
        return -(2**63)
    n = int(x) & (2**64 - 1)
    return n - 2**64 if n >= 2**63 else n


def _uint64(x: float) -> int:
    if math.isnan(x) or math.isinf(x) or x < 0:
        return _int64(x) & (2**64 - 1)
    return int(x) & (2**64 - 1)


def _arith(sym: str, a: float, b: float) -> float:
    try:
        if sym == "-":
            return a - b
        if sym == "*":
            return a * b
        if sym == "/":
            if b == 0:
                return (
                    math.nan
                    if a == 0 or math.isnan(a)
                    else math.copysign(math.inf, a) * (math.copysign(1, b))
                )
            return a / b
        if sym == "%":
            return math.nan if b == 0 or math.isinf(a) else math.fmod(a, b)
        if sym == "**":
            try:
                return math.pow(a, b)
            except OverflowError:
                return math.inf
            except ValueError:
                return math.nan
        if sym == "&":
            return float(_int64(a) & _int64(b))
        if sym == "|":
            return float(_int64(a) | _int64(b))
        if sym == "^":
            return float(_int64(a) ^ _int64(b))
        if sym == "<<":
            shift = _uint64(b)
            return float((_uint64(a) << shift) & (2**64 - 1)) if shift < 64 else 0.0
        if sym == ">>":
            shift = _uint64(b)
            return float(_uint64(a) >> shift) if shift < 64 else 0.0
    except OverflowError:
        return math.inf
    raise GovaluateError(f"unknown operator {sym}")


def _evaluate(node: Node | None) -> Any:
    if node is None:
        return None
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "group":
        return _evaluate(node[1])
    if tag == "param":
        raise GovaluateError(f"No parameter '{node[1]}' found.")
    if tag == "access":
        raise GovaluateError(f"No parameter '{node[1][0]}' found.")
    _, sym, lnode, rnode = node
    if sym.startswith("prefix"):
        value = _evaluate(rnode)
        op = sym[len("prefix") :]
        if op == "!":
            if not isinstance(value, bool):
                raise GovaluateError(_PREFIX_FMT.format(_show(value), "!"))
            return not value
        if not _is_num(value):
            raise GovaluateError(_PREFIX_FMT.format(_show(value), op))
        return -value if op == "-" else float(~_int64(value))
    left = _evaluate(lnode)
    # Short circuits (evaluateStage): the right side is not evaluated, nor type-checked.
    if sym == "&&" and left is False:
        return False
    if sym == "||" and left is True:
        return True
    if sym == "??" and left is not None:
        return left
    right: Any = _SKIP
    if not ((sym == "?" and left is False) or (sym == ":" and left is not None)):
        right = _evaluate(rnode)
    if sym in ("&&", "||"):
        for v in (left, right):
            if not isinstance(v, bool):
                raise GovaluateError(_LOGICAL_FMT.format(_show(v), sym))
        return left and right if sym == "&&" else left or right
    if sym == "?":
        if not isinstance(left, bool):
            raise GovaluateError(_TERNARY_FMT.format(_show(left), "?"))
        return right if left else None
    if sym in (":", "??"):
        return left if left is not None else right
    if sym == ",":
        return [*left, right] if isinstance(left, list) else [left, right]
    if sym == "==":
        return _deep_equal(left, right)
    if sym == "!=":
        return not _deep_equal(left, right)
    if sym in ("<", "<=", ">", ">="):
        if not (
            (_is_num(left) and _is_num(right)) or (isinstance(left, str) and isinstance(right, str))
        ):
            raise GovaluateError(_COMPARATOR_FMT.format(_show(left), sym))
        if isinstance(left, str):
            a, b = left.encode(), right.encode()  # Go compares strings bytewise
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[sym]
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[sym]
    if sym in ("=~", "!~"):
        if not isinstance(left, str):
            raise GovaluateError(_COMPARATOR_FMT.format(_show(left), sym))
        if isinstance(right, str):
            try:
                pattern = golang.regex(right)
            except golang.GoError as exc:
                raise GovaluateError(f"Unable to compile regexp pattern '{right}': {exc}") from None
        elif isinstance(right, re.Pattern):
            pattern = right
        else:
            raise GovaluateError(_COMPARATOR_FMT.format(_show(right), sym))
        found = pattern.search(left) is not None
        return found if sym == "=~" else not found
    if sym == "in":
        if not isinstance(right, list):
            raise GovaluateError(_COMPARATOR_FMT.format(_show(right), "in"))
        for item in right:
            if type(item) is not type(left):
                continue  # Go's == on interfaces: different dynamic types are unequal
            if isinstance(item, list):
                raise GovaluateError("runtime error: comparing uncomparable type []interface {}")
            if item == left:
                return True
        return False
    if sym == "+":
        if _is_num(left) and _is_num(right):
            return left + right
        if not isinstance(left, str) and not isinstance(right, str):
            raise GovaluateError(_MODIFIER_FMT.format(_show(left), "+"))
        return _show(left) + _show(right)
    for v in (left, right):
        if not _is_num(v):
            raise GovaluateError(_MODIFIER_FMT.format(_show(v), sym))
    return _arith(sym, left, right)


def should_execute(when: str) -> bool:
    """Argo's ``shouldExecute``: an empty ``when`` runs; otherwise the text must evaluate to a
    boolean, bare words being strings."""
    if when == "":
        return True
    try:
        tokens = _lex(when)
        _check_syntax(tokens)
        _optimize(tokens)
    except GovaluateError as exc:
        hint = (
            ' (hint: try wrapping the affected expression in quotes ("))'
            if "Invalid token" in str(exc)
            else ""
        )
        raise GovaluateError(f"Invalid 'when' expression '{when}': {exc}{hint}") from None
    # Argo's trick: govaluate variables (bare words) become string literals.
    tokens = [Token(STRING, t.value) if t.kind == VARIABLE else t for t in tokens]
    try:
        _check_syntax(tokens)
        _optimize(tokens)
    except GovaluateError as exc:
        raise GovaluateError(f"Failed to parse 'when' expression '{when}': {exc}") from None
    parser = _Parser(tokens)
    tree = parser.level(0)
    try:
        result = _evaluate(tree)
    except GovaluateError as exc:
        raise GovaluateError(f"Failed to evaluate 'when' expresion '{when}': {exc}") from None
    if not isinstance(result, bool):
        raise GovaluateError(f"Expected boolean evaluation for '{when}'. Got {_show(result)}")
    return result


def evaluate(text: str) -> Any:
    """The value of a govaluate expression with no parameters (bare words are not strings);
    for tests and tools."""
    tokens = _lex(text)
    _check_syntax(tokens)
    _optimize(tokens)
    return _evaluate(_Parser(tokens).level(0))


# ------------------------------------------------------------------ date literals

_DAYS = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MON = "(?P<mon>" + "|".join(_MONTHS) + ")"
_FRAC = r"(?:[.,](?P<frac>\d+))?"
_HMS = r"(?P<H>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})" + _FRAC
_DATE = r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
# The layouts govaluate tries (tryParseTime), as regular expressions over Go's parsing rules.
_TIME_LAYOUTS = [
    re.compile(p)
    for p in (
        rf"{_DAYS} {_MON} (?: ?(?P<d>\d{{1,2}})) {_HMS} (?P<y>\d{{4}})",  # ANSIC
        rf"{_DAYS} {_MON} (?: ?(?P<d>\d{{1,2}})) {_HMS} (?P<zone>[A-Z]{{3,5}}) (?P<y>\d{{4}})",
        rf"{_DAYS} {_MON} (?P<d>\d{{2}}) {_HMS} (?P<off>[+-]\d{{4}}) (?P<y>\d{{4}})",  # RubyDate
        r"(?P<h12>\d{1,2}):(?P<M>\d{2})(?P<ampm>AM|PM)",  # Kitchen
        rf"{_DATE}T{_HMS}(?P<off>Z|[+-]\d{{2}}:\d{{2}})",  # RFC3339 (and Nano)
        _DATE,
        rf"{_DATE} (?P<H>\d{{1,2}}):(?P<M>\d{{2}})",
        rf"{_DATE} {_HMS}",
        rf"{_DATE} {_HMS}(?P<off>[+-]\d{{2}}:\d{{2}})",
        rf"{_DATE}T(?P<H>\d{{1,2}})(?P<off>Z|[+-]\d{{4}})",
        rf"{_DATE}T(?P<H>\d{{1,2}}):(?P<M>\d{{2}})(?P<off>Z|[+-]\d{{4}})",
        rf"{_DATE}T{_HMS}(?P<off>Z|[+-]\d{{4}})",
    )
]


def _parse_time(text: str) -> float | None:
    """The Unix time of a quoted literal that reads as a date, in the local zone unless it has
    an offset; None if it is not a date."""
    for layout in _TIME_LAYOUTS:
        m = layout.fullmatch(text)
        if m is None:
            continue
        g = m.groupdict()
        year = int(g.get("y") or 0)
        month = _MONTHS.index(g["mon"]) + 1 if g.get("mon") else int(g.get("m") or 1)
        day = int(g.get("d") or 1)
        minute, second = int(g.get("M") or 0), int(g.get("S") or 0)
        if g.get("h12") is not None:
            hour = int(g["h12"])
            if hour > 12:
                continue
            hour = hour % 12 + (12 if g["ampm"] == "PM" else 0)
        else:
            hour = int(g.get("H") or 0)
        if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
            continue
        days_in_month = calendar.monthrange(year or 2000, month)[1]
        if not 1 <= day <= days_in_month:
            continue
        seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
        off = g.get("off")
        if off is None:
            zone = g.get("zone")
            if zone in ("UTC", "GMT"):
                return float(seconds)
            return float(seconds - _local_offset(year, month, day, hour, minute, second))
        if off == "Z":
            return float(seconds)
        digits = off[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        return float(seconds - offset if off[0] == "+" else seconds + offset)
    return None


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _local_offset(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    if year < 1900:
        return -time.timezone
    utc_guess = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return int(time.localtime(utc_guess).tm_gmtoff)
