"""A partial fan-in: ``merge --min-success-ratio R`` writes what enough shards committed, names
the missing ones (summary, log, stats for the metric), and a retry of the missing shards plus
a merge with the default ratio gives the complete output, byte for byte a clean run's.

Real step processes over SQLite and PostgreSQL; a shard fails for real (its processor refuses
row 750 until a file ``fixed`` exists in its working folder, ``plugins.userfuncs:fails_until_fixed``);
the pipeline template runs in the local runner as Argo evaluates its ``depends``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Pipeline, RunStep, log_lines
from reliability_helpers import STEP_PYTHONPATH

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
FAILING = ("--processor", "plugins.userfuncs:fails_until_fixed")
ROOT = Path(__file__).resolve().parents[1]


def _run_shards(pipe: Pipeline, items: list[dict[str, Any]]) -> list[int]:
    return [pipe.shard(item, *FAILING).returncode for item in items]


def _summary(pipe: Pipeline) -> dict[str, Any]:
    return json.loads(pipe.read("summary.json"))  # type: ignore[no-any-return]


def _last_error(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = log_lines(proc)
    assert lines and lines[-1]["event"] == "failed", proc.stderr
    return lines[-1]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_partial_merge_names_the_missing_shard_and_a_retry_completes_it(
    run_step: RunStep, db_url: str, tmp_path: Path, fmt: str
) -> None:
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(1000)
    items = pipe.split(250)
    assert _run_shards(pipe, items) == [0, 0, 3, 0]  # rows 501..750 hold the refused row
    failure = json.loads(pipe.read("failures/part-00002.json"))
    assert failure["cause"] == "user-code" and failure["exit_code"] == 3

    # the default ratio: nothing written, the shard named
    proc = pipe.merge("--format", fmt)
    assert proc.returncode == 4
    assert "1 of 4 shards not usable: part-00002 missing" in _last_error(proc)["message"]
    assert not pipe.exists("summary.json") and not pipe.exists(f"merged.{fmt}")
    # 3 of 4 is under 0.8
    proc = pipe.merge("--format", fmt, "--min-success-ratio", "0.8")
    assert proc.returncode == 4
    assert "(3 of 4 committed, 0.75 < --min-success-ratio 0.8)" in _last_error(proc)["message"]
    assert not pipe.exists("summary.json")

    stats = tmp_path / "stats"
    proc = pipe.merge("--format", fmt, "--min-success-ratio", "0.75", "--stats-dir", str(stats))
    assert proc.returncode == 0, proc.stderr
    summary = _summary(pipe)
    assert summary["complete"] is False
    (missing,) = summary["missing"]
    assert {k: missing[k] for k in ("index", "lo", "hi", "rows", "name")} == {
        "index": 2,
        "lo": 501,
        "hi": 750,
        "rows": 250,
        "name": "part-00002",
    }
    assert missing["problem"] == "part-00002 missing (no commit record)"
    assert missing["last_error"]["cause"] == "user-code"
    assert missing["last_error"]["exit_code"] == 3
    assert "row 750 is malformed until fixed" in missing["last_error"]["message"]
    totals = summary["totals"]
    assert (totals["shards"], totals["shards_expected"], totals["rows"]) == (3, 4, 750)
    assert totals["rows_expected"] == 1000
    assert [s["index"] for s in summary["shards"]] == [0, 1, 3]
    # the proofs hold for what is included: the output is the included parts, as the summary says
    out = pipe.read(f"merged.{fmt}")
    assert summary["output_sha256"] == hashlib.sha256(out).hexdigest()
    ids = [v["id"] for v in (json.loads(out) if fmt == "json" else map(json.loads, out.split()))]
    assert ids == [*range(1, 501), *range(751, 1001)]
    assert summary["generation"] is not None and summary["processor"]["path"].endswith(
        "fails_until_fixed"
    )
    partial = [line for line in log_lines(proc) if line["event"] == "partial"]
    assert len(partial) == 1 and partial[0]["level"] == "warning"
    assert partial[0]["missing_shards"] == 1 and partial[0]["shards"] == 4
    assert partial[0]["missing"][0]["index"] == 2
    assert partial[0]["missing"][0]["cause"] == "user-code"
    assert (stats / "missing-shards").read_text() == "1\n"
    assert (stats / "shards").read_text() == "4\n"

    # the fix, a retry of the missing shard, a merge with the default ratio: complete
    (tmp_path / "fixed").write_text("")
    assert pipe.shard(items[2], *FAILING).returncode == 0
    proc = pipe.merge("--format", fmt, "--stats-dir", str(stats))
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in log_lines(proc) if line["event"] == "partial"]
    summary = _summary(pipe)
    assert summary["complete"] is True and summary["missing"] == []
    assert summary["totals"]["rows"] == 1000
    assert (stats / "missing-shards").read_text() == "0\n"

    # byte-identical to a clean run's output (the same rows, the same processor, no failure)
    clean = Pipeline(run_step, db_url, str(tmp_path / "clean"), tmp_path, pipe.run_id, ENV)
    clean.split(250)
    assert _run_shards(clean, items) == [0, 0, 0, 0]
    assert clean.merge("--format", fmt).returncode == 0
    assert pipe.read(f"merged.{fmt}") == clean.read(f"merged.{fmt}")


@pytest.mark.parametrize("bucket", ["s3_store", "gcs_store"])
def test_a_partial_fan_in_on_a_bucket_names_the_missing_shard_and_a_retry_completes_it(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, bucket: str, request: pytest.FixtureRequest
) -> None:
    """The same partial merge with its parts, failure record and summary in moto's S3 server
    or the GCS emulator: what is written is the committed shards, then the full run after a retry."""
    store = request.getfixturevalue(bucket)
    pipe = Pipeline(run_step, sqlite_url, store.url, tmp_path, env={**store.env, **ENV})
    pipe.produce(1000)
    items = pipe.split(250)
    assert _run_shards(pipe, items) == [0, 0, 3, 0]
    assert json.loads(pipe.read("failures/part-00002.json"))["cause"] == "user-code"

    assert pipe.merge("--format", "jsonl").returncode == 4
    assert not pipe.exists("summary.json") and not pipe.exists("merged.jsonl")
    proc = pipe.merge("--format", "jsonl", "--min-success-ratio", "0.75")
    assert proc.returncode == 0, proc.stderr
    summary = _summary(pipe)
    assert summary["complete"] is False
    assert [m["index"] for m in summary["missing"]] == [2]
    assert summary["missing"][0]["last_error"]["cause"] == "user-code"
    ids = [json.loads(line)["id"] for line in pipe.read("merged.jsonl").split()]
    assert ids == [*range(1, 501), *range(751, 1001)]

    (tmp_path / "fixed").write_text("")
    assert pipe.shard(items[2], *FAILING).returncode == 0
    proc = pipe.merge("--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    summary = _summary(pipe)
    assert summary["complete"] is True and summary["missing"] == []
    ids = [json.loads(line)["id"] for line in pipe.read("merged.jsonl").split()]
    assert ids == list(range(1, 1001))


@pytest.mark.parametrize(
    "args",
    [
        ("--min-success-ratio", "0"),
        ("--min-success-ratio", "1.5"),
        ("--min-success-ratio", "nan"),
        ("--min-success-ratio", "half"),
    ],
)
def test_a_ratio_outside_0_to_1_is_bad_input(
    run_step: RunStep, tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc = run_step("merge", "--store", str(tmp_path / "s"), *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "expected a ratio in (0, 1]" in proc.stderr and "Traceback" not in proc.stderr


def test_a_ratio_needs_a_plan(run_step: RunStep, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("1\n")
    proc = run_step("merge", str(tmp_path / "a.json"), "--min-success-ratio", "0.5", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--min-success-ratio needs the plan of a run: pass --store" in proc.stderr


def _workers_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WORKERS_DATABASE_URL"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'tests'}"  # the pods import plugins.userfuncs
    return subprocess.run(
        [sys.executable, "-m", "workers", "run", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _nodes(run_dir: Path) -> dict[str, dict[str, Any]]:
    record = json.loads((run_dir / "run.json").read_text())
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


@pytest.mark.slow
def test_the_pipeline_merges_a_partial_fan_in_and_still_fails(tmp_path: Path) -> None:
    """The pipeline template in the local runner: shard 7 of 10 fails for real (its retries
    spent); merge runs anyway (``depends: shard || shard.AnySucceeded``) and writes the nine
    shards' rows with min-success-ratio 0.9, the workflow still ends Failed (cleanup, Omitted,
    inherits the failed shard's branch), and a resume after the fix completes the output."""
    runs = tmp_path / "runs"
    params = ["-p", "rows=1000", "-p", "rows-per-shard=100", "-p", "min-success-ratio=0.9"]
    params += ["-p", "processor=plugins.userfuncs:fails_until_fixed"]
    first = _workers_run(["workers-pipeline", "--runs", str(runs), *params], tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (run_dir,) = runs.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"]["phase"] == "Failed"
    nodes = _nodes(run_dir)
    assert nodes["merge"]["phase"] == "Succeeded"
    assert nodes["cleanup"]["phase"] == "Omitted"
    (summary_path,) = (run_dir / "volumes").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] is False
    assert [m["index"] for m in summary["missing"]] == [7]
    assert summary["missing"][0]["last_error"]["exit_code"] == 3
    assert summary["totals"]["rows"] == 900
    outputs = {p["name"]: p["value"] for p in nodes["merge"]["outputs"]["parameters"]}
    assert outputs["missing-shards"] == "1"

    (run_dir / "work" / "fixed").write_text("")
    again = _workers_run(
        ["workers-pipeline", "--runs", str(runs), *params, "--resume", str(run_dir)], tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "merged 1,000 == produced 1,000" in again.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] is True and summary["totals"]["rows"] == 1000


@pytest.mark.slow
def test_the_pipeline_with_the_default_ratio_merges_nothing_and_names_the_shard(
    tmp_path: Path,
) -> None:
    """min-success-ratio 1.0 (the default): merge runs after the failed shard and exits 4 naming
    it; no output, no summary; the workflow fails."""
    runs = tmp_path / "runs"
    params = ["-p", "rows=1000", "-p", "rows-per-shard=250"]
    params += ["-p", "processor=plugins.userfuncs:fails_until_fixed"]
    first = _workers_run(["workers-pipeline", "--runs", str(runs), *params], tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (run_dir,) = runs.iterdir()
    nodes = _nodes(run_dir)
    assert nodes["merge"]["phase"] == "Failed"
    record = json.loads((run_dir / "run.json").read_text())
    merge_pods = [
        n
        for n in record["status"]["nodes"].values()
        if n["type"] == "Pod" and n.get("templateName") == "merge"
    ]
    # exit 4 is permanent: one attempt, not retried
    assert len(merge_pods) == 1 and "Error (exit code 4)" in merge_pods[0]["message"], merge_pods
    assert not list((run_dir / "volumes").rglob("summary.json"))
    assert not list((run_dir / "volumes").rglob("merged.json"))


def test_the_pipeline_refuses_a_bad_ratio_before_produce(run_step: RunStep, tmp_path: Path) -> None:
    """check, the pipeline's first step, refuses the ratio merge would refuse at the end."""
    proc = run_step("check", "--min-success-ratio", "1.5", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--min-success-ratio: expected a ratio in (0, 1], got '1.5'" in proc.stderr
    assert run_step("check", "--min-success-ratio", "0.9", cwd=tmp_path).returncode == 0


def test_a_partial_dataset_has_no_success_marker_until_it_is_complete(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """Parquet parts, ``--format dataset``: a partial manifest lists the committed parts, and no
    ``parts/_SUCCESS`` tells a reader waiting for it that the dataset is done; the complete merge
    after the retry publishes it."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(1000)
    items = pipe.split(250, "--part-format", "parquet", *FAILING)
    assert _run_shards(pipe, items) == [0, 0, 3, 0]
    proc = pipe.merge("--format", "dataset", "--min-success-ratio", "0.5")
    assert proc.returncode == 0, proc.stderr
    summary = _summary(pipe)
    assert summary["complete"] is False and summary["success_marker"] is None
    assert [m["index"] for m in summary["missing"]] == [2]
    manifest = json.loads(pipe.read("manifest.json"))
    assert [p["index"] for p in manifest["parts"]] == [0, 1, 3]
    assert not pipe.exists("parts/_SUCCESS")

    (tmp_path / "fixed").write_text("")
    assert pipe.shard(items[2], *FAILING).returncode == 0
    proc = pipe.merge("--format", "dataset")
    assert proc.returncode == 0, proc.stderr
    assert _summary(pipe)["complete"] is True
    assert pipe.exists("parts/_SUCCESS")


def test_a_partial_fan_in_of_files_names_the_missing_shards_files(
    run_step: RunStep, tmp_path: Path
) -> None:
    """``split --from-files``: a shard fails for real; merge with a ratio reconciles the included
    shards' units only and names the missing shard's file and byte range; the retry completes
    it, byte for byte a clean run's output."""
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"n": i, "pad": "x" * (i % 37)}) for i in range(300)]
    (src / "a.jsonl").write_text("\n".join(lines) + "\n")
    proc_args = ("--processor", "plugins.fanin:fails_on_n")
    env = {**ENV, "WORKERS_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}

    def split(store: Path) -> int:
        count = tmp_path / f"{store.name}-count"
        r = run_step(
            "split",
            *("--from-files", str(src), "--run-id", "files", "--store", str(store)),
            *("--bytes-per-shard", "4000", "--shard-count-file", str(count), *proc_args),
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        return int(count.read_text())

    def shard(store: Path, i: int, **extra: str) -> int:
        args = ("--shard", str(i), "--run-id", "files", "--store", str(store), *proc_args)
        return run_step("shard", *args, env={**env, **extra}, cwd=tmp_path).returncode

    store = tmp_path / "store"
    n = split(store)
    assert n >= 3
    codes = [shard(store, i, WORKERS_TEST_FAIL_N="150") for i in range(n)]
    assert codes.count(3) == 1 and codes.count(0) == n - 1, codes
    bad = codes.index(3)
    r = run_step("merge", "--store", str(store), "--min-success-ratio", "0.5", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((store / "summary.json").read_text())
    assert summary["complete"] is False
    (missing,) = summary["missing"]
    assert missing["index"] == bad and missing["last_error"]["exit_code"] == 3
    assert missing["files"] and all(f"{src}/a.jsonl bytes " in f for f in missing["files"])
    values = json.loads((store / "merged.json").read_text())
    assert 150 not in {v["n"] for v in values} and len(values) == summary["totals"]["rows"]

    assert shard(store, bad) == 0  # the retry, the fault gone
    r = run_step("merge", "--store", str(store), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((store / "summary.json").read_text())["complete"] is True
    clean = tmp_path / "clean"
    assert split(clean) == n and [shard(clean, i) for i in range(n)] == [0] * n
    assert run_step("merge", "--store", str(clean), env=env).returncode == 0
    assert (store / "merged.json").read_bytes() == (clean / "merged.json").read_bytes()
