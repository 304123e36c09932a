"""The docs pages as a reader sees them: docs/*.md with the reference markers expanded.

Tests that check what the docs claim (tables, commands, figures) read pages through
:func:`page`, so a generated table (docs/hooks/reference.py) is checked as rendered.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "hooks"))

import reference  # noqa: E402  (docs/hooks/reference.py)


def path(name: str) -> Path:
    """``docs/NAME`` (e.g. ``reference/exit-codes.md``)."""
    return DOCS / name


def page(name: str) -> str:
    """``docs/NAME`` with its ``<!-- reference:... -->`` markers replaced by what they render."""
    return str(reference.render(path(name).read_text()))
