"""The columnar batch formats: ``shard --batch-format pyarrow|pandas|polars``.

Real SQLite and PostgreSQL, every step a subprocess: each format makes the document the rows
format makes; wrong return types and signatures are the user's code (exit 3, their file and
line); the plan pins the format; a typed PostgreSQL table arrives in the documented Arrow types
and is written as the rows path writes it; a killed pyarrow shard resumes to the clean bytes;
a rows shard imports none of the columnar libraries.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep
from reliability_helpers import STEP_PYTHONPATH, kill_at, read, shard_cmd

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
ENRICH = {
    "pyarrow": "plugins.columnar:arrow_enrich",
    "pandas": "plugins.columnar:pandas_enrich",
    "polars": "plugins.columnar:polars_enrich",
}
COLUMNAR = Path(__file__).parent / "plugins" / "columnar.py"


def _run(pipe: Pipeline, rows_per_shard: int, *plan: str) -> list[Any]:
    """split (pinning ``plan``), every shard, merge: the merged JSON document."""
    items = pipe.split(rows_per_shard, *plan)
    for item in items:
        proc = pipe.shard(item, *plan)
        assert proc.returncode == 0, proc.stderr
    out = pipe.workdir / f"merged-{Path(pipe.store).name}.json"
    pipe.ok("merge", "--store", pipe.store, "--output", str(out))
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _pipes(run_step: RunStep, db_url: str, tmp_path: Path, rows: int) -> tuple[Pipeline, Pipeline]:
    rows_pipe = Pipeline(run_step, db_url, str(tmp_path / "rows"), tmp_path, env=ENV)
    assert rows_pipe.produce(rows) == rows
    col_pipe = Pipeline(run_step, db_url, str(tmp_path / "columnar"), tmp_path, env=ENV)
    return rows_pipe, col_pipe


@pytest.mark.parametrize("fmt", ["pyarrow", "pandas", "polars"])
def test_each_batch_format_makes_the_rows_formats_document(
    run_step: RunStep, db_url: str, tmp_path: Path, fmt: str
) -> None:
    rows_pipe, col_pipe = _pipes(run_step, db_url, tmp_path, 2500)
    want = _run(
        rows_pipe, 1000, "--processor", "plugins.columnar:rows_enrich", "--batch-size", "300"
    )
    got = _run(
        col_pipe, 1000, "--processor", ENRICH[fmt], "--batch-size", "300", "--batch-format", fmt
    )
    assert 0 < len(got) < 2500 and got == want
    assert set(got[0]) == {"id", "city", "kind", "dwell_s", "score", "city_upper", "score2"}


def test_pyarrow_pass_through_writes_the_rows_paths_bytes(
    run_step: RunStep, db_url: str, tmp_path: Path
) -> None:
    """Without a processor, and with one returning an iterable of batches: the parts are
    byte for byte the rows path's (the built-in table's JSON through Arrow's JSON reader)."""
    rows_pipe, col_pipe = _pipes(run_step, db_url, tmp_path, 2000)
    _run(rows_pipe, 2000)
    _run(col_pipe, 2000, "--batch-format", "pyarrow", "--processor", "")
    assert col_pipe.read("parts/part-00000.jsonl") == rows_pipe.read("parts/part-00000.jsonl")
    halves = Pipeline(col_pipe.run_step, db_url, str(tmp_path / "halves"), tmp_path, env=ENV)
    _run(halves, 2000, "--batch-format", "pyarrow", "--processor", "plugins.columnar:arrow_halves")
    assert halves.read("parts/part-00000.jsonl") == rows_pipe.read("parts/part-00000.jsonl")


def _line_of(name: str) -> int:
    lines = COLUMNAR.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(f"def {name}("))


def test_a_wrong_return_type_is_the_users_code_with_its_file_and_line(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(500)
    item = pipe.split(500)[0]
    proc = pipe.shard(
        item, "--batch-format", "pyarrow", "--processor", "plugins.columnar:returns_dicts"
    )
    assert proc.returncode == 3, proc.stderr
    err = json.loads(proc.stderr.strip().splitlines()[-1])
    assert "returned a builtins.dict" in err["message"] and "pyarrow.RecordBatch" in err["message"]
    assert f"{COLUMNAR}:{_line_of('returns_dicts')}" in err["message"]
    assert not pipe.exists("parts/part-00000.jsonl")


def test_the_signature_is_checked_before_any_work(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(100)
    item = pipe.split(100)[0]
    proc = pipe.shard(
        item, "--batch-format", "polars", "--processor", "plugins.columnar:two_batches"
    )
    assert proc.returncode == 3, proc.stderr
    msg = json.loads(proc.stderr.strip().splitlines()[-1])["message"]
    assert "wrong signature" in msg and "--batch-format polars" in msg
    assert f"{COLUMNAR}:{_line_of('two_batches')}" in msg
    assert not pipe.exists("commits/part-00000.json")


def test_the_plan_pins_the_batch_format(run_step: RunStep, sqlite_url: str, tmp_path: Path) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(100)
    item = pipe.split(100, "--batch-format", "pyarrow", "--processor", "")
    plan = json.loads(pipe.read("plan.json"))
    assert plan["processor"]["options"]["batch_format"] == "pyarrow"
    for other in (("--batch-format", "rows"), ("--batch-format", "polars")):
        proc = pipe.shard(item[0], "--processor", "", *other)
        assert proc.returncode == 2, proc.stderr
        assert "batch_format" in proc.stderr and "--batch-format" in proc.stderr
    assert pipe.shard(item[0], "--processor", "", "--batch-format", "pyarrow").returncode == 0
    # rows keeps the identity it always had: plans made before batch formats still match
    rows = Pipeline(run_step, sqlite_url, str(tmp_path / "rows"), tmp_path, env=ENV)
    rows.split(100, "--processor", "")
    assert "batch_format" not in json.loads(rows.read("plan.json"))["processor"]["options"]


TYPED = """
CREATE TABLE typed (
    key bigint PRIMARY KEY, amount numeric(12,2), at timestamptz, doc jsonb, name text,
    big bigint, ratio double precision, ok boolean, day date, loose numeric
);
INSERT INTO typed VALUES
    (1, 1.50, '2024-01-02 03:04:05.678+02', '{"a": [1, 2.50], "b": "x"}', 'héllo "q"',
     9007199254740993, 0.1, true, '2024-01-02', 1.500),
    (2, -12345678.90, '2024-06-30 23:59:59+00', '[]', '', -1, 1e300, false, '1999-12-31', -7),
    (3, NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL);
"""
ARROW_TYPES = {
    "key": "int64",
    "amount": "decimal128(12, 2)",
    "at": "timestamp[us, tz=UTC]",
    "doc": "extension<arrow.json>",
    "name": "string",
    "big": "int64",
    "ratio": "double",
    "ok": "bool",
    "day": "date32[day]",
    "loose": "string",
}


def test_a_typed_postgres_table_arrives_in_the_documented_arrow_types(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(TYPED)
    source = ("--table", "typed", "--run-column", "", "--data-column", "")
    rows = Pipeline(run_step, pg_db, str(tmp_path / "rows"), tmp_path, env=ENV)
    item = {"index": 0, "lo": None, "hi": None, "rows": 3}
    assert rows.shard(item, *source).returncode == 0
    types = Pipeline(run_step, pg_db, str(tmp_path / "types"), tmp_path, env=ENV)
    proc = types.shard(
        item, *source, "--batch-format", "pyarrow", "--processor", "plugins.columnar:arrow_types"
    )
    assert proc.returncode == 0, proc.stderr
    lines = types.read("parts/part-00000.jsonl").splitlines()
    assert {json.loads(x)["column"]: json.loads(x)["type"] for x in lines} == ARROW_TYPES
    arrow = Pipeline(run_step, pg_db, str(tmp_path / "arrow"), tmp_path, env=ENV)
    proc = arrow.shard(item, *source, "--batch-format", "pyarrow")
    assert proc.returncode == 0, proc.stderr
    want = rows.read("parts/part-00000.jsonl").splitlines()
    got = arrow.read("parts/part-00000.jsonl").splitlines()
    # The one documented difference: a numeric without precision is a string of its digits.
    for w, g in zip(want, got, strict=True):
        assert g == w.replace(b'"loose":1.500', b'"loose":"1.500"').replace(
            b'"loose":-7', b'"loose":"-7"'
        )
    assert b'"amount":1.50' in got[0] and b'"at":"2024-01-02T01:04:05.678+00:00"' in got[0]
    assert b'"doc":{"a": [1, 2.50], "b": "x"}' in got[0] and b'"ratio":"NaN"' in got[2]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_killed_pyarrow_shard_resumes_to_the_clean_bytes(
    request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path, database: str
) -> None:
    db_url = request.getfixturevalue("pg_db" if database == "postgres" else "sqlite_url")
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows, batch, every = 12_000, 700, 3000
    pipe.produce(rows)
    args = (
        "--batch-format",
        "pyarrow",
        "--processor",
        ENRICH["pyarrow"],
        "--batch-size",
        str(batch),
    )
    item = pipe.split(rows, *args)[0]
    ckpt = ("--checkpoint-rows", str(every))
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": db_url, **ENV})
    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt), env, tmp_path, "checkpoint-2")
    proc = pipe.shard(item, *args, *ckpt)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(read(pipe.store, "commits/part-00000.json"))
    chunk = math.ceil(every / batch) * batch
    assert rec["resumed_rows_in"] == 2 * chunk and rec["rows_read"] == rows - 2 * chunk
    clean = Pipeline(run_step, db_url, str(tmp_path / "clean"), tmp_path, env=ENV)
    clean.split(rows, *args)
    assert clean.shard(item, *args, "--checkpoint-rows", "0").returncode == 0
    assert read(pipe.store, "parts/part-00000.jsonl") == clean.read("parts/part-00000.jsonl")


def test_a_rows_shard_imports_no_columnar_library(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(100)
    item = pipe.split(100)[0]
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV})
    cmd = shard_cmd(item, pipe.run_id, pipe.store, "--processor", "plugins.userfuncs:double")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "orjson" in imported  # the listing works
    assert imported & {"pyarrow", "pandas", "polars", "numpy", "adbc_driver_postgresql"} == set()


def test_the_orders_examples_pyarrow_processor_makes_the_rows_versions_output(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    try:
        from tests import orders_example as orders
    except ImportError:
        import orders_example as orders  # type: ignore[no-redef]

    env = {"PYTHONPATH": f"{orders.EXAMPLE}:{STEP_PYTHONPATH}"}
    rows, seed = 3000, 7
    base = Pipeline(run_step, sqlite_url, str(tmp_path / "rows"), tmp_path, env=env)
    base.produce(rows, "--generator", orders.GENERATOR, "--seed", str(seed))
    want = _run(base, 1000, "--processor", orders.PROCESSOR)
    arrow = Pipeline(run_step, sqlite_url, str(tmp_path / "arrow"), tmp_path, env=env)
    plan = ("--batch-format", "pyarrow", "--processor", "orders.enrich_arrow:enrich")
    got = _run(arrow, 1000, *plan)
    assert got == want == orders.expected(rows, seed)
    assert 0 < len(got) < rows


def test_table_to_jsonl_writes_what_orjson_writes_without_python_per_row() -> None:
    """The polars and spliced writers against orjson over the same values (the rows path)."""
    import datetime
    import decimal

    import orjson
    import pyarrow as pa

    from workers import batches

    texts = ["plain", 'quote " back \\ tab \t nl \n', "é ü 東京 🎉", "\x01\x1f", "", None]
    floats = [0.1, 12.0, 1e16, 2.5e15, -0.0, 5e-324]
    table = pa.table(
        {
            "id": pa.array([1, -2, 2**62, 0, None, 7], pa.int64()),
            "amount": pa.array(
                [decimal.Decimal(x) for x in ("1.50", "-0.05", "0.00", "123456789.99", "7.00")]
                + [None],
                pa.decimal128(11, 2),
            ),
            "text": pa.array(texts, pa.string()),
            "ratio": pa.array(floats, pa.float64()),
            "doc": pa.ExtensionArray.from_storage(
                pa.json_(), pa.array(['{"a": [1, 2.50]}', "[]", "null", '"s"', "3", None])
            ),
            "ok": [True, False, None, True, False, True],
            "tags": [[1, 2], [], None, [None], [3], [4]],
            "when": pa.array(
                [datetime.datetime(2024, 1, 2, 3, 4, 5, 600000)] * 6, pa.timestamp("us")
            ),
        }
    )
    want = b"".join(
        orjson.dumps(
            {
                "id": r["id"],
                "amount": None if r["amount"] is None else orjson.Fragment(str(r["amount"])),
                "text": r["text"],
                "ratio": r["ratio"],
                "doc": None if r["doc"] is None else orjson.Fragment(r["doc"]),
                "ok": r["ok"],
                "tags": r["tags"],
                "when": "2024-01-02T03:04:05.6",
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        for r in table.to_pylist()
    )
    assert batches._kinds(batches._normalized(table)) is not None  # not the per-row fallback
    assert batches.table_to_jsonl(table) == want
    assert batches.table_to_jsonl(table.drop_columns(["amount", "doc"])) == b"".join(
        orjson.dumps({k: v for k, v in json.loads(line).items() if k not in ("amount", "doc")})
        + b"\n"
        for line in want.splitlines()
    )


def test_a_columnar_read_whose_connection_ends_is_transient(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    """The server ends the ADBC connection mid-read: exit 75 with PostgreSQL's reason, no part."""
    import time

    import psycopg

    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(3000)
    args = ("--batch-format", "pyarrow", "--processor", "plugins.columnar:arrow_slow")
    item = pipe.split(3000, *args, "--batch-size", "300")[0]
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": pg_db, **ENV})
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *args, "--batch-size", "300")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    ended = 0
    with psycopg.connect(pg_db, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while not ended and time.monotonic() < deadline and proc.poll() is None:
            row = conn.execute(
                # this test's database only: another test's (or a benchmark's) COPY is not ours
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'COPY (SELECT%' AND pid <> pg_backend_pid() "
                "AND datname = current_database()"
            ).fetchone()
            ended = row[0] if row else 0
            time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert ended == 1, err
    assert proc.returncode == 75, err
    last = json.loads(err.strip().splitlines()[-1])
    assert last["cause"] == "server-shutdown" and "administrator command" in last["message"]
    assert not pipe.exists("parts/part-00000.jsonl")


def test_the_sqlalchemy_backend_converts_its_rows_to_the_same_bytes(
    run_step: RunStep, tmp_path: Path
) -> None:
    """A URL only SQLAlchemy reads (a query string) takes the generic stream_arrow."""
    url = f"sqlite:///{tmp_path / 'sa.db'}?timeout=10"
    rows_pipe, col_pipe = _pipes(run_step, url, tmp_path, 1500)
    _run(rows_pipe, 1500)
    _run(col_pipe, 1500, "--batch-format", "polars", "--processor", "")
    assert col_pipe.read("parts/part-00000.jsonl") == rows_pipe.read("parts/part-00000.jsonl")


def test_a_pyarrow_shard_reads_rows_and_generation_in_one_snapshot(
    run_step: RunStep, db_url: str, tmp_path: Path
) -> None:
    """produce commits a new generation after the shard read the generation and before the
    columnar read starts (on PostgreSQL a second connection, ADBC's): the part holds the rows
    of the plan's generation."""
    fmt = ("--batch-format", "pyarrow", "--processor", "")
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(400, "--seed", "1")
    item = pipe.split(400, *fmt)[0]
    env = services.step_env(
        tmp_path / "home",
        {"WORKERS_DATABASE_URL": db_url, **ENV, "WORKERS_TEST_PAUSE_AFTER_GENERATION": "4"},
    )
    shard = subprocess.Popen(
        shard_cmd(item, pipe.run_id, pipe.store, *fmt),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert shard.stderr is not None
        for line in shard.stderr:
            if '"generation-read"' in line:
                break
        pipe.produce(400, "--seed", "2")
        assert shard.poll() is None, "produce must commit while the shard is between its reads"
        assert shard.wait(60) == 0
    finally:
        if shard.poll() is None:
            shard.kill()
    first = Pipeline(run_step, db_url, str(tmp_path / "first"), tmp_path, "check", env=ENV)
    first.produce(400, "--seed", "1")
    _run(first, 400)
    second = Pipeline(run_step, db_url, str(tmp_path / "second"), tmp_path, "check", env=ENV)
    second.produce(400, "--seed", "2")
    _run(second, 400)
    assert first.read("parts/part-00000.jsonl") != second.read("parts/part-00000.jsonl")
    assert pipe.read("parts/part-00000.jsonl") == first.read("parts/part-00000.jsonl")


@pytest.mark.parametrize(
    ("ddl", "column"),
    [
        ("d date", "d"),
        ("t timestamptz", "t"),
        ("n numeric(10,2)", "n"),
    ],
)
def test_a_value_arrow_cannot_hold_is_exit_2_naming_the_column(
    run_step: RunStep, pg_db: str, tmp_path: Path, ddl: str, column: str
) -> None:
    """infinity in a date or timestamp, NaN in a numeric(p,s): exit 2 before a part exists."""
    import psycopg

    special = "NaN" if ddl.startswith("n ") else "infinity"
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE special (key bigint PRIMARY KEY, {ddl})")
        conn.execute("INSERT INTO special VALUES (1, NULL), (2, %s)", (special,))
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    item = {"index": 0, "lo": None, "hi": None, "rows": 2}
    source = ("--table", "special", "--run-column", "", "--data-column", "")
    proc = pipe.shard(item, *source, "--batch-format", "pyarrow")
    assert proc.returncode == 2, proc.stderr
    last = json.loads(proc.stderr.strip().splitlines()[-1])
    assert last["cause"] == "column-type" and f"column {column!r}" in last["message"]
    assert not pipe.exists("parts/part-00000.jsonl")
    assert pipe.shard(item, *source).returncode == 0  # the rows path writes it as a string


JSON_TYPED = """
CREATE TABLE jt (key bigint PRIMARY KEY, amount numeric(12, 2), at timestamptz, day date,
    doc jsonb, name text, ratio double precision);
INSERT INTO jt SELECT k, k * 12.5 / 7, timestamptz '2024-01-02 03:04:05+00' + k * interval '1.678 s',
    date '2024-01-01' + k, jsonb_build_object('k', k, 'a', jsonb_build_array(k, 'x')), 'n' || k,
    CASE WHEN k % 5 = 0 THEN NULL ELSE k / 3.0 END FROM generate_series(1, 2500) AS k;
"""


def test_merge_of_pyarrow_parquet_parts_gives_the_json_lines_runs_bytes(
    pg_db: str, run_step: RunStep, tmp_path: Path, jq: str
) -> None:
    """A pyarrow run of a typed table (numeric, fractional timestamptz, date, jsonb, nulls) into
    Parquet parts merges (--format json and jsonl, Arrow to JSON Lines without a dict per row)
    to the bytes the same run into JSON Lines parts merges to: jsonb stays its JSON value (it
    used to come out as a string), and jq -s . of the JSON Lines parts reads the same document."""
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(JSON_TYPED)  # type: ignore[arg-type]
    source = ("--table", "jt", "--run-column", "", "--data-column", "")
    plan = (*source, "--batch-format", "pyarrow", "--batch-size", "300")
    stores = {}
    for fmt in ("jsonl", "parquet"):
        pipe = Pipeline(run_step, pg_db, str(tmp_path / fmt), tmp_path, env=ENV)
        for item in pipe.split_from_db(1000, *plan, "--part-format", fmt):
            shard = pipe.shard(item, *plan)
            assert shard.returncode == 0, shard.stderr
        for out in ("json", "jsonl"):
            pipe.ok("merge", "--store", pipe.store, "--format", out)
        stores[fmt] = pipe
    for out in ("json", "jsonl"):
        assert stores["parquet"].read(f"merged.{out}") == stores["jsonl"].read(f"merged.{out}")
    parts = sorted(str(p) for p in Path(stores["jsonl"].store, "parts").glob("part-*.jsonl"))
    expected = subprocess.run([jq, "-s", ".", *parts], capture_output=True, check=True).stdout
    doc = json.loads(stores["parquet"].read("merged.json"))
    assert doc == json.loads(expected) and len(doc) == 2500
    assert doc[6]["doc"] == {"a": [7, "x"], "k": 7} and doc[4]["ratio"] is None
