"""What a user meets first when a step fails: each failed attempt's own reason, live and in the
summary, and a headline naming the step that failed.

The step is the real ``python -m workers.produce`` pointed at a PostgreSQL port nothing listens
on (a wrong port in the database URL): it exits 75 (transient) and the template retries it, as
the pipeline's own templates do, with a short backoff here. Each run is ``python -m workers
run`` as its own process.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from runner_helpers import run_process

PASSWORD = "pw-Never-Shown-3e1d"

WORKFLOW = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata:
      name: refused
    spec:
      entrypoint: main
      templates:
        - name: main
          dag:
            tasks:
              - name: plan
                template: plan
              - name: shard
                depends: plan
                template: ok
              - name: merge
                depends: shard
                template: ok
        - name: plan
          steps:
            - - name: produce
                template: produce
        - name: produce
          retryStrategy:
            limit: 2
            retryPolicy: Always
            expression: asInt(lastRetry.exitCode) == 75
            backoff: {duration: "1s", factor: "1"}
          container:
            image: workers
            command: [python, -m, workers.produce, --rows, "10"]
            env:
              - name: WORKERS_DATABASE_URL
                valueFrom:
                  secretKeyRef: {name: workers-database, key: url}
        - name: ok
          container:
            image: busybox
            command: ["true"]
    """


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_failed_attempt_shows_its_own_error_and_the_headline_names_the_step(
    tmp_path: Path,
) -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{_closed_port()}/app"
    proc, rec = run_process(
        tmp_path,
        WORKFLOW,
        "--sandbox",
        "remap",
        env={"WORKERS_DATABASE_URL": url},
    )
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 1, shown
    assert PASSWORD not in shown
    # live: every retried attempt's line carries the step's own reason
    retries = [line for line in proc.stderr.splitlines() if "RETRY produce" in line]
    assert len(retries) == 2, proc.stderr
    for line in retries:
        assert "exit 75" in line and "Connection refused" in line, line
    final = next(line for line in proc.stderr.splitlines() if "FAIL produce" in line)
    assert "Connection refused" in final, final
    # summary: the headline names produce and why, not the merge omitted after it
    headline = proc.stdout.splitlines()[0]
    assert headline.startswith("workflow refused: Failed: step produce failed after 3 attempts"), (
        headline
    )
    assert "(exit code 75)" in headline and "Connection refused" in headline, headline
    assert "merge" not in headline
    for n in (1, 2, 3):
        assert any(
            line.strip().startswith(f"attempt {n}: main: Error (exit code 75)")
            and "Connection refused" in line
            for line in proc.stdout.splitlines()
        ), proc.stdout
    # run.json keeps Argo's own messages
    produce = next(n for n in rec["status"]["nodes"].values() if n["displayName"] == "produce")
    assert produce["message"] == "No more retries left"


def test_an_informational_log_line_is_never_shown_as_the_reason(tmp_path: Path) -> None:
    script = (
        """echo '{"level": "error", "message": "disk full"}' >&2; """
        """echo '{"level": "info", "message": "cleaning up"}' >&2; exit 1"""
    )
    proc, _ = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: quiet
        spec:
          entrypoint: main
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c, {json.dumps(script)}]
        """,
        "--sandbox",
        "remap",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    headline = proc.stdout.splitlines()[0]
    assert headline == "workflow quiet: Failed: step quiet failed (exit code 1): disk full", (
        headline
    )
    assert "cleaning up" not in headline
