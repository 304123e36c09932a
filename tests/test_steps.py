"""The four entrypoints as subprocesses against real databases and storage servers."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep, error_of, log_lines

TESTS = Path(__file__).parent
PLUGINS_ENV = {"PYTHONPATH": str(TESTS)}


def count_rows(db_url: str, run_id: str, table: str = "workers_rows") -> tuple[int, int]:
    """(rows, distinct keys) of a run, read straight from the database."""
    sql = f"SELECT count(*), count(DISTINCT key) FROM {table} WHERE run_id = '{run_id}'"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
            row = conn.execute(sql).fetchone()
    else:
        import psycopg

        with psycopg.connect(db_url) as conn:
            row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def local_pipeline(run_step: RunStep, db_url: str, tmp_path: Path) -> Pipeline:
    return Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=PLUGINS_ENV)


def jq_of_parts(jq: str, pipe: Pipeline, n: int) -> Any:
    paths = [str(Path(pipe.store) / "parts" / f"part-{i:05d}.jsonl") for i in range(n)]
    out = subprocess.run([jq, "-s", "-c", ".", *paths], capture_output=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize(("rows", "per"), [(1000, 1000), (1000, 333), (1000, 100), (0, 10)])
def test_rows_reconcile_and_merge_equals_jq(
    local_pipeline: Pipeline, jq: str, rows: int, per: int
) -> None:
    pipe = local_pipeline
    items = pipe.run_all(rows, per)
    assert len(items) == -(-rows // per)
    merged = json.loads(pipe.read("merged.json"))
    assert len(merged) == rows
    assert sorted(r["id"] for r in merged) == list(range(1, rows + 1))
    if items:
        assert merged == jq_of_parts(jq, pipe, len(items))
    summary = json.loads(pipe.read("summary.json"))
    assert summary["totals"]["rows"] == rows == summary["totals"]["rows_expected"]
    assert [s["index"] for s in summary["shards"]] == list(range(len(items)))
    if items:
        assert summary["skew"]["slowest"]["duration_s"] >= summary["skew"]["fastest"]["duration_s"]


def test_jsonl_format_concatenates(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    items = pipe.run_all(250, 100, fmt="jsonl")
    parts = b"".join(pipe.read(f"parts/part-{i:05d}.jsonl") for i in range(len(items)))
    assert pipe.read("merged.jsonl") == parts


def test_produce_is_idempotent(local_pipeline: Pipeline, db_url: str) -> None:
    pipe = local_pipeline
    assert pipe.produce(500) == 500
    assert pipe.produce(500) == 500
    assert count_rows(db_url, pipe.run_id) == (500, 500)
    assert pipe.produce(200) == 200  # a re-run replaces, it never appends
    assert count_rows(db_url, pipe.run_id) == (200, 200)


def test_user_generator_round_trips_awkward_strings(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    assert pipe.produce(300, "--generator", "plugins.userfuncs:sparse_rows") == 300
    items = pipe.split(128)
    for item in items:
        assert pipe.shard(item).returncode == 0
    pipe.ok("merge", "--store", pipe.store)
    merged = json.loads(pipe.read("merged.json"))
    assert [r["n"] for r in merged] == list(range(300))
    assert all(r["quote"] == 'a "quoted" \\ back\tslash\nnewline' for r in merged)


def test_processor_changes_values_and_merge_follows_records(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    pipe.produce(120)
    for item in pipe.split(50):
        assert (
            pipe.shard(
                item, "--processor", "plugins.userfuncs:double", "--batch-size", "7"
            ).returncode
            == 0
        )
    pipe.ok("merge", "--store", pipe.store)
    merged = json.loads(pipe.read("merged.json"))
    assert len(merged) == 240
    assert merged[:2] == [{"id": 1, "half": 0}, {"id": 1, "half": 1}]


@pytest.mark.parametrize("which", ["s3", "gcs", "file"])
def test_bucket_and_file_urls(
    request: pytest.FixtureRequest, run_step: RunStep, sqlite_url: str, tmp_path: Path, which: str
) -> None:
    if which == "file":
        url, env = f"file://{tmp_path}/fstore", {}
    else:
        store = request.getfixturevalue(f"{which}_store")
        url, env = store.url, store.env
    pipe = Pipeline(run_step, sqlite_url, url, tmp_path, env={**env, **PLUGINS_ENV})
    items = pipe.run_all(700, 200)
    merged = json.loads(pipe.read("merged.json"))
    assert [r["id"] for r in merged] == list(range(1, 701))
    assert len(items) == 4
    assert json.loads(pipe.read("summary.json"))["totals"]["rows"] == 700


def test_merge_with_a_missing_shard_names_it_and_writes_nothing(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    pipe.produce(300)
    items = pipe.split(100)
    for item in items:
        if item["index"] != 1:
            assert pipe.shard(item).returncode == 0
    proc = pipe.merge()
    assert proc.returncode == 4
    assert "part-00001 missing" in error_of(proc)["message"]
    assert not pipe.exists("merged.json") and not pipe.exists("summary.json")
    assert pipe.shard(items[1]).returncode == 0  # the retry of the missing shard...
    assert pipe.merge().returncode == 0  # ...completes the fan-in


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "drop-file", "bad-record"])
def test_merge_refuses_a_damaged_shard(local_pipeline: Pipeline, damage: str) -> None:
    pipe = local_pipeline
    items = pipe.run_all(300, 100)
    store = Path(pipe.store)
    (store / "merged.json").unlink()
    part, record = store / "parts" / "part-00002.jsonl", store / "commits" / "part-00002.json"
    if damage == "flip-byte":
        data = bytearray(part.read_bytes())
        data[10] ^= 1
        part.write_bytes(bytes(data))
    elif damage == "truncate":
        part.write_bytes(part.read_bytes()[:-30])
    elif damage == "drop-file":
        part.unlink()
    else:
        record.write_text("{not json")
    proc = pipe.merge()
    assert proc.returncode == 4, proc.stderr
    assert "part-00002" in error_of(proc)["message"]
    assert not (store / "merged.json").exists()
    assert (
        pipe.shard(items[2]).returncode == 0
    )  # a re-run repairs it (the commit no longer verifies)
    assert pipe.merge().returncode == 0


def test_merge_twice_is_byte_identical(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    pipe.run_all(400, 150)
    first = pipe.read("merged.json")
    pipe.ok("merge", "--store", pipe.store)
    assert pipe.read("merged.json") == first


def test_shard_retry_converges_and_skips_verified_work(local_pipeline: Pipeline) -> None:
    pipe = local_pipeline
    pipe.produce(200)
    item = pipe.split(200)[0]
    first = pipe.shard(item)
    record = json.loads(pipe.read("commits/part-00000.json"))
    again = pipe.shard(item, "--attempt", "1")
    assert [line["event"] for line in log_lines(again)][-2] == "already-committed"
    assert json.loads(pipe.read("commits/part-00000.json")) == record
    forced = pipe.shard(item, "--force", "--attempt", "2")
    assert first.returncode == again.returncode == forced.returncode == 0
    rec2 = json.loads(pipe.read("commits/part-00000.json"))
    assert (rec2["sha256"], rec2["rows"], rec2["attempt"]) == (record["sha256"], record["rows"], 2)


def _slow_shard(
    pipe: Pipeline, item: dict[str, Any], home: Path, delay: str, *extra: str
) -> tuple[list[str], dict[str, str]]:
    """Command and environment of a shard whose processor sleeps per batch of 100 rows."""
    env = services.step_env(
        home, {"WORKERS_DATABASE_URL": pipe.db_url, **PLUGINS_ENV, "WORKERS_TEST_SLOW": delay}
    )
    cmd = [
        sys.executable,
        "-m",
        "workers.shard",
        "--shard",
        json.dumps(item),
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
        "--processor",
        "plugins.userfuncs:slow",
        "--batch-size",
        "100",
        *extra,
    ]
    return cmd, env


def test_two_attempts_at_once_commit_one_clean_result(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=PLUGINS_ENV)
    pipe.produce(2000)
    item = pipe.split(2000)[0]
    cmd, env = _slow_shard(pipe, item, tmp_path / "home", "0.05", "--force")
    # The zombie is mid-write (its temp file exists) when the retry starts: not left to timing.
    zombie = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    parts = Path(pipe.store) / "parts"
    deadline = time.monotonic() + 60
    while not (parts.is_dir() and list(parts.glob(".part-00000.jsonl.tmp-*"))):
        assert zombie.poll() is None and time.monotonic() < deadline, "no temp file seen"
        time.sleep(0.01)
    retry = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    procs = [zombie, retry]
    codes = [p.wait(60) for p in procs]
    errors = [p.stderr.read().decode()[-2000:] if p.stderr else "" for p in procs]
    assert codes == [0, 0], errors  # both attempts succeed: neither may break the other
    clean = Pipeline(run_step, sqlite_url, str(tmp_path / "clean"), tmp_path, env=PLUGINS_ENV)
    assert clean.shard(item).returncode == 0
    assert pipe.read("parts/part-00000.jsonl") == clean.read("parts/part-00000.jsonl")
    rec = json.loads(pipe.read("commits/part-00000.json"))
    assert rec["sha256"] == hashlib.sha256(clean.read("parts/part-00000.jsonl")).hexdigest()
    assert not list((Path(pipe.store) / "parts").glob(".*tmp*"))


def test_sigkill_mid_write_leaves_nothing_under_the_final_name(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=PLUGINS_ENV)
    pipe.produce(3000)
    item = pipe.split(3000)[0]
    cmd, env = _slow_shard(pipe, item, tmp_path / "home", "0.1")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    parts = Path(pipe.store) / "parts"
    deadline = time.monotonic() + 30
    while not (
        parts.exists() and any(p.stat().st_size > 0 for p in parts.glob(".part-00000.jsonl.tmp-*"))
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the write: ~30 batches of 0.1 s
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (parts / "part-00000.jsonl").exists()
    assert not (Path(pipe.store) / "commits" / "part-00000.json").exists()
    assert (
        pipe.merge().returncode == 4
    )  # the fan-in sees no committed shard, it never reads the temp
    rerun = pipe.shard(item, "--processor", "plugins.userfuncs:slow", "--batch-size", "1000")
    assert rerun.returncode == 0, rerun.stderr
    assert not list(parts.glob(".*tmp*"))  # the retry cleared the dead attempt's temp file
    assert pipe.merge().returncode == 0
    assert len(json.loads(pipe.read("merged.json"))) == 3000


def test_split_from_db_covers_a_sparse_table(run_step: RunStep, tmp_path: Path) -> None:
    db = tmp_path / "ext.db"
    keys = sorted({(i * 7919) % 100_003 for i in range(1, 1001)})
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT, weight REAL)")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [(k, f"e{k}", k / 3) for k in keys])
    url = f"sqlite:///{db}"
    pipe = Pipeline(run_step, url, str(tmp_path / "store"), tmp_path, run_id="ext")
    src = ["--table", "events", "--key-column", "id", "--run-column", "", "--data-column", ""]
    proc = pipe.ok(
        "split",
        "--from-db",
        *src,
        "--rows-per-shard",
        "300",
        "--run-id",
        "ext",
        "--store",
        pipe.store,
    )
    items = json.loads(proc.stdout)
    assert [i["rows"] for i in items] == [300, 300, 300, len(keys) - 900]
    assert items[0]["lo"] is None and items[-1]["hi"] is None
    for item in items:
        assert pipe.shard(item, *src).returncode == 0
    pipe.ok("merge", "--store", pipe.store)
    merged = json.loads(pipe.read("merged.json"))
    assert [r["id"] for r in merged] == keys
    assert merged[0] == {"id": keys[0], "name": f"e{keys[0]}", "weight": keys[0] / 3}


def test_plain_merge_is_a_drop_in_for_jq(run_step: RunStep, tmp_path: Path, jq: str) -> None:
    files = {
        "message-b.json": '{"message": "world"}\n',
        "message-a.json": '{\n  "message": "hello",\n  "n": [1, 2]\n}\n',
        "message-c.json": '1 2\n"three"\n',
        "other.json": "[]",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    pattern = str(tmp_path / "message-*.json")
    proc = run_step("merge", "--glob", pattern, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(str(p) for p in tmp_path.glob("message-*.json"))
    expected = subprocess.run([jq, "-s", ".", *names], capture_output=True, check=True).stdout
    assert json.loads(proc.stdout) == json.loads(expected)
    explicit = run_step("merge", *names, "--output", str(tmp_path / "out.json"), cwd=tmp_path)
    assert explicit.returncode == 0 and explicit.stdout == ""
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(expected)


def test_plain_merge_with_invalid_json_names_file_and_line_and_prints_nothing(
    run_step: RunStep, tmp_path: Path
) -> None:
    (tmp_path / "a.json").write_text('{"ok": 1}\n' * 1000)
    (tmp_path / "b.json").write_text('{"ok": 1}\n{"ok": 2}\n{"ok": \n')
    proc = run_step("merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    msg = error_of(proc)["message"]
    assert "b.json: line 3: invalid JSON" in msg


BAD_INPUTS = [
    ("shard", ["--shard", '{"index":0,"lo":1', "--run-id", "r"], 2, "not valid JSON"),
    ("shard", ["--shard", '{"index":0,"lo":9,"hi":1}', "--run-id", "r"], 2, "lo 9 is above hi 1"),
    ("shard", ["--shard", '{"index":"x"}', "--run-id", "r"], 2, "'index' must be an integer"),
    ("shard", ["--shard", "@/nonexistent/item.json", "--run-id", "r"], 2, "file not found"),
    ("shard", ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}'], 2, "run id is required"),
    (
        "shard",
        ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}', "--run-id", "../etc"],
        2,
        "invalid run id",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            "--run-id",
            "r",
            "--table",
            'x"; DROP TABLE y; --',
        ],
        2,
        "invalid table name",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            "--run-id",
            "r",
            "--processor",
            "nope.nothere:f",
        ],
        2,
        "cannot import 'nope.nothere'",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            "--run-id",
            "r",
            "--processor",
            "not a path",
        ],
        2,
        "is not an import path",
    ),
    ("split", ["--count", "-5"], 2, "expected an integer >= 0"),
    ("split", ["--count", "1.5"], 2, "expected an integer >= 0"),
    ("split", ["--count", "10", "--rows-per-shard", "0"], 2, "expected a positive integer"),
    (
        "split",
        ["--count", "100000000", "--rows-per-shard", "10"],
        2,
        "raise --rows-per-shard to at least 100000",
    ),
    ("split", ["--count-file", "/nonexistent/count"], 2, "file not found"),
    (
        "split",
        [],
        2,
        "one of the arguments --count --count-file --from-db --from-files is required",
    ),
    ("merge", ["--store", "STORE", "--format", "xml"], 2, "unknown --format 'xml'"),
    ("merge", ["--store", "STORE"], 4, "no plan at"),
    ("merge", ["--glob", "/nonexistent/*.json"], 2, "matches no file"),
    (
        "produce",
        ["--rows", "10", "--generator", "plugins.userfuncs:broken_generator"],
        3,
        "generator exploded",
    ),
    (
        "produce",
        ["--rows", "10", "--generator", "plugins.userfuncs:not_dicts"],
        3,
        "expected a dict",
    ),
    ("produce", ["--rows", "ten"], 2, "expected an integer >= 0"),
]


@pytest.mark.parametrize(
    ("step", "args", "code", "message"),
    BAD_INPUTS,
    ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)],
)
def test_bad_input_gets_one_line_and_its_exit_code(
    run_step: RunStep, tmp_path: Path, step: str, args: list[str], code: int, message: str
) -> None:
    args = [a.replace("STORE", str(tmp_path / "store")) for a in args]
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite", **PLUGINS_ENV}
    proc = run_step(step, *args, env=env, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    errors = [line for line in log_lines(proc) if line["level"] == "error"]
    assert len(errors) == 1
    assert message in error_of(proc)["message"]


@pytest.mark.parametrize("processor", ["explode", "unserializable"])
def test_processor_failure_exits_3_without_a_part(local_pipeline: Pipeline, processor: str) -> None:
    pipe = local_pipeline
    pipe.produce(50)
    item = pipe.split(50)[0]
    proc = pipe.shard(item, "--processor", f"plugins.userfuncs:{processor}")
    assert proc.returncode == 3
    assert "processor plugins.userfuncs" in error_of(proc)["message"]
    assert not pipe.exists("parts/part-00000.jsonl")


def test_unreachable_database_is_transient_and_keeps_the_password(
    run_step: RunStep, tmp_path: Path
) -> None:
    env = {
        "WORKERS_DATABASE_URL": "postgresql://app:CanaryPw-93@127.0.0.1:9/app",
        "WORKERS_CONNECT_TIMEOUT": "3",
    }
    for step, args in [
        ("produce", ["--rows", "5", "--run-id", "r"]),
        (
            "shard",
            [
                "--shard",
                '{"index":0,"lo":null,"hi":null,"rows":null}',
                "--run-id",
                "r",
                "--store",
                str(tmp_path),
            ],
        ),
    ]:
        proc = run_step(step, *args, env=env, cwd=tmp_path)
        assert proc.returncode == 75, proc.stderr
        assert "CanaryPw-93" not in proc.stderr + proc.stdout
        assert "cannot connect" in error_of(proc)["message"]


def test_shard_item_from_an_at_file(local_pipeline: Pipeline, tmp_path: Path) -> None:
    pipe = local_pipeline
    pipe.produce(10)
    item = pipe.split(10)[0]
    (tmp_path / "item.json").write_text(json.dumps(item))
    proc = pipe.step(
        "shard",
        "--shard",
        f"@{tmp_path / 'item.json'}",
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
    )
    assert proc.returncode == 0, proc.stderr


ARGO_SAMPLES = {
    "{{item}}": '{"index":0,"lo":1,"hi":10,"rows":10}',
    "{{retries}}": "0",
    "{{workflow.name}}": "wf-abc12",
}


def _help_examples(text: str, step: str) -> list[list[str]]:
    """Commands for ``step`` in a help text, continuation lines joined, env prefixes dropped."""
    cmds, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        starts = line.startswith(("python -m", "WORKERS_")) and f"-m workers.{step}" in line
        if buf or starts:
            buf += " " + line.rstrip("\\")
            if not line.endswith("\\"):
                # Argo expressions in template examples get the values Argo would substitute.
                for expr, value in ARGO_SAMPLES.items():
                    buf = buf.replace(expr, value)
                words = shlex.split(buf, comments=True)
                cmds.append(words[words.index(f"workers.{step}") + 1 :])
                buf = ""
    return cmds


@pytest.mark.parametrize("step", ["produce", "split", "shard", "merge"])
def test_help_shows_examples_that_parse(run_step: RunStep, step: str) -> None:
    import importlib

    proc = run_step(step, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    examples = _help_examples(proc.stdout, step)
    assert len(examples) >= 2
    module = importlib.import_module(f"workers.{step}")
    for args in examples:
        module.build_parser().parse_args(args)  # a wrong flag in an example raises UsageError here


def test_docs_step_examples_parse() -> None:
    import importlib

    readme = (TESTS.parent / "docs" / "reference" / "steps.md").read_text()
    seen = 0
    for step in ("produce", "split", "shard", "merge"):
        module = importlib.import_module(f"workers.{step}")
        for args in _help_examples(readme, step):
            module.build_parser().parse_args(args)
            seen += 1
    assert seen >= 5


@pytest.mark.slow
def test_a_million_rows_through_postgres_in_ten_shards(
    run_step: RunStep, pg_db: str, tmp_path: Path, jq: str
) -> None:
    """The issue's acceptance run: rows reconcile and the fan-in equals `jq -s .` of the parts."""
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path)
    items = pipe.run_all(1_000_000, 100_000)
    assert len(items) == 10
    merged = json.loads(pipe.read("merged.json"))
    assert len(merged) == 1_000_000 == count_rows(pg_db, pipe.run_id)[0]
    assert merged == jq_of_parts(jq, pipe, 10)
