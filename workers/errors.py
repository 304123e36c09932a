"""The exception tree; each class maps to one exit code in :mod:`workers.exitcodes`."""

from __future__ import annotations

from workers import exitcodes


class WorkersError(Exception):
    """Root of every error this library raises on purpose."""

    exit_code = exitcodes.PROCESSING


class UsageError(WorkersError):
    """Raised when input (flags, shard items, count files, names, part files) is invalid."""

    exit_code = exitcodes.USAGE


class ProcessingError(WorkersError):
    """Raised when a user generator or processor fails or returns unserializable values."""

    exit_code = exitcodes.PROCESSING


class IncompleteError(WorkersError):
    """Raised by the fan-in when a shard is missing, unverified, or rows do not add up."""

    exit_code = exitcodes.INCOMPLETE


class StaleError(IncompleteError):
    """Raised when data comes from another generation or processor than the plan names."""


class TransientError(WorkersError):
    """Raised when the database or storage is unreachable, resets or times out."""

    exit_code = exitcodes.TRANSIENT
