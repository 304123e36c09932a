"""Read a part file the way ``jq -s`` does: any JSON values separated by optional whitespace.

The result is JSON Lines (one compact value per line) plus the value count, from
which merge writes either an array or JSON Lines. The common case, one value per
line, is validated in a single orjson call over the whole part.
"""

from __future__ import annotations

import json
import re

import orjson

from workers.errors import UsageError

_WS = re.compile(r"[ \t\n\r]*")


def to_json_lines(data: bytes, name: str) -> tuple[bytes, int]:
    """Return (JSON Lines, value count) for a part; invalid JSON is a UsageError naming file and line."""
    if not data:
        return b"", 0
    body = data[:-1] if data.endswith(b"\n") else data
    if body and b"\r" not in body and not body.startswith(b"\n") and b"\n\n" not in body:
        joined = body.replace(b"\n", b",")
        try:
            values = orjson.loads(b"[" + joined + b"]")
        except orjson.JSONDecodeError:
            pass
        else:
            # Equal counts prove every newline separated two top-level values: a comma
            # that landed inside a string (a raw newline there) would merge two lines.
            if len(values) == body.count(b"\n") + 1:
                return body + b"\n", len(values)
    return _scan(data, name)


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
