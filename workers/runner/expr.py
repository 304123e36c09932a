"""Small, safe evaluators for the expression languages a WorkflowTemplate uses.

* :func:`evaluate` covers the expr-lang subset of ``retryStrategy.expression`` and the
  govaluate subset of ``when`` (after ``{{...}}`` substitution): literals, names,
  ``asInt``/``asFloat``/``string``/``int``/``float``, comparisons, ``in``, ``=~``,
  ``&&``/``||``/``!`` (and ``and``/``or``/``not``), ``+ - * /`` on numbers (a metric's
  ``{{=asFloat(duration) - asFloat(outputs.parameters.seconds)}}``) and parentheses.
  A name runs on through ``-`` and ``/`` (``inputs.parameters.key-column``), so an
  operator needs a space before it.
* :func:`depends` evaluates a DAG task's ``depends`` (``A.Succeeded && !B.Failed``).

Nothing here calls ``eval``: a template is data, and must not run code in the runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ExprError(ValueError):
    """The expression is malformed or uses something outside the supported subset."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?(?![\w.-]))
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|=~|&&|\|\||[<>!(),\[\]?:.+*/-])
    | (?P<name>[A-Za-z0-9_][\w.\-/:]*)
    )""",
    re.VERBOSE,
)

_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_WORD_OPS = ("in", "matches", "contains", "startsWith", "endsWith")


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, str, op, name, end
    text: str


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"cannot parse {text!r} at {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind, value = "op", _KEYWORDS[value]
        elif kind == "name" and value in _WORD_OPS:
            kind = "op"
        tokens.append(_Tok(kind, value))
    tokens.append(_Tok("end", ""))
    return tokens


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _as_int(value: Any) -> int:
    n = _number(value)
    if n is None:
        raise ExprError(f"asInt: {value!r} is not a number")
    return int(n)


def _as_float(value: Any) -> float:
    n = _number(value)
    if n is None:
        raise ExprError(f"asFloat: {value!r} is not a number")
    return float(n)


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "asInt": _as_int,
    "int": _as_int,
    "asFloat": _as_float,
    "float": _as_float,
    "string": _string,
}


def _compare(op: str, a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        x: Any = na
        y: Any = nb
    else:
        x, y = _string(a), _string(b)
    if op == "==":
        return bool(x == y)
    if op == "!=":
        return bool(x != y)
    if op == "<":
        return bool(x < y)
    if op == ">":
        return bool(x > y)
    if op == "<=":
        return bool(x <= y)
    if op == ">=":
        return bool(x >= y)
    raise ExprError(f"unknown operator {op}")


def _arithmetic(op: str, a: Any, b: Any, text: str) -> float | int:
    na, nb = _number(a), _number(b)
    if na is None or nb is None:
        raise ExprError(f"{op} needs numbers, got {a!r} and {b!r} in {text!r}")
    if op == "+":
        return na + nb
    if op == "-":
        return na - nb
    if op == "*":
        return na * nb
    if nb == 0:
        raise ExprError(f"division by zero in {text!r}")
    return na / nb


def _truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ExprError(f"{value!r} is not a boolean")
    raise ExprError(f"{value!r} is not a boolean")


@dataclass(frozen=True)
class _Path:
    """A partial name (``steps``, ``inputs.parameters``) waiting for ``.field`` or ``['field']``."""

    text: str


class _Parser:
    """Recursive descent: ternary > or > and > not > comparison > sum > product > postfix >
    primary.

    Branches that are not taken (``?:``, short-circuit ``&&``/``||``) are parsed with
    ``dead`` set and not evaluated, so they may name outputs that do not exist, as in expr-lang.
    """

    def __init__(self, text: str, names: Mapping[str, Any], bare_words: bool) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.names = names
        self.bare_words = bare_words
        self.dead = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.tokens[self.i]
        if text is not None and tok.text != text:
            raise ExprError(f"expected {text!r} in {self.text!r}, found {tok.text or 'end'!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.value(self.ternary())
        if self.peek().kind != "end":
            raise ExprError(f"unexpected {self.peek().text!r} in {self.text!r}")
        return value

    def truth(self, value: Any) -> bool:
        return False if self.dead else _truth(self.value(value))

    def value(self, value: Any) -> Any:
        if self.dead or not isinstance(value, _Path):
            return value
        if value.text in self.names:
            return self.names[value.text]
        if self.bare_words:
            return value.text
        raise ExprError(f"unknown name {value.text!r} in {self.text!r}")

    def branch(self, live: bool, parse: Callable[[], Any]) -> Any:
        if live:
            return self.value(parse())
        self.dead += 1
        try:
            parse()
        finally:
            self.dead -= 1
        return None

    def ternary(self) -> Any:
        cond = self.or_()
        if self.peek().text != "?":
            return cond
        self.take("?")
        yes = self.truth(cond)
        first = self.branch(yes and not self.dead, self.ternary)
        self.take(":")
        second = self.branch(not yes and not self.dead, self.ternary)
        return first if yes else second

    def or_(self) -> Any:
        value = self.and_()
        while self.peek().text == "||":
            self.take()
            left = self.truth(value)
            right = self.branch(not left and not self.dead, self.and_)
            value = left or (not self.dead and _truth(right))
        return value

    def and_(self) -> Any:
        value = self.not_()
        while self.peek().text == "&&":
            self.take()
            left = self.truth(value)
            right = self.branch(left and not self.dead, self.not_)
            value = left and _truth(right)
        return value

    def not_(self) -> Any:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            operand = self.not_()
            return None if self.dead else not self.truth(operand)
        return self.comparison()

    def comparison(self) -> Any:
        left = self.sum()
        tok = self.peek()
        if tok.kind != "op" or tok.text not in ("==", "!=", "<", ">", "<=", ">=", "=~", *_WORD_OPS):
            return left
        self.take()
        right = self.sum()
        if self.dead:
            return None
        a, b = self.value(left), self.value(right)
        if tok.text in ("=~", "matches"):
            try:
                return re.search(_string(b), _string(a)) is not None
            except re.error as exc:
                raise ExprError(f"bad regular expression {b!r}: {exc}") from None
        if tok.text == "in":
            if isinstance(b, list):
                return any(_compare("==", a, c) for c in b)
            return _string(a) in _string(b)
        if tok.text == "contains":
            return _string(b) in _string(a)
        if tok.text == "startsWith":
            return _string(a).startswith(_string(b))
        if tok.text == "endsWith":
            return _string(a).endswith(_string(b))
        return _compare(tok.text, a, b)

    def sum(self) -> Any:
        return self._arithmetic(("+", "-"), self.product)

    def product(self) -> Any:
        return self._arithmetic(("*", "/"), self.postfix)

    def _arithmetic(self, ops: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        left = operand()
        while self.peek().kind == "op" and self.peek().text in ops:
            op = self.take().text
            right = operand()
            if not self.dead:
                left = _arithmetic(op, self.value(left), self.value(right), self.text)
        return left

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek().text in ("[", "."):
            if self.take().text == "[":
                key = self.value(self.ternary())
                self.take("]")
            else:
                tok = self.take()
                if tok.kind != "name":
                    raise ExprError(f"expected a field name after '.' in {self.text!r}")
                key = tok.text
            if self.dead:
                continue
            if isinstance(value, _Path):
                value = _Path(f"{value.text}.{key}")
            elif isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and _number(key) is not None:
                value = value[int(_number(key) or 0)]
            else:
                raise ExprError(f"cannot index {value!r} with {key!r} in {self.text!r}")
        return value

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "num":
            return _number(tok.text)
        if tok.kind == "str":
            body = tok.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if tok.kind == "op" and tok.text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if tok.kind == "op" and tok.text == "[":
            items: list[Any] = []
            while self.peek().text != "]":
                items.append(self.value(self.ternary()))
                if self.peek().text == ",":
                    self.take()
            self.take("]")
            return items
        if tok.kind == "name":
            if self.peek().text == "(":
                func = FUNCTIONS.get(tok.text)
                if func is None:
                    raise ExprError(
                        f"function {tok.text}() is not supported (supported: {', '.join(FUNCTIONS)})"
                    )
                self.take("(")
                arg = self.value(self.ternary())
                self.take(")")
                return None if self.dead else func(arg)
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text in ("nil", "null"):
                return None
            return _Path(tok.text)
        raise ExprError(f"unexpected {tok.text or 'end'!r} in {self.text!r}")


def evaluate(text: str, names: Mapping[str, Any] | None = None, *, bare_words: bool = False) -> Any:
    """Evaluate ``text``; with ``bare_words`` unknown names are strings (govaluate's ``when``)."""
    return _Parser(text, names or {}, bare_words).parse()


def condition(
    text: str, names: Mapping[str, Any] | None = None, *, bare_words: bool = False
) -> bool:
    """Evaluate ``text`` and require a boolean result."""
    return _truth(evaluate(text, names, bare_words=bare_words))


RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "Completed")
LOOP_RESULTS = ("AnySucceeded", "AllFailed")

_DEP_TOKEN = re.compile(r"\s*(?:(?P<op>&&|\|\||[!()])|(?P<name>[A-Za-z0-9_][\w.\-]*))")


def depends_names(text: str) -> list[str]:
    """The task names a ``depends`` expression mentions, in order of appearance."""
    names: list[str] = []
    for tok in _dep_tokens(text):
        if tok.kind == "name":
            task, _ = _split_result(tok.text)
            if task not in names:
                names.append(task)
    return names


def _split_result(operand: str) -> tuple[str, str | None]:
    task, dot, result = operand.rpartition(".")
    if dot and result in RESULTS + LOOP_RESULTS:
        return task, result
    return operand, None


def _dep_tokens(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _DEP_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"cannot parse depends {text!r} at {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        tokens.append(_Tok(kind, m.group(kind)))
    tokens.append(_Tok("end", ""))
    return tokens


def depends(text: str, result: Callable[[str, str | None], bool]) -> bool:
    """Evaluate ``depends``; ``result(task, name)`` answers one operand (name None: the default)."""
    tokens = _dep_tokens(text)
    i = 0

    def take() -> _Tok:
        nonlocal i
        tok = tokens[i]
        i += 1
        return tok

    def or_() -> bool:
        value = and_()
        while tokens[i].text == "||":
            take()
            right = and_()
            value = value or right
        return value

    def and_() -> bool:
        value = not_()
        while tokens[i].text == "&&":
            take()
            right = not_()
            value = value and right
        return value

    def not_() -> bool:
        if tokens[i].text == "!":
            take()
            return not not_()
        tok = take()
        if tok.text == "(":
            value = or_()
            if take().text != ")":
                raise ExprError(f"unbalanced parentheses in depends {text!r}")
            return value
        if tok.kind != "name":
            raise ExprError(f"unexpected {tok.text or 'end'!r} in depends {text!r}")
        task, name = _split_result(tok.text)
        return result(task, name)

    value = or_()
    if tokens[i].kind != "end":
        raise ExprError(f"unexpected {tokens[i].text!r} in depends {text!r}")
    return value
