"""Wide fan-outs: split returns a shard count, a shard named by index reads its bounds from the
plan, and the runner expands ``withSequence`` as Argo's controller does.

A 10,000-shard plan is checked end to end except for spawning 10,000 pods (split's output,
the plan, the runner's expansion, node names and report); the templates run a 1,000-shard
plan with real pods (the 10,000-pod run is in benchmarks/run.py: ~20 minutes on 2 cores).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Pipeline, RunStep, error_of

from argo_local.expr import params
from argo_local.expr.params import ParamError
from workers import layout
from workers.runadapter import main as run_main
from workers.shards import Shard

WIDE = 10_000
MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def _split_args(pipe: Pipeline, count: int, *extra: str) -> list[str]:
    return [
        "--count",
        str(count),
        "--rows-per-shard",
        "1",
        "--max-shards",
        str(WIDE),
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
        *extra,
    ]


def test_split_for_10000_shards_returns_a_parameter_of_a_few_bytes(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path)
    out = tmp_path / "shard-count"
    pipe.ok("split", *_split_args(pipe, WIDE, "--shard-count-file", str(out)))
    # The whole workflow parameter, however wide the fan-out (the old list was ~600 KB here).
    assert out.read_bytes() == b"10000\n"
    assert out.stat().st_size <= 16
    plan = layout.read_plan(layout.plan_url(pipe.store))
    assert len(plan.shards) == WIDE
    assert plan.shards[0] == Shard(0, 1, 1, 1) and plan.shards[-1] == Shard(9999, 10000, 10000, 1)
    # What the template's withSequence makes of it (Argo trims one newline from a file output).
    items = params.sequence({"count": out.read_text().removesuffix("\n")}, "shard")
    assert items[:3] == ["0", "1", "2"] and items[-1] == "9999" and len(items) == WIDE


def test_a_withparam_list_over_200kb_fails_before_writing_anything(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path)
    out = tmp_path / "shards.json"
    proc = pipe.step("split", *_split_args(pipe, WIDE, "--output-file", str(out)))
    assert proc.returncode == 2
    assert "withSequence over --shard-count-file" in error_of(proc)["message"]
    assert not out.exists() and not pipe.exists("plan.json")


def test_shard_count_file_needs_a_store(run_step: RunStep, tmp_path: Path) -> None:
    proc = run_step("split", "--count", "10", "--shard-count-file", str(tmp_path / "n"))
    assert proc.returncode == 2
    assert "--shard-count-file needs --store" in error_of(proc)["message"]
    assert not (tmp_path / "n").exists()


def test_shard_by_index_reads_its_bounds_from_the_plan(
    run_step: RunStep, db_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path)
    assert pipe.produce(50) == 50
    items = pipe.split(10)
    assert len(items) == 5
    stats = tmp_path / "stats"
    for i in range(5):
        proc = pipe.step(
            "shard", "--shard", str(i), "--run-id", pipe.run_id, "--store", pipe.store,
            "--stats-dir", str(stats),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert (stats / "rows").read_bytes() == b"10\n"
    record = json.loads(pipe.read("commits/part-00003.json"))
    assert (record["lo"], record["hi"], record["rows_in"]) == (31, 40, 10)
    # The item form names the same shard: its verified commit is reused, not redone.
    again = pipe.shard(items[3])
    assert again.returncode == 0 and '"already-committed"' in again.stderr
    pipe.ok("merge", "--store", pipe.store)
    assert json.loads(pipe.read("summary.json"))["totals"]["rows"] == 50


@pytest.mark.parametrize(
    ("shard", "count", "message"),
    [
        ("5", 5, "has 5 shards (0..4)"),
        ("1000000", 5, "shard index 1000000 is out of range (0..999999)"),
        ("-1", 5, "shard index -1 is out of range"),
        ("0", 0, "has no shards"),
        ("0", None, "no plan at"),
        ("@ITEM", 5, "has 5 shards (0..4)"),
    ],
)
def test_shard_by_index_outside_the_plan_is_exit_2(
    run_step: RunStep,
    sqlite_url: str,
    tmp_path: Path,
    shard: str,
    count: int | None,
    message: str,
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path)
    if count is not None:
        pipe.ok("split", *_split_args(pipe, count))
    if shard == "@ITEM":
        (tmp_path / "item").write_text("7\n")
        shard = f"@{tmp_path / 'item'}"
    proc = pipe.step("shard", "--shard", shard, "--run-id", pipe.run_id, "--store", pipe.store)
    assert proc.returncode == 2
    assert message in error_of(proc)["message"]
    assert not pipe.exists("parts") and not pipe.exists("commits")


# ------------------------------------------------------------------ withSequence, as Argo


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"count": "3"}, ["0", "1", "2"]),
        ({"count": 3}, ["0", "1", "2"]),
        ({"count": "0"}, []),
        ({"start": "5", "count": "3"}, ["5", "6", "7"]),
        ({"start": 2, "end": 5}, ["2", "3", "4", "5"]),
        ({"start": 5, "end": 2}, ["5", "4", "3", "2"]),  # end below start counts down
        ({"end": 0}, ["0"]),
        ({"count": "2", "format": "part-%05d"}, ["part-00000", "part-00001"]),
        ({"count": "-2"}, ["0", "-1", "-2", "-3"]),  # controller: end = start + count - 1
    ],
)
def test_with_sequence_expands_as_the_controller_does(
    spec: dict[str, Any], expected: list[str]
) -> None:
    assert params.sequence(spec, "withSequence") == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"count": " 3"}, "expected an integer"),  # strconv.Atoi takes no spaces
        ({"count": "1_000"}, "expected an integer"),
        ({"count": "1", "end": "2"}, "only one of count or end"),
        ({"start": "1"}, "neither end nor count"),
    ],
)
def test_with_sequence_refuses_what_the_controller_refuses(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParamError, match=message):
        params.sequence(spec, "withSequence")


WIDE_WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: wide-
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: shard-count
        value: "10000"
  templates:
    - name: main
      parallelism: 10
      dag:
        tasks:
          - name: shard
            template: one
            withSequence:
              count: "{{workflow.parameters.shard-count}}"
            arguments:
              parameters:
                - name: shard
                  value: "{{item}}"
    # No pod per item: the step's when is false, so 10,000 items cost nodes, not processes.
    - name: one
      inputs:
        parameters:
          - name: shard
      steps:
        - - name: pod
            template: pod
            when: "{{inputs.parameters.shard}} == -1"
    - name: pod
      container:
        image: busybox
        command: [sh, -c, "exit 1"]
"""


@pytest.mark.slow
def test_runner_expands_10000_items_names_them_as_argo_and_reports(tmp_path: Path) -> None:
    wf = tmp_path / "wide.yaml"
    wf.write_text(textwrap.dedent(WIDE_WORKFLOW))
    code = run_main([str(wf), "--manifests", str(MANIFESTS), "--runs", str(tmp_path / "runs")])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    rec = json.loads((run_dir / "run.json").read_text())
    name = rec["metadata"]["name"]
    nodes = list(rec["status"]["nodes"].values())
    items = [n for n in nodes if n.get("templateName") == "one" and n["type"] == "Steps"]
    # Argo's node names: TASK(INDEX:ITEM), the item being the unpadded index as a string.
    assert sorted(n["name"] for n in items) == sorted(f"{name}.shard({i}:{i})" for i in range(WIDE))
    shard_inputs = {
        p["value"] for n in items for p in n["inputs"]["parameters"] if p["name"] == "shard"
    }
    assert shard_inputs == {str(i) for i in range(WIDE)}
    group = next(n for n in nodes if n["type"] == "TaskGroup")
    assert group["phase"] == "Succeeded" and len(group["children"]) == WIDE
    skipped = [n for n in nodes if n["phase"] == "Skipped" and n["type"] == "Skipped"]
    assert len(skipped) == WIDE  # every item ran its steps, and no pod started
    assert not list(run_dir.glob("pods/*"))
    assert (run_dir / "timeline.html").stat().st_size > 0


@pytest.mark.slow
def test_templates_run_a_1000_shard_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    n = 1000
    code = run_main(
        [
            "workers-pipeline",
            "--manifests",
            str(MANIFESTS),
            "--runs",
            str(tmp_path / "runs"),
            *("-p", f"rows={n}", "-p", "rows-per-shard=1", "-p", f"max-shards={n}"),
        ]
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    rec = json.loads((run_dir / "run.json").read_text())
    assert code == 0, rec["status"].get("message")
    nodes = list(rec["status"]["nodes"].values())

    def outputs(node: dict) -> dict[str, str]:
        return {p["name"]: p["value"] for p in node["outputs"]["parameters"]}

    # the shard template retries: a Retry node per shard, its outputs those of the last pod
    shards = [n for n in nodes if n.get("templateName") == "shard" and n["type"] == "Retry"]
    assert len(shards) == n and all(s["phase"] == "Succeeded" for s in shards)
    assert {outputs(s)["rows"] for s in shards} == {"1"}
    split = next(n for n in nodes if n["displayName"] == "split")
    assert outputs(split)["shard-count"] == str(n)
    assert f"merged {n:,} == produced {n:,} in {n} shards" in capsys.readouterr().out


def test_a_fan_out_over_a_missing_output_is_caught() -> None:
    import copy

    import manifest_checks as mc

    docs = [d for f in mc.base_files() for d in mc.load(f)]
    pipeline = copy.deepcopy(next(d for d in docs if d["metadata"]["name"] == "workers-pipeline"))
    main = next(t for t in pipeline["spec"]["templates"] if t["name"] == "main")
    shard = next(t for t in main["dag"]["tasks"] if t["name"] == "shard")
    shard["withSequence"]["count"] = "{{tasks.plan.outputs.parameters.shards}}"  # the old name
    problems = mc.reference_problems(pipeline, mc.library(docs), docs)
    assert any("withSequence.count" in p and "plan has no output shards" in p for p in problems)
