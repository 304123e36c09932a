"""Argo features of the local runner, each a small workflow written here from Argo v4.1.2's
documentation or controller code (cited per test) and run with ``python -m workers run``:
real processes, real files, the run log read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_file, write_yaml


def run(
    tmp_path: Path, yaml_text: str, *args: str, runs: Path | None = None
) -> tuple[int, dict[str, Any]]:
    """Write the workflow, run it in remap mode (no bubblewrap needed), return the exit code
    and the newest run.json of the runs folder."""
    path = write_yaml(tmp_path, yaml_text)
    return run_file(path, runs or tmp_path / "runs", "--sandbox", "remap", *args)


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def params_of(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in (node.get("outputs") or {}).get("parameters") or []}


FAIL_FAST = "template has failed or errored children and failFast enabled"


def test_template_fail_fast_lets_running_steps_finish(tmp_path: Path) -> None:
    """Template ``failFast`` (operator.go checkParallelism; e2e
    TestWorkflowParallelismStepFailFast): a failed child stops new children, the running
    ones finish, then the template and its last step group are Failed with Argo's message."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: ff-steps}
        spec:
          entrypoint: main
          templates:
            - name: main
              parallelism: 2
              failFast: true
              steps:
                - - {name: step1, template: fail}
                  - {name: step2, template: slow}
            - name: fail
              container: {image: alpine, command: [sh, -c, "exit 1"]}
            - name: slow
              container: {image: alpine, command: [sh, -c, "sleep 0.5"]}
        """,
    )
    assert code == 1
    by = nodes(rec)
    assert rec["status"]["message"] == FAIL_FAST
    assert by["[0]"]["phase"] == "Failed"
    assert by["step1"]["phase"] == "Failed"
    assert by["step2"]["phase"] == "Succeeded"


def test_template_fail_fast_stops_a_loop(tmp_path: Path) -> None:
    """operator_test.go TestStepsFailFast: ``failFast`` with ``parallelism: 1`` over three
    items; the first item fails, the others never get a node."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: ff-loop}
        spec:
          entrypoint: main
          templates:
            - name: main
              parallelism: 1
              failFast: true
              steps:
                - - name: each
                    template: fail
                    withItems: [a, b, c]
            - name: fail
              container: {image: alpine, command: [sh, -c, "exit 1"]}
        """,
    )
    assert code == 1
    by = nodes(rec)
    assert by["each(0:a)"]["phase"] == "Failed"
    assert "each(1:b)" not in by and "each(2:c)" not in by
    assert by["ff-loop"]["message"] == FAIL_FAST


def test_template_fail_fast_never_stops_what_the_first_pass_started(tmp_path: Path) -> None:
    """Without ``parallelism`` the controller creates every item of a loop in one pass
    (steps.go executeStepGroup; checkParallelism sees no failure yet), so a failing item
    cannot keep its siblings from starting, however late their threads run here: all twelve
    have nodes, the eleven sleepers succeed, and failFast still fails the template."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: ff-first-pass}
        spec:
          entrypoint: main
          templates:
            - name: main
              failFast: true
              steps:
                - - name: each
                    template: maybe
                    arguments: {parameters: [{name: n, value: "{{item}}"}]}
                    withSequence: {count: "12"}
            - name: maybe
              inputs: {parameters: [{name: n}]}
              container:
                image: alpine
                command: [sh, -c, 'if [ {{inputs.parameters.n}} = 0 ]; then exit 1; fi; sleep 0.3']
        """,
    )
    assert code == 1
    by = nodes(rec)
    phases = [by[f"each({i}:{i})"]["phase"] for i in range(12)]
    assert phases == ["Failed"] + ["Succeeded"] * 11
    assert by["ff-first-pass"]["message"] == FAIL_FAST


@pytest.mark.parametrize("fail_fast", ["", "failFast: false"])
def test_dag_runs_every_branch_it_can_with_or_without_dag_fail_fast(
    tmp_path: Path, fail_fast: str
) -> None:
    """``dag.failFast`` (dag.go assessDAGPhase, v4.1.2): the DAG stays Running while any of its
    nodes runs and executeDAG starts each task whose dependencies resolve first, so after C
    fails, B's dependent D still runs; the DAG fails at the end either way."""
    code, rec = run(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {{name: dag-ff}}
        spec:
          entrypoint: main
          templates:
            - name: main
              dag:
                {fail_fast}
                tasks:
                  - {{name: B, template: slow}}
                  - {{name: C, template: fail}}
                  - {{name: D, template: ok, depends: B}}
            - name: ok
              container: {{image: alpine, command: [sh, -c, "exit 0"]}}
            - name: slow
              container: {{image: alpine, command: [sh, -c, "sleep 0.5"]}}
            - name: fail
              container: {{image: alpine, command: [sh, -c, "exit 1"]}}
        """,
    )
    assert code == 1
    by = nodes(rec)
    assert by["C"]["phase"] == "Failed"
    assert by["D"]["phase"] == "Succeeded"
    assert rec["status"]["phase"] == "Failed"


DAG_TARGET = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: dag-target-}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: target, value: E}]
  templates:
    - name: main
      dag:
        target: "{{workflow.parameters.target}}"
        tasks:
          - {name: A, template: echo}
          - {name: B, template: echo, depends: A}
          - {name: C, template: echo, depends: A}
          - {name: D, template: echo, depends: B && C}
          - {name: E, template: echo, depends: C}
    - name: echo
      container: {image: alpine, command: [echo, hi]}
"""


def test_dag_target_runs_the_targets_and_their_dependencies(tmp_path: Path) -> None:
    """examples/dag-targets.yaml and dag.go executeDAG: ``dag.target`` (space-separated,
    substituted) runs only the targets and the tasks they depend on."""
    code, rec = run(tmp_path, DAG_TARGET)
    assert code == 0
    assert sorted(n for n in nodes(rec) if n in "ABCDE") == ["A", "C", "E"]
    code, rec = run(tmp_path, DAG_TARGET, "-p", "target=B E")
    assert code == 0
    assert sorted(n for n in nodes(rec) if n in "ABCDE") == ["A", "B", "C", "E"]


def test_dag_target_naming_no_task_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go validateDAGTargets: "target 'X' is not defined"."""
    code, _ = run(tmp_path, DAG_TARGET.replace('"{{workflow.parameters.target}}"', "Z"))
    assert code == 2
    assert "dag.target: target 'Z' is not defined" in capsys.readouterr().err


def test_template_defaults_merge_under_each_template(tmp_path: Path) -> None:
    """docs/template-defaults.md and operator.go mergedTemplateDefaultsInto: a strategic merge,
    the template's values winning, ``env`` merged by name, type-specific defaults only for
    that type (a script template gets no ``container`` default)."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: tdefaults}
        spec:
          entrypoint: main
          templateDefaults:
            container:
              command: [sh, -c]
              env: [{name: A, value: from-default}, {name: B, value: from-default}]
            script:
              command: [sh]
          templates:
            - name: main
              steps:
                - - {name: plain, template: plain}
                  - {name: own, template: own}
                  - {name: scripted, template: scripted}
            - name: plain
              container: {image: alpine, args: ["echo $A $B"]}
            - name: own
              container:
                image: alpine
                args: ["echo $A $B"]
                env: [{name: B, value: own}]
            - name: scripted
              script: {image: alpine, source: "echo script"}
        """,
    )
    assert code == 0, rec
    by = nodes(rec)
    assert by["plain"]["outputs"]["result"] == "from-default from-default"
    assert by["own"]["outputs"]["result"] == "from-default own"
    assert by["scripted"]["outputs"]["result"] == "script"


def test_workflow_retry_strategy_retries_a_steps_template_whole(tmp_path: Path) -> None:
    """operator.go retryStrategy(): ``spec.retryStrategy`` applies to every template without
    its own, the steps entrypoint too, which is then retried whole (a Retry node whose
    attempts are Steps nodes ``name(n)``)."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: wf-retry}
        spec:
          entrypoint: main
          retryStrategy: {limit: 2}
          volumes: [{name: shared, persistentVolumeClaim: {claimName: shared}}]
          templates:
            - name: main
              steps:
                - - {name: flaky, template: flaky}
            - name: flaky
              retryStrategy: {limit: 0}
              container:
                image: alpine
                command: [sh, -c, "echo x >> /data/tries; [ $(wc -l < /data/tries) -ge 2 ]"]
                volumeMounts: [{name: shared, mountPath: /data}]
        """,
    )
    assert code == 0, rec
    root = rec["status"]["nodes"]["wf-retry"]
    assert root["type"] == "Retry" and root["phase"] == "Succeeded"
    by = nodes(rec)
    assert by["wf-retry(0)"]["type"] == "Steps" and by["wf-retry(0)"]["phase"] == "Failed"
    assert by["wf-retry(1)"]["phase"] == "Succeeded"
    # the pods share the volume (a claim is a folder of the run's)
    tries = tmp_path / "runs" / "wf-retry" / "volumes" / "shared" / "tries"
    assert tries.read_text().count("x") == 2


def test_inline_templates_in_steps_and_dags(tmp_path: Path) -> None:
    """docs/inline-templates.md (examples/steps-inline-workflow.yaml, dag-inline-workflow.yaml):
    a step or task may carry its template inline, inputs and outputs included."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: inline}
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: a
                    arguments: {parameters: [{name: who, value: steps}]}
                    inline:
                      inputs: {parameters: [{name: who}]}
                      container: {image: alpine, command: [echo, "hi {{inputs.parameters.who}}"]}
                - - name: b
                    template: graph
            - name: graph
              dag:
                tasks:
                  - name: t
                    inline:
                      script: {image: alpine, command: [sh], source: "echo from dag"}
        """,
    )
    assert code == 0, rec
    by = nodes(rec)
    assert by["a"]["outputs"]["result"] == "hi steps"
    assert by["t"]["outputs"]["result"] == "from dag"


def test_whole_aggregated_output_parameters_of_a_loop(tmp_path: Path) -> None:
    """operator.go processAggregateNodeOutputs: ``{{steps.X.outputs.parameters}}`` of a loop
    is a JSON list with one map of name to value per succeeded item, in item order."""
    code, rec = run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: agg}
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: gen
                    template: gen
                    withItems: [1, 2]
                    arguments: {parameters: [{name: n, value: "{{item}}"}]}
                - - name: show
                    template: show
                    arguments:
                      parameters: [{name: all, value: "{{steps.gen.outputs.parameters}}"}]
            - name: gen
              inputs: {parameters: [{name: n}]}
              container:
                image: alpine
                command: [sh, -c, "echo {{inputs.parameters.n}} > /tmp/a; echo x > /tmp/b"]
              outputs:
                parameters:
                  - {name: a, valueFrom: {path: /tmp/a}}
                  - {name: b, valueFrom: {path: /tmp/b}}
            - name: show
              inputs: {parameters: [{name: all}]}
              container: {image: alpine, command: [echo, "{{inputs.parameters.all}}"]}
        """,
    )
    assert code == 0, rec
    assert json.loads(nodes(rec)["show"]["outputs"]["result"]) == [
        {"a": "1", "b": "x"},
        {"a": "2", "b": "x"},
    ]


MEMO = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: memo-}
spec:
  entrypoint: main
  templates:
    - name: main
      memoize:
        key: "KEY"
        maxAge: "MAXAGE"
        cache: {configMap: {name: my-cache}}
      container:
        image: alpine
        command: [sh, -c, "date +%s%N > /tmp/out"]
      outputs:
        parameters: [{name: out, valueFrom: {path: /tmp/out}}]
"""


def test_memoize_second_run_hits_the_cache(tmp_path: Path) -> None:
    """docs/memoization.md and operator.go executeTemplate: a node whose key is in the cache
    takes the cached outputs without running (memoizationStatus.hit); the cache is the runs
    folder's, so a later run hits it; an entry older than ``maxAge`` is a miss."""
    text = MEMO.replace("KEY", "k-1")
    code, first = run(tmp_path, text.replace("MAXAGE", "1h"))
    assert code == 0
    root1 = first["status"]["nodes"][first["metadata"]["name"]]
    assert root1["memoizationStatus"] == {"hit": False, "key": "k-1", "cacheName": "my-cache"}
    code, second = run(tmp_path, text.replace("MAXAGE", "1h"))
    assert code == 0
    root2 = second["status"]["nodes"][second["metadata"]["name"]]
    assert root2["memoizationStatus"]["hit"] is True
    assert params_of(root2) == params_of(root1)  # a nanosecond stamp: the same run's
    assert second["workersRunner"]["pods"] == {}  # no process ran
    cache = json.loads((tmp_path / "runs" / ".caches" / "my-cache.json").read_text())
    assert json.loads(cache["data"]["k-1"])["nodeID"] == root1["id"]
    code, third = run(tmp_path, text.replace("MAXAGE", "0s"))
    assert code == 0
    root3 = third["status"]["nodes"][third["metadata"]["name"]]
    assert root3["memoizationStatus"]["hit"] is False
    assert params_of(root3) != params_of(root1)


def test_memoize_key_outside_argos_pattern_is_an_error(tmp_path: Path) -> None:
    """controller/cache/cache.go cacheKeyRegex ``^[a-zA-Z0-9][-a-zA-Z0-9]*$``: the node errors."""
    text = MEMO.replace("KEY", "not a key")
    code, rec = run(tmp_path, text.replace("MAXAGE", "1h"))
    assert code == 1
    root = rec["status"]["nodes"][rec["metadata"]["name"]]
    assert root["phase"] == "Error" and "invalid cache key" in root["message"]


SYNC = """
apiVersion: v1
kind: ConfigMap
metadata: {name: my-config}
data: {template: "2"}
---
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: sync}
spec:
  entrypoint: main
  volumes: [{name: shared, persistentVolumeClaim: {claimName: shared}}]
  templates:
    - name: main
      steps:
        - - {name: each, template: locked, withItems: [1, 2, 3, 4]}
    - name: locked
      synchronization:
        LOCK
      container:
        image: alpine
        command: [sh, -c, "cd /data; echo start $(date +%s%N) >> log; sleep 0.3; echo end $(date +%s%N) >> log"]
        volumeMounts: [{name: shared, mountPath: /data}]
"""


def _most_at_once(log: Path) -> int:
    events = sorted(
        (int(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(
    ("lock", "limit"),
    [
        ("mutexes: [{name: one-at-a-time}]", 1),
        ("semaphores: [{configMapKeyRef: {name: my-config, key: template}}]", 2),
    ],
)
def test_template_locks_bound_concurrent_nodes(tmp_path: Path, lock: str, limit: int) -> None:
    """docs/synchronization.md, template-level locks: a mutex admits one node at a time, a
    semaphore as many as its ConfigMap key says (here a ConfigMap in the file being run)."""
    code, rec = run(tmp_path, SYNC.replace("LOCK", lock))
    assert code == 0, rec
    assert _most_at_once(tmp_path / "runs" / "sync" / "volumes" / "shared" / "log") == limit


TYPES = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: types}
spec:
  entrypoint: main
  SPEC
  templates:
    - name: main
      TEMPLATE
      container: {image: alpine, CONTAINER}
"""


@pytest.mark.parametrize(
    ("slot", "good", "bad", "message"),
    [
        ("SPEC", "parallelism: 2", 'parallelism: "ten"', "spec.parallelism: expected an integer"),
        (
            "TEMPLATE",
            "retryStrategy: {limit: 1}",
            "retryStrategy: {limit: [3]}",
            ".limit: expected",
        ),
        ("CONTAINER", "command: [echo, hi]", 'command: "echo hi"', "command: expected a list"),
        (
            "TEMPLATE",
            "retryStrategy: {limit: 1, backoff: {duration: 1s}}",
            "retryStrategy: {limit: 1, backoff: {duration: soon}}",
            "backoff.duration: expected a duration",
        ),
        (
            "TEMPLATE",
            "synchronization: {mutexes: [{name: m}]}",
            "synchronization: {mutex: {name: m}}",
            "use mutexes",
        ),
    ],
)
def test_scalar_type_errors_are_refused_before_running(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    slot: str,
    good: str,
    bad: str,
    message: str,
) -> None:
    """The CRD's schema and the controller's Go types (workflow_types.go: parallelism int64,
    retryStrategy.limit IntOrString, command []string, backoff durations; v4's plural
    synchronization fields): a wrong type is one line naming the file and the field, exit 2,
    nothing run; the same document with the right type runs."""

    def doc(value: str) -> str:
        text = TYPES.replace(slot, value)
        for other in ("SPEC", "TEMPLATE"):
            text = text.replace(other, "description: x" if other == "TEMPLATE" else "")
        return text.replace("CONTAINER", "command: [echo, hi]")

    code, _ = run(tmp_path, doc(good))
    assert code == 0
    capsys.readouterr()
    code, rec = run(tmp_path, doc(bad), runs=tmp_path / "runs2")
    assert code == 2 and rec == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wf.yaml" in err[0] and message in err[0], err
