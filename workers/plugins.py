"""Load user functions named by import path: ``package.module:function``."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

from workers.errors import ProcessingError, UsageError

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def load(path: str, flag: str) -> Callable[..., Any]:
    """Import ``module:attr``; any failure is a UsageError naming the flag, not a traceback."""
    if not _PATH.match(path):
        raise UsageError(f"{flag} {path!r} is not an import path like 'package.module:function'")
    module_name, _, attr = path.partition(":")
    if "" not in sys.path and "." not in sys.path:
        # Like `python -m`, let users name modules in the working folder.
        sys.path.insert(0, "")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"{flag} {path!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"{flag} {path!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise UsageError(f"{flag} {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def definition(func: Callable[..., Any]) -> str | None:
    """``file:line`` where a function is defined, when Python knows it."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None:
        return None
    return f"{code.co_filename}:{code.co_firstlineno}"


def check_call(
    func: Callable[..., Any], path: str, what: str, how: str, *args: Any, **kwargs: Any
) -> None:
    """Fail before any work if ``func`` cannot be called with these arguments: the user's
    function has the wrong signature (their code, exit 3), named with where it is defined."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: the call will tell
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        where = definition(func)
        name = getattr(func, "__name__", "function")
        # Without annotations: with postponed evaluation they print as quoted strings.
        params = ", ".join(str(p.replace(annotation=p.empty)) for p in sig.parameters.values())
        err = ProcessingError(
            f"{what} {path} has the wrong signature {name}({params}): {exc}; {how}"
            + (f" (at {where})" if where else "")
        )
        err.cause = "user-code"
        raise err from None
