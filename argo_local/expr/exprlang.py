"""expr-lang (github.com/expr-lang/expr v1.17), the language of Argo's other expressions.

Argo evaluates ``retryStrategy.expression``, an output parameter's ``valueFrom.expression`` and
every ``{{= ... }}`` tag with expr-lang, over an environment built by ``util/expr/env``
(``GetFuncMap``): the scope's dotted names expanded into nested maps (``inputs.parameters.x`` is
``inputs.parameters['x']``; a hyphenated name needs the brackets), plus ``asInt``, ``asFloat``,
``jsonpath``, ``toJson`` and the ``sprig`` function map (argo_local/expr/sprig.py).

expr-lang is typed, and Argo's variables are strings: ``"1" == 1`` is false, so
``lastRetry.exitCode == 75`` never holds and ``asInt(lastRetry.exitCode) == 75`` does. Numbers are
``int`` or ``float``; ``/`` always gives a float; ``+`` adds numbers or joins two strings and
nothing else. An unknown name is an error before anything runs (a missing map key is nil).

Supported (docs/language-definition.md): literals (integers in any base, floats, quoted and
backtick strings, arrays, maps, ``nil``), ``+ - * / % ** ^``, comparisons (chained ``a < b < c``),
``not ! and && or ||``, ``in``/``not in``, ``matches``, ``contains``, ``startsWith``, ``endsWith``,
``..``, ``?:``, ``??``, ``if {} else {}``, ``.``, ``?.``, ``[i]``, ``[a:b]``, ``|`` (pipe),
``let x = ...;``, ``$env``, predicates with ``#``, ``#index``, ``#acc`` and ``.field``, and the
builtins listed in :data:`BUILTINS`. Dates (``now``, ``date``, ``duration``, ``timezone``),
bytes literals and method calls are refused with a clear error. Nothing here calls ``eval``.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from argo_local.expr import golang
from argo_local.expr.depends import ExprError


class ExprLangError(ExprError):
    """An expr-lang expression that does not parse, names something unknown, or fails."""


# ------------------------------------------------------------------ lexer

EOF, IDENT, NUMBER, STRING, OPERATOR, BRACKET = "EOF", "Ident", "Number", "String", "Op", "Bracket"
_WORD_OPERATORS = ("in", "or", "and", "matches", "contains", "startsWith", "endsWith", "let")
_NEGATABLE = ("in", "matches", "contains", "startsWith", "endsWith")


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    pos: int

    def is_(self, kind: str, value: str | None = None) -> bool:
        return self.kind == kind and (value is None or self.value == value)


def _alnum(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch in "_$"


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def _unescape(body: str, quote: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ExprLangError("unable to unescape string")
        esc = body[i + 1]
        if esc in _SIMPLE_ESCAPES:
            if esc in "'\"" and esc != quote:
                raise ExprLangError(f"invalid escape sequence \\{esc}")
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i + 2 : i + 2 + size]
            try:
                code = int(digits, 16)
                if len(digits) != size:
                    raise ValueError
                out.append(chr(code))
            except ValueError:
                raise ExprLangError(f"invalid escape sequence \\{esc}{digits}") from None
            i += 2 + size
        elif esc in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise ExprLangError(f"invalid octal escape \\{digits}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ExprLangError(f"invalid escape sequence \\{esc}")
    return "".join(out).replace("\r\n", "\n").replace("\r", "\n")


def tokenize(text: str) -> list[Token]:
    """expr-lang's lexer (parser/lexer/state.go)."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        start = i
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ExprLangError(f"literal not terminated at {start}")
            tokens.append(Token(STRING, _unescape(text[i + 1 : j], ch), start))
            i = j + 1
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise ExprLangError(f"literal not terminated at {start}")
            tokens.append(Token(STRING, text[i + 1 : j], start))
            i = j + 1
            continue
        if ch in "bB" and i + 1 < n and text[i + 1] in "'\"":
            raise ExprLangError("bytes literals are not supported by the local runner")
        if ch.isdecimal() or (ch == "." and i + 1 < n and text[i + 1].isdecimal()):
            i = _scan_number(text, i)
            tokens.append(Token(NUMBER, text[start:i], start))
            continue
        if ch == "?":
            i += 2 if i + 1 < n and text[i + 1] in ".?" else 1
        elif ch == "/":
            if text.startswith("//", i):
                end = text.find("\n", i)
                i = n if end < 0 else end + 1
                continue
            if text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    raise ExprLangError("unclosed comment")
                i = end + 2
                continue
            i += 1
        elif ch == "#":
            i += 1
            tokens.append(Token(OPERATOR, "#", start))
            j = i
            while j < n and _alnum(text[j]):
                j += 1
            if j > i:
                tokens.append(Token(IDENT, text[i:j], i))
            i = j
            continue
        elif ch in "|:":
            i += 2 if i + 1 < n and text[i + 1] == ch else 1
        elif ch in "([{)]}":
            tokens.append(Token(BRACKET, ch, start))
            i += 1
            continue
        elif ch in ",;%+-^":
            i += 1
        elif ch in "&!=*<>":
            i += 2 if i + 1 < n and text[i + 1] in "&=*" else 1
        elif ch == ".":
            i += 2 if i + 1 < n and text[i + 1] == "." else 1
        elif _alnum(ch):
            j = i
            while j < n and _alnum(text[j]):
                j += 1
            word = text[i:j]
            i = j
            if word == "not":
                tokens.append(Token(OPERATOR, "not", start))
                k = i
                while k < n and text[k].isspace():
                    k += 1
                m = k
                while m < n and _alnum(text[m]):
                    m += 1
                if text[k:m] in _NEGATABLE:
                    tokens.append(Token(OPERATOR, text[k:m], k))
                    i = m
                continue
            kind = OPERATOR if word in (*_WORD_OPERATORS, "if", "else") else IDENT
            tokens.append(Token(kind, word, start))
            continue
        else:
            raise ExprLangError(f"unrecognized character: {ch!r} at {start}")
        tokens.append(Token(OPERATOR, text[start:i], start))
    tokens.append(Token(EOF, "", n))
    return tokens


def _scan_number(text: str, i: int) -> int:
    n = len(text)
    digits = "0123456789_"
    if text[i] == "0" and i + 1 < n and text[i + 1] in "xXoObB":
        digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[text[i + 1].lower()]
        i += 2
    while i < n and text[i] in digits:
        i += 1
    if i < n and text[i] == "." and not (i + 1 < n and text[i + 1] == "."):
        i += 1
        while i < n and text[i] in digits:
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        while i < n and text[i] in digits:
            i += 1
    if i < n and _alnum(text[i]):
        raise ExprLangError(f"bad number syntax: {text[: i + 1]!r}")
    return i


# ------------------------------------------------------------------ parser

Node = tuple[Any, ...]

_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_BINARY = {
    "|": (0, "L"),
    "or": (10, "L"),
    "||": (10, "L"),
    "and": (15, "L"),
    "&&": (15, "L"),
    "==": (20, "L"),
    "!=": (20, "L"),
    "<": (20, "L"),
    ">": (20, "L"),
    ">=": (20, "L"),
    "<=": (20, "L"),
    "in": (20, "L"),
    "matches": (20, "L"),
    "contains": (20, "L"),
    "startsWith": (20, "L"),
    "endsWith": (20, "L"),
    "..": (25, "L"),
    "+": (30, "L"),
    "-": (30, "L"),
    "*": (60, "L"),
    "/": (60, "L"),
    "%": (60, "L"),
    "**": (100, "R"),
    "^": (100, "R"),
    "??": (500, "L"),
}
_COMPARISONS = ("<", ">", ">=", "<=")
# Builtins that take a predicate (parser.go): argument kinds, "p" predicate, "?" optional.
_PREDICATE_ARGS = {
    "all": ("e", "p"),
    "none": ("e", "p"),
    "any": ("e", "p"),
    "one": ("e", "p"),
    "filter": ("e", "p"),
    "map": ("e", "p"),
    "count": ("e", "p?"),
    "sum": ("e", "p?"),
    "find": ("e", "p"),
    "findIndex": ("e", "p"),
    "findLast": ("e", "p"),
    "findLastIndex": ("e", "p"),
    "groupBy": ("e", "p"),
    "sortBy": ("e", "p", "e?"),
    "reduce": ("e", "p", "e?"),
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0  # predicate nesting: '#' and '.field' are allowed inside

    @property
    def current(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> None:
        if self.i < len(self.tokens) - 1:
            self.i += 1

    def error(self, message: str) -> ExprLangError:
        tok = self.current
        where = f"at {tok.value!r}" if tok.kind != EOF else "at the end"
        return ExprLangError(f"{message} ({where} of {self.text!r})")

    def expect(self, kind: str, value: str | None = None) -> Token:
        tok = self.current
        if not tok.is_(kind, value):
            raise self.error(f"expected {value or kind}, found {tok.value or 'end'!r}")
        self.next()
        return tok

    def parse(self) -> Node:
        node = self.sequence()
        if not self.current.is_(EOF):
            raise self.error(f"unexpected token {self.current.value!r}")
        return node

    def sequence(self) -> Node:
        nodes = [self.expression(0)]
        while self.current.is_(OPERATOR, ";"):
            self.next()
            if self.current.is_(EOF):
                break
            nodes.append(self.expression(0))
        return nodes[0] if len(nodes) == 1 else ("seq", nodes)

    def expression(self, precedence: int) -> Node:
        if precedence == 0 and self.current.is_(OPERATOR, "let"):
            self.next()
            name = self.expect(IDENT).value
            self.expect(OPERATOR, "=")
            value = self.expression(0)
            self.expect(OPERATOR, ";")
            return ("let", name, value, self.sequence())
        if precedence == 0 and self.current.is_(OPERATOR, "if"):
            return self.conditional_if()
        left = self.primary()
        prev = ""
        while self.current.kind == OPERATOR:
            op = self.current
            negate = False
            if op.value == "not":
                follow = self.tokens[self.i + 1]
                if follow.kind == OPERATOR and follow.value in _NEGATABLE:
                    if _BINARY[follow.value][0] < precedence:
                        break
                    self.next()
                    op = follow
                    negate = True
                else:
                    raise self.error("unexpected token 'not'")
            info = _BINARY.get(op.value)
            if info is None or info[0] < precedence:
                break
            self.next()
            if op.value == "|":
                ident = self.expect(IDENT)
                left = self.call(ident.value, [left])
                prev = op.value
                continue
            if prev == "??" and op.value != "??":
                raise ExprLangError(
                    f"Operator ({op.value}) and coalesce expressions (??) cannot be mixed. "
                    "Wrap either by parentheses."
                )
            if op.value in _COMPARISONS:
                left = self.comparison(left, op.value, info[0])
            else:
                right = self.expression(info[0] + 1 if info[1] == "L" else info[0])
                left = ("binary", op.value, left, right)
                if negate:
                    left = ("unary", "not", left)
            prev = op.value
        if precedence == 0:
            left = self.ternary(left)
        return left

    def comparison(self, left: Node, op: str, precedence: int) -> Node:
        root: Node | None = None
        while True:
            right = self.expression(precedence + 1)
            node = ("binary", op, left, right)
            root = node if root is None else ("binary", "&&", root, node)
            left = right
            if not (self.current.kind == OPERATOR and self.current.value in _COMPARISONS):
                return root
            op = self.current.value
            self.next()

    def conditional_if(self) -> Node:
        self.next()
        cond = self.expression(0)
        self.expect(BRACKET, "{")
        yes = self.sequence()
        self.expect(BRACKET, "}")
        self.expect(OPERATOR, "else")
        if self.current.is_(OPERATOR, "if"):
            no = self.conditional_if()
        else:
            self.expect(BRACKET, "{")
            no = self.sequence()
            self.expect(BRACKET, "}")
        return ("cond", cond, yes, no)

    def ternary(self, node: Node) -> Node:
        while self.current.is_(OPERATOR, "?"):
            self.next()
            if self.current.is_(OPERATOR, ":"):
                self.next()
                node = ("cond", node, node, self.expression(0))
            else:
                yes = self.expression(0)
                self.expect(OPERATOR, ":")
                node = ("cond", node, yes, self.expression(0))
        return node

    def primary(self) -> Node:
        tok = self.current
        if tok.kind == OPERATOR and tok.value in _UNARY:
            self.next()
            return self.postfix(("unary", tok.value, self.expression(_UNARY[tok.value])))
        if tok.is_(BRACKET, "("):
            self.next()
            node = self.sequence()
            self.expect(BRACKET, ")")
            return self.postfix(node)
        if self.depth > 0 and tok.kind == OPERATOR and tok.value in ("#", "."):
            name = ""
            if tok.value == "#":
                self.next()
                if self.current.kind == IDENT:
                    name = self.current.value
                    self.next()
            return self.postfix(("pointer", name))
        if tok.is_(OPERATOR, "::"):
            raise self.error("'::' calls are not supported by the local runner")
        return self.secondary()

    def secondary(self) -> Node:
        tok = self.current
        node: Node
        if tok.kind == IDENT:
            self.next()
            if tok.value in ("true", "false"):
                return ("lit", tok.value == "true")
            if tok.value == "nil":
                return ("lit", None)
            if self.current.is_(BRACKET, "("):
                node = self.call(tok.value, [])
            else:
                node = ("ident", tok.value)
        elif tok.kind == NUMBER:
            self.next()
            return ("lit", _number(tok.value))
        elif tok.kind == STRING:
            self.next()
            node = ("lit", tok.value)
        elif tok.is_(BRACKET, "["):
            node = self.array()
        elif tok.is_(BRACKET, "{"):
            node = self.map()
        else:
            raise self.error(f"unexpected token {tok.value or 'end'!r}")
        return self.postfix(node)

    def call(self, name: str, args: list[Node]) -> Node:
        kinds = _PREDICATE_ARGS.get(name)
        if kinds is None:
            node: Node = ("call", ("ident", name), self.arguments(args))
            return ("builtin", name, node[2]) if name in BUILTINS or name in _REFUSED else node
        self.expect(BRACKET, "(")
        for i, kind in enumerate(kinds[len(args) :]):
            if self.current.is_(BRACKET, ")"):
                if kind.endswith("?"):
                    break
                raise self.error(f"expected at least {len(kinds)} arguments")
            if i > 0:
                self.expect(OPERATOR, ",")
            args.append(self.predicate() if kind.startswith("p") else self.expression(0))
        if self.current.is_(OPERATOR, ","):
            self.next()
        self.expect(BRACKET, ")")
        return ("builtin", name, args)

    def arguments(self, args: list[Node]) -> list[Node]:
        offset = len(args)
        self.expect(BRACKET, "(")
        while not self.current.is_(BRACKET, ")"):
            if len(args) > offset:
                self.expect(OPERATOR, ",")
            if self.current.is_(BRACKET, ")"):
                break
            args.append(self.expression(0))
        self.expect(BRACKET, ")")
        return args

    def predicate(self) -> Node:
        braces = self.current.is_(BRACKET, "{")
        if braces:
            self.next()
        self.depth += 1
        try:
            node = self.sequence() if braces else self.expression(0)
        finally:
            self.depth -= 1
        if braces:
            self.expect(BRACKET, "}")
        return ("predicate", node)

    def array(self) -> Node:
        self.expect(BRACKET, "[")
        nodes: list[Node] = []
        while not self.current.is_(BRACKET, "]"):
            if nodes:
                self.expect(OPERATOR, ",")
                if self.current.is_(BRACKET, "]"):
                    break
            nodes.append(self.expression(0))
        self.expect(BRACKET, "]")
        return ("array", nodes)

    def map(self) -> Node:
        self.expect(BRACKET, "{")
        pairs: list[tuple[Node, Node]] = []
        while not self.current.is_(BRACKET, "}"):
            if pairs:
                self.expect(OPERATOR, ",")
                if self.current.is_(BRACKET, "}"):
                    break
            tok = self.current
            key: Node
            if tok.kind in (NUMBER, STRING, IDENT):
                key = ("lit", tok.value)
                self.next()
            elif tok.is_(BRACKET, "("):
                key = self.expression(0)
            else:
                raise self.error(
                    "a map key must be a quoted string, a number, a identifier, or an "
                    "expression enclosed in parentheses"
                )
            self.expect(OPERATOR, ":")
            pairs.append((key, self.expression(0)))
        self.expect(BRACKET, "}")
        return ("map", pairs)

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.current
            if tok.kind == OPERATOR and tok.value in (".", "?."):
                optional = tok.value == "?."
                self.next()
                if optional and self.current.is_(BRACKET, "["):
                    node = self.index(node, optional=True)
                    continue
                prop = self.current
                if prop.kind != IDENT and not (prop.kind == OPERATOR and prop.value.isalpha()):
                    raise self.error("expected name")
                self.next()
                if self.current.is_(BRACKET, "("):
                    node = (
                        "call",
                        ("member", node, ("lit", prop.value), optional),
                        self.arguments([]),
                    )
                else:
                    node = ("member", node, ("lit", prop.value), optional)
            elif tok.is_(BRACKET, "["):
                node = self.index(node, optional=False)
            else:
                return node

    def index(self, node: Node, *, optional: bool) -> Node:
        self.expect(BRACKET, "[")
        if self.current.is_(OPERATOR, ":"):
            self.next()
            to = None if self.current.is_(BRACKET, "]") else self.expression(0)
            self.expect(BRACKET, "]")
            return ("slice", node, None, to)
        start = self.expression(0)
        if self.current.is_(OPERATOR, ":"):
            self.next()
            to = None if self.current.is_(BRACKET, "]") else self.expression(0)
            self.expect(BRACKET, "]")
            return ("slice", node, start, to)
        self.expect(BRACKET, "]")
        return ("member", node, start, optional)


def _number(text: str) -> int | float:
    value = text.replace("_", "")
    lower = value.lower()
    try:
        if lower.startswith(("0x", "0o", "0b")):
            number = int(value, 0)
        elif "." in lower or "e" in lower:
            return float(value)
        else:
            number = int(value, 10)
    except ValueError:
        raise ExprLangError(f"invalid number literal {text!r}") from None
    if number > 2**63 - 1:
        raise ExprLangError("integer literal is too large")
    return number


_TREES: dict[str, Node] = {}


def parse(text: str) -> Node:
    """The syntax tree of ``text`` (cached: the same expression is evaluated per attempt)."""
    tree = _TREES.get(text)
    if tree is None:
        tree = _TREES[text] = _Parser(text).parse()
    return tree


# ------------------------------------------------------------------ values


type_name = golang.type_name


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _wrap64(n: int) -> int:
    n &= 2**64 - 1
    return n - 2**64 if n >= 2**63 else n


def equal(a: Any, b: Any) -> bool:
    """runtime.Equal: numbers compare by value whatever their type, arrays element by element,
    other values only when of the same type."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return _deep_equal(a, b)


def _deep_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _mismatch(op: str, a: Any, b: Any) -> ExprLangError:
    return ExprLangError(f"invalid operation: {type_name(a)} {op} {type_name(b)}")


def _less(op: str, a: Any, b: Any) -> bool:
    if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise _mismatch(op, a, b)
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_is_number(a) and _is_number(b)):
        raise _mismatch(op, a, b)
    if op == "/":
        return _float_div(float(a), float(b))
    if op == "%":
        if not (isinstance(a, int) and isinstance(b, int)):
            raise _mismatch("%", a, b)
        if b == 0:
            raise ExprLangError("runtime error: integer divide by zero")
        return int(math.fmod(a, b))  # Go truncates towards zero
    if op in ("**", "^"):
        try:
            return math.pow(float(a), float(b))
        except OverflowError:
            return math.inf
        except ValueError:
            return math.nan
    both_int = isinstance(a, int) and isinstance(b, int)
    if op == "+":
        return _wrap64(a + b) if both_int else float(a) + float(b)
    if op == "-":
        return _wrap64(a - b) if both_int else float(a) - float(b)
    if op == "*":
        return _wrap64(a * b) if both_int else float(a) * float(b)
    raise ExprLangError(f"unknown operator {op}")


def _float_div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1, b)
    return a / b


def to_int(value: Any) -> int:
    """runtime.ToInt: a number truncated to int (indexes, counts)."""
    if isinstance(value, bool) or not _is_number(value):
        raise ExprLangError(f"invalid operation: int({type_name(value)})")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return -(2**63)
        return int(value)
    return int(value)


def fetch(obj: Any, key: Any) -> Any:
    """runtime.Fetch: a map key (missing: nil), or an array/string index (negative from the end)."""
    if obj is None:
        raise ExprLangError(f"cannot fetch {golang.sprint(key)} from <nil>")
    if isinstance(obj, dict):
        if key is not None and not isinstance(key, str):
            raise ExprLangError(
                f"cannot use {type_name(key)} as a key of map[string]interface {{}}"
            )
        return obj.get(key)
    if isinstance(obj, (list, str)):
        index = to_int(key)
        seq: list[Any] | bytes = obj if isinstance(obj, list) else obj.encode()
        if index < 0:
            index += len(seq)
        if not 0 <= index < len(seq):
            raise ExprLangError(f"index out of range: {index} (array length is {len(seq)})")
        return seq[index]
    raise ExprLangError(f"cannot fetch {golang.sprint(key)} from {type_name(obj)}")


def _slice(obj: Any, start: Any, stop: Any) -> Any:
    if not isinstance(obj, (list, str)):
        raise ExprLangError(f"cannot slice {type_name(obj)}")
    length = len(obj) if isinstance(obj, list) else len(obj.encode())
    a = 0 if start is None else to_int(start)
    b = length if stop is None else to_int(stop)
    a = max(a + length if a < 0 else a, 0)
    b = min(max(b + length if b < 0 else b, 0), length)
    a = min(a, b)
    if isinstance(obj, list):
        return obj[a:b]
    return obj.encode()[a:b].decode("utf-8", "replace")


def _in(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, list):
        return any(equal(item, needle) for item in haystack)
    if isinstance(haystack, dict):
        if needle is not None and not isinstance(needle, str):
            raise ExprLangError(f"cannot use {type_name(needle)} as a key of a map")
        return needle in haystack
    raise ExprLangError(f'operator "in" not defined on {type_name(haystack)}')


def _strings(op: str, a: Any, b: Any) -> tuple[str, str]:
    if not (isinstance(a, str) and isinstance(b, str)):
        raise _mismatch(op, a, b)
    return a, b


def truthy(value: Any, op: str) -> bool:
    """A boolean operand (runtime.ToBool: nil is false, anything else but a bool fails)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise ExprLangError(f"invalid operation: {op} on {type_name(value)} (a bool is needed)")


# ------------------------------------------------------------------ evaluation


@dataclass
class _Scope:
    env: Mapping[str, Any]
    locals: dict[str, Any]
    pointer: Any = None
    index: int = 0
    acc: Any = None
    in_predicate: bool = False


class Function:
    """A callable the environment offers (asInt, jsonpath, sprig.upper...), with its name for
    error messages."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        try:
            return self.fn(*args)
        except ExprError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
            raise ExprLangError(f"{self.name}: {exc}") from None


def _eval(node: Node, s: _Scope) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "ident":
        name = node[1]
        if name in s.locals:
            return s.locals[name]
        if name == "$env":
            return dict(s.env)
        if name in s.env:
            return s.env[name]
        raise ExprLangError(f"unknown name {name}")
    if tag == "pointer":
        if node[1] == "":
            return s.pointer
        if node[1] == "index":
            return s.index
        if node[1] == "acc":
            return s.acc
        raise ExprLangError(f"unknown pointer #{node[1]}")
    if tag == "unary":
        value = _eval(node[2], s)
        if node[1] in ("not", "!"):
            return not truthy(value, "!")
        if not _is_number(value):
            raise ExprLangError(f"invalid operation: {node[1]}{type_name(value)}")
        return -value if node[1] == "-" else value
    if tag == "binary":
        return _binary(node, s)
    if tag == "cond":
        return _eval(node[2] if truthy(_eval(node[1], s), "?:") else node[3], s)
    if tag == "member":
        obj = _eval(node[1], s)
        if obj is None and node[3]:
            raise _NilChain()
        return fetch(obj, _eval(node[2], s))
    if tag == "slice":
        obj = _eval(node[1], s)
        start = None if node[2] is None else _eval(node[2], s)
        stop = None if node[3] is None else _eval(node[3], s)
        return _slice(obj, start, stop)
    if tag == "array":
        return [_eval(n, s) for n in node[1]]
    if tag == "map":
        out: dict[str, Any] = {}
        for knode, vnode in node[1]:
            key = _eval(knode, s)
            out[key if isinstance(key, str) else golang.sprint(key)] = _eval(vnode, s)
        return out
    if tag == "call":
        return _call(node, s)
    if tag == "builtin":
        return _builtin(node[1], node[2], s)
    if tag == "let":
        inner = _Scope(s.env, {**s.locals, node[1]: _eval(node[2], s)}, s.pointer, s.index, s.acc)
        return _eval(node[3], inner)
    if tag == "seq":
        value = None
        for n in node[1]:
            value = _eval(n, s)
        return value
    if tag == "predicate":
        return _eval(node[1], s)
    raise ExprLangError(f"cannot evaluate {tag}")


class _NilChain(Exception):
    """An optional member (``?.``) of nil: the whole chain is nil."""


def _eval_chain(node: Node, s: _Scope) -> Any:
    try:
        return _eval(node, s)
    except _NilChain:
        return None


def _binary(node: Node, s: _Scope) -> Any:
    _, op, lnode, rnode = node
    if op in ("&&", "and"):
        return truthy(_eval_chain(lnode, s), op) and truthy(_eval_chain(rnode, s), op)
    if op in ("||", "or"):
        return truthy(_eval_chain(lnode, s), op) or truthy(_eval_chain(rnode, s), op)
    if op == "??":
        left = _eval_chain(lnode, s)
        return left if left is not None else _eval_chain(rnode, s)
    a = _eval_chain(lnode, s)
    b = _eval_chain(rnode, s)
    if op == "==":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    if op in _COMPARISONS:
        return _less(op, a, b)
    if op in ("+", "-", "*", "/", "%", "**", "^"):
        return _arith(op, a, b)
    if op == "in":
        return _in(a, b)
    if op == "..":
        if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool):
            raise _mismatch("..", a, b)
        return list(range(a, b + 1))
    if op == "matches":
        text, pattern = _strings(op, a, b)
        try:
            return golang.regex(pattern).search(text) is not None
        except golang.GoError as exc:
            raise ExprLangError(str(exc)) from None
    if op == "contains":
        x, y = _strings(op, a, b)
        return y in x
    if op == "startsWith":
        x, y = _strings(op, a, b)
        return x.startswith(y)
    if op == "endsWith":
        x, y = _strings(op, a, b)
        return x.endswith(y)
    raise ExprLangError(f"unknown operator {op}")


def _call(node: Node, s: _Scope) -> Any:
    callee = node[1]
    if callee[0] == "member" and not (callee[1][0] == "ident" and callee[1][1] == "sprig"):
        raise ExprLangError(
            f"method calls (.{callee[2][1]}()) are not supported by the local runner"
        )
    fn = _eval(callee, s)
    if not callable(fn):
        name = callee[1] if callee[0] == "ident" else callee[2][1]
        if fn is None and callee[0] == "member":
            from argo_local.expr import sprig

            known = name in sprig.ALL_NAMES
            raise ExprLangError(
                f"function sprig.{name}() "
                + ("is not supported by the local runner" if known else "is not a sprig function")
            )
        raise ExprLangError(f"{name} is not a function ({type_name(fn)})")
    args = [_eval_chain(a, s) for a in node[2]]
    return fn(*args)


# ------------------------------------------------------------------ builtins


def _args(name: str, args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise ExprLangError(
            f"invalid number of arguments for {name} (expected {expected}, got {len(args)})"
        )


def _str_arg(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ExprLangError(f"cannot use {type_name(value)} as argument (type string) to {name}")
    return value


def _array(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ExprLangError(f"{name}: cannot iterate over {type_name(value)}")
    return value


def _predicate(name: str, argnodes: list[Node], s: _Scope) -> Any:
    items = _array(name, _eval_chain(argnodes[0], s))
    body = argnodes[1] if len(argnodes) > 1 else None

    def test(item: Any, index: int) -> Any:
        assert body is not None
        return _eval_chain(body, _Scope(s.env, s.locals, item, index, s.acc, True))

    def holds(item: Any, index: int) -> bool:
        return truthy(test(item, index), name)

    if name == "all":
        return all(holds(x, i) for i, x in enumerate(items))
    if name == "any":
        return any(holds(x, i) for i, x in enumerate(items))
    if name == "none":
        return not any(holds(x, i) for i, x in enumerate(items))
    if name == "one":
        return sum(1 for i, x in enumerate(items) if holds(x, i)) == 1
    if name == "filter":
        return [x for i, x in enumerate(items) if holds(x, i)]
    if name == "map":
        return [test(x, i) for i, x in enumerate(items)]
    if name == "count":
        if body is None:
            return sum(1 for x in items if truthy(x, "count"))
        return sum(1 for i, x in enumerate(items) if holds(x, i))
    if name == "sum":
        values = items if body is None else [test(x, i) for i, x in enumerate(items)]
        total: Any = 0
        for v in values:
            total = _arith("+", total, v)
        return total
    if name in ("find", "findIndex"):
        for i, x in enumerate(items):
            if holds(x, i):
                return x if name == "find" else i
        return None if name == "find" else -1
    if name in ("findLast", "findLastIndex"):
        for i in range(len(items) - 1, -1, -1):
            if holds(items[i], i):
                return items[i] if name == "findLast" else i
        return None if name == "findLast" else -1
    if name == "groupBy":
        groups: dict[str, list[Any]] = {}
        for i, x in enumerate(items):
            key = test(x, i)
            groups.setdefault(key if isinstance(key, str) else golang.sprint(key), []).append(x)
        return groups
    if name == "sortBy":
        order = _eval_chain(argnodes[2], s) if len(argnodes) > 2 else "asc"
        keys = [test(x, i) for i, x in enumerate(items)]
        return [x for _, x in _sorted(list(zip(keys, items, strict=True)), order, key=True)]
    if name == "reduce":
        if len(argnodes) > 2:
            acc = _eval_chain(argnodes[2], s)
            start = 0
        else:
            if not items:
                raise ExprLangError("reduce of empty array with no initial value")
            acc, start = items[0], 1
        for i in range(start, len(items)):
            acc = _eval_chain(body, _Scope(s.env, s.locals, items[i], i, acc, True))  # type: ignore[arg-type]
        return acc
    raise ExprLangError(f"unknown builtin {name}")


def _sorted(items: list[Any], order: Any, key: bool = False) -> list[Any]:
    if order not in ("asc", "desc"):
        raise ExprLangError(f'unknown order {golang.sprint(order)}, use "asc" or "desc"')
    values = [k for k, _ in items] if key else items
    if values and not (
        all(_is_number(v) for v in values) or all(isinstance(v, str) for v in values)
    ):
        raise ExprLangError("sort: the values must be all numbers or all strings")
    pick: Callable[[Any], Any] = (lambda kv: kv[0]) if key else (lambda v: v)
    return sorted(items, key=pick, reverse=order == "desc")


def _flatten(value: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in value:
        if isinstance(v, list):
            out.extend(_flatten(v))
        else:
            out.append(v)
    return out


def _min_max(name: str, args: list[Any]) -> Any:
    values = _flatten(args)
    if not values:
        raise ExprLangError(f"not enough arguments to call {name}")
    best = values[0]
    for v in values:
        if not _is_number(v):
            raise ExprLangError(f"invalid argument for {name} (type {type_name(v)})")
        if (v > best) if name == "max" else (v < best):
            best = v
    return best


def _numbers(name: str, args: list[Any]) -> list[float]:
    values = _flatten(args)
    for v in values:
        if not _is_number(v):
            raise ExprLangError(f"invalid argument for {name} (type {type_name(v)})")
    return [float(v) for v in values]


def _round(x: Any) -> float:
    if not _is_number(x):
        raise ExprLangError(f"invalid argument for round (type {type_name(x)})")
    f = float(x)
    if math.isnan(f) or math.isinf(f):
        return f
    return float(math.floor(abs(f) + 0.5)) * (1 if f >= 0 else -1)


def as_int(value: Any) -> int:
    """expr-lang's ``int()`` (Argo's ``asInt``): numbers truncated, strings by strconv.Atoi."""
    if isinstance(value, bool) or value is None:
        raise ExprLangError(f"invalid operation: int({type_name(value)})")
    if isinstance(value, str):
        text = value
        if text[:1] in "+-":
            text = text[1:]
        if not text.isascii() or not text.isdigit():
            raise ExprLangError(f"invalid operation: int({value})")
        return int(value)
    return to_int(value)


def as_float(value: Any) -> float:
    """expr-lang's ``float()`` (Argo's ``asFloat``): strings by strconv.ParseFloat."""
    if isinstance(value, bool) or value is None:
        raise ExprLangError(f"invalid operation: float({type_name(value)})")
    if isinstance(value, str):
        try:
            return go_parse_float(value)
        except ValueError:
            raise ExprLangError(f"invalid operation: float({value})") from None
    if _is_number(value):
        return float(value)
    raise ExprLangError(f"invalid operation: float({type_name(value)})")


def go_parse_float(text: str) -> float:
    """strconv.ParseFloat: decimal or hex floats, inf/nan words, underscores refused."""
    if "_" in text or not text.isascii() or text.strip() != text or not text:
        raise ValueError(text)
    lower = text.lower().lstrip("+-")
    if lower in ("inf", "infinity", "nan"):
        return float(text)
    if lower.startswith("0x"):
        return float.fromhex(text)
    if not all(c in "0123456789.e+-" for c in lower):
        raise ValueError(text)
    return float(text)


def _type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return "func" if callable(value) else "unknown"


def _len(value: Any) -> int:
    if isinstance(value, (list, dict)):
        return len(value)
    if isinstance(value, str):
        return len(value)  # runes, as utf8.RuneCountInString
    raise ExprLangError(f"invalid argument for len (type {type_name(value)})")


def _get(obj: Any, key: Any) -> Any:
    try:
        return fetch(obj, key)
    except ExprLangError:
        return None


def _join(items: Any, glue: str = "") -> str:
    parts = _array("join", items)
    for p in parts:
        if not isinstance(p, str):
            raise ExprLangError(f"invalid argument for join (element of type {type_name(p)})")
    return _str_arg("join", glue).join(parts)


def _split(text: Any, sep: Any, n: Any = None, after: bool = False) -> list[str]:
    s, d = _str_arg("split", text), _str_arg("split", sep)
    limit = -1 if n is None else to_int(n)
    if limit == 0:
        return []
    if d == "":
        parts = list(s)
        if limit > 0 and len(parts) > limit:
            parts = [*parts[: limit - 1], "".join(parts[limit - 1 :])]
        return parts
    pieces = s.split(d) if limit < 0 else s.split(d, limit - 1)
    if after:
        pieces = [p + d for p in pieces[:-1]] + pieces[-1:]
    return pieces


def _uniq(items: Any) -> list[Any]:
    out: list[Any] = []
    for v in _array("uniq", items):
        if not any(equal(v, u) for u in out):
            out.append(v)
    return out


def _from_pairs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in _array("fromPairs", items):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ExprLangError(f"invalid pair {golang.sprint(pair)}")
        out[pair[0] if isinstance(pair[0], str) else golang.sprint(pair[0])] = pair[1]
    return out


def _trim(text: Any, chars: Any = None) -> str:
    s = _str_arg("trim", text)
    return s.strip() if chars is None else s.strip(_str_arg("trim", chars))


def _from_base64(text: Any) -> str:
    try:
        return base64.b64decode(_str_arg("fromBase64", text), validate=True).decode(
            "utf-8", "replace"
        )
    except ValueError as exc:
        raise ExprLangError(f"fromBase64: {exc}") from None


def _sort(items: Any, order: Any = "asc") -> list[Any]:
    return _sorted(list(_array("sort", items)), order)


def _take(items: Any, n: Any) -> list[Any]:
    if not isinstance(n, int) or isinstance(n, bool):
        raise ExprLangError(f"cannot take {type_name(n)} elements")
    return _array("take", items)[: max(n, 0)]


def _bit(name: str, fn: Callable[..., int]) -> Callable[..., int]:
    def run(*args: Any) -> int:
        for a in args:
            if not isinstance(a, int) or isinstance(a, bool):
                raise ExprLangError(f"invalid argument for {name} (type {type_name(a)})")
        return _wrap64(fn(*args))

    return run


def _ushr(a: int, b: int) -> int:
    return (a & (2**64 - 1)) >> b


def _keys(value: Any) -> list[str]:
    if not isinstance(value, dict):
        raise ExprLangError(f"cannot get keys from {type_name(value)}")
    return sorted(value)  # Go's map order is random; sorted is one of its orders


def _values(value: Any) -> list[Any]:
    return [value[k] for k in _keys(value)]


# name -> (min args, max args, function)
BUILTINS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "len": (1, 1, _len),
    "type": (1, 1, _type),
    "abs": (1, 1, lambda x: abs(x) if _is_number(x) else _bad("abs", x)),
    "ceil": (1, 1, lambda x: float(math.ceil(x)) if _is_number(x) else _bad("ceil", x)),
    "floor": (1, 1, lambda x: float(math.floor(x)) if _is_number(x) else _bad("floor", x)),
    "round": (1, 1, _round),
    "int": (1, 1, as_int),
    "float": (1, 1, as_float),
    "string": (1, 1, golang.sprint),
    "trim": (1, 2, _trim),
    "trimPrefix": (
        1,
        2,
        lambda s, p=" ": _str_arg("trimPrefix", s).removeprefix(_str_arg("trimPrefix", p)),
    ),
    "trimSuffix": (
        1,
        2,
        lambda s, p=" ": _str_arg("trimSuffix", s).removesuffix(_str_arg("trimSuffix", p)),
    ),
    "upper": (1, 1, lambda s: _str_arg("upper", s).upper()),
    "lower": (1, 1, lambda s: _str_arg("lower", s).lower()),
    "split": (2, 3, _split),
    "splitAfter": (2, 3, lambda s, d, n=None: _split(s, d, n, after=True)),
    "replace": (
        3,
        3,
        lambda s, a, b: _str_arg("replace", s).replace(
            _str_arg("replace", a), _str_arg("replace", b)
        ),
    ),
    "repeat": (2, 2, lambda s, n: _str_arg("repeat", s) * _non_negative("repeat", n)),
    "join": (1, 2, _join),
    "indexOf": (2, 2, lambda s, t: _str_arg("indexOf", s).find(_str_arg("indexOf", t))),
    "lastIndexOf": (
        2,
        2,
        lambda s, t: _str_arg("lastIndexOf", s).rfind(_str_arg("lastIndexOf", t)),
    ),
    "hasPrefix": (2, 2, lambda s, p: _str_arg("hasPrefix", s).startswith(_str_arg("hasPrefix", p))),
    "hasSuffix": (2, 2, lambda s, p: _str_arg("hasSuffix", s).endswith(_str_arg("hasSuffix", p))),
    "max": (1, 1000, lambda *a: _min_max("max", list(a))),
    "min": (1, 1000, lambda *a: _min_max("min", list(a))),
    "mean": (1, 1000, lambda *a: _mean(_numbers("mean", list(a)))),
    "median": (1, 1000, lambda *a: _median(_numbers("median", list(a)))),
    "toJSON": (1, 1, lambda v: golang.marshal(v, indent="  ")),
    "fromJSON": (1, 1, lambda s: golang.from_json(_str_arg("fromJSON", s))),
    "toBase64": (
        1,
        1,
        lambda s: base64.b64encode(_str_arg("toBase64", s).encode()).decode(),
    ),
    "fromBase64": (1, 1, _from_base64),
    "first": (1, 1, lambda a: _get(a, 0)),
    "last": (1, 1, lambda a: _get(a, -1)),
    "get": (2, 2, _get),
    "take": (2, 2, _take),
    "keys": (1, 1, _keys),
    "values": (1, 1, _values),
    "toPairs": (1, 1, lambda m: [[k, m[k]] for k in _keys(m)]),
    "fromPairs": (1, 1, _from_pairs),
    "reverse": (1, 1, lambda a: list(reversed(_array("reverse", a)))),
    "uniq": (1, 1, _uniq),
    "concat": (1, 1000, lambda *a: [x for arr in a for x in _array("concat", arr)]),
    "flatten": (1, 1, lambda a: _flatten(_array("flatten", a))),
    "sort": (1, 2, _sort),
    "bitand": (2, 2, _bit("bitand", lambda a, b: a & b)),
    "bitor": (2, 2, _bit("bitor", lambda a, b: a | b)),
    "bitxor": (2, 2, _bit("bitxor", lambda a, b: a ^ b)),
    "bitnand": (2, 2, _bit("bitnand", lambda a, b: a & ~b)),
    "bitnot": (1, 1, _bit("bitnot", lambda a: ~a)),
    "bitshl": (2, 2, _bit("bitshl", lambda a, b: a << b)),
    "bitshr": (2, 2, _bit("bitshr", lambda a, b: a >> b)),
    "bitushr": (2, 2, _bit("bitushr", _ushr)),
}
_REFUSED = {
    "now": "dates are not supported by the local runner",
    "duration": "durations are not supported by the local runner",
    "date": "dates are not supported by the local runner",
    "timezone": "time zones are not supported by the local runner",
}


def _bad(name: str, value: Any) -> Any:
    raise ExprLangError(f"invalid argument for {name} (type {type_name(value)})")


def _non_negative(name: str, n: Any) -> int:
    count = to_int(n)
    if count < 0:
        raise ExprLangError(f"invalid argument for {name} (expected positive integer, got {count})")
    return count


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _builtin(name: str, argnodes: list[Node], s: _Scope) -> Any:
    if name in _REFUSED:
        raise ExprLangError(f"{name}(): {_REFUSED[name]}")
    if name in _PREDICATE_ARGS:
        return _predicate(name, argnodes, s)
    low, high, fn = BUILTINS[name]
    args = [_eval_chain(a, s) for a in argnodes]
    _args(name, args, low, high)
    try:
        return fn(*args)
    except ExprError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExprLangError(f"{name}: {exc}") from None


# ------------------------------------------------------------------ Argo's environment


def expand(scope: Mapping[str, Any]) -> dict[str, Any]:
    """Argo's ``expand.Expand``: dotted names become nested maps; a name that is also the
    prefix of a longer one (``item`` and ``item.name``) gives way to the longer one."""
    keys = sorted(scope)
    dropped = {k for k, nxt in itertools.pairwise(keys) if nxt.startswith(k + ".")}
    out: dict[str, Any] = {}
    for key in keys:
        if key in dropped:
            continue
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = scope[key]
    return out


def _json_path(text: Any, path: Any) -> Any:
    from argo_local.expr import jsonpath

    data = golang.from_json(_str_arg("jsonpath", text))
    return jsonpath.query(_str_arg("jsonpath", path), data)


def _functions() -> dict[str, Any]:
    from argo_local.expr import sprig

    return {
        "asInt": Function("asInt", as_int),
        "asFloat": Function("asFloat", as_float),
        "jsonpath": Function("jsonpath", _json_path),
        "toJson": Function("toJson", golang.marshal),
        "sprig": {name: Function(f"sprig.{name}", fn) for name, fn in sprig.FUNCTIONS.items()},
    }


ARGO_FUNCTIONS = ("asInt", "asFloat", "jsonpath", "toJson", "sprig")


def environment(scope: Mapping[str, Any]) -> dict[str, Any]:
    """Argo's ``GetFuncMap``: the expanded scope plus its functions."""
    env = expand(scope)
    env.update(_functions())
    return env


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """The value of ``text`` in ``env`` (an :func:`environment`)."""
    tree = parse(text)
    _check_names(tree, env, set())
    try:
        return _eval_chain(tree, _Scope(env, {}))
    except RecursionError:
        raise ExprLangError("expression nests too deeply") from None


def condition(text: str, env: Mapping[str, Any]) -> bool:
    """Argo's ``argoexpr.EvalBool``: the result must be a boolean."""
    value = evaluate(text, env)
    if not isinstance(value, bool):
        raise ExprLangError(f"unable to cast expression result '{golang.sprint(value)}' to bool")
    return value


def output_parameter(text: str, scope: Mapping[str, Any], default: Any) -> str:
    """An output parameter's ``valueFrom.expression`` (scope.go ``resolveParameter``): the value
    printed with Go's ``%v``; a failure or a nil value takes ``default`` when there is one."""
    try:
        value = evaluate(text, environment(scope))
        if value is None:
            raise ExprLangError(f"failed to evaluate expression {text!r}: it is nil")
    except ExprError:
        if default is None:
            raise
        return default if isinstance(default, str) else golang.sprint(default)
    return golang.sprint(value)


def render(value: Any) -> str:
    """A ``{{= }}`` tag's text (expression_template.go): a string as it is, anything else as
    JSON; nil is an error."""
    if value is None:
        raise ExprLangError("the expression evaluated to nil")
    if isinstance(value, str):
        return value
    try:
        return golang.marshal(value)
    except golang.GoError as exc:
        raise ExprLangError(f"failed to marshal evaluated expression: {exc}") from None


# ------------------------------------------------------------------ static checks


def _check_names(node: Any, env: Mapping[str, Any], local: set[str]) -> None:
    """expr-lang's compile step: every free name must be in the environment."""
    if not isinstance(node, tuple) or not node:
        return
    tag = node[0]
    if tag == "ident":
        if node[1] not in env and node[1] not in local and node[1] != "$env":
            raise ExprLangError(f"unknown name {node[1]}")
        return
    if tag == "let":
        _check_names(node[2], env, local)
        _check_names(node[3], env, local | {node[1]})
        return
    for child in node[1:]:
        if isinstance(child, tuple):
            _check_names(child, env, local)
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, tuple) and item and isinstance(item[0], tuple):
                    for sub in item:
                        _check_names(sub, env, local)
                else:
                    _check_names(item, env, local)


def check(text: str) -> None:
    """Parse ``text`` and refuse, before anything runs, a function the runner does not have."""
    from argo_local.expr import sprig

    tree = parse(text)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, tuple) or not node:
            return
        tag = node[0]
        if tag == "builtin" and node[1] in _REFUSED:
            raise ExprLangError(f"function {node[1]}() is not supported: {_REFUSED[node[1]]}")
        if tag == "call":
            callee = node[1]
            if callee[0] == "ident" and callee[1] not in ARGO_FUNCTIONS:
                raise ExprLangError(
                    f"function {callee[1]}() is not supported (not an expr-lang builtin nor one "
                    f"of Argo's {', '.join(ARGO_FUNCTIONS[:-1])})"
                )
            if callee[0] == "member":
                owner, prop = callee[1], callee[2]
                if owner == ("ident", "sprig") and prop[0] == "lit":
                    name = prop[1]
                    if name not in sprig.FUNCTIONS:
                        reason = (
                            "is not supported by the local runner"
                            if name in sprig.ALL_NAMES
                            else "is not a sprig function"
                        )
                        raise ExprLangError(f"function sprig.{name}() {reason}")
                else:
                    raise ExprLangError(
                        f"method calls (.{prop[1]}()) are not supported by the local runner"
                    )
        for child in node[1:]:
            walk(child)

    walk(tree)
