"""A DAG task's ``depends`` (``A.Succeeded && !B.Failed``), and the error of every expression.

Argo evaluates ``depends`` with expr-lang after rewriting each ``task.Result`` into a boolean;
only task names, results, ``&&``, ``||``, ``!`` and parentheses can appear, so
:func:`depends` is a small evaluator of its own. The other languages live in their own
modules: ``when`` is govaluate (argo_local/expr/govaluate.py); ``retryStrategy.expression``,
``valueFrom.expression`` and ``{{= }}`` tags are expr-lang (argo_local/expr/exprlang.py).

Nothing here calls ``eval``: a template is data, and must not run code in the runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


class ExprError(ValueError):
    """An expression (``depends``, ``when``, expr-lang) is malformed or cannot be evaluated."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # op, name, end
    text: str


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
