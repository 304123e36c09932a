"""Real tables: every documented column type, NULLs included, through split and shard.

Each case makes a table ``(key, v TYPE)`` on a real PostgreSQL or SQLite database,
inserts its values and a NULL, and runs the steps as processes: shard with the column
as ``--data-column`` and with ``--data-column ''`` (every column), and split
``--from-db``. Output is compared value by value; numbers compare by their digits
(``1.50`` is not ``1.5``). One table with all the types at once goes through split and
every shard of its plan, and jq reads the parts. Types with no mapping are exit 2
naming table, column and type; a processor's own unserializable output stays exit 3.
The README's "Column types" table is compared with the code's.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sqlite3
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH

from workers import values

ROOT = Path(__file__).resolve().parent.parent
WHOLE = '{"index":0,"lo":null,"hi":null,"rows":null}'
TEXT = object()  # the value is JSON text: a string in a row, the value itself as a data column


def parse(text: str) -> Any:
    """JSON with numbers compared by their digits: 1.50 and 1.5 differ, 1e300 and 1e+300 do not."""
    return json.loads(
        text,
        parse_float=lambda s: ("number", Decimal(s).as_tuple()),
        parse_int=lambda s: ("number", Decimal(s).as_tuple()),
    )


@dataclass(frozen=True)
class Case:
    id: str
    declared: str
    values: tuple[Any, ...]  # PostgreSQL: input text cast to the type; SQLite: bound as is
    expected: tuple[str, ...] | object  # JSON text of each value, or TEXT

    def rows(self) -> list[Any]:
        """What each row's value must be in a part (``--data-column ''``), NULL last."""
        if self.expected is TEXT:
            return [*self.values, None]
        assert isinstance(self.expected, tuple)
        return [*(parse(e) for e in self.expected), None]

    def data_values(self) -> list[Any]:
        """What each line must be with the column as ``--data-column``."""
        if self.expected is TEXT:
            return [*(parse(v) for v in self.values), None]
        return self.rows()


JSON_TEXTS = ('{"k": [1, "a"]}', '{\n "k": 2.50}', '"üñí 😀 \\"q\\" back\\\\slash"', "[]", "null")
BIG = "12345678901234567890.123456789012345678901234567890"
LONG = bytes(range(256)) * 2  # base64 over 76 characters: no line breaks in a JSON string

PG_CASES = [
    Case("smallint", "smallint", ("-32768", "32767"), ("-32768", "32767")),
    Case("integer", "integer", ("0", "-2147483648"), ("0", "-2147483648")),
    Case(
        "bigint",
        "bigint",
        ("-9223372036854775808", "9223372036854775807"),
        ("-9223372036854775808", "9223372036854775807"),
    ),
    Case(
        "numeric",
        "numeric",
        ("1.50", BIG, "-0.000001", "NaN", "Infinity", "-Infinity"),
        ("1.50", BIG, "-0.000001", '"NaN"', '"Infinity"', '"-Infinity"'),
    ),
    Case("numeric-scale", "numeric(10,2)", ("3.1",), ("3.10",)),
    Case(
        "real", "real", ("1.5", "0.1", "NaN", "-Infinity"), ("1.5", "0.1", '"NaN"', '"-Infinity"')
    ),
    Case(
        "double",
        "double precision",
        ("0.1", "1e300", "1.2345678901234567", "Infinity"),
        ("0.1", "1e300", "1.2345678901234567", '"Infinity"'),
    ),
    Case("boolean", "boolean", ("true", "false"), ("true", "false")),
    Case("text", "text", JSON_TEXTS, TEXT),
    Case("varchar", "varchar(40)", JSON_TEXTS, TEXT),
    Case("char", "char(6)", ("[1]   ",), TEXT),  # char(n) pads with spaces: still JSON text
    Case(
        "uuid",
        "uuid",
        ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",),
        ('"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',),
    ),
    Case("date", "date", ("2024-01-02", "infinity"), ('"2024-01-02"', '"infinity"')),
    Case("time", "time", ("12:34:56.789", "00:00:00"), ('"12:34:56.789"', '"00:00:00"')),
    Case(
        "timestamp",
        "timestamp",
        ("2024-01-02 03:04:05.678", "-infinity"),
        ('"2024-01-02T03:04:05.678"', '"-infinity"'),
    ),
    Case(
        "timestamptz",
        "timestamptz",
        ("2024-01-02 03:04:05+02", "2024-06-30 23:59:59.5-07:30"),
        ('"2024-01-02T01:04:05+00:00"', '"2024-07-01T07:29:59.5+00:00"'),
    ),
    Case(
        "interval",
        "interval",
        ("1 year 2 mons 3 days 04:05:06.5", "-1 days", "0"),
        ('"P1Y2M3DT4H5M6.5S"', '"P-1D"', '"PT0S"'),
    ),
    Case(
        "bytea",
        "bytea",
        ("\\xdeadbeef", "", "\\x" + LONG.hex()),
        ('"3q2+7w=="', '""', json.dumps(base64.b64encode(LONG).decode())),
    ),
    Case("json", "json", ('{"a": [1, 2.50]}', "null", '"s"'), ('{"a": [1, 2.50]}', "null", '"s"')),
    Case("jsonb", "jsonb", ('{"b": 1.50}', "[true, null]"), ('{"b": 1.50}', "[true, null]")),
    Case(
        "integer-array",
        "integer[]",
        ("{1,NULL,3}", "{{1,2},{3,4}}", "{}"),
        ("[1,null,3]", "[[1,2],[3,4]]", "[]"),
    ),
    Case("text-array", "text[]", ('{a,NULL,"b c"}',), ('["a",null,"b c"]',)),
    Case("numeric-array", "numeric[]", ("{1.50,NaN}",), ('[1.50,"NaN"]',)),
    Case(
        "timestamptz-array",
        "timestamptz[]",
        ("{2024-01-02 00:00+01}",),
        ('["2024-01-01T23:00:00+00:00"]',),
    ),
    Case("enum", "mood", ("happy",), ('"happy"',)),
]

SQLITE_CASES = [
    Case(
        "integer",
        "INTEGER",
        (0, -(2**63), 2**63 - 1),
        ("0", "-9223372036854775808", "9223372036854775807"),
    ),
    Case("bigint", "BIGINT", (12,), ("12",)),
    # SQLite itself stores NUMERIC text as INTEGER or REAL: 1.50 is 1.5 once inserted.
    Case("numeric", "NUMERIC", ("1.50", 12, 2.25), ("1.5", "12", "2.25")),
    Case("decimal", "DECIMAL(10,2)", (3.1,), ("3.1",)),
    Case(
        "real", "REAL", (1.5, 0.1, math.inf, -math.inf), ("1.5", "0.1", '"Infinity"', '"-Infinity"')
    ),
    Case("double", "DOUBLE", (1e300,), ("1e300",)),
    Case("boolean", "BOOLEAN", (1, 0, True), ("true", "false", "true")),
    Case("text", "TEXT", JSON_TEXTS, TEXT),
    Case("varchar", "VARCHAR(40)", JSON_TEXTS, TEXT),
    Case(
        "uuid",
        "UUID",
        ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",),
        ('"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',),
    ),
    Case("date", "DATE", ("2024-01-02",), ('"2024-01-02"',)),
    Case("time", "TIME", ("12:34:56.789",), ('"12:34:56.789"',)),
    Case("timestamp", "TIMESTAMP", ("2024-01-02T03:04:05.678",), ('"2024-01-02T03:04:05.678"',)),
    Case("datetime", "DATETIME", ("2024-01-02 03:04:05",), ('"2024-01-02 03:04:05"',)),
    Case(
        "blob",
        "BLOB",
        (b"\xde\xad\xbe\xef", b"", LONG),
        ('"3q2+7w=="', '""', json.dumps(base64.b64encode(LONG).decode())),
    ),
    Case("json", "JSON", ('{"a": [1, 2.5]}', '"s"', "[]"), ('{"a": [1, 2.5]}', '"s"', "[]")),
]


# ------------------------------------------------------------------------------ tables


def pg_table(url: str, table: str, columns: list[tuple[str, Case]], extra: str = "") -> None:
    """``key`` 1..n; row k holds each column's k-th value (NULL past its end), a NULL row last."""
    import psycopg

    n = max(len(c.values) for _, c in columns) + 1
    with psycopg.connect(url, autocommit=True) as conn:
        if any(c.declared == "mood" for _, c in columns):
            conn.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
        decl = ", ".join(f'"{name}" {c.declared}' for name, c in columns)
        conn.execute(f"CREATE TABLE {table} (key bigint PRIMARY KEY, {decl}{extra})")
        casts = ", ".join(f"%s::{c.declared}" for _, c in columns)
        names = ", ".join(f'"{name}"' for name, _ in columns)
        for k in range(1, n + 1):
            row = [c.values[k - 1] if k <= len(c.values) else None for _, c in columns]
            conn.execute(f"INSERT INTO {table} (key, {names}) VALUES (%s, {casts})", [k, *row])


def sqlite_table(url: str, table: str, columns: list[tuple[str, Case]]) -> None:
    n = max(len(c.values) for _, c in columns) + 1
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        decl = ", ".join(f'"{name}" {c.declared}' for name, c in columns)
        conn.execute(f"CREATE TABLE {table} (key INTEGER PRIMARY KEY, {decl})")
        marks = ", ".join("?" for _ in columns)
        names = ", ".join(f'"{name}"' for name, _ in columns)
        for k in range(1, n + 1):
            row = [c.values[k - 1] if k <= len(c.values) else None for _, c in columns]
            conn.execute(f"INSERT INTO {table} (key, {names}) VALUES (?, {marks})", [k, *row])
    conn.close()


def shard(run_step: RunStep, url: str, store: Path, *args: str, item: str = WHOLE) -> Any:
    return run_step(
        "shard",
        "--shard",
        item,
        "--run-id",
        "r",
        "--store",
        str(store),
        "--run-column",
        "",
        "--force",
        *args,
        env={"WORKERS_DATABASE_URL": url, "PYTHONPATH": STEP_PYTHONPATH},
    )


def part_lines(store: Path, index: int = 0) -> list[str]:
    return (store / "parts" / f"part-{index:05d}.jsonl").read_text().splitlines()


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------- cases


def _backend_cases() -> list[Any]:
    return [pytest.param("postgres", c, id=f"postgres-{c.id}") for c in PG_CASES] + [
        pytest.param("sqlite", c, id=f"sqlite-{c.id}") for c in SQLITE_CASES
    ]


@pytest.mark.parametrize(("backend", "case"), _backend_cases())
def test_each_type_as_data_column_and_in_rows(
    backend: str, case: Case, request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path
) -> None:
    url = str(request.getfixturevalue("pg_db" if backend == "postgres" else "sqlite_url"))
    (pg_table if backend == "postgres" else sqlite_table)(url, "t", [("v", case)])
    store = tmp_path / "store"

    ok(proc := shard(run_step, url, store, "--table", "t", "--data-column", "v"))
    assert [parse(line) for line in part_lines(store)] == case.data_values(), proc.stderr

    ok(shard(run_step, url, store, "--table", "t", "--data-column", ""))
    rows = [parse(line) for line in part_lines(store)]
    keys = [("number", Decimal(k).as_tuple()) for k in range(1, len(rows) + 1)]
    assert rows == [{"key": k, "v": v} for k, v in zip(keys, case.rows(), strict=True)]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_one_table_of_every_type_through_split_and_every_shard(
    backend: str, request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path, jq: str
) -> None:
    url = str(request.getfixturevalue("pg_db" if backend == "postgres" else "sqlite_url"))
    cases = PG_CASES if backend == "postgres" else SQLITE_CASES
    columns = [(c.id.replace("-", "_"), c) for c in cases]
    (pg_table if backend == "postgres" else sqlite_table)(url, "everything", columns)
    n = max(len(c.values) for c in cases) + 1
    store = tmp_path / "store"
    env = {"WORKERS_DATABASE_URL": url}
    source = ["--table", "everything", "--run-column", "", "--data-column", ""]
    split = run_step(
        "split", "--from-db", "--run-id", "r", "--store", str(store), "--rows-per-shard", "2",
        *source, env=env,
    )  # fmt: skip
    ok(split)
    items = json.loads(split.stdout)
    assert sum(i["rows"] for i in items) == n and len(items) == math.ceil(n / 2)
    lines: list[str] = []
    for item in items:
        ok(
            shard(
                run_step,
                url,
                store,
                "--table",
                "everything",
                "--data-column",
                "",
                item=json.dumps(item),
            )
        )
        part = store / "parts" / f"part-{item['index']:05d}.jsonl"
        checked = subprocess.run([jq, "-c", "."], stdin=part.open(), capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        lines += part_lines(store, item["index"])
    got = [parse(line) for line in lines]
    assert len(got) == n
    for k, row in enumerate(got, 1):
        assert row["key"] == ("number", Decimal(k).as_tuple())
        for name, case in columns:
            want = case.rows()
            assert row[name] == (want[k - 1] if k <= len(case.values) else None), (name, k)
    merged = run_step("merge", "--store", str(store), env=env)
    ok(merged)


# ---------------------------------------------------------------------- no mapping


@pytest.mark.parametrize(
    ("declared", "value", "shown"),
    [
        ("int4range", "[1,5)", "int4range"),
        ("point", "(1,2)", "point"),
        ("pair", "(1,x)", "pair"),  # a composite type
        ("bytea[]", "{\\\\xdead}", "bytea[]"),
        ("inet", "10.0.0.1", "inet"),
    ],
)
def test_postgres_type_without_a_mapping_is_exit_2_naming_column_and_type(
    declared: str, value: str, shown: str, pg_db: str, run_step: RunStep, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TYPE pair AS (a int, b text)")
        conn.execute(f"CREATE TABLE t (key bigint PRIMARY KEY, ok numeric, odd {declared})")
        conn.execute(f"INSERT INTO t VALUES (1, 1.50, %s::{declared})", [value])
    store = tmp_path / "store"
    for data_column in ("", "odd"):
        proc = shard(run_step, pg_db, store, "--table", "t", "--data-column", data_column)
        assert proc.returncode == 2, proc.stderr
        err = error_of(proc)
        assert err["cause"] == "column-type"
        assert f"table 't': column 'odd' ({shown})" in err["message"], err["message"]
        assert not (store / "parts" / "part-00000.jsonl").exists()
    # The other column alone is fine: only the columns read are checked.
    ok(shard(run_step, pg_db, store, "--table", "t", "--data-column", "ok"))
    assert part_lines(store) == ["1.50"]


def test_postgres_text_data_column_that_is_not_json_is_exit_2(
    pg_db: str, run_step: RunStep, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (key bigint PRIMARY KEY, body text)")
        conn.execute("""INSERT INTO t VALUES (1, '{"a": 1}'), (2, 'plain words')""")
    proc = shard(run_step, pg_db, tmp_path / "s", "--table", "t", "--data-column", "body")
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "column-type"
    assert "column 'body' (text) holds text that is not JSON" in err["message"]
    # As a column of a row it is a string like any text.
    ok(shard(run_step, pg_db, tmp_path / "s", "--table", "t", "--data-column", ""))
    assert [json.loads(x)["body"] for x in part_lines(tmp_path / "s")] == [
        '{"a": 1}',
        "plain words",
    ]


@pytest.mark.parametrize(
    ("declared", "value", "fragment"),
    [
        ("BOOLEAN", 2, "column 'v' (BOOLEAN) holds 2, not 0 or 1"),
        ("NUMERIC", "twelve", "column 'v' (NUMERIC) holds 'twelve', not a number"),
        ("JSON", "{oops", "column 'v' (JSON) holds text that is not JSON"),
    ],
)
def test_sqlite_value_without_a_mapping_is_exit_2_naming_column_and_type(
    declared: str, value: Any, fragment: str, sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    sqlite_table(sqlite_url, "t", [("v", Case("bad", declared, (value,), ()))])
    for data_column in ("", "v"):
        proc = shard(
            run_step, sqlite_url, tmp_path / "s", "--table", "t", "--data-column", data_column
        )
        assert proc.returncode == 2, proc.stderr
        err = error_of(proc)
        assert err["cause"] == "column-type" and fragment in err["message"], err["message"]


def test_sqlite_text_data_column_that_is_not_json_is_exit_2(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    sqlite_table(sqlite_url, "t", [("body", Case("t", "TEXT", ('{"a": 1}', "plain words"), TEXT))])
    proc = shard(run_step, sqlite_url, tmp_path / "s", "--table", "t", "--data-column", "body")
    assert proc.returncode == 2, proc.stderr
    assert "column 'body' (TEXT) holds text that is not JSON" in error_of(proc)["message"]


# ------------------------------------------------------------------------- processors


def test_processor_passing_rows_through_writes_them_by_the_same_mapping(
    db_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """A processor gets the driver's values (Decimal, bytes, datetime); returned unchanged,
    they are written as without a processor (numeric digits exact, bytes base64)."""
    if db_url.startswith("sqlite"):
        sqlite_table(
            db_url,
            "t",
            [
                ("n", Case("n", "TEXT", ("1.50",), TEXT)),
                ("b", Case("b", "BLOB", (b"\xde\xad",), ())),
            ],
        )
        want = {"n": "1.50", "b": "3q0="}
    else:
        pg_table(
            db_url,
            "t",
            [
                ("n", Case("n", "numeric", ("1.50",), ())),
                ("b", Case("b", "bytea", ("\\xdead",), ())),
            ],
        )
        want = {"n": ("number", Decimal("1.50").as_tuple()), "b": "3q0="}
    store = tmp_path / "s"
    args = ["--table", "t", "--data-column", ""]
    ok(shard(run_step, db_url, store, *args, "--processor", "plugins.userfuncs:passthrough"))
    first = parse(part_lines(store)[0])
    assert {k: first[k] for k in want} == want
    ok(shard(run_step, db_url, store, *args))
    assert {k: parse(part_lines(store)[0])[k] for k in want} == want


def test_processor_returning_what_json_cannot_hold_is_still_exit_3(
    db_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    make = sqlite_table if db_url.startswith("sqlite") else pg_table
    make(db_url, "t", [("v", Case("v", "integer", ("1",), ("1",)))])
    proc = shard(
        run_step, db_url, tmp_path / "s", "--table", "t", "--data-column", "",
        "--processor", "plugins.userfuncs:unserializable",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "user-code" and "not JSON-serializable" in err["message"]


def test_processor_on_a_date_python_cannot_hold_is_exit_2(
    pg_db: str, run_step: RunStep, tmp_path: Path
) -> None:
    pg_table(pg_db, "t", [("d", Case("d", "date", ("infinity",), ()))])
    args = ["--table", "t", "--data-column", "", "--processor", "plugins.userfuncs:passthrough"]
    proc = shard(run_step, pg_db, tmp_path / "s", *args)
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "column-type"
    assert "column 'd' (date) hold a value Python cannot represent" in err["message"]


# ------------------------------------------------------------------------- user's code


def _line_of(marker: str) -> int:
    """The line number of the one line of userfuncs.py holding ``marker``."""
    lines = (ROOT / "tests" / "plugins" / "userfuncs.py").read_text().splitlines()
    (number,) = [i + 1 for i, line in enumerate(lines) if marker in line]
    return number


USER_FAILURES = [
    # step, function, fragment of the message, the line it must point at
    ("produce", "type_error_inside", "raised TypeError: object of type 'NoneType' has no len()", "return len(value)"),
    ("produce", "wrong_signature", "has the wrong signature wrong_signature(count): missing a required argument: 'count'", "def wrong_signature"),
    ("produce", "broken_generator", "raised RuntimeError: generator exploded", 'raise RuntimeError("generator exploded")'),
    ("shard", "explode", "raised ValueError: processor exploded", 'raise ValueError("processor exploded")'),
    ("shard", "fails_in_a_library", "raised JSONDecodeError", 'json.loads("not json")'),
    ("shard", "two_arguments", "has the wrong signature two_arguments(batch, extra): missing a required argument: 'extra'", "def two_arguments"),
]  # fmt: skip


@pytest.mark.parametrize(("step", "function", "fragment", "marker"), USER_FAILURES)
def test_user_code_failure_names_the_users_file_and_line(
    step: str,
    function: str,
    fragment: str,
    marker: str,
    sqlite_url: str,
    run_step: RunStep,
    tmp_path: Path,
) -> None:
    env = {"WORKERS_DATABASE_URL": sqlite_url, "PYTHONPATH": STEP_PYTHONPATH}
    path = f"plugins.userfuncs:{function}"
    if step == "produce":
        proc = run_step("produce", "--rows", "3", "--run-id", "r", "--generator", path, env=env)
    else:
        ok(run_step("produce", "--rows", "3", "--run-id", "r", env=env))
        proc = run_step(
            "shard", "--shard", WHOLE, "--run-id", "r", "--store", str(tmp_path / "s"),
            "--processor", path, env=env,
        )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    err = error_of(proc)
    message = err["message"]
    assert err["cause"] == "user-code" and fragment in message, message
    assert "did not return an iterable" not in message
    m = re.search(r"\(at (\S+):(\d+)\)$", message)
    assert m is not None, message
    assert m.group(1) == str(ROOT / "tests" / "plugins" / "userfuncs.py"), message
    assert int(m.group(2)) == _line_of(marker), message


def test_generator_returning_a_non_iterable_says_what_it_returned(
    sqlite_url: str, run_step: RunStep
) -> None:
    env = {"WORKERS_DATABASE_URL": sqlite_url, "PYTHONPATH": STEP_PYTHONPATH}
    proc = run_step("produce", "--generator", "plugins.userfuncs:not_iterable", env=env)
    assert proc.returncode == 3
    message = error_of(proc)["message"]
    assert "returned an object of type 'int', not an iterable of dicts" in message
    assert f"userfuncs.py:{_line_of('def not_iterable')})" in message


# ------------------------------------------------------------------------------ docs


def test_docs_column_types_table_is_the_codes() -> None:
    import docs_pages

    section = docs_pages.page("reference/column-types.md")
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[0]) <= {"-", " "}:
            rows.append(tuple(cells))
    assert rows[0] == ("PostgreSQL", "SQLite (declared type)", "JSON")
    assert tuple(rows[1:]) == values.TYPE_TABLE


@pytest.mark.parametrize(
    ("value", "json_text"),
    [
        (Decimal("1.50"), "1.50"),
        (Decimal("-0"), "-0"),
        (Decimal("1E+2"), "1E+2"),
        (Decimal("NaN"), '"NaN"'),
        (Decimal("-Infinity"), '"-Infinity"'),
        (b"\xde\xad\xbe\xef", '"3q2+7w=="'),
        (memoryview(b"\x00"), '"AA=="'),
        (
            __import__("datetime").timedelta(days=3, hours=4, minutes=5, seconds=6.5),
            '"P3DT4H5M6.5S"',
        ),
        (__import__("datetime").timedelta(days=-1), '"-P1D"'),
        (__import__("datetime").timedelta(0), '"PT0S"'),
        (__import__("uuid").UUID(int=1), '"00000000-0000-0000-0000-000000000001"'),
    ],
)
def test_processor_output_mapping_of_python_values(value: Any, json_text: str) -> None:
    import orjson

    assert orjson.dumps([value], default=values.default) == f"[{json_text}]".encode()


def test_a_python_value_without_a_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="set"):
        values.default({1})
