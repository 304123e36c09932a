"""Column values as JSON: one documented mapping per column type, on both backends.

PostgreSQL converts on the server: ``row_to_json``/``to_json`` keep numeric's exact
digits, write dates and times as ISO 8601 and arrays as JSON arrays, so a shard of a
real table streams as text like the JSON-column fast path. Only bytea (base64) and
interval (ISO 8601 duration, through ``IntervalStyle``) need an expression or a setting;
timestamptz is written in UTC so every pod writes the same bytes.

SQLite has no column types, only declared names and five storage classes (integer,
real, text, blob, NULL). Values pass to orjson as they come; a converter is built once
per column only where the declared type asks for one (BOOLEAN, NUMERIC/DECIMAL, JSON),
and values orjson cannot write exactly (bytes, non-finite floats) are converted only
in the batches that hold them.

A column whose type has no mapping is an exit-2 error naming table, column and type,
before any row is read: the default processor is not the user's code.
:data:`TYPE_TABLE` is what docs/reference/column-types.md shows (a test compares them).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime
    from decimal import Decimal

import orjson

from workers import failures

# ----------------------------------------------------------------------------- the table

TYPE_TABLE: tuple[tuple[str, str, str], ...] = (
    # (PostgreSQL types, SQLite declared types, JSON)
    ("smallint, integer, bigint", "INTEGER, INT, BIGINT", "number"),
    (
        "numeric, decimal",
        "NUMERIC, DECIMAL (SQLite stores these as INTEGER or REAL: `1.50` is `1.5` once inserted)",
        'number with the exact stored digits (`1.50` stays `1.50`, no float rounding); NaN, ±Infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`',
    ),
    (
        "real, double precision",
        "REAL, FLOAT, DOUBLE",
        'number (shortest exact form); NaN, ±Infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`',
    ),
    ("boolean", "BOOLEAN, BOOL (0 or 1)", "`true` / `false`"),
    ("text, varchar, char(n), enum types", "TEXT, VARCHAR, CHAR, CLOB", "string"),
    ("uuid", "UUID", 'string `"8c2d…-…"`'),
    ("date", "DATE (as stored)", 'string `"2024-01-02"`'),
    ("time", "TIME (as stored)", 'string `"12:34:56.789"`'),
    ("timestamp", "TIMESTAMP, DATETIME (as stored)", 'string `"2024-01-02T03:04:05.678"`'),
    ("timestamptz", "—", 'string in UTC with its offset `"2024-01-02T01:04:05+00:00"`'),
    ("interval", "—", 'ISO 8601 duration string `"P1Y2M3DT4H5M6.5S"`'),
    ("bytea", "BLOB (any blob value)", "base64 string (RFC 4648, no line breaks)"),
    ("json, jsonb", "JSON (text holding JSON)", "the JSON value itself"),
    (
        "arrays of the types above (not bytea), nested, NULL elements",
        "—",
        "JSON array (nested arrays nest; NULL elements are `null`)",
    ),
    ("NULL of any type", "NULL", "`null`"),
)
"""What each column type becomes in a part's JSON, as docs/reference/column-types.md shows it."""

# ------------------------------------------------------------------------ PostgreSQL

PG_SUPPORTED = frozenset(
    {
        "int2",
        "int4",
        "int8",
        "numeric",
        "float4",
        "float8",
        "bool",
        "text",
        "varchar",
        "bpchar",
        "uuid",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "interval",
        "bytea",
        "json",
        "jsonb",
    }
)
"""Base type names (``pg_type.typname``) with a mapping; enums map to strings too."""

_PG_TEXT = frozenset({"text", "varchar", "bpchar"})
_PG_JSON = frozenset({"json", "jsonb"})
_PG_TEMPORAL = frozenset({"date", "timestamp", "timestamptz"})

PG_COLUMNS_SQL = (
    # Domains resolve to their base type, arrays to their element type.
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory = 'A', "
    "e.typname, e.typtype "
    "FROM pg_attribute a "
    "JOIN pg_type t0 ON t0.oid = a.atttypid "
    "JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END "
    "JOIN pg_type e ON e.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END "
    "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)
"""Name, declared type, array or not, base type name and kind of each column of a table."""

PG_SESSION_SQL = (
    "SELECT set_config('IntervalStyle', 'iso_8601', true), set_config('TimeZone', 'UTC', true)"
)
"""Transaction-local settings the server-side conversion relies on (interval, timestamptz)."""


@dataclass(frozen=True)
class PgColumn:
    name: str
    type: str  # as declared: "numeric(10,2)", "integer[]"
    array: bool
    base: str  # pg_type.typname of the base or element type
    kind: str  # pg_type.typtype: b(ase), e(num), c(omposite), r(ange), d(omain), ...

    @property
    def supported(self) -> bool:
        if self.kind == "e":
            return True
        return self.base in PG_SUPPORTED and not (self.array and self.base == "bytea")

    @property
    def is_json(self) -> bool:
        return self.base in _PG_JSON and not self.array

    @property
    def is_text(self) -> bool:
        return self.base in _PG_TEXT and not self.array

    @property
    def is_temporal(self) -> bool:
        return self.base in _PG_TEMPORAL


def pg_column(row: Sequence[Any]) -> PgColumn:
    return PgColumn(str(row[0]), str(row[1]), bool(row[2]), str(row[3]), str(row[4]))


def quote_any(name: str) -> str:
    """Quote any column name the catalog returns (names with quotes included)."""
    return '"' + name.replace('"', '""') + '"'


def check_pg(table: str, columns: Sequence[PgColumn]) -> None:
    """Exit 2 before any row is read if a column has no JSON mapping."""
    bad = [c for c in columns if not c.supported]
    if bad:
        raise unsupported(table, [(c.name, c.type) for c in bad])


def unsupported(table: str, columns: Sequence[tuple[str, str]], detail: str = "") -> Exception:
    named = ", ".join(f"{name!r} ({kind})" for name, kind in columns)
    plural = "s" if len(columns) > 1 else ""
    return failures.error(
        "column-type",
        f"table {table!r}: column{plural} {named} "
        + (detail or f"{'have types' if plural else 'has a type'} with no JSON mapping"),
    )


def pg_expr(c: PgColumn) -> str:
    """The column as the value ``to_json`` writes the documented way."""
    q = quote_any(c.name)
    if c.base == "bytea" and not c.array:
        # encode() breaks base64 lines at 76 characters; a JSON string has none.
        return f"translate(encode({q}, 'base64'), E'\\n', '')"
    return q


def pg_row_sql(columns: Sequence[PgColumn], table_sql: str, where: str, key: str) -> str:
    """The key, then every column of the row as one JSON object text, in key order (the key
    first, as every shard read has it: the last key read is its checkpoint)."""
    exprs = ", ".join(
        (pg_expr(c) + " AS " + quote_any(c.name)) if pg_expr(c) != quote_any(c.name) else pg_expr(c)
        for c in columns
    )
    return (
        f"SELECT workers_row_.{key}, row_to_json(workers_row_.*)::text FROM (SELECT {exprs} "
        f"FROM {table_sql}{where}) workers_row_ ORDER BY workers_row_.{key}"
    )


def pg_value_sql(c: PgColumn) -> str:
    """One column's value as JSON text: json as stored, text validated as JSON, else to_json."""
    q = quote_any(c.name)
    if c.is_json:
        return f"{q}::text"
    if c.is_text:
        # A text data column holds JSON text (as json does); the cast rejects text that is not.
        return f"{q}::json::text"
    return f"to_json({pg_expr(c)})::text"


def pg_load_error(table: str, columns: Sequence[PgColumn], exc: BaseException) -> Exception:
    """psycopg could not make a Python value (infinity or a year outside 1..9999) for a processor."""
    temporal = [(c.name, c.type) for c in columns if c.is_temporal] or [
        (c.name, c.type) for c in columns
    ]
    return unsupported(
        table,
        temporal,
        f"hold a value Python cannot represent for --processor ({failures.first_line(exc)}); "
        "without --processor such values are written as strings",
    )


# --------------------------------------------------------------------------- SQLite


def _affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html, 3.1) plus our names."""
    t = declared.upper()
    if "BOOL" in t:
        return "bool"
    if "JSON" in t:
        return "json"
    if "INT" in t:
        return "int"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "text"
    if not t or "BLOB" in t:
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "real"
    if "NUM" in t or "DEC" in t:
        return "numeric"
    return "other"  # DATE, UUID, ...: NUMERIC affinity, values by their storage class


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Column:
    """One column of a row read through SQLAlchemy, with its declared type."""

    name: str
    declared: str

    @property
    def affinity(self) -> str:
        return _affinity(self.declared)


class RowEncoder:
    """JSON Lines blocks from rows of a table read through SQLAlchemy (SQLite by default).

    ``data`` set: each row is that one column's value, and a text (or JSON, or untyped)
    data column holds JSON text, as produce writes it; otherwise each row is an object
    of every column.
    """

    def __init__(self, table: str, columns: Sequence[Column], data: bool) -> None:
        self.table = table
        self.columns = list(columns)
        self.names = [c.name for c in columns]
        self.data = data
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        for i, c in enumerate(self.columns):
            fn = self._converter(c)
            if fn is not None:
                self._converters.append((i, fn))

    def _converter(self, c: Column) -> Callable[[Any], Any] | None:
        aff = c.affinity
        if aff == "json" or (self.data and aff in ("text", "blob")):
            return functools.partial(self._json_text, c)
        if aff == "bool":
            return functools.partial(self._bool, c)
        if aff == "numeric":
            return functools.partial(self._numeric, c)
        return None

    def _json_text(self, c: Column, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        try:
            orjson.loads(v)  # only to check it: the text itself keeps its digits (2.50)
        except orjson.JSONDecodeError as exc:
            raise unsupported(
                self.table,
                [(c.name, c.declared or "no declared type")],
                f"holds text that is not JSON ({exc})",
            ) from None
        # Raw line breaks in valid JSON lie between tokens: spaces keep the value on one line.
        return orjson.Fragment(v.replace("\r", " ").replace("\n", " "))

    def _bool(self, c: Column, v: Any) -> Any:
        if v is None or v is True or v is False:
            return v
        if v == 0 or v == 1:
            return bool(v)
        raise unsupported(self.table, [(c.name, c.declared)], f"holds {v!r}, not 0 or 1")

    def _numeric(self, c: Column, v: Any) -> Any:
        if isinstance(v, str):
            s = v.strip()
            if _JSON_NUMBER.fullmatch(s):
                return orjson.Fragment(s)  # the digits as stored, no float rounding
            raise unsupported(self.table, [(c.name, c.declared)], f"holds {v!r}, not a number")
        return v

    def block(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """One JSON Lines block for ``rows`` (tuples in column order)."""
        if self._converters:
            conv = self._converters
            fixed = []
            for r in rows:
                lst = list(r)
                for i, fn in conv:
                    lst[i] = fn(lst[i])
                fixed.append(lst)
            rows = fixed
        dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        names = self.names
        objs: list[Any] = (
            [r[0] for r in rows] if self.data else [dict(zip(names, r, strict=True)) for r in rows]
        )
        try:
            out = b"".join([dumps(o, option=opt) for o in objs])
        except TypeError:
            out = None  # a value orjson has no form for (bytes): convert this batch
        # orjson writes NaN and ±Infinity as null: only a batch with a null may hold one.
        if out is None or (b"null" in out and _has_non_finite(rows)):
            out = b"".join([dumps(self._exact(o), option=opt) for o in objs])
        return out

    def _exact(self, obj: Any) -> Any:
        if self.data:
            return self._value(self.names[0], obj)
        return {k: self._value(k, v) for k, v in obj.items()}

    def _value(self, name: str, v: Any) -> Any:
        try:
            return exact(v)
        except TypeError:
            declared = next((c.declared for c in self.columns if c.name == name), "")
            raise unsupported(
                self.table,
                [(name, declared or "no declared type")],
                f"holds a {type(v).__name__} value, which has no JSON mapping",
            ) from None


def _has_non_finite(rows: Sequence[Sequence[Any]]) -> bool:
    isfinite = math.isfinite
    return any(type(v) is float and not isfinite(v) for r in rows for v in r)


# ------------------------------------------------------------------- Python values


def exact(v: Any) -> Any:
    """``v`` with every value orjson would write inexactly or not at all mapped the
    documented way; TypeError for a value with no mapping."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    import datetime  # deferred, as in default(): only batches holding such values get here

    if isinstance(v, float):
        return v if math.isfinite(v) else _non_finite(v)
    if isinstance(v, dict):
        return {k: exact(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [exact(x) for x in v]
    if isinstance(v, (datetime.date, datetime.time, orjson.Fragment)):
        return v
    return default(v)


def _non_finite(v: float | Decimal) -> str:
    if v != v:
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def default(v: Any) -> Any:
    """orjson's ``default`` hook: the mapping for Python values orjson has no form for
    (Decimal, bytes, timedelta, UUID-like); TypeError otherwise."""
    import datetime  # deferred: a shard that never meets such a value never imports these
    from decimal import Decimal

    if isinstance(v, Decimal):
        if not v.is_finite():
            return _non_finite(v)
        return orjson.Fragment(str(v))  # always a valid JSON number: 1.50, -0, 1E+2, 1E-7
    if isinstance(v, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, datetime.timedelta):
        return iso_duration(v)
    import uuid

    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(f"Type is not JSON serializable: {type(v).__name__}")


def iso_duration(td: datetime.timedelta) -> str:
    """ISO 8601 duration of a timedelta: days, then hours, minutes, seconds (one sign)."""
    import datetime

    sign = "-" if td < datetime.timedelta(0) else ""
    td = abs(td)
    hours, rest = divmod(td.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    secs = (
        f"{seconds}.{td.microseconds:06d}".rstrip("0").rstrip(".")
        if td.microseconds
        else str(seconds)
    )
    date = f"{td.days}D" if td.days else ""
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n) + (
        f"{secs}S" if seconds or td.microseconds else ""
    )
    if not date and not clock:
        return "PT0S"
    return f"{sign}P{date}" + (f"T{clock}" if clock else "")
