"""The exception tree; each class maps to one exit code in :mod:`workers.exitcodes`."""

from __future__ import annotations

from workers import exitcodes


class WorkersError(Exception):
    """Root of every error this library raises on purpose."""

    exit_code = exitcodes.PROCESSING
    cause: str | None = None
    """Which row of :data:`workers.failures.CAUSES` this is; None means the class's default."""


class UsageError(WorkersError):
    """Raised when input (flags, shard items, count files, names, part files) is invalid."""

    exit_code = exitcodes.USAGE


class ProcessingError(WorkersError):
    """Raised when a user generator or processor fails or returns unserializable values."""

    exit_code = exitcodes.PROCESSING


class IncompleteError(WorkersError):
    """Raised by the fan-in when a shard is missing, unverified, or rows do not add up."""

    exit_code = exitcodes.INCOMPLETE


class TransientError(WorkersError):
    """Raised for faults that clear by themselves: unreachable, overloaded, full, the deadline."""

    exit_code = exitcodes.TRANSIENT


class InternalError(WorkersError):
    """Raised for an exception workers does not expect: a bug in workers itself."""

    exit_code = exitcodes.INTERNAL
