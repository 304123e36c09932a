"""The real WorkflowTemplates in manifests/ run end to end with the local runner.

SQLite + a local folder always; PostgreSQL when a ``pg_db`` fixture or
WORKERS_TEST_DATABASE_URL provides one (required under CI=true). A manifest whose
wiring is broken (renamed input, wrong output path) must make the run fail and
name what broke.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable

from workers.runadapter import main

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"

SMALL = ["-p", "rows=5000", "-p", "rows-per-shard=1000"]


def run(
    runs: Path, target: str, *args: str, manifests: Path = MANIFESTS
) -> tuple[int, dict[str, Any]]:
    code = main([target, "--manifests", str(manifests), "--runs", str(runs), *args])
    logs = list(runs.glob("*/run.json"))
    return code, (json.loads(logs[0].read_text()) if logs else {})


def merged_rows(runs: Path, rec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    store = Path(rec["workersRunner"]["volumes"]["workers-shared"]) / rec["metadata"]["name"]
    summary = json.loads((store / "summary.json").read_text())
    document = json.loads((store / "merged.json").read_text())
    return len(document), summary


def test_pipeline_on_sqlite_and_a_local_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    code, rec = run(tmp_path / "runs", "workers-pipeline", *SMALL)
    assert code == 0, rec["status"].get("message")
    rows, summary = merged_rows(tmp_path / "runs", rec)
    assert rows == 5000 == summary["totals"]["rows_expected"] == summary["totals"]["rows"]
    assert summary["totals"]["shards"] == 5
    # the embedded default: one SQLite file in the run's work folder, shared by every pod
    assert (Path(rec["workersRunner"]["workFolder"]) / "workers.db").is_file()
    out = capsys.readouterr().out
    assert "merged output: " in out and "merged.json" in out
    assert "merged 5,000 == produced 5,000" in out
    nodes = rec["status"]["nodes"].values()
    # the shard template retries: Argo shows a Retry node per shard with one Pod per attempt
    shards = [n for n in nodes if n.get("templateName") == "shard" and n["type"] == "Retry"]
    assert len(shards) == 5 and all(n["phase"] == "Succeeded" for n in shards)
    assert rec["status"]["phase"] == "Succeeded" and rec["kind"] == "Workflow"
    # template metrics are computed locally now, not ignored (tests/test_observability.py)
    assert not any("metrics" in note for note in rec["workersRunner"]["ignoredLocally"])
    assert (
        "argo_workflows_workers_rows_processed_total 5000"
        in (tmp_path / "runs" / rec["metadata"]["name"] / "metrics.prom").read_text()
    )


def test_example_workflow_with_workflow_template_ref(tmp_path: Path) -> None:
    code, rec = run(tmp_path / "runs", str(MANIFESTS / "examples" / "workflow.yaml"), *SMALL)
    assert code == 0, rec["status"].get("message")
    assert rec["metadata"]["name"].startswith("workers-")
    assert merged_rows(tmp_path / "runs", rec)[0] == 5000


def test_cronworkflow_runs_its_workflow_spec_once(tmp_path: Path) -> None:
    code, rec = run(
        tmp_path / "runs",
        str(MANIFESTS / "examples" / "cronworkflow.yaml"),
        "-p",
        "rows=3000",
        "-p",
        "rows-per-shard=1000",
        "-p",
        "format=json",
    )
    assert code == 0, rec["status"].get("message")
    assert any("schedules" in note for note in rec["workersRunner"]["ignoredLocally"])


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    try:
        return str(request.getfixturevalue("pg_db"))
    except pytest.FixtureLookupError:
        pass
    url = os.environ.get("WORKERS_TEST_DATABASE_URL")
    if not url:
        unavailable("no PostgreSQL: set WORKERS_TEST_DATABASE_URL")
    return url


@pytest.mark.postgres
def test_pipeline_on_postgres(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # secretKeyRef workers-database/url is read from WORKERS_DATABASE_URL locally
    monkeypatch.setenv("WORKERS_DATABASE_URL", postgres_url)
    code, rec = run(tmp_path / "runs", "workers-pipeline", *SMALL)
    assert code == 0, rec["status"].get("message")
    rows, summary = merged_rows(tmp_path / "runs", rec)
    assert rows == 5000 == summary["totals"]["rows_expected"]
    assert not (Path(rec["workersRunner"]["workFolder"]) / "workers.db").exists()
    text = (tmp_path / "runs" / rec["metadata"]["name"] / "run.json").read_text()
    password = postgres_url.split("@")[0].rpartition(":")[2] if "@" in postgres_url else ""
    if password and "/" not in password:
        assert password not in text


def _broken_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    path = copy / "base" / "templates" / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}: update this test with the manifest"
    path.write_text(text.replace(old, new, 1))
    return copy


def test_renamed_input_parameter_fails_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _broken_copy(
        tmp_path, "shard.yaml", "          - name: shard\n", "          - name: item\n"
    )
    code, rec = run(tmp_path / "runs", "workers-pipeline", *SMALL, manifests=broken)
    assert code == 2 and rec == {}
    err = capsys.readouterr().err
    # the caller no longer supplies the renamed input: named with both files
    assert "shard.yaml" in err and "pipeline.yaml" in err and "'item'" in err


def test_wrong_output_path_fails_the_run_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _broken_copy(
        tmp_path, "split.yaml", "path: /tmp/shard-count", "path: /tmp/shards-count"
    )
    # the manifest retries an Error after 30s, 60s, ...: keep its policy, shorten the wait
    split = broken / "base" / "templates" / "split.yaml"
    split.write_text(split.read_text().replace('duration: "30s"', 'duration: "0.1s"'))
    code, rec = run(tmp_path / "runs", "workers-pipeline", *SMALL, manifests=broken)
    assert code == 1
    nodes = rec["status"]["nodes"].values()
    split = next(n for n in nodes if n["displayName"] == "split")
    assert split["phase"] == "Error"
    # as in Argo, the Retry node says why it stopped; its last attempt says what went wrong
    assert split["message"] == "No more retries left"
    last = next(n for n in nodes if n["displayName"] == "split(4)")
    assert "outputs.parameters.shard-count" in last["message"]
    assert "/tmp/shards-count" in last["message"]
    assert not any(n.get("templateName") == "merge" and n["type"] == "Pod" for n in nodes)
