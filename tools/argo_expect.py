"""What Argo's own test suite says each corpus file ends as, read from its Go tests.

examples/: test/e2e/examples_test.go (TestExampleWorkflows) applies every ConfigMap,
PersistentVolumeClaim, WorkflowTemplate and ClusterWorkflowTemplate under examples/, then
submits every document of kind Workflow and waits for ``fixtures.ToBeSucceeded``, skipping a
workflow labelled ``workflows.argoproj.io/no-test``.

test/e2e/functional/: a Go test in test/e2e/*.go submits ``@functional/NAME.yaml`` and waits
for ``fixtures.ToBeSucceeded``/``ToBeFailed``/``ToBeErrored`` or asserts ``status.Phase`` in
``ExpectWorkflow``. ``from_go_tests`` reads that with regular expressions when the checkout has
the Go files; ``FUNCTIONAL`` is the same, written down from v4.1.2, for a corpus without them.
A test that acts on the running workflow (stop, terminate, exec into a pod, CLI commands) has
no result a plain run can be compared with; a test that skips itself tests nothing.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

NO_TEST = "workflows.argoproj.io/no-test"

# What an expectation is: a phase to compare with, or a reason the file is not compared.
PHASE, NOT_TESTED, INTERACTIVE = "phase", "not tested by Argo", "interactive"


@dataclass(frozen=True)
class Expectation:
    kind: str  # PHASE, NOT_TESTED or INTERACTIVE
    phases: tuple[str, ...]  # the accepted final phases (PHASE only)
    reason: str  # where it comes from: the Go test, the label, or the default rule


def phase(value: str, reason: str) -> Expectation:
    return Expectation(PHASE, (value,), reason)


# From test/e2e/*.go at v4.1.2 (regenerate: argo_corpus.py CHECKOUT --print-expectations).
# Tests that assert node phases only carry the workflow phase those nodes imply, said so.
FUNCTIONAL: dict[str, Expectation] = {
    "conditionals.yaml": phase(
        "Succeeded", "functional_test.go TestWhenExpressions: ToBeSucceeded"
    ),
    "success-event.yaml": phase(
        "Succeeded",
        "functional_test.go TestEventOnWorkflowSuccess: waits for done, expects the "
        "WorkflowSucceeded event",
    ),
    "loops-empty-param.yaml": phase(
        "Succeeded", "functional_test.go TestLoopEmptyParam: status.Phase == WorkflowSucceeded"
    ),
    "dag-empty-param.yaml": phase(
        "Succeeded", "functional_test.go TestDAGEmptyParam: status.Phase == WorkflowSucceeded"
    ),
    "dag-omitted-output-ref.yaml": phase(
        "Error", "functional_test.go TestDAGOmittedOutputRef: status.Phase == WorkflowError"
    ),
    "dag-skipped-output-ref.yaml": phase(
        "Error", "functional_test.go TestDAGSkippedOutputRef: status.Phase == WorkflowError"
    ),
    "dag-skipped-producer-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestDAGSkippedProducerOutputDefault: status.Phase == WorkflowSucceeded",
    ),
    "dag-skipped-consumer-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestDAGSkippedConsumerInputDefault: status.Phase == WorkflowSucceeded",
    ),
    "dag-skipped-volume-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestDAGSkippedVolumeRefProducerDefault: "
        "status.Phase == WorkflowSucceeded",
    ),
    "dag-skipped-artifact-subpath-ref.yaml": phase(
        "Error",
        "functional_test.go TestDAGSkippedArtifactSubPathRef: status.Phase == WorkflowError",
    ),
    "dag-skipped-withparam-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestDAGSkippedWithParamProducerDefault: "
        "status.Phase == WorkflowSucceeded",
    ),
    "steps-skipped-withparam-ref.yaml": phase(
        "Failed", "functional_test.go TestStepsSkippedWithParamRef: status.Phase == WorkflowFailed"
    ),
    "steps-skipped-output-ref.yaml": phase(
        "Failed", "functional_test.go TestStepsSkippedOutputRef: status.Phase == WorkflowFailed"
    ),
    "steps-skipped-producer-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestStepsSkippedProducerOutputDefault: "
        "status.Phase == WorkflowSucceeded",
    ),
    "steps-skipped-consumer-default.yaml": phase(
        "Succeeded",
        "functional_test.go TestStepsSkippedConsumerInputDefault: "
        "status.Phase == WorkflowSucceeded",
    ),
    "steps-when-expr-filter.yaml": phase(
        "Succeeded", "functional_test.go TestStepsWhenExprFilter: status.Phase == WorkflowSucceeded"
    ),
    "dag-when-expr-skip.yaml": phase(
        "Succeeded", "functional_test.go TestDAGWhenExprSkip: status.Phase == WorkflowSucceeded"
    ),
    "param-aggregation.yaml": phase(
        "Succeeded",
        "functional_test.go TestParameterAggregation: status.Phase == WorkflowSucceeded",
    ),
    "param-aggregation-fromoutputs.yaml": phase(
        "Succeeded",
        "functional_test.go TestParameterAggregationFromOutputs: status.Phase == WorkflowSucceeded",
    ),
    "parameter-aggregation-dag-with-retry.yaml": phase(
        "Succeeded",
        "functional_test.go TestParameterAggregationDAGWithRetry: "
        "status.Phase == WorkflowSucceeded",
    ),
    "parameter-aggregation-steps-with-retry.yaml": phase(
        "Succeeded",
        "functional_test.go TestParameterAggregationStepsWithRetry: "
        "status.Phase == WorkflowSucceeded",
    ),
    "dag-depends.yaml": phase(
        "Succeeded",
        "functional_test.go TestDAGDepends asserts nodes only: should-execute-1/2 Succeeded, "
        "should-not-execute Omitted; F's failure is handled by depends, no leaf fails",
    ),
    "output-artifact-optional.yaml": phase(
        "Succeeded",
        "functional_test.go TestOptionalOutputArtifacts: status.Phase == WorkflowSucceeded",
    ),
    "pause-before.yaml": Expectation(
        INTERACTIVE, (), "functional_test.go TestPauseBefore: kubectl exec resumes the pod"
    ),
    "pause-after.yaml": Expectation(
        INTERACTIVE, (), "functional_test.go TestPauseAfter: kubectl exec resumes the pod"
    ),
    "pause-before-after.yaml": Expectation(
        INTERACTIVE,
        (),
        "functional_test.go TestPauseAfterAndBefore: kubectl exec resumes the pod",
    ),
    "tty.yaml": phase("Succeeded", "functional_test.go TestTTY: ToBeSucceeded"),
    "template-default-image.yaml": phase(
        "Succeeded", "functional_test.go TestTemplateDefaultImage: ToBeSucceeded"
    ),
    "entrypointName-workflow.yaml": phase(
        "Succeeded",
        "functional_test.go TestEntrypointName asserts its only step Succeeded "
        "(entrypointName-template.yaml created first)",
    ),
    "missing-steps.yaml": phase(
        "Succeeded", "functional_test.go TestMissingStepsInUI: ToBeSucceeded"
    ),
    "workflow-exit-handler-sleep.yaml": Expectation(
        INTERACTIVE,
        (),
        "functional_test.go TestTerminateWorkflowWhileOnExitHandlerRunning terminates it",
    ),
    "stop-terminate.yaml": Expectation(
        INTERACTIVE, (), "signals_test.go TestTerminateBehavior: ShutdownWorkflow(Terminate)"
    ),
    "stop-terminate-daemon.yaml": Expectation(
        INTERACTIVE, (), "signals_test.go TestStopBehaviorWithDaemon: ShutdownWorkflow(Stop)"
    ),
    "stop-terminate-2.yaml": Expectation(
        INTERACTIVE,
        (),
        "signals_test.go TestDoNotCreatePodsUnderStopBehavior: ShutdownWorkflow(Stop)",
    ),
    "resource-template.yaml": Expectation(
        INTERACTIVE,
        (),
        "cli_test.go TestResourceTemplateStopAndTerminate: argo stop / argo terminate",
    ),
}

# Files a Go test creates as templates for another (not submitted themselves).
FUNCTIONAL_LIBRARY = {
    "entrypointName-template.yaml": "functional_test.go TestEntrypointName creates it "
    "for entrypointName-workflow.yaml",
}

# A functional file no Go test submits is expected to succeed unless OWN_TEXT (below) says
# otherwise with its evidence.


_FUNC = re.compile(r"^func (?:\([^)]*\) )?(Test\w+)\(", re.M)
_REF = re.compile(
    r"\b(Workflow|WorkflowTemplate|ClusterWorkflowTemplate|CronWorkflow)\(\s*[\"`]@"
    r"(functional/|testdata/|expectedfailures/|smoke/)([^\"`]+)[\"`]"
)
E2E_FOLDERS = ("testdata", "expectedfailures", "smoke")
"""test/e2e folders besides functional/ whose files Go tests submit (``@testdata/NAME``): a
file there is keyed by its path below test/e2e (``testdata/http-outputs.yaml``), a
functional file by its name."""
_CLI_SUBMIT = re.compile(r"RunCli\(\[\]string\{\"submit\", \"functional/([^\"]+)\"")
_WAIT = re.compile(r"WaitForWorkflow\(\s*fixtures\.(ToBeSucceeded|ToBeFailed|ToBeErrored)\b")
_ASSERT = re.compile(
    r"assert\.Equal\(t, wfv1\.Workflow(Succeeded|Failed|Error), status\.Phase\)"
    r"|assert\.Contains\(t, \[\]wfv1\.WorkflowPhase\{([^}]*)\}, status\.Phase\)"
)
_ACTS = re.compile(
    r"ShutdownWorkflow\(|\bExec\(|DeleteWorkflow\(|RemoveFinalizers\(|UpdateConfigMap\("
    r"|RunCli\(\[\]string\{\"(?:stop|terminate|resume|suspend|retry|resubmit|node)\""
)
_SKIP = re.compile(r"\.Skip\(|\bt\.Skip\(")
_WAIT_PHASE = {"ToBeSucceeded": "Succeeded", "ToBeFailed": "Failed", "ToBeErrored": "Error"}


def from_go_tests(folder: Path) -> tuple[dict[str, Expectation], dict[str, str]]:
    """Expectations for functional files from the ``*.go`` tests in ``folder`` (test/e2e), and
    the files tests create as templates only. Empty when the folder has no Go tests."""
    found: dict[str, Expectation] = {}
    library: dict[str, str] = {}
    for go in sorted(folder.glob("*.go")):
        text = go.read_text(errors="replace")
        starts = [m.start() for m in _FUNC.finditer(text)] + [len(text)]
        for begin, end in itertools.pairwise(starts):
            body = text[begin:end]
            test = _FUNC.match(body)
            if test is None:
                continue
            where = f"{go.name} {test.group(1)}"
            refs = [(kind, _key(folder, name)) for kind, folder, name in _REF.findall(body)]
            submitted = [n for kind, n in refs if kind == "Workflow"]
            for kind, name in refs:
                if kind != "Workflow" and name not in submitted:
                    library[name] = f"{where} creates it as a {kind}"
            # Each submission is judged by the text up to the next one: a test that submits
            # several files (TestMainLog: basic-workflow ToBeSucceeded, then timeouts-step
            # ToBeFailed) waits for each in turn.
            marks = [
                (m.start(), _key(m.group(2), m.group(3)))
                for m in _REF.finditer(body)
                if m.group(1) == "Workflow"
            ]
            marks += [(m.start(), m.group(1)) for m in _CLI_SUBMIT.finditer(body)]
            marks.sort()
            if not marks:
                continue
            ends = [start for start, _ in marks[1:]] + [len(body)]
            for (start, name), end in zip(marks, ends, strict=True):
                expectation = _judge(body, where, body[start:end])
                # A file several tests submit: one a plain run can be compared with wins.
                if name not in found or found[name].kind != PHASE:
                    found[name] = expectation
    return found, library


def _key(folder: str, name: str) -> str:
    return name if folder == "functional/" else folder + name


def _judge(whole: str, where: str, body: str) -> Expectation:
    """How the test ``whole`` expects the submission whose text is ``body`` to end."""
    if _SKIP.search(whole):
        return Expectation(NOT_TESTED, (), f"{where} skips itself")
    if _ACTS.search(body):
        act = _ACTS.search(body)
        assert act is not None
        return Expectation(
            INTERACTIVE, (), f"{where} acts on the running workflow ({act.group(0)}…)"
        )
    waits = _WAIT.findall(body)
    if waits:
        return phase(_WAIT_PHASE[waits[-1]], f"{where}: {waits[-1]}")
    asserted = _ASSERT.search(body)
    if asserted:
        if asserted.group(1):
            return phase(asserted.group(1), f"{where}: status.Phase == Workflow{asserted.group(1)}")
        names = re.findall(r"wfv1\.Workflow(\w+)", asserted.group(2))
        return Expectation(PHASE, tuple(names), f"{where}: status.Phase in {names}")
    return Expectation(NOT_TESTED, (), f"{where} asserts no workflow phase")


def no_test_label(docs: list[dict[str, object]]) -> str | None:
    """The ``no-test`` label's value on any Workflow of a file (None when unlabelled)."""
    for doc in docs:
        meta = doc.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        if isinstance(labels, dict) and NO_TEST in labels:
            return str(labels[NO_TEST])
    return None


def phases(values: tuple[str, ...], reason: str) -> Expectation:
    return Expectation(PHASE, values, reason)


# Files whose Go test expects an outcome that only cluster machinery the runner does not have
# decides (a Kubernetes permission, an eviction): not run (class "needs a cluster"), each
# with the evidence.
CLUSTER_ONLY: dict[str, str] = {
    "test/e2e/expectedfailures/serviceaccount-insufficient-permissions.yaml": (
        "functional_test.go TestWorkflowInvalidServiceAccountError expects Error because the "
        "ServiceAccount github.com 'doesn't have the permissions needed by the executor' (the "
        "file's comment): Kubernetes RBAC, which a local run has no equivalent of "
        "(serviceAccountName is without meaning locally)"
    ),
    "test/e2e/testdata/signaled-container-set-workflow.yaml": (
        "signals_test.go TestSignaledContainerSet expects Failed with container one's exit "
        "code 137: its dd 'exceeds the 50Mi cgroup limit and triggers an OOM kill' (the file's "
        "comment), a memory limit the kubelet's cgroup enforces; resources are without "
        "meaning locally"
    ),
}

# Files no Go test submits whose own text (or image) says how they end where the no-test
# label's default (success; failure for "expected-failure") or the functional folder's rule
# (success) says otherwise. Each names its evidence: the file's comment or step, or Argo's code.
_CONTINUE_ON_FAIL = phase(
    "Succeeded",
    "labelled no-test expected-failure, but step C's failure is continued on "
    "(continueOn.failed): steps.go executeStepGroup fails a step group only for a child that "
    "FailedOrError && !step.ContinuesOn(phase), so D runs and the steps node Succeeds; "
    "operator.go operate maps the entry node's Succeeded to WorkflowSucceeded",
)
_RANDOM = "random, either phase: "
OWN_TEXT: dict[str, Expectation] = {
    "examples/continue-on-fail.yaml": _CONTINUE_ON_FAIL,
    "test/e2e/functional/continue-on-fail.yaml": _CONTINUE_ON_FAIL,
    "examples/custom-metrics.yaml": phases(
        ("Succeeded", "Failed"),
        _RANDOM + "step flakey runs random.choice([0, 1, 1]) without retries "
        "('# fail with a 66% probability')",
    ),
    "examples/resubmit.yaml": phases(
        ("Succeeded", "Failed"),
        _RANDOM + "eight pods of random.choice([0, 0, 1]) ('# fail with a 33% probability'; "
        "'Submit this workflow, which will very likely fail')",
    ),
    "examples/retry-on-error.yaml": phases(
        ("Succeeded", "Failed"),
        _RANDOM + "random.choice(range(0, 5)) ('# fail with a 80% probability') with "
        "retryStrategy.limit 2: three attempts",
    ),
    "examples/retry-conditional.yaml": phase(
        "Failed",
        "always fails: its script exits 1 or 2, never 0 ('# Exit 1 with 50% probability and 2 "
        "with 50%'), and retryStrategy.expression retries only while exitCode > 1",
    ),
    "examples/loops-arbitrary-sequential-steps.yaml": phase(
        "Failed",
        "designed to fail: 'When a step fails, the iteration will break', and its fourth item "
        'is { "exit_code": 1, "message": "will fail and stop here" }',
    ),
    "examples/pod-gc-strategy.yaml": phase(
        "Failed", "designed to fail: its step fail runs `exit 1` beside succeed (a podGC demo)"
    ),
    "examples/pod-gc-strategy-with-label-selector.yaml": phase(
        "Failed",
        "designed to fail: its step fail runs `exit 1` ('This step will not be deleted since "
        "it's not successful')",
    ),
    "examples/step-level-timeout.yaml": phase(
        "Failed",
        "both steps run `sleep 30s` under a 10s template timeout: the pod's deadline message "
        "makes each node Failed (operator.go inferFailedReason: a pod status message gives "
        "NodeFailed), sleep1 continues on error only (workflow_types.go continues), so "
        "steps.go executeStepGroup fails the group",
    ),
    "examples/exit-handler-slack.yaml": phase(
        "Failed",
        "needs the network and a user's webhook: as written its exit handler curls the "
        "placeholder host YOUR_WEBHOOK_URL_HERE ('Replace YOUR_WEBHOOK_URL_HERE ... with that "
        "webhook url'), which does not resolve; operator.go operate marks a workflow whose "
        "main succeeded and whose exit node failed Failed",
    ),
    "test/e2e/functional/sidecar-volumes.yaml": phase(
        "Failed",
        "verify runs `sh -c '[[ ... ]]'` in argoproj/argosay:v2, built FROM argoproj/argosay:v1 "
        "FROM ubuntu:26.04 (test/e2e/images/argosay/v1 and v2/Dockerfile), whose sh is dash: "
        "`[[: not found`, exit 127 (the image was alpine:latest, with busybox's ash, before "
        "#14094; no Go test submits the file)",
    ),
    **dict.fromkeys(
        (
            "examples/retry-with-steps.yaml",
            "examples/workflow-template/retry-with-steps.yaml",
            "test/e2e/functional/retry-with-steps.yaml",
        ),
        phases(
            ("Succeeded", "Failed"),
            _RANDOM + "labelled no-test flaky: three steps each run random.choice([0, 1, 1]) "
            "('# fail with a 66% probability') under retryStrategy.limit 10, so each fails all "
            "eleven attempts with a probability of (2/3)^11, about 1.2%",
        ),
    ),
    "examples/template-defaults.yaml": phases(
        ("Succeeded", "Failed"),
        _RANDOM + "labelled no-test expected-failure ('requires interaction'), but its only "
        "failing pod runs random.choice([0, 1, 1]) ('# fail with a 66% probability') under "
        "templateDefaults.retryStrategy limit 2, which applies to every template "
        "(operator.go mergedTemplateDefaultsInto merges it in), steps included",
    ),
    "test/e2e/functional/output-input-artifact-optional.yaml": phase(
        "Failed",
        "generate-artifact writes /tmp/hello_world123.txt, not its optional output "
        "/tmp/hello_world.txt, so no hello-art is saved; consume-artifact's argument "
        "(not optional: only the template input is) names it with from, and steps.go "
        "resolveReferences skips an unresolvable artifact only 'if art.Optional', else "
        "'unable to resolve references': executeStepGroup marks the group Error and the steps "
        "fail (no Go test submits the file)",
    ),
}

# Files that run longer than the corpus's default timeout by design: the seconds their own
# sleeps add up to, and the evidence. They run with a timeout above that; one longer than
# argo_corpus.LONG_SECONDS is not run without --long.
DURATIONS: dict[str, tuple[float, str]] = {
    "examples/parallelism-nested-workflow.yaml": (
        120.0,
        "'As the parallelism of A is 1, the four steps of seq-step will run sequentially': "
        "4 x `sleep 30`",
    ),
    "examples/synchronization-mutex-tmpl-level.yaml": (
        250.0,
        "mutex test lets one of acquire-lock-1's five `sleep 50` pods run at a time: 5 x 50 s",
    ),
    "examples/synchronization-db-mutex-tmpl-level.yaml": (
        250.0,
        "database mutex test lets one of acquire-lock-1's five `sleep 50` pods run at a time: "
        "5 x 50 s",
    ),
    "examples/forever.yaml": (
        1000.0,
        "'# run forever': `for I in $(seq 1 1000) ; do echo $I ; sleep 1s; done`",
    ),
}
