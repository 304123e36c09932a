"""Fields the local runner used to refuse, now handled as Argo v4.1.2 handles them.

Each test writes a small workflow, runs it with ``workers run`` (in-process; every step a real
process) and reads run.json, or checks the refusal before running (exit 2). The docstrings cite
the Argo source or documentation each behaviour comes from.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_yaml


def run(tmp_path: Path, body: str) -> tuple[int, dict[str, Any]]:
    """Write ``body`` (YAML, dedented) and run it; the exit code and run.json (empty if none)."""
    return run_yaml(tmp_path, body)


def workflow(templates: str, extra: str = "") -> str:
    """A Workflow whose spec has ``extra`` (YAML at spec level) and the template list."""
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
        "metadata:\n  generateName: fields-\nspec:\n  entrypoint: main\n"
        + textwrap.indent(textwrap.dedent(extra).strip("\n") + "\n", "  ")
        + "  templates:\n"
        + textwrap.indent(textwrap.dedent(templates).strip("\n") + "\n", "    ")
    )


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


ECHO = """
- name: echo
  inputs: {parameters: [{name: m, default: hi}]}
  container: {image: busybox, command: [echo, "{{inputs.parameters.m}}"]}
"""

# ---------------------------------------------------------------- podResources, resourceClaims


def test_pod_resources_and_claims_are_scheduling_hints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """workflowpod.go copies ``podResources`` and ``resourceClaims`` (the template's, else the
    workflow's) into the pod spec for Kubernetes' scheduler and device drivers
    (examples/pod-resources.yaml, examples/resource-claims.yaml): like a container's
    ``resources`` they have no local meaning, and the run notes them."""
    extra = """
    podResources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: "1", hugepages-2Mi: 1Mi}}
    resourceClaims: [{name: accelerator, resourceClaimTemplateName: device}]
    """
    templates = """
    - name: main
      podResources: {limits: {cpu: "2"}}
      resourceClaims: [{name: other, resourceClaimName: shared}]
      container:
        image: busybox
        command: [echo, ok]
        resources: {claims: [{name: other}]}
    """
    code, rec = run(tmp_path, workflow(templates, extra))
    assert code == 0, rec
    assert by_name(rec)[rec["metadata"]["name"]]["outputs"]["result"] == "ok"
    err = capsys.readouterr().err
    assert "podResources x2" in err and "resourceClaims x2" in err


@pytest.mark.parametrize(
    ("extra", "templates", "message"),
    [
        # validate.go validatePodResources: cpu, memory and hugepages-* only, no claims
        (
            "podResources: {limits: {nvidia.com/gpu: 1}}",
            "- {name: main, container: {image: busybox, command: [true]}}",
            '"nvidia.com/gpu" is not a valid pod-level resource',
        ),
        (
            "",
            "- {name: main, podResources: {claims: [{name: x}]}, "
            "container: {image: busybox, command: [true]}}",
            "templates.main.podResources.claims is not supported for pod-level resources",
        ),
        # validate.go validateTemplate: claims go on a pod; a steps template creates none
        (
            "",
            "- {name: main, resourceClaims: [{name: x, resourceClaimName: y}], "
            "steps: [[{name: a, template: leaf}]]}\n"
            "- {name: leaf, container: {image: busybox, command: [true]}}",
            "templates.main.resourceClaims is not supported for Steps templates",
        ),
    ],
)
def test_pod_resources_refused_as_argo_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, templates: str, message: str
) -> None:
    code, rec = run(tmp_path, workflow(templates, extra))
    assert code == 2 and rec == {}
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- template annotations


def test_display_name_annotation_names_the_node(tmp_path: Path) -> None:
    """workflow_types.go Template.Annotations and docs/walk-through/annotations.md:
    ``workflows.argoproj.io/display-name``, substituted with the template's inputs, is the
    node's displayName (operator.go executeTemplate ``setNodeDisplayName``); the loop of
    examples/loops-param-argument.yaml names its items so."""
    templates = """
    - name: main
      steps:
        - - name: each
            template: show
            arguments: {parameters: [{name: os, value: "{{item}}"}]}
            withItems: [debian, alpine]
    - name: show
      annotations:
        workflows.argoproj.io/display-name: "os-{{inputs.parameters.os}}"
        other.example/key: kept-for-the-cluster
      inputs: {parameters: [{name: os}]}
      container: {image: busybox, command: [echo, "{{inputs.parameters.os}}"]}
    """
    code, rec = run(tmp_path, workflow(templates))
    assert code == 0, rec
    nodes = by_name(rec)
    assert nodes["os-debian"]["outputs"]["result"] == "debian"
    assert nodes["os-alpine"]["outputs"]["result"] == "alpine"
    assert nodes["os-debian"]["name"].endswith(".each(0:debian)")


def test_an_invalid_display_name_errors_the_node(tmp_path: Path) -> None:
    """operator.go executeTemplate: a display name that does not match ``displayNameRegex``
    (``^[a-zA-Z0-9][a-zA-Z0-9-.]{0,61}[a-zA-Z0-9]$``) errors the node before it runs."""
    templates = """
    - name: main
      annotations: {workflows.argoproj.io/display-name: "not a name!"}
      container: {image: busybox, command: [echo, ran]}
    """
    code, rec = run(tmp_path, workflow(templates))
    assert code == 1
    (node,) = rec["status"]["nodes"].values()
    assert node["phase"] == "Error"
    assert "displayName must match the regex" in node["message"]
    assert "outputs" not in node or "result" not in node["outputs"]


# ---------------------------------------------------------------- templateDefaults timeout


def test_a_default_timeout_reaches_steps_templates_without_effect(tmp_path: Path) -> None:
    """examples/template-defaults.yaml: ``templateDefaults.timeout`` with a steps entrypoint.
    validate.go checks the templates as written (a steps template's own timeout is refused:
    test_runner_lifetimes.py); operator.go mergedTemplateDefaultsInto gives the default to
    every template at run time, where checkTemplateTimeouts only fails a *Pending* node, and a
    Steps node starts Running (steps.go executeSteps): the steps outlive the timeout."""
    templates = """
    - name: main
      steps:
        - - {name: a, template: nap}
        - - {name: b, template: nap}
    - name: nap
      container: {image: busybox, command: [sleep, "0.8"]}
    """
    code, rec = run(tmp_path, workflow(templates, "templateDefaults: {timeout: 1s}"))
    assert code == 0, rec
    assert {n["phase"] for n in rec["status"]["nodes"].values()} == {"Succeeded"}


def test_a_default_timeout_fails_a_longer_suspend(tmp_path: Path) -> None:
    """A suspend node is Pending until its duration passes (operator.go executeSuspend), so a
    ``timeout`` from templateDefaults fails it once passed (checkTemplateTimeouts: ErrTimeout,
    message "timeout"); a pod template gets it as its deadline."""
    templates = """
    - name: main
      steps:
        - - {name: wait, template: wait}
    - name: wait
      suspend: {duration: "20"}
    """
    code, rec = run(tmp_path, workflow(templates, "templateDefaults: {timeout: 1s}"))
    assert code == 1
    wait = by_name(rec)["wait"]
    assert (wait["phase"], wait["message"]) == ("Failed", "timeout")


def test_a_default_timeout_in_whole_seconds_is_a_pod_deadline(tmp_path: Path) -> None:
    """validate.go refuses a whole-number ``timeout`` written on a template, but does not see
    ``templateDefaults``; the controller reads the merged value with ParseStringToDuration
    (v1alpha1/utils.go: "If no units are attached, treat as seconds") as the pod's deadline."""
    templates = """
    - name: main
      container: {image: busybox, command: [sleep, "20"]}
    """
    code, rec = run(tmp_path, workflow(templates, 'templateDefaults: {timeout: "1"}'))
    assert code == 1
    (node,) = rec["status"]["nodes"].values()
    assert node["phase"] == "Failed"
    assert "deadline" in node["message"]


# ---------------------------------------------------------------- variables Argo does not own


def test_a_custom_variable_is_left_as_written(tmp_path: Path) -> None:
    """test/e2e/functional/custom_template_variable.yaml and
    docs/walk-through/custom-template-variable-reference.md: Argo validates and resolves only
    tags with its prefixes (common.go GlobalVarValidWorkflowVariablePrefix: item., steps.,
    inputs., outputs., pod., workflow., tasks.); ``{{custom.variable}}`` is written back as it
    is (simple_template.go simpleReplaceStrict), for another template language to fill."""
    templates = """
    - name: main
      inputs: {parameters: [{name: m, value: hello}]}
      container:
        image: busybox
        command: [echo, "{{custom.variable}} {{ user.name }} {{inputs.parameters.m}}"]
    """
    code, rec = run(tmp_path, workflow(templates))
    assert code == 0, rec
    (node,) = rec["status"]["nodes"].values()
    assert node["outputs"]["result"] == "{{custom.variable}} {{ user.name }} hello"
    assert "{{custom.variable}}: tag without an Argo prefix" in json.dumps(rec)


def test_an_unknown_argo_variable_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go resolveAllVariables: a tag with an Argo prefix must resolve."""
    templates = """
    - name: main
      container: {image: busybox, command: [echo, "{{inputs.parameters.nope}}"]}
    """
    code, rec = run(tmp_path, workflow(templates))
    assert code == 2 and rec == {}
    assert "inputs.parameters.nope" in capsys.readouterr().err


def test_a_metric_must_resolve_every_variable(tmp_path: Path) -> None:
    """operator.go computeMetrics substitutes a metric with ``Replace(..., false)``: there an
    unresolved tag, custom or not, is a metrics error (a run warning), not text."""
    from argo_local.engine import metrics
    from argo_local.expr import params

    assert params.substitute("{{custom.variable}}", {}, "here") == "{{custom.variable}}"
    with pytest.raises(metrics.MetricError, match=r"failed to resolve \{\{custom\.variable\}\}"):
        metrics.render_value("{{custom.variable}}", {}, "here")
