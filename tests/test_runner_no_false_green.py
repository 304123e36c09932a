"""The local runner against Argo v4.1.2 where it turned an error green, dropped a field or
worded a message its own way (issue 24, item 3).

Each test is written from Argo's source, cited in its docstring (file and function), and runs a
small workflow of its own through ``workers run`` (in-process; every step a real process), or
checks one function against the values Argo's own tests expect.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_yaml

from argo_local.expr import gojson, gotime, params
from argo_local.model.nodes import pod_name_of


def run(tmp_path: Path, body: str, *args: str) -> tuple[int, dict[str, Any]]:
    return run_yaml(tmp_path, body, *args)


def workflow(name: str, *templates: str, extra: str = "", generate: bool = False) -> str:
    """A Workflow named ``name`` (``generateName`` with ``generate``) whose templates are the YAML
    lists ``templates``; ``extra`` goes into its spec before them."""
    listed = "".join(textwrap.dedent(t).strip("\n") + "\n" for t in templates)
    meta = f"generateName: {name}-" if generate else f"name: {name}"
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
        f"metadata:\n  {meta}\nspec:\n  entrypoint: main\n"
        + extra
        + "  templates:\n"
        + textwrap.indent(listed, "    ")
    )


def by_display(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def go_fnv32a(text: str) -> int:
    """Go's hash/fnv New32a, written here from its definition (offset basis 2166136261, prime
    16777619, xor then multiply per byte) so the test does not trust the runner's own."""
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) % 2**32
    return h


# ---------------------------------------------------------------- {{pod.name}}


def test_pod_name_matches_argos_generate_pod_name() -> None:
    """workflow/util/pod_name.go GeneratePodName (v2): the workflow's own node is the workflow's
    name; any other ``WORKFLOW-TEMPLATE-FNV32a(node name)``, ``WORKFLOW-FNV32a`` without a template
    name, the prefix cut to 253 - 10 - 1 characters. Inputs and outputs of Argo's tests:
    workflow/util/pod_name_v2_test.go TestPodNameV2 (short, long and inline cases) and
    cmd/argo/commands/common/get_test.go (node ids a cluster made: many-items-z26lj-2619926859 is
    the FNV32a of ``many-items-z26lj[0].sleep(9:nine)``, the name GeneratePodName hashes)."""
    h = go_fnv32a("nodename")
    assert pod_name_of("wfname", "nodename", "templatename") == f"wfname-templatename-{h}"
    long_wf = (
        "alongworkflownamethatincludeslotsofdetailsandisessentiallyalargerunonsentencewith"
        "poorstyleandnopunctuationtobehadwhatsoever"
    )
    long_tmpl = (
        "alongtemplatenamethatincludessliightlymoredetailsandiscertainlyalargerunonstnence"
        "withevenworsestylisticconcernsandpreposterouslyeliminatespunctuation"
    )
    prefix = f"{long_wf}-{long_tmpl}"[: 253 - 10 - 1]
    assert pod_name_of(long_wf, "nodename", long_tmpl) == f"{prefix}-{h}"
    assert pod_name_of("wfname", "stp.inline", "") == f"wfname-{go_fnv32a('stp.inline')}"
    assert pod_name_of("wfname", "wfname", "templatename") == "wfname"
    for node, node_id in (
        ("many-items-z26lj[0].sleep(9:nine)", "2619926859"),
        ("many-items-z26lj[0].sleep(10:ten)", "1052882686"),
        ("many-items-z26lj[0].sleep(11:eleven)", "3011405271"),
    ):
        assert pod_name_of("many-items-z26lj", node, "sleep") == f"many-items-z26lj-sleep-{node_id}"


def test_pod_name_of_each_retry_attempt_is_one_name_everywhere(tmp_path: Path) -> None:
    """workflow/controller/operator.go executeTemplate: a retried pod's attempts are child nodes
    ``NAME(N)`` (attempt 0 included) and ``{{pod.name}}`` is getPodName of that child's name
    (GeneratePodName: fnv32a of the attempt node's name, the ``(N)`` suffix included); a pod
    without retryStrategy is named from its own node name. workflow.failures
    (operator.go, its podName from GeneratePodName) names the same pods; so does the report."""
    body = workflow(
        "podnames",
        """
        - name: main
          steps:
          - - {name: flaky, template: flaky}
            - {name: once, template: once}
        - name: flaky
          retryStrategy: {limit: 2}
          script:
            image: python:3.12
            command: [python]
            source: |
              print("{{pod.name}}")
              raise SystemExit(0 if {{retries}} == 2 else 1)
        - name: once
          script: {image: python:3.12, command: [python], source: 'print("{{pod.name}}")'}
        - name: report
          script:
            image: python:3.12
            command: [python]
            source: |
              print({{workflow.failures}})
        """,
        extra="  onExit: report\n",
    )
    code, rec = run(tmp_path, body)
    assert code == 0, rec.get("status", {}).get("message")
    nodes = by_display(rec)
    side = rec["workersRunner"]["pods"]
    expected = {
        f"flaky({n})": f"podnames-flaky-{go_fnv32a(f'podnames[0].flaky({n})')}" for n in range(3)
    }
    for display, name in expected.items():
        assert side[nodes[display]["id"]]["podName"] == name, display
    # the last attempt printed its {{pod.name}}, the step without retries too
    assert nodes["flaky(2)"]["outputs"]["result"] == expected["flaky(2)"]
    once = f"podnames-once-{go_fnv32a('podnames[0].once')}"
    assert nodes["once"]["outputs"]["result"] == once
    assert side[nodes["once"]["id"]]["podName"] == once
    failures = json.loads(nodes["podnames.onExit"]["outputs"]["result"])
    listed = {f["displayName"]: f["podName"] for f in failures}
    assert listed == {"flaky(0)": expected["flaky(0)"], "flaky(1)": expected["flaky(1)"]}


# ---------------------------------------------------------------- memoize keys


MEMO = """
- name: cached
  inputs: {parameters: [{name: key}]}
  memoize:
    key: "{{inputs.parameters.key}}"
    cache: {configMap: {name: no-false-green}}
  container: {image: alpine, command: [echo, hi]}
- name: after
  container: {image: alpine, command: [echo, after]}
"""


def test_a_memoize_key_argo_rejects_errors_the_step_group_whatever_continue_on(
    tmp_path: Path,
) -> None:
    """workflow/controller/cache/cache.go cacheKeyRegex ``^[a-zA-Z0-9][-a-zA-Z0-9]*$``;
    configmap_cache.go load: a key outside it is the error ``invalid cache key: KEY``.
    operator.go executeTemplate returns that Load error (initializeNodeOrMarkError: the node is
    Error with it); steps.go executeStepGroup's default case then marks the step group Error,
    ``step group deemed errored due to child NODE error: ...``, before any continueOn is read,
    and executeSteps fails the template with the group's message. So no later group runs and
    the workflow is Failed, where the runner used to let continueOn turn it green."""
    body = workflow(
        "memokey",
        """
        - name: main
          steps:
          - - name: cached
              template: cached
              continueOn: {error: true, failed: true}
              arguments: {parameters: [{name: key, value: "not a key!"}]}
          - - {name: after, template: after}
        """,
        MEMO,
    )
    code, rec = run(tmp_path, body)
    assert code == 1
    nodes = by_display(rec)
    assert nodes["cached"]["phase"] == "Error"
    assert nodes["cached"]["message"] == "invalid cache key: not a key!"
    group = "step group deemed errored due to child memokey[0].cached error: "
    assert nodes["[0]"]["phase"] == "Error"
    assert nodes["[0]"]["message"] == group + "invalid cache key: not a key!"
    assert "after" not in nodes
    assert rec["status"]["phase"] == "Failed"
    assert nodes["memokey"]["message"] == group + "invalid cache key: not a key!"


def test_a_rejected_key_in_a_loop_item_errors_the_group_too(tmp_path: Path) -> None:
    """steps.go expandStepGroup makes each loop item a step of the group (``NAME(i:item)``),
    so executeStepGroup errors the group for the item whose key the cache refuses (cache.go
    cacheKeyRegex: a key starting with ``-`` is outside it), continueOn or not; a valid key
    (``ok``) is an ordinary miss."""
    body = workflow(
        "memoloop",
        """
        - name: main
          steps:
          - - name: cached
              template: cached
              continueOn: {error: true}
              withItems: [ok, -bad]
              arguments: {parameters: [{name: key, value: "{{item}}"}]}
        """,
        MEMO,
    )
    code, rec = run(tmp_path, body)
    assert code == 1
    nodes = by_display(rec)
    assert nodes["cached(0:ok)"]["phase"] == "Succeeded"
    assert nodes["cached(1:-bad)"]["message"] == "invalid cache key: -bad"
    assert nodes["[0]"]["phase"] == "Error"
    assert nodes["[0]"]["message"] == (
        "step group deemed errored due to child memoloop[0].cached(1:-bad) error: "
        "invalid cache key: -bad"
    )
    assert rec["status"]["phase"] == "Failed"


# ---------------------------------------------------------------- messages


def test_a_failed_main_container_is_named_in_the_message(tmp_path: Path) -> None:
    """operator.go inferFailedReason: a terminated container's message is
    ``<container name>: <reason> (exit code N)``; test/e2e/cli_test.go
    TestWorkflowRetryWithRecreatedPVC asserts ``main: Error (exit code 1)``."""
    body = workflow(
        "exitmsg", "- name: main\n  container: {image: alpine, command: [sh, -c, 'exit 3']}"
    )
    code, rec = run(tmp_path, body)
    assert code == 1
    assert by_display(rec)["exitmsg"]["message"] == "main: Error (exit code 3)"


def test_backoff_messages_are_argos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """operator.go processNodeRetries: while a retried node waits it says ``Backoff for
    <util/humanize Duration>`` (``1 second``); once waiting would pass backoff.maxDuration
    (from the first attempt's start) it stops with ``Backoff would exceed max duration limit``.
    util/humanize/humanize_test.go TestDuration gives Duration's words."""
    body = workflow(
        "backoff",
        """
        - name: main
          retryStrategy:
            limit: 5
            backoff: {duration: "1", factor: "3", maxDuration: "3s"}
          container: {image: alpine, command: [sh, -c, 'exit 1']}
        """,
    )
    code, rec = run(tmp_path, body)
    assert code == 1
    root = by_display(rec)["backoff"]
    assert root["message"] == "Backoff would exceed max duration limit"
    # attempt 0 fails, 1 second, attempt 1 fails, then 3 seconds would pass the 3s limit
    assert [n["displayName"] for n in rec["status"]["nodes"].values() if n["type"] == "Pod"] == [
        "backoff(0)",
        "backoff(1)",
    ]
    assert "backoff: Backoff for 1 second" in capsys.readouterr().err
    for seconds, words in (
        (1, "1 second"),
        (60, "1 minute 0 seconds"),
        (3600, "1 hour 0 minutes"),
        (7200, "2 hours 0 minutes"),
        (36000, "10 hours 0 minutes"),
        (86400, "1 day 0 hours"),
        (0, "0 seconds"),
        (59, "59 seconds"),
        (90, "1 minute 30 seconds"),
    ):
        assert gotime.humanize_duration(seconds) == words


def test_an_unresolved_tag_fails_to_resolve_in_argos_words() -> None:
    """util/template/simple_template.go replace: a tag with an Argo prefix that nothing
    resolves is ``failed to resolve {{TAG}}`` (validate.go says the same at submission)."""
    with pytest.raises(
        params.ParamError, match=r"^here: failed to resolve \{\{inputs\.parameters\.x\}\}$"
    ):
        params.substitute("echo {{inputs.parameters.x}}", {}, "here")


# Go's own expectations: encoding/json decode_test.go (unmarshalTests "syntax errors" and
# "raw value errors", #14702) and scanner_test.go (indentErrorTests).
GO_SYNTAX_ERRORS = [
    ('{"X": "foo", "Y"}', "invalid character '}' after object key"),
    ("[1, 2, 3+]", "invalid character '+' after array element"),
    ('{"X":12x}', "invalid character 'x' after object key:value pair"),
    ("[2, 3", "unexpected end of JSON input"),
    ('{"F3": -}', "invalid character '}' in numeric literal"),
    ("\x01 42", "invalid character '\\x01' looking for beginning of value"),
    (" 42 \x01", "invalid character '\\x01' after top-level value"),
    ("\x01 true", "invalid character '\\x01' looking for beginning of value"),
    (" false \x01", "invalid character '\\x01' after top-level value"),
    (" 3.4 \x01", "invalid character '\\x01' after top-level value"),
    (' "string" \x01', "invalid character '\\x01' after top-level value"),
    ("invalid", "invalid character 'i' looking for beginning of value"),
    ('{"X": "foo" "Y": "bar"}', "invalid character '\"' after object key:value pair"),
]


@pytest.mark.parametrize(("text", "message"), GO_SYNTAX_ERRORS)
def test_json_errors_are_worded_as_go_words_them(text: str, message: str) -> None:
    """Go's encoding/json checks the whole input with its scanner before decoding
    (checkValid), so a malformed document's error is the scanner's. The runner's readers of
    parameter JSON (withParam items, loop results, fromJSON) say the same."""
    assert gojson.syntax_error(text) == message
    with pytest.raises(ValueError, match="^" + message.replace("\\", "\\\\").replace("+", "\\+")):
        params.loads_raw(text)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("hello", "invalid character 'h' looking for beginning of value"),
        ("[1, 2", "unexpected end of JSON input"),
        ('{"a": 1}', "json: cannot unmarshal object into Go value of type []v1alpha1.Item"),
        ('"x"', "json: cannot unmarshal string into Go value of type []v1alpha1.Item"),
    ],
)
def test_with_param_that_is_not_a_list_fails_in_argos_words(
    tmp_path: Path, value: str, error: str
) -> None:
    """steps.go expandStepGroup: withParam is json.Unmarshal'ed into []wfv1.Item; on error the
    step group is Error with ``withParam value could not be parsed as a JSON list: VALUE: ERR``,
    ERR Go's (a syntax error, or UnmarshalTypeError for a value that is not a list)."""
    body = workflow(
        "withparam",
        """
        - name: main
          steps:
          - - name: each
              template: echo
              withParam: "{{workflow.parameters.items}}"
        - name: echo
          container: {image: alpine, command: [echo, "{{item}}"]}
        """,
        extra="  arguments: {parameters: [{name: items}]}\n",
    )
    code, rec = run(tmp_path, body, "-p", f"items={value}")
    assert code == 1
    messages = [n.get("message", "") for n in rec["status"]["nodes"].values()]
    want = f"withParam value could not be parsed as a JSON list: {value}: {error}"
    assert any(m.endswith(want) for m in messages), messages


def test_with_param_null_is_no_items(tmp_path: Path) -> None:
    """json.Unmarshal of ``null`` into []wfv1.Item leaves a nil slice: no items, so
    steps.go expandStepGroup makes the Skipped node ``Skipped, empty params``."""
    body = workflow(
        "withnull",
        """
        - name: main
          steps:
          - - {name: each, template: echo, withParam: "null"}
        - name: echo
          container: {image: alpine, command: [echo, "{{item}}"]}
        """,
    )
    code, rec = run(tmp_path, body)
    assert code == 0
    each = by_display(rec)["each"]
    assert (each["phase"], each["message"]) == ("Skipped", "Skipped, empty params")


# ---------------------------------------------------------------- podSpecPatch


PATCHED = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: patched}
spec:
  entrypoint: main
  arguments: {parameters: [{name: who, value: wf-param}]}
  podSpecPatch: |
    containers:
      - name: main
        env:
          - {name: B, value: from-the-workflow}
        resources: {limits: {memory: 100Mi}}
  templates:
  - name: main
    steps:
    - - name: write
        template: write
        arguments: {parameters: [{name: word, value: patched}]}
  - name: write
    inputs: {parameters: [{name: word}]}
    podSpecPatch: '{"terminationGracePeriodSeconds": 5, "containers": [{"name": "main",
      "workingDir": "/tmp/job", "args": ["echo $A $B $C [$D] $E > out.txt"],
      "env": [{"name": "C", "value": "{{inputs.parameters.word}}-{{workflow.parameters.who}}"},
              {"name": "D", "$patch": "delete"}, {"name": "E", "value": "{{pod.name}}"}]}]}'
    container:
      image: busybox
      command: [sh, -c]
      args: ["echo unpatched > /tmp/out.txt"]
      env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: D, value: gone}]
    outputs:
      parameters:
      - {name: value, valueFrom: {path: /tmp/job/out.txt}}
"""


def test_pod_spec_patch_applies_the_fields_with_a_local_meaning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """workflow/controller/workflowpod.go createWorkflowPod, processPodSpecPatch: the
    workflow's podSpecPatch, then the template's, each substituted first (global parameters,
    the template's inputs and ``{{pod.name}}``), are applied by util/util.go ApplyPodSpecPatch:
    YAML or JSON, a strategic merge patch into the PodSpec (containers and env merged by name,
    ``$patch: delete`` removing an entry, args replaced, workingDir set; examples/
    pod-spec-patch-wf-tmpl.yaml uses both levels). The container's env, args and workingDir
    are applied locally; the rest (resources, terminationGracePeriodSeconds) is listed once,
    in one note, where the runner used to drop the whole patch."""
    code, rec = run_yaml(tmp_path, PATCHED)
    assert code == 0, rec.get("status", {}).get("message")
    write = by_display(rec)["write"]
    pod = f"patched-write-{go_fnv32a('patched[0].write')}"
    value = {p["name"]: p["value"] for p in write["outputs"]["parameters"]}["value"]
    assert value == f"1 from-the-workflow patched-wf-param [] {pod}"
    note = (
        "podSpecPatch: containers[main].resources, terminationGracePeriodSeconds ignored "
        "locally (no meaning outside Kubernetes; a container's env, command, args, workingDir apply)"
    )
    err = capsys.readouterr().err
    assert sum(note in line for line in err.splitlines()) == 1, err
    assert any(n.endswith(note) for n in rec["workersRunner"]["notes"])


def test_a_pod_spec_patch_argo_cannot_apply_errors_the_step_group(tmp_path: Path) -> None:
    """util/util.go ApplyPodSpecPatch refuses a patch that is not a PodSpec (here containers
    is not a list); workflowpod.go wraps it as ``Error applying PodSpecPatch`` (errors.Wrap:
    the error's message), createWorkflowPod's error: executeContainer returns it,
    executeTemplate marks the node Error and returns it, and steps.go executeStepGroup errors
    the group whatever continueOn says."""
    body = workflow(
        "badpatch",
        """
        - name: main
          steps:
          - - {name: pod, template: pod, continueOn: {error: true}}
        - name: pod
          podSpecPatch: '{"containers": {"name": "main"}}'
          container: {image: alpine, command: [echo, hi]}
        """,
    )
    code, rec = run(tmp_path, body)
    assert code == 1
    nodes = by_display(rec)
    assert (nodes["pod"]["phase"], nodes["pod"]["message"]) == (
        "Error",
        "Error applying PodSpecPatch",
    )
    assert nodes["[0]"]["message"] == (
        "step group deemed errored due to child badpatch[0].pod error: Error applying PodSpecPatch"
    )
    assert rec["status"]["phase"] == "Failed"


def test_pod_spec_patch_reaches_init_containers_and_container_set_members(
    tmp_path: Path,
) -> None:
    """util/util.go ApplyPodSpecPatch merges by name into the whole PodSpec: ``containers``
    holds a container set's containers (workflowpod.go builds one pod container per
    containerSet entry, named as written) and ``initContainers`` the template's init
    containers, so a patch reaches each by its name."""
    body = workflow(
        "setpatch",
        """
        - name: main
          podSpecPatch: |
            initContainers:
              - name: prepare
                env: [{name: WORD, value: from-the-patch}]
            containers:
              - name: main
                command: [sh, -c, 'echo "$(cat /shared/word) $OTHER" > /shared/out']
                env: [{name: OTHER, value: set-member}]
          volumes: [{name: shared, emptyDir: {}}]
          initContainers:
            - name: prepare
              image: alpine
              command: [sh, -c, 'echo "$WORD" > /shared/word']
              env: [{name: WORD, value: unpatched}]
              volumeMounts: [{name: shared, mountPath: /shared}]
          containerSet:
            volumeMounts: [{name: shared, mountPath: /shared}]
            containers:
              - {name: main, image: alpine, command: [sh, -c, 'echo unpatched > /shared/out']}
          outputs:
            parameters:
            - {name: value, valueFrom: {path: /shared/out}}
        """,
    )
    code, rec = run(tmp_path, body)
    assert code == 0, rec.get("status", {}).get("message")
    root = by_display(rec)["setpatch"]
    value = {p["name"]: p["value"] for p in root["outputs"]["parameters"]}["value"]
    assert value == "from-the-patch set-member"


def test_a_rejected_key_in_a_dag_task_is_the_tasks_error(tmp_path: Path) -> None:
    """dag.go executeDAGTask: the error executeTemplate returns (configmap_cache.go load:
    ``invalid cache key: KEY``) marks the task node Error as ``task 'NODE' errored: ...``; a
    DAG reads continueOn as usual (assessDAGPhase), so a task with ``continueOn.error`` lets the
    DAG go on, unlike a step group."""
    body = workflow(
        "memodag",
        """
        - name: main
          dag:
            tasks:
            - name: cached
              template: cached
              continueOn: {error: true}
              arguments: {parameters: [{name: key, value: "no_underscores"}]}
            - {name: after, template: after, dependencies: [cached]}
        """,
        MEMO,
    )
    code, rec = run(tmp_path, body)
    nodes = by_display(rec)
    assert nodes["cached"]["phase"] == "Error"
    assert nodes["cached"]["message"] == (
        "task 'memodag.cached' errored: invalid cache key: no_underscores"
    )
    assert nodes["after"]["phase"] == "Succeeded"
    assert (code, rec["status"]["phase"]) == (0, "Succeeded")


def test_a_backoff_without_a_limit_is_not_waited(tmp_path: Path) -> None:
    """operator.go processNodeRetries requeues with ``Backoff for ...`` only when
    ``retryStrategy.Limit != nil``: without a limit the next attempt is created at once,
    whatever ``backoff.duration`` says."""
    body = workflow(
        "nolimit",
        """
        - name: main
          retryStrategy:
            backoff: {duration: "1h"}
          script:
            image: python:3.12
            command: [python]
            source: raise SystemExit(0 if {{retries}} == 2 else 1)
        """,
    )
    code, rec = run(tmp_path, body)
    assert code == 0
    pods = [n for n in rec["status"]["nodes"].values() if n["type"] == "Pod"]
    assert [n["phase"] for n in pods] == ["Failed", "Failed", "Succeeded"]
    side = rec["workersRunner"]["pods"]
    assert [side[n["id"]]["backoff_s"] for n in pods] == [0.0, 0.0, 0.0]
