"""Parquet parts and their fan-in: real steps (subprocesses) on SQLite, PostgreSQL, a local
folder, moto's S3 server and the GCS emulator.

A Parquet part keeps what a JSON Lines part guarantees: a commit record with rows, bytes,
sha256 (and the schema), resume after SIGKILL to the clean run's bytes, one schema per run
(merge refuses mixed ones, exit 4), a tampered part refused; merge writes one Parquet file
at bounded memory, a dataset manifest that DuckDB, Polars and pyarrow.dataset read, or the
``jq -s .`` document of the same rows a JSON Lines run gives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import services
from pipeline_helpers import Pipeline, RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH, exists, kill_at, read, shard_cmd, store_files

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
PART = "parts/part-00000.parquet"
CKPT = "parts/.part-00000.parquet.checkpoint"


def _env(pipe: Pipeline, home: Path, **extra: str) -> dict[str, str]:
    return services.step_env(home, {"WORKERS_DATABASE_URL": pipe.db_url, **pipe.env, **extra})


def _record(pipe: Pipeline, index: int = 0) -> dict[str, Any]:
    return json.loads(read(pipe.store, f"commits/part-{index:05d}.json"))  # type: ignore[no-any-return]


def _table(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def _run(pipe: Pipeline, rows: int, per_shard: int, fmt: str, *shard_args: str) -> list[Any]:
    pipe.produce(rows)
    items = pipe.split(per_shard, "--part-format", fmt)
    for item in items:
        proc = pipe.shard(item, *shard_args)
        assert proc.returncode == 0, proc.stderr
    return items


def _check_record(pipe: Pipeline, index: int) -> tuple[dict[str, Any], bytes]:
    rec = _record(pipe, index)
    part = read(pipe.store, f"parts/part-{index:05d}.parquet")
    assert rec["format"] == "parquet" and rec["path"] == f"parts/part-{index:05d}.parquet"
    assert rec["bytes"] == len(part) and rec["sha256"] == hashlib.sha256(part).hexdigest()
    table = _table(part)
    assert rec["rows"] == table.num_rows
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(rec["schema"])))
    assert schema.equals(table.schema) and "id: int64" in rec["schema_text"]
    return rec, part


def test_parquet_parts_hold_the_jsonl_runs_rows_and_merge_to_its_document(
    db_url: str, run_step: RunStep, tmp_path: Path, jq: str
) -> None:
    """Three shards in chunks of 300 rows: each part is one Parquet file (a row group per
    chunk) whose record vouches for it; merge --format json|jsonl gives the JSON Lines run's
    bytes, which jq -s . of its parts reads as the same document."""
    rows, args = 3000, ("--batch-size", "100", "--checkpoint-rows", "300")
    pq_run = Pipeline(run_step, db_url, str(tmp_path / "pq"), tmp_path / "w1", env=ENV)
    (tmp_path / "w1").mkdir()
    _run(pq_run, rows, 1000, "parquet", *args)
    plan = json.loads(pq_run.read("plan.json"))
    assert plan["part_format"] == "parquet"
    for index in range(3):
        rec, part = _check_record(pq_run, index)
        assert rec["chunks"] == 4 and pq.ParquetFile(pa.BufferReader(part)).num_row_groups == 4
        assert not pq_run.exists(f"parts/part-{index:05d}.jsonl")
    jl_run = Pipeline(run_step, db_url, str(tmp_path / "jl"), tmp_path / "w2", env=ENV)
    (tmp_path / "w2").mkdir()
    _run(jl_run, rows, 1000, "jsonl", *args)
    for fmt in ("json", "jsonl"):
        pq_run.ok("merge", "--store", pq_run.store, "--format", fmt)
        jl_run.ok("merge", "--store", jl_run.store, "--format", fmt)
        assert pq_run.read(f"merged.{fmt}") == jl_run.read(f"merged.{fmt}")
    parts = sorted(str(p) for p in Path(jl_run.store, "parts").glob("part-*.jsonl"))
    expected = subprocess.run([jq, "-s", ".", *parts], capture_output=True, check=True).stdout
    assert json.loads(pq_run.read("merged.json")) == json.loads(expected)
    summary = json.loads(pq_run.read("summary.json"))
    assert summary["output_sha256"] == hashlib.sha256(pq_run.read("merged.jsonl")).hexdigest()


def _dataset_readers(files: list[str]) -> dict[str, tuple[int, int]]:
    """(rows, sum of ids) as DuckDB, Polars and pyarrow.dataset read the manifest's files."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    return {
        "duckdb": tuple(
            duckdb.sql(f"select count(*), sum(id) from read_parquet({files!r})").fetchall()[0]
        ),  # type: ignore[dict-item]
        "polars": tuple(
            pl.scan_parquet(files).select(pl.len(), pl.col("id").sum()).collect().row(0)
        ),  # type: ignore[dict-item]
        "pyarrow": (
            ds.dataset(files, format="parquet").count_rows(),
            pa.compute.sum(
                ds.dataset(files, format="parquet").to_table(columns=["id"])["id"]
            ).as_py(),
        ),
    }


def test_merge_parquet_and_dataset(sqlite_url: str, run_step: RunStep, tmp_path: Path) -> None:
    """merge --format parquet writes one file of every row; --format dataset copies nothing and
    publishes a manifest (every part's rows, bytes, sha256, the schema) and parts/_SUCCESS,
    which DuckDB, Polars and pyarrow.dataset read as the README shows."""
    rows = 2500
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    _run(pipe, rows, 1000, "parquet", "--checkpoint-rows", "400", "--batch-size", "200")
    pipe.ok("merge", "--store", pipe.store, "--format", "parquet")
    merged = pipe.read("merged.parquet")
    table = _table(merged)
    assert table.num_rows == rows and table["id"].to_pylist() == list(range(1, rows + 1))
    summary = json.loads(pipe.read("summary.json"))
    assert summary["format"] == "parquet"
    assert summary["output_sha256"] == hashlib.sha256(merged).hexdigest()

    pipe.ok("merge", "--store", pipe.store, "--format", "dataset")
    manifest = json.loads(pipe.read("manifest.json"))
    summary = json.loads(pipe.read("summary.json"))
    assert summary["output_sha256"] == hashlib.sha256(pipe.read("manifest.json")).hexdigest()
    marker = json.loads(pipe.read("parts/_SUCCESS"))
    assert marker["sha256"] == summary["output_sha256"]
    assert manifest["rows"] == rows and len(manifest["parts"]) == 3
    for p in manifest["parts"]:
        data = pipe.read(p["path"])
        assert (p["bytes"], p["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert manifest["schema"] == _record(pipe)["schema"]
    # The README's one-liners: the manifest's exact files.
    files = json.loads(Path(pipe.store, "manifest.json").read_text())["files"]
    expected = (rows, rows * (rows + 1) // 2)
    assert _dataset_readers(files) == dict.fromkeys(("duckdb", "polars", "pyarrow"), expected)


def test_the_plan_pins_the_part_format(sqlite_url: str, run_step: RunStep, tmp_path: Path) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(100)
    item = pipe.split(100, "--part-format", "parquet")[0]
    wrong = pipe.shard(item, "--part-format", "jsonl")
    assert wrong.returncode == 2 and "pins --part-format parquet" in error_of(wrong)["message"]
    assert not pipe.exists("parts/part-00000.jsonl")
    ok = pipe.shard(item)  # the plan's format
    assert ok.returncode == 0, ok.stderr
    assert _record(pipe)["format"] == "parquet" and pipe.exists(PART)
    # A JSON Lines run cannot be merged as Parquet.
    jl = Pipeline(run_step, sqlite_url, str(tmp_path / "jl"), tmp_path, run_id="run-2", env=ENV)
    jl.produce(10)
    for it in jl.split(10):
        assert jl.shard(it).returncode == 0
    refused = jl.merge("--format", "parquet")
    assert refused.returncode == 2 and "needs Parquet parts" in error_of(refused)["message"]


def test_mixed_schemas_and_a_tampered_part_are_refused(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """One processor whose ``v`` is a number in shard 0 and text in shard 1: merge exits 4
    naming both groups of parts; inside one shard the same change is the user's code, exit 3
    naming the field. A part changed after its commit is refused too (exit 4)."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    proc_args = ("--processor", "plugins.userfuncs:int_then_text")
    _run(pipe, 2000, 1000, "parquet", *proc_args)
    for fmt in ("parquet", "dataset", "json"):
        mixed = pipe.merge("--format", fmt)
        assert mixed.returncode == 4, mixed.stderr
        message = error_of(mixed)["message"]
        assert "2 different schemas" in message
        assert (
            "part-00000: id: int64 v: int64" in message
            and "part-00001: id: int64 v: string" in message
        )
    assert not pipe.exists("merged.parquet") and not pipe.exists("parts/_SUCCESS")

    one = Pipeline(run_step, sqlite_url, str(tmp_path / "one"), tmp_path, run_id="run-2", env=ENV)
    one.produce(2000)
    item = one.split(2000, "--part-format", "parquet")[0]
    failed = one.shard(item, *proc_args, "--batch-size", "500")
    assert failed.returncode == 3, failed.stderr
    assert "'v'" in error_of(failed)["message"]

    ok = Pipeline(run_step, sqlite_url, str(tmp_path / "ok"), tmp_path, run_id="run-3", env=ENV)
    _run(ok, 1000, 500, "parquet")
    path = Path(ok.store, "parts/part-00001.parquet")
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    for fmt in ("parquet", "dataset", "jsonl"):
        tampered = ok.merge("--format", fmt)
        assert tampered.returncode == 4, tampered.stderr
        assert "part-00001 does not match the sha256" in error_of(tampered)["message"]


def _clean_part(run_step: RunStep, pipe: Pipeline, item: Any, tmp_path: Path, *args: str) -> bytes:
    """The part a clean run (no kill) of the same options writes to a local folder: a Parquet
    part's row groups follow --checkpoint-rows, never the store."""
    clean = Pipeline(
        run_step, pipe.db_url, str(tmp_path / "clean"), tmp_path, pipe.run_id, pipe.env
    )
    proc = clean.shard(item, "--part-format", "parquet", *args, "--force")
    assert proc.returncode == 0, proc.stderr
    return clean.read(PART)


STORES = ["local-sqlite", "local-postgres", "s3", "gcs"]


@pytest.mark.parametrize("where", STORES)
def test_a_parquet_part_resumes_after_sigkill_to_the_clean_bytes(
    request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path, where: str
) -> None:
    """Killed after its second checkpoint, a retry keeps those chunks (their footers come from
    the checkpoint record) and publishes the bytes a clean run without checkpoints writes;
    the merge reads it from the same store."""
    env: dict[str, str] = dict(ENV)
    store = str(tmp_path / "store")
    db = request.getfixturevalue("pg_db" if where == "local-postgres" else "sqlite_url")
    if where in ("s3", "gcs"):
        bucket = request.getfixturevalue(f"{where}_store")
        env, store = {**bucket.env, **ENV}, bucket.url
    # S3 chunks are at least 5 MiB: rows of 100 kB of noise, 60 a chunk.
    rows, args, every = 300, ("--processor", "plugins.userfuncs:noise", "--batch-size", "20"), 60
    if where != "s3":
        env["WORKERS_TEST_NOISE_BYTES"] = "200"
        rows, every = 3000, 500
    pipe = Pipeline(run_step, db, store, tmp_path, env=env)
    pipe.produce(rows)
    item = pipe.split(rows, "--part-format", "parquet")[0]
    ckpt = ("--checkpoint-rows", str(every))
    kill_at(
        shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt),
        _env(pipe, tmp_path / "home"),
        tmp_path,
        "checkpoint-2",
    )
    left = json.loads(read(pipe.store, CKPT))
    assert len(left["chunks"]) == 2 and all(c["meta"] for c in left["chunks"])
    assert not exists(pipe.store, PART)
    retry = pipe.shard(item, *args, *ckpt)
    assert retry.returncode == 0, retry.stderr
    rec, part = _check_record(pipe, 0)
    assert rec["resumed_rows_in"] == 2 * every and rec["rows_read"] == rows - 2 * every
    assert part == _clean_part(run_step, pipe, item, tmp_path, *args, *ckpt)
    assert pq.ParquetFile(pa.BufferReader(part)).num_row_groups >= rows // every
    assert not exists(pipe.store, CKPT)
    assert not [n for n in store_files(pipe.store) if ".chunk-" in n or "tmp" in n]
    pipe.ok("merge", "--store", pipe.store, "--format", "parquet")
    assert _table(read(pipe.store, "merged.parquet")).equals(_table(part))
    pipe.ok("merge", "--store", pipe.store, "--format", "dataset")
    assert json.loads(read(pipe.store, "manifest.json"))["parts"][0]["sha256"] == rec["sha256"]


MERGE_RSS = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "workers.merge", *sys.argv[1:]], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""


@pytest.mark.slow
def test_merge_parquet_peak_rss_stays_under_128_mb(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """Two parts of ~75 MB of incompressible rows (150 MB in all): merge --format parquet peaks
    under 128 MB RSS (its max RSS measured by getrusage in a parent of its own)."""
    env = {**ENV, "WORKERS_TEST_NOISE_BYTES": "50000"}
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=env)
    _run(
        pipe, 3000, 1500, "parquet", "--processor", "plugins.userfuncs:noise", "--batch-size", "100"
    )
    total = sum(_record(pipe, i)["bytes"] for i in range(2))
    assert total > 140_000_000
    proc = subprocess.run(
        [sys.executable, "-c", MERGE_RSS, "--store", pipe.store, "--format", "parquet"],
        env=_env(pipe, tmp_path / "home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    peak_kb = int(proc.stdout.split()[-1])
    print(f"merge --format parquet of {total} bytes: peak RSS {peak_kb // 1024} MB")
    assert peak_kb < 128 * 1024
    assert pq.read_metadata(Path(pipe.store, "merged.parquet")).num_rows == 3000


def test_only_a_parquet_shard_imports_pyarrow(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """pyarrow costs a pod start-up time: a JSON Lines shard and merge never import it."""
    timing = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    for fmt, imports in (("jsonl", False), ("parquet", True)):
        pipe = Pipeline(run_step, sqlite_url, str(tmp_path / fmt), tmp_path, fmt, env=timing)
        pipe.produce(10)
        item = pipe.split(10, "--part-format", fmt)[0]
        shard = pipe.shard(item)
        assert shard.returncode == 0, shard.stderr
        merge = pipe.merge("--format", "jsonl")
        assert merge.returncode == 0, merge.stderr
        for proc in (shard, merge):
            assert ("| pyarrow" in proc.stderr) == imports


TYPED = """
CREATE TABLE t (key bigint PRIMARY KEY, amount numeric(12, 2), ratio double precision,
    ok boolean, name text, at timestamptz, day date, doc jsonb, raw bytea, id uuid, tags text[]);
INSERT INTO t SELECT k, k * 1234.5 / 7, k / 3.0, k % 2 = 0, 'n' || k,
    timestamptz '2024-01-02 03:04:05.678+02' + k * interval '1 hour', date '2024-01-01' + k,
    jsonb_build_object('k', k, 'a', jsonb_build_array(k, k + 1)), decode(md5(k::text), 'hex'),
    md5(k::text)::uuid, ARRAY['a', k::text] FROM generate_series(1, 2500) AS k;
"""


def test_typed_postgres_rows_become_arrow_by_the_column_types(
    pg_db: str, run_step: RunStep, tmp_path: Path
) -> None:
    """A typed PostgreSQL table through the rows path (a processor passing the driver's values
    on): the Parquet part holds numeric as decimal, timestamptz as UTC timestamps, jsonb as a
    struct, bytea as binary, uuid as uuid, and merge --format json gives the JSON Lines run's
    document (numeric digits exact, bytes base64, timestamps in UTC)."""
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(TYPED)  # type: ignore[arg-type]
    source = ("--table", "t", "--run-column", "", "--data-column", "")
    proc = ("--processor", "plugins.userfuncs:passthrough", "--batch-size", "1000")
    merged = {}
    for fmt in ("jsonl", "parquet"):
        pipe = Pipeline(run_step, pg_db, str(tmp_path / fmt), tmp_path, env=ENV)
        items = pipe.split_from_db(1000, *source, "--part-format", fmt)
        for item in items:
            shard = pipe.shard(item, *source, *proc)
            assert shard.returncode == 0, shard.stderr
        pipe.ok("merge", "--store", pipe.store)
        merged[fmt] = pipe.read("merged.json")
    assert merged["parquet"] == merged["jsonl"]
    schema = _table(read(str(tmp_path / "parquet"), PART)).schema
    assert str(schema.field("amount").type) == "decimal128(38, 2)"
    assert str(schema.field("at").type).startswith("timestamp[us, tz=")
    assert pa.types.is_struct(schema.field("doc").type)
    assert pa.types.is_binary(schema.field("raw").type)
    assert pa.types.is_list(schema.field("tags").type)


def test_joined_chunk_files_read_back_as_one_file_of_every_type(tmp_path: Path) -> None:
    """parquetfooter on its own: chunk files of many types (booleans, timestamps with a zone,
    decimals, structs, lists, binary, dictionaries, nulls) joined body after body under one
    footer read back, row group by row group, as the rows written (pyarrow, DuckDB, Polars)."""
    import datetime
    import decimal
    import io

    import duckdb
    import polars as pl

    from workers import parquetfooter, parquetparts

    def row(k: int) -> dict[str, Any]:
        return {
            "k": k,
            "ok": k % 3 == 0 if k % 5 else None,
            "at": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(k),
            "amount": decimal.Decimal(k) / 4,
            "doc": {"a": [k, k + 1], "s": "x" * (k % 7)},
            "raw": bytes([k % 256]) * (k % 5),
            "city": ("Lisbon", "Oslo")[k % 2],
        }

    table = parquetparts.rows_to_table([row(k) for k in range(1000)], None)
    out, footers = bytearray(), []
    for start in range(0, 1000, 300):
        f = io.BytesIO()
        writer = pq.ParquetWriter(f, table.schema, **parquetparts.WRITE_OPTIONS)
        writer.write_table(table.slice(start, 300), row_group_size=200)
        writer.close()
        body, footer = parquetfooter.split_file(f.getvalue())
        if out:
            body = body[4:]
        footers.append((len(out) - 4 if out else 0, footer))
        out += body
    out += parquetfooter.join(footers)
    reader = pq.ParquetFile(pa.BufferReader(bytes(out)))
    assert reader.num_row_groups == 7 and reader.metadata.num_rows == 1000
    assert pa.concat_tables(reader.read_row_group(i) for i in range(7)).equals(table)
    path = tmp_path / "joined.parquet"
    path.write_bytes(bytes(out))
    ks = duckdb.sql(f"select sum(k), count(ok) from read_parquet('{path}')").fetchall()[0]
    assert ks == (sum(range(1000)), sum(1 for k in range(1000) if k % 5))
    assert pl.read_parquet(path)["amount"].sum() == sum(decimal.Decimal(k) / 4 for k in range(1000))


def test_a_shard_without_output_rows_writes_an_empty_part_the_merges_skip(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """Shard 0's processor keeps no row: its part is a Parquet file without row groups or
    columns (no schema to agree on), and every merge format still gives the rows of shard 1."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    _run(pipe, 2000, 1000, "parquet", "--processor", "plugins.userfuncs:after_1000")
    empty = _record(pipe, 0)
    assert empty["rows"] == 0 and empty["schema_text"] == ""
    assert _table(read(pipe.store, PART)).num_rows == 0
    pipe.ok("merge", "--store", pipe.store, "--format", "parquet")
    assert _table(pipe.read("merged.parquet"))["id"].to_pylist() == list(range(1001, 2001))
    pipe.ok("merge", "--store", pipe.store, "--format", "dataset")
    manifest = json.loads(pipe.read("manifest.json"))
    assert manifest["files"] == [f"{pipe.store}/parts/part-00001.parquet"]
    assert [p["rows"] for p in manifest["parts"]] == [0, 1000]
    pipe.ok("merge", "--store", pipe.store, "--format", "json")
    assert [v["id"] for v in json.loads(pipe.read("merged.json"))] == list(range(1001, 2001))


def test_a_parquet_checkpoint_of_other_checkpoint_rows_is_never_resumed(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """A Parquet part's row groups follow --checkpoint-rows: a retry with another value starts
    from the first row (its checkpoint key differs) and writes that value's clean bytes."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(3000)
    item = pipe.split(3000, "--part-format", "parquet")[0]
    args = ("--batch-size", "100")
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *args, "--checkpoint-rows", "500")
    kill_at(cmd, _env(pipe, tmp_path / "home"), tmp_path, "checkpoint-2")
    retry = pipe.shard(item, *args, "--checkpoint-rows", "400")
    assert retry.returncode == 0, retry.stderr
    rec, part = _check_record(pipe, 0)
    assert rec["resumed_rows_in"] == 0 and rec["rows_read"] == 3000
    assert part == _clean_part(run_step, pipe, item, tmp_path, *args, "--checkpoint-rows", "400")
    assert pq.ParquetFile(pa.BufferReader(part)).num_row_groups == 8


def test_merge_delta_commits_the_verified_parts_as_one_table_version(
    sqlite_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    """merge --format delta copies nothing: the verified parts become one version of the Delta
    table at STORE/parts (deltalake and Polars read it), the summary names the version's log
    entry by its sha256, a re-run commits the next version of the same files, and a tampered
    part is refused (exit 4) without a new version."""
    import deltalake
    import polars as pl

    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    _run(pipe, 2500, 1000, "parquet")
    table = str(Path(pipe.store, "parts"))
    for version in (0, 1):
        pipe.ok("merge", "--store", pipe.store, "--format", "delta")
        dt = deltalake.DeltaTable(table)
        assert dt.version() == version
        assert sorted(dt.file_uris()) == [f"{table}/part-{i:05d}.parquet" for i in range(3)]
        ids = dt.to_pyarrow_table(columns=["id"])["id"].to_pylist()
        assert sorted(ids) == list(range(1, 2501))
        summary = json.loads(pipe.read("summary.json"))
        entry = Path(table, "_delta_log", f"{version:020d}.json").read_bytes()
        assert summary["output_sha256"] == hashlib.sha256(entry).hexdigest()
    assert pl.scan_delta(table).select(pl.len()).collect().item() == 2500
    path = Path(pipe.store, "parts/part-00002.parquet")
    data = bytearray(path.read_bytes())
    data[50] ^= 1
    path.write_bytes(bytes(data))
    tampered = pipe.merge("--format", "delta")
    assert tampered.returncode == 4 and "part-00002" in error_of(tampered)["message"]
    assert deltalake.DeltaTable(table).version() == 1 and not pipe.exists("summary.json")


@pytest.mark.parametrize("fmt", ["parquet", "dataset"])
def test_the_pipeline_template_writes_parquet_parts_and_merges_them(
    tmp_path: Path, fmt: str
) -> None:
    """``workers run workers-pipeline -p part-format=parquet -p format=parquet|dataset``: split
    pins Parquet parts through the template's parameter and merge fans them in as asked."""
    rows = 2500
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "run", "workers-pipeline", "--sandbox", "remap",
         "--manifests", str(Path(__file__).parents[1] / "manifests"), "--runs", str(tmp_path / "runs"),
         "-p", f"rows={rows}", "-p", "rows-per-shard=1000", "-p", "part-format=parquet",
         "-p", f"format={fmt}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rows:          merged {rows:,} == produced {rows:,} in 3 shards" in proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("merged output: ")]
    out = Path(line.removeprefix("merged output: "))
    if fmt == "parquet":
        assert out.name == "merged.parquet"
        assert pq.read_table(out)["id"].to_pylist() == list(range(1, rows + 1))
    else:
        manifest = json.loads(out.read_text())
        assert manifest["rows"] == rows and len(manifest["parts"]) == 3
        files = [str(out.parent / p["path"]) for p in manifest["parts"]]
        assert sum(pq.read_metadata(f).num_rows for f in files) == rows
