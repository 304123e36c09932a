"""Composing from Python: the hera workflows of docs/how-to/hera.md build, validate and run locally.

The page's own code is what runs: its ``pipeline.py`` (a DAG of ``templateRef`` tasks over the
step templates) and ``submit.py`` (a ``workflowTemplateRef`` to ``workers-pipeline``) are taken
from the page, executed to write their YAML, checked against Argo's schema and the library's
templates (manifest_checks, as the manifests are), then run with ``workers run`` as separate
processes; the merged document must be exactly the built-in generator's rows, and the summary
must name its sha256.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import manifest_checks as mc
import pytest
import services
import yaml
from test_docs import blocks

from workers import synth

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "how-to" / "hera.md"


def page_code(title: str) -> str:
    (block,) = [b for b in blocks(PAGE) if b.lang == "python" and b.title == title]
    return block.text


def build(tmp_path: Path, title: str) -> tuple[Path, dict]:
    script = tmp_path / title
    script.write_text(page_code(title))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    path = tmp_path / title.replace(".py", ".yaml")
    path.write_text(out)
    return path, yaml.safe_load(out)


def run_locally(path: Path, tmp_path: Path) -> tuple[Path, dict]:
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "run", str(path), "--runs", str(runs)],
        cwd=tmp_path,
        env=services.step_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = runs.glob("*/run.json")
    return run.parent, json.loads(run.read_text())


def merged_of(run_dir: Path) -> tuple[bytes, dict]:
    (summary,) = run_dir.glob("volumes/workers-shared/*/summary.json")
    return (summary.parent / "merged.json").read_bytes(), json.loads(summary.read_text())


@pytest.mark.parametrize(
    ("title", "rows", "shards"), [("pipeline.py", 20000, 4), ("submit.py", 20000, 4)]
)
def test_hera_workflow_from_the_docs_runs_locally(
    title: str, rows: int, shards: int, tmp_path: Path
) -> None:
    path, doc = build(tmp_path, title)
    assert doc["kind"] == "Workflow"
    assert mc.schema_problems(doc) == []
    lib_docs = [d for f in mc.base_files() for d in mc.load(f)]
    assert mc.reference_problems(doc, mc.library(lib_docs), lib_docs) == []
    run_dir, record = run_locally(path, tmp_path)
    assert record["status"]["phase"] == "Succeeded"
    pods = [n for n in record["status"]["nodes"].values() if n["type"] == "Pod"]
    assert sum(n["templateName"] == "shard" for n in pods) == shards
    merged, summary = merged_of(run_dir)
    assert summary["output_sha256"] == hashlib.sha256(merged).hexdigest()
    assert summary["totals"]["rows"] == summary["totals"]["rows_expected"] == rows
    assert json.loads(merged) == list(synth.generate(rows, 0))


def test_a_templateref_to_a_missing_input_is_caught_before_running(tmp_path: Path) -> None:
    """The check the test relies on has teeth: a misspelt step input is reported."""
    _, doc = build(tmp_path, "pipeline.py")
    task = doc["spec"]["templates"][0]["dag"]["tasks"][1]
    task["arguments"]["parameters"][1]["name"] = "rows-per-shardz"
    lib_docs = [d for f in mc.base_files() for d in mc.load(f)]
    problems = mc.reference_problems(doc, mc.library(lib_docs), lib_docs)
    assert any("rows-per-shardz" in p for p in problems), problems
