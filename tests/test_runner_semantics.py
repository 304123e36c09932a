"""The local runner against Argo's documented semantics, with workflows written from Argo's docs.

Each test runs a YAML from tests/argo_examples/ through ``python -m workers run``
(in-process) and reads the run log it writes; none depends on manifests/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import MODES, run_file

from argo_local.expr import exprlang
from argo_local.expr.depends import ExprError
from workers.timeline import parameters

EXAMPLES = Path(__file__).parent / "argo_examples"


def run(
    tmp_path: Path, name: str, *args: str, sandbox_mode: str = "auto"
) -> tuple[int, dict[str, Any]]:
    return run_file(EXAMPLES / name, tmp_path / "runs", "--sandbox", sandbox_mode, *args)


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Nodes by display name (loop items keep their ``(i:item)`` suffix)."""
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def root_of(record: dict[str, Any]) -> dict[str, Any]:
    """The workflow's own node: Argo gives it the workflow's name as its id."""
    return dict(record["status"]["nodes"][record["metadata"]["name"]])


def attempts(record: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """A Retry node's attempt pods in order, each with the runner's side record of its process."""
    side = record["workersRunner"]["pods"]
    pods = [record["status"]["nodes"][c] for c in node.get("children") or []]
    pods = [p for p in pods if p["type"] == "Pod" and p["name"].startswith(node["name"] + "(")]
    return [{**p, **side[p["id"]]} for p in sorted(pods, key=lambda p: side[p["id"]]["attempt"])]


def outputs(node: dict[str, Any]) -> dict[str, Any]:
    return parameters(node, "outputs")


@pytest.mark.parametrize("mode", MODES)
def test_loops_and_aggregation_shapes(tmp_path: Path, mode: str) -> None:
    code, rec = run(tmp_path, "loops-aggregate.yaml", sandbox_mode=mode)
    assert code == 0, rec
    by = nodes(rec)
    assert outputs(by["per-item"])["tag"] == '["debian-12","alpine-3.20"]'
    assert by["seq"]["outputs"]["result"] == "[4,9,16]"  # count 3 from 2: 2, 3, 4 squared
    assert json.loads(by["fmt"]["outputs"]["result"]) == ["node-05", "node-04", "node-03"]
    assert json.loads(by["words"]["outputs"]["result"]) == ["hello a", "hello b", "hello c"]
    assert by["words(1:b)"]["phase"] == "Succeeded"
    assert parameters(by["per-item(0:os:debian,version:12)"]) == {
        "os": "debian",
        "version": "12",
    }
    collect = by["collect"]["outputs"]["result"]
    assert 'tags=["debian-12","alpine-3.20"]' in collect
    assert "squares=[4,9,16]" in collect
    root = root_of(rec)
    assert outputs(root)["summary"] == collect


def test_empty_withparam_skips_the_step(tmp_path: Path) -> None:
    code, rec = run(tmp_path, "empty-withparam.yaml")
    assert code == 0
    by = nodes(rec)
    assert by["each"]["phase"] == "Skipped"
    assert by["after"]["outputs"]["result"] == "after Skipped"
    assert rec["status"]["phase"] == "Succeeded"


def test_retries_until_success_with_backoff(tmp_path: Path) -> None:
    t0 = time.monotonic()
    code, rec = run(tmp_path, "retry.yaml")
    assert code == 0
    node = root_of(rec)
    assert node["type"] == "Retry"  # as Argo shows a retried template: one Pod per attempt
    tries = attempts(rec, node)
    assert [a["displayName"] for a in tries] == [f"{node['displayName']}({i})" for i in range(3)]
    assert [a["exitCode"] for a in tries] == [75, 75, 0]
    assert [a["outputs"]["exitCode"] for a in tries] == ["75", "75", "0"]
    assert [a["phase"] for a in tries] == ["Failed", "Failed", "Succeeded"]
    assert [a["backoff_s"] for a in tries] == [0.0, 0.2, 0.4]
    assert time.monotonic() - t0 >= 0.6
    assert "attempt 2 of pod" in node["outputs"]["result"]
    assert len({a["podName"] for a in tries}) == 3


def test_retries_stop_at_the_limit(tmp_path: Path) -> None:
    code, rec = run(tmp_path, "retry.yaml", "-p", "succeed-at=99", "-p", "limit=2")
    assert code == 1
    root = root_of(rec)
    assert root["phase"] == "Failed"
    assert len(attempts(rec, root)) == 3


def test_retry_expression_refuses_a_permanent_exit_code(tmp_path: Path) -> None:
    code, rec = run(tmp_path, "retry.yaml", "-p", "code=3")
    assert code == 1
    assert [a["exitCode"] for a in attempts(rec, root_of(rec))] == [3]


def test_depends_results_and_handled_failure(tmp_path: Path) -> None:
    code, rec = run(tmp_path, "dag-depends.yaml")
    by = nodes(rec)
    assert by["fail"]["phase"] == "Failed"
    assert by["on-failure"]["phase"] == "Succeeded"
    assert by["on-success"]["phase"] == "Omitted"
    assert by["skipped"]["phase"] == "Skipped"
    assert by["after-skip"]["phase"] == "Succeeded"
    assert by["completed"]["phase"] == "Succeeded"
    assert by["legacy"]["phase"] == "Succeeded"
    # the failure is handled by a task that depends on fail.Failed: the DAG succeeds
    assert code == 0, root_of(rec).get("message")


def test_unhandled_failure_fails_the_dag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run(tmp_path, "dag-unhandled.yaml")
    assert code == 1
    by = nodes(rec)
    assert by["a"]["phase"] == "Failed"
    assert by["a"]["outputs"]["exitCode"] == "3"
    assert rec["workersRunner"]["pods"][by["a"]["id"]]["exitCode"] == 3
    assert by["b"]["phase"] == "Omitted"
    out = capsys.readouterr().out
    assert "boom" in out  # the failed pod's stderr tail is shown


def test_when_conditions(tmp_path: Path) -> None:
    code, rec = run(tmp_path, "when.yaml")
    assert code == 0
    phases = {k: v["phase"] for k, v in nodes(rec).items()}
    assert phases["heads"] == "Succeeded"
    assert phases["tails"] == "Skipped"
    assert phases["big"] == "Succeeded"
    assert phases["small"] == "Skipped"
    assert phases["regex"] == "Succeeded"
    code, rec = run(tmp_path / "again", "when.yaml", "-p", "count=3")
    phases = {k: v["phase"] for k, v in nodes(rec).items()}
    assert phases["big"] == "Skipped"
    assert phases["small"] == "Succeeded"


@pytest.mark.parametrize("mode", MODES)
def test_each_pod_has_its_own_tmp_and_shares_volumes(tmp_path: Path, mode: str) -> None:
    code, rec = run(tmp_path, "pod-filesystem.yaml", sandbox_mode=mode)
    assert code == 0, rec
    by = nodes(rec)
    gathered = json.loads(by["gather"]["outputs"]["result"])
    assert gathered["parts"] == ["part-0", "part-1", "part-2", "part-3"]
    # four pods wrote /tmp/out at once: each read back its own value
    assert gathered["values"] == ["0", "1", "2", "3"]
    # aggregated values that are not JSON objects or lists stay strings (aggregatedJSONValueList)
    assert gathered["param"] == ["0", "1", "2", "3"]
    assert outputs(by["write"])["fallback"] == '["none","none","none","none"]'
    assert rec["workersRunner"]["sandbox"]["mode"] == mode


@pytest.mark.parametrize("mode", MODES)
def test_active_deadline_kills_the_process_group(tmp_path: Path, mode: str) -> None:
    t0 = time.monotonic()
    code, rec = run(tmp_path, "deadline.yaml", sandbox_mode=mode)
    assert code == 1
    assert time.monotonic() - t0 < 10
    root = root_of(rec)
    assert root["phase"] == "Failed"
    assert "deadline" in root["message"]


def test_unsupported_field_fails_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run(tmp_path, "unsupported.yaml")
    assert code == 2
    assert rec == {}
    err = capsys.readouterr().err
    assert "spec.templates[main].resource" in err
    assert "unsupported.yaml" in err


def test_secret_from_environment_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    code, rec = run(tmp_path, "secrets.yaml")
    assert code == 0
    text = (tmp_path / "runs" / rec["metadata"]["name"] / "run.json").read_text()
    assert "s3cr3t-value" not in text
    assert "token ***" in text


def test_timeline_is_self_contained(tmp_path: Path) -> None:
    _, rec = run(tmp_path, "dag-depends.yaml")
    html = (tmp_path / "runs" / rec["metadata"]["name"] / "timeline.html").read_text()
    assert 'id="chart"' in html and "on-failure" in html
    assert "<script" not in html and "src=" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_unknown_parameter_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(tmp_path, "retry.yaml", "-p", "nope=1")
    assert code == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "names", "expected"),
    [
        ("asInt(lastRetry.exitCode) == 75", {"lastRetry.exitCode": "75"}, True),
        ('lastRetry.status in ["Error", "Failed"]', {"lastRetry.status": "Failed"}, True),
        (
            "!(asInt(lastRetry.exitCode) > 1) || lastRetry.status == 'Error'",
            {"lastRetry.exitCode": "2", "lastRetry.status": "Failed"},
            False,
        ),
        (
            # expr-lang does not evaluate the branch not taken (the skipped step's output)
            "inputs.parameters['x'] == 'a' ? steps['gone'].outputs.result : 'b'",
            {"inputs.parameters.x": "z", "steps.other.outputs.result": "r"},
            "b",
        ),
    ],
)
def test_expression_subset(text: str, names: dict[str, str], expected: Any) -> None:
    assert exprlang.evaluate(text, exprlang.environment(names)) == expected


def test_expression_never_evaluates_python() -> None:
    with pytest.raises(ExprError):
        exprlang.evaluate("__import__('os').system('true')", exprlang.environment({}))


def test_image_entrypoint_runs_before_args(tmp_path: Path) -> None:
    """Kubernetes "Define a Command and Arguments for a Container": ``command`` replaces the
    image's ENTRYPOINT and ``args`` its CMD, so a container with ``args`` only runs
    ENTRYPOINT + args (Argo's argosay:v2 examples rely on it: test/e2e/images/argosay/v2/
    Dockerfile sets ENTRYPOINT). ``--entrypoint`` names it per image, tag optional."""
    code, rec = run(
        tmp_path,
        "image-entrypoint.yaml",
        "--entrypoint",
        "registry.example:5000/tools/shell:2.1=sh -c",
        "--entrypoint",
        "example/printer=printf",
    )
    assert code == 0, rec
    by = nodes(rec)
    assert by["exact-tag"]["outputs"]["result"] == "shell-entrypoint"
    assert by["any-tag"]["outputs"]["result"] == "printer for any tag"
    assert by["own-command"]["outputs"]["result"] == "own command"


def test_entrypoint_of_another_tag_does_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ENTRYPOINT given for one tag is that image's only: another tag runs ``args`` as the
    command (here ``printf '%s-%s' ...``, no such program on this machine), so the workflow is
    refused before anything runs, naming the program (a local pod runs this machine's
    programs, not the image's)."""
    code, rec = run(
        tmp_path,
        "image-entrypoint.yaml",
        "--entrypoint",
        "registry.example:5000/tools/shell:9=sh -c",
        "--entrypoint",
        "example/printer=printf",
    )
    assert code == 2 and rec == {}
    err = capsys.readouterr().err
    assert "template exact-tag" in err and "is not a program on this machine" in err


@pytest.mark.parametrize("bad", ["no-equals-sign", "image=", "=sh", "image=sh 'unclosed"])
def test_malformed_entrypoint_is_a_usage_error(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(tmp_path, "image-entrypoint.yaml", "--entrypoint", bad)
    assert exc.value.code == 2
    assert "--entrypoint" in capsys.readouterr().err
