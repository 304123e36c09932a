"""``workers run --resume``: a failed local run runs again in its folder, keeping what succeeded.

Argo's ``argo retry``: the same workflow name, parameters and run folder; the pod steps that
succeeded keep their outputs and do not run again; the failed ones and the steps after them do.
Real runs through the runner (bubblewrap when it works), real pods, the embedded SQLite database.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
EXAMPLE = TESTS / "argo_examples" / "progress.yaml"
HANG_GUARD_S = 300


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKERS_DATABASE_URL",)}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{TESTS}"  # the pods import plugins.userfuncs
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", "run", *args],
        env=_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )


def nodes(run_dir: Path) -> list[dict]:
    record = json.loads((run_dir / "run.json").read_text())
    return list(record["status"]["nodes"].values())


def test_resume_keeps_the_succeeded_steps_and_runs_the_failed_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run([str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0"], tmp_path)
    assert first.returncode == 1, first.stderr
    (run_dir,) = runs.iterdir()
    before = {n["name"]: n for n in nodes(run_dir) if n["type"] == "Pod"}
    assert sum(n["phase"] == "Succeeded" for n in before.values()) == 8  # prepare + 7 items

    again = run(
        [str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0", "--resume", run_dir.name], tmp_path
    )
    assert again.returncode == 1  # item 5 still refuses its input
    assert f"resuming: {run_dir.name} (Failed); 8 pod steps that succeeded are kept" in again.stderr
    after = {n["name"]: n for n in nodes(run_dir) if n["type"] == "Pod"}
    assert after.keys() == before.keys()
    for name, node in after.items():
        if before[name]["phase"] == "Succeeded":
            # kept as it was: outputs and times of the earlier run, no new pod
            assert node["message"] == "succeeded in the run this one resumes (kept)"
            assert node["outputs"] == before[name]["outputs"]
            assert node["startedAt"] == before[name]["startedAt"]
        else:
            assert node["phase"] == "Failed" and node["startedAt"] > before[name]["finishedAt"]
    assert [p.name for p in runs.iterdir()] == [run_dir.name]


@pytest.mark.slow
def test_resumed_pipeline_reuses_produce_and_the_committed_shards(tmp_path: Path) -> None:
    """The fan-in case: one shard's processor fails, the user fixes it, resumes; produce does
    not run again (same generation), the nine good shards run again (their template says
    workers.dev/resume: rerun) and reuse their verified commits, merge certifies all rows."""
    runs = tmp_path / "runs"
    params = ["-p", "rows=1000", "-p", "rows-per-shard=100"]
    params += ["-p", "processor=plugins.userfuncs:fails_until_fixed"]
    first = run(["workers-pipeline", "--runs", str(runs), *params], tmp_path)
    assert first.returncode == 1, first.stderr
    (run_dir,) = runs.iterdir()
    resume_line = next(ln for ln in first.stdout.splitlines() if ln.startswith("resume:"))
    assert f"--resume {run_dir}" in resume_line
    produce_before = next(n for n in nodes(run_dir) if n["displayName"] == "produce")

    (run_dir / "work" / "fixed").write_text("")  # the fix: the processor now accepts row 750
    again = run(
        ["workers-pipeline", "--runs", str(runs), *params, "--resume", str(run_dir)], tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "merged 1,000 == produced 1,000" in again.stdout
    after = nodes(run_dir)
    produce = next(n for n in after if n["displayName"] == "produce")
    assert produce["message"].endswith("(kept)")
    assert produce["outputs"] == produce_before["outputs"]
    # a shard that ran in this run is a Retry node with its pods; a kept one has no pod here
    shards = [
        n
        for n in after
        if n.get("templateName") == "shard"
        and (n["type"] == "Retry" or (n["type"] == "Pod" and not n["name"].endswith(")(0)")))
    ]
    assert len(shards) == 10
    assert not [n for n in shards if n.get("message", "").endswith("(kept)")]
    # The processor's code did not change: the nine commits are reused, one shard computed.
    rows = sorted(
        p["value"]
        for n in shards
        for p in n["outputs"]["parameters"]
        if p["name"] == "rows" and n["type"] == "Retry"
    )
    assert rows == ["0"] * 9 + ["100"]
    # every part from the one generation produce committed in the first run
    generations = {
        json.loads(p.read_text())["generation"]["id"]
        for p in (run_dir / "volumes").rglob("commits/part-*.json")
    }
    assert len(generations) == 1


def test_resume_refuses_other_parameters(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run([str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0"], tmp_path)
    assert first.returncode == 1
    (run_dir,) = runs.iterdir()
    args = [str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0", "-p", "fail-at=99"]
    again = run([*args, "--resume", str(run_dir)], tmp_path)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    assert "the run's parameters differ (fail-at='5' -> '99')" in again.stderr


@pytest.mark.parametrize("case", ["missing", "no-record", "running"])
def test_resume_refuses_what_it_cannot_resume(tmp_path: Path, case: str) -> None:
    runs = tmp_path / "runs"
    target = runs / "progress-abcde"
    fd = None
    if case == "no-record":
        target.mkdir(parents=True)
    if case == "running":
        first = run([str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0"], tmp_path)
        (target,) = runs.iterdir()
        fd = os.open(target / ".running", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a runner holds it while it runs
        assert first.returncode == 1
    try:
        proc = run(
            [str(EXAMPLE), "--runs", str(runs), "-p", "sleep=0", "--resume", target.name], tmp_path
        )
    finally:
        if fd is not None:
            os.close(fd)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    expected = {
        "missing": "no run.json",
        "no-record": "no run.json",
        "running": "is still running",
    }[case]
    assert expected in proc.stderr
