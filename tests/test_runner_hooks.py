"""Exit handlers, lifecycle hooks and the workflow's own variables in the local runner, each
checked against Argo's documentation or controller code (cited per test).

Every test runs a YAML of tests/argo_examples/ (or a short one written here) through
``python -m workers run`` in-process, with real processes, and reads the run.json it writes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_file

from argo_local.engine.workflowscope import go_json, go_quote
from argo_local.model.nodes import node_id_of
from workers.runadapter import main

EXAMPLES = Path(__file__).parent / "argo_examples"


def run(tmp_path: Path, target: Path | str, *args: str) -> tuple[int, dict[str, Any]]:
    path = target if isinstance(target, Path) else EXAMPLES / target
    return run_file(path, tmp_path / "runs", "--sandbox", "remap", *args)


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Nodes by their full name (``WF[0].step.onExit``)."""
    return {n["name"]: n for n in record["status"]["nodes"].values()}


def when(node: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(node[field].replace("Z", "+00:00"))


def stdout(record: dict[str, Any], node: dict[str, Any]) -> str:
    return str(node["outputs"]["result"])


def test_workflow_exit_handler_sees_the_final_status_and_failures(tmp_path: Path) -> None:
    """docs/walk-through/exit-handlers.md: the exit handler runs after the entrypoint whatever
    its result, ``when: "{{workflow.status}} != Succeeded"`` choosing its steps.
    docs/variables.md "Exit Handler": workflow.status is Succeeded, Failed or Error,
    workflow.failures lists the failed nodes' displayName, message, templateName, phase, podName,
    finishedAt. operator.go operate: the node is ``WF.onExit`` with nodeFlag.hooked and no
    boundary; workflow.failures is strconv.Quote of the JSON; workflow.duration is ``%f`` seconds;
    the workflow keeps the entrypoint's phase and message. LifecycleHook.WithArgs: an exit handler
    without arguments gets the workflow's (here ``exit-code``)."""
    code, rec = run(tmp_path, "exit-handler.yaml")
    assert code == 1
    nodes = by_name(rec)
    assert rec["status"]["phase"] == "Failed"
    assert rec["status"]["message"] == nodes["exit-wf"]["message"]
    handler = nodes["exit-wf.onExit"]
    assert handler["displayName"] == "exit-wf.onExit"
    assert handler["type"] == "Steps" and handler["phase"] == "Succeeded"
    assert handler["nodeFlag"] == {"hooked": True}
    assert "boundaryID" not in handler
    assert handler["inputs"]["parameters"] == [{"name": "exit-code", "value": "0"}]
    # the entrypoint ended before the handler started
    assert when(handler, "startedAt") >= when(nodes["exit-wf"], "finishedAt")
    assert nodes["exit-wf.onExit[0].celebrate"]["phase"] == "Skipped"
    assert nodes["exit-wf.onExit[0].cry"]["phase"] == "Succeeded"
    status, duration, failures = stdout(rec, nodes["exit-wf.onExit[0].report"]).split("\n")
    assert status == "Failed"
    assert re.fullmatch(r"\d+\.\d{6}", duration)
    listed = {f["displayName"]: f for f in json.loads(failures)}
    assert set(listed) == {"exit-wf", "[0]", "work"}  # the steps node, its group, the pod
    work = listed["work"]
    assert work["phase"] == "Failed" and work["templateName"] == "work"
    assert work["message"] == nodes["exit-wf[0].work"]["message"]
    # util/pod_name.go: WF-TEMPLATE-FNV32a(node name); the workflow's own node: WF
    fnv = node_id_of("exit-wf", "exit-wf[0].work").rsplit("-", 1)[1]
    assert work["podName"] == f"exit-wf-work-{fnv}"
    assert listed["exit-wf"]["podName"] == "exit-wf"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", work["finishedAt"])


def test_exit_handler_of_a_succeeded_workflow(tmp_path: Path) -> None:
    """docs/variables.md: workflow.failures is ``"null"`` when nothing failed
    (docs/variable-flow/variables.md); the exit handler sees workflow.status Succeeded."""
    code, rec = run(tmp_path, "exit-handler.yaml", "-p", "code=0")
    assert code == 0
    nodes = by_name(rec)
    assert rec["status"]["phase"] == "Succeeded"
    status, _, failures = stdout(rec, nodes["exit-wf.onExit[0].report"]).split("\n")
    assert (status, failures) == ("Succeeded", "null")
    assert nodes["exit-wf.onExit[0].celebrate"]["phase"] == "Succeeded"
    assert nodes["exit-wf.onExit[0].cry"]["phase"] == "Skipped"


def test_failed_exit_handler_fails_a_succeeded_workflow(tmp_path: Path) -> None:
    """operator.go operate: when the entrypoint succeeded but the exit handler failed, the
    workflow is marked Failed with the handler's message (test/e2e/expectedfailures/
    exit-handler-failed.yaml)."""
    code, rec = run(tmp_path, "exit-handler.yaml", "-p", "code=0", "-p", "exit-code=4")
    assert code == 1
    nodes = by_name(rec)
    assert nodes["exit-wf"]["phase"] == "Succeeded"
    handler = nodes["exit-wf.onExit"]
    assert handler["phase"] == "Failed"
    assert rec["status"]["phase"] == "Failed"
    assert rec["status"]["message"] == handler["message"]
    assert rec["metadata"]["labels"]["workflows.argoproj.io/phase"] == "Failed"


def test_step_and_task_exit_handlers_and_hooks(tmp_path: Path) -> None:
    """steps.go executeStepGroup and dag.go executeDAGTask: a step's hooks are evaluated with
    ``steps.NAME.status`` as the step runs and when it ends, each running once as
    ``NODE.hooks.NAME``; its exit handler (``hooks.exit`` or ``onExit``) runs once it completed,
    as ``NODE.onExit``, its arguments seeing the step's status and output parameters
    (exit_handler.go resolveExitTmplArgument); the next group, or a dependent task
    (CheckAllHooksFullfilled), waits for them; they are children of the hooked node, share its
    boundary, and their failure changes no phase (the group's phase is its steps'). An exit
    hook with an ``expression`` runs only if it holds (exit_handler.go runOnExitNode)."""
    code, rec = run(tmp_path, "step-hooks.yaml")
    assert code == 0, rec["status"].get("message")
    nodes = by_name(rec)
    produce = nodes["step-hooks[0].produce"]
    hooks = {
        k.removeprefix("step-hooks[0].produce."): v
        for k, v in nodes.items()
        if k.startswith("step-hooks[0].produce.")
    }
    assert set(hooks) == {"hooks.started", "hooks.ok", "onExit"}  # "bad" never became true
    for name, hook in hooks.items():
        assert hook["displayName"] == f"produce.{name}"
        assert hook["nodeFlag"] == {"hooked": True}
        assert hook["boundaryID"] == produce["boundaryID"] == "step-hooks"
        assert hook["id"] in produce["children"]
        assert hook["phase"] == "Succeeded"
    assert stdout(rec, hooks["onExit"]) == "exit Succeeded made"
    assert stdout(rec, hooks["hooks.started"]) == "started"
    # the started hook ran while the step ran; the exit handler after it ended
    assert when(hooks["hooks.started"], "startedAt") < when(produce, "finishedAt")
    assert when(hooks["onExit"], "startedAt") >= when(produce, "finishedAt")
    after = nodes["step-hooks[1].after"]
    for hook in hooks.values():
        assert when(after, "startedAt") >= when(hook, "finishedAt")
    # a task's failing exit handler: A keeps its phase, the DAG and the workflow succeed
    a, a_exit, b = (nodes[f"step-hooks[2].flow.{n}"] for n in ("A", "A.onExit", "B"))
    assert (a["phase"], a_exit["phase"], b["phase"]) == ("Failed", "Failed", "Succeeded")
    assert a_exit["displayName"] == "A.onExit"
    assert a_exit["boundaryID"] == nodes["step-hooks[2].flow"]["id"]
    assert when(b, "startedAt") >= when(a_exit, "finishedAt")
    assert "step-hooks[2].flow.B.onExit" not in nodes  # its exit hook's expression is false
    assert rec["status"]["phase"] == "Succeeded"


def test_workflow_hooks_run_once_when_their_expression_holds(tmp_path: Path) -> None:
    """hooks.go executeWfLifeCycleHook: a workflow hook's expression sees workflow.status
    (Running while the entrypoint runs, then its final phase); the first time it is true the
    hook runs as ``WF.hooks.NAME``, a child of the workflow's node; the exit handler
    (``hooks.exit``) waits for the hooks started (operator.go operate), and hooks leave the
    workflow's phase alone (test/e2e/hooks_test.go TestWorkflowLevelHooks*)."""
    code, rec = run(tmp_path, "workflow-hooks.yaml")
    assert code == 0
    nodes = by_name(rec)
    root = nodes["wf-hooks"]
    ran = {k.removeprefix("wf-hooks."): v for k, v in nodes.items() if k.startswith("wf-hooks.")}
    assert set(ran) == {"hooks.running", "hooks.succeeded", "onExit"}
    assert stdout(rec, ran["hooks.running"]) == "Running"
    assert stdout(rec, ran["hooks.succeeded"]) == "Succeeded"
    assert ran["hooks.running"]["id"] in root["children"]
    assert ran["hooks.running"]["nodeFlag"] == {"hooked": True}
    assert when(ran["hooks.running"], "startedAt") < when(root, "finishedAt")
    assert when(ran["onExit"], "startedAt") >= when(ran["hooks.succeeded"], "finishedAt")
    assert rec["status"]["progress"] == "4/4"

    code, rec = run(tmp_path / "failing", "workflow-hooks.yaml", "-p", "code=1")
    assert code == 1
    ran = {k for k in by_name(rec) if k.startswith("wf-hooks.")}
    assert ran == {"wf-hooks.hooks.running", "wf-hooks.hooks.failed", "wf-hooks.onExit"}
    assert rec["status"]["phase"] == "Failed"


def test_global_outputs(tmp_path: Path) -> None:
    """docs/fields.md Parameter.globalName: exported as workflow.outputs.parameters.NAME and in
    status.outputs.parameters; operator.go addParamToGlobalScope / util.go
    AddParamToGlobalScope: a later export of the same name overwrites it in place; the name
    may use the template's inputs (test/e2e/functional/global-outputs-variable.yaml); later
    steps and the exit handler read it."""
    code, rec = run(tmp_path, "global-outputs.yaml")
    assert code == 0
    nodes = by_name(rec)
    assert stdout(rec, nodes["global-outputs[1].use"]) == "one two"
    assert stdout(rec, nodes["global-outputs.onExit"]) == "three two"
    assert rec["status"]["outputs"] == {
        "parameters": [
            {"name": "fixed", "value": "three"},
            {"name": "chosen-name", "value": "two"},
        ]
    }


WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: bad
spec:
  entrypoint: main
  templates:
    - name: main
      steps:
        - - name: one
            template: say
{extra}
    - name: say
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["echo {{{{workflow.outputs.parameters.{ref}}}}}"]
      outputs:
        parameters:
          - name: p
            globalName: known
            valueFrom:
              path: /tmp/p
"""


@pytest.mark.parametrize(
    ("extra", "ref", "message"),
    [
        # validate.go validateHooks: "templates.main.steps[0].one.foo Expression required"
        (
            "            hooks:\n              foo:\n                template: say",
            "known",
            "step one.hooks.foo: expression required",
        ),
        # validate.go resolveAllVariables: a workflow.outputs reference needs a globalName
        ("", "unknown", "no output parameter has globalName 'unknown'"),
        (
            "            onExit: nowhere",
            "known",
            "step one.onExit: no template named 'nowhere'",
        ),
    ],
)
def test_bad_hooks_are_rejected_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, ref: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(WORKFLOW.format(extra=extra, ref=ref))
    code, rec = run(tmp_path, path)
    assert code == 2 and rec == {}
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert "Traceback" not in err


def test_exit_handler_runs_after_the_workflow_deadline(tmp_path: Path) -> None:
    """workflowpod.go: exit-handler pods are not subject to the workflow's deadline
    (test/e2e/hooks_test.go TestExitHandlerWithWorkflowLevelDeadline: the workflow fails, its
    exit handler succeeds)."""
    path = tmp_path / "deadline.yaml"
    path.write_text(
        """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: late
spec:
  entrypoint: slow
  activeDeadlineSeconds: 1
  hooks:
    exit:
      template: slow
  templates:
    - name: slow
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["sleep 1.5"]
"""
    )
    code, rec = run(tmp_path, path)
    assert code == 1
    nodes = by_name(rec)
    assert rec["status"]["phase"] == "Failed"
    assert "activeDeadlineSeconds" in rec["status"]["message"]
    assert nodes["late"]["phase"] == "Failed"
    assert nodes["late.onExit"]["phase"] == "Succeeded"


def test_go_json_and_quote() -> None:
    """operator.go: workflow.failures is ``strconv.Quote(json.Marshal(failures))``; Go's JSON
    escapes <, > and & and strconv.Quote uses Go's escapes."""
    assert go_json([{"message": "a<b>&c"}]) == '[{"message":"a\\u003cb\\u003e\\u0026c"}]'
    assert go_json(None) == "null"
    assert go_quote('say "hi"\n\tnow\x01é') == '"say \\"hi\\"\\n\\tnow\\x01é"'


def test_hooks_of_a_retried_entrypoint_and_of_an_omitted_task(tmp_path: Path) -> None:
    """test/e2e/hooks_test.go TestWorkflowLevelHooksWithRetry: the retried entrypoint is a
    Retry node with one pod per attempt; the running and failed hooks both run; progress counts
    pods ("2/4"). dag.go executeDAGTask evaluates a task's hooks whatever its phase, an omitted
    one's too (TestTemplateLevelHooksDagHasDependencyVersion: B is Omitted and its running and
    success hooks never run), and a task that never ran has no exit handler."""
    path = tmp_path / "retry-hooks.yaml"
    path.write_text(
        """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: retry-hooks
spec:
  entrypoint: flaky
  hooks:
    failed:
      template: ok
      expression: workflow.status == "Failed"
    running:
      template: ok
      expression: workflow.status == "Running"
  templates:
    - name: flaky
      retryStrategy:
        limit: 1
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["sleep 0.2; exit 1"]
    - name: ok
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["echo ok"]
"""
    )
    code, rec = run(tmp_path / "retry", path)
    assert code == 1
    nodes = by_name(rec)
    assert rec["status"]["progress"] == "2/4"
    assert nodes["retry-hooks"]["type"] == "Retry"
    assert "nodeFlag" not in nodes["retry-hooks"]
    for name in ("retry-hooks.hooks.failed", "retry-hooks.hooks.running"):
        assert nodes[name]["phase"] == "Succeeded"
        assert nodes[name]["nodeFlag"] == {"hooked": True}

    path = tmp_path / "omitted-hooks.yaml"
    path.write_text(
        """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: omitted-hooks
spec:
  entrypoint: main
  templates:
    - name: main
      dag:
        tasks:
          - name: A
            template: fail
            hooks:
              running:
                template: ok
                expression: tasks.A.status == "Running"
              success:
                template: ok
                expression: tasks.A.status == "Succeeded"
          - name: B
            template: ok
            dependencies: [A]
            onExit: ok
            hooks:
              running:
                template: ok
                expression: tasks.B.status == "Running"
              omitted:
                template: ok
                expression: tasks.B.status == "Omitted"
    - name: fail
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["sleep 0.2; exit 1"]
    - name: ok
      container:
        image: alpine:3.20
        command: [sh, -c]
        args: ["echo ok"]
"""
    )
    code, rec = run(tmp_path / "omitted", path)
    assert code == 1
    ran = {k.removeprefix("omitted-hooks").lstrip("."): v["phase"] for k, v in by_name(rec).items()}
    assert ran == {
        "": "Failed",
        "A": "Failed",
        "A.hooks.running": "Succeeded",
        "B": "Omitted",
        "B.hooks.omitted": "Succeeded",
    }


def test_resume_runs_the_exit_handler_again(tmp_path: Path) -> None:
    """workflow/util/util.go FormulateRetryWorkflow: ``argo retry`` deletes the workflow's
    ``WF.onExit`` nodes, so the exit handler runs again, while the succeeded steps are kept."""
    code, rec = run(tmp_path, "exit-handler.yaml", "-p", "code=0", "-p", "exit-code=4")
    assert code == 1
    folder = tmp_path / "runs" / rec["metadata"]["name"]
    kept = "succeeded in the run this one resumes (kept)"
    code = main(
        [
            str(EXAMPLES / "exit-handler.yaml"),
            "--runs",
            str(tmp_path / "runs"),
            "--sandbox",
            "remap",
            "-p",
            "code=0",
            "-p",
            "exit-code=4",
            "--resume",
            str(folder),
        ]
    )
    assert code == 1
    nodes = by_name(json.loads((folder / "run.json").read_text()))
    assert nodes["exit-wf[0].work"]["message"] == kept
    assert nodes["exit-wf.onExit[0].report"].get("message") != kept
    assert nodes["exit-wf.onExit[0].report"]["phase"] == "Succeeded"
