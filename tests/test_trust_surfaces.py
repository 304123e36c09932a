"""What a user meets first, and files other people open (issue 20): each case runs the real
steps as subprocesses against moto's S3 server, the GCS emulator, real jq, promtool and
headless Chromium, and fails on the code before the fix.

- Stores: a missing bucket is never created (split's plan, merge's output), a URL of an
  unknown scheme or an endpoint that does not resolve names the store (never the database),
  and waits are bounded.
- timeline.html: no field of a hostile Workflow runs script in Chromium; a FIFO, device or
  folder as input or output, commit records of any content: exit 2 and one line, or a page.
- produce: WORKERS_TIMEOUT=inf, a seed over 64 bits, a run id ending in a newline: exit 2.
- metrics.prom: only names the exposition format allows (promtool checks it).
- merge: a lone surrogate is refused as the real jq refuses it.
- ``workers run`` on S3: the summary names s3:// URLs and prints the rows line.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import services
from pipeline_helpers import RunStep, error_of
from services import Server

PRODUCED = 30
SHARD_ITEM = '{"index":0,"lo":1,"hi":30,"rows":30}'


def _produce(run_step: RunStep, tmp_path: Path) -> dict[str, str]:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    proc = run_step("produce", "--rows", str(PRODUCED), "--run-id", "r", env=env)
    assert proc.returncode == 0, proc.stderr
    return env


def _s3_buckets(server: Server) -> set[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    return {b["Name"] for b in client.list_buckets()["Buckets"]}


def _gcs_bucket_exists(server: Server, bucket: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{server.endpoint_url}/storage/v1/b/{bucket}", timeout=10).close()
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False
    return True


def _refused_naming(proc: Any, bucket: str) -> dict[str, Any]:
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "store-missing", err
    assert bucket in err["message"], err
    assert proc.stdout == "", "no partial output"
    return err


# ------------------------------------------------------------------- missing buckets


def test_split_never_creates_a_missing_s3_bucket(
    run_step: RunStep, tmp_path: Path, s3_server: Server
) -> None:
    env = {**_produce(run_step, tmp_path), **services.s3_env(s3_server.endpoint_url)}
    bucket = services.random_name("typo-bucket-")
    proc = run_step(
        "split", "--count", str(PRODUCED), "--run-id", "r", "--store", f"s3://{bucket}/x", env=env
    )
    _refused_naming(proc, bucket)
    assert bucket not in _s3_buckets(s3_server)


def test_merge_never_creates_a_missing_s3_bucket(
    run_step: RunStep, tmp_path: Path, s3_server: Server
) -> None:
    (tmp_path / "part-1.jsonl").write_text('{"a": 1}\n')
    bucket = services.random_name("typo-bucket-")
    proc = run_step(
        "merge",
        "--glob",
        str(tmp_path / "part-*.jsonl"),
        "--output",
        f"s3://{bucket}/out/merged.jsonl",
        env=services.s3_env(s3_server.endpoint_url),
    )
    _refused_naming(proc, bucket)
    assert bucket not in _s3_buckets(s3_server)


def test_split_never_creates_a_missing_gcs_bucket(
    run_step: RunStep, tmp_path: Path, gcs_server: Server
) -> None:
    env = {**_produce(run_step, tmp_path), **services.gcs_env(gcs_server.endpoint_url)}
    bucket = services.random_name("typo-bucket-")
    proc = run_step(
        "split", "--count", str(PRODUCED), "--run-id", "r", "--store", f"gs://{bucket}/x", env=env
    )
    _refused_naming(proc, bucket)
    assert not _gcs_bucket_exists(gcs_server, bucket)


# ------------------------------------------------------------- schemes and endpoints


@pytest.mark.parametrize("step", ["split", "shard", "merge"])
def test_unknown_scheme_names_the_store(run_step: RunStep, tmp_path: Path, step: str) -> None:
    env = _produce(run_step, tmp_path)
    url = "ftp://files.example.invalid/runs/x"
    args = {
        "split": ["--count", str(PRODUCED), "--run-id", "r", "--store", url],
        "shard": ["--shard", SHARD_ITEM, "--run-id", "r", "--store", url],
        "merge": ["--store", url],
    }[step]
    proc = run_step(step, *args, env=env)
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "bad-input", err
    assert url in err["message"] and "WORKERS_DATABASE_URL" not in err["message"], err


def test_gcs_endpoint_that_does_not_resolve_is_the_stores_fault_quickly(
    run_step: RunStep, tmp_path: Path
) -> None:
    env = {
        **_produce(run_step, tmp_path),
        **services.gcs_env("http://gcs-endpoint.example.invalid:4443"),
    }
    started = time.monotonic()
    proc = run_step(
        "split", "--count", str(PRODUCED), "--run-id", "r", "--store", "gs://b/x", env=env
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "store-invalid", err
    assert "gs://b/x" in err["message"] and "WORKERS_DATABASE_URL" not in err["message"], err
    assert elapsed < 30, f"took {elapsed:.0f}s"


def test_gcs_endpoint_refusing_connections_is_transient_quickly(
    run_step: RunStep, tmp_path: Path
) -> None:
    env = {
        **_produce(run_step, tmp_path),
        **services.gcs_env(f"http://127.0.0.1:{services.free_port()}"),
    }
    started = time.monotonic()
    proc = run_step(
        "split", "--count", str(PRODUCED), "--run-id", "r", "--store", "gs://b/x", env=env
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 75, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "unreachable" and "gs://b/x" in err["message"], err
    assert elapsed < 30, f"took {elapsed:.0f}s"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """host:port of a server that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_gcs_without_credentials_does_not_wait_for_a_metadata_server(
    run_step: RunStep, tmp_path: Path, gcs_server: Server, silent_server: str
) -> None:
    """No credentials: gcsfs asks the GCE metadata server, and where something at its address
    accepts but never answers, google.auth retries for minutes. One short probe bounds it."""
    env = _produce(run_step, tmp_path)
    env["FSSPEC_GCS_ENDPOINT_URL"] = gcs_server.endpoint_url
    env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"] = silent_server
    started = time.monotonic()
    proc = run_step(
        "split", "--count", str(PRODUCED), "--run-id", "r", "--store", "gs://nobody-b/x", env=env
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "nobody-b" in error_of(proc)["message"]
    assert elapsed < 30, f"took {elapsed:.0f}s"


# ------------------------------------------------------------------- timeline pages

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "cluster-workflow.json"
FIXTURE_STORE = ROOT / "tests" / "fixtures" / "cluster-store"
# Runs if any field reaches the page as markup: in text, in an attribute (either quote), in
# <title> or <style>. It marks the page in two ways a DOM dump shows.
PAYLOAD = (
    "\"'></title></style><script>document.title='PWNED'</script>"
    "<img src=x onerror=\"document.title='PWNED';"
    "document.body.appendChild(document.createElement('x'+'pwned'))\">"
)
_KEEP = {"startedAt", "finishedAt", "creationTimestamp", "type", "apiVersion", "kind"}


def _hostile(value: Any, key: str = "") -> Any:
    """Every string of a Workflow with the payload in front (loop items keep their index
    suffix, times stay times), ids and the references to them alike."""
    if isinstance(value, dict):
        return {
            (PAYLOAD + k if key in ("nodes", "pods") else k): _hostile(v, k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hostile(v, key) for v in value]
    if isinstance(value, str) and key not in _KEEP:
        return PAYLOAD + value
    return value


def _timeline(run_step: RunStep, *args: str, **kw: Any) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "workers", "timeline", *args],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 60),
        check=False,
        **kw,
    )


@pytest.mark.parametrize("phases", ["hostile", "real"])
def test_timeline_runs_no_script_from_any_field(
    run_step: RunStep, tmp_path: Path, chromium: str, phases: str
) -> None:
    import json
    import subprocess

    original = json.loads(FIXTURE.read_text())
    wf = _hostile(original)
    failed_pod = next(iter(wf["status"]["nodes"]))
    wf["workersRunner"] = {
        "sandbox": {"mode": PAYLOAD},
        "pods": {
            failed_pod: {"logTail": [PAYLOAD, json.dumps({"level": "error", "message": PAYLOAD})]}
        },
    }
    # hostile phases reach bar text, classes and the loop summary; real ones (Failed) the
    # failure box with its messages and log tails
    nodes = zip(wf["status"]["nodes"].values(), original["status"]["nodes"].values(), strict=True)
    for n, real in nodes:
        n["phase"] = PAYLOAD if phases == "hostile" else real["phase"]
    if phases == "real":
        wf["status"]["phase"] = "Failed"
    src = tmp_path / "wf.json"
    src.write_text(json.dumps(wf))
    out = tmp_path / "page.html"
    proc = _timeline(run_step, str(src), "--store", str(FIXTURE_STORE), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.count("&lt;script&gt;") > 20  # the fields are on the page, as text
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "<body" in dom
    assert "<xpwned" not in dom, "a payload's script ran"
    assert "<title>PWNED</title>" not in dom, "a payload's script ran"


# ------------------------------------------------------------- bad input: exit 2, one line


def _one_line_exit_2(proc: Any, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_timeline_output_that_is_not_a_file(run_step: RunStep, tmp_path: Path, kind: str) -> None:
    import os

    out = tmp_path / "out"
    if kind == "folder":
        out.mkdir()
    else:
        os.mkfifo(out)
    proc = _timeline(run_step, str(FIXTURE), "-o", str(out))
    _one_line_exit_2(proc, str(out))


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_timeline_input_that_is_not_a_file(run_step: RunStep, tmp_path: Path, kind: str) -> None:
    import os

    if kind == "device":
        src = Path("/dev/zero")
    else:
        src = tmp_path / "in.json"
        os.mkfifo(src)
    proc = _timeline(run_step, str(src), "-o", str(tmp_path / "t.html"), timeout=30)
    _one_line_exit_2(proc, str(src))
    assert not (tmp_path / "t.html").exists()


def test_timeline_with_commit_records_holding_anything(run_step: RunStep, tmp_path: Path) -> None:
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(FIXTURE_STORE, store)
    for i, (started, duration) in enumerate(
        [("soon", "long"), (None, [1]), (1740909751.4, "NaN"), (True, {"s": 1})]
    ):
        path = store / "commits" / f"part-{i:05d}.json"
        rec = json.loads(path.read_text())
        rec.update(started=started, duration_s=duration, commit_s="x")
        path.write_text(json.dumps(rec))
    out = tmp_path / "t.html"
    proc = _timeline(run_step, str(FIXTURE), "--store", str(store), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "nan%" not in out.read_text()


def test_timeline_workflow_of_the_wrong_shape(run_step: RunStep, tmp_path: Path) -> None:
    src = tmp_path / "wf.json"
    src.write_text('{"status": {"nodes": {"a": 5, "b": {"inputs": []}}}}')
    _one_line_exit_2(_timeline(run_step, str(src)), "wf.json")


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--rows", "5", "--run-id", "r"], {"WORKERS_TIMEOUT": "inf"}, "WORKERS_TIMEOUT"),
        (["--rows", "5", "--run-id", "r", "--seed", str(2**64)], {}, "--seed"),
        (["--rows", "5", "--run-id", "r\n"], {}, "invalid run id"),
    ],
    ids=["timeout-inf", "seed-over-64-bits", "run-id-newline"],
)
def test_produce_bad_input_is_exit_2(
    run_step: RunStep, tmp_path: Path, args: list[str], env: dict[str, str], fragment: str
) -> None:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", **env}
    _one_line_exit_2(run_step("produce", *args, env=env), fragment)


# ------------------------------------------------------------------- metrics.prom

_METRICS_WORKFLOW = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata:
      name: metrics-names
    spec:
      entrypoint: main
      templates:
        - name: main
          steps:
            - - name: work
                template: work
        - name: work
          container:
            image: busybox:1.36
            command: [sh, -c]
            args: ["true"]
          metrics:
            prometheus:
              - name: fine_seconds
                help: kept
                labels:
                  - {key: status, value: 'a "quoted" \\ value'}
                gauge: {value: "1"}
              - name: injected
                help: a key that would start a line of its own
                labels:
                  - {key: "x\\"} 1\\nevil_metric 666\\n#", value: v}
                gauge: {value: "2"}
              - name: reserved_name
                help: Prometheus' own label
                labels:
                  - {key: __name__, value: other}
                gauge: {value: "3"}
              - name: twice
                help: one key twice
                labels:
                  - {key: a, value: "1"}
                  - {key: a, value: "2"}
                gauge: {value: "4"}
              - name: le_label
                help: the histogram's own label
                labels:
                  - {key: le, value: "7"}
                histogram: {value: "5", buckets: [1, 10]}
              - name: hist
                help: a histogram
                histogram: {value: "5", buckets: [1, 10]}
              - name: hist_count
                help: repeats the histogram's count series
                gauge: {value: "6"}
"""


def test_metrics_prom_takes_only_valid_names(tmp_path: Path, promtool: str) -> None:
    import subprocess
    import textwrap

    from runner_helpers import run_process

    proc, record = run_process(tmp_path, textwrap.dedent(_METRICS_WORKFLOW))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prom = (tmp_path / "runs" / record["metadata"]["name"] / "metrics.prom").read_text()
    check = subprocess.run(
        [promtool, "check", "metrics"], input=prom, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr + prom
    assert "evil_metric" not in prom
    assert 'argo_workflows_fine_seconds{status="a \\"quoted\\" \\\\ value"} 1' in prom
    assert "argo_workflows_hist_count 1" in prom
    for refused in ("injected", "reserved_name", "twice", "le_label", "hist_count "):
        assert f"argo_workflows_{refused}" not in prom.replace("hist_count 1", "")
    warnings = proc.stdout + proc.stderr
    for name in ("injected", "reserved_name", "twice", "le_label", "hist_count"):
        assert f"[{name}]" in warnings, warnings


# ------------------------------------------------------------------- merge and jq

_SURROGATE_CASES = {
    "lone-high": '{"a": 1}\n{"b": 2}\n"\\ud800"\n',
    "high-then-text": '1\n2\n"x\\ud800y"\n',
    "high-in-a-key": '1\n2\n{"\\udbff": 1}\n',
    "two-highs": '1\n2\n["\\ud800\\ud800"]\n',
    "pair": '1\n2\n"\\ud83d\\ude00"\n',
    "escaped-backslash": '1\n2\n"\\\\ud800"\n',
}


@pytest.mark.parametrize("case", sorted(_SURROGATE_CASES))
def test_merge_refuses_what_jq_refuses(
    run_step: RunStep, tmp_path: Path, jq: str, case: str
) -> None:
    import json
    import subprocess

    part = tmp_path / "part-0.json"
    part.write_text(_SURROGATE_CASES[case])
    expected = subprocess.run([jq, "-s", "-c", ".", str(part)], capture_output=True, check=False)
    proc = run_step("merge", "--glob", str(tmp_path / "part-*.json"), "--output", "-")
    if expected.returncode != 0:
        assert case != "pair" and case != "escaped-backslash"  # the fixture itself is right
        _merge_refused(proc, f"{part}: line 3: invalid JSON")
    else:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == json.loads(expected.stdout)


def test_merge_refuses_a_lone_low_surrogate(run_step: RunStep, tmp_path: Path) -> None:
    """jq 1.6 puts U+FFFD in its place; merge copies values as they are, so it refuses one,
    as orjson and simdjson do: a lone surrogate is no character, and UTF-8 cannot hold it."""
    part = tmp_path / "part-0.json"
    part.write_text('1\n2\n"\\udc00"\n')
    proc = run_step("merge", str(part), "--output", "-")
    _merge_refused(proc, "line 3: invalid JSON: a lone surrogate")


def _merge_refused(proc: Any, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    err = error_of(proc)  # the last line, an error, no traceback
    assert err["cause"] == "bad-input" and fragment in err["message"], err
    assert sum('"level":"error"' in line for line in proc.stderr.splitlines()) == 1
    assert proc.stdout == "", "no partial output"


# ------------------------------------------------------------------- run summary on S3


def test_run_summary_names_an_s3_output_and_its_rows(tmp_path: Path, s3_server: Server) -> None:
    import os
    import subprocess
    import sys

    bucket = services.random_name("runs-")
    services.s3_create_bucket(s3_server.endpoint_url, bucket)
    env = {**os.environ, **services.s3_env(s3_server.endpoint_url)}
    env.pop("WORKERS_DATABASE_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers",
            "run",
            "workers-pipeline",
            "--manifests",
            str(ROOT / "manifests"),
            "--runs",
            str(tmp_path / "runs"),
            "-p",
            "rows=2000",
            "-p",
            "rows-per-shard=1000",
            "-p",
            f"store-root=s3://{bucket}/runs",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"merged output: s3://{bucket}/runs/" in out, out
    assert f"merge summary: s3://{bucket}/runs/" in out, out
    assert "s3:/" + bucket not in out
    assert "rows:          merged 2,000 == produced 2,000 in 2 shards" in out, out
