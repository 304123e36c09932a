"""Calling the user's processor and generator, and writing what they return.

One place for what every step guarantees around user code:

- an exception it raises is exit 3 naming the user's file and line; a result that is not
  an iterable, or a value with no JSON form, is exit 3 too, named precisely, with where
  the function is defined;
- the step deadline (:mod:`workers.deadline`) is checked again after every return from
  user code, so a processor that swallowed it never lets the step commit;
- NaN and ±Infinity become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, as
  docs/reference/column-types.md writes them for a column (orjson would write ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from workers import deadline, failures, plugins
from workers.errors import ProcessingError


def _error(what: str, message: str, func: Callable[..., Any] | None) -> ProcessingError:
    where = plugins.definition(func) if func is not None else None
    err = ProcessingError(f"{what} {message}" + (f" (defined at {where})" if where else ""))
    err.cause = "user-code"
    return err


def call_processor(func: Callable[..., Any], path: str, batch: list[Any]) -> list[Any]:
    """``func(batch)`` as a list; exit 3 when it raises or returns something not iterable."""
    what = f"processor {path}"
    try:
        result = func(batch)
    except Exception as exc:
        raise failures.user_code_error(
            what, f"raised {type(exc).__name__}: {exc}", exc, module=path
        ) from None
    deadline.check()
    try:
        values = iter(result)
    except TypeError:
        raise _error(
            what,
            f"returned {_kind(result)}, not an iterable of JSON values (a list, a generator)",
            func,
        ) from None
    try:
        out = list(values)  # a generator processor runs (and may raise) here
    except Exception as exc:
        raise failures.user_code_error(
            what, f"raised {type(exc).__name__}: {exc}", exc, module=path
        ) from None
    deadline.check()
    return out


def _kind(value: Any) -> str:
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{shown} (of type {type(value).__name__})"


def has_non_finite(value: Any) -> bool:
    """Whether a float NaN or ±Infinity is anywhere in ``value`` (dicts, lists, tuples walked)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is float:
            if v - v != 0.0:  # nan for NaN and ±Infinity, 0.0 for every finite float
                return True
        elif t is dict:
            extend(v.values())
        elif t is list or t is tuple:
            extend(v)
        elif t is not str and t is not int and isinstance(v, float) and not math.isfinite(v):
            # a float subclass (numpy.float64)
            return True
    return False


def dumps(value: Any, option: int = 0) -> bytes:
    """One value as JSON the documented way (``values.default`` types; NaN, ±Infinity as
    strings); TypeError for a value with no JSON form."""
    from workers.values import default, exact

    data = orjson.dumps(value, default=default, option=option)
    # orjson writes NaN and ±Infinity as null: only a value with a null may hold one.
    if b"null" in data and has_non_finite(value):
        data = orjson.dumps(exact(value), default=default, option=option)
    return data


def encode_values(values: list[Any], path: str, func: Callable[..., Any]) -> bytes:
    """A processor's values as one JSON Lines block; exit 3 naming a value with no JSON form."""
    from workers.values import default

    opt = orjson.OPT_APPEND_NEWLINE
    try:
        block = b"".join([orjson.dumps(v, default=default, option=opt) for v in values])
    except (TypeError, orjson.JSONEncodeError):
        block = None  # find the value, and say which
    # orjson writes NaN and ±Infinity as null: only a block with a null may hold one.
    if block is not None and (b"null" not in block or not has_non_finite(values)):
        return block
    out = []
    for i, value in enumerate(values):
        try:
            out.append(dumps(value, opt))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise _error(
                f"processor {path}",
                f"returned a value that is not JSON-serializable (value {i} of its batch, "
                f"{_kind(value)}): {exc}",
                func,
            ) from None
    return b"".join(out)


def encode_rows(
    objects: Iterable[Any], path: str, func: Callable[..., Any] | None
) -> Iterator[bytes]:
    """A generator's rows as JSON objects; exit 3 naming a row that is not a JSON object."""
    for i, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise _error(f"generator {path}", f"row {i} is {_kind(obj)}, expected a dict", func)
        try:
            yield dumps(obj)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise _error(
                f"generator {path}", f"row {i} is not JSON-serializable: {exc}", func
            ) from None
