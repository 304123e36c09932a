"""Template annotations the local runner honours beyond Argo's own fields.

``workers.dev/resume: rerun`` makes ``--resume`` run a succeeded pod step again (a step whose
result depends on code the user may have fixed since); every other succeeded step is kept, as
``argo retry`` keeps it. It lives in the model layer because pods decide on it and resume
reports it.
"""

from __future__ import annotations

from typing import Any

RERUN = ("workers.dev/resume", "rerun")
"""The template annotation that makes ``--resume`` run a succeeded step again."""


def keeps(template: dict[str, Any]) -> bool:
    """Whether ``--resume`` keeps a succeeded pod step of this template instead of running it."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(RERUN[0]) != RERUN[1])
