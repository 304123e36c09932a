"""Provenance: merge certifies one produce generation and one processor, or refuses.

Each test is a reproduction from issue 9 ("the fan-in must never certify stale or mixed
data"), run over the real step processes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep, error_of, log_lines

TESTS = Path(__file__).parent
PLUGINS_ENV = {"PYTHONPATH": str(TESTS)}
TAG = "plugins.userfuncs:tag_"


@pytest.fixture
def pipe(run_step: RunStep, db_url: str, tmp_path: Path) -> Pipeline:
    return Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=PLUGINS_ENV)


def record(pipe: Pipeline, index: int) -> dict[str, Any]:
    return json.loads(pipe.read(f"commits/part-{index:05d}.json"))  # type: ignore[no-any-return]


def events(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line["event"] for line in log_lines(proc)]


def shard_all(pipe: Pipeline, items: list[dict[str, Any]], *args: str) -> None:
    for item in items:
        proc = pipe.shard(item, *args)
        assert proc.returncode == 0, proc.stderr


def test_pipeline_rerun_with_another_generator_and_processor_merges_the_new_rows(
    run_step: RunStep, db_url: str, tmp_path: Path
) -> None:
    env = {"WORKERS_DATABASE_URL": db_url, **PLUGINS_ENV}
    store = str(tmp_path / "store")
    common = ["pipeline", "--run-id", "P", "--store", store, "--rows-per-shard", "40"]

    first = run_step("__main__", *common, "--rows", "100", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_step(
        "__main__",
        *common,
        "--rows",
        "90",
        "--generator",
        "plugins.userfuncs:sparse_rows",
        "--processor",
        f"{TAG}b",
        env=env,
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert "already-committed" not in second.stderr
    merged = json.loads((Path(store) / "merged.json").read_text())
    # The second run's rows (sparse_rows has "n", the synthetic generator "id"), all by b.
    assert len(merged) == 90
    assert [row["n"] for row in merged] == list(range(90))
    assert {row["by"] for row in merged} == {"b"}
    summary = json.loads((Path(store) / "summary.json").read_text())
    assert summary["generation"]["generator"] == "plugins.userfuncs:sparse_rows"
    assert summary["generation"]["rows"] == 90
    assert summary["processor"]["path"] == f"{TAG}b"


def test_shard_rerun_with_another_processor_recomputes(pipe: Pipeline) -> None:
    pipe.produce(60)
    items = pipe.split(30)
    shard_all(pipe, items, "--processor", f"{TAG}a")
    again = pipe.shard(items[0], "--processor", f"{TAG}b")
    assert again.returncode == 0, again.stderr
    assert "already-committed" not in events(again)
    assert record(pipe, 0)["processor"]["path"] == f"{TAG}b"
    assert {
        json.loads(line)["by"] for line in pipe.read("parts/part-00000.jsonl").splitlines()
    } == {"b"}
    # The same processor again is the one case a verified commit is reused.
    same = pipe.shard(items[0], "--processor", f"{TAG}b")
    assert events(same)[-2] == "already-committed"
    # Another batch size is another identity: recomputed.
    other = pipe.shard(items[0], "--processor", f"{TAG}b", "--batch-size", "7")
    assert "already-committed" not in events(other)
    assert record(pipe, 0)["processor"]["options"]["batch_size"] == 7


def test_merge_refuses_parts_of_three_processors_naming_them(pipe: Pipeline) -> None:
    pipe.produce(90)
    items = pipe.split(30)
    shard_all(pipe, items, "--processor", f"{TAG}a")
    assert pipe.shard(items[1], "--processor", f"{TAG}b", "--force").returncode == 0
    assert pipe.shard(items[2], "--processor", f"{TAG}c", "--force").returncode == 0
    proc = pipe.merge()
    assert proc.returncode == 4
    message = error_of(proc)["message"]
    assert "part-00001 was made by processor 'plugins.userfuncs:tag_b'" in message
    assert "part-00002 was made by processor 'plugins.userfuncs:tag_c'" in message
    assert "part-00000" not in message
    assert not pipe.exists("merged.json")


def test_a_plan_that_pins_a_processor_refuses_a_shard_running_another(pipe: Pipeline) -> None:
    pipe.produce(60)
    items = pipe.split(30, "--processor", f"{TAG}a")
    proc = pipe.shard(items[0], "--processor", f"{TAG}b")
    assert proc.returncode == 2
    assert "the plan pins processor 'plugins.userfuncs:tag_a'" in error_of(proc)["message"]
    assert not pipe.exists("parts/part-00000.jsonl")
    shard_all(pipe, items, "--processor", f"{TAG}a")
    # A record forged by a shard that ran before this plan still fails the merge.
    rec = record(pipe, 1)
    rec["processor"] = {**rec["processor"], "path": f"{TAG}c"}
    Path(pipe.store, "commits", "part-00001.json").write_text(json.dumps(rec))
    proc = pipe.merge()
    assert proc.returncode == 4
    assert (
        "part-00001 was made by processor 'plugins.userfuncs:tag_c', not"
        in (error_of(proc)["message"])
    )


def test_changed_processor_code_is_another_identity(pipe: Pipeline, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "myproc.py"
    module.write_text("def f(batch):\n    return [dict(r, v=1) for r in batch]\n")
    pipe.env = {"PYTHONPATH": f"{code}{os.pathsep}{TESTS}"}
    pipe.produce(20)
    item = pipe.split(20)[0]
    assert pipe.shard(item, "--processor", "myproc:f").returncode == 0
    module.write_text("def f(batch):\n    return [dict(r, v=2) for r in batch]\n")
    again = pipe.shard(item, "--processor", "myproc:f")
    assert again.returncode == 0, again.stderr
    assert "already-committed" not in events(again)
    values = [json.loads(line)["v"] for line in pipe.read("parts/part-00000.jsonl").splitlines()]
    assert values == [2] * 20


@pytest.mark.parametrize("second_rows", [60, 90], ids=["same-count", "larger-count"])
def test_produce_rerun_between_shards_is_refused(pipe: Pipeline, second_rows: int) -> None:
    pipe.produce(60, "--seed", "1")
    items = pipe.split(30)
    assert pipe.shard(items[0]).returncode == 0
    pipe.produce(second_rows, "--seed", "2")
    late = pipe.shard(items[1])
    assert late.returncode == 4
    message = error_of(late)["message"]
    gen = record(pipe, 0)["generation"]["id"]
    assert f"the plan was made from generation {gen}" in message
    assert "produce ran again" in message
    assert not pipe.exists("parts/part-00001.jsonl")
    merge = pipe.merge()
    assert merge.returncode == 4
    assert not pipe.exists("merged.json")


def test_a_shard_reads_rows_and_generation_in_one_snapshot(
    pipe: Pipeline, run_step: RunStep, tmp_path: Path
) -> None:
    """produce commits a new generation after the shard read the generation and before it
    reads the rows: the part still holds the generation its record names, the plan's."""
    pipe.produce(400, "--seed", "1")
    item = pipe.split(400)[0]
    env = services.step_env(
        tmp_path / "home",
        {
            "WORKERS_DATABASE_URL": pipe.db_url,
            "PYTHONPATH": f"{TESTS / 'hooks'}{os.pathsep}{TESTS}",
            "WORKERS_TEST_PAUSE_AFTER_GENERATION": "4",
        },
    )
    cmd = [sys.executable, "-m", "workers.shard", "--shard", json.dumps(item)]
    cmd += ["--run-id", pipe.run_id, "--store", pipe.store]
    shard = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
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
    expected = {}
    for seed in (1, 2):
        other = Pipeline(run_step, pipe.db_url, str(tmp_path / f"s{seed}"), tmp_path)
        other.run_id = f"check-{seed}"
        other.produce(400, "--seed", str(seed))
        other.split(400)
        assert other.shard({"index": 0, "lo": 1, "hi": 400, "rows": 400}).returncode == 0
        expected[seed] = other.read("parts/part-00000.jsonl")
    assert expected[1] != expected[2]
    plan = json.loads(pipe.read("plan.json"))
    assert record(pipe, 0)["generation"]["id"] == plan["generation"]["id"]
    assert pipe.read("parts/part-00000.jsonl") == expected[1]
    # The merge certifies that generation; the same shard run now is refused.
    assert pipe.merge().returncode == 0
    assert pipe.shard(item, "--force").returncode == 4


def _kill_at_phase(cmd: list[str], env: dict[str, str], cwd: Path, phase: str) -> None:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"phase"' in line and json.loads(line).get("phase") == phase:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError(f"{cmd[2]} never reached phase {phase}")
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_produce_killed_between_commit_and_count_file_leaves_a_count_split_refuses(
    pipe: Pipeline, tmp_path: Path
) -> None:
    assert pipe.produce(100) == 100
    count_file = tmp_path / "count"
    env = services.step_env(
        tmp_path / "home",
        {
            "WORKERS_DATABASE_URL": pipe.db_url,
            "PYTHONPATH": f"{TESTS / 'hooks'}{os.pathsep}{TESTS}",
            "WORKERS_TEST_PAUSE": "30",
        },
    )
    cmd = [sys.executable, "-m", "workers.produce", "--rows", "150", "--run-id", pipe.run_id]
    # The count file is produce's only atomic write: its first phase comes after the commit.
    _kill_at_phase([*cmd, "--count-file", str(count_file)], env, tmp_path, "before-publish-other")
    assert count_file.read_text() == "100\n"  # stale: the table holds 150 rows now
    for source in (["--count-file", str(count_file)], ["--count", "100"]):
        proc = pipe.step(
            "split",
            *source,
            "--run-id",
            pipe.run_id,
            "--store",
            pipe.store,
            "--rows-per-shard",
            "50",
        )
        assert proc.returncode == 2, proc.stderr
        message = error_of(proc)["message"]
        assert "says 100 rows" in message and "(150 rows by synthetic" in message
        assert "stale" in message
        assert proc.stdout == ""
    assert not pipe.exists("plan.json")


def test_plan_records_generation_and_from_db_what_split_saw(pipe: Pipeline) -> None:
    pipe.produce(50)
    pipe.split(20)
    plan = json.loads(pipe.read("plan.json"))
    assert plan["generation"]["rows"] == 50
    assert plan["generation"]["generator"] == "synthetic"
    assert plan["generation"]["args"] == {"rows": 50, "seed": 0}
    items = pipe.split_from_db(20)
    plan = json.loads(pipe.read("plan.json"))
    assert plan["observed"] == {"rows": 50, "min_key": 1, "max_key": 50}
    assert plan["generation"]["rows"] == 50
    shard_all(pipe, items)
    assert pipe.merge().returncode == 0


def test_from_db_without_a_generation_checks_row_counts(pipe: Pipeline, tmp_path: Path) -> None:
    """A table nobody produced: split records what it saw; a row added afterwards inside a
    shard's range makes that shard exit 4."""
    pipe.produce(40)
    # Copy the rows into a table of the user's own, without generations.
    _sql(pipe.db_url, "CREATE TABLE mine AS SELECT key, data FROM workers_rows")
    plain = ["--table", "mine", "--run-column", ""]
    pipe.run_id = "t1"
    items = pipe.split_from_db(20, *plain)
    plan = json.loads(pipe.read("plan.json"))
    assert plan["generation"] is None
    assert plan["observed"] == {"rows": 40, "min_key": 1, "max_key": 40}
    _sql(pipe.db_url, "INSERT INTO mine (key, data) VALUES (41, '{\"late\": 1}')")
    assert pipe.shard(items[0], *plain).returncode == 0
    late = pipe.shard(items[1], *plain)
    assert late.returncode == 4
    assert "read 21 rows" in error_of(late)["message"]


def _sql(db_url: str, sql: str) -> None:
    if db_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
            conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def test_processor_identity_covers_the_code_it_depends_on() -> None:
    import hypothesis

    from workers.provenance import code_fingerprint, identity_differences

    fp = code_fingerprint("hypothesis:given", hypothesis.given)
    # An installed distribution: its name and version, and its RECORD (every file's hash).
    assert fp["distribution"] == f"hypothesis=={hypothesis.__version__}"
    assert set(fp) == {"distribution", "record"} and len(fp["record"]) == 64
    # A package of the user's: every module of its top-level package, by path.
    sys.path.insert(0, str(TESTS))
    try:
        from plugins import userfuncs
    finally:
        sys.path.remove(str(TESTS))
    fp = code_fingerprint("plugins.userfuncs:tag_a", userfuncs.tag_a)
    assert list(fp) == ["files"]
    package = sorted(f"plugins/{p.name}" for p in (TESTS / "plugins").glob("*.py"))
    assert [f for f in fp["files"] if f.startswith("plugins/")] == package
    a = {"path": "m:f", "code": {"files": {"m.py": "1"}}, "options": {"batch_size": 5}}
    assert identity_differences(a, a) == []
    assert identity_differences(a, {**a, "code": {"files": {"m.py": "2"}}}) == [
        "another version of processor 'm:f' (its code fingerprint differs)"
    ]
    assert identity_differences(a, {**a, "options": {"batch_size": 7}}) == ["batch_size 7, not 5"]


def test_without_a_plan_a_commit_is_reused_only_for_the_tables_current_generation(
    pipe: Pipeline,
) -> None:
    pipe.produce(30, "--seed", "1")
    item = {"index": 0, "lo": 1, "hi": 30, "rows": 30}
    assert pipe.shard(item).returncode == 0  # no split ran: no plan.json in the store
    assert not pipe.exists("plan.json")
    assert events(pipe.shard(item))[-2] == "already-committed"
    pipe.produce(30, "--seed", "2")
    again = pipe.shard(item)
    assert again.returncode == 0, again.stderr
    assert "already-committed" not in events(again)
    _, rows, gen = _sql_generation(pipe)
    assert record(pipe, 0)["generation"]["id"] == gen and rows == 30


def _sql_generation(pipe: Pipeline) -> tuple[str, int, str]:
    sql = "SELECT run_id, row_count, generation FROM workers_generations WHERE run_id = 'run-1'"
    if pipe.db_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(pipe.db_url[len("sqlite:///") :]) as conn:
            row = conn.execute(sql).fetchone()
    else:
        import psycopg

        with psycopg.connect(pipe.db_url) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return str(row[0]), int(row[1]), str(row[2])
