"""Typed shard keys: which key columns can cut a table, and how their values travel as JSON.

``split --from-db`` cuts a table at key values the database picks (exact quantiles over the
key's index, see :func:`workers.db.cuts_sql`); a shard then reads ``lo <= key < hi`` (half-open,
an end left open where the plan says null). Python never orders or compares two keys: the
database does, in the column's own collation, so a text key splits as the server sorts it.
A value only travels as JSON, losslessly, and is handed back to the database for comparison:

* PostgreSQL: integers as JSON numbers; numeric as its exact decimal digits (a string);
  text, varchar and char as strings; uuid as its text; date, timestamp and timestamptz as
  ISO 8601 (timestamptz with its offset). The bound is cast back to the column's type in SQL.
* SQLite: each value as its storage class holds it (integer, real or text); SQLite's own
  affinity rules then compare it with the column exactly as the stored value.

The plan records the key's type (``kind``): a shard refuses to read a column whose type
changed since split.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from dataclasses import dataclass
from typing import Any

from workers.errors import UsageError

KeyValue = int | float | str
"""A key value as the plan and the checkpoints hold it (JSON)."""

PG_KINDS = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "numeric": "numeric",
    "text": "text",
    "varchar": "text",
    "bpchar": "text",
    "uuid": "uuid",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
}
"""PostgreSQL base types (``pg_type.typname``) a key may have, and the kind the plan records."""

SQLITE_KINDS = ("integer", "text", "real", "numeric", "blob")
"""SQLite's column affinities (the kind a SQLite key records); a value of any storage class
but BLOB can be a bound."""

KINDS = frozenset({*PG_KINDS.values(), *SQLITE_KINDS})
"""Every kind a plan may name."""

PG_TYPES_TEXT = (
    "smallint, integer, bigint, numeric, text, varchar, char, uuid, date, timestamp, timestamptz"
)
"""What an error says a PostgreSQL key may be."""

_TEMPORAL = frozenset({"date", "timestamp", "timestamptz"})


@dataclass(frozen=True)
class KeyType:
    """The key column as split found it: its kind, declared type and collation, and the cast
    that turns a JSON bound back into the column's type (PostgreSQL; None: bound as is)."""

    kind: str
    declared: str
    collation: str | None = None
    cast: str | None = None

    def to_dict(self, column: str) -> dict[str, Any]:
        d: dict[str, Any] = {"column": column, "type": self.kind, "declared": self.declared}
        if self.collation:
            d["collation"] = self.collation
        d["ranges"] = "[lo, hi): lo included, hi excluded, null an open end"
        return d


@dataclass(frozen=True)
class Bound:
    """One end of a range as the database compares it: the JSON value, whether the range
    includes it, and the SQL type it is cast to (None: bound as it is)."""

    value: KeyValue
    inclusive: bool
    cast: str | None = None


def pg_key_type(
    table: str, column: str, base: str, declared: str, array: bool, collation: str | None
) -> KeyType:
    """The key type of a PostgreSQL column, or exit 2 naming what a key may be."""
    kind = None if array else PG_KINDS.get(base)
    if kind is None:
        raise UsageError(
            f"table {table!r}: key column {column!r} ({declared}) cannot cut a table into "
            f"ranges: a key must be one of {PG_TYPES_TEXT} (or a view's column cast to one)"
        )
    cast = None if kind == "integer" else ("text" if base == "text" else base)
    return KeyType(kind, declared, collation, cast)


def pg_value_sql(kind: str, expr: str) -> str:
    """SQL for ``expr``'s lossless JSON form: integers and text as they are, numeric and uuid
    as their text, dates and times as ISO 8601 (timestamptz with its offset)."""
    if kind in ("integer", "text"):
        return expr
    if kind in _TEMPORAL:
        return f"(to_json({expr}) #>> '{{}}')"
    return f"({expr})::text"


def sqlite_affinity(declared: str) -> str:
    """SQLite's affinity of a declared column type (the rules of its documentation, 3.1)."""
    d = declared.upper()
    if "INT" in d:
        return "integer"
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not d or "BLOB" in d:
        return "blob"
    if any(s in d for s in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


def encode(value: Any) -> KeyValue:
    """A key value the driver returned, as JSON that binds back to the same value."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"key value {value} has no exact JSON form: a key must be finite")
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")  # the exact digits, never an exponent
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise UsageError(
        f"key value of type {type(value).__name__} cannot bound a range "
        "(a key is a number, text, uuid, date or timestamp)"
    )


def check_value(value: Any, what: str) -> KeyValue | None:
    """A bound as an item holds it: null, an integer, a finite number or a string."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"shard item: {what!r} must be a number, a string or null, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"shard item: {what!r} must be finite")
    return value


def shown(value: Any, limit: int = 120) -> str:
    """A key value for a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clipped(value: KeyValue, limit: int = 120) -> KeyValue:
    """A key value for a log field: itself, or a long text's start and an ellipsis."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value
