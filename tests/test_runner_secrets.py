"""Secrets a workflow's pods get never reach what ``workers run`` prints, ``-v`` included, and
``.env`` is read by python-dotenv's rules.

The pods here print their secrets (one from the environment, one from ``.env``, and the
database URL a step connects with) the way a debugging user's processor would; each run is
``python -m workers run -v`` as its own process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runner_helpers import run_process

from argo_local.model.secretrefs import read_dotenv
from argo_local.pods import sandbox

# as tests/test_runner_escape.py: under CI a bwrap that cannot run fails, never drops its cases
MODES = ["remap"] + (["bwrap"] if sandbox.bwrap_works()[0] or os.environ.get("CI") else [])

DB_PASSWORD = "pg-Secret-91f3e7"
TOKEN = "tok-from-env-55c1a9"
DOTENV_TOKEN = "tok-from-dotenv-2be870"

LEAKY = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata:
      name: leaky
    spec:
      entrypoint: main
      templates:
        - name: main
          container:
            image: python
            command: [python, -c]
            args:
              - |
                import json, os, sys
                url = os.environ["WORKERS_DATABASE_URL"]
                print("connecting to", url, file=sys.stderr)
                print("token", os.environ["TOKEN"], "and", os.environ["OTHER"], file=sys.stderr)
                print(json.dumps({"msg": "processor saw " + url}), file=sys.stderr)
                print(os.environ["TOKEN"])
            env:
              - name: WORKERS_DATABASE_URL
                valueFrom:
                  secretKeyRef: {name: db, key: url}
              - name: TOKEN
                valueFrom:
                  secretKeyRef: {name: api, key: token}
              - name: OTHER
                valueFrom:
                  secretKeyRef: {name: other, key: token}
    """


@pytest.mark.parametrize("mode", MODES)
def test_verbose_output_masks_every_secret(tmp_path: Path, mode: str) -> None:
    (tmp_path / ".env").write_text(f'OTHER_TOKEN="{DOTENV_TOKEN}" # from the team vault\n')
    proc, rec = run_process(
        tmp_path,
        LEAKY,
        "-v",
        "--sandbox",
        mode,
        env={
            "DB_URL": f"postgresql://app:{DB_PASSWORD}@127.0.0.1:1/app",
            "API_TOKEN": TOKEN,
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = proc.stdout + proc.stderr
    # the pod really printed them, and -v streamed those lines (masked)
    assert "leaky | connecting to ***\n" in proc.stderr, shown
    assert "leaky | token *** and ***" in proc.stderr, shown
    for secret in (DB_PASSWORD, TOKEN, DOTENV_TOKEN):
        assert secret not in shown
    for written in (tmp_path / "runs").rglob("*"):
        if written.suffix in (".json", ".html", ".prom"):
            text = written.read_text()
            for secret in (DB_PASSWORD, TOKEN, DOTENV_TOKEN):
                assert secret not in text, written
    assert rec["status"]["phase"] == "Succeeded"


# python-dotenv's own rules (its README, "File format"), one row per rule.
DOTENV_CASES = [
    ("A=plain", {"A": "plain"}),
    ("export A=exported", {"A": "exported"}),
    ('A="x y" # note', {"A": "x y"}),
    ("A='x y' # note", {"A": "x y"}),
    ("A=x y # note", {"A": "x y"}),
    ("A=x#not-a-comment", {"A": "x#not-a-comment"}),
    ('A="with # hash"', {"A": "with # hash"}),
    ("A='single $NOT \\n raw'", {"A": "single $NOT \\n raw"}),
    ('A="tab\\tnew\\nline \\"quoted\\""', {"A": 'tab\tnew\nline "quoted"'}),
    ("A=", {"A": ""}),
    ('A=""', {"A": ""}),
    ('A="first\nsecond"', {"A": "first\nsecond"}),
    ("# a comment\n\nB=2", {"B": "2"}),
    ("  A  =  spaced  ", {"A": "spaced"}),
    ("A=1\nA=2", {"A": "2"}),
    ("NOVALUE", {}),
]


@pytest.mark.parametrize(("text", "expected"), DOTENV_CASES, ids=[c[0] for c in DOTENV_CASES])
def test_dotenv_follows_python_dotenv(tmp_path: Path, text: str, expected: dict[str, str]) -> None:
    path = tmp_path / ".env"
    path.write_text(text + "\n")
    assert read_dotenv(path) == expected


def test_a_quoted_dotenv_secret_with_a_comment_reaches_the_pod_whole(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('API_TOKEN="x y-quoted-secret" # note\n')
    proc, rec = run_process(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: quoted
        spec:
          entrypoint: main
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c, 'test "$TOKEN" = "x y-quoted-secret"']
                env:
                  - name: TOKEN
                    valueFrom:
                      secretKeyRef: {name: api, key: token}
        """,
        "--sandbox",
        "remap",
        env={"API_TOKEN": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rec["status"]["phase"] == "Succeeded"
