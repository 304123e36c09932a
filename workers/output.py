"""stdout carries a step's declared output only (split's shard list, merge's document).

User code runs inside the step (a processor imported by split to pin it, a generator,
a library they call) and may print. While a step runs, :func:`redirected` points file
descriptor 1 at stderr, so nothing but the declared output can reach stdout, and makes
``sys.stdout`` a stream whose lines become the step's JSON log lines (event ``stdout``,
redacted like every other line). The declared output goes to :func:`declared`: the real
stdout, saved before the redirection.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

_declared: BinaryIO | None = None
_active = False


class _Lines(io.TextIOBase):
    """A text stream handing each complete line to ``emit`` (the rest when closed)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, _, self._pending = self._pending.partition("\n")
            self._emit(line)
        return len(text)

    def finish(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            self._emit(line)


def declared() -> BinaryIO:
    """Where a step writes its declared output: the real stdout."""
    stream = _declared if _active else getattr(sys.stdout, "buffer", None)
    if stream is None:  # the step started with fd 1 closed
        from workers.errors import UsageError

        raise UsageError("stdout is closed: there is nowhere to write the step's output")
    return stream


@contextlib.contextmanager
def redirected(emit: Callable[[str], None]) -> Iterator[None]:
    """For the duration: fd 1 is stderr, ``sys.stdout`` lines go to ``emit``."""
    global _declared, _active
    original = sys.stdout
    try:
        fd = original.fileno()
        original.flush()
    except (AttributeError, OSError, ValueError):
        fd = -1  # stdout is not a file (a test captured it) or closed: no descriptor to guard
    saved = -1
    if fd == 1:
        try:
            saved = os.dup(1)
        except OSError:  # fd 1 closed: nothing can reach stdout, and nothing can be declared
            saved = -1
    if saved >= 0:
        os.dup2(2, 1)
        _declared = os.fdopen(saved, "wb", closefd=False)
    else:
        _declared = getattr(original, "buffer", None)
    lines = _Lines(emit)
    sys.stdout, _active = lines, True
    try:
        yield
    finally:
        lines.finish()
        sys.stdout, _active = original, False
        if saved >= 0:
            assert _declared is not None
            _declared.flush()
            os.dup2(saved, 1)
            os.close(saved)
        _declared = None
