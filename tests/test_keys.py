"""Any orderable key: ``split --from-db`` over integer, numeric, text, uuid, date and timestamp keys.

Real tables on real PostgreSQL and SQLite (and SQLite through SQLAlchemy), with sparse keys and
one key repeated more than a shard's worth; text in a collation whose order is not the bytes'.
Every case runs the pipeline as processes (split, every shard at once, merge) and proves each
row of the table is in the output exactly once. The shards' reads and the cut query are shown
to walk the key's index (EXPLAIN), a shard of a text key killed mid-read resumes after its
last checkpointed key and publishes the clean run's bytes, and bad keys exit 2 in one line.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep, error_of, log_lines
from reliability_helpers import STEP_PYTHONPATH, kill_at, read, shard_cmd

from workers import db, keys
from workers.shard import read_range
from workers.shards import Shard

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
ROWS, HEAVY, PER_SHARD = 450, 150, 100
"""Sparse rows, then one key held by HEAVY rows (over a shard's PER_SHARD)."""
HEAVY_N = 500_000


def _ns() -> list[int]:
    """The key numbers of the rows: sparse, then one repeated HEAVY times."""
    return [(i * 7919) % 1_000_003 for i in range(ROWS)] + [HEAVY_N] * HEAVY


def _source(table: str) -> list[str]:
    return ["--table", table, "--key-column", "k", "--run-column", "", "--data-column", ""]


def pg_collation(url: str) -> str:
    """A collation whose order is not the bytes' (case-insensitive first), as the server has."""
    import psycopg

    wanted = ["en-US-x-icu", "und-x-icu", "en_US.utf8", "en_US.UTF-8", "en_US"]
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT collname FROM pg_collation WHERE collname = ANY(%s)", (wanted,)
        ).fetchall()
    have = {r[0] for r in rows}
    found = [c for c in wanted if c in have]
    assert found, f"the server has none of the collations {wanted}: a text key needs one here"
    return found[0]


def pg_exec(url: str, *sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)  # type: ignore[arg-type]


# (id, column type ({coll}: a collation whose order is not the bytes'), SQL of key number n,
#  the kind the plan records, what each bound looks like)
PG_CASES = [
    ("bigint", "bigint", "{n}::bigint * 1000000007", "integer", r"^-?\d+$"),
    ("numeric", "numeric", "{n}::numeric / 7", "numeric", r"^\d+\.\d{10,}$"),
    (
        "text",
        'text COLLATE "{coll}"',
        "(array['a','B','c','D'])[{n} % 4 + 1] || lpad({n}::text, 7, '0')",
        "text",
        r"^[aBcD]\d{7}$",
    ),
    ("varchar", "varchar(20)", "'k' || {n}", "text", r"^k\d+$"),
    (
        "uuid",
        "uuid",
        "md5({n}::text)::uuid",
        "uuid",
        r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$",
    ),
    ("date", "date", "date '1990-01-01' + {n} / 50", "date", r"^\d{4}-\d\d-\d\d$"),
    (
        "timestamp",
        "timestamp(3)",
        "timestamp '2020-01-01' + {n} * interval '1.5 ms'",
        "timestamp",
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$",
    ),
    (
        "timestamptz",
        "timestamptz",
        "timestamptz '2020-01-01 00:00:00+05' + {n} * interval '0.25 second'",
        "timestamptz",
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$",
    ),
]


def _date(n: int) -> str:
    return (datetime.date(1990, 1, 1) + datetime.timedelta(days=n // 50)).isoformat()


# (id, declared type, Python key of number n, kind, bound pattern, through SQLAlchemy)
SQLITE_CASES: list[tuple[str, str, Callable[[int], Any], str, str, bool]] = [
    ("integer", "INTEGER", lambda n: n * 1000000007, "integer", r"^\d+$", False),
    (
        "text-nocase",
        "TEXT COLLATE NOCASE",
        lambda n: "aBcD"[n % 4] + f"{n:07d}",
        "text",
        r"^[aBcD]\d{7}$",
        False,
    ),
    ("real", "REAL", lambda n: n / 7, "real", r"^\d+(\.\d+)?$", False),
    ("date", "DATE", _date, "numeric", r"^\d{4}-\d\d-\d\d$", False),
    (
        "text-sqlalchemy",
        "TEXT COLLATE NOCASE",
        lambda n: "aBcD"[n % 4] + f"{n:07d}",
        "text",
        r"^[aBcD]\d{7}$",
        True,
    ),
]


def _run_all(pipe: Pipeline, items: Sequence[dict[str, Any]], source: list[str]) -> None:
    """Every shard of the plan as its own process, all at once, as the fan-out runs them."""
    env = services.step_env(
        pipe.workdir / "home", {"WORKERS_DATABASE_URL": pipe.db_url, **ENV, **pipe.env}
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.shard",
                "--shard",
                str(item["index"]),
                "--run-id",
                pipe.run_id,
                "--store",
                pipe.store,
                *source,
            ],
            env=env,
            cwd=pipe.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for item in items
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def _check_plan(
    pipe: Pipeline, proc: subprocess.CompletedProcess[str], kind: str, pattern: str
) -> list[dict[str, Any]]:
    """Half-open typed ranges that chain with no gap, open at both ends, the heavy key in one
    shard of its own, logged with its shard and count."""
    items: list[dict[str, Any]] = json.loads(proc.stdout)
    plan = json.loads(pipe.read("plan.json"))
    assert plan["key"]["type"] == kind and plan["key"]["column"] == "k"
    assert [i["key"] for i in items] == [kind] * len(items)
    assert items[0]["lo"] is None and items[-1]["hi"] is None
    for a, b in itertools.pairwise(items):
        assert a["hi"] == b["lo"]  # each range ends where the next begins: no gap, no overlap
    bounds = [i["lo"] for i in items[1:]]
    assert all(re.match(pattern, str(b)) for b in bounds), bounds
    if kind in ("numeric", "uuid", "date", "timestamp", "timestamptz", "text"):
        assert all(isinstance(b, str) for b in bounds), bounds
    assert sum(i["rows"] for i in items) == ROWS + HEAVY
    heavy = [e for e in log_lines(proc) if e["event"] == "repeated-key"]
    assert len(heavy) == 1, heavy
    event = heavy[0]
    assert event["rows"] == HEAVY and event["rows_per_shard"] == PER_SHARD
    held = items[event["shard"]]
    assert held["rows"] == HEAVY and held["lo"] == event["value"]
    assert all(i["rows"] <= 2 * PER_SHARD for i in items)
    return items


def _check_every_row_once(pipe: Pipeline) -> None:
    pipe.ok("merge", "--store", pipe.store)
    merged = json.loads(pipe.read("merged.json"))
    assert sorted(r["id"] for r in merged) == list(range(ROWS + HEAVY))


@pytest.mark.parametrize(("case", "column", "key_sql", "kind", "pattern"), PG_CASES)
def test_postgres_key_types_cut_exactly_and_every_row_is_read_once(
    run_step: RunStep,
    pg_db: str,
    tmp_path: Path,
    case: str,
    column: str,
    key_sql: str,
    kind: str,
    pattern: str,
) -> None:
    coll = pg_collation(pg_db)
    pg_exec(
        pg_db,
        f"CREATE TABLE t (id int NOT NULL, k {column.format(coll=coll)}, v text)",
        "CREATE INDEX t_k ON t (k)",
        "INSERT INTO t SELECT i - 1, "
        + key_sql.format(n="n")
        + ", 'row ' || i FROM unnest(%s::int[]) WITH ORDINALITY AS u(n, i)"
        % ("'{" + ",".join(map(str, _ns())) + "}'"),
    )
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, run_id=f"pg-{case}")
    proc = pipe.ok(
        "split",
        "--from-db",
        *_source("t"),
        "--rows-per-shard",
        str(PER_SHARD),
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
    )
    items = _check_plan(pipe, proc, kind, pattern)
    if case == "text":
        # The database's order, not the bytes': some shard runs from a lower-case key to an
        # upper-case one, which Python (code points) would put the other way round.
        assert any(i["lo"] is not None and i["hi"] is not None and i["lo"] > i["hi"] for i in items)
    _run_all(pipe, items, _source("t"))
    _check_every_row_once(pipe)


@pytest.mark.parametrize(
    ("case", "declared", "key_of", "kind", "pattern", "via_sqlalchemy"), SQLITE_CASES
)
def test_sqlite_key_types_cut_exactly_and_every_row_is_read_once(
    run_step: RunStep,
    tmp_path: Path,
    case: str,
    declared: str,
    key_of: Callable[[int], Any],
    kind: str,
    pattern: str,
    via_sqlalchemy: bool,
) -> None:
    path = tmp_path / "keys.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE t (id INTEGER NOT NULL, k {declared}, v TEXT)")
        conn.execute("CREATE INDEX t_k ON t (k)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, key_of(n), f"row {i}") for i, n in enumerate(_ns())],
        )
    conn.close()
    # A query string sends the URL through SQLAlchemy's generic path.
    url = f"sqlite:///{path}" + ("?timeout=10" if via_sqlalchemy else "")
    pipe = Pipeline(run_step, url, str(tmp_path / "store"), tmp_path, run_id=f"sq-{case}")
    proc = pipe.ok(
        "split",
        "--from-db",
        *_source("t"),
        "--rows-per-shard",
        str(PER_SHARD),
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
    )
    items = _check_plan(pipe, proc, kind, pattern)
    if "nocase" in declared.lower() or "NOCASE" in declared:
        assert any(i["lo"] is not None and i["hi"] is not None and i["lo"] > i["hi"] for i in items)
    _run_all(pipe, items, _source("t"))
    _check_every_row_once(pipe)


@pytest.mark.parametrize("bucket", ["s3_store", "gcs_store"])
def test_a_text_key_plan_and_its_parts_on_a_bucket(
    run_step: RunStep, tmp_path: Path, bucket: str, request: pytest.FixtureRequest
) -> None:
    """The typed plan, the shards' parts and commits and the merge in moto's S3 server or the
    GCS emulator: the same exact cut and every row once, as on a local folder."""
    store = request.getfixturevalue(bucket)
    path = tmp_path / "keys.db"
    _, declared, key_of, kind, pattern, _ = SQLITE_CASES[1]  # text COLLATE NOCASE
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE t (id INTEGER NOT NULL, k {declared}, v TEXT)")
        conn.execute("CREATE INDEX t_k ON t (k)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, key_of(n), f"row {i}") for i, n in enumerate(_ns())],
        )
    conn.close()
    pipe = Pipeline(
        run_step, f"sqlite:///{path}", store.url, tmp_path, run_id="bucket", env=store.env
    )
    proc = pipe.ok(
        "split",
        "--from-db",
        *_source("t"),
        "--rows-per-shard",
        str(PER_SHARD),
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
    )
    items = _check_plan(pipe, proc, kind, pattern)
    _run_all(pipe, items, _source("t"))
    _check_every_row_once(pipe)


def _explain_pg(url: str, sql: str, params: dict[str, Any]) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()  # type: ignore[arg-type]
    return "\n".join(str(r[0]) for r in rows)


def test_postgres_cuts_and_shard_reads_walk_the_keys_index(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    """The cut query is one Index Only Scan under a WindowAgg (only the few rows it returns are
    sorted); a shard's read is an Index Scan of the key's index bounded by its typed range, on
    both the JSON fast path and a processor's path. The table is in key order on disk, as an
    append-ordered or CLUSTERed table is (the planner's choice for scattered rows is a bitmap
    scan of the same index)."""
    coll = pg_collation(pg_db)
    pg_exec(
        pg_db,
        f'CREATE TABLE ev (id int NOT NULL, k text COLLATE "{coll}" NOT NULL, v text)',
        "INSERT INTO ev SELECT i, md5(i::text), 'row ' || i FROM generate_series(1, 40000) i "
        "ORDER BY 2",
        "CREATE INDEX ev_k ON ev (k)",
        "VACUUM ANALYZE ev",
    )
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, run_id="explain")
    proc = pipe.ok(
        "split",
        "--from-db",
        *_source("ev"),
        "--rows-per-shard",
        "2000",
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
    )
    item = json.loads(proc.stdout)[7]
    src = db.Source("ev", "k", None, None)
    with db.connect(pg_db) as database:
        key = database.key_type(src)
        assert key.collation == coll
        cols = database.columns(src)
    cut_sql, cut_params = db.cuts_sql(src, None, 2000, "pg")
    plan = _explain_pg(pg_db, cut_sql, cut_params)
    assert "Index Only Scan using ev_k on ev" in plan, plan
    assert re.findall(r"Sort Key: (.*)", plan) == ["s.rn"], plan  # never the table by its key

    lo, hi = read_range(Shard(**item), key, None)
    sql, params = db._select(src, None, lo, hi, "pg")
    plan = _explain_pg(pg_db, sql, params)
    assert "Index Scan using ev_k on ev" in plan and "Sort" not in plan, plan
    assert re.search(r"Index Cond: \(\(k >= .*\) AND \(k < .*\)\)", plan), plan
    # The fast path's query (every column as JSON, server-side) wraps the same range read.
    from workers import values

    with db.connect(pg_db) as database:
        typed = database._column_types(src)  # type: ignore[attr-defined]
    assert typed is not None and cols == [c.name for c in typed]
    where, params = db._where(src, None, lo, hi, "pg")
    sql = values.pg_row_sql(typed, db.quote("ev"), where, db.quote("k"))
    plan = _explain_pg(pg_db, sql, params)
    assert "Index Scan using ev_k on ev" in plan and "Sort" not in plan, plan
    # A resumed read starts after the last committed key: still the index, lo now excluded.
    lo, hi = read_range(Shard(**item), key, item["lo"])
    assert isinstance(lo, keys.Bound) and not lo.inclusive
    sql, params = db._select(src, None, lo, hi, "pg")
    plan = _explain_pg(pg_db, sql, params)
    assert re.search(r"Index Cond: \(\(k > .*\) AND \(k < .*\)\)", plan), plan


def test_sqlite_cuts_and_shard_reads_walk_the_keys_index(tmp_path: Path) -> None:
    path = tmp_path / "ix.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ev (k TEXT COLLATE NOCASE PRIMARY KEY, v TEXT)")
        conn.executemany(
            "INSERT INTO ev VALUES (?, ?)", [(f"K{i:06x}", str(i)) for i in range(5000)]
        )
        conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT)")
    conn.close()
    with sqlite3.connect(path) as conn:
        src = db.Source("ev", "k", None, None)
        sql, params = db.cuts_sql(src, None, 500, "sa")
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "USING COVERING INDEX sqlite_autoindex_ev_1" in plan, plan
        assert "USE TEMP B-TREE FOR ORDER BY" in plan  # the returned rows by position only
        bound = keys.KeyType("text", "TEXT")
        lo, hi = read_range(Shard(3, "k000100", "K000200", 100, "text"), bound, None)
        sql, params = db._select(src, None, lo, hi, "sa")
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SEARCH ev USING INDEX sqlite_autoindex_ev_1 (k>? AND k<?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        src = db.Source("plain", "id", None, None)
        lo, hi = read_range(Shard(0, 10, 20, 10, "integer"), keys.KeyType("integer", "INTEGER"), 15)
        sql, params = db._select(src, None, lo, hi, "sa")
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan, plan
    conn.close()


# (database, shard args: the PostgreSQL JSON fast path, SQLite through a processor's rows)
RESUME = [
    pytest.param("postgres", (), 10_000, id="postgres-fast-path"),
    pytest.param(
        "sqlite",
        ("--processor", "workers.synth:identity", "--batch-size", "700"),
        700,
        id="sqlite-processor",
    ),
]


@pytest.mark.parametrize(("database", "args", "batch"), RESUME)
def test_a_text_key_shard_killed_mid_read_resumes_after_its_last_key(
    request: pytest.FixtureRequest,
    run_step: RunStep,
    tmp_path: Path,
    database: str,
    args: tuple[str, ...],
    batch: int,
) -> None:
    """SIGKILL after the first checkpoint of the middle shard of a text key: the retry reads
    only the rows after the checkpoint's last key (``key > last``, in the key's collation) and
    publishes the bytes of a clean run."""
    rows, per_shard, every = 60_000, 25_000, 5000
    if database == "postgres":
        url = str(request.getfixturevalue("pg_db"))
        coll = pg_collation(url)
        pg_exec(
            url,
            f'CREATE TABLE tr (k text COLLATE "{coll}" PRIMARY KEY, n int NOT NULL, v text)',
            "INSERT INTO tr SELECT (array['a','B','c','D'])[i % 4 + 1] || md5(i::text), i, "
            f"'row ' || i FROM generate_series(1, {rows}) i",
        )
    else:
        path = tmp_path / "tr.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE tr (k TEXT COLLATE NOCASE PRIMARY KEY, n INT, v TEXT)")
            conn.executemany(
                "INSERT INTO tr VALUES (?, ?, ?)",
                [
                    ("aBcD"[i % 4] + f"{(i * 7919) % 1_000_003:x}", i, f"row {i}")
                    for i in range(rows)
                ],
            )
        conn.close()
        url = f"sqlite:///{path}"
    pipe = Pipeline(run_step, url, str(tmp_path / "store"), tmp_path, run_id="resume", env=ENV)
    source = _source("tr")
    items = pipe.split_from_db(per_shard, *source)
    item = items[1]
    assert item["key"] == "text" and item["rows"] == per_shard
    assert item["lo"] is not None and item["hi"] is not None
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": url, **ENV})
    ckpt = ("--checkpoint-rows", str(every))
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *source, *args, *ckpt)
    kill_at(cmd, env, tmp_path, "checkpoint-1")
    left = json.loads(read(pipe.store, "parts/.part-00001.jsonl.checkpoint"))
    chunk = -(-every // batch) * batch
    assert [c["rows_in"] for c in left["chunks"]] == [chunk]
    last = left["chunks"][0]["last_key"]
    assert isinstance(last, str)

    proc = pipe.shard(item, *source, *args, *ckpt)
    assert proc.returncode == 0, proc.stderr
    resumed = [e for e in log_lines(proc) if e["event"] == "checkpoint"]
    assert resumed and resumed[0]["resume_after_key"] == last
    rec = json.loads(read(pipe.store, "commits/part-00001.json"))
    assert rec["resumed_rows_in"] == chunk and rec["rows_read"] == per_shard - chunk
    assert rec["key"] == "text" and (rec["lo"], rec["hi"]) == (item["lo"], item["hi"])
    part = read(pipe.store, "parts/part-00001.jsonl")
    clean = Pipeline(run_step, url, str(tmp_path / "clean"), tmp_path, pipe.run_id, ENV)
    again = clean.shard(item, *source, *args, "--checkpoint-rows", "0")
    assert again.returncode == 0, again.stderr
    assert part == clean.read("parts/part-00001.jsonl")
    for other in (items[0], items[2]):
        assert pipe.shard(other, *source, *args).returncode == 0
    pipe.ok("merge", "--store", pipe.store, "--format", "jsonl")
    merged = [json.loads(line) for line in pipe.read("merged.jsonl").splitlines()]
    assert sorted(r["n"] for r in merged) == sorted(
        range(rows) if database == "sqlite" else range(1, rows + 1)
    )


def test_bad_keys_exit_2_in_one_line(run_step: RunStep, pg_db: str, tmp_path: Path) -> None:
    """An unorderable key type, a missing key column and NULL keys are bad input, never 70."""
    pg_exec(
        pg_db,
        "CREATE TABLE j (id int, k jsonb, b bytea, v text)",
        "INSERT INTO j VALUES (1, '{}', 'x', 'a')",
        "CREATE TABLE n (k text, v text)",
        "INSERT INTO n VALUES ('a', '1'), (NULL, '2'), ('b', '3')",
    )
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, run_id="bad")
    cases = [
        (["--table", "j", "--key-column", "k"], "key column 'k' (jsonb) cannot cut a table"),
        (["--table", "j", "--key-column", "b"], "key column 'b' (bytea) cannot cut a table"),
        (["--table", "j", "--key-column", "nope"], "has no column 'nope' (--key-column)"),
        (["--table", "n", "--key-column", "k"], "1 of 3 rows have a NULL --key-column 'k'"),
    ]
    for args, message in cases:
        proc = pipe.step(
            "split",
            "--from-db",
            *args,
            "--run-column",
            "",
            "--data-column",
            "",
            "--run-id",
            "bad",
            "--store",
            pipe.store,
        )
        assert proc.returncode == 2, proc.stderr
        error = error_of(proc)
        assert message in error["message"], error
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    assert not (tmp_path / "store" / "plan.json").exists()

    path = tmp_path / "blob.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE bl (k BLOB, v TEXT)")
        conn.executemany("INSERT INTO bl VALUES (?, ?)", [(bytes([i]), str(i)) for i in range(5)])
    conn.close()
    blob = Pipeline(run_step, f"sqlite:///{path}", str(tmp_path / "blob"), tmp_path, run_id="bl")
    proc = blob.step(
        "split",
        "--from-db",
        *_source("bl"),
        "--rows-per-shard",
        "2",
        "--run-id",
        "bl",
        "--store",
        blob.store,
    )
    assert proc.returncode == 2 and "key value of type bytes" in error_of(proc)["message"]


def test_a_typed_item_is_checked_and_a_changed_key_type_is_stale(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    pg_exec(
        pg_db,
        "CREATE TABLE c (k text PRIMARY KEY, v text)",
        "INSERT INTO c SELECT i::text, 'v' FROM generate_series(1, 10) i",
    )
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, run_id="chg")
    items = pipe.split_from_db(4, *_source("c"))
    pg_exec(pg_db, "ALTER TABLE c ALTER COLUMN k TYPE bigint USING k::bigint")
    proc = pipe.shard(items[1], *_source("c"))
    assert proc.returncode == 4
    assert "the plan cut it as text: run split again" in error_of(proc)["message"]
    bad = {**items[1], "key": "jsonb"}
    proc = pipe.shard(bad, *_source("c"))
    assert proc.returncode == 2 and "'key' must be one of" in error_of(proc)["message"]
    bad = {**items[1], "lo": {"a": 1}}
    proc = pipe.shard(bad, *_source("c"))
    assert (
        proc.returncode == 2
        and "'lo' must be a number, a string or null" in error_of(proc)["message"]
    )


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_checkpoint_inside_a_repeated_key_is_dropped_not_resumed(
    request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path, database: str
) -> None:
    """A kill after a checkpoint that ends inside the rows of one key: reading on at
    ``key > last`` would skip the rest of that key's rows, so the retry says so and reads the
    shard from its start; every row is there once."""
    before, heavy, after = 3000, 12_000, 3000
    rows = [(f"a{i:05d}", i) for i in range(before)]
    rows += [("m", before + i) for i in range(heavy)]
    rows += [(f"z{i:05d}", before + heavy + i) for i in range(after)]
    if database == "postgres":
        url = str(request.getfixturevalue("pg_db"))
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE rk (k text NOT NULL, n int NOT NULL)")
            with conn.cursor().copy("COPY rk (k, n) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("CREATE INDEX rk_k ON rk (k)")
    else:
        path = tmp_path / "rk.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE rk (k TEXT NOT NULL, n INT NOT NULL)")
            conn.execute("CREATE INDEX rk_k ON rk (k)")
            conn.executemany("INSERT INTO rk VALUES (?, ?)", rows)
        conn.close()
        url = f"sqlite:///{path}"
    pipe = Pipeline(run_step, url, str(tmp_path / "store"), tmp_path, run_id="rk", env=ENV)
    source = _source("rk")
    [item] = pipe.split_from_db(len(rows), *source)
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": url, **ENV})
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *source, "--checkpoint-rows", "5000")
    kill_at(cmd, env, tmp_path, "checkpoint-1")
    left = json.loads(read(pipe.store, "parts/.part-00000.jsonl.checkpoint"))
    assert [c["last_key"] for c in left["chunks"]] == ["m"]  # 10,000 rows: inside the m's
    proc = pipe.shard(item, *source, "--checkpoint-rows", "5000")
    assert proc.returncode == 0, proc.stderr
    [dropped] = [e for e in log_lines(proc) if e["event"] == "checkpoint-dropped"]
    assert dropped["rows_in"] == 10_000 and dropped["rows_through_key"] == before + heavy
    rec = json.loads(read(pipe.store, "commits/part-00000.json"))
    assert rec["resumed_rows_in"] == 0 and rec["rows_read"] == len(rows)
    pipe.ok("merge", "--store", pipe.store, "--format", "jsonl")
    merged = [json.loads(line) for line in pipe.read("merged.jsonl").splitlines()]
    assert sorted(r["n"] for r in merged) == list(range(len(rows)))
