"""The spot notice: SIGTERM makes shard checkpoint what it read and exit 75 within
``--grace-seconds``, so the retry resumes there; produce and merge exit 75 with nothing visible.

Real processes, a real SIGTERM (sent by the test, as the kubelet sends it, or by user code to
its own process), real PostgreSQL and SQLite. User code that swallows every exception or takes
SIGTERM for itself (tests/plugins/spot.py sets SIG_IGN when imported) cannot keep a step from
exiting 75 in time.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep, log_lines
from reliability_helpers import STEP_PYTHONPATH, read, shard_cmd, store_files

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
CKPT = "parts/.part-00000.jsonl.checkpoint"


def _checkpointed(store: str) -> int:
    try:
        return int(json.loads((Path(store) / CKPT).read_bytes())["rows_in"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def _terminate_when(
    cmd: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool], timeout: float = 300
) -> tuple[int, float, list[dict[str, Any]]]:
    """Start ``cmd``, SIGTERM it once ``ready()``; (exit code, seconds from SIGTERM to exit,
    its log lines)."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        end = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"exited {proc.returncode} first: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < end, "never ready"
            time.sleep(0.005)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    return proc.returncode, took, [json.loads(line) for line in err.splitlines() if line]


def _failed(lines: list[dict[str, Any]]) -> dict[str, Any]:
    assert lines and lines[-1]["event"] == "failed", lines[-3:]
    assert [line for line in lines if line["level"] == "error"] == [lines[-1]]
    return lines[-1]


def _clean(run_step: RunStep, pipe: Pipeline, item: dict[str, Any], tmp: Path, *args: str) -> bytes:
    clean = Pipeline(run_step, pipe.db_url, str(tmp / "clean"), tmp, pipe.run_id, ENV)
    proc = clean.shard(item, *args, "--checkpoint-rows", "0", "--force")
    assert proc.returncode == 0, proc.stderr
    return clean.read("parts/part-00000.jsonl")


def _retry_and_compare(
    run_step: RunStep, pipe: Pipeline, item: dict[str, Any], tmp: Path, *args: str
) -> dict[str, Any]:
    proc = pipe.shard(item, *args)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(read(pipe.store, "commits/part-00000.json"))
    committed = [line for line in log_lines(proc) if line["event"] == "committed"]
    assert committed[0]["rows_read"] == rec["rows_read"]
    part = read(pipe.store, "parts/part-00000.jsonl")
    assert part == _clean(run_step, pipe, item, tmp, *args)
    assert rec["sha256"] == hashlib.sha256(part).hexdigest()
    assert [n for n in store_files(pipe.store) if "tmp" in n or n.endswith(".checkpoint")] == []
    return rec  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_1m_row_shard_terminated_at_half_exits_75_and_the_retry_resumes_there(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    """The issue's case on PostgreSQL's fast path (default checkpoints of 100,000 rows): SIGTERM
    once about half the rows are read, between two periodic checkpoints; the shard exits 75
    within 15 s having checkpointed past the last periodic one, the retry reads <= 60% of the
    rows, and the part is the clean run's bytes."""
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 1_000_000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": pg_db, **ENV})
    seen: list[tuple[float, int]] = []

    def about_half() -> bool:
        done = _checkpointed(pipe.store)
        if done and (not seen or seen[-1][1] != done):
            seen.append((time.monotonic(), done))
        if done < 0.4 * rows:
            return False
        per_chunk = (seen[-1][0] - seen[0][0]) / max(1, len(seen) - 1)
        return time.monotonic() >= seen[-1][0] + per_chunk / 2  # into the next chunk

    code, took, lines = _terminate_when(
        shard_cmd(item, pipe.run_id, pipe.store), env, tmp_path, about_half
    )
    periodic = seen[-1][1]
    assert code == 75, lines[-3:]
    assert took < 15, took
    err = _failed(lines)
    assert err["cause"] == "terminated" and err["exit_code"] == 75
    kept = _checkpointed(pipe.store)
    assert f"checkpointed {kept} rows read" in err["message"]
    assert kept > periodic  # the notice's own checkpoint, not the last periodic one
    assert not pipe.exists("parts/part-00000.jsonl") and not pipe.exists("commits/part-00000.json")
    failure = json.loads(read(pipe.store, "failures/part-00000.json"))
    assert failure["cause"] == "terminated" and failure["exit_code"] == 75

    rec = _retry_and_compare(run_step, pipe, item, tmp_path)
    print(
        f"1M-row shard: SIGTERM at ~{kept} rows (periodic checkpoint {periodic}), exit 75 in "
        f"{took:.2f}s; the retry read {rec['rows_read']} rows"
    )
    assert rec["resumed_rows_in"] == kept
    assert rec["rows_read"] == rows - kept <= 0.6 * rows
    assert pipe.merge().returncode == 0


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_processor_shard_checkpoints_at_the_batch_the_notice_arrives_in(
    request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path, database: str
) -> None:
    """Through a processor (row batches) on SQLite and PostgreSQL: the notice, sent by the
    processor during its first batch, checkpoints exactly that batch; the retry reads the rest."""
    db_url = request.getfixturevalue("pg_db" if database == "postgres" else "sqlite_url")
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 20_000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    args = ("--processor", "plugins.spot:notice_on_first_batch", "--batch-size", "700")
    proc = pipe.shard(item, *args, "--checkpoint-rows", "5000", env={"WORKERS_TEST_NOTICE": "1"})
    assert proc.returncode == 75, proc.stderr
    assert _failed(log_lines(proc))["cause"] == "terminated"
    assert _checkpointed(pipe.store) == 700
    rec = _retry_and_compare(run_step, pipe, item, tmp_path, *args)
    assert (rec["resumed_rows_in"], rec["rows_read"]) == (700, rows - 700)


def test_user_code_that_swallows_everything_cannot_outlast_the_grace(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """A processor that catches BaseException and never returns (its module also set SIGTERM
    to SIG_IGN when imported): the shard still exits 75 within --grace-seconds, nothing
    visible; the retry resumes at the last periodic checkpoint and makes the clean bytes."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 5000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    args = ("--processor", "plugins.spot:never_stops", "--batch-size", "100")
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV})
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *args, "--checkpoint-rows", "200")
    cmd += ["--grace-seconds", "2"]
    code, took, lines = _terminate_when(cmd, env, tmp_path, lambda: _checkpointed(pipe.store) > 0)
    assert code == 75, lines[-3:]
    assert 2 <= took < 6, took
    err = _failed(lines)
    assert err["cause"] == "terminated" and "still running 2s after the notice" in err["message"]
    assert not pipe.exists("parts/part-00000.jsonl")
    assert _checkpointed(pipe.store) == 200  # the periodic one: no batch ended after the notice
    retry = ("--processor", "plugins.spot:paced", "--batch-size", "100")
    # paced and never_stops pass rows through alike: the processor identity differs, so the
    # retry recomputes; with the same identity it resumes (the test above)
    rec = _retry_and_compare(run_step, pipe, item, tmp_path, *retry)
    assert rec["rows_in"] == rows


def test_produce_terminated_exits_75_and_commits_nothing(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """A generator that swallows every exception, SIGTERMed mid-way: produce exits 75 within
    the grace, its transaction rolled back (no rows, no generation), no count file."""
    import sqlite3

    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV})
    count = tmp_path / "count"
    cmd = [
        *(sys.executable, "-m", "workers.produce", "--rows", "100000", "--run-id", "r"),
        *("--generator", "plugins.spot:sleeps_swallowing", "--count-file", str(count)),
        *("--grace-seconds", "3"),
    ]
    started = time.monotonic()
    code, took, lines = _terminate_when(cmd, env, tmp_path, lambda: time.monotonic() - started > 2)
    assert code == 75, lines[-3:]
    assert took < 5, took
    assert _failed(lines)["cause"] == "terminated"
    assert not count.exists()
    db = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in tables:
            assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone() == (0,), table
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_merge_terminated_before_publishing_leaves_no_output_and_no_temp(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """SIGTERM while merge holds its finished output, before publishing it (the test hook's
    pause): exit 75, no merged.json, no summary.json, no temp file in the store."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.run_all(3000, 1000)
    for name in ("merged.json", "summary.json"):
        (Path(pipe.store) / name).unlink()
    env = services.step_env(
        tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV, "WORKERS_TEST_PAUSE": "30"}
    )
    cmd = [sys.executable, "-m", "workers.merge", "--store", pipe.store]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    lines = []
    try:
        for raw in proc.stderr:
            lines.append(json.loads(raw))
            if lines[-1].get("phase") == "before-publish-other":
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.stderr.read()
        proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    lines += [json.loads(line) for line in rest.splitlines() if line]
    assert proc.returncode == 75, lines[-3:]
    assert took < 10
    assert _failed(lines)["cause"] == "terminated"
    left = store_files(pipe.store)
    assert "merged.json" not in left and "summary.json" not in left
    assert [n for n in left if "tmp" in n] == []
