"""tools/argo_corpus.py on a tiny corpus of our own, and the argosay/cowsay shims.

The corpus imitates an argo-workflows checkout (examples/, test/e2e/functional/ and a Go
test in test/e2e/), written here in our own words; the script runs as a real process and
every file through a real ``python -m workers run``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "argo_corpus.py"
SHIMS = ROOT / "tools" / "argo_shims.py"

GREET = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: greet-
spec:
  entrypoint: say
  templates:
    - name: say
      container:
        image: argoproj/argosay:v2
        args: [echo, good morning, /tmp/said.txt]
      outputs:
        parameters:
          - name: said
            valueFrom: {path: /tmp/said.txt}
"""

MUST_FAIL = """\
# Ends Failed on purpose: tiny_test.go waits for ToBeFailed.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: must-fail-
spec:
  entrypoint: stop
  templates:
    - name: stop
      container:
        image: argoproj/argosay:v2
        args: [exit, "3"]
"""

GO_TEST = """\
package e2e

func (s *TinySuite) TestMustFail() {
	s.Given().
		Workflow("@functional/must-fail.yaml").
		When().
		SubmitWorkflow().
		WaitForWorkflow(fixtures.ToBeFailed)
}

func (s *TinySuite) TestStopped() {
	s.Given().
		Workflow("@functional/stopped.yaml").
		When().
		SubmitWorkflow().
		ShutdownWorkflow(wfv1.ShutdownStrategyStop).
		WaitForWorkflow(fixtures.ToBeFailed)
}
"""

STOPPED = MUST_FAIL.replace("must-fail-", "stopped-")

# A field only a cluster can honour: the runner refuses it before running.
KUBECTL = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: make-config-
spec:
  entrypoint: apply
  templates:
    - name: apply
      resource:
        action: create
        manifest: |
          apiVersion: v1
          kind: ConfigMap
          metadata: {generateName: tiny-}
"""

UNTESTED = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: needs-a-cluster-
  labels:
    workflows.argoproj.io/no-test: "environment"
spec:
  entrypoint: main
  templates:
    - name: main
      container:
        image: busybox
        command: [sh, -c, "exit 0"]
"""

# Expected to succeed (no Go test names it) but fails: "wrong".
BROKEN = MUST_FAIL.replace("must-fail-", "broken-").replace("# Ends Failed on purpose", "# Fails")

LIBRARY = """\
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: tiny-library
spec:
  templates:
    - name: shout
      inputs:
        parameters: [{name: word}]
      container:
        image: argoproj/argosay:v2
        args: [echo, "{{inputs.parameters.word}}"]
"""

USES_LIBRARY = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: uses-library-
spec:
  entrypoint: main
  templates:
    - name: main
      steps:
        - - name: call
            templateRef: {name: tiny-library, template: shout}
            arguments:
              parameters: [{name: word, value: hey}]
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: tiny-settings}
data: {colour: blue}
"""


def write_corpus(root: Path) -> Path:
    files = {
        "examples/greet.yaml": GREET,
        "examples/make-config.yaml": KUBECTL,
        "examples/needs-a-cluster.yaml": UNTESTED,
        "examples/templates/tiny-library.yaml": LIBRARY,
        "examples/templates/uses-library.yaml": USES_LIBRARY,
        "examples/settings.yaml": CONFIGMAP,
        "test/e2e/functional/must-fail.yaml": MUST_FAIL,
        "test/e2e/functional/stopped.yaml": STOPPED,
        "test/e2e/functional/broken.yaml": BROKEN,
        "test/e2e/tiny_test.go": GO_TEST,
        # the one scale test the script leaves out unless --heavy (our stand-in, not Argo's)
        "test/e2e/functional/loop-sequence-many-long-pods.yaml": GREET,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def corpus(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    root = write_corpus(tmp_path / "argo")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--json", str(out), "--verbose", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    results = json.loads(out.read_text()) if out.exists() else None
    return proc, results


def test_classifies_a_tiny_corpus(tmp_path: Path) -> None:
    """Expectations as Argo's tests state them: examples_test.go expects every unlabelled
    example Workflow to succeed; a functional file's Go test names its phase (ToBeFailed);
    ``workflows.argoproj.io/no-test`` workflows are not run by Argo's suite; a test that shuts
    the workflow down has no plain-run result; templates a file references are a library."""
    proc, results = corpus(tmp_path)
    assert proc.returncode == 0, proc.stderr
    by = {r["file"]: r for r in results}
    assert by["examples/greet.yaml"]["cls"] == "as Argo"
    assert by["examples/greet.yaml"]["phase"] == "Succeeded"
    assert by["examples/templates/uses-library.yaml"]["cls"] == "as Argo"
    assert by["examples/templates/tiny-library.yaml"]["cls"] == "library"
    assert by["test/e2e/functional/must-fail.yaml"]["cls"] == "as Argo"
    assert by["test/e2e/functional/must-fail.yaml"]["phase"] == "Failed"
    assert "tiny_test.go TestMustFail" in by["test/e2e/functional/must-fail.yaml"]["expectation"]
    rejected = by["examples/make-config.yaml"]
    assert rejected["cls"] == "rejected"
    assert rejected["exit_code"] == 2
    assert "resource" in rejected["reason"] and "\n" not in rejected["reason"]
    assert rejected["group"].startswith("unsupported field resource")
    assert by["examples/needs-a-cluster.yaml"]["cls"] == "not tested by Argo"
    assert by["examples/needs-a-cluster.yaml"]["phase"] is None  # not run
    assert by["test/e2e/functional/stopped.yaml"]["cls"] == "interactive"
    assert by["examples/settings.yaml"]["cls"] == "not a workflow"
    wrong = by["test/e2e/functional/broken.yaml"]
    assert wrong["cls"] == "wrong"
    assert wrong["phase"] == "Failed" and wrong["expected"] == ["Succeeded"]

    table = summary_rows(proc.stdout)
    assert table["as Argo"] == {"examples": 2, "test/e2e/functional": 1, "total": 3}
    assert table["rejected"]["total"] == 1
    assert table["wrong"]["total"] == 1
    assert table["crash"]["total"] == 0
    assert table["not tested by Argo"]["total"] == 1
    assert table["interactive"]["total"] == 1
    assert table["library"]["total"] == 1
    assert table["not a workflow"]["total"] == 1
    assert table["too heavy"]["total"] == 1
    assert table["files"]["total"] == len(results) == 10
    # the rejection grouped under its cause, with its count
    assert re.search(r"^\s+1\s+resource templates", proc.stdout, re.M)
    assert "test/e2e/functional/broken.yaml: Failed, Argo: Succeeded" in proc.stdout
    # the headline figure: every file run, tested or not
    assert (
        "behave as Argo documents: 3 of 5 files run (3 Argo-tested as Argo + 0 untested as "
        "expected); 1 rejected before running, 1 wrong, 0 crash"
    ) in proc.stdout


def summary_rows(text: str) -> dict[str, dict[str, int]]:
    """The class table: each row's count per folder column and the total."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("class"))
    columns = header.split()[1:]
    rows = {}
    for line in lines[lines.index(header) + 1 :]:
        match = re.match(r"^([a-zA-Z][a-zA-Z ]*?)\s+((?:\d+\s*)+)$", line)
        if match:
            rows[match.group(1)] = dict(zip(columns, map(int, match.group(2).split()), strict=True))
        if line.startswith("files"):
            break
    return rows


def test_target_and_only(tmp_path: Path) -> None:
    """--target N exits 1 when a file ends wrong even if N are as Argo; --only narrows the
    corpus, and without a wrong or crash file the same target passes."""
    proc, _ = corpus(tmp_path, "--target", "1")
    assert proc.returncode == 1
    proc, results = corpus(tmp_path, "--target", "1", "--only", "greet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["file"] for r in results] == ["examples/greet.yaml"]
    proc, _ = corpus(tmp_path, "--target", "2", "--only", "greet")
    assert proc.returncode == 1


def test_run_untested_keeps_the_class(tmp_path: Path) -> None:
    """--run-untested runs no-test files too; they stay "not tested by Argo" and what the run
    gave is reported on its own (here: it succeeds)."""
    proc, results = corpus(tmp_path, "--run-untested", "--only", "needs-a-cluster")
    assert proc.returncode == 0, proc.stderr
    (result,) = results
    assert result["cls"] == "not tested by Argo"
    assert result["local"] == "as Argo" and result["phase"] == "Succeeded"
    assert "not tested by Argo, run anyway (1 files" in proc.stdout


def test_a_file_past_its_timeout_is_stopped_and_wrong(tmp_path: Path) -> None:
    """A workflow still running after --timeout counts as wrong (hung); the runner is
    interrupted as Ctrl-C would, so it stops its pods and still writes run.json."""
    slow = tmp_path / "argo" / "examples" / "slow.yaml"
    slow.parent.mkdir(parents=True)
    slow.write_text(
        GREET.replace("args: [echo, good morning, /tmp/said.txt]", "args: [sleep, 60s]")
    )
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tmp_path / "argo"),
            "--timeout",
            "3",
            "--json",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 40
    (result,) = json.loads((tmp_path / "out.json").read_text())
    assert result["cls"] == "wrong"
    assert result["reason"] == "still running after 3s (stopped)"
    assert result["phase"] == "Failed"  # from the run.json the interrupted runner wrote


ASH = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ash-
spec:
  entrypoint: main
  templates:
    - name: main
      container:
        image: alpine:3.23
        command: [sh, -c, 'r=${RANDOM}; [[ -n "$r" ]]']
"""


def test_alpine_pods_get_busybox_s_shell(tmp_path: Path) -> None:
    """alpine's sh is busybox's ash ($RANDOM, ``[[``): the script gives alpine pods
    busybox's applets through the runner's --image-path, so the file ends as Argo."""
    if shutil.which("busybox") is None:
        unavailable("busybox (Debian package busybox) is not installed")
    path = tmp_path / "argo" / "examples" / "ash.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(ASH)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "argo"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(out.read_text())
    assert (result["cls"], result["phase"]) == ("as Argo", "Succeeded"), result["reason"]


def test_plan_without_busybox_and_with_the_file_s_own_text(tmp_path: Path) -> None:
    """Without busybox a file whose pods run an alpine image is not run (never run with
    another shell); argo_expect.OWN_TEXT replaces a label's default with what the file itself
    says, and argo_expect.DURATIONS keeps a file longer than LONG_SECONDS for --long."""
    sys.path.insert(0, str(SCRIPT.parent))
    import argo_corpus
    import argo_expect

    root = tmp_path / "argo"
    for rel, text in {
        "examples/ash.yaml": ASH,
        "examples/continue-on-fail.yaml": UNTESTED,
        "examples/forever.yaml": UNTESTED,
        "examples/parallelism-nested-workflow.yaml": GREET,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    by = {i.rel: i for i in argo_corpus.plan(root, 120.0, busybox=False)}
    assert by["examples/ash.yaml"].cls == "needs busybox"
    assert "alpine:3.23" in by["examples/ash.yaml"].note
    own = by["examples/continue-on-fail.yaml"].expectation
    assert own == argo_expect.OWN_TEXT["examples/continue-on-fail.yaml"]
    assert by["examples/forever.yaml"].cls == "too long"
    assert by["examples/parallelism-nested-workflow.yaml"].timeout > 120.0
    again = {i.rel: i for i in argo_corpus.plan(root, 120.0, long=True)}
    assert again["examples/forever.yaml"].cls == "not tested by Argo"
    assert again["examples/forever.yaml"].timeout > 1000.0


def test_not_a_checkout_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "no examples/ or test/e2e/functional/" in proc.stderr


# ------------------------------------------------------------------ the shims


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bin")
    subprocess.run([sys.executable, str(SHIMS), "--install", str(folder)], check=True)
    return folder


def sh(shims: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(shims / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=30, cwd=cwd
    )


def test_argosay_echo_and_cat(shims: Path, tmp_path: Path) -> None:
    """argosay v2 (test/e2e/images/argosay/v2): no command and ``echo`` alone say "hello argo";
    ``echo TEXT`` prints it; ``echo TEXT FILE`` writes it to FILE, creating the folder;
    ``cat FILE`` prints the file."""
    assert sh(shims, "argosay").stdout == "hello argo\n"
    assert sh(shims, "argosay", "echo").stdout == "hello argo\n"
    assert sh(shims, "argosay", "echo", "a b").stdout == "a b\n"
    target = tmp_path / "deep" / "folder" / "out.txt"
    done = sh(shims, "argosay", "echo", "stored", str(target))
    assert done.returncode == 0 and done.stdout == ""
    assert target.read_text() == "stored\n"
    assert sh(shims, "argosay", "cat", str(target)).stdout == "stored\n"
    assert sh(shims, "argosay", "echo", "a", "b", "c").returncode == 1


def test_argosay_assert_exit_sleep_sh(shims: Path, tmp_path: Path) -> None:
    """``assert_contains FILE TEXT`` succeeds only when a line holds TEXT; ``exit N`` exits N
    (0 without it); ``sleep D`` takes Go-style units; ``sh FILE`` runs a script; anything
    else exits 1."""
    notes = tmp_path / "notes.txt"
    notes.write_text("first line\nthe needle here\n")
    found = sh(shims, "argosay", "assert_contains", str(notes), "needle")
    assert found.returncode == 0 and found.stdout == "the needle here\n"
    assert sh(shims, "argosay", "assert_contains", str(notes), "absent").returncode == 1
    assert sh(shims, "argosay", "assert_contains", str(tmp_path / "none"), "x").returncode != 0
    assert sh(shims, "argosay", "exit").returncode == 0
    assert sh(shims, "argosay", "exit", "7").returncode == 7
    started = time.monotonic()
    assert sh(shims, "argosay", "sleep", "0.3s").returncode == 0
    assert time.monotonic() - started >= 0.3
    script = tmp_path / "run.sh"
    script.write_text("echo from script; exit 4\n")
    ran = sh(shims, "argosay", "sh", str(script))
    assert (ran.returncode, ran.stdout) == (4, "from script\n")
    assert sh(shims, "argosay", "dance").returncode == 1


def test_cowsay_says_the_text(shims: Path) -> None:
    """``cowsay TEXT`` (docker/whalesay's documented use) prints TEXT in a bubble."""
    said = sh(shims, "cowsay", "hello", "world")
    assert said.returncode == 0
    assert "< hello world >" in said.stdout
    assert said.stdout.count("\n") >= 5


TWO_SUBMISSIONS = """\
package e2e

func (s *TinySuite) TestNoPermission() {
	s.Given().
		Workflow("@expectedfailures/serviceaccount-insufficient-permissions.yaml").
		When().
		SubmitWorkflow().
		WaitForWorkflow(fixtures.ToBeErrored)
}

func (s *TinySuite) TestTwoFiles() {
	s.Run("First", func() {
		s.Given().
			Workflow("@testdata/greet-again.yaml").
			When().
			SubmitWorkflow().
			WaitForWorkflow(fixtures.ToBeSucceeded)
	})
	s.Run("Second", func() {
		s.Given().
			Workflow("@expectedfailures/must-fail-again.yaml").
			When().
			SubmitWorkflow().
			WaitForWorkflow(fixtures.ToBeFailed)
	})
}
"""

# Hosts under .invalid never resolve (RFC 2606): no machine reaches them.
CALLS_AWAY = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: calls-away-
spec:
  entrypoint: call
  templates:
    - name: call
      http:
        url: https://argo-corpus-test.invalid/status
"""

LOOKS_UP = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: looks-up-
spec:
  entrypoint: lookup
  hostAliases: [{ip: 127.0.0.1, hostnames: [argo-corpus-test.invalid]}]
  templates:
    - name: lookup
      container:
        image: alpine:3.23
        command: [sh, -c, "nslookup argo-corpus-test.invalid"]
"""


def test_e2e_inputs_and_hosts_out_of_reach(tmp_path: Path) -> None:
    """Files of test/e2e/testdata, expectedfailures and smoke count where a Go test submits
    them, each judged by the wait after its own submission (one test may submit several:
    artifacts_test.go TestMainLog waits ToBeSucceeded for testdata/basic-workflow.yaml, then
    ToBeFailed for expectedfailures/timeouts-step.yaml); a file there no test submits is not
    run. A file whose http template calls, or whose pod nslookups (a DNS query: busybox's
    nslookup never reads /etc/hosts), a host this machine cannot reach is "needs the
    network", not run."""
    sys.path.insert(0, str(SCRIPT.parent))
    import argo_corpus

    root = tmp_path / "argo"
    for rel, text in {
        "test/e2e/testdata/greet-again.yaml": GREET,
        "test/e2e/expectedfailures/must-fail-again.yaml": MUST_FAIL,
        "test/e2e/testdata/nobody-submits.yaml": GREET,
        "test/e2e/two_test.go": TWO_SUBMISSIONS,
        "examples/calls-away.yaml": CALLS_AWAY,
        "test/e2e/functional/looks-up.yaml": LOOKS_UP,
        # argo_expect.CLUSTER_ONLY: an outcome only Kubernetes RBAC decides
        "test/e2e/expectedfailures/serviceaccount-insufficient-permissions.yaml": GREET,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    by = {i.rel: i for i in argo_corpus.plan(root, 120.0)}
    again = by["test/e2e/testdata/greet-again.yaml"]
    assert again.cls is None and again.expectation is not None
    assert again.expectation.phases == ("Succeeded",)
    assert "two_test.go TestTwoFiles: ToBeSucceeded" in again.expectation.reason
    failing = by["test/e2e/expectedfailures/must-fail-again.yaml"].expectation
    assert failing is not None and failing.phases == ("Failed",)
    assert by["test/e2e/testdata/nobody-submits.yaml"].cls == "not tested by Argo"
    assert by["test/e2e/testdata/nobody-submits.yaml"].expectation is None
    rbac = by["test/e2e/expectedfailures/serviceaccount-insufficient-permissions.yaml"]
    assert rbac.cls == "needs a cluster" and "RBAC" in rbac.note
    for rel in ("examples/calls-away.yaml", "test/e2e/functional/looks-up.yaml"):
        assert by[rel].cls == "needs the network", rel
        assert "argo-corpus-test.invalid" in by[rel].note
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--json", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    results = {r["file"]: r for r in json.loads((tmp_path / "out.json").read_text())}
    assert results["test/e2e/testdata/greet-again.yaml"]["cls"] == "as Argo"
    assert results["test/e2e/expectedfailures/must-fail-again.yaml"]["cls"] == "as Argo"
    assert results["examples/calls-away.yaml"]["phase"] is None  # not run
