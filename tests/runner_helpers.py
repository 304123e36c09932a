"""Running workflows through ``workers run`` in tests: in this process (``main``) or as a
child process, with the exit code and the run's ``run.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from workers.runadapter import main

# Both sandboxes, always collected. Where bubblewrap cannot create namespaces the bwrap case is
# not dropped: its mark makes conftest fail it under CI=true (skip it elsewhere), saying why, as
# `workers run` itself refuses to fall back from bubblewrap to remap silently.
MODES = ["remap", pytest.param("bwrap", marks=pytest.mark.bwrap)]


def newest_record(runs: Path, before: set[Path] | None = None) -> dict[str, Any]:
    """The run.json a run left in ``runs`` (the newest one not in ``before``), else {}."""
    found = set(runs.glob("*/run.json")) if runs.exists() else set()
    new = sorted(found - (before or set()), key=lambda p: p.stat().st_mtime)
    return json.loads(new[-1].read_text()) if new else {}


def run_file(path: Path, runs: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``workers run PATH --runs RUNS ARGS`` in this process: the exit code and run.json."""
    before = set(runs.glob("*/run.json")) if runs.exists() else set()
    code = main([str(path), "--runs", str(runs), *args])
    return code, newest_record(runs, before)


def write_yaml(tmp_path: Path, body: str, name: str = "wf.yaml") -> Path:
    """``body`` dedented into ``tmp_path/name``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run_yaml(
    tmp_path: Path, body: str, *args: str, name: str = "wf.yaml"
) -> tuple[int, dict[str, Any]]:
    """Write ``body`` (YAML, dedented) and run it in this process, runs in ``tmp_path/runs``."""
    return run_file(write_yaml(tmp_path, body, name), tmp_path / "runs", *args)


def run_process(
    tmp_path: Path, body: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Write ``body`` and run it as ``python -m workers run`` in a child process (its own
    environment, ``cwd`` ``tmp_path``): the finished process and run.json."""
    path = write_yaml(tmp_path, body)
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "run", str(path), "--runs", str(runs), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return proc, newest_record(runs)


def pod_node(record: dict[str, Any], display: str) -> dict[str, Any]:
    """The node of ``record`` (a run.json) whose displayName is ``display``."""
    return next(n for n in record["status"]["nodes"].values() if n["displayName"] == display)


def one_pod_workflow(
    script: str,
    path: str,
    *,
    step: str = "write",
    working: str | None = None,
    image: str = "busybox:1.36",
) -> str:
    """A Workflow of one step whose pod runs ``sh -c script`` and outputs the parameter
    ``value`` read from ``path`` in the pod (``workingDir`` set when ``working`` is)."""
    wd = f"\n                workingDir: {working}" if working else ""
    return f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: one-pod
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: {step}
                    template: {step}
            - name: {step}
              container:
                image: {image}{wd}
                command: [sh, -c]
                args: [{json.dumps(script)}]
              outputs:
                parameters:
                  - name: value
                    valueFrom:
                      path: {path}
        """
