"""Under CI=true a test that cannot run fails, never skips nor vanishes at collection.

A green CI must mean the suite ran: a missing tool, a bubblewrap that cannot create namespaces
or a machine where a tmpfs cannot be mounted turns into a failure that names what is missing
(``conftest.unavailable``); outside CI the same test is skipped with that reason. The first test
holds every module to that one helper; the others run pytest as a child process on the real
test modules with the tool hidden from PATH (or without root), and read its JUnit report.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import unavailable

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# pytest's ways of not running a test; only conftest.unavailable may use them.
SKIPPERS = {"skip", "skipif", "importorskip", "xfail"}


def _skip_sites(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    allowed: set[int] = set()
    if path.name == "conftest.py":
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "unavailable":
                allowed |= {id(n) for n in ast.walk(node)}
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in SKIPPERS and id(node) not in allowed
    ]


def test_no_test_skips_itself_except_through_unavailable() -> None:
    files = [p for p in TESTS.rglob("*.py") if "argo_examples" not in p.parts]
    assert len(files) > 40
    assert [site for p in sorted(files) for site in _skip_sites(p)] == []


def _pytest(
    tmp_path: Path, *args: str, ci: bool, path: str, user: int | None = None
) -> dict[str, tuple[str, str]]:
    """Run pytest on ``args`` in a child with ``PATH=path``: {test id: (outcome, message)}."""
    report = tmp_path / f"report-{ci}.xml"
    base = tmp_path / f"base-{ci}"
    base.mkdir(mode=0o777)
    base.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=path, HOME=str(base), PYTHONDONTWRITEBYTECODE="1")
    if ci:
        env["CI"] = "true"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    cmd += ["--basetemp", str(base / "t"), "--junitxml", str(report), *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        found = [c for c in case if c.tag in ("failure", "error", "skipped")]
        outcomes[name] = (found[0].tag, found[0].get("message", "")) if found else ("passed", "")
    want_code = 1 if any(o in ("failure", "error") for o, _ in outcomes.values()) else 0
    assert proc.returncode == want_code, proc.stdout[-3000:]
    return outcomes


def _hidden_path(tmp_path: Path) -> str:
    """A PATH with none of this machine's tools: an empty folder."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


RUNNER_MODULES = [
    "tests/test_runner_workdir.py",
    "tests/test_runner_semantics.py",
    "tests/test_runner_lifetimes.py",
    "tests/test_runner_sandbox.py",
    "tests/test_runner_artifacts.py",
]


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "local"])
def test_bubblewrap_cases_fail_under_ci_where_bwrap_cannot_run(tmp_path: Path, ci: bool) -> None:
    """Every bubblewrap case of the runner tests stays collected without a working bwrap; under
    CI=true each fails naming why, elsewhere each is skipped with that reason."""
    got = _pytest(tmp_path, "-m", "bwrap", *RUNNER_MODULES, ci=ci, path=_hidden_path(tmp_path))
    assert len(got) >= 15, got  # each module's bwrap cases, none dropped at collection
    assert {o for o, _ in got.values()} == ({"error"} if ci else {"skipped"}), got
    assert all("--sandbox bwrap: bwrap not installed" in m for _, m in got.values()), got
    if ci:
        assert all("unavailable under CI=true" in m for _, m in got.values()), got


KUBECTL_TESTS = [
    "tests/test_reliability_security.py::test_every_pod_template_meets_the_restricted_pod_security_standard",
    "tests/test_observability.py::test_kustomization_renders_the_rule_and_the_dashboard_configmap",
    "tests/test_manifests.py::test_rendered_base_matches_the_files",
]


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "local"])
def test_pod_security_and_manifest_tests_fail_under_ci_without_kubectl(
    tmp_path: Path, ci: bool
) -> None:
    got = _pytest(tmp_path, *KUBECTL_TESTS, ci=ci, path=_hidden_path(tmp_path))
    assert len(got) == len(KUBECTL_TESTS), got
    # in a fixture (an error) or in the test's body (a failure): either way not a pass
    assert {o for o, _ in got.values()} <= ({"error", "failure"} if ci else {"skipped"}), got
    assert all("no kubectl (or kustomize) on PATH" in m for _, m in got.values()), got


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "local"])
def test_tmpfs_case_fails_under_ci_without_root(tmp_path: Path, ci: bool) -> None:
    """The full-disk case mounts a tmpfs, which needs root: run as nobody, it fails under
    CI=true instead of skipping."""
    if os.geteuid() != 0:
        unavailable("needs root to run a child pytest as another user")
    test = "tests/test_reliability_kills.py::test_full_local_disk_mid_write_is_transient_and_leaves_nothing"
    # pytest's own tmp_path lies in a folder only root may enter
    with tempfile.TemporaryDirectory(prefix="ci-honesty-") as shared:
        Path(shared).chmod(0o777)
        got = _pytest(Path(shared), test, ci=ci, path=os.environ["PATH"], user=65534)
    ((outcome, message),) = got.values()
    assert outcome == ("failure" if ci else "skipped"), got
    assert "needs root to mount a small tmpfs" in message
