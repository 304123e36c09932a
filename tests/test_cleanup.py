"""``python -m workers.cleanup`` and the pipeline's ``cleanup`` parameter: a finished run's rows
and generation leave the database; a run a plan may still read is refused (exit 2, one line).

Every step is a real process against real PostgreSQL and SQLite (``db_url``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Pipeline, RunStep, error_of, log_lines

from workers.runadapter import main as run_main

REPO = Path(__file__).resolve().parents[1]
TABLE = "workers_rows"


@contextlib.contextmanager
def _cursor(db_url: str) -> Iterator[Any]:
    if db_url.startswith("sqlite"):
        conn: Any = sqlite3.connect(db_url.split("///", 1)[1])
    else:
        import psycopg

        conn = psycopg.connect(db_url, autocommit=True)
    try:
        yield conn.cursor()
        conn.commit()
    finally:
        conn.close()


def held(db_url: str, run_id: str) -> tuple[int, int]:
    """(rows of ``run_id`` in the rows' table, its rows in workers_generations)."""
    with _cursor(db_url) as cur:
        cur.execute(f"SELECT count(*) FROM {TABLE} WHERE run_id = '{run_id}'")
        rows = cur.fetchone()[0]
        cur.execute(f"SELECT count(*) FROM workers_generations WHERE run_id = '{run_id}'")
        return int(rows), int(cur.fetchone()[0])


def cleanup(pipe: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return pipe.step("cleanup", "--run-id", pipe.run_id, "--store", pipe.store, *args)


def refused(proc: subprocess.CompletedProcess[str], words: str) -> None:
    """Exit 2 with one JSON error line naming ``words``, nothing else on stderr or stdout."""
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert len(log_lines(proc)) == 1 and proc.stdout == ""
    assert words in err["message"], err["message"]


@pytest.fixture
def two_runs(run_step: RunStep, db_url: str, tmp_path: Path) -> tuple[Pipeline, Pipeline]:
    """run-1 and run-2 of the same table, each with its own store and working folder."""
    pipes = []
    for run_id in ("run-1", "run-2"):
        work = tmp_path / run_id
        work.mkdir()
        pipes.append(Pipeline(run_step, db_url, str(work / "store"), work, run_id=run_id))
    return pipes[0], pipes[1]


def test_a_finished_run_loses_its_rows_and_generation_and_no_other_run_does(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    done, other = two_runs
    done.run_all(3000, 1000)
    other.run_all(2000, 1000)
    assert held(db_url, "run-1") == (3000, 1) and held(db_url, "run-2") == (2000, 1)
    proc = cleanup(done)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in log_lines(proc) if x.get("event") == "cleaned"]
    assert line["rows"] == 3000 and line["run_id"] == "run-1" and line["table"] == TABLE
    assert line["plan"].endswith("plan.json")
    assert held(db_url, "run-1") == (0, 0)
    assert held(db_url, "run-2") == (2000, 1)
    # the run's files stay: the merged output is what the run was for
    assert len(json.loads(done.read("merged.json"))) == 3000
    again = cleanup(done)  # nothing left: still a success, 0 rows
    assert again.returncode == 0, again.stderr
    assert [x["rows"] for x in log_lines(again) if x.get("event") == "cleaned"] == [0]


def test_refused_while_the_plan_may_still_read_the_rows(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    """Planned, then every shard committed but no merge yet: refused each time, rows intact;
    once merge has published summary.json the same command removes them."""
    pipe, _ = two_runs
    pipe.produce(3000)
    items = pipe.split(1000)
    refused(cleanup(pipe), "merge has not published")
    for item in items:
        assert pipe.shard(item).returncode == 0
    refused(cleanup(pipe), "merge has not published")
    assert held(db_url, "run-1") == (3000, 1)
    pipe.ok("merge", "--store", pipe.store)
    assert cleanup(pipe).returncode == 0
    assert held(db_url, "run-1") == (0, 0)


def test_refused_when_produce_ran_again_after_the_plan(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    pipe, _ = two_runs
    pipe.run_all(2000, 1000)
    pipe.produce(2500)  # a new generation that no finished plan covers
    refused(cleanup(pipe), "produce ran again since")
    assert held(db_url, "run-1") == (2500, 1)


def test_a_summary_of_another_run_does_not_finish_a_plan(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    pipe, other = two_runs
    other.run_all(1000, 1000)
    pipe.produce(1000)
    pipe.split(1000)
    summary = Path(other.store) / "summary.json"
    refused(cleanup(pipe, "--summary", str(summary)), "merge has not published")
    refused(cleanup(pipe, "--store", other.store), "plans run 'run-2', not 'run-1'")
    assert held(db_url, "run-1") == (1000, 1)


def test_without_a_plan_in_the_store_the_rows_go(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    """produce alone (split never planned this store): no plan reads the rows."""
    pipe, _ = two_runs
    pipe.produce(1500)
    proc = cleanup(pipe)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in log_lines(proc) if x.get("event") == "cleaned"]
    assert line["rows"] == 1500 and "plan" not in line
    assert held(db_url, "run-1") == (0, 0)


def test_rows_produce_did_not_write_and_a_whole_table_are_refused(
    two_runs: tuple[Pipeline, Pipeline], db_url: str
) -> None:
    pipe, other = two_runs
    other.produce(10)  # creates both tables
    with _cursor(db_url) as cur:
        cur.execute(f"INSERT INTO {TABLE} (run_id, key, data) VALUES ('run-1', 1, '{{}}')")
    refused(cleanup(pipe), "produce did not write them")
    refused(cleanup(pipe, "--run-column", ""), "never a whole table")
    assert held(db_url, "run-1") == (1, 0)
    assert held(db_url, "run-2") == (10, 1)


def test_help_has_examples_and_the_rule() -> None:
    for cmd in (["-m", "workers.cleanup"], ["-m", "workers", "cleanup"]):
        proc = subprocess.run(
            [sys.executable, *cmd, "--help"], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "examples:" in proc.stdout and "-p cleanup=true" in proc.stdout
        assert "STORE/plan.json" in proc.stdout and "exit codes:" in proc.stdout


@pytest.mark.parametrize("clean", [True, False], ids=["cleanup", "default"])
def test_local_pipeline_runs_cleanup_after_merge(
    tmp_path: Path, clean: bool, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``workers run workers-pipeline -p cleanup=true``: the template's final task removes the
    run's rows once merge succeeded; without it they stay. SQLite is the embedded default (a
    file in the run's work folder, which every pod sees)."""
    if db_url.startswith("sqlite"):
        monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("WORKERS_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    params = ["-p", "rows=3000", "-p", "rows-per-shard=1000"]
    if clean:
        params += ["-p", "cleanup=true"]
    runs = tmp_path / "runs"
    manifests = str(REPO / "manifests")
    code = run_main(["workers-pipeline", "--manifests", manifests, "--runs", str(runs), *params])
    (record,) = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert code == 0, record["status"].get("message")
    name = record["metadata"]["name"]
    phases = {n["displayName"]: n["phase"] for n in record["status"]["nodes"].values()}
    assert phases["merge"] == "Succeeded"
    assert phases["cleanup"] == ("Succeeded" if clean else "Skipped")
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{Path(record['workersRunner']['workFolder']) / 'workers.db'}"
    assert held(db_url, name) == ((0, 0) if clean else (3000, 1))
    store = Path(record["workersRunner"]["volumes"]["workers-shared"]) / name
    assert len(json.loads((store / "merged.json").read_text())) == 3000
