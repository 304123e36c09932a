"""Merge's copy loop: stream parts into one output, verified against their records or validated.

A part vouched for by a commit record is hashed and copied, never parsed: bytes
matching the sha256 and value count shard recorded are one ``orjson.dumps`` per
line, valid JSON Lines by construction. A part nobody vouches for (``--glob``,
paths) is validated block by block as ``jq -s`` reads it. Either way it is
written as JSON Lines or, newline to comma, as one array, and memory is a few
chunks whatever the parts' sizes.

The work of a verified copy is two sha256 passes, the part's and the output's (the
summary names the output's digest), and they are most of its cost. Each runs on a
thread of its own (hashlib drops the GIL), in write order, while this thread only
reads and writes: on two cores the copy costs about one sha256 pass, not two.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from workers import storage
from workers.errors import IncompleteError

CHUNK = 1 << 20
"""Bytes read at a time: a part is streamed, never held whole, so memory is a constant."""

BUFFERS = 3
"""Read buffers taking turns: one being filled while the two before it are still hashed."""

_NL_TO_COMMA = bytes.maketrans(b"\n", b",")


@dataclass(frozen=True)
class Part:
    """One input of the merge and what its commit record vouches for (nothing without a plan)."""

    url: str
    index: int | None = None
    rows: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    record: Any = None
    where: storage.Store | None = None
    """The part's location in the run's store, resolved once (None for a path given to merge)."""

    @property
    def label(self) -> str:
        """How errors name it: the shard's part name, or the path given on the command line."""
        return f"part-{self.index:05d}" if self.index is not None else self.url


class Output:
    """The output file and, when asked for, its sha256 made on a thread of its own in write order.

    :meth:`write` returns the hashing's future (None without a digest): a buffer that
    is written may be refilled only once that is done.
    """

    def __init__(self, writer: storage.AtomicWriter, *, digest: bool) -> None:
        self.writer = writer
        self._sha = hashlib.sha256() if digest else None
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256-output")
            if digest
            else None
        )
        self._last: Future[None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> Future[None] | None:
        self.writer.write(data)
        if self._pool is None or self._sha is None:
            return None
        # One worker: the updates run in the order the bytes were written.
        self._last = self._pool.submit(self._sha.update, data)
        return self._last

    def sha256(self) -> str:
        """The digest of everything written (waits for the hashing to catch up)."""
        if self._sha is None:
            raise RuntimeError("this output was opened without a digest")
        if self._last is not None:
            self._last.result()
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class Splice:
    """Writes whole lines of JSON values as JSON Lines or, newline to comma, as one array.

    Chunks may end anywhere; a newline that ends a chunk becomes a comma only once
    more values follow, so the array closes without a trailing comma.
    """

    def __init__(self, out: Output, fmt: str) -> None:
        self.out = out
        self.array = fmt == "json"
        self.comma = False  # a value was written and its separator is still owed
        if self.array:
            out.write(b"[")

    def write(
        self, chunk: bytes | bytearray | memoryview, joined: memoryview | None = None
    ) -> Future[None] | None:
        """``chunk`` of lines; ``joined``, when given, is the same lines without the final
        newline joined by commas (the JSON Lines validator makes it anyway).

        Returns the output hashing's future of the last write that may still read ``chunk``.
        """
        if not self.array:
            return self.out.write(chunk)
        if not chunk:
            return None
        if self.comma:
            self.out.write(b",")
        if joined is not None:
            self.comma = True
            return self.out.write(joined)
        # A new object: the output hashing never reads the caller's buffer in array mode.
        spliced = (bytes(chunk) if isinstance(chunk, memoryview) else chunk).translate(_NL_TO_COMMA)
        self.comma = chunk[-1] == 0x0A
        return self.out.write(memoryview(spliced)[:-1] if self.comma else spliced)

    def end_part(self, last: int) -> None:
        """After a part whose last byte was ``last``: one without a final newline still ends a line."""
        if last != 0x0A:
            if self.array:
                self.comma = True
            else:
                self.out.write(b"\n")

    def close(self) -> None:
        if self.array:
            self.out.write(b"]\n")


@contextlib.contextmanager
def _opened(part: Part) -> Iterator[tuple[io.RawIOBase | io.BufferedIOBase, int]]:
    try:
        f, size = storage.open_input(part.url, "part", block_size=4 * CHUNK)
    except FileNotFoundError:
        raise IncompleteError(f"{part.label} data file is missing: {part.url}") from None
    with f:
        yield f, size


def _digest(sha: Any, buf: bytearray, n: int) -> int:
    """Hash the first ``n`` bytes of a buffer and count their lines (on the part-hashing thread)."""
    sha.update(buf if n == len(buf) else memoryview(buf)[:n])
    return buf.count(b"\n", 0, n)


class _Verifier:
    """The part-hashing thread and the read buffers, made once per merge whatever the parts."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256-part")
        self.buffers = [bytearray(CHUNK) for _ in range(BUFFERS)]

    def __enter__(self) -> _Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()


def _copy_verified(part: Part, out: Splice, verifier: _Verifier) -> int:
    """Copy a part with a commit record, hashing and counting lines on the way; returns its rows.

    The check ends only after the copy, but the output is still a temp file then: a
    part that does not match its record fails the merge before anything is published.
    What is hashed is the very buffer that is written, so the check covers the bytes
    copied even if the file changed meanwhile.
    """
    label = part.label
    with _opened(part) as (f, size):
        if part.bytes is not None and size != part.bytes:
            raise IncompleteError(f"{label} is {size} bytes, its commit record says {part.bytes}")
        sha = hashlib.sha256()
        pool, buffers = verifier.pool, verifier.buffers
        # Per buffer: the futures that still read it (its line count, its output hashing).
        pending: list[tuple[Future[int], Future[None] | None] | None] = [None] * len(buffers)
        total = lines = turn = 0
        last = 0x0A
        try:
            while True:
                if (busy := pending[turn]) is not None:
                    pending[turn] = None
                    lines += busy[0].result()
                    if busy[1] is not None:
                        busy[1].result()
                buf = buffers[turn]
                n = f.readinto(buf)
                if not n:
                    break
                chunk = buf if n == CHUNK else memoryview(buf)[:n]
                total += n
                if part.bytes is not None and total > part.bytes:
                    break  # grew since it was measured: no need to read the rest
                counted = pool.submit(_digest, sha, buf, n)
                pending[turn] = (counted, out.write(chunk))
                last = buf[n - 1]
                turn = (turn + 1) % len(buffers)
        finally:
            for busy in pending:
                if busy is not None:
                    lines += busy[0].result()
                    if busy[1] is not None:
                        busy[1].result()
        out.end_part(last)
    if part.bytes is not None and total != part.bytes:
        raise IncompleteError(f"{label} is {total} bytes, its commit record says {part.bytes}")
    if sha.hexdigest() != part.sha256:
        raise IncompleteError(f"{label} does not match the sha256 of its commit record")
    rows = lines + (last != 0x0A)
    if part.rows is not None and rows != part.rows:
        raise IncompleteError(
            f"{label} holds {rows} JSON values, its commit record says {part.rows}"
        )
    return rows


def _copy_validated(part: Part, out: Splice) -> int:
    """Copy a part nobody vouches for, validating it block by block the way ``jq -s`` reads it."""
    from workers.jsonparts import BLOCK, JsonLines  # deferred: plan mode never parses

    parser = JsonLines(part.url)
    with _opened(part) as (f, _):
        while chunk := f.read(BLOCK):
            for lines, _n, joined in parser.feed(chunk):
                _wait(out.write(lines, joined))
        for lines, _n, joined in parser.finish():
            _wait(out.write(lines, joined))
    return parser.values


def _wait(hashing: Future[None] | None) -> None:
    # The validator's blocks are fresh objects, but keep the digest's memory bounded too.
    if hashing is not None:
        hashing.result()


def write_merged(parts: Sequence[Part], out: Output, fmt: str) -> int:
    """Stream every part into ``out``, verifying each against its record; returns the value count.

    Memory is a few chunks whatever the parts' sizes: nothing is held whole.
    """
    splice = Splice(out, fmt)
    total = 0
    verified = any(part.sha256 is not None for part in parts)
    with _Verifier() if verified else contextlib.nullcontext() as verifier:
        for part in parts:
            if verifier is not None and part.sha256 is not None:
                total += _copy_verified(part, splice, verifier)
            else:
                total += _copy_validated(part, splice)
    splice.close()
    return total
