"""The benchmark runs end to end at its quick size and writes a table with every pair.

Speed is what the benchmark shows, not what this test asserts: no timing here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _postgres_available() -> bool:
    if os.environ.get("WORKERS_BENCH_DATABASE_URL"):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
    except psycopg.Error:
        # run.py can start a throwaway cluster when the server binaries are installed.
        return bool(
            shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        )
    return True


def test_quick_benchmark_writes_every_pair(tmp_path: Path) -> None:
    missing = [t for t in ("psql", "jq") if not shutil.which(t)]
    if missing or not _postgres_available():
        unavailable(f"needs {', '.join(missing) or 'PostgreSQL'}")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["size"] == "quick"
    assert result["machine"]["nproc"] >= 1
    pairs = {(r["step"], r["raw_tool"]) for r in result["rows"]}
    assert pairs == {
        ("produce", "psql \\copy from file"),
        ("shard", "psql \\copy (select) to file"),
        ("shard depth", "shard (first)"),
        ("checkpoints", "same, --checkpoint-rows 0"),
        ("resume", "clean shard of 100000 rows"),
        ("merge", "jq -s ."),
        ("merge", "cat (I/O floor)"),
        ("start-up", "python -c pass"),
        ("start-up", "python + psycopg connect + select 1"),
        ("split", "python -c pass"),
        ("runner", "the same steps, xargs -P 10"),
        ("runner fit", "xargs -P 10: wall per shard (slope)"),
        ("columnar", "psql \\copy (select) to file"),
        ("columnar", "shard --batch-format rows, return rows, JSON Lines"),
        ("columnar", "shard --batch-format rows, enrich (+amount_cents), JSON Lines"),
        ("part bytes", "JSON Lines part of the same rows"),
        ("merge", "one sha256 pass (hashlib)"),
    }
    # The columnar fan-in: --format parquet and dataset, each at 10, 100 and 1,000 parts.
    for fmt in ("parquet", "dataset"):
        merges = [r["workers"] for r in result["rows"] if r["workers"].endswith(f"--format {fmt}")]
        assert [m.split(" x ")[0] for m in merges] == ["merge 10", "merge 100", "merge 1000"]
    assert result["params"]["columnar_rows"] == [20_000]
    for row in result["rows"]:
        assert row["workers_s"] > 0 and row["raw_s"] > 0, row
        # Medians come with their ranges: every measured side's fastest and slowest run.
        for side in ("workers", "raw"):
            spread = row[f"{side}_range_s"]
            if spread is not None:
                assert spread[0] <= row[f"{side}_s"] <= spread[1], row
        if not row["step"].startswith("runner fit"):
            assert row["workers_range_s"] is not None, row
        assert row["workers_peak_mb"] > 0 and row["raw_peak_mb"] > 0, row
        # Every row with a target says whether it met it; informational rows say they are.
        assert row["met"] in (True, False) or row["target"].startswith("info"), row
        assert row["target"], row
    # The printed table is the same table.
    for row in result["rows"]:
        assert row["workers"] in proc.stdout
