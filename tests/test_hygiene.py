"""Nothing left behind, nothing clobbered (issue 9, section 3), over real step processes.

- a second attempt never removes a live attempt's temp file or multipart upload, and
  every step removes what dead attempts of its own outputs left;
- merge's output and its summary appear together or not at all: the summary names the
  output's sha256 and is withdrawn before the output changes;
- FIFOs, devices and folders are never read as inputs nor replaced as outputs, and small
  inputs are read with a size bound;
- the fast path for parts cannot be fooled into accepting what ``jq -s .`` rejects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import services
from conftest import unavailable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import Pipeline, RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH, TcpProxy, exists, multipart_uploads, read

from workers import storage
from workers.errors import UsageError
from workers.jsonparts import to_json_lines

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
IS_ROOT = os.geteuid() == 0


def _temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.tmp-*")) if folder.exists() else []


@contextlib.contextmanager
def paused_step(
    step: str, args: list[str], env: dict[str, str], cwd: Path, phase: str, pause: float
) -> Iterator[subprocess.Popen[str]]:
    """A real step process held at ``phase`` by the WORKERS_TEST_PAUSE hook (tests/hooks)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"workers.{step}", *args],
        env=services.step_env(cwd / "home", {**env, "WORKERS_TEST_PAUSE": str(pause)}),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for raw in proc.stderr:
            line = json.loads(raw)
            seen.append(line.get("phase") or line.get("event"))
            if line.get("phase") == phase:
                break
        else:
            pytest.fail(f"{step} exited {proc.wait()} before phase {phase}: {seen}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def _rest_of(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    assert proc.stderr is not None
    err = proc.stderr.read()
    return proc.wait(timeout), err


# --------------------------------------------------------------- 1. temps of live attempts


def test_second_attempt_leaves_a_live_attempts_temp_file_alone(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """Attempt A has written its whole part and is paused before publishing it; attempt B of
    the same shard starts, runs and commits meanwhile. On 82691c7 B deleted A's temp file and
    A exited 2; both must exit 0 and the final part must verify against the final record."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(3000)
    item = pipe.split(3000)[0]
    env = {"WORKERS_DATABASE_URL": sqlite_url, **ENV}
    args = ["--shard", json.dumps(item), "--run-id", pipe.run_id, "--store", pipe.store]
    parts = Path(pipe.store) / "parts"
    with paused_step("shard", args, env, tmp_path, "before-publish-part", 4.0) as a:
        live = _temps(parts, "part-00000.jsonl")
        assert len(live) == 1 and live[0].stat().st_size > 0
        b = pipe.shard(item, "--attempt", "1")
        assert b.returncode == 0, b.stderr
        assert a.poll() is None, "attempt A finished before B: the test proved nothing"
        assert live[0].exists(), "attempt B removed the live attempt's temp file"
        code, err = _rest_of(a)
        assert code == 0, err
    record = json.loads(pipe.read("commits/part-00000.json"))
    data = pipe.read("parts/part-00000.jsonl")
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["rows"] == 3000
    assert not _temps(parts, "part-00000.jsonl")
    assert pipe.merge().returncode == 0


@pytest.mark.parametrize(
    ("step", "name"),
    [("produce", "count"), ("split", "plan.json"), ("merge", "merged.json")],
)
def test_a_killed_steps_temp_file_is_removed_by_its_next_run(
    run_step: RunStep, sqlite_url: str, tmp_path: Path, step: str, name: str
) -> None:
    """SIGKILL with the output complete but not yet published leaves a hidden temp file (a
    killed merge's is as big as the merged document). On 82691c7 only shard swept; now the
    next run of every step removes what a dead run left for its own outputs."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.run_all(400, 100)
    env = {"WORKERS_DATABASE_URL": sqlite_url, **ENV}
    args = {
        "produce": [
            "--rows",
            "400",
            "--run-id",
            pipe.run_id,
            "--count-file",
            str(tmp_path / "count"),
        ],
        "split": [
            "--count-file",
            str(tmp_path / "count"),
            "--rows-per-shard",
            "100",
            "--run-id",
            pipe.run_id,
            "--store",
            pipe.store,
        ],
        "merge": ["--store", pipe.store],
    }[step]
    folder = tmp_path if step == "produce" else Path(pipe.store)
    with paused_step(step, args, env, tmp_path, "before-publish-other", 30.0) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    assert len(_temps(folder, name)) == 1  # what the dead run left
    again = pipe.step(step, *args)
    assert again.returncode == 0, again.stderr
    assert not _temps(folder, name)


def test_sweep_rule_lock_then_lease(tmp_path: Path) -> None:
    """The liveness rule itself, on real files and a real lock-holding process: a held lock is
    always life; an unlocked temp is dead at once where this host's kernel keeps the locks,
    and on a network filesystem (``trust_locks=False``) only once untouched past the lease."""
    target = tmp_path / "out.json"

    def temps() -> dict[str, Path]:
        names = ("held-old", "free-fresh", "free-old")
        paths = {n: tmp_path / f".out.json.tmp-1-{n}" for n in names}
        for p in paths.values():
            p.write_bytes(b"x")
        old = time.time() - 7200
        for n in ("held-old", "free-old"):
            os.utime(paths[n], (old, old))
        return paths

    for trust, survivors in ((True, {"held-old"}), (False, {"held-old", "free-fresh"})):
        paths = temps()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n",
                str(paths["held-old"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            removed = storage.remove_stale_temps(str(target), 3600, trust_locks=trust)
            assert {n for n, p in paths.items() if p.exists()} == survivors
            assert removed == 3 - len(survivors)
        finally:
            holder.kill()
            holder.wait()
        for p in paths.values():
            p.unlink(missing_ok=True)
    assert storage.locks_prove_liveness(str(tmp_path)) is True  # the test's own volume: local
    assert storage.locks_prove_liveness("/proc") is False  # not a filesystem known to be local


@pytest.mark.parametrize(
    ("fstype", "options", "shared"),
    [
        ("ext4", "rw,relatime", True),
        ("overlay", "rw,lowerdir=/a,upperdir=/b", True),
        ("tmpfs", "rw,size=64k", True),
        ("ceph", "rw,name=admin", True),
        ("nfs4", "rw,vers=4.1,rsize=1048576,hard,proto=tcp,local_lock=none,addr=10.0.0.2", True),
        ("nfs4", "rw,vers=4.2,local_lock=flock,addr=10.0.0.2", False),
        ("nfs", "rw,vers=3,nolock,addr=10.0.0.2", False),
        ("nfs", "rw,vers=3,local_lock=none,addr=10.0.0.2", False),
        ("cifs", "rw,vers=3.1.1", False),
        ("fuse.s3fs", "rw,user_id=0", False),
        ("9p", "rw,trans=virtio", False),
    ],
)
def test_which_filesystems_locks_are_trusted_on(fstype: str, options: str, shared: bool) -> None:
    """Where an unlocked temp file may be removed at once, and where only past the lease."""
    assert storage.lock_scope_is_shared(fstype, options) is shared


def test_bad_lease_is_refused(run_step: RunStep, tmp_path: Path) -> None:
    proc = run_step("split", "--count", "10", env={"WORKERS_STALE_AFTER": "soon"}, cwd=tmp_path)
    assert proc.returncode == 2 and "WORKERS_STALE_AFTER" in error_of(proc)["message"]


def _start_upload(store: Any, key: str, data: bytes) -> str:
    """What a live attempt on another pod has under way: a multipart upload with one part."""
    import s3fs

    fs = s3fs.S3FileSystem(**store.storage_options, skip_instance_cache=True)
    upload = fs.call_s3("create_multipart_upload", Bucket=store.bucket, Key=key)
    part = fs.call_s3(
        "upload_part",
        Bucket=store.bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=data,
    )
    return f"{upload['UploadId']}\n{part['ETag']}"


def _complete_upload(store: Any, key: str, handle: str) -> None:
    import s3fs

    upload_id, etag = handle.split("\n")
    fs = s3fs.S3FileSystem(**store.storage_options, skip_instance_cache=True)
    fs.call_s3(
        "complete_multipart_upload",
        Bucket=store.bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )


def test_second_attempt_leaves_a_live_multipart_upload_alone(
    s3_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """Another pod's attempt is uploading the part in pieces (a multipart upload started a
    moment ago). On 82691c7 a second attempt aborted it, so the live attempt failed; now it
    completes, both exit 0 and the part verifies. Past the lease, the upload is aborted."""
    pipe = Pipeline(run_step, sqlite_url, s3_store.url, tmp_path, env={**s3_store.env, **ENV})
    pipe.produce(500)
    item = pipe.split(500)[0]
    clean = Pipeline(run_step, sqlite_url, str(tmp_path / "clean"), tmp_path, env=ENV)
    assert clean.shard(item).returncode == 0
    expected = clean.read("parts/part-00000.jsonl")
    key = "run/parts/part-00000.jsonl"

    live = _start_upload(s3_store, key, expected)
    b = pipe.shard(item)
    assert b.returncode == 0, b.stderr
    assert [u["UploadId"] for u in multipart_uploads(s3_store)] == [live.split("\n")[0]]
    _complete_upload(s3_store, key, live)  # the live attempt publishes: its upload was kept
    record = json.loads(read(pipe.store, "commits/part-00000.json"))
    assert (
        record["sha256"] == hashlib.sha256(read(pipe.store, "parts/part-00000.jsonl")).hexdigest()
    )

    _start_upload(s3_store, key, expected)  # an attempt that then died: stale after the lease
    time.sleep(2.5)
    retry = pipe.shard(item, "--force", env={"WORKERS_STALE_AFTER": "1"})
    assert retry.returncode == 0, retry.stderr
    assert multipart_uploads(s3_store) == []
    assert pipe.merge().returncode == 0


# ------------------------------------------------------------- 2. output and summary together


def test_merge_killed_between_output_and_summary_leaves_no_stale_summary(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """A re-merge writes other bytes to the same output and is killed once the output is
    published, before its summary. On 82691c7 the previous summary stayed, vouching for a
    document it never saw. Now the summary names the output's sha256 and is withdrawn
    before the output changes; the next merge publishes both."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.run_all(400, 100)
    env = {"WORKERS_DATABASE_URL": sqlite_url, **ENV}
    out = str(Path(pipe.store) / "merged.json")
    args = ["--store", pipe.store, "--format", "jsonl", "--output", out]
    with paused_step("merge", args, env, tmp_path, "after-publish-other", 30.0) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    output = pipe.read("merged.json")
    assert output.startswith(b'{"id":1,')  # the new (jsonl) output is visible...
    if pipe.exists("summary.json"):  # ...and no summary vouches for other bytes
        summary = json.loads(pipe.read("summary.json"))
        assert summary.get("output_sha256") == hashlib.sha256(output).hexdigest()
    again = pipe.step("merge", *args)
    assert again.returncode == 0, again.stderr
    summary = json.loads(pipe.read("summary.json"))
    assert summary["output_sha256"] == hashlib.sha256(pipe.read("merged.json")).hexdigest()
    assert summary["output_bytes"] == len(pipe.read("merged.json"))
    assert summary["format"] == "jsonl"


def test_merge_whose_summary_store_fails_leaves_neither(
    s3_store: Any, run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    """The output goes to the shared folder, the summary to a bucket whose connection dies
    while the summary is uploaded. On 82691c7 merge exited 75 with merged.json visible and
    no summary; now it exits 75 and neither is there."""
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(400)
    for item in pipe.split(10):
        assert pipe.shard(item).returncode == 0
    host, port = s3_store.endpoint_url.removeprefix("http://").split(":")
    with TcpProxy(
        (host, int(port)), mode="reset", after_bytes=4096, direction="up", dead_after_trip=True
    ) as proxy:
        endpoint = f"http://{proxy.address}"
        via = {k: (endpoint if v == s3_store.endpoint_url else v) for k, v in s3_store.env.items()}
        proc = pipe.step(
            "merge",
            "--store",
            pipe.store,
            "--summary",
            f"{s3_store.url}/summary.json",
            env={**via, "WORKERS_TIMEOUT": "60"},
            timeout=90,
        )
        assert proxy.tripped.is_set()
    assert proc.returncode == 75, proc.stderr
    assert not pipe.exists("merged.json")
    assert not exists(s3_store.url, "summary.json")
    assert not _temps(Path(pipe.store), "merged.json")


def test_merge_refuses_an_unwritable_summary_before_writing_anything(
    run_step: RunStep, sqlite_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(100)
    for item in pipe.split(50):
        assert pipe.shard(item).returncode == 0
    (tmp_path / "a-file").write_bytes(b"")
    proc = pipe.merge("--summary", str(tmp_path / "a-file" / "summary.json"))
    assert proc.returncode == 2, proc.stderr
    assert "is not a folder" in error_of(proc)["message"]
    assert not pipe.exists("merged.json")


# ------------------------------------------------------- 3. special files in and out, bounds


def _special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        if not IS_ROOT:
            unavailable("mknod needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    else:
        path.mkdir()
        (path / "x").write_bytes(b"1\n")


KIND_WORD = {"fifo": "is a FIFO", "device": "is a device", "dir": "is a folder"}


SPECIAL_INPUTS = {
    "count-file": ("split", ["--count-file", "SPECIAL"]),
    "item-file": ("shard", ["--shard", "@SPECIAL", "--run-id", "r", "--store", "STORE"]),
    "merge-path": ("merge", ["SPECIAL"]),
    "merge-glob": ("merge", ["--glob", "GLOB"]),  # the glob matches a.json and the special file
}


@pytest.mark.parametrize(
    ("step", "args", "kind"),
    [
        pytest.param(*SPECIAL_INPUTS[name], kind, id=f"{name}-{kind}")
        for name in SPECIAL_INPUTS
        for kind in ("fifo", "device", "dir")
        if (name, kind) != ("merge-glob", "dir")  # a folder matched by a glob: merge-path's case
    ],
)
def test_special_input_is_refused_never_read(
    run_step: RunStep, tmp_path: Path, step: str, args: list[str], kind: str
) -> None:
    """On 82691c7 a FIFO hung the step (until Argo's deadline); a device was read (a private
    /dev/null here: an empty part merged as if it were one); a folder gave a raw errno."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_bytes(b"1\n")
    special = folder / "z-special"
    _special(special, kind)
    subst = {"SPECIAL": str(special), "STORE": str(tmp_path / "store"), "GLOB": str(folder / "*")}
    argv = [subst.get(a, a).replace("@SPECIAL", f"@{special}") for a in args]
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    proc = run_step(step, *argv, env=env, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    message = error_of(proc)["message"]
    assert KIND_WORD[kind] in message and "not a regular file" in message, message
    assert proc.stdout == ""


@pytest.mark.parametrize("kind", ["fifo", "device", "dir"])
@pytest.mark.parametrize(
    ("step", "args"),
    [
        ("produce", ["--rows", "10", "--run-id", "r", "--count-file", "SPECIAL"]),
        ("split", ["--count", "10", "--output-file", "SPECIAL"]),
        ("merge", ["PART", "--output", "SPECIAL"]),
        ("merge", ["PART", "--summary", "SPECIAL"]),
    ],
    ids=["count-file", "split-output", "merge-output", "merge-summary"],
)
def test_special_output_is_never_replaced(
    run_step: RunStep, tmp_path: Path, step: str, args: list[str], kind: str
) -> None:
    """On 82691c7, as root, ``--count-file /dev/full`` turned the device into a regular file:
    the atomic rename replaces whatever has the name. Now the step exits 2 before any work
    and the special file is untouched."""
    special = tmp_path / "special"
    _special(special, kind)
    before = special.lstat()
    (tmp_path / "part.json").write_bytes(b"1\n2\n")
    subst = {"SPECIAL": str(special), "PART": str(tmp_path / "part.json")}
    db = tmp_path / "db.sqlite"
    proc = run_step(
        step,
        *[subst.get(a, a) for a in args],
        env={"WORKERS_DATABASE_URL": f"sqlite:///{db}"},
        cwd=tmp_path,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert KIND_WORD[kind] in error_of(proc)["message"]
    after = special.lstat()
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not db.exists()  # produce refused before it touched the database


@pytest.fixture
def merged_run(run_step: RunStep, sqlite_url: str, tmp_path: Path) -> Pipeline:
    pipe = Pipeline(run_step, sqlite_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.run_all(300, 100)
    return pipe


@pytest.mark.parametrize(
    ("rel", "kind", "code", "message"),
    [
        ("plan.json", "fifo", 2, "plan"),
        ("plan.json", "pad", 2, "over the 16777216-byte limit"),
        ("commits/part-00001.json", "fifo", 4, "part-00001 has a corrupt commit record"),
        ("commits/part-00001.json", "pad", 4, "part-00001 has a corrupt commit record"),
        ("parts/part-00001.jsonl", "fifo", 2, "is a FIFO, not a regular file"),
    ],
)
def test_merge_reads_run_files_bounded_and_regular(
    merged_run: Pipeline, rel: str, kind: str, code: int, message: str
) -> None:
    """The plan and commit records are small by nature: read with a bound (a plan padded to
    17 MiB or a record padded to 100 KiB was read whole and accepted on 82691c7); FIFOs in
    their place hung merge there."""
    path = Path(merged_run.store) / rel
    if kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        size = (17 << 20) if rel == "plan.json" else (100 << 10)
        path.write_bytes(path.read_bytes() + b" " * size)
    proc = merged_run.step("merge", "--store", merged_run.store, timeout=30)
    assert proc.returncode == code, proc.stderr
    assert message in error_of(proc)["message"]


def test_item_file_is_read_with_a_bound(run_step: RunStep, tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    with item.open("wb") as f:
        f.write(b'{"index":0,"lo":1,"hi":5,"rows":5}')
        f.truncate(1 << 30)  # sparse: 1 GiB that 82691c7 read whole before refusing it
    proc = run_step("shard", "--shard", f"@{item}", "--run-id", "r", cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert "over the 65536-byte limit" in error_of(proc)["message"]


# --------------------------------------------------------- 5. parts that only look like lines

ADVERSARIAL = [
    b"1,2\n[3\n4]\n",  # the issue's case: three lines, three values, not one per line
    b'{"a":1},{"b":2}\n{"c":"}\n{"}\n',  # a value that spans two lines through a string
    b"1],[2\n[[3\n4]]\n",
    b'1,"z":2\n{"a":1\n2}\n',
    b'[1,\n2]\n"x"\n',  # fine for jq: one value over two lines, another on its own
    b'{"a":[1,\n2]}\n{"b":3}\n',
    b"1\n2\n3\n",
    b'"a,b"\n"c"\n',
    b"[]\n{}\n",
    b"1 2\n3\n",
]


def _jq(jq: str, data: bytes, tmp_path: Path) -> list[Any] | None:
    path = tmp_path / "jq-input.json"
    path.write_bytes(data)
    proc = subprocess.run([jq, "-c", "-s", ".", str(path)], capture_output=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _merge_values(data: bytes) -> list[Any] | None:
    try:
        lines, n = to_json_lines(data, "part")
    except UsageError:
        return None
    values = [json.loads(line) for line in lines.decode().splitlines()]
    assert len(values) == n
    return values


@pytest.mark.parametrize("data", ADVERSARIAL, ids=[repr(d)[2:30] for d in ADVERSARIAL])
def test_parts_are_accepted_exactly_when_jq_accepts_them(
    jq: str, tmp_path: Path, data: bytes
) -> None:
    assert _merge_values(data) == _jq(jq, data, tmp_path)


def test_the_issues_part_is_refused_by_the_merge_step(run_step: RunStep, tmp_path: Path) -> None:
    part = tmp_path / "part.json"
    part.write_bytes(b"1,2\n[3\n4]\n")
    proc = run_step("merge", "--glob", str(tmp_path / "*.json"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{part}: line 1: invalid JSON" in error_of(proc)["message"]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text('ab,[]{}:"', max_size=3)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(json_values, min_size=1, max_size=5), st.data())
def test_commas_turned_into_newlines_are_judged_like_jq(
    jq: str, tmp_path: Path, values: list[Any], data: st.DataObject
) -> None:
    """Compact JSON of some values, with a random choice of its commas (at any depth, inside
    strings too) turned into line ends: merge and ``jq -s .`` accept and reject the same."""
    text = ",".join(json.dumps(v, separators=(",", ":")) for v in values)
    commas = [i for i, c in enumerate(text) if c == ","]
    chosen = data.draw(st.sets(st.sampled_from(commas)) if commas else st.just(set()))
    raw = "".join("\n" if i in chosen else c for i, c in enumerate(text)) + "\n"
    part = raw.encode()
    assert _merge_values(part) == _jq(jq, part, tmp_path)
