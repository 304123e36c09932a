"""Artifact features of the local runner written from Argo v4.1.2's controller and validation.

Each test writes a small workflow, runs it with ``workers run`` (in-process; every step a real
process, every artifact a real file in the run's repository) and reads run.json. The docstrings
cite the Argo source that defines the behaviour.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.test_runner_argo_fidelity import nodes, run, workflow


def saved(record: dict[str, Any], art: dict[str, Any]) -> str:
    """The one file inside a saved .tgz artifact."""
    repo = Path(record["workersRunner"]["artifactRepository"])
    with tarfile.open(repo / art["s3"]["key"], "r:gz") as tf:
        member = next(m for m in tf.getmembers() if m.isfile())
        f = tf.extractfile(member)
        assert f is not None
        return f.read().decode()


def result(node: dict[str, Any]) -> str:
    return str((node.get("outputs") or {}).get("result"))


WRITE = """
- name: write
  inputs: {parameters: [{name: text}]}
  container: {image: alpine, command: [sh, -c, "printf '{{inputs.parameters.text}}' > /tmp/out.txt"]}
  outputs:
    artifacts: [{name: out, path: /tmp/out.txt, globalName: shared}]
- name: cat
  inputs: {artifacts: [{name: art, path: /tmp/art}]}
  container: {image: alpine, command: [cat, /tmp/art]}
"""


def test_global_artifact_is_a_workflow_output(tmp_path: Path) -> None:
    """operator.go addArtifactToGlobalScope: an output artifact with ``globalName`` is set in
    ``status.outputs.artifacts`` renamed to its globalName, without ``globalName`` and ``path``;
    a later export of the same name overwrites it in place. steps.go/dag.go
    addWorkflowOutputsToLocalScope: later steps and the exit handler read it as
    ``{{workflow.outputs.artifacts.NAME}}`` (examples/global-outputs.yaml)."""
    templates = """
    - name: main
      steps:
        - - {name: first, template: write, arguments: {parameters: [{name: text, value: one}]}}
        - - name: read-first
            template: cat
            arguments: {artifacts: [{name: art, from: "{{workflow.outputs.artifacts.shared}}"}]}
        - - {name: second, template: write, arguments: {parameters: [{name: text, value: two}]}}
    - name: bye
      steps:
        - - name: read-last
            template: cat
            arguments: {artifacts: [{name: art, from: "{{workflow.outputs.artifacts.shared}}"}]}
    """
    code, rec = run(tmp_path, workflow("globals", templates, WRITE, extra="  onExit: bye\n"))
    assert code == 0, rec["status"]
    by = nodes(rec)
    assert result(by["read-first"]) == "one"
    assert result(by["read-last"]) == "two"
    exported = rec["status"]["outputs"]["artifacts"]
    assert [a["name"] for a in exported] == ["shared"]
    assert set(exported[0]) == {"name", "s3"}
    second = next(a for a in by["second"]["outputs"]["artifacts"] if a["name"] == "out")
    assert exported[0]["s3"] == second["s3"]
    assert saved(rec, exported[0]) == "two"


def test_unknown_global_artifact_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go addOutputsToScope/resolveAllVariables: ``workflow.outputs.artifacts.NAME``
    exists only for a globalName some output artifact declares."""
    templates = """
    - name: main
      steps:
        - - {name: first, template: write, arguments: {parameters: [{name: text, value: one}]}}
        - - name: read
            template: cat
            arguments: {artifacts: [{name: art, from: "{{workflow.outputs.artifacts.nope}}"}]}
    """
    code, rec = run(tmp_path, workflow("globals", templates, WRITE))
    assert code == 2 and rec == {}
    err = capsys.readouterr().err
    assert "no output artifact has globalName 'nope'" in err and "shared" in err


CHOOSE = """
- name: flip
  container: {image: alpine, command: [echo, "{{workflow.parameters.side}}"]}
- name: side
  inputs: {parameters: [{name: text}]}
  container: {image: alpine, command: [sh, -c, "printf 'it was {{inputs.parameters.text}}' > /tmp/r.txt"]}
  outputs:
    artifacts: [{name: result, path: /tmp/r.txt}]
- name: cat
  inputs: {artifacts: [{name: art, path: /tmp/art}]}
  container: {image: alpine, command: [cat, /tmp/art]}
"""

STEPS = """
- name: main
  steps:
    - - {name: pick, template: chosen}
    - - name: show
        template: cat
        arguments: {artifacts: [{name: art, from: "{{steps.pick.outputs.artifacts.result}}"}]}
- name: chosen
  steps:
    - - {name: flip-coin, template: flip}
    - - name: heads
        template: side
        when: "{{steps.flip-coin.outputs.result}} == heads"
        arguments: {parameters: [{name: text, value: heads}]}
      - name: tails
        template: side
        when: "{{steps.flip-coin.outputs.result}} == tails"
        arguments: {parameters: [{name: text, value: tails}]}
  outputs:
    artifacts:
      - name: result
        fromExpression: "steps['flip-coin'].outputs.result == 'heads' ? steps.heads.outputs.artifacts.result : steps.tails.outputs.artifacts.result"
"""

DAG = """
- name: main
  steps:
    - - {name: pick, template: chosen}
    - - name: show
        template: cat
        arguments: {artifacts: [{name: art, from: "{{steps.pick.outputs.artifacts.result}}"}]}
- name: chosen
  dag:
    tasks:
      - {name: flip-coin, template: flip}
      - name: heads
        depends: flip-coin
        template: side
        when: "{{tasks.flip-coin.outputs.result}} == heads"
        arguments: {parameters: [{name: text, value: heads}]}
      - name: tails
        depends: flip-coin
        template: side
        when: "{{tasks.flip-coin.outputs.result}} == tails"
        arguments: {parameters: [{name: text, value: tails}]}
  outputs:
    artifacts:
      - name: result
        fromExpression: "tasks['flip-coin'].outputs.result == 'heads' ? tasks.heads.outputs.artifacts.result : tasks.tails.outputs.artifacts.result"
"""


@pytest.mark.parametrize("kind", ["steps", "dag"])
@pytest.mark.parametrize("side", ["heads", "tails"])
def test_from_expression_picks_the_output_artifact(tmp_path: Path, kind: str, side: str) -> None:
    """operator.go getTemplateOutputsFromScope and scope.go resolveArtifact: a steps or DAG
    template's output artifact ``fromExpression`` is expr-lang over the template's scope, and
    the artifact it evaluates to becomes the output under the output's name
    (examples/conditional-artifacts.yaml, dag-conditional-artifacts.yaml)."""
    main = STEPS if kind == "steps" else DAG
    extra = f"  arguments: {{parameters: [{{name: side, value: {side}}}]}}\n"
    code, rec = run(tmp_path, workflow("cond", main, CHOOSE, extra=extra))
    assert code == 0, rec["status"]
    by = nodes(rec)
    picked = by["pick"]["outputs"]["artifacts"]
    produced = by[side]["outputs"]["artifacts"]
    assert [a["name"] for a in picked] == ["result"]
    assert picked[0]["s3"] == produced[0]["s3"]
    assert result(by["show"]) == f"it was {side}"


def test_from_expression_that_picks_nothing_is_an_error(tmp_path: Path) -> None:
    """scope.go resolveArtifact: an expression whose value is nil (here the skipped step's
    artifact) is not an artifact; getTemplateOutputsFromScope fails the node with "unable to
    resolve outputs from scope", unless the output is ``optional``."""
    main = STEPS.replace(
        "steps['flip-coin'].outputs.result == 'heads' ? steps.heads.outputs.artifacts.result "
        ": steps.tails.outputs.artifacts.result",
        "steps['flip-coin'].outputs.result == 'heads' ? steps.tails.outputs.artifacts.result "
        ": steps.heads.outputs.artifacts.result",
    )
    extra = "  arguments: {parameters: [{name: side, value: heads}]}\n"
    code, rec = run(tmp_path, workflow("cond", main, CHOOSE, extra=extra))
    assert code == 1
    pick = nodes(rec)["pick"]
    assert pick["phase"] == "Error"
    assert "unable to resolve outputs from scope" in pick["message"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            "[{name: art, fromExpression: 'steps.first.outputs.artifacts.out'}]",
            "arguments.artifacts[art]: from, artifact location, or key is required",
        ),
        (
            "[{name: art, from: '{{steps.first.outputs.artifacts.out}}', "
            "fromExpression: 'steps.first.outputs.artifacts.out'}]",
            "shouldn't have both `from` and `fromExpression` in Artifact",
        ),
    ],
)
def test_argument_artifacts_validated_as_argo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: str, message: str
) -> None:
    """validate.go validateArgumentsValues: an argument artifact needs ``from``, a location or
    a key (a ``fromExpression`` alone is not one), and never both ``from`` and
    ``fromExpression``."""
    templates = f"""
    - name: main
      steps:
        - - {{name: first, template: write, arguments: {{parameters: [{{name: text, value: a}}]}}}}
        - - name: read
            template: cat
            arguments: {{artifacts: {arguments}}}
    """
    code, rec = run(tmp_path, workflow("args", templates, WRITE))
    assert code == 2 and rec == {}
    assert message in capsys.readouterr().err


CONTAINER_SET = """
- name: main
  steps:
    - - name: set
        template: set
        arguments: {artifacts: [{name: seed, raw: {data: planted}}]}
    - - name: show
        template: cat
        arguments: {artifacts: [{name: art, from: "{{steps.set.outputs.artifacts.out}}"}]}
- name: set
  volumes: [{name: workspace, emptyDir: {}}]
  inputs:
    artifacts: [{name: seed, path: /tmp/seed.txt}]
  containerSet:
    volumeMounts: [{name: workspace, mountPath: /workspace}]
    containers:
      - {name: a, image: alpine, command: [sh, -c, "printf 'from a' > /workspace/a.txt"]}
      - name: main
        image: alpine
        dependencies: [a]
        command: [sh, -c, "cat /workspace/a.txt {{inputs.artifacts.seed.path}} > {{outputs.artifacts.out.path}}"]
  outputs:
    artifacts: [{name: out, path: /workspace/out}]
- name: cat
  inputs: {artifacts: [{name: art, path: /tmp/art}]}
  container: {image: alpine, command: [cat, /tmp/art]}
"""


def test_container_set_artifacts_are_the_main_containers(tmp_path: Path) -> None:
    """Template.IsLeaf (workflow_types.go) counts a containerSet, so validate.go validateInputs
    and validateOutputs give its artifacts paths; docs/container-set-template.md "Inputs and
    Outputs": they are loaded into and saved from the container named ``main``
    (workflowpod.go addInputArtifactsVolumes mounts inputs in main only); a workspace volume
    carries another container's files (examples/container-set-template/workspace-workflow.yaml);
    validateLeaf offers ``{{inputs|outputs.artifacts.X.path}}`` as in a container template.
    """
    code, rec = run(tmp_path, workflow("cs", CONTAINER_SET))
    assert code == 0, rec["status"]
    by = nodes(rec)
    assert result(by["show"]) == "from aplanted"


def test_container_set_artifacts_need_a_main_container(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go validateLeaf: a containerSet with input artifacts or outputs must have a
    container named "main"."""
    text = CONTAINER_SET.replace("- name: main\n        image", "- name: last\n        image")
    code, rec = run(tmp_path, workflow("cs", text))
    assert code == 2 and rec == {}
    assert 'must have a container named "main" for input or output' in capsys.readouterr().err


def test_literal_output_parameter_value(tmp_path: Path) -> None:
    """executor.go SaveParameters fills in only ``valueFrom.path`` parameters and
    ReportOutputs reports the template's outputs as substituted, so an output parameter with a
    literal ``value`` is that value (test/e2e/functional/parameter-aggregation-*-with-retry.yaml:
    the loop aggregates it to ``["1","2","3"]``)."""
    templates = """
    - name: main
      steps:
        - - name: echo
            template: echo
            arguments: {parameters: [{name: message, value: "{{item}}"}]}
            withItems: [1, 2, 3]
      outputs:
        parameters:
          - name: all
            valueFrom: {parameter: "{{steps.echo.outputs.parameters.dummy}}"}
    - name: echo
      inputs: {parameters: [{name: message}]}
      container: {image: alpine, command: ["true"]}
      outputs:
        parameters: [{name: dummy, value: "{{inputs.parameters.message}}"}]
    """
    code, rec = run(tmp_path, workflow("literal", templates))
    assert code == 0, rec["status"]
    root = rec["status"]["nodes"][rec["metadata"]["name"]]
    assert root["outputs"]["parameters"] == [{"name": "all", "value": '["1","2","3"]'}]


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (
            "{name: p, value: x, valueFrom: {path: /tmp/p}}",
            "has both valueFrom and value specified, choose one",
        ),
        ("{name: p}", "does not have valueFrom or value specified"),
    ],
)
def test_output_parameter_needs_value_or_value_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parameter: str, message: str
) -> None:
    """validate.go validateOutputParameter: exactly one of ``value`` and ``valueFrom``."""
    templates = f"""
    - name: main
      container: {{image: alpine, command: ["true"]}}
      outputs: {{parameters: [{parameter}]}}
    """
    code, rec = run(tmp_path, workflow("params", templates))
    assert code == 2 and rec == {}
    assert message in capsys.readouterr().err


OPTIONAL = """
- name: main
  steps:
    - - {name: make, template: make}
    - - name: take
        template: take
        arguments:
          artifacts: [{name: message, from: "{{steps.make.outputs.artifacts.art}}"OPT}]
- name: make
  container: {image: alpine, command: ["true"]}
  outputs:
    artifacts: [{name: art, path: /tmp/never.txt, optional: true}]
- name: take
  inputs:
    artifacts: [{name: message, path: /tmp/message, optional: true}]
  container: {image: alpine, command: [sh, -c, "test -e /tmp/message || echo absent"]}
"""


@pytest.mark.parametrize("optional", [True, False])
def test_argument_naming_an_unsaved_optional_artifact(tmp_path: Path, optional: bool) -> None:
    """executor.go saveArtifact: an optional output artifact that was not produced is not
    reported, so the step has no such output. steps.go resolveReferences: an argument artifact
    whose ``from`` does not resolve is left out when the argument itself is ``optional`` (the
    consumer's optional input is then absent), and is otherwise an error, "unable to resolve
    references" (test/e2e/functional/output-input-artifact-optional.yaml passes no
    ``optional`` on its argument)."""
    text = OPTIONAL.replace("OPT", ", optional: true" if optional else "")
    code, rec = run(tmp_path, workflow("opt", text))
    by = nodes(rec)
    assert "artifacts" not in (by["make"].get("outputs") or {})
    if optional:
        assert code == 0, rec["status"]
        assert result(by["take"]) == "absent"
    else:
        assert code == 1
        assert rec["status"]["phase"] == "Failed"
        assert by["take"]["phase"] == "Error"
        assert "unable to resolve references" in by["take"]["message"]


@pytest.mark.parametrize("optional", [True, False])
def test_exit_hook_argument_naming_a_missing_artifact(tmp_path: Path, optional: bool) -> None:
    """exit_handler.go resolveExitTmplArgument: a step's exit hook sees the step's output
    artifacts; a ``from`` that names none (the step failed before saving it) leaves an
    ``optional`` argument out and is otherwise "unable to resolve references", an error of the
    hook's node that leaves the step's own phase as it was."""
    opt = ", optional: true" if optional else ""
    templates = f"""
    - name: main
      steps:
        - - name: make
            template: make
            continueOn: {{failed: true}}
            hooks:
              exit:
                template: show
                arguments:
                  artifacts:
                    - {{name: message, from: "{{{{steps.make.outputs.artifacts.result}}}}"{opt}}}
    - name: make
      container: {{image: alpine, command: [sh, -c, "exit 3"]}}
      outputs:
        artifacts: [{{name: result, path: /tmp/result.txt}}]
    - name: show
      inputs:
        artifacts: [{{name: message, path: /tmp/message, optional: true}}]
      container: {{image: alpine, command: [sh, -c, "test -e /tmp/message || echo absent"]}}
    """
    code, rec = run(tmp_path, workflow("exit-missing", templates))
    by = nodes(rec)
    assert by["make"]["phase"] == "Failed"
    hook = by["make.onExit"]
    if optional:
        assert hook["phase"] == "Succeeded", hook
        assert result(hook) == "absent"
    else:
        assert hook["phase"] == "Error"
        assert "unable to resolve references" in hook["message"]
    assert code in (0, 1), rec
