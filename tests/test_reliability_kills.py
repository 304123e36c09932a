"""Reliability: shard workers SIGKILLed at random points (spot eviction, OOM kill), zombie
attempts, storage that dies mid-write, and the fan-in's verification, over a local folder, S3
(moto server) and GCS (emulator).

Kill delays come from ``random.Random(seed)``: set ``WORKERS_RELIABILITY_SEED`` to replay a run
(the seed in use is printed in the terminal summary). The figures of a run are recorded with
``reliability_figures.record``, written to the session folder and printed at the end.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import reliability_figures
import services
from conftest import unavailable
from pipeline_helpers import Pipeline, RunStep, error_of
from reliability_helpers import (
    CHECKPOINT,
    FINAL_NAME,
    LOCAL_TEMP,
    STEP_PYTHONPATH,
    Attempt,
    TcpProxy,
    exists,
    fresh_fs,
    kill_at,
    multipart_uploads,
    read,
    remove,
    run_attempt,
    shard_cmd,
    store_files,
)

pytestmark = pytest.mark.reliability

SEED = int(os.environ.get("WORKERS_RELIABILITY_SEED", "20261123"))
ENV = {"PYTHONPATH": STEP_PYTHONPATH}
ROWS, PER_SHARD, ROUNDS = 600, 150, 9  # 4 shards x 9 rounds = 36 kill attempts per backend
BACKENDS = ["local", "local-pg", "s3", "gcs"]
PAUSE = 0.06  # WORKERS_TEST_PAUSE: width of the before/after-publish windows


def _store_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> tuple[str, dict]:
    if backend.startswith("local"):
        return str(tmp_path / "store"), {}
    store = request.getfixturevalue(f"{backend}_store")
    return store.url, dict(store.env)


def check_store(pipe: Pipeline, n_shards: int) -> collections.Counter[str]:
    """Invariants that must hold at any instant, whatever was killed where.

    Every commit record vouches for the bytes at its part's final name; every checkpoint
    record vouches for chunks that are a prefix of its part's resume temp (or, once published,
    of the part); nothing but final names, checkpoint records and (local) hidden temp files
    exists; returns what the store holds.
    """
    files = store_files(pipe.store)
    seen: collections.Counter[str] = collections.Counter()
    for name in files:
        if LOCAL_TEMP.match(name):
            assert "://" not in pipe.store or pipe.store.startswith("file://"), name
            seen["temp-files"] += 1
        elif m := CHECKPOINT.match(name):
            seen[check_checkpoint(files, name, f"parts/part-{m.group(1)}.jsonl")] += 1
        else:
            assert FINAL_NAME.match(name), f"unexpected object {name!r} in the store"
    for i in range(n_shards):
        part, rec = f"parts/part-{i:05d}.jsonl", f"commits/part-{i:05d}.json"
        if rec in files:
            try:
                record = json.loads(files[rec])
            except ValueError:
                raise AssertionError(f"shard {i}: commit record is not JSON") from None
            assert part in files, f"shard {i}: commit record without data"
            data = files[part]
            assert record["bytes"] == len(data), f"shard {i}: torn part under a commit record"
            assert record["sha256"] == hashlib.sha256(data).hexdigest(), f"shard {i}: sha mismatch"
            seen["committed"] += 1
        elif part in files:
            seen["data-without-record"] += 1
        else:
            seen["nothing"] += 1
    return seen


def check_checkpoint(files: dict[str, bytes], name: str, part: str) -> str:
    """A checkpoint record's chunks are durable before it names them: their bytes and sha256s
    are a prefix of the resume temp (the part itself once it was published). With neither, or
    an empty temp (the part was published then removed, and a new attempt died before its first
    write), a resume keeps nothing: it verifies bytes, never trusts the record alone. Returns
    which case it was."""
    try:
        record = json.loads(files[name])
    except ValueError:
        raise AssertionError(f"{name}: checkpoint record is not JSON") from None
    temp = part.replace("parts/", "parts/.") + ".tmp-resume"
    data = files.get(temp) or files.get(part)
    if not data:
        return "checkpoint-without-data"
    offset = 0
    for i, chunk in enumerate(record["chunks"], 1):
        offset += chunk["bytes"]
        assert len(data) >= offset, f"{name}: chunk {i} is not all in the temp"
        through = hashlib.sha256(data[:offset]).hexdigest()
        assert through == chunk["prefix_sha256"], f"{name}: the part through chunk {i} differs"
    return "checkpoint-verified"


def check_merge(pipe: Pipeline, expected_ids: list[int]) -> int:
    """Merge now: either the exact rows, or exit 4 and no output at all."""
    for name in ("merged.json", "summary.json"):
        remove(pipe.store, name)
    proc = pipe.merge()
    assert proc.returncode in (0, 4), proc.stderr
    if proc.returncode == 0:
        merged = json.loads(read(pipe.store, "merged.json"))
        assert [r["id"] for r in merged] == expected_ids
    else:
        assert "not usable" in error_of(proc)["message"] or "missing" in error_of(proc)["message"]
        assert not exists(pipe.store, "merged.json") and not exists(pipe.store, "summary.json")
    return proc.returncode


def tally(store: str, attempt: Attempt, number: int, figures: collections.Counter[str]) -> None:
    """Count one attempt of a round: finished first, killed before its commit, or killed after it.

    The commit is the publish of the shard's commit record; the attempt had made it when the
    record in the store is its own (``attempt`` is the number this attempt was started with).
    Only kills before the commit test the protocol; those after it are counted apart. The phase
    the attempt last announced must agree with the store.
    """
    if not attempt.killed:
        assert attempt.returncode == 0, attempt.lines
        figures["finished-before-kill"] += 1
        return
    try:
        record = json.loads(read(store, f"commits/part-{attempt.index:05d}.json"))
    except FileNotFoundError:
        record = {}
    after = record.get("attempt") == number
    phase = attempt.phase
    if phase in ("after-publish-record", "committed"):
        assert after, f"shard {attempt.index} announced {phase} but its record is not in the store"
    elif after:
        # killed while the record was being published: only a kill there may find it written
        assert phase == "before-publish-record", (phase, attempt.lines)
    figures["kills-after-commit" if after else "kills-before-commit"] += 1
    figures[f"killed-in:{phase}"] += 1


def attempt_number(round_no: int, index: int, shards: int) -> int:
    """A number per attempt of a campaign (its ``--attempt``, stored in its commit record)."""
    return 1 + round_no * shards + index


def kill_campaign(
    pipe: Pipeline,
    items: list[dict[str, Any]],
    env: dict[str, str],
    rng: random.Random,
    rounds: int,
    extra: tuple[str, ...],
    figures: collections.Counter[str],
) -> None:
    """``rounds`` rounds; each starts every shard at once (--force) and SIGKILLs each at a random
    delay after its ``start`` line; between rounds a random half of the shards is wiped so kills
    also hit first attempts. After every round the store and the merge are checked. Kills are
    aimed before the commit (the commit record's publish); one that lands after it is counted
    apart (``tally``)."""
    cwd = pipe.workdir
    step_env = services.step_env(
        cwd / "home", {"WORKERS_DATABASE_URL": pipe.db_url, **env, "WORKERS_TEST_PAUSE": str(PAUSE)}
    )
    expected = list(range(1, sum(i["rows"] for i in items) + 1))

    # Calibrate: a clean attempt gives the length of each phase before the commit (read,
    # before/after the part is published, before its record is); each kill aims at a random
    # phase, then at a uniform point of its length after the phase's own announcement, so the
    # narrow windows get as many kills as the long read, whatever the load did to earlier ones.
    def one_round(attempts: list[Attempt], round_no: int) -> list[Attempt]:
        def start(a: Attempt) -> Attempt:
            number = str(attempt_number(round_no, a.index, len(items)))
            cmd = shard_cmd(items[a.index], pipe.run_id, pipe.store, "--force", *extra)
            return run_attempt([*cmd, "--attempt", number], step_env, cwd, a)

        with ThreadPoolExecutor(len(attempts)) as pool:
            return list(pool.map(start, attempts))

    calib = one_round([Attempt(item["index"], 1e9) for item in items], 0)
    assert all(a.returncode == 0 for a in calib), [a.lines for a in calib]
    spans = collections.defaultdict(list)
    for a in calib:
        for phase, lo, hi in a.windows():
            spans[phase].append((lo, hi))
    windows = [
        (phase, sum(lo for lo, _ in v) / len(v), sum(hi for _, hi in v) / len(v))
        for phase, v in spans.items()
        # from these on the process is past its commit (its record is published)
        if phase not in ("after-publish-record", "committed", "exit")
    ]
    assert len(windows) >= 4, windows
    for round_no in range(1, rounds + 1):
        for item in items:
            if rng.random() < 0.5:  # a fresh shard: no earlier commit to fall back on
                remove(pipe.store, f"parts/part-{item['index']:05d}.jsonl")
                remove(pipe.store, f"commits/part-{item['index']:05d}.json")
        attempts = []
        for item in items:
            phase, lo, hi = rng.choice(windows)
            attempts.append(Attempt(item["index"], rng.uniform(0, hi - lo), after=phase))
        for a in one_round(attempts, round_no):
            tally(pipe.store, a, attempt_number(round_no, a.index, len(items)), figures)
        state = check_store(pipe, len(items))
        figures.update({f"state:{k}": v for k, v in state.items()})
        figures[f"merge-exit-{check_merge(pipe, expected)}"] += 1
    # The retry: every shard once more, as Argo's retryStrategy would.
    for item in items:
        proc = pipe.shard(item, *extra, env=env)
        assert proc.returncode == 0, proc.stderr
    check_store(pipe, len(items))
    assert check_merge(pipe, expected) == 0
    merged = json.loads(read(pipe.store, "merged.json"))
    ids = [r["id"] for r in merged]
    assert len(ids) == len(set(ids)) == len(expected)  # rows merged == rows produced, 0 duplicates
    summary = json.loads(read(pipe.store, "summary.json"))
    assert summary["totals"]["rows"] == summary["totals"]["rows_expected"] == len(expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_at_random_points_never_loses_or_duplicates_rows(
    request: pytest.FixtureRequest,
    run_step: RunStep,
    sqlite_url: str,
    tmp_path: Path,
    backend: str,
) -> None:
    rng = random.Random(f"{SEED}-{backend}")
    store, store_env = _store_for(request, backend, tmp_path)
    db_url = request.getfixturevalue("pg_db") if backend == "local-pg" else sqlite_url
    env = {**store_env, **ENV}
    pipe = Pipeline(run_step, db_url, store, tmp_path, env=env)
    assert pipe.produce(ROWS) == ROWS
    items = pipe.split(PER_SHARD)
    # local-pg reads with COPY TO STDOUT (identity processor); the others through a slow
    # processor, so kills also land during the read.
    extra: tuple[str, ...] = (
        ()
        if backend == "local-pg"
        else ("--processor", "plugins.userfuncs:slow", "--batch-size", "30")
    )
    env_slow = {**env, "WORKERS_TEST_SLOW": "0.02"}
    figures: collections.Counter[str] = collections.Counter()
    kill_campaign(pipe, items, env_slow, rng, ROUNDS, extra, figures)
    reliability_figures.record(backend, SEED, figures)
    assert figures["kills-before-commit"] >= ROUNDS * len(items) // 2
    if backend == "s3":
        assert multipart_uploads(request.getfixturevalue("s3_store")) == []


# (phase the kill lands in, the store check that must catch the broken writer there, and the
# merge's refusal: the size check on the torn part, the parse of the torn record)
TEETH = [
    ("mid-write-part", "shard 1: torn part under a commit record", "its commit record says"),
    ("mid-write-record", "shard 1: commit record is not JSON", "corrupt commit record"),
]


@pytest.mark.parametrize(("phase", "check", "refusal"), TEETH)
def test_suite_has_teeth_a_writer_without_temp_file_is_caught(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, phase: str, check: str, refusal: str
) -> None:
    """The same kill, at the same announced point, against the real writer and against one that
    streams into the final name (``WORKERS_TEST_BREAK=direct-write``): the first leaves every
    check true, the second must trip the named check and the merge must refuse, naming the part."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(ROWS)
    items = pipe.split(PER_SHARD)
    for item in items:
        assert pipe.shard(item).returncode == 0  # committed first: the kill then hits a live part
    expected = list(range(1, ROWS + 1))
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV})
    cmd = shard_cmd(items[1], pipe.run_id, pipe.store, "--force")

    kill_at(cmd, env, tmp_path, phase)
    assert check_store(pipe, len(items))["committed"] == len(items)
    assert check_merge(pipe, expected) == 0

    kill_at(cmd, {**env, "WORKERS_TEST_BREAK": "direct-write"}, tmp_path, phase)
    with pytest.raises(AssertionError, match=re.escape(check)):
        check_store(pipe, len(items))
    remove(pipe.store, "merged.json")
    remove(pipe.store, "summary.json")
    merge = pipe.merge()
    assert merge.returncode == 4, merge.stderr
    message = error_of(merge)["message"]
    assert "part-00001" in message and refusal in message, message
    assert not exists(pipe.store, "merged.json") and not exists(pipe.store, "summary.json")


# Resume campaign: 150-row shards through the slow processor in batches of 30, a checkpoint
# after every batch (5 chunks a shard). Kills are aimed at announced events, not at times (a
# resumed attempt is shorter than a fresh one, and load changes every duration): inside the
# WORKERS_TEST_PAUSE window before or after the k-th checkpoint record's publish, mid-way
# through the next chunk, at start-up (while a resume verifies its chunks), and around the
# part's and commit record's publish.
RESUME_BACKENDS = ["local", "local-pg"]
RESUME_ROUNDS, CHUNKS, SLOW = 6, 5, 0.05
RESUME_TARGETS = [
    # (phase announced, which occurrence may be 1..this many, delay after it: (lo, hi) seconds)
    ("start", 1, (0.0, 0.3)),
    ("before-publish-checkpoint", CHUNKS, (0.0, PAUSE)),
    ("after-publish-checkpoint", CHUNKS, (0.0, PAUSE)),
    ("after-publish-checkpoint", CHUNKS - 1, (PAUSE, PAUSE + SLOW)),  # mid-chunk
    ("before-publish-part", 1, (0.0, PAUSE)),
    ("after-publish-part", 1, (0.0, PAUSE)),
    ("before-publish-record", 1, (0.0, PAUSE)),
]


def _checkpointed_chunks(store: str, index: int) -> int:
    try:
        return len(json.loads(read(store, f"parts/.part-{index:05d}.jsonl.checkpoint"))["chunks"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def last_announced(lines: list[dict[str, Any]]) -> str:
    """The protocol phase a shard's log lines reached last (as ``run_attempt`` tracks it)."""
    phase = "not-started"
    for line in lines:
        if line.get("event") == "start":
            phase = "read"
        elif line.get("event") == "phase":
            phase = str(line["phase"])
        elif line.get("event") in ("committed", "failed"):
            phase = str(line["event"])
    return phase


def kill_after_event(
    cmd: list[str], env: dict[str, str], cwd: Path, phase: str, nth: int, delay: float, index: int
) -> Attempt:
    """Run a shard; SIGKILL it ``delay`` s after its ``nth`` announcement of ``phase`` (``start``:
    its start line), or let it finish when it never makes that announcement."""
    attempt = Attempt(index, delay)
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = 0
    for raw in proc.stderr:
        line = json.loads(raw)
        attempt.lines.append(line)
        name = line.get("phase") if line.get("event") == "phase" else line.get("event")
        if name == phase:
            seen += 1
            if seen == nth:
                time.sleep(delay)
                proc.kill()
                break
    # What it announced before the signal struck: the rest of its stderr, to EOF.
    for raw in proc.stderr:
        with contextlib.suppress(ValueError):
            attempt.lines.append(json.loads(raw))
    attempt.phase = last_announced(attempt.lines)
    attempt.returncode = proc.wait(60)
    attempt.killed = attempt.returncode == -signal.SIGKILL
    return attempt


@pytest.mark.parametrize("backend", RESUME_BACKENDS)
def test_sigkill_around_checkpoints_resumes_to_the_clean_bytes(
    request: pytest.FixtureRequest,
    run_step: RunStep,
    sqlite_url: str,
    tmp_path: Path,
    backend: str,
) -> None:
    """Every round wipes each shard's part and commit record (never its checkpoint), so every
    attempt works again, resuming what the previous kill left; after each round the store
    invariants (checkpoint records included) and the merge hold; the final retry publishes the
    clean run's bytes, and nothing is left to resume."""
    rng = random.Random(f"{SEED}-resume-{backend}")
    db_url = request.getfixturevalue("pg_db") if backend == "local-pg" else sqlite_url
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    assert pipe.produce(ROWS) == ROWS
    items = pipe.split(PER_SHARD)
    extra = ("--processor", "plugins.userfuncs:slow", "--batch-size", "30")
    ckpt = ("--checkpoint-rows", "30")
    env = services.step_env(
        tmp_path / "home",
        {"WORKERS_DATABASE_URL": db_url, **ENV, "WORKERS_TEST_SLOW": str(SLOW)}
        | {"WORKERS_TEST_PAUSE": str(PAUSE)},
    )
    expected = list(range(1, ROWS + 1))
    figures: collections.Counter[str] = collections.Counter()
    for round_no in range(1, RESUME_ROUNDS + 1):
        plans = []
        for item in items:
            remove(pipe.store, f"parts/part-{item['index']:05d}.jsonl")
            remove(pipe.store, f"commits/part-{item['index']:05d}.json")
            # A resumed attempt announces only the checkpoints it has left to write.
            left = CHUNKS - _checkpointed_chunks(pipe.store, item["index"])
            targets = [
                (phase, most - (CHUNKS - left) if most > 1 else most, window)
                for phase, most, window in RESUME_TARGETS
            ]
            phase, most, (lo, hi) = rng.choice([t for t in targets if t[1] >= 1])
            number = str(attempt_number(round_no, item["index"], len(items)))
            cmd = [*shard_cmd(item, pipe.run_id, pipe.store, *extra, *ckpt), "--attempt", number]
            plans.append((cmd, phase, rng.randint(1, most), rng.uniform(lo, hi), item["index"]))
        with ThreadPoolExecutor(len(plans)) as pool:
            done = list(pool.map(lambda p: kill_after_event(p[0], env, tmp_path, *p[1:]), plans))
        for a in done:
            if any(x.get("event") == "checkpoint" and x.get("mode") == "resumed" for x in a.lines):
                figures["resumed"] += 1
            tally(pipe.store, a, attempt_number(round_no, a.index, len(items)), figures)
        state = check_store(pipe, len(items))
        figures.update({f"state:{k}": v for k, v in state.items()})
        figures[f"merge-exit-{check_merge(pipe, expected)}"] += 1
    print(f"resume campaign {backend}: {dict(sorted(figures.items()))}")
    for item in items:  # the retry
        proc = pipe.shard(item, *extra, *ckpt)
        assert proc.returncode == 0, proc.stderr
    check_store(pipe, len(items))
    assert check_merge(pipe, expected) == 0
    assert figures["kills-before-commit"] >= RESUME_ROUNDS * len(items) // 2
    assert figures["resumed"] >= RESUME_ROUNDS // 2
    clean = Pipeline(run_step, db_url, str(tmp_path / "clean"), tmp_path, env=ENV)
    for item in items:
        assert clean.shard(item, *extra, "--checkpoint-rows", "0").returncode == 0
        name = f"parts/part-{item['index']:05d}.jsonl"
        assert read(pipe.store, name) == read(clean.store, name)
    assert [n for n in store_files(pipe.store) if "tmp" in n or "checkpoint" in n] == []


# (phase the kill lands in, the chunks (of 30 rows) its retry resumes): just before the first
# checkpoint record is published (the chunk is durable, its record half-written) and after each.
CHECKPOINT_KILLS = [
    ("mid-write-checkpoint", 0),
    ("checkpoint-1", 1),
    ("checkpoint-4", 4),
    ("checkpoint-5", 5),  # every row read and checkpointed, nothing published
]


@pytest.mark.parametrize(("phase", "resumed"), CHECKPOINT_KILLS)
def test_a_kill_at_a_checkpoint_boundary_resumes_exactly_there(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, phase: str, resumed: int
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(PER_SHARD)
    item = pipe.split(PER_SHARD)[0]
    # a processor's batches of 30 (the identity path reads blocks of 10,000 rows)
    args = ("--processor", "plugins.userfuncs:passthrough", "--batch-size", "30")
    args += ("--checkpoint-rows", "30")
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **ENV})
    kill_at(shard_cmd(item, pipe.run_id, pipe.store, *args), env, tmp_path, phase)
    assert check_store(pipe, 1)["nothing"] == 1
    proc = pipe.shard(item, *args)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(read(pipe.store, "commits/part-00000.json"))
    assert (rec["resumed_rows_in"], rec["rows_read"]) == (30 * resumed, PER_SHARD - 30 * resumed)
    assert check_store(pipe, 1)["committed"] == 1
    assert check_merge(pipe, list(range(1, PER_SHARD + 1))) == 0


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_two_attempts_at_once_on_a_bucket_commit_one_clean_result(
    request: pytest.FixtureRequest, run_step: RunStep, sqlite_url: str, tmp_path: Path, backend: str
) -> None:
    store, store_env = _store_for(request, backend, tmp_path)
    env = {**store_env, **ENV}
    pipe = Pipeline(run_step, sqlite_url, store, tmp_path, env=env)
    pipe.produce(1500)
    item = pipe.split(1500)[0]
    step_env = services.step_env(
        tmp_path / "home",
        {"WORKERS_DATABASE_URL": sqlite_url, **env, "WORKERS_TEST_SLOW": "0.03"},
    )
    cmd = shard_cmd(
        item,
        pipe.run_id,
        store,
        "--processor",
        "plugins.userfuncs:slow",
        "--batch-size",
        "100",
        "--force",
    )
    for _ in range(3):
        procs = [
            subprocess.Popen(
                [*cmd, "--attempt", str(n)], env=step_env, cwd=tmp_path, stderr=subprocess.PIPE
            )
            for n in range(2)
        ]
        codes = [p.wait(120) for p in procs]
        assert codes == [0, 0]
    clean = Pipeline(run_step, sqlite_url, str(tmp_path / "clean"), tmp_path, env=ENV)
    assert clean.shard(item).returncode == 0
    assert read(pipe.store, "parts/part-00000.jsonl") == read(clean.store, "parts/part-00000.jsonl")
    rec = json.loads(read(pipe.store, "commits/part-00000.json"))
    assert rec["sha256"] == hashlib.sha256(read(clean.store, "parts/part-00000.jsonl")).hexdigest()
    assert set(store_files(store)) == {
        "plan.json",
        "parts/part-00000.jsonl",
        "commits/part-00000.json",
    }
    assert pipe.merge().returncode == 0
    assert len(json.loads(read(pipe.store, "merged.json"))) == 1500


# ------------------------------------------------------------------ storage dies mid-write


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_object_store_gone_mid_write_is_transient_and_leaves_nothing(
    request: pytest.FixtureRequest, run_step: RunStep, sqlite_url: str, tmp_path: Path, backend: str
) -> None:
    """A proxy in front of the server lets the small requests through, then resets the
    connection in the middle of the part's upload and refuses every later connection (the
    server is gone). The step exits 75, nothing is at the final name, a re-run converges."""
    store = request.getfixturevalue(f"{backend}_store")
    pipe = Pipeline(run_step, sqlite_url, store.url, tmp_path, env={**store.env, **ENV})
    pipe.produce(3000)
    item = pipe.split(3000)[0]
    host, port = store.endpoint_url.removeprefix("http://").split(":")
    with TcpProxy(
        (host, int(port)), mode="reset", after_bytes=64 * 1024, direction="up", dead_after_trip=True
    ) as proxy:
        endpoint = f"http://{proxy.address}"
        via = {k: (endpoint if v == store.endpoint_url else v) for k, v in store.env.items()}
        t0 = time.monotonic()
        proc = pipe.shard(item, env={**via, "WORKERS_TIMEOUT": "60"}, timeout=90)
        elapsed = time.monotonic() - t0
        assert proxy.tripped.is_set()
    assert proc.returncode == 75, proc.stderr
    assert elapsed < 60
    assert not exists(pipe.store, "parts/part-00000.jsonl")
    assert not exists(pipe.store, "commits/part-00000.json")
    if backend == "s3":
        assert multipart_uploads(store) == []
    assert pipe.shard(item).returncode == 0
    assert pipe.merge().returncode == 0
    assert len(json.loads(read(pipe.store, "merged.json"))) == 3000


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


def test_full_local_disk_mid_write_is_transient_and_leaves_nothing(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """The shared volume fills up while the part is written (a 64 KiB tmpfs; ENOSPC)."""
    store = tmp_path / "full"
    if not _tmpfs(store, "64k"):
        unavailable("needs root to mount a small tmpfs (ENOSPC case)")
    try:
        pipe = Pipeline(run_step, sqlite_url, str(store / "run"), tmp_path, env=ENV)
        pipe.produce(3000)
        item = pipe.split(3000)[0]
        proc = pipe.shard(item)
        assert proc.returncode == 75, proc.stderr
        assert "No space left" in error_of(proc)["message"]
        assert not (store / "run" / "parts" / "part-00000.jsonl").exists()
        assert not (store / "run" / "commits" / "part-00000.json").exists()
        assert not [p for p in (store / "run").rglob("*") if p.is_file() and "tmp" in p.name]
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_killed_multipart_upload_is_aborted_by_the_retry(
    s3_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """s3fs uploads parts over 100 MiB in several pieces; a SIGKILL during that leaves an
    incomplete multipart upload (invisible, but billed). A retry past the lease aborts it."""
    pipe = Pipeline(run_step, sqlite_url, s3_store.url, tmp_path, env={**s3_store.env, **ENV})
    pipe.produce(110)
    item = pipe.split(110)[0]
    env = services.step_env(
        tmp_path / "home", {"WORKERS_DATABASE_URL": sqlite_url, **s3_store.env, **ENV}
    )
    cmd = shard_cmd(
        item,
        pipe.run_id,
        s3_store.url,
        "--processor",
        "plugins.userfuncs:megabyte",
        "--batch-size",
        "10",
    )
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not multipart_uploads(s3_store):
        assert proc.poll() is None, "finished before the upload could be caught"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert len(multipart_uploads(s3_store)) == 1  # the orphan
    assert not exists(pipe.store, "parts/part-00000.jsonl")
    # Nothing tells a dead upload from one a live pod is still sending but its age: the retry
    # aborts it once it is older than the lease (shortened here from its default hour).
    time.sleep(2.5)
    rerun = pipe.shard(
        item,
        "--processor",
        "plugins.userfuncs:megabyte",
        "--batch-size",
        "10",
        env={"WORKERS_STALE_AFTER": "1"},
    )
    assert rerun.returncode == 0, rerun.stderr
    assert multipart_uploads(s3_store) == []
    assert pipe.merge("--format", "jsonl").returncode == 0


# ------------------------------------------------------------------------ merge on buckets


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_bucket_merge_is_byte_identical_and_refuses_damage(
    request: pytest.FixtureRequest, run_step: RunStep, sqlite_url: str, tmp_path: Path, backend: str
) -> None:
    store = request.getfixturevalue(f"{backend}_store")
    pipe = Pipeline(run_step, sqlite_url, store.url, tmp_path, env={**store.env, **ENV})
    items = pipe.run_all(500, 100)
    first, summary = read(pipe.store, "merged.json"), read(pipe.store, "summary.json")
    assert pipe.merge().returncode == 0
    assert read(pipe.store, "merged.json") == first
    assert json.loads(read(pipe.store, "summary.json"))["totals"] == {
        **json.loads(summary)["totals"],
        "merge_seconds": json.loads(read(pipe.store, "summary.json"))["totals"]["merge_seconds"],
    }
    fs, root = fresh_fs(store.url)
    part, rec = f"{root}/parts/part-00003.jsonl", f"{root}/commits/part-00003.json"
    good_part, good_rec = fs.cat_file(part), fs.cat_file(rec)
    damages = {
        "flip-byte": lambda: fs.pipe_file(
            part, good_part[:5] + bytes([good_part[5] ^ 1]) + good_part[6:]
        ),
        "truncate": lambda: fs.pipe_file(part, good_part[:-20]),
        "drop-part": lambda: remove(store.url, "parts/part-00003.jsonl"),
        "drop-record": lambda: remove(store.url, "commits/part-00003.json"),
        "bad-record": lambda: fs.pipe_file(rec, b"{not json"),
    }
    for name, damage in damages.items():
        remove(store.url, "merged.json")
        remove(store.url, "summary.json")
        damage()
        proc = pipe.merge()
        assert proc.returncode == 4, (name, proc.stderr)
        assert "part-00003" in error_of(proc)["message"], name
        assert not exists(store.url, "merged.json"), name
        assert not exists(store.url, "summary.json"), name
        fs.pipe_file(part, good_part)
        fs.pipe_file(rec, good_rec)
    assert pipe.merge().returncode == 0
    assert read(pipe.store, "merged.json") == first
    assert len(items) == 5
