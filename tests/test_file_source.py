"""Files as the source: ``split --from-files`` over a local folder, moto's S3 server and the GCS
emulator; shards read their units (JSON Lines byte ranges, Parquet row groups, whole .gz and
CSV files) with no database, in every batch format, into JSON Lines or Parquet parts; merge
reconciles every unit. The merged document is compared with ``jq -s .`` over the inputs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import STEP_PYTHONPATH

from workers import filesource, storage
from workers.runadapter import main as run_main

RunStep = Callable[..., subprocess.CompletedProcess[str]]
RUN = "files-run"
REPO = Path(__file__).resolve().parents[1]

# Any connection would fail: the shards and split of a file source must never open one.
NO_DB = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
ENV = {"PYTHONPATH": STEP_PYTHONPATH, "WORKERS_DATABASE_URL": NO_DB}


def jsonl_bytes(first: int, count: int) -> bytes:
    """Lines of uneven lengths (some multi-byte), so byte cuts fall inside lines."""
    lines = [
        json.dumps({"n": i, "pad": "x" * (i * 7 % 53), "t": "é" * (i % 3)}, ensure_ascii=False)
        for i in range(first, first + count)
    ]
    return ("\n".join(lines) + "\n").encode()


def csv_bytes() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["n", "note"])
    w.writerow(["5000", "two\nlines, quoted"])
    w.writerow(["5001", "plain"])
    return out.getvalue().encode()


def parquet_bytes(first: int, count: int, group: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # hashes: incompressible, so a row group's bytes follow its rows
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(first, first + count)]
    table = pa.table({"n": list(range(first, first + count)), "s": hashes})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=group)
    return sink.getvalue()


def put(url: str, data: bytes) -> None:
    storage.write_bytes(url, data)


def jq_slurp(jq: str, data: bytes) -> list[Any]:
    """``jq -s .`` of JSON Lines: what the merged document of those inputs must be."""
    out = subprocess.run([jq, "-s", "."], input=data, capture_output=True, check=True)
    return list(json.loads(out.stdout))


def run_all(
    run_step: RunStep,
    source: str,
    store: str,
    tmp_path: Path,
    *split_args: str,
    env: dict[str, str] | None = None,
    shard_args: tuple[str, ...] = (),
    merge_args: tuple[str, ...] = (),
) -> tuple[int, dict[str, Any]]:
    """split, every shard, merge; (shards, the plan)."""
    env = {**ENV, **(env or {})}
    count = tmp_path / "shard-count"
    r = run_step(
        "split",
        "--from-files",
        source,
        "--run-id",
        RUN,
        "--store",
        store,
        "--shard-count-file",
        str(count),
        *split_args,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    n = int(count.read_text())
    for i in range(n):
        r = run_step(
            "shard", "--shard", str(i), "--run-id", RUN, "--store", store, *shard_args, env=env
        )
        assert r.returncode == 0, r.stderr
    r = run_step("merge", "--store", store, *merge_args, env=env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(storage.read_bytes(storage.join(store, "plan.json")))
    return n, plan


def merged(store: str, name: str = "merged.json") -> list[Any]:
    data = storage.read_bytes(storage.join(store, name))
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in data.splitlines()]
    return list(json.loads(data))


def kinds(plan: dict[str, Any]) -> dict[str, list[str]]:
    """Per file name, the kinds of its units."""
    meta = plan["source_files"]
    out: dict[str, list[str]] = {}
    for unit in meta["units"]:
        name = meta["files"][unit["file"]]["url"].rsplit("/", 1)[-1]
        out.setdefault(name, []).append(unit["kind"])
    return out


def shard_of(plan: dict[str, Any], name: str) -> int:
    """The shard reading (the first unit of) the file called ``name``."""
    meta = plan["source_files"]
    (f,) = [i for i, x in enumerate(meta["files"]) if x["url"].endswith("/" + name)]
    u = next(i for i, x in enumerate(meta["units"]) if x["file"] == f)
    return next(i for i, units in enumerate(meta["shard_units"]) if u in units)


# ------------------------------------------------------------------------- byte ranges


def test_byte_ranges_give_every_line_exactly_once_at_every_cut(tmp_path: Path) -> None:
    """The Hadoop rule over every cut size from 1 byte to past the file: cuts on a newline,
    just after one, inside a multi-byte character; no trailing newline; blank lines."""
    data = jsonl_bytes(0, 40)[:-1] + b"\n\n" + b'{"n": 40}'  # a blank line, no final newline
    path = tmp_path / "a.jsonl"
    path.write_bytes(data)
    want = [json.loads(line) for line in data.splitlines() if line.strip()]
    (f,) = filesource.list_files(str(tmp_path))
    for size in [*range(1, 80), 97, 128, 1000, len(data) - 1, len(data), len(data) + 5]:
        units = filesource.units_of(0, f, size)
        got = [row for u in units for row in filesource._json_rows(f, u)]
        assert got == want, size
        if size < len(data):
            assert len(units) == -(-len(data) // size) and units[0].kind == "bytes"


# ----------------------------------------------------------------- local: every file type


def test_a_local_folder_of_every_type_merges_as_jq_slurps_it(
    run_step: RunStep, jq: str, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    big = jsonl_bytes(0, 600)
    (src / "a.jsonl").write_bytes(big)
    small = jsonl_bytes(1000, 30)
    (src / "b.jsonl.gz").write_bytes(gzip.compress(small))
    (src / "c.csv").write_bytes(csv_bytes())
    (src / "d.parquet").write_bytes(parquet_bytes(2000, 450, 100))
    (src / "_SUCCESS").write_bytes(b"")  # markers are left out, as Spark does
    store = str(tmp_path / "store")
    n, plan = run_all(run_step, str(src), store, tmp_path, "--bytes-per-shard", "9000")
    k = kinds(plan)
    assert k["b.jsonl.gz"] == ["whole"] and k["c.csv"] == ["whole"]
    assert len(k["a.jsonl"]) == -(-len(big) // 9000) >= 4 and set(k["a.jsonl"]) == {"bytes"}
    assert set(k["d.parquet"]) == {"row-groups"} and len(k["d.parquet"]) >= 2
    # lines straddle the cuts: no cut falls just after a newline
    cuts = [u["start"] for u in plan["source_files"]["units"] if u["kind"] == "bytes"][1:]
    assert any(big[c - 1 : c] != b"\n" for c in cuts)
    assert plan["mode"] == "files" and n == len(plan["shards"]) >= 4
    assert all(f["version"] for f in plan["source_files"]["files"])
    import pyarrow.parquet as pq

    want = (
        jq_slurp(jq, big)
        + jq_slurp(jq, small)
        + [{"n": "5000", "note": "two\nlines, quoted"}, {"n": "5001", "note": "plain"}]
        + pq.read_table(src / "d.parquet").to_pylist()
    )
    assert merged(store) == want
    summary = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert summary["totals"]["rows"] == len(want) == 600 + 30 + 2 + 450
    assert summary["totals"]["rows_expected"] == len(want)  # the units' rows, reconciled
    units = [
        u
        for i in range(n)
        for u in json.loads((tmp_path / "store" / "commits" / f"part-{i:05d}.json").read_text())[
            "units"
        ]
    ]
    assert [u["unit"] for u in units] == list(range(len(plan["source_files"]["units"])))


@pytest.mark.parametrize("fmt", ["pyarrow", "pandas", "polars"])
def test_every_batch_format_feeds_the_processor_the_same_rows(
    run_step: RunStep, jq: str, tmp_path: Path, fmt: str
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_bytes(jsonl_bytes(0, 300))
    (src / "b.parquet").write_bytes(parquet_bytes(300, 200, 50))
    rows_store, fmt_store = str(tmp_path / "rows"), str(tmp_path / fmt)
    rows_args = ("--processor", "plugins.filerows:rows_double")
    run_all(
        run_step,
        str(src),
        rows_store,
        tmp_path,
        "--bytes-per-shard",
        "6000",
        *rows_args,
        shard_args=rows_args,
    )
    proc = {"pyarrow": "arrow_double", "pandas": "pandas_double", "polars": "polars_double"}[fmt]
    args = ("--processor", f"plugins.filerows:{proc}", "--batch-format", fmt)
    run_all(
        run_step, str(src), fmt_store, tmp_path, "--bytes-per-shard", "6000", *args, shard_args=args
    )
    want = merged(rows_store)
    assert [r["n2"] for r in want] == [2 * r["n"] for r in want] and len(want) == 500
    got = merged(fmt_store)
    assert [{k: r[k] for k in ("n", "n2")} for r in got] == [
        {k: r[k] for k in ("n", "n2")} for r in want
    ]


def test_parquet_parts_from_json_lines_and_a_rows_shard_never_imports_pyarrow(
    run_step: RunStep, jq: str, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    data = jsonl_bytes(0, 400)
    (src / "a.jsonl").write_bytes(data)
    store = str(tmp_path / "pq")
    run_all(
        run_step,
        str(src),
        store,
        tmp_path,
        "--bytes-per-shard",
        "5000",
        "--part-format",
        "parquet",
        merge_args=("--format", "jsonl"),
    )
    assert merged(store, "merged.jsonl") == jq_slurp(jq, data)
    assert list((tmp_path / "pq" / "parts").glob("*.parquet"))
    # a rows shard over JSON Lines: no pyarrow at all
    store2 = str(tmp_path / "rows")
    count = tmp_path / "count"
    r = run_step(
        "split",
        "--from-files",
        str(src),
        "--run-id",
        RUN,
        "--store",
        store2,
        "--bytes-per-shard",
        "5000",
        "--shard-count-file",
        str(count),
        env=ENV,
    )
    assert r.returncode == 0, r.stderr
    from services import step_env

    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "workers.shard",
            "--shard",
            "1",
            "--run-id",
            RUN,
            "--store",
            store2,
        ],
        env=step_env(tmp_path / "home", ENV),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "orjson" in imported
    assert imported & {"pyarrow", "pandas", "polars", "numpy", "fsspec", "psycopg"} == set()


# ------------------------------------------------------------------ buckets: S3 and GCS


def test_bucket_to_bucket_on_moto_s3_and_a_rewritten_object_is_stale(
    s3_store: Any, run_step: RunStep, jq: str, tmp_path: Path
) -> None:
    base = f"s3://{s3_store.bucket}"
    a, b = jsonl_bytes(0, 500), jsonl_bytes(500, 40)
    put(f"{base}/in/a.jsonl", a)
    put(f"{base}/in/b.jsonl.gz", gzip.compress(b))
    put(f"{base}/in/c.parquet", parquet_bytes(600, 300, 100))
    store = f"{base}/runs/one"
    n, plan = run_all(
        run_step,
        f"{base}/in/",
        store,
        tmp_path,
        "--bytes-per-shard",
        "8000",
        env=s3_store.env,
        merge_args=("--format", "jsonl", "--output", f"{base}/out/all.jsonl"),
    )
    assert n >= 3 and all(f["version"] for f in plan["source_files"]["files"])
    import pyarrow.parquet as pq

    want = jq_slurp(jq, a) + jq_slurp(jq, b)
    want += pq.read_table(io.BytesIO(parquet_bytes(600, 300, 100))).to_pylist()
    got = [json.loads(x) for x in storage.read_bytes(f"{base}/out/all.jsonl").splitlines()]
    assert got == want
    # the object changes after split: its shard refuses it (exit 4), naming it
    store2 = f"{base}/runs/two"
    r = run_step(
        "split",
        "--from-files",
        f"{base}/in/*.jsonl",
        "--run-id",
        RUN,
        "--store",
        store2,
        "--bytes-per-shard",
        "100000000",
        env={**ENV, **s3_store.env},
    )
    assert r.returncode == 0, r.stderr
    put(f"{base}/in/a.jsonl", jsonl_bytes(0, 499))
    r = run_step(
        "shard", "--shard", "0", "--run-id", RUN, "--store", store2, env={**ENV, **s3_store.env}
    )
    assert r.returncode == 4, r.stderr
    assert f"{base}/in/a.jsonl changed since split" in r.stderr
    assert not storage.glob(f"{store2}/parts/*")


def test_gcs_emulator_with_arrow_batches_of_every_file_type(
    gcs_store: Any, run_step: RunStep, jq: str, tmp_path: Path
) -> None:
    base = f"gs://{gcs_store.bucket}"
    a = jsonl_bytes(0, 300)
    put(f"{base}/in/a.jsonl", a)
    put(f"{base}/in/b.csv", csv_bytes())
    put(f"{base}/in/c.parquet", parquet_bytes(700, 120, 40))
    store = f"{base}/runs/one"
    args = ("--batch-format", "pyarrow", "--processor", "plugins.columnar:arrow_identity")
    n, plan = run_all(
        run_step,
        f"{base}/in",
        store,
        tmp_path,
        "--bytes-per-shard",
        "4000",
        *args,
        env=gcs_store.env,
        shard_args=args,
    )
    assert n >= 3 and kinds(plan)["b.csv"] == ["whole"]
    import pyarrow.parquet as pq

    csv_rows = [{"n": "5000", "note": "two\nlines, quoted"}, {"n": "5001", "note": "plain"}]
    want = jq_slurp(jq, a) + csv_rows
    want += pq.read_table(io.BytesIO(parquet_bytes(700, 120, 40))).to_pylist()
    assert merged(store) == want  # each unit's batches keep their own file's columns
    put(f"{base}/in/b.csv", csv_bytes() + b"5002,late\n")  # a new generation of the object
    r = run_step(
        "shard",
        "--shard",
        str(shard_of(plan, "b.csv")),
        "--run-id",
        RUN,
        "--store",
        store,
        "--force",
        *args,
        env={**ENV, **gcs_store.env},
    )
    assert r.returncode == 4 and f"{base}/in/b.csv changed since split" in r.stderr, r.stderr


# -------------------------------------------------------------- staleness, merge, resume


def test_a_local_file_rewritten_after_split_makes_its_shard_exit_4(
    run_step: RunStep, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_bytes(jsonl_bytes(0, 10))
    (src / "b.jsonl").write_bytes(jsonl_bytes(10, 10))
    store = str(tmp_path / "store")
    r = run_step(
        "split",
        "--from-files",
        f"{src}/*.jsonl",
        "--run-id",
        RUN,
        "--store",
        store,
        "--bytes-per-shard",
        "100",
        env=ENV,
    )
    assert r.returncode == 0, r.stderr
    (src / "b.jsonl").write_bytes(jsonl_bytes(10, 11))
    plan = json.loads((tmp_path / "store" / "plan.json").read_text())
    last = len(plan["shards"]) - 1
    r = run_step("shard", "--shard", str(last), "--run-id", RUN, "--store", store, env=ENV)
    assert r.returncode == 4, r.stderr
    assert f"{src}/b.jsonl changed since split" in r.stderr
    assert not (tmp_path / "store" / "parts").exists() or not list(
        (tmp_path / "store" / "parts").iterdir()
    )
    r = run_step("shard", "--shard", "0", "--run-id", RUN, "--store", store, env=ENV)
    assert r.returncode == 0, r.stderr  # a.jsonl is unchanged


def test_merge_refuses_a_unit_no_commit_covers(run_step: RunStep, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_bytes(jsonl_bytes(0, 200))
    store = tmp_path / "store"
    n, _ = run_all(run_step, str(src), str(store), tmp_path, "--bytes-per-shard", "3000")
    assert n >= 2
    (store / "merged.json").unlink()
    (store / "summary.json").unlink()
    commit = store / "commits" / "part-00000.json"
    original = commit.read_text()
    rec = json.loads(original)
    dropped = rec["units"].pop()
    rec["rows_in"] -= dropped["rows"]
    commit.write_text(json.dumps(rec))
    r = run_step("merge", "--store", str(store), env=ENV)
    assert r.returncode == 4, r.stderr
    assert f"unit {dropped['unit']} ({src}/a.jsonl bytes " in r.stderr
    assert "is covered by no commit" in r.stderr
    assert not (store / "merged.json").exists() and not (store / "summary.json").exists()
    # a unit two commits claim is refused too
    commit.write_text(original)
    other = store / "commits" / "part-00001.json"
    rec = json.loads(other.read_text())
    rec["units"].insert(0, dropped)
    rec["rows_in"] += dropped["rows"]
    other.write_text(json.dumps(rec))
    r = run_step("merge", "--store", str(store), env=ENV)
    assert r.returncode == 4, r.stderr
    assert f"unit {dropped['unit']} ({src}/a.jsonl bytes " in r.stderr
    assert "is covered 2 times (part-00000, part-00001)" in r.stderr
    assert not (store / "merged.json").exists()


def test_a_resumed_shard_skips_its_checkpointed_rows_and_matches_a_clean_run(
    run_step: RunStep, jq: str, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    data = jsonl_bytes(0, 1000)
    (src / "a.jsonl").write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    args = ("--processor", "plugins.filerows:fails_until_fixed", "--batch-size", "50")
    store = str(tmp_path / "store")
    r = run_step(
        "split", "--from-files", str(src), "--run-id", RUN, "--store", store, *args, env=ENV
    )
    assert r.returncode == 0, r.stderr
    shard = (
        "shard",
        "--shard",
        "0",
        "--run-id",
        RUN,
        "--store",
        store,
        "--checkpoint-rows",
        "100",
        *args,
    )
    r = run_step(*shard, env=ENV, cwd=work)
    assert r.returncode == 3, r.stderr
    (work / "fixed").write_text("")
    r = run_step(*shard, env=ENV, cwd=work)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "store" / "commits" / "part-00000.json").read_text())
    assert rec["resumed_rows_in"] == 700 and rec["rows_read"] == 300 and rec["rows_in"] == 1000
    assert rec["units"] == [{"unit": 0, "rows": 1000}]
    r = run_step("merge", "--store", store, env=ENV)
    assert r.returncode == 0, r.stderr
    assert merged(store) == jq_slurp(jq, data)


# ------------------------------------------------------------------------------ bad input


def test_bad_input_exits_2_with_one_line_and_no_output(run_step: RunStep, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    store = str(tmp_path / "store")

    def split(source: str) -> subprocess.CompletedProcess[str]:
        return run_step(
            "split",
            "--from-files",
            source,
            "--run-id",
            RUN,
            "--store",
            store,
            "--bytes-per-shard",
            "2000",
            env=ENV,
        )

    r = split(f"{src}/*.jsonl")
    assert r.returncode == 2 and "matches no file" in r.stderr, r.stderr
    (src / "notes.txt").write_text("hello\n")
    r = split(str(src))
    assert r.returncode == 2 and f"{src}/notes.txt is not a .jsonl" in r.stderr, r.stderr
    assert not (tmp_path / "store" / "plan.json").exists()
    r = run_step("split", "--from-files", str(src), "--run-id", RUN, env=ENV)
    assert r.returncode == 2 and "--from-files needs --store" in r.stderr
    (src / "notes.txt").unlink()
    lines = jsonl_bytes(0, 100).splitlines(keepends=True)
    lines[77] = b'{"n": 77, broken\n'
    (src / "a.jsonl").write_bytes(b"".join(lines))
    r = split(str(src))
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "store" / "plan.json").read_text())
    owner = next(
        i
        for i, units in enumerate(plan["source_files"]["shard_units"])
        if any(
            plan["source_files"]["units"][u]["start"]
            <= sum(map(len, lines[:77]))
            < plan["source_files"]["units"][u]["end"]
            for u in units
        )
    )
    assert owner > 0  # the bad line is in a unit that starts mid-file: its number is counted
    r = run_step("shard", "--shard", str(owner), "--run-id", RUN, "--store", store, env=ENV)
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if '"level":"error"' in x]
    assert len(errors) == 1 and f"{src}/a.jsonl line 78: not valid JSON" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "store" / "parts" / f"part-{owner:05d}.jsonl")


# ------------------------------------------------------------------------------- pipeline


def test_the_pipeline_template_takes_files_as_its_source(
    tmp_path: Path, jq: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    a, b = jsonl_bytes(0, 400), jsonl_bytes(400, 25)
    (src / "a.jsonl").write_bytes(a)
    (src / "b.jsonl.gz").write_bytes(gzip.compress(b))
    monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    code = run_main(
        [
            "workers-pipeline",
            "--manifests",
            str(REPO / "manifests"),
            "--runs",
            str(runs),
            "-p",
            f"source-files={src}",
            "-p",
            "bytes-per-shard=6000",
        ]
    )
    (log,) = runs.glob("*/run.json")
    rec = json.loads(log.read_text())
    assert code == 0, rec["status"].get("message")
    store = Path(rec["workersRunner"]["volumes"]["workers-shared"]) / rec["metadata"]["name"]
    assert json.loads((store / "merged.json").read_text()) == jq_slurp(jq, a) + jq_slurp(jq, b)
    assert "merged 425 == produced 425 in" in capsys.readouterr().out
    nodes = rec["status"]["nodes"].values()
    ran = {n.get("displayName"): n["phase"] for n in nodes}
    assert ran["produce"] == "Skipped" and ran["split"] == "Skipped"
    assert ran["split-files"] == "Succeeded"
    plan = json.loads((store / "plan.json").read_text())
    shards = [n for n in nodes if n.get("templateName") == "shard" and n["type"] == "Retry"]
    assert len(shards) == len(plan["shards"]) >= 4
