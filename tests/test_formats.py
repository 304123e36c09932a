"""Part formats and merge formats together: check refuses, before produce runs, a merge
``--format`` the parts' ``--part-format`` cannot give (the rule merge applies); the local
``workers pipeline`` takes every format the pipeline template takes; and one writer turns Arrow
into JSON Lines, so a run's document is the same bytes whichever part format held its rows.

Real steps (subprocesses) on SQLite and a local folder.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pipeline_helpers import RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH

ENV = {"PYTHONPATH": STEP_PYTHONPATH}


def _check(run_step: RunStep, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_step("check", *args, env=ENV, cwd=tmp_path)


REFUSED = [
    ("parquet", "jsonl", None, "merge --format parquet needs Parquet parts"),
    ("dataset", "jsonl", None, "merge --format dataset needs Parquet parts"),
    ("delta", "jsonl", None, "merge --format delta needs Parquet parts"),
    ("delta", "parquet", "s3://bucket/run", "merge --format delta writes local stores only"),
]


@pytest.mark.parametrize(("fmt", "part_format", "store", "message"), REFUSED)
def test_check_refuses_a_merge_format_the_parts_cannot_give(
    run_step: RunStep, tmp_path: Path, fmt: str, part_format: str, store: str | None, message: str
) -> None:
    args = ["--format", fmt, "--part-format", part_format]
    proc = _check(run_step, tmp_path, *args, *(["--store", store] if store else []))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert message in error_of(proc)["message"]


@pytest.mark.parametrize(
    ("fmt", "part_format"),
    [
        ("json", "jsonl"),
        ("jsonl", "jsonl"),
        ("json", "parquet"),
        ("jsonl", "parquet"),
        ("parquet", "parquet"),
        ("dataset", "parquet"),
        ("delta", "parquet"),
    ],
)
def test_check_takes_every_combination_merge_takes(
    run_step: RunStep, tmp_path: Path, fmt: str, part_format: str
) -> None:
    store = str(tmp_path / "store")
    proc = _check(
        run_step, tmp_path, "--format", fmt, "--part-format", part_format, "--store", store
    )
    assert proc.returncode == 0, proc.stderr
    checked = json.loads(proc.stderr.splitlines()[-1])["checks"]
    assert "formats" in checked


def _pipeline(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, name: str, *args: str
) -> subprocess.CompletedProcess[str]:
    store = str(tmp_path / name)
    env = {**ENV, "WORKERS_DATABASE_URL": sqlite_url}
    common = ["pipeline", "--run-id", name, "--store", store, "--rows", "300"]
    return run_step(
        "__main__", *common, "--rows-per-shard", "100", *args, env=env, cwd=tmp_path, timeout=300
    )


def test_the_pipeline_refuses_a_parquet_merge_of_jsonl_parts_before_produce(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """``workers pipeline --format parquet`` with JSON Lines parts stops at check: exit 2, the
    rule's one line, no row produced and no plan written."""
    proc = _pipeline(run_step, sqlite_url, tmp_path, "refused", "--format", "parquet")
    assert proc.returncode == 2, proc.stderr
    assert "merge --format parquet needs Parquet parts" in proc.stderr
    assert '"step":"produce"' not in proc.stderr
    assert not (tmp_path / "refused" / "plan.json").exists()


@pytest.mark.parametrize("fmt", ["parquet", "dataset", "delta"])
def test_the_pipeline_runs_the_columnar_path_the_template_runs(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, fmt: str
) -> None:
    """The template's batch-format, part-format and format parameters, on one machine: Arrow
    batches through the processor, Parquet parts, and merge's Parquet fan-in; the output line
    names what merge wrote."""
    args = ["--batch-format", "pyarrow", "--processor", "plugins.columnar:arrow_identity"]
    proc = _pipeline(
        run_step, sqlite_url, tmp_path, fmt, *args, "--part-format", "parquet", "--format", fmt
    )
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / fmt
    plan = json.loads((store / "plan.json").read_text())
    assert plan["part_format"] == "parquet"
    assert plan["processor"]["options"]["batch_format"] == "pyarrow"
    summary = json.loads((store / "summary.json").read_text())
    assert f"merged output: {summary['output']}\n" in proc.stdout
    if fmt == "parquet":
        assert summary["output"] == str(store / "merged.parquet")
        assert pq.read_table(summary["output"]).num_rows == 300
    elif fmt == "dataset":
        manifest = json.loads(Path(summary["output"]).read_text())
        assert sum(p["rows"] for p in manifest["parts"]) == 300
    else:
        from deltalake import DeltaTable

        assert DeltaTable(summary["output"]).to_pyarrow_table().num_rows == 300


@pytest.mark.parametrize(
    ("batch_format", "processor"),
    [("pyarrow", "plugins.columnar:arrow_awkward"), ("rows", "plugins.columnar:rows_awkward")],
)
def test_a_runs_document_is_the_same_bytes_whichever_part_format_held_it(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, batch_format: str, processor: str
) -> None:
    """One writer turns Arrow into JSON Lines (workers.batches.table_to_jsonl): a shard's
    columnar batches into a JSON Lines part, and merge's Parquet parts into the document. NaN
    and the infinities stay strings, a JSON column stays JSON, a timestamp keeps the text its
    batch format writes (PostgreSQL's trimmed fraction from Arrow; orjson's six digits from a
    rows processor's datetime), a UUID its text."""
    merged = {}
    for part_format in ("jsonl", "parquet"):
        name = f"{batch_format}-{part_format}"
        args = ["--batch-format", batch_format, "--processor", processor]
        proc = _pipeline(run_step, sqlite_url, tmp_path, name, *args, "--part-format", part_format)
        assert proc.returncode == 0, proc.stderr
        merged[part_format] = (tmp_path / name / "merged.json").read_bytes()
    assert merged["parquet"] == merged["jsonl"]
    rows = json.loads(merged["jsonl"])
    assert len(rows) == 300
    first = {r["id"] % 4: r for r in rows}
    assert [first[k]["ratio"] for k in range(4)] == ["NaN", "Infinity", "-Infinity", 0.5]
    when = "2024-01-02T03:04:05.6" if batch_format == "pyarrow" else "2024-01-02T03:04:05.600000"
    assert {r["when"] for r in rows} == {when}
    assert rows[0]["ref"] == f"00000000-0000-0000-0000-{rows[0]['id']:012x}"
    if batch_format == "pyarrow":
        assert rows[0]["doc"] == {"k": [rows[0]["id"], 2.5]}


def test_the_json_lines_writer_from_arrow_is_one_function() -> None:
    """No second Arrow -> JSON Lines writer: merge's Parquet path calls the shard's."""
    import workers.parquetmerge
    import workers.parquetparts

    assert not hasattr(workers.parquetparts, "table_to_json_lines")
    source = Path(workers.parquetmerge.__file__).read_text()
    assert "table_to_jsonl" in source and "to_pylist" not in source
