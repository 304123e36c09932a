"""Resumable shards: a shard SIGKILLed after a checkpoint resumes there, reads only what is left,
and publishes the bytes a clean run publishes; a checkpoint of another generation or processor,
or one whose bytes no longer verify, is never trusted.

Real processes against real SQLite, PostgreSQL and moto's S3 server; kills land where the test
hooks (tests/hooks/sitecustomize.py, ``WORKERS_TEST_HOLD=checkpoint-K``) announce, or, for the
2M-row shard, where the checkpoint record says ~90% of the rows were read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import Pipeline, RunStep, log_lines
from reliability_helpers import (
    STEP_PYTHONPATH,
    exists,
    fresh_fs,
    kill_at,
    multipart_uploads,
    read,
    remove,
    shard_cmd,
    store_files,
)

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
CKPT = "parts/.part-00000.jsonl.checkpoint"
TEMP = "parts/.part-00000.jsonl.tmp-resume"


def _env(pipe: Pipeline, home: Path, **extra: str) -> dict[str, str]:
    return services.step_env(home, {"WORKERS_DATABASE_URL": pipe.db_url, **pipe.env, **extra})


def _record(pipe: Pipeline) -> dict[str, Any]:
    return json.loads(read(pipe.store, "commits/part-00000.json"))  # type: ignore[no-any-return]


def _clean_part(
    run_step: RunStep, pipe: Pipeline, item: dict[str, Any], tmp_path: Path, *args: str
) -> bytes:
    """The part a clean run (no kill, no checkpoints) makes of the same rows."""
    clean = Pipeline(run_step, pipe.db_url, str(tmp_path / "clean"), tmp_path, pipe.run_id, ENV)
    proc = clean.shard(item, *args, "--checkpoint-rows", "0", "--force")
    assert proc.returncode == 0, proc.stderr
    return clean.read("parts/part-00000.jsonl")


def _retry(pipe: Pipeline, item: dict[str, Any], *args: str) -> dict[str, Any]:
    proc = pipe.shard(item, *args)
    assert proc.returncode == 0, proc.stderr
    committed = [line for line in log_lines(proc) if line["event"] == "committed"]
    rec = _record(pipe)
    assert committed[0]["rows_read"] == rec["rows_read"]  # the log line says it too
    return rec


def _resumable_leftovers(store: str) -> list[str]:
    return [n for n in store_files(store) if "tmp" in n or n.endswith(".checkpoint")]


# (source, processor args, rows per batch the chunks align to)
DOUBLE = ("--processor", "plugins.userfuncs:double", "--batch-size", "700")
PATHS = [
    pytest.param("postgres", (), 10_000, id="postgres-fast-path"),
    pytest.param("postgres", DOUBLE, 700, id="postgres-processor"),
    # without a processor SQLite streams encoded blocks of db.JSON_BATCH rows, as PostgreSQL
    pytest.param("sqlite", (), 10_000, id="sqlite-identity"),
    pytest.param("sqlite", DOUBLE, 700, id="sqlite-processor"),
]


@pytest.mark.parametrize(("database", "args", "batch"), PATHS)
@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_retry_resumes_after_the_last_checkpoint_and_makes_the_clean_bytes(
    request: pytest.FixtureRequest,
    run_step: RunStep,
    tmp_path: Path,
    database: str,
    args: tuple[str, ...],
    batch: int,
    kill_after: int,
) -> None:
    db_url = request.getfixturevalue("pg_db" if database == "postgres" else "sqlite_url")
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 30_000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    every = 5000
    chunk = math.ceil(every / batch) * batch  # a chunk ends at the first batch boundary past N
    ckpt = ("--checkpoint-rows", str(every))
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt)
    kill_at(cmd, _env(pipe, tmp_path / "home"), tmp_path, f"checkpoint-{kill_after}")
    left = json.loads(read(pipe.store, CKPT))
    assert [c["rows_in"] for c in left["chunks"]] == [chunk] * kill_after
    assert not exists(pipe.store, "parts/part-00000.jsonl")

    rec = _retry(pipe, item, *args, *ckpt)
    assert rec["resumed_rows_in"] == kill_after * chunk
    assert rec["rows_read"] == rows - kill_after * chunk
    assert rec["rows_in"] == rows and rec["chunks"] == math.ceil(rows / chunk)
    part = read(pipe.store, "parts/part-00000.jsonl")
    assert part == _clean_part(run_step, pipe, item, tmp_path, *args)
    assert rec["sha256"] == hashlib.sha256(part).hexdigest() and rec["bytes"] == len(part)
    assert _resumable_leftovers(pipe.store) == []
    assert pipe.merge().returncode == 0


def _pairs(args: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(args[::2], args[1::2], strict=True))


# (what changed between the killed attempt and the retry, the retry's extra args)
CHANGES = [
    ("generation", ()),  # produce ran again (and split after it)
    ("processor", ("--processor", "plugins.userfuncs:tag_b")),
    ("batch-size", ("--batch-size", "200")),
]


@pytest.mark.parametrize(("change", "retry_args"), CHANGES)
def test_a_checkpoint_of_another_generation_or_processor_is_never_resumed(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, change: str, retry_args: tuple[str, ...]
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 3000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    if change != "generation":
        # Without a plan nothing pins the processor: only the checkpoint's key can refuse it.
        os.unlink(tmp_path / "store" / "plan.json")
    first = ("--processor", "plugins.userfuncs:tag_a", "--batch-size", "100")
    ckpt = ("--checkpoint-rows", "500")
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *first, *ckpt)
    kill_at(cmd, _env(pipe, tmp_path / "home"), tmp_path, "checkpoint-2")
    assert len(json.loads(read(pipe.store, CKPT))["chunks"]) == 2
    if change == "generation":
        pipe.produce(rows)
        item = pipe.split(rows)[0]
    pairs = {**_pairs(first), **_pairs(retry_args)}
    flat = tuple(x for kv in pairs.items() for x in kv)
    proc = pipe.shard(item, *flat, *ckpt)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in log_lines(proc) if line["event"] == "checkpoint"]
    rec = _record(pipe)
    assert (rec["rows_read"], rec["resumed_rows_in"]) == (rows, 0)
    part = read(pipe.store, "parts/part-00000.jsonl")
    assert part == _clean_part(run_step, pipe, item, tmp_path, *flat)
    if change == "processor":
        assert {json.loads(line)["by"] for line in part.splitlines()} == {"b"}
    assert _resumable_leftovers(pipe.store) == []


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


# (damage done to the dead attempt's resume temp, chunks the retry may keep of 3)
DAMAGES = [
    ("none", 3),
    ("garbage after the last checkpoint", 3),  # what a kill mid-chunk leaves
    ("a flipped byte in chunk 2", 1),
    ("truncated inside chunk 3", 2),
    ("temp file gone", 0),
    ("checkpoint record corrupt", 0),
    # version 1 held each chunk's own sha256, which a version 2 resume cannot check
    ("checkpoint record of version 1", 0),
]


@pytest.mark.parametrize(("damage", "kept"), DAMAGES)
def test_a_resume_keeps_only_the_chunks_whose_bytes_verify(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, damage: str, kept: int
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 2000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    # chunks of 300 rows: a processor's batches (the identity path reads blocks of 10,000)
    args = (
        "--processor",
        "plugins.userfuncs:double",
        "--batch-size",
        "100",
        "--checkpoint-rows",
        "300",
    )
    kill_at(
        shard_cmd(item, pipe.run_id, pipe.store, *args),
        _env(pipe, tmp_path / "home"),
        tmp_path,
        "checkpoint-3",
    )
    temp, ckpt = Path(pipe.store) / TEMP, Path(pipe.store) / CKPT
    sizes = [c["bytes"] for c in json.loads(ckpt.read_bytes())["chunks"]]
    if damage.startswith("garbage"):
        with open(temp, "ab") as f:
            f.write(b'{"half a row": ')
    elif damage.startswith("a flipped"):
        _flip(temp, sizes[0] + sizes[1] // 2)
    elif damage.startswith("truncated"):
        os.truncate(temp, sum(sizes) - 10)
    elif damage == "temp file gone":
        temp.unlink()
    elif damage == "checkpoint record corrupt":
        ckpt.write_bytes(b'{"version": 2, "chunks": [')
    elif damage.endswith("version 1"):
        ckpt.write_bytes(ckpt.read_bytes().replace(b'"version":2', b'"version":1', 1))
    rec = _retry(pipe, item, *args)
    assert rec["resumed_rows_in"] == 300 * kept
    assert rec["rows_read"] == rows - 300 * kept
    assert read(pipe.store, "parts/part-00000.jsonl") == _clean_part(
        run_step,
        pipe,
        item,
        tmp_path,
        "--processor",
        "plugins.userfuncs:double",
        "--batch-size",
        "100",
    )
    assert _resumable_leftovers(pipe.store) == []


def test_a_duplicate_of_a_live_attempt_writes_privately_and_both_converge(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """Attempt A holds the resume temp (it waits after its first checkpoint, alive). Attempt B
    must not append to A's file: it writes a private temp without checkpoints and commits. A
    then finishes too; both published the clean bytes, and nothing is left to resume."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(2000)
    item = pipe.split(2000)[0]
    args = ("--batch-size", "100", "--checkpoint-rows", "300")
    env = _env(pipe, tmp_path / "home", WORKERS_TEST_HOLD="checkpoint-1")
    a = subprocess.Popen(
        shard_cmd(item, pipe.run_id, pipe.store, *args),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert a.stderr is not None
    for raw in a.stderr:
        if json.loads(raw).get("phase") == "checkpoint-1":
            break
    b = pipe.shard(item, *args)
    assert b.returncode == 0, b.stderr
    assert [line["mode"] for line in log_lines(b) if line["event"] == "checkpoint"] == ["private"]
    clean = _clean_part(run_step, pipe, item, tmp_path, "--batch-size", "100")
    assert read(pipe.store, "parts/part-00000.jsonl") == clean
    a.send_signal(signal.SIGKILL)  # A dies holding its resume temp (the hold never ends)
    a.wait(30)
    again = pipe.shard(item, *args)
    assert [line["event"] for line in log_lines(again)][-2] == "already-committed"
    assert _resumable_leftovers(pipe.store) == []  # the dead attempt's temp and record swept
    assert read(pipe.store, "parts/part-00000.jsonl") == clean


def test_s3_resumes_its_multipart_upload(
    s3_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """Rows of ~1 MiB, chunks of 6 rows (over S3's 5 MiB part minimum): a kill after the
    second checkpoint leaves one multipart upload with two parts; the retry lists them,
    uploads the rest, completes, and the object is the clean run's bytes. A --force run
    after another kill aborts the upload it does not resume."""
    pipe = Pipeline(run_step, sqlite_url, s3_store.url, tmp_path, env={**s3_store.env, **ENV})
    rows = 20
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    args = ("--processor", "plugins.userfuncs:megabyte", "--batch-size", "2")
    ckpt = ("--checkpoint-rows", "6")
    env = _env(pipe, tmp_path / "home")
    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt), env, tmp_path, "checkpoint-2")
    uploads = multipart_uploads(s3_store)
    assert len(uploads) == 1
    left = json.loads(read(pipe.store, CKPT))
    assert left["upload_id"] == uploads[0]["UploadId"] and len(left["chunks"]) == 2
    assert not exists(pipe.store, "parts/part-00000.jsonl")  # nothing visible mid-upload

    rec = _retry(pipe, item, *args, *ckpt)
    assert (rec["resumed_rows_in"], rec["rows_read"], rec["chunks"]) == (12, 8, 4)
    part = read(pipe.store, "parts/part-00000.jsonl")
    clean = _clean_part(run_step, pipe, item, tmp_path, *args)
    assert part == clean and rec["sha256"] == hashlib.sha256(clean).hexdigest()
    assert multipart_uploads(s3_store) == []
    assert not exists(pipe.store, CKPT)

    # Killed once its commit record is written, before it deletes its checkpoint: the record
    # names a finished upload; the next attempt finds the verified commit and sweeps it.
    kill_at(
        shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt, "--force"),
        {**env, "WORKERS_TEST_PAUSE": "1"},  # the window after the record's publish
        tmp_path,
        "after-publish-record",
    )
    assert exists(pipe.store, CKPT) and multipart_uploads(s3_store) == []
    again = pipe.shard(item, *args, *ckpt)
    assert [line["event"] for line in log_lines(again)][-2] == "already-committed"
    assert not exists(pipe.store, CKPT)

    kill_at(
        shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt, "--force"),
        env,
        tmp_path,
        "checkpoint-1",
    )
    assert len(multipart_uploads(s3_store)) == 1
    forced = pipe.shard(item, *args, *ckpt, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _record(pipe)["rows_read"] == rows
    assert multipart_uploads(s3_store) == []
    assert read(pipe.store, "parts/part-00000.jsonl") == clean
    assert pipe.merge().returncode == 0


@pytest.mark.slow
def test_a_2m_row_shard_killed_at_90_percent_rereads_at_most_15_percent(
    run_step: RunStep, pg_db: str, tmp_path: Path
) -> None:
    """The issue's case: a 2,000,000-row shard (PostgreSQL fast path, default checkpoints of
    100,000 rows) is SIGKILLed once its checkpoint record shows 90% of the rows read, half a
    chunk later, so the kill lands mid-chunk; the retry reads <= 15% of the rows (counted in its
    commit record and log line) and publishes the clean run's bytes."""
    pipe = Pipeline(run_step, pg_db, str(tmp_path / "store"), tmp_path, env=ENV)
    rows = 2_000_000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    env = _env(pipe, tmp_path / "home")
    proc = subprocess.Popen(
        shard_cmd(item, pipe.run_id, pipe.store),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    ckpt = Path(pipe.store) / CKPT
    seen: list[tuple[float, int]] = []
    try:
        while True:
            assert proc.poll() is None, "the shard finished before 90%"
            try:
                done = int(json.loads(ckpt.read_bytes())["rows_in"])
            except (FileNotFoundError, ValueError):
                done = 0
            if done and (not seen or seen[-1][1] != done):
                seen.append((time.monotonic(), done))
            if done >= 0.9 * rows:
                break
            time.sleep(0.005)
        per_chunk = (seen[-1][0] - seen[0][0]) / max(1, len(seen) - 1)
        time.sleep(per_chunk / 2)  # into the next chunk
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    rec = _retry(pipe, item)
    print(f"2M-row shard killed at ~90%: the retry read {rec['rows_read']} rows of {rows}")
    assert rec["rows_in"] == rows
    assert rec["rows_read"] <= 0.15 * rows, rec
    assert rec["resumed_rows_in"] >= 0.85 * rows
    clean = _clean_part(run_step, pipe, item, tmp_path)
    assert rec["sha256"] == hashlib.sha256(clean).hexdigest()
    assert read(pipe.store, "parts/part-00000.jsonl") == clean
    assert _resumable_leftovers(pipe.store) == []


def _gcs_chunks(store: Any) -> dict[str, bytes]:
    """The chunk objects a GCS shard keeps beside its part (``.part-00000.jsonl.chunk-ID-N``)."""
    return {
        name: data
        for name, data in store_files(store.url).items()
        if name.startswith("parts/.part-00000.jsonl.chunk-")
    }


GCS_ARGS = ("--processor", "plugins.userfuncs:double", "--batch-size", "100")


def test_gcs_resumes_its_chunks_and_composes_the_clean_bytes(
    gcs_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """GCS has no multipart upload to resume: each chunk is its own object (so only one chunk
    is ever spooled to local disk), named by an id kept in the checkpoint record. A kill after
    the second checkpoint leaves two chunk objects and no part; the retry downloads them,
    checks their sha256, uploads the rest and composes the part: the clean run's bytes, with no
    chunk or record left. A chunk whose bytes changed is not kept (nor any after it), and a
    --force run after another kill removes the chunks it does not resume."""
    pipe = Pipeline(run_step, sqlite_url, gcs_store.url, tmp_path, env={**gcs_store.env, **ENV})
    rows = 2000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    ckpt = ("--checkpoint-rows", "300")
    env = _env(pipe, tmp_path / "home")
    cmd = shard_cmd(item, pipe.run_id, pipe.store, *GCS_ARGS, *ckpt)
    kill_at(cmd, env, tmp_path, "checkpoint-2")
    left = json.loads(read(pipe.store, CKPT))
    assert left["backend"] == "gcs" and len(left["chunks"]) == 2
    chunks = _gcs_chunks(gcs_store)
    assert sorted(chunks) == [
        f"parts/.part-00000.jsonl.chunk-{left['upload_id']}-{n:05d}" for n in (1, 2)
    ]
    # Each chunk's digest is of the part through its end: chunk 1, then chunks 1 and 2.
    joined = b"".join(chunks[n] for n in sorted(chunks))
    sizes = [c["bytes"] for c in left["chunks"]]
    assert [hashlib.sha256(joined[: sum(sizes[:i])]).hexdigest() for i in (1, 2)] == [
        c["prefix_sha256"] for c in left["chunks"]
    ]
    assert not exists(pipe.store, "parts/part-00000.jsonl")  # nothing visible mid-way

    rec = _retry(pipe, item, *GCS_ARGS, *ckpt)
    assert (rec["resumed_rows_in"], rec["rows_read"], rec["chunks"]) == (600, 1400, 7)
    part = read(pipe.store, "parts/part-00000.jsonl")
    clean = _clean_part(run_step, pipe, item, tmp_path, *GCS_ARGS)
    assert part == clean and rec["sha256"] == hashlib.sha256(clean).hexdigest()
    assert _gcs_chunks(gcs_store) == {} and not exists(pipe.store, CKPT)

    # A changed chunk 2: a retry keeps chunk 1 only, and still publishes the clean bytes.
    forced = (*GCS_ARGS, *ckpt, "--force")
    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *forced), env, tmp_path, "checkpoint-3")
    second = sorted(_gcs_chunks(gcs_store))[1]
    fs, root = fresh_fs(gcs_store.url)
    fs.pipe_file(f"{root}/{second}", b'{"id": 0}\n' * 100)
    remove(pipe.store, "commits/part-00000.json")  # else the first run's commit is reused
    rec = _retry(pipe, item, *GCS_ARGS, *ckpt)
    assert (rec["resumed_rows_in"], rec["rows_read"]) == (300, 1700)
    assert read(pipe.store, "parts/part-00000.jsonl") == clean
    assert _gcs_chunks(gcs_store) == {} and not exists(pipe.store, CKPT)

    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *forced), env, tmp_path, "checkpoint-1")
    assert len(_gcs_chunks(gcs_store)) == 1
    proc = pipe.shard(item, *forced)
    assert proc.returncode == 0, proc.stderr
    assert _record(pipe)["rows_read"] == rows
    assert _gcs_chunks(gcs_store) == {} and not exists(pipe.store, CKPT)
    assert read(pipe.store, "parts/part-00000.jsonl") == clean
    assert pipe.merge().returncode == 0


def test_gcs_composes_more_chunks_than_one_request_joins(
    gcs_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """GCS's compose joins at most 32 objects a request
    (https://cloud.google.com/storage/docs/composite-objects): a part of 40 chunks, resumed
    after 35 of them, is joined in two steps and is still the clean run's bytes."""
    pipe = Pipeline(run_step, sqlite_url, gcs_store.url, tmp_path, env={**gcs_store.env, **ENV})
    rows = 2000
    pipe.produce(rows)
    item = pipe.split(rows)[0]
    args = ("--processor", "plugins.userfuncs:double", "--batch-size", "50")
    ckpt = ("--checkpoint-rows", "50")
    env = _env(pipe, tmp_path / "home")
    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *args, *ckpt), env, tmp_path, "checkpoint-35")
    assert len(_gcs_chunks(gcs_store)) == 35
    rec = _retry(pipe, item, *args, *ckpt)
    assert (rec["resumed_rows_in"], rec["chunks"]) == (1750, 40)
    part = read(pipe.store, "parts/part-00000.jsonl")
    assert part == _clean_part(run_step, pipe, item, tmp_path, *args)
    assert rec["sha256"] == hashlib.sha256(part).hexdigest()
    assert _gcs_chunks(gcs_store) == {} and not exists(pipe.store, CKPT)
