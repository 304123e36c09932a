"""Reliability: the PostgreSQL connection cut (RST) or stalled mid-produce and mid-shard-read,
and connects to a port that never answers, through a TCP proxy on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pipeline_helpers import Pipeline, RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH, TcpProxy, exists, pg_url_via
from test_steps import count_rows

pytestmark = pytest.mark.reliability

ENV = {"PYTHONPATH": STEP_PYTHONPATH}


def _target(pg_db: str) -> tuple[str, int]:
    hostport = pg_db.split("@", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    return host, int(port or 5432)


@pytest.mark.parametrize("mode", ["reset", "stall"])
def test_connection_cut_mid_produce_keeps_the_previous_rows(
    pg_db: str, run_step: RunStep, tmp_path: Path, mode: str
) -> None:
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    assert pipe.produce(1000) == 1000  # the run's previous, committed rows
    (tmp_path / "count").unlink()
    with TcpProxy(_target(pg_db), mode=mode, after_bytes=256 * 1024, direction="up") as proxy:
        t0 = time.monotonic()
        proc = pipe.step(
            "produce",
            "--rows",
            "20000",
            "--run-id",
            pipe.run_id,
            "--count-file",
            str(tmp_path / "count"),
            env={
                "WORKERS_DATABASE_URL": pg_url_via(pg_db, proxy.address),
                "WORKERS_TIMEOUT": "6",
            },
            timeout=60,
        )
        elapsed = time.monotonic() - t0
        assert proxy.tripped.is_set()
    assert proc.returncode == 75, proc.stderr
    assert elapsed < 6 + 10, elapsed
    if mode == "stall":
        assert "deadline of 6s exceeded" in error_of(proc)["message"]
    else:
        error_of(proc)
    assert not (tmp_path / "count").exists()
    # Never a partial set: the old 1000 rows, whole (the new load was one transaction).
    deadline = time.monotonic() + 30  # a stalled backend holds its lock until the server notices
    while count_rows(pg_db, pipe.run_id) != (1000, 1000):
        assert time.monotonic() < deadline, count_rows(pg_db, pipe.run_id)
        time.sleep(0.5)
    assert pipe.produce(20000) == 20000  # the re-run converges
    assert count_rows(pg_db, pipe.run_id) == (20000, 20000)


@pytest.mark.parametrize("processor", ["copy", "cursor"])
@pytest.mark.parametrize("mode", ["reset", "stall"])
def test_connection_cut_mid_shard_read_leaves_no_part(
    pg_db: str, run_step: RunStep, tmp_path: Path, mode: str, processor: str
) -> None:
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(20000)
    item = pipe.split(20000)[0]
    extra = [] if processor == "copy" else ["--processor", "plugins.userfuncs:double"]
    with TcpProxy(_target(pg_db), mode=mode, after_bytes=200 * 1024, direction="down") as proxy:
        t0 = time.monotonic()
        proc = pipe.shard(
            item,
            *extra,
            env={
                "WORKERS_DATABASE_URL": pg_url_via(pg_db, proxy.address),
                "WORKERS_TIMEOUT": "6",
            },
            timeout=60,
        )
        elapsed = time.monotonic() - t0
        assert proxy.tripped.is_set()
    assert proc.returncode == 75, proc.stderr
    assert elapsed < 6 + 10, elapsed
    message = error_of(proc)["message"]
    if mode == "stall":
        # Only the step deadline can end a stall the kernel still acknowledges (keepalives
        # succeed); when the driver's clean-up blocks too, the watchdog exits 75 like a kill.
        assert "deadline of 6s exceeded" in message
    assert not exists(pipe.store, "parts/part-00000.jsonl")
    assert not exists(pipe.store, "commits/part-00000.json")
    left = [p.name for p in (Path(pipe.store) / "parts").glob("*")]
    assert all(name.startswith(".part-00000.jsonl.tmp-") for name in left), left
    again = pipe.shard(item, *extra)
    assert again.returncode == 0, again.stderr
    assert not list((Path(pipe.store) / "parts").glob(".*"))  # the retry removed the temp
    assert pipe.merge().returncode == 0
    n = len(json.loads((Path(pipe.store) / "merged.json").read_bytes()))
    assert n == (20000 if processor == "copy" else 40000)


@pytest.mark.parametrize("step", ["produce", "split", "shard"])
def test_connect_to_a_port_that_never_answers_fails_within_the_connect_timeout(
    pg_db: str, run_step: RunStep, tmp_path: Path, step: str
) -> None:
    args = {
        "produce": ["--rows", "5", "--run-id", "r"],
        "split": ["--from-db", "--run-id", "r"],
        "shard": [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            "--run-id",
            "r",
            "--store",
            str(tmp_path / "s"),
        ],
    }[step]
    with TcpProxy(("127.0.0.1", 9), mode="blackhole") as hole:
        t0 = time.monotonic()
        proc = run_step(
            step,
            *args,
            env={
                "WORKERS_DATABASE_URL": pg_url_via(pg_db, hole.address, "CanaryHole-51"),
                "WORKERS_CONNECT_TIMEOUT": "2",
            },
            cwd=tmp_path,
            timeout=60,
        )
        elapsed = time.monotonic() - t0
    assert proc.returncode == 75, proc.stderr
    assert elapsed < 2 + 6, elapsed  # the timeout, plus interpreter start-up
    assert "cannot connect" in error_of(proc)["message"]
    assert "CanaryHole-51" not in proc.stderr + proc.stdout
