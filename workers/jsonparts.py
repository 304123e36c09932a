"""Read a part file the way ``jq -s`` does: any JSON values separated by optional whitespace.

The result is JSON Lines (one compact value per line) plus the value count, from
which merge writes either an array or JSON Lines. It is made in blocks of whole
lines (about :data:`BLOCK` bytes), so memory is bounded by the block, not by the
part: :class:`JsonLines` takes the part's bytes in chunks of any size and gives
back validated blocks.

The common case, one value per line, is validated a block at a time in one call:
simdjson when it is installed (it validates without building Python objects,
several times faster than orjson), else orjson. A block the fast path refuses
goes the slow way, value by value; a value that runs past the end of its block
(a pretty-printed part) is carried into the next one. Both ways give the same
values and the same errors, naming the file and the line. The only thing held
whole is a single value longer than a block: memory is bounded by the largest
value, never by the size of the part.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from workers.errors import UsageError

BLOCK = 256 << 10
"""Bytes of whole lines validated at once: large enough that the per-call cost vanishes,
small enough that the few copies a block needs (and simdjson's buffers, a few times the
block) stay well under the merge's memory bound, and far under simdjson's
16,777,215-element limit on one array. Measured on 100 MB of shard-shaped rows: peak
RSS 32 MB at 256 KiB, 40 MB at 512 KiB, 52 MB at 1 MiB, at the same speed."""

_WS = re.compile(r"[ \t\n\r]*")

try:
    import simdjson as _simdjson
except ImportError:  # optional: orjson validates too, only slower
    _simdjson = None  # type: ignore[assignment]

_local = threading.local()


def _parser() -> Any:
    parser: Any = getattr(_local, "parser", None)
    if parser is None:
        # One parser per thread: it keeps its buffers between blocks, and is not thread-safe.
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


def _fast(lines: bytes) -> tuple[int, memoryview] | None:
    """(count, values joined by commas) when ``lines`` (ending with a newline) is one value per line.

    The joined form is what a JSON array of the block holds between its brackets,
    so merge can write it without another pass over the data.
    """
    # On ``lines`` (one final newline) these are the tests on the body without it:
    # no CR, no empty line anywhere (a trailing one included), not empty.
    if len(lines) < 2 or b"\r" in lines or lines.startswith(b"\n") or b"\n\n" in lines:
        return None
    commas = lines.replace(b"\n", b",")
    # Two copies of the block in all (no slice of the body): "[" + values + "]".
    framed = b"".join((b"[", memoryview(commas)[:-1], b"]"))
    del commas
    n = _count_array(framed)
    if n is None or n != lines.count(b"\n") or not _one_value_per_line(lines):
        return None
    return n, memoryview(framed)[1:-1]


class JsonLines:
    """Validates one part fed in chunks; yields ``(json_lines, count, joined)`` per block.

    ``json_lines`` ends with a newline and holds ``count`` values, one per line;
    ``joined`` is the same values joined by commas when the fast path made it
    (else None). Call :meth:`feed` with each chunk, then :meth:`finish`; a
    :class:`UsageError` names the file and line of the first invalid value.
    """

    def __init__(self, name: str, block: int = BLOCK) -> None:
        self.name = name
        self.block = block
        self.values = 0
        self._pieces: list[bytes] = []  # bytes not yet validated, from a value boundary on
        self._size = 0
        self._tail = 0  # of those, how many are a value that ran past its block (0: none)
        self._line = 1  # line number of the first byte in _pieces
        self._start = True  # nothing validated yet: a BOM may come

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes, int, memoryview | None]]:
        if not chunk:
            return
        self._pieces.append(chunk)
        self._size += len(chunk)
        # Wait for a block's worth; after a carried value, for as much again as it holds,
        # so a value spanning many blocks is decoded a logarithmic number of times.
        if self._size < max(self.block, 2 * self._tail) or b"\n" not in chunk:
            return
        data = b"".join(self._pieces)
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        self._pieces, self._size = ([rest], len(rest)) if rest else ([], 0)
        yield from self._validate(data[:cut] if rest else data, final=False)

    def finish(self) -> Iterator[tuple[bytes, int, memoryview | None]]:
        data = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        if data:
            yield from self._validate(data, final=True)

    def _validate(
        self, data: bytes, *, final: bool
    ) -> Iterator[tuple[bytes, int, memoryview | None]]:
        if not self._tail:
            lines = data if data.endswith(b"\n") else data + b"\n"
            fast = _fast(lines)
            if fast is not None:
                n, joined = fast
                self._start = False
                self._line += n
                self.values += n
                yield lines, n, joined
                return
        out, n, rest = self._scan(data, final)
        self._start = False
        if rest:
            # A value still open at the end of the block: validate it again with what follows.
            self._pieces.insert(0, rest)
            self._size += len(rest)
            self._tail = len(rest)
        else:
            self._tail = 0
        if n:
            self.values += n
            yield out, n, None

    def _scan(self, data: bytes, final: bool) -> tuple[bytes, int, bytes]:
        """The slow way: value by value with ``json``; returns (lines, count, unfinished tail)."""
        name = self.name
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = self._line + data.count(b"\n", 0, exc.start)
            raise UsageError(f"{name}: line {line}: invalid UTF-8") from None
        if self._start and text.startswith("\ufeff"):
            text = text[1:]
        out: list[str] = []
        pos, end = _WS.match(text, 0).end(), len(text)  # type: ignore[union-attr]
        while pos < end:
            try:
                value, stop = _DECODER.raw_decode(text, pos)
            except ValueError as exc:
                where = getattr(exc, "pos", pos)
                last = len(text.rstrip()) - 1
                if not final and where > last:
                    # Blocks end at line ends, which no string spans: a value failing at the
                    # end of its block may just go on in the next one.
                    self._line += text.count("\n", 0, pos)
                    return _joined(out), len(out), text[pos:].encode("utf-8")
                # A truncated value fails at the end of the text: name the line it is on, not the one after.
                line = self._line + text.count("\n", 0, min(where, last))
                reason = getattr(exc, "msg", str(exc))
                raise UsageError(f"{name}: line {line}: invalid JSON: {reason}") from None
            except RecursionError:
                line = self._line + text.count("\n", 0, pos)
                raise UsageError(f"{name}: line {line}: invalid JSON: nested too deeply") from None
            raw = text[pos:stop]
            if "\\u" in raw and _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
                # json decodes "\ud800" to a string UTF-8 cannot encode; jq -s . and the fast
                # path (orjson, simdjson) refuse it
                line = self._line + text.count("\n", 0, pos)
                raise UsageError(f"{name}: line {line}: invalid JSON: a lone surrogate escape")
            out.append(
                raw
                if "\n" not in raw and "\r" not in raw
                else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            )
            nxt = _WS.match(text, stop).end()  # type: ignore[union-attr]
            if nxt == stop and nxt < end and _needs_separator(raw[-1], text[nxt]):
                line = self._line + text.count("\n", 0, nxt)
                raise UsageError(f"{name}: line {line}: invalid JSON: values must be separated")
            pos = nxt
        self._line += text.count("\n")
        return _joined(out), len(out), b""


def _joined(values: list[str]) -> bytes:
    return ("\n".join(values) + "\n").encode("utf-8") if values else b""


def json_lines(
    chunks: Iterable[bytes], name: str
) -> Iterator[tuple[bytes, int, memoryview | None]]:
    """Validated blocks of a part given as chunks of bytes: see :class:`JsonLines`."""
    parser = JsonLines(name)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()


def to_json_lines(data: bytes, name: str) -> tuple[bytes, int]:
    """Return (JSON Lines, value count) for a part; invalid JSON is a UsageError naming file and line."""
    blocks = [(lines, n) for lines, n, _ in json_lines((data,), name)]
    return b"".join(lines for lines, _ in blocks), sum(n for _, n in blocks)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""The start of a ``\\uD800``-``\\uDFFF`` escape (or of a literal backslash before such text:
the decoded value then decides)."""

_SURROGATES = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a string (a key too) with a lone surrogate: json joins a
    valid escaped pair into one character, so any surrogate left is a lone one."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if _SURROGATES.search(v):
                return True
        elif isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return False


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # type: ignore[arg-type]

_WORD = re.compile(r"[0-9A-Za-z.+-]")


def _needs_separator(last: str, nxt: str) -> bool:
    """jq accepts ``{}{}`` and ``"a""b"`` but ``1 2`` needs the space: 12 would be one number."""
    return bool(_WORD.match(last) and _WORD.match(nxt))
