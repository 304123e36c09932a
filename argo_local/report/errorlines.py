"""What a failed attempt said: its own error line, next to Argo's ``main: Error (exit code 75)``.

Argo's message for a failed pod names only its exit code; the step's own reason is in its log.
A workers step (and any step that logs JSON lines on stderr) ends with one line saying why
(``{"level": "error", "message": "cannot connect to PostgreSQL: Connection refused"}``), so
the runner shows that line's message with each failed attempt, live (the RETRY and FAIL
lines) and in the summary, whose headline names the step that failed rather than the nodes
omitted after it. run.json keeps Argo's messages unchanged. Everything shown here passes
through the runner's redaction (progress.py, report.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argo_local.engine.run import Run
    from argo_local.model.nodes import Attempt, Node

_MAX = 300
_FAILED = ("Failed", "Error")


_QUIET = ("trace", "debug", "info", "notice")


def error_line(attempt: Attempt) -> str:
    """The message of the attempt's last JSON log line that has one ("message", else "msg",
    else a string "error"), on one line and at most :data:`_MAX` characters; "" when none.
    A line logged at an informational level ("level": "info") is never the reason."""
    for event in reversed(attempt.events):
        level = str(event.get("level") or event.get("severity") or "").lower()
        if level in _QUIET:
            continue
        for key in ("message", "msg", "error"):
            value = event.get(key)
            if isinstance(value, str) and value.strip():
                text = " ".join(value.split())
                return text if len(text) <= _MAX else text[: _MAX - 3] + "..."
    return ""


def with_error_line(message: str, attempt: Attempt) -> str:
    """``message`` followed by the attempt's own error line, when it has one not already in it."""
    line = error_line(attempt)
    if not line or line in message:
        return message
    return f"{message}: {line}" if message else line


def attempt_lines(node: Node, limit: int = 5) -> list[str]:
    """One line per failed attempt of a retried pod (the last ``limit``): its exit and why."""
    failed = [a for a in node.attempts if a.phase in _FAILED]
    if len(node.attempts) < 2 or not failed:
        return []
    lines = [f"attempt {a.number + 1}: {with_error_line(a.message, a)}" for a in failed[-limit:]]
    if len(failed) > limit:
        lines.insert(0, f"... {len(failed) - limit} earlier failed attempts (see run.json)")
    return lines


def failed_steps(run: Run) -> list[Node]:
    """The pods that failed, first to finish first (the cause, before what it stopped)."""
    pods = [n for n in run.nodes.values() if n.type == "Pod" and n.phase in _FAILED]
    return sorted(pods, key=lambda n: (n.finished or 0.0, n.name))


def headline(run: Run, phase: str, message: str) -> str:
    """The summary's first line: the workflow's phase and, when a pod failed, which one and
    why (its last attempt's own error line); else the workflow's message."""
    head = f"workflow {run.name}: {phase}"
    if phase == "Succeeded":
        return head
    failed = failed_steps(run)
    if not failed:
        return head + (f" ({message})" if message else "")
    first = failed[0]
    last = first.attempts[-1] if first.attempts else None
    tries = len(first.attempts)
    what = f"step {first.display} failed" + (f" after {tries} attempts" if tries > 1 else "")
    if last is not None:
        why = error_line(last)
        if why:
            code = f" (exit code {last.exit_code})" if last.exit_code is not None else ""
            what += f"{code}: {why}"
        elif last.message or first.message:
            what += f": {last.message or first.message}"
    more = f" (+{len(failed) - 1} more failed)" if len(failed) > 1 else ""
    return f"{head}: {what}{more}"
