"""ConfigMap- and Secret-backed values in ``workers run``, as Argo v4.1.2 and the kubelet give them.

Each test writes a workflow and the ConfigMaps it needs (the file being run or the
``--manifests`` folder holds them, as Argo's e2e suite applies every ConfigMap under examples/),
runs it with ``workers run`` (every step a real process) and reads run.json and the pods'
output. The docstrings cite the Argo source, or the Kubernetes behaviour the pod relies on.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_yaml, write_yaml

from workers.timeline import parameters

PARAMS_CM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: simple-parameters
  labels: {workflows.argoproj.io/configmap-type: Parameter}
data:
  msg: hello world
"""

PLAIN_CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  greeting: hi
  color: blue
binaryData:
  blob: AAEC
"""


def run(
    tmp_path: Path, body: str, *args: str, manifests: str = ""
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Run ``body`` with ``manifests`` (YAML) as the manifests folder; the exit code, run.json
    (empty if none) and each pod's stdout (its ``outputs.result``) by its display name."""
    folder = tmp_path / "manifests"
    # in a subfolder, as examples/configmaps/simple-parameters-configmap.yaml
    write_yaml(folder / "configmaps", manifests, "cm.yaml")
    code, record = run_yaml(tmp_path, body, "--manifests", str(folder), *args)
    out = {
        n["displayName"]: n["outputs"]["result"]
        for n in (record.get("status") or {}).get("nodes", {}).values()
        if n["type"] == "Pod" and "result" in (n.get("outputs") or {})
    }
    return code, record, out


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def workflow(templates: str, extra: str = "") -> str:
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
        "metadata:\n  generateName: cm-\nspec:\n  entrypoint: main\n"
        + textwrap.indent(textwrap.dedent(extra).strip("\n") + "\n", "  ")
        + "  templates:\n"
        + textwrap.indent(textwrap.dedent(templates).strip("\n") + "\n", "    ")
    )


PRINT = """
- name: main
  container: {image: alpine, command: [echo, "{{workflow.parameters.message}}"]}
"""

UNLABELLED_CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: simple-parameters}
data: {msg: unlabelled}
"""


@pytest.mark.parametrize(
    ("ref", "manifests", "expected"),
    [
        ("{name: simple-parameters, key: msg}", PARAMS_CM, "hello world"),
        ("{name: simple-parameters, key: nope}, default: fallback", PARAMS_CM, "fallback"),
        ("{name: absent, key: msg}, default: fallback", PARAMS_CM, "fallback"),
        # the informer lists only ConfigMaps with the configmap-type label
        ("{name: simple-parameters, key: msg}, default: fallback", UNLABELLED_CM, "fallback"),
    ],
)
def test_global_parameter_from_a_config_map(
    tmp_path: Path, ref: str, manifests: str, expected: str
) -> None:
    """operator.go setGlobalParameters: a ``valueFrom.configMapKeyRef`` argument takes the
    ConfigMap's key (common/configmap.go GetConfigMapValue), else its ``valueFrom.default``;
    examples/global-parameters-from-configmap.yaml."""
    extra = f"""
    arguments:
      parameters:
        - name: message
          valueFrom: {{configMapKeyRef: {ref}}}
    """
    code, rec, out = run(tmp_path, workflow(PRINT, extra), manifests=manifests)
    assert code == 0, rec["status"].get("message")
    assert out[rec["metadata"]["name"]] == expected
    assert rec["spec"]["arguments"]["parameters"] == [{"name": "message", "value": expected}]


def test_a_config_map_in_the_file_being_run_wins(tmp_path: Path) -> None:
    """A ConfigMap document next to the Workflow in the file being run is read first (a
    cluster would hold one ConfigMap of that name; the file is what the user applies)."""
    extra = """
    arguments:
      parameters:
        - {name: message, valueFrom: {configMapKeyRef: {name: simple-parameters, key: msg}}}
    """
    body = PARAMS_CM.replace("hello world", "from the file") + "---\n" + workflow(PRINT, extra)
    code, rec, out = run(tmp_path, body, manifests=PARAMS_CM)
    assert code == 0, rec["status"].get("message")
    assert out[rec["metadata"]["name"]] == "from the file"


@pytest.mark.parametrize(
    ("manifests", "reason"),
    [
        (
            PARAMS_CM.replace("msg:", "other:"),
            "ConfigMap 'simple-parameters' does not have the key",
        ),
        (UNLABELLED_CM, "Please make sure it has the label workflows.argoproj.io/configmap-type"),
    ],
)
def test_global_parameter_without_its_config_map_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], manifests: str, reason: str
) -> None:
    """operator.go setGlobalParameters fails the workflow ("failed to set global parameters:
    failed to set global parameter ... from configmap ...") when the key cannot be read and
    there is no default; locally that is known before anything runs: exit 2, the same reason."""
    extra = """
    arguments:
      parameters:
        - {name: message, valueFrom: {configMapKeyRef: {name: simple-parameters, key: msg}}}
    """
    code, rec, _ = run(tmp_path, workflow(PRINT, extra), manifests=manifests)
    err = capsys.readouterr().err
    assert code == 2 and rec == {}
    assert "failed to set global parameter message from configmap" in err
    assert reason in err and len(err.strip().splitlines()) == 1


INPUT = """
- name: main
  steps:
    - - name: show
        template: show
- name: show
  inputs:
    parameters:
      - name: message
        valueFrom: {configMapKeyRef: {name: "{{workflow.parameters.cm}}", key: msg}%s}
  container: {image: alpine, command: [echo, "{{inputs.parameters.message}}"]}
"""


@pytest.mark.parametrize(
    ("cm", "default", "manifests", "phase", "expected"),
    [
        ("simple-parameters", "", PARAMS_CM, "Succeeded", "hello world"),
        ("absent", ", default: fallback", PARAMS_CM, "Succeeded", "fallback"),
        (
            "absent",
            "",
            PARAMS_CM,
            "Error",
            "unable to retrieve inputs.parameters.message from ConfigMap: ConfigMap 'absent' "
            "does not exist",
        ),
        # a wrong label value is not "not found": the default does not apply
        (
            "simple-parameters",
            ", default: fallback",
            PARAMS_CM.replace(": Parameter", ": Cache"),
            "Error",
            "ConfigMap 'simple-parameters' needs to have the label "
            "workflows.argoproj.io/configmap-type: Parameter to load parameters",
        ),
    ],
)
def test_input_parameter_from_a_config_map(
    tmp_path: Path, cm: str, default: str, manifests: str, phase: str, expected: str
) -> None:
    """common/util.go substituteAndGetConfigMapValue (from ProcessArgs): the ConfigMap's name
    and key see the global parameters; a missing ConfigMap or key (errors.CodeNotFound) falls
    back to ``valueFrom.default``, any other failure, or no default, errors the node
    (operator.go executeTemplate initializeNodeOrMarkError);
    examples/arguments-parameters-from-configmap.yaml."""
    extra = f"arguments: {{parameters: [{{name: cm, value: {cm}}}]}}"
    code, rec, out = run(tmp_path, workflow(INPUT % default, extra), manifests=manifests)
    show = nodes(rec)["show"]
    assert show["phase"] == phase
    if phase == "Succeeded":
        assert code == 0
        assert parameters(show)["message"] == expected
        assert out["show"] == expected
    else:
        assert code != 0
        assert expected in show["message"]


def test_an_argument_value_from_replaces_the_inputs(tmp_path: Path) -> None:
    """common/util.go overwriteWithArguments: an argument with ``valueFrom`` replaces the input's
    own (its default no longer applies); one with a value wins over the input's ConfigMap. The
    entrypoint's arguments are spec.arguments (global-parameters-from-configmap-referenced-
    as-local-variable.yaml)."""
    templates = """
    - name: main
      inputs: {parameters: [{name: message}]}
      steps:
        - - name: from-cm
            template: show
            arguments:
              parameters:
                - {name: message, valueFrom: {configMapKeyRef: {name: simple-parameters, key: msg}}}
          - name: by-value
            template: show
            arguments: {parameters: [{name: message, value: given}]}
          - name: entry
            template: echo
            arguments: {parameters: [{name: message, value: "{{inputs.parameters.message}}"}]}
    - name: show
      inputs:
        parameters:
          - name: message
            default: plain-default
            valueFrom: {configMapKeyRef: {name: absent, key: k}, default: own-default}
      container: {image: alpine, command: [echo, "{{inputs.parameters.message}}"]}
    - name: echo
      inputs: {parameters: [{name: message}]}
      container: {image: alpine, command: [echo, "{{inputs.parameters.message}}"]}
    """
    extra = """
    arguments:
      parameters:
        - {name: message, valueFrom: {configMapKeyRef: {name: simple-parameters, key: msg}}}
    """
    code, rec, _ = run(tmp_path, workflow(templates, extra), manifests=PARAMS_CM)
    assert code == 0, rec["status"].get("message")
    got = {k: parameters(n).get("message") for k, n in nodes(rec).items()}
    assert got["from-cm"] == "hello world"
    assert got["by-value"] == "given"
    assert got["entry"] == "hello world"


def test_a_value_from_without_config_map_key_ref_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go validateArgumentsValues: an argument's ``valueFrom`` only allows default,
    configMapKeyRef and supplied."""
    extra = "arguments: {parameters: [{name: message, valueFrom: {default: x}}]}"
    code, _, _ = run(tmp_path, workflow(PRINT, extra))
    assert code == 2
    assert "message.valueFrom only allows: default, configMapKeyRef" in capsys.readouterr().err


SHOW_FILES = r"""
- name: main
  container:
    image: alpine
    command: [sh, -c]
    args:
      - |
        cd /cfg && for f in $(find . -type f | sort); do echo "$f $(stat -c %a $f) $(cat $f | od -An -tx1 | tr -d ' \n')"; done
        touch /cfg/new 2>/dev/null && echo writable || echo read-only
    volumeMounts: [{name: cfg, mountPath: /cfg}]
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{name: app-config}",
            [
                "./blob 644 000102",
                "./color 644 626c7565",
                "./greeting 644 6869",
            ],
        ),
        (
            "{name: app-config, defaultMode: 0400, items: [{key: greeting, path: sub/hello.txt},"
            " {key: color, path: c, mode: 0600}]}",
            ["./c 600 626c7565", "./sub/hello.txt 400 6869"],
        ),
        ("{name: absent, optional: true}", []),
    ],
)
def test_config_map_volume_files(tmp_path: Path, source: str, expected: list[str]) -> None:
    """A ``configMap`` volume (Kubernetes ConfigMapVolumeSource, which Argo passes into the pod
    unchanged: workflowpod.go addVolumeReferences): a file per key of data and binaryData, or
    per ``items`` entry at its path with its mode, ``defaultMode`` (0644) otherwise; always
    read-only; a missing ``optional`` ConfigMap is an empty volume."""
    extra = f"volumes: [{{name: cfg, configMap: {source}}}]"
    code, rec, out = run(tmp_path, workflow(SHOW_FILES, extra), manifests=PLAIN_CM)
    assert code == 0, rec["status"].get("message")
    lines = out[rec["metadata"]["name"]].splitlines()
    assert lines == [*expected, "read-only"]


def test_volume_name_from_a_skipped_tasks_default(tmp_path: Path) -> None:
    """dag.go resolveDependencyReferences substitutes the workflow's volumes with the task's
    scope (substituteParamsInVolumes), so a skipped producer's ``valueFrom.default`` names the
    ConfigMap (test/e2e/functional/dag-skipped-volume-default.yaml,
    TestDAGSkippedVolumeRefProducerDefault)."""
    templates = """
    - name: main
      dag:
        tasks:
          - {name: producer, template: produce, when: "false"}
          - {name: consumer, template: consume, depends: "producer.Succeeded || producer.Skipped"}
    - name: produce
      outputs:
        parameters:
          - name: cm-name
            valueFrom: {path: /tmp/out.txt, default: app-config}
      container: {image: alpine, command: [sh, -c, "echo real > /tmp/out.txt"]}
    - name: consume
      container:
        image: alpine
        command: [cat, /cfg/greeting]
        volumeMounts: [{name: cfg, mountPath: /cfg}]
    """
    extra = (
        'volumes: [{name: cfg, configMap: {name: "{{tasks.producer.outputs.parameters.cm-name}}"}}]'
    )
    code, rec, out = run(tmp_path, workflow(templates, extra), manifests=PLAIN_CM)
    assert code == 0, rec["status"].get("message")
    assert nodes(rec)["producer"]["phase"] == "Skipped"
    assert out["consumer"] == "hi"


@pytest.mark.parametrize(
    ("volume", "reason"),
    [
        ("{name: cfg, configMap: {name: absent}}", "no ConfigMap 'absent'"),
        (
            "{name: cfg, configMap: {name: app-config, items: [{key: nope, path: x}]}}",
            "ConfigMap 'app-config'",
        ),
        ("{name: cfg, secret: {secretName: my-secret}}", "list its keys in secret.items"),
        (
            "{name: cfg, secret: {secretName: my-secret, items: [{key: absent-key, path: x}]}}",
            "set MY_SECRET_ABSENT_KEY in the environment or .env",
        ),
    ],
)
def test_a_volume_the_pod_cannot_get_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], volume: str, reason: str
) -> None:
    """The kubelet does not start a pod whose non-optional ConfigMap, key or secret is missing
    (the pod stays ContainerCreating); a local run refuses it before running, naming what to
    add (a ConfigMap document, or the variable that holds the secret)."""
    extra = f"volumes: [{volume}]"
    code, rec, _ = run(tmp_path, workflow(SHOW_FILES, extra), manifests=PLAIN_CM)
    err = capsys.readouterr().err
    assert code == 2 and rec == {}
    assert reason in err and len(err.strip().splitlines()) == 1


SECRET_WF = """
- name: main
  container:
    image: alpine
    command: [sh, -c, 'echo "env $MYSECRETPASSWORD"; echo "file $(cat /secret/mountpath/mypassword)"; ls /secret/mountpath']
    env:
      - name: MYSECRETPASSWORD
        valueFrom: {secretKeyRef: {name: my-secret, key: mypassword}}
    volumeMounts: [{name: my-secret-vol, mountPath: /secret/mountpath}]
"""


def test_secret_volume_files_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/secrets.yaml: a ``secret`` volume's files hold the Secret's keys; locally their
    values are found as secretKeyRef finds them (``<SECRET>_<KEY>`` in the environment or
    .env), the keys being those the workflow names. The value is masked in run.json, and the
    files are removed when the pod ends."""
    value = "S00perS3cretPa55word"
    monkeypatch.setenv("MY_SECRET_MYPASSWORD", value)
    extra = "volumes: [{name: my-secret-vol, secret: {secretName: my-secret}}]"
    code, rec, out = run(tmp_path, workflow(SECRET_WF, extra))
    assert code == 0, rec["status"].get("message")
    run_dir = next((tmp_path / "runs").glob("*/"))
    # the pod's own output has it; what the runner writes has it masked
    (log,) = run_dir.glob("pods/*/stdout.log")
    assert log.read_text().splitlines() == [f"env {value}", f"file {value}", "mypassword"]
    assert out[rec["metadata"]["name"]].splitlines() == ["env ***", "file ***", "mypassword"]
    assert value not in (run_dir / "run.json").read_text()
    assert not list(run_dir.glob("pods/*/secrets"))


def test_env_from_a_config_map(tmp_path: Path) -> None:
    """Kubernetes EnvFromSource and ConfigMapKeySelector in a container (Argo passes the
    container's env through, workflowpod.go): every key of ``envFrom.configMapRef`` with its
    ``prefix``, ``env`` winning over it; ``valueFrom.configMapKeyRef`` one key; an
    ``optional`` missing ConfigMap leaves the variables unset."""
    templates = """
    - name: main
      container:
        image: alpine
        command: [sh, -c, 'echo "$APP_greeting $APP_color $ONE ${GONE-unset}"']
        envFrom:
          - {prefix: APP_, configMapRef: {name: app-config}}
          - {configMapRef: {name: absent, optional: true}}
        env:
          - {name: APP_color, value: red}
          - {name: ONE, valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}}
          - {name: GONE, valueFrom: {configMapKeyRef: {name: absent, key: x, optional: true}}}
    """
    code, rec, out = run(tmp_path, workflow(templates), manifests=PLAIN_CM)
    assert code == 0, rec["status"].get("message")
    assert out[rec["metadata"]["name"]].strip() == "hi red hi unset"


def test_env_from_a_secret_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``envFrom.secretRef`` imports every key of a Secret; locally secrets come one by one
    from the environment, so their keys cannot be listed: refused with the alternative."""
    templates = """
    - name: main
      container:
        image: alpine
        command: ["true"]
        envFrom: [{secretRef: {name: my-secret}}]
    """
    code, _, _ = run(tmp_path, workflow(templates))
    assert code == 2
    assert "name each one with env[].valueFrom.secretKeyRef" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_secret_volume_items_from_the_environment_or_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A secret volume's ``items`` (Kubernetes SecretVolumeSource: only the listed keys, each at
    its ``path`` with its ``mode``); the value comes from ``<SECRET>_<KEY>`` in the
    environment or in the ``--env-file``, as a secretKeyRef's does."""
    monkeypatch.delenv("DB_CREDS_PASSWORD", raising=False)
    args: list[str] = []
    if where == "environment":
        monkeypatch.setenv("DB_CREDS_PASSWORD", "correct-horse-battery")
    else:
        env_file = tmp_path / "secrets.env"
        env_file.write_text("DB_CREDS_PASSWORD='correct-horse-battery'\n")
        args = ["--env-file", str(env_file)]
    templates = """
    - name: main
      container:
        image: alpine
        command: [sh, -c, 'stat -c %a /s/pw/file; test "$(cat /s/pw/file)" = correct-horse-battery && echo same']
        volumeMounts: [{name: creds, mountPath: /s}]
    """
    extra = (
        "volumes: [{name: creds, secret: {secretName: db-creds, "
        "items: [{key: password, path: pw/file, mode: 0400}]}}]"
    )
    code, rec, out = run(tmp_path, workflow(templates, extra), *args)
    assert code == 0, rec["status"].get("message")
    assert out[rec["metadata"]["name"]].splitlines() == ["400", "same"]
