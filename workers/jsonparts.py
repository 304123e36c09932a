"""Read a part file the way ``jq -s`` does: any JSON values separated by optional whitespace.

The result is JSON Lines (one compact value per line) plus the value count, from
which merge writes either an array or JSON Lines. The common case, one value per
line, is validated in a single call over the whole part: simdjson when it is
installed (it validates without building Python objects, several times faster
than orjson), else orjson. Anything the fast path refuses goes the slow way,
so both give the same result and the same errors.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import orjson

from workers.errors import UsageError

_WS = re.compile(r"[ \t\n\r]*")

try:
    import simdjson as _simdjson
except ImportError:  # optional: orjson validates too, only slower
    _simdjson = None  # type: ignore[assignment]

_local = threading.local()


def _parser() -> Any:
    parser: Any = getattr(_local, "parser", None)
    if parser is None:
        # One parser per thread: it keeps its buffers between parts, and is not thread-safe.
        parser = _local.parser = _simdjson.Parser()
    return parser


def _count_array(framed: bytes) -> int | None:
    """Length of the JSON array ``framed`` if it is valid JSON, else None."""
    if _simdjson is not None:
        try:
            return len(_parser().parse(framed))
        except Exception:  # its refusals include big integers, which orjson takes: ask orjson
            pass
    try:
        return len(orjson.loads(framed))
    except orjson.JSONDecodeError:
        return None


def _valid(document: bytes) -> bool:
    if _simdjson is not None:
        try:
            _parser().parse(document)
            return True
        except Exception:  # big integers again: ask orjson
            pass
    try:
        orjson.loads(document)
    except orjson.JSONDecodeError:
        return False
    return True


def _one_value_per_line(lines: bytes) -> bool:
    """Given that ``[`` + lines joined by commas + ``]`` is a valid array, is each line one value?

    The array alone cannot tell: ``1,2`` / ``[3`` / ``4]`` is an array of three values
    on three lines. This second frame, an object with one (repeated) key per line,
    ``{"":L1\n,"":L2 ...}``, settles it. Its raw newlines make a string that would
    run over a line end invalid. A line end inside a nested array would put
    ``"":`` in that array; inside a nested object, the next line's start would be
    a key in one frame and a value in the other. So both frames parse only when
    every line end is at the top level, and then a line holding two values,
    ``v1,v2`` or ``v1,"k":v2``, is invalid in one frame or the other.
    """
    sep = b'\n,"":'
    body = lines.replace(b"\n", sep)  # ends with one separator too many: cut in the join
    return _valid(b"".join((b'{"":', memoryview(body)[: -len(sep)], b"}")))


def to_json_lines(data: bytes, name: str) -> tuple[bytes, int]:
    """Return (JSON Lines, value count) for a part; invalid JSON is a UsageError naming file and line."""
    lines, n, _ = parse_part(data, name)
    return lines, n


def parse_part(
    data: bytes, name: str, *, lines_are_values: bool = False
) -> tuple[bytes, int, memoryview | None]:
    """Like :func:`to_json_lines`, plus the values joined by commas when the fast path found them.

    The joined form is what a JSON array of the part holds between its brackets,
    so merge can write it without another pass over the data. ``lines_are_values``
    says the bytes are known to hold one value per line (they match the sha256 of a
    commit record that shard wrote one ``orjson.dumps`` per line): the second frame
    of :func:`_one_value_per_line` then has nothing left to prove. Untrusted files
    (``--glob``, paths) always get it.
    """
    if not data:
        return b"", 0, None
    lines = data if data.endswith(b"\n") else data + b"\n"
    # On ``lines`` (one final newline) these are the tests on the body without it:
    # no CR, no empty line anywhere (a trailing one included), not empty.
    if (
        len(lines) > 1
        and b"\r" not in lines
        and not lines.startswith(b"\n")
        and b"\n\n" not in lines
    ):
        commas = lines.replace(b"\n", b",")
        # Two copies of the part in all (no slice of the body): "[" + values + "]".
        framed = b"".join((b"[", memoryview(commas)[:-1], b"]"))
        del commas
        n = _count_array(framed)
        if (
            n is not None
            and n == lines.count(b"\n")
            and (lines_are_values or _one_value_per_line(lines))
        ):
            return lines, n, memoryview(framed)[1:-1]
    lines, n = _scan(data, name)
    return lines, n, None


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # type: ignore[arg-type]


def _scan(data: bytes, name: str) -> tuple[bytes, int]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{name}: line {line}: invalid UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[str] = []
    pos, end = _WS.match(text, 0).end(), len(text)  # type: ignore[union-attr]
    while pos < end:
        try:
            value, stop = _DECODER.raw_decode(text, pos)
        except ValueError as exc:
            # A truncated value fails at the end of the text: name the line it is on, not the one after.
            at = min(getattr(exc, "pos", pos), len(text.rstrip()) - 1)
            line = text.count("\n", 0, at) + 1
            reason = getattr(exc, "msg", str(exc))
            raise UsageError(f"{name}: line {line}: invalid JSON: {reason}") from None
        except RecursionError:
            line = text.count("\n", 0, pos) + 1
            raise UsageError(f"{name}: line {line}: invalid JSON: nested too deeply") from None
        raw = text[pos:stop]
        out.append(
            raw
            if "\n" not in raw and "\r" not in raw
            else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        )
        nxt = _WS.match(text, stop).end()  # type: ignore[union-attr]
        if nxt == stop and nxt < end and _needs_separator(raw[-1], text[nxt]):
            line = text.count("\n", 0, nxt) + 1
            raise UsageError(f"{name}: line {line}: invalid JSON: values must be separated")
        pos = nxt
    if not out:
        return b"", 0
    return ("\n".join(out) + "\n").encode("utf-8"), len(out)


def _needs_separator(last: str, nxt: str) -> bool:
    """jq accepts ``{}{}`` and ``"a""b"`` but ``1 2`` needs the space: 12 would be one number."""
    word = re.compile(r"[0-9A-Za-z.+-]")
    return bool(word.match(last) and word.match(nxt))
