"""The local runner against Argo v4.1.2 where it used to differ ("Semantics to fix" of issue 11).

Each test writes a small workflow of its own, runs it with ``workers run`` (in-process; every
step is a real process) and reads run.json. The docstrings cite the Argo source that defines
the behaviour (controller, executor or validation code, or the documentation page).
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable
from runner_helpers import run_yaml

from workers.timeline import parameters


def run(tmp_path: Path, body: str, *args: str, name: str = "wf.yaml") -> tuple[int, dict[str, Any]]:
    """Write ``body`` (YAML, dedented) and run it; the exit code and run.json (empty if none)."""
    return run_yaml(tmp_path, body, *args, name=name)


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def workflow(name: str, *templates: str, extra: str = "") -> str:
    """A Workflow document whose spec.templates are the YAML lists ``templates`` (each dedented)."""
    listed = "".join(textwrap.dedent(t).strip("\n") + "\n" for t in templates)
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
        f"metadata:\n  generateName: {name}-\nspec:\n  entrypoint: main\n"
        + extra
        + "  templates:\n"
        + textwrap.indent(listed, "    ")
    )


# A pod that exits with {{inputs.parameters.code}}; `print`: echo its message.
EXIT = """
- name: exit
  inputs: {parameters: [{name: code, default: "0"}]}
  container: {image: alpine, command: [sh, -c, "exit {{inputs.parameters.code}}"]}
- name: print
  inputs: {parameters: [{name: msg}]}
  container: {image: alpine, command: [echo, "{{inputs.parameters.msg}}"]}
"""


# ---------------------------------------------------------------- 1. aggregation keeps types


def test_aggregated_outputs_keep_argo_types(tmp_path: Path) -> None:
    """Looped outputs as the controller aggregates them (workflow/controller/operator.go,
    processAggregateNodeOutputs and aggregatedJSONValueList): output parameter values are
    decoded only when every one is a JSON object or list, so numbers stay strings
    (``["1","3"]``) while objects become objects (keys sorted by Go's json.Marshal); results are
    each read as raw JSON, so printed numbers stay numbers and an object keeps its key order.
    The same in steps and in a DAG (tasks.X)."""
    templates = """
    - name: main
      steps:
        - - name: nums
            template: emit
            arguments: {parameters: [{name: v, value: "{{item}}"}, {name: out, value: "{{item}}"}]}
            withItems: [1, 3]
          - name: objs
            template: emit
            arguments:
              parameters:
                - {name: v, value: '{"n":1,"k":"{{item}}"}'}
                - {name: out, value: '{"z":1,"a":"{{item}}"}'}
            withItems: [a, b]
        - - name: show
            template: take
            arguments:
              parameters:
                - {name: params, value: "{{steps.nums.outputs.parameters.v}}"}
                - {name: results, value: "{{steps.nums.outputs.result}}"}
                - {name: objects, value: "{{steps.objs.outputs.parameters.v}}"}
                - {name: printed, value: "{{steps.objs.outputs.result}}"}
          - name: in-dag
            template: dag
    - name: dag
      dag:
        tasks:
          - name: nums
            template: emit
            arguments: {parameters: [{name: v, value: "{{item}}"}, {name: out, value: "{{item}}"}]}
            withItems: [5, 7]
          - name: show
            depends: nums
            template: take
            arguments:
              parameters:
                - {name: params, value: "{{tasks.nums.outputs.parameters.v}}"}
                - {name: results, value: "{{tasks.nums.outputs.result}}"}
                - {name: objects, value: "-"}
                - {name: printed, value: "-"}
    - name: emit
      inputs: {parameters: [{name: v}, {name: out}]}
      container:
        image: alpine
        command: [sh, -c, "printf '%s' \\"$0\\" > /tmp/v; echo \\"$1\\""]
        args: ["{{inputs.parameters.v}}", "{{inputs.parameters.out}}"]
      outputs: {parameters: [{name: v, valueFrom: {path: /tmp/v}}]}
    - name: take
      inputs: {parameters: [{name: params}, {name: results}, {name: objects}, {name: printed}]}
      container: {image: alpine, command: ["true"]}
    """
    code, rec = run(tmp_path, workflow("aggregate", templates))
    assert code == 0, rec["status"].get("message")
    shows = {
        "dag" if ".in-dag." in n["name"] else "steps": parameters(n)
        for n in rec["status"]["nodes"].values()
        if n["displayName"] == "show"
    }
    steps, dag = shows["steps"], shows["dag"]
    assert steps["params"] == '["1","3"]'
    assert steps["results"] == "[1,3]"
    assert steps["objects"] == '[{"k":"a","n":1},{"k":"b","n":1}]'
    assert steps["printed"] == '[{"z":1,"a":"a"},{"z":1,"a":"b"}]'
    assert dag["params"] == '["5","7"]'
    assert dag["results"] == "[5,7]"


def test_loop_results_that_are_not_json(tmp_path: Path) -> None:
    """A loop whose items print plain text: the controller reads each result with
    ``json.Unmarshal`` into a ``wfv1.Item`` (processAggregateNodeOutputs), which fails, so the
    template reading ``{{steps.X.outputs.result}}`` ends in Error (executeSteps returns the
    error). Results are captured only when the template reads them (hasOutputResultRef,
    operator.go), so an unread loop of text is fine."""
    read = """
    - name: main
      steps:
        - - name: words
            template: print
            arguments: {parameters: [{name: msg, value: "hello {{item}}"}]}
            withItems: [a, b]
        - - name: use
            template: print
            arguments: {parameters: [{name: msg, value: "{{steps.words.outputs.result}}"}]}
    """
    code, rec = run(tmp_path / "read", workflow("read", read, EXIT))
    assert code == 1
    by = nodes(rec)
    assert rec["status"]["phase"] == "Error"
    assert "not JSON" in rec["status"]["message"]
    assert by["words(0:a)"]["phase"] == by["words(1:b)"]["phase"] == "Succeeded"
    assert "use" not in by
    unread = read.replace("{{steps.words.outputs.result}}", "{{steps.words.status}}")
    code, rec = run(tmp_path / "unread", workflow("unread", unread, EXIT))
    assert code == 0, rec["status"].get("message")
    assert parameters(nodes(rec)["use"])["msg"] == "Succeeded"


# ---------------------------------------------------------------- 2. skipped producers


SKIPPING_PRODUCER = """
- name: produce
  outputs:
    parameters:
      - {name: msg, valueFrom: {path: /tmp/msg, default: from-producer}}
      - {name: items, valueFrom: {path: /tmp/items, default: '["a","b"]'}}
      - {name: bare, valueFrom: {path: /tmp/bare}}
  container: {image: alpine, command: [sh, -c, "echo real | tee /tmp/msg /tmp/items /tmp/bare"]}
- name: consume
  inputs: {parameters: [{name: in}]}
  container: {image: alpine, command: [echo, "{{inputs.parameters.in}}"]}
- name: consume-or-default
  inputs: {parameters: [{name: in, default: from-input}]}
  container: {image: alpine, command: [echo, "{{inputs.parameters.in}}"]}
"""


def test_outputs_of_a_skipped_producer_use_the_defaults(tmp_path: Path) -> None:
    """docs/variables.md, "Outputs of Skipped and Omitted Nodes" (and scope.go
    addSkippedNodeOutputsToScope / markAbsentOptionalArgs, common.ProcessArgs): a reference to a
    skipped producer's output is its ``valueFrom.default``; without one the output is absent
    and an argument that is only that reference lets the consumer's input default apply; a
    ``withParam`` expands from the default. As Argo's e2e dag-skipped-producer-default,
    dag-skipped-consumer-default and dag-skipped-withparam-default expect."""
    templates = """
    - name: main
      dag:
        tasks:
          - {name: producer, template: produce, when: "false"}
          - name: by-producer
            depends: "producer.Succeeded || producer.Skipped"
            template: consume
            arguments: {parameters: [{name: in, value: "{{tasks.producer.outputs.parameters.msg}}"}]}
          - name: by-consumer
            depends: "producer.Succeeded || producer.Skipped"
            template: consume-or-default
            arguments: {parameters: [{name: in, value: "{{tasks.producer.outputs.parameters.bare}}"}]}
          - name: fan
            depends: "producer.Succeeded || producer.Skipped"
            template: consume
            arguments: {parameters: [{name: in, value: "{{item}}"}]}
            withParam: "{{tasks.producer.outputs.parameters.items}}"
    """
    code, rec = run(tmp_path, workflow("skipped", templates, SKIPPING_PRODUCER))
    assert code == 0, rec["status"].get("message")
    by = nodes(rec)
    assert by["producer"]["phase"] == "Skipped"
    assert parameters(by["by-producer"]) == {"in": "from-producer"}
    assert parameters(by["by-consumer"]) == {"in": "from-input"}
    assert parameters(by["fan(0:a)"]) == {"in": "a"}
    assert parameters(by["fan(1:b)"]) == {"in": "b"}


def test_an_absent_output_nothing_handles_is_an_error(tmp_path: Path) -> None:
    """docs/variables.md: an unhandled reference to an absent output "fails the node with a
    terminal error". In a DAG (Argo's e2e TestDAGOmittedOutputRef) the consumer of an Omitted
    task's defaultless output is Error and so is the workflow; in steps (TestStepsSkippedOutputRef)
    the errored step fails its step group and the workflow is Failed."""
    dag = """
    - name: main
      dag:
        tasks:
          - {name: a, template: produce}
          - {name: b, template: produce, depends: a.Failed}
          - name: c
            depends: "a && (b || b.Omitted)"
            template: consume
            arguments: {parameters: [{name: in, value: "{{tasks.b.outputs.parameters.bare}}"}]}
    """
    code, rec = run(tmp_path / "dag", workflow("omitted", dag, SKIPPING_PRODUCER))
    assert code == 1
    by = nodes(rec)
    assert (by["a"]["phase"], by["b"]["phase"], by["c"]["phase"]) == (
        "Succeeded",
        "Omitted",
        "Error",
    )
    assert "absent optional" in by["c"]["message"]
    assert rec["status"]["phase"] == "Error"
    steps = """
    - name: main
      steps:
        - - {name: producer, template: produce, when: "false"}
        - - name: consumer
            template: consume-or-default
            when: "'{{steps.producer.outputs.parameters.bare}}' != 'x'"
    """
    code, rec = run(tmp_path / "steps", workflow("when-absent", steps, SKIPPING_PRODUCER))
    assert code == 1
    assert rec["status"]["phase"] == "Failed"
    errored = [n for n in rec["status"]["nodes"].values() if n["phase"] == "Error"]
    assert errored and "absent optional" in errored[0]["message"]


# ---------------------------------------------------------------- 3. DAG phase and depends


@pytest.mark.parametrize(
    ("tasks", "phase"),
    [
        # a failure under an Omitted leaf fails the DAG (the leaf inherits its branch's phase)
        (
            "- {name: a, template: exit, arguments: {parameters: [{name: code, value: '3'}]}}\n"
            "- {name: b, template: exit, depends: a}\n",
            "Failed",
        ),
        # a failure a task after it handles (it ran) does not
        (
            "- {name: a, template: exit, arguments: {parameters: [{name: code, value: '3'}]}}\n"
            "- {name: b, template: exit, depends: a.Failed}\n",
            "Succeeded",
        ),
        # an Errored leaf (an output that was not written) makes the DAG Error, not Failed
        ("- {name: a, template: exit}\n- {name: b, template: no-output, depends: a}\n", "Error"),
        # continueOn is honoured by `dependencies`: the failed task counts as done
        (
            "- name: a\n  template: exit\n  continueOn: {failed: true}\n"
            "  arguments: {parameters: [{name: code, value: '3'}]}\n"
            "- {name: b, template: exit, dependencies: [a]}\n",
            "Succeeded",
        ),
    ],
)
def test_dag_phase_follows_its_leaves(tmp_path: Path, tasks: str, phase: str) -> None:
    """assessDAGPhase (workflow/controller/dag.go): a DAG's phase is its leaves' branch phase,
    an Omitted leaf inheriting the Failed or Error of the branch above it; a bare dependency is
    expandDependency's ``(A.Succeeded || A.Skipped || A.Daemoned)`` plus ``A.Failed`` /
    ``A.Errored`` under continueOn (workflow/common/ancestry.go)."""
    templates = (
        "- name: main\n  dag:\n    tasks:\n"
        + textwrap.indent(tasks, "      ")
        + textwrap.dedent(EXIT)
        + "- name: no-output\n  container: {image: alpine, command: ['true']}\n"
        + "  outputs: {parameters: [{name: x, valueFrom: {path: /tmp/never-written}}]}\n"
    )
    code, rec = run(tmp_path, workflow("dag-phase", templates))
    assert rec["status"]["phase"] == phase, rec["status"].get("message")
    assert code == (0 if phase == "Succeeded" else 1)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (
            "- {name: a, template: exit}\n- {name: b, template: exit, depends: a.Completed}\n",
            "task result 'Completed' for task 'a' is invalid",
        ),
        (
            "- {name: a, template: exit, continueOn: {failed: true}}\n"
            "- {name: b, template: exit, depends: a}\n",
            "cannot use 'continueOn' when using 'depends'",
        ),
        (
            "- {name: a, template: exit}\n- {name: b, template: exit, depends: a}\n"
            "- {name: c, template: exit, dependencies: [a]}\n",
            "cannot use both 'depends' and 'dependencies'",
        ),
        (
            "- {name: a, template: exit}\n- {name: b, template: exit, depends: a.AnySucceeded}\n",
            "items-based condition",
        ),
    ],
)
def test_depends_rejected_as_argo_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tasks: str, message: str
) -> None:
    """What validateDAG (workflow/validate/validate.go) rejects before anything runs:
    common.ValidateTaskResults knows no ``.Completed``; continueOn is refused in a DAG that uses
    depends; depends and dependencies cannot be mixed; .AnySucceeded/.AllFailed need a loop."""
    templates = "- name: main\n  dag:\n    tasks:\n" + textwrap.indent(tasks, "      ") + EXIT
    code, rec = run(tmp_path, workflow("rejected", templates))
    assert code == 2
    assert rec == {}
    err = capsys.readouterr().err
    assert message in err and "wf.yaml" in err


# ---------------------------------------------------------------- 4. retryStrategy


def test_empty_retry_strategy_retries_until_success(tmp_path: Path) -> None:
    """``retryStrategy: {}`` has no limit, and processNodeRetries (workflow/controller/
    operator.go) stops on "No more retries left" only when ``limit`` is set: the step is retried
    until it succeeds (Argo's examples/retry-container-to-completion.yaml)."""
    templates = """
    - name: main
      retryStrategy: {}
      container: {image: alpine, command: [sh, -c, "exit $(( {{retries}} < 4 ))"]}
    """
    code, rec = run(tmp_path, workflow("retry-forever", templates))
    assert code == 0, rec["status"].get("message")
    attempts = [n for n in rec["status"]["nodes"].values() if n["type"] == "Pod"]
    assert sorted(n["phase"] for n in attempts) == ["Failed"] * 4 + ["Succeeded"]


@pytest.mark.parametrize(
    ("mode", "tries", "message"),
    [
        ("retry", 3, "No more retries left"),
        ("stop", 1, "retryStrategy.expression evaluated to false"),
    ],
)
def test_retry_strategy_sees_input_parameters(
    tmp_path: Path, mode: str, tries: int, message: str
) -> None:
    """The controller substitutes the template, retryStrategy included, before it runs it, so
    ``{{inputs.parameters.X}}`` works in ``limit`` and in ``expression`` (as in Argo's
    examples/retry-script.yaml); the final message is processNodeRetries'."""
    templates = """
    - name: main
      steps:
        - - name: try
            template: flaky
            arguments: {parameters: [{name: mode, value: "{{workflow.parameters.mode}}"}]}
    - name: flaky
      inputs: {parameters: [{name: mode}, {name: limit, default: "2"}]}
      retryStrategy:
        limit: "{{inputs.parameters.limit}}"
        expression: "'{{inputs.parameters.mode}}' == 'retry'"
      container: {image: alpine, command: [sh, -c, "exit 1"]}
    """
    extra = "  arguments: {parameters: [{name: mode}]}\n"
    code, rec = run(tmp_path, workflow("retry-expr", templates, extra=extra), "-p", f"mode={mode}")
    assert code == 1
    retry = nodes(rec)["try"]
    assert retry["type"] == "Retry"
    assert len([n for n in rec["status"]["nodes"].values() if n["type"] == "Pod"]) == tries
    assert retry["message"] == message


# ---------------------------------------------------------------- 5. scripts


def test_script_file_is_executable_and_follows_args(tmp_path: Path) -> None:
    """executeScript (workflow/controller/operator.go) appends the script's path after the
    container's args (``command args SCRIPT``), and the executor stages it with mode 0755
    (workflow/executor/executor.go StageFiles)."""
    templates = r"""
    - name: main
      script:
        image: alpine
        command: [sh, -c, 'echo "args=$0"; stat -c %a "$1"; "$1"']
        args: [first]
        source: |
          #!/bin/sh
          echo "script ran"
    """
    code, rec = run(tmp_path, workflow("script", templates))
    assert code == 0, rec["status"].get("message")
    root = rec["status"]["nodes"][rec["metadata"]["name"]]
    assert root["outputs"]["result"] == "args=first\n755\nscript ran"


# ---------------------------------------------------------------- 7. enum


def test_enum_is_checked_on_arguments_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Argo checks ``enum`` where validateArgumentsValues (workflow/validate/validate.go) looks:
    on spec.arguments and on a step's arguments. A template's ``inputs.parameters[].enum`` is not
    checked, before or while running: a step may pass it any value."""
    templates = """
    - name: main
      steps:
        - - name: pick
            template: choose
            arguments: {parameters: [{name: colour, value: "{{workflow.parameters.colour}}"}]}
    - name: choose
      inputs: {parameters: [{name: colour, enum: [red, green]}]}
      container: {image: alpine, command: [echo, "{{inputs.parameters.colour}}"]}
    """
    extra = "  arguments: {parameters: [{name: colour, value: blue, enum: [blue, purple]}]}\n"
    code, rec = run(tmp_path / "ok", workflow("enum", templates, extra=extra))
    assert code == 0, rec["status"].get("message")
    assert nodes(rec)["pick"]["outputs"]["result"] == "blue"
    code, rec = run(tmp_path / "bad", workflow("enum", templates, extra=extra), "-p", "colour=red")
    assert code == 2 and rec == {}
    assert "spec.arguments.parameters[colour]" in capsys.readouterr().err
    step_enum = templates.replace(
        'value: "{{workflow.parameters.colour}}"}', 'value: "blue", enum: [red]}'
    )
    code, rec = run(tmp_path / "step", workflow("enum", step_enum, extra=extra))
    assert code == 2 and rec == {}
    assert "step pick: arguments.parameters: colour=" in capsys.readouterr().err


# ---------------------------------------------------------------- 8. result size


def test_result_keeps_the_last_256_kb(tmp_path: Path) -> None:
    """The executor's CaptureScriptResult (workflow/executor/executor.go) trims one newline and,
    past ``maxAnnotationSize`` (256 kB), keeps only the last 256 kB, with a warning; the run log
    says so too."""
    templates = """
    - name: main
      container:
        image: alpine
        command: [sh, -c, "echo START; head -c 300000 /dev/zero | tr '\\\\0' x; echo END"]
    """
    code, rec = run(tmp_path, workflow("big-result", templates))
    assert code == 0, rec["status"].get("message")
    result = rec["status"]["nodes"][rec["metadata"]["name"]]["outputs"]["result"]
    assert len(result) == 256 * 1024
    assert result.endswith("xxxEND") and "START" not in result
    assert any("256 kB" in note for note in rec["workersRunner"]["notes"])


# ---------------------------------------------------------------- 9. loop items


def test_loop_items_render_and_name_as_argo(tmp_path: Path) -> None:
    """processItem and generateNodeName (workflow/controller/operator.go): a map item is named
    ``(i:k:v,...)`` from its sorted ``key:value`` pairs, parentheses dropped, a list ``(i:[a b])``;
    ``{{item}}`` of a map is its JSON with the top-level keys sorted while a nested map keeps its
    order as a withParam item (raw JSON) has it; ``{{item.KEY}}`` is each top-level value, a
    number as written. A withItems item comes back from the cluster with every map sorted."""
    templates = """
    - name: main
      steps:
        - - {name: gen, template: gen}
        - - name: param
            template: show
            arguments: {parameters: [{name: all, value: "{{item}}"}, {name: b, value: "{{item.b}}"}, {name: a, value: "{{item.a}}"}]}
            withParam: "{{steps.gen.outputs.result}}"
          - name: items
            template: show
            arguments: {parameters: [{name: all, value: "{{item}}"}, {name: b, value: "{{item.b}}"}, {name: a, value: "{{item.a}}"}]}
            withItems:
              - {b: {y: 1, x: 2}, a: "p(q)"}
          - name: lists
            template: show
            arguments: {parameters: [{name: all, value: "{{item}}"}, {name: b, value: "-"}, {name: a, value: "-"}]}
            withItems:
              - [1, x]
    - name: gen
      container:
        image: alpine
        command: [echo, '[{"b": {"y": 1, "x": 2}, "a": 1.50}]']
    - name: show
      inputs: {parameters: [{name: all}, {name: b}, {name: a}]}
      container: {image: alpine, command: ["true"]}
    """
    code, rec = run(tmp_path, workflow("items", templates))
    assert code == 0, rec["status"].get("message")
    by = nodes(rec)
    assert parameters(by['param(0:a:1.50,b:{"y":1,"x":2})']) == {
        "all": '{"a":1.50,"b":{"y":1,"x":2}}',
        "b": '{"y":1,"x":2}',
        "a": "1.50",
    }
    assert parameters(by['items(0:a:pq,b:{"x":2,"y":1})']) == {
        "all": '{"a":"p(q)","b":{"x":2,"y":1}}',
        "b": '{"x":2,"y":1}',
        "a": "p(q)",
    }
    assert parameters(by["lists(0:[1 x])"])["all"] == '[1,"x"]'


# ---------------------------------------------------------------- 10. clusterScope


def test_cluster_scope_selects_the_cluster_workflow_template(tmp_path: Path) -> None:
    """A templateRef with ``clusterScope: true`` names a ClusterWorkflowTemplate, one without it
    a WorkflowTemplate (workflow/templateresolution; fetchWorkflowSpec in operator.go for
    workflowTemplateRef): two templates of one name, one of each kind, are two templates."""
    library = tmp_path / "library"
    library.mkdir()
    for kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        (library / f"{kind}.yaml").write_text(
            f"apiVersion: argoproj.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: greet\n"
            "spec:\n  templates:\n    - name: hello\n"
            f"      container: {{image: alpine, command: [echo, 'from {kind}']}}\n"
        )
    templates = """
    - name: main
      steps:
        - - name: namespaced
            templateRef: {name: greet, template: hello}
          - name: cluster
            templateRef: {name: greet, template: hello, clusterScope: true}
    """
    code, rec = run(tmp_path, workflow("scope", templates), "--manifests", str(library))
    assert code == 0, rec["status"].get("message")
    by = nodes(rec)
    assert by["namespaced"]["outputs"]["result"] == "from WorkflowTemplate"
    assert by["cluster"]["outputs"]["result"] == "from ClusterWorkflowTemplate"


# ---------------------------------------------------------------- found by the Argo corpus


def test_workflow_parameters_json_reaches_expression_tags(tmp_path: Path) -> None:
    """docs/variables.md: ``workflow.parameters.json`` is every workflow parameter as a JSON
    string (the bare ``workflow.parameters`` is deprecated "as this doesn't work with expression
    tags"); examples/conditionals.yaml reads it with ``jsonpath``."""
    templates = """
    - name: main
      steps:
        - - name: pick
            template: print
            arguments:
              parameters:
                - {name: msg, value: "{{=jsonpath(workflow.parameters.json, '$[1].value')}}"}
    """
    extra = "  arguments:\n    parameters: [{name: a, value: one}, {name: b, value: two}]\n"
    code, rec = run(tmp_path, workflow("params-json", templates, EXIT, extra=extra))
    assert code == 0, rec
    assert nodes(rec)["pick"]["outputs"]["result"] == "two"


def test_an_input_default_sees_the_inputs_before_it(tmp_path: Path) -> None:
    """The controller substitutes a template with its inputs once they are resolved, its own
    inputs section included (common.ProcessArgs then SubstituteParams), so a default may use an
    earlier input, in a tag or in an expression (test/e2e/functional/steps-when-expr-filter)."""
    templates = """
    - name: main
      steps:
        - - name: list
            template: listing
            arguments: {parameters: [{name: test, value: "true"}]}
    - name: listing
      inputs:
        parameters:
          - name: test
          - name: plain
            default: "test={{inputs.parameters.test}}"
          - name: list
            default: "{{= concat(['always'], inputs.parameters.test == 'true' ? ['test'] : []) | toJSON() }}"
      container:
        image: alpine
        command: [echo, "{{inputs.parameters.plain}} {{inputs.parameters.list}}"]
    """
    code, rec = run(tmp_path, workflow("input-order", templates))
    assert code == 0, rec
    plain, _, listed = nodes(rec)["list"]["outputs"]["result"].partition(" ")
    assert plain == "test=true"
    assert json.loads(listed) == ["always", "test"]  # expr-lang's toJSON indents


def test_a_container_without_command_or_args_needs_its_entrypoint(tmp_path: Path) -> None:
    """Kubernetes runs an image's ENTRYPOINT and CMD when a container gives neither command nor
    args; a local run does not know them, so the workflow is refused before anything runs
    (examples/daemon-nginx.yaml: image nginx), unless ``--entrypoint`` names them. A script
    template without command runs the named ENTRYPOINT with its args too (argosay's
    ``script: {args: [echo, "[]"]}`` in test/e2e/functional/loops-empty-param.yaml)."""
    templates = """
    - name: main
      steps:
        - - name: server
            template: server
          - name: scripted
            template: scripted
    - name: server
      container: {image: example/server:1.0}
    - name: scripted
      script: {image: example/server:1.0, args: [scripted, run]}
    """
    body = workflow("entrypoint", templates)
    code, rec = run(tmp_path / "a", body)
    assert code == 2 and rec == {}
    code, rec = run(tmp_path / "b", body, "--entrypoint", "example/server=echo served")
    assert code == 0, rec
    by = nodes(rec)
    assert by["server"]["outputs"]["result"] == "served"
    assert by["scripted"]["outputs"]["result"] == "served scripted run"


@pytest.mark.parametrize(("value", "go"), [(".nan", "NaN"), (".inf", "+Inf"), ("-.inf", "-Inf")])
def test_a_float_json_cannot_hold_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, go: str
) -> None:
    """YAML's ``.nan`` and ``.inf`` have no JSON form: ``argo submit`` and the API server
    marshal the workflow with encoding/json, which fails with "json: unsupported value", so no
    item of it ever runs (the runner used to start the loop and crash in it)."""
    templates = f"""
    - name: main
      steps:
        - - name: each
            template: echo
            arguments: {{parameters: [{{name: x, value: "{{{{item}}}}"}}]}}
            withItems: [1, {value}]
    - name: echo
      inputs: {{parameters: [{{name: x}}]}}
      container: {{image: alpine, command: [echo, "{{{{inputs.parameters.x}}}}"]}}
    """
    code, rec = run(tmp_path, workflow("floats", templates))
    assert code == 2 and rec == {}
    err = capsys.readouterr().err
    assert f"spec.templates[0].steps[0][0].withItems[1]: json: unsupported value: {go}" in err
    assert "Traceback" not in err


def test_an_exit_hook_receives_the_steps_output_artifact(tmp_path: Path) -> None:
    """docs/lifecyclehook.md and examples/exit-handler-with-artifacts.yaml: a step's exit hook
    may pass the step's output artifacts on as its arguments (``from:
    "{{steps.NAME.outputs.artifacts.X}}"``; exit_handler.go resolveExitTmplArgument)."""
    templates = """
    - name: main
      steps:
        - - name: make
            template: make
            hooks:
              exit:
                template: show
                arguments:
                  artifacts:
                    - {name: message, from: "{{steps.make.outputs.artifacts.result}}"}
    - name: make
      container: {image: alpine, command: [sh, -c, "echo Welcome > /tmp/result.txt"]}
      outputs:
        artifacts: [{name: result, path: /tmp/result.txt}]
    - name: show
      inputs:
        artifacts: [{name: message, path: /tmp/message}]
      container: {image: alpine, command: [cat, /tmp/message]}
    """
    code, rec = run(tmp_path, workflow("exit-artifact", templates))
    assert code == 0, rec
    assert nodes(rec)["make.onExit"]["outputs"]["result"] == "Welcome"


def test_workflow_metadata_variables(tmp_path: Path) -> None:
    """docs/variables.md, Global: ``workflow.mainEntrypoint``, ``workflow.labels.<NAME>`` and
    ``.json``, ``workflow.annotations.<NAME>``, ``workflow.creationTimestamp.RFC3339``; and
    ``workflow.scheduledTime`` "only available for CronWorkflow" (a local run of one is
    scheduled now: its creation time)."""
    body = """
    apiVersion: argoproj.io/v1alpha1
    kind: CronWorkflow
    metadata:
      name: meta
      labels: {team: data}
      annotations: {owner: ops}
    spec:
      schedules: ["0 * * * *"]
      workflowSpec:
        entrypoint: main
        templates:
          - name: main
            container:
              image: alpine
              command: [echo]
              args:
                - >-
                  {{workflow.mainEntrypoint}} {{workflow.labels.team}} {{workflow.labels.json}}
                  {{workflow.annotations.owner}}
                  {{=workflow.scheduledTime == workflow.creationTimestamp.RFC3339}}
    """
    code, rec = run(tmp_path, body)
    assert code == 0, rec
    root = next(iter(rec["status"]["nodes"].values()))
    assert root["outputs"]["result"] == 'main data {"team":"data"} ops true'


# ---------------------------------------------------------------- continueOn in steps


@pytest.mark.parametrize(
    ("continue_on", "phase", "last"),
    [("{failed: true}", "Succeeded", "Succeeded"), ("{error: true}", "Failed", None)],
)
def test_a_continued_failed_step_leaves_the_steps_succeeded(
    tmp_path: Path, continue_on: str, phase: str, last: str | None
) -> None:
    """examples/continue-on-fail.yaml's shape. workflow/controller/steps.go executeStepGroup
    fails a step group only for a child that is FailedOrError and not ``step.ContinuesOn`` its
    phase; pkg/apis/workflow/v1alpha1/workflow_types.go ``continues`` matches Failed with
    ``continueOn.failed`` and Error with ``continueOn.error`` only. The next group runs and the
    steps node Succeeds, which operator.go operate maps to WorkflowSucceeded; a failed exit
    (not an error) under ``continueOn.error`` fails the group and the workflow."""
    main = f"""
    - name: main
      steps:
        - - {{name: a, template: exit}}
        - - {{name: b, template: exit}}
          - name: c
            template: exit
            arguments: {{parameters: [{{name: code, value: "1"}}]}}
            continueOn: {continue_on}
        - - {{name: d, template: exit}}
    """
    code, rec = run(tmp_path, workflow("continue", main, EXIT))
    assert rec["status"]["phase"] == phase
    assert code == (0 if phase == "Succeeded" else 1)
    found = nodes(rec)
    assert found["c"]["phase"] == "Failed"
    assert found.get("d", {}).get("phase") == last


# ---------------------------------------------------------------- --image-path


@pytest.mark.parametrize("sandbox", ["auto", "remap"])
def test_image_path_puts_an_image_s_programs_first_for_its_pods_only(
    tmp_path: Path, sandbox: str
) -> None:
    """A local pod runs this machine's programs; ``--image-path IMAGE=DIR`` puts DIR first on
    PATH in the pods of IMAGE (any tag when given without one), as an image's own /bin would
    be: the check before running looks the program up there too. Not Argo behaviour (a cluster
    runs the image), a way to give a local pod the image's programs where they differ."""
    tools = tmp_path / "image-bin"
    tools.mkdir(parents=True)
    tool = tools / "imagetool"
    tool.write_text("#!/bin/sh\necho from-the-image\n")
    tool.chmod(0o755)
    templates = """
    - name: main
      steps:
        - - {name: own, template: own}
          - {name: which, template: which}
    - name: own
      container: {image: "example/tools:1.2", command: [imagetool]}
    - name: which
      container: {image: other, command: [sh, -c, "command -v imagetool || echo none"]}
    """
    body = workflow("image-path", templates)
    code, rec = run(
        tmp_path / "a", body, "--image-path", f"example/tools={tools}", "--sandbox", sandbox
    )
    assert code == 0, rec.get("status", {}).get("message")
    found = nodes(rec)
    assert found["own"]["outputs"]["result"] == "from-the-image"
    assert found["which"]["outputs"]["result"] == "none"
    # without it the program is not on this machine: refused before running
    assert run(tmp_path / "b", body)[0] == 2


def test_busybox_applets_give_an_alpine_pod_ash(tmp_path: Path) -> None:
    """test/e2e/functional/dag-with-retries.yaml runs ``exit $(( ${RANDOM} % 5 ))`` in
    alpine:3.23, whose sh is busybox's ash ($RANDOM, ``[[``); this machine's sh may be dash,
    which has neither. With busybox's applets linked in a folder given by --image-path, an
    alpine pod has ash; another image keeps this machine's sh."""
    if shutil.which("busybox") is None:
        unavailable("busybox (Debian package busybox) is not installed")
    applets = tmp_path / "applets"
    applets.mkdir(parents=True)
    (applets / "sh").symlink_to(shutil.which("busybox") or "")
    script = 'r=${RANDOM}; [[ -n "$r" ]] && echo "$r"'
    templates = f"""
    - name: main
      steps:
        - - {{name: ash, template: ash}}
    - name: ash
      container: {{image: "alpine:3.23", command: [sh, -c, {json.dumps(script)}]}}
    """
    code, rec = run(tmp_path / "a", workflow("ash", templates), "--image-path", f"alpine={applets}")
    assert code == 0, rec.get("status", {}).get("message")
    assert nodes(rec)["ash"]["outputs"]["result"].isdigit()


@pytest.mark.parametrize("sandbox", ["auto", "remap"])
def test_a_tty_container_reads_a_terminal_and_others_read_nothing(
    tmp_path: Path, sandbox: str
) -> None:
    """Kubernetes core/v1 Container: ``tty`` "Whether this container should allocate a TTY for
    itself"; ``stdin``: "If this is not set, reads from stdin in the container will always
    result in EOF" (test/e2e/functional/tty.yaml checks ``-t 0`` both ways). A local pod's
    stdin is never the runner's own terminal."""
    probe = "if [ -t 0 ]; then echo tty; else echo none; fi; cat; echo end"
    templates = f"""
    - name: main
      steps:
        - - {{name: with-tty, template: with-tty}}
          - {{name: without, template: without}}
    - name: with-tty
      container: {{image: alpine, tty: true, stdin: true, command: [sh, -c, "[ -t 0 ] && echo tty"]}}
    - name: without
      container: {{image: alpine, command: [sh, -c, {json.dumps(probe)}]}}
    """
    code, rec = run(tmp_path, workflow("tty", templates), "--sandbox", sandbox)
    assert code == 0, rec.get("status", {}).get("message")
    found = nodes(rec)
    assert found["with-tty"]["outputs"]["result"] == "tty"
    assert found["without"]["outputs"]["result"] == "none\nend"
