"""Process lifetimes in the local runner, against Argo v4.1.2: daemon steps, sidecars, init
containers, suspend with a duration, template timeouts, and no node left Running.

Each test writes a small workflow of its own, runs it with ``python -m workers run`` (in-process,
real processes) and reads run.json; the Argo source each behaviour comes from is in the test's
docstring.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_yaml

from argo_local.pods import sandbox

MODES = ["remap"] + (["bwrap"] if sandbox.bwrap_works()[0] else [])
PY = sys.executable


def run(
    tmp_path: Path, yaml_text: str, *args: str, mode: str = "auto"
) -> tuple[int, dict[str, Any]]:
    return run_yaml(tmp_path, yaml_text, "--sandbox", mode, *args)


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stamp(text: str) -> float:
    from datetime import datetime

    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


SERVER = f"""\
  - name: server
    daemon: true
    container:
      image: python:3
      command: [{PY}, -m, http.server, "{{{{workflow.parameters.port}}}}", --bind, 127.0.0.1]
      readinessProbe:
        httpGet: {{path: /, port: "{{{{workflow.parameters.port}}}}"}}
        periodSeconds: 1
"""

CLIENT = f"""\
  - name: client
    inputs:
      parameters: [{{name: host}}]
    container:
      image: python:3
      command: [{PY}, -c]
      args:
        - |
          import urllib.request
          url = "http://{{{{inputs.parameters.host}}}}:{{{{workflow.parameters.port}}}}/"
          print(urllib.request.urlopen(url, timeout=5).status)
"""


@pytest.mark.parametrize("mode", MODES)
def test_daemon_serves_the_next_steps_and_ends_succeeded_with_its_scope(
    tmp_path: Path, mode: str
) -> None:
    """docs/walk-through/daemon-containers.md: a daemon step's next steps run while it lives
    and reach it at ``{{steps.X.ip}}``; it is killed when the steps template that started it
    ends. operator.go assessNodeStatus daemons a node once its pod is running and every
    container ready (the httpGet readinessProbe); exec_control.go killDaemonedChildren then
    marks it Succeeded."""
    port = free_port()
    code, rec = run(
        tmp_path,
        textwrap.dedent(f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {{name: daemon-steps}}
        spec:
          entrypoint: main
          arguments:
            parameters: [{{name: port, value: "{port}"}}]
          templates:
          - name: main
            steps:
            - - name: web
                template: server
            - - name: get
                template: client
                arguments:
                  parameters: [{{name: host, value: "{{{{steps.web.ip}}}}"}}]
        """)
        + SERVER
        + CLIENT,
        mode=mode,
    )
    assert code == 0, rec
    nodes = by_name(rec)
    web, get = nodes["web"], nodes["get"]
    assert web["phase"] == "Succeeded" and get["phase"] == "Succeeded"
    assert get["outputs"]["result"] == "200"
    assert get["inputs"]["parameters"][0]["value"] == "127.0.0.1"
    # the daemon outlived the step after it and was killed when the steps ended
    assert stamp(web["finishedAt"]) >= stamp(get["finishedAt"])
    assert not listening(port)
    assert any("127.0.0.1" in n for n in rec["workersRunner"]["notes"])


def test_dag_daemon_is_retried_when_it_exits_and_daemoned_satisfies_depends(
    tmp_path: Path,
) -> None:
    """test/e2e/daemon_pod_test.go TestDaemonPodRetry: a daemon whose pod fails while it is
    daemoned is retried by its retryStrategy (attempt 0 Failed), the new attempt is killed
    Succeeded when the DAG ends, and the workflow Succeeds. dag.go: ``depends: X.Daemoned``
    holds for a running daemon; operator.go: a daemon's pod that exits 0 is Failed."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: dag-daemon}
        spec:
          entrypoint: main
          templates:
          - name: main
            dag:
              tasks:
              - {name: flaky, template: flaky}
              - {name: quits, template: quits}
              - {name: user, template: slow, depends: flaky.Daemoned && quits.Daemoned}
          - name: flaky
            daemon: true
            retryStrategy: {limit: 2}
            container:
              image: busybox
              command: [sh, -c, 'if [ {{retries}} = 0 ]; then sleep 1; exit 1; fi; sleep 60']
          - name: quits
            daemon: true
            container:
              image: busybox
              command: [sh, -c, 'sleep 1; exit 0']
          - name: slow
            container:
              image: busybox
              command: [sleep, "3"]
        """,
    )
    nodes = by_name(rec)
    assert nodes["flaky(0)"]["phase"] == "Failed"
    assert nodes["flaky(1)"]["phase"] == "Succeeded"
    assert nodes["flaky"]["phase"] == "Succeeded"
    assert nodes["user"]["phase"] == "Succeeded"
    # A daemon that exits by itself is Failed; as a task with dependents that already ran,
    # it does not fail the DAG (dag.go assessDAGPhase follows the branch to its dependents).
    assert nodes["quits"]["phase"] == "Failed"
    assert "exit code 0" in nodes["quits"]["message"]
    assert code == 0, rec
    assert rec["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize("mode", MODES)
def test_exec_readiness_probe_runs_in_the_daemons_view(tmp_path: Path, mode: str) -> None:
    """docs/fields.md (Template.daemon): the step after a daemon starts once it is ready;
    a readiness ``exec`` probe runs inside the daemon's container, so it sees the daemon's own
    /tmp (Kubernetes core/v1 Probe)."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: exec-probe}
        spec:
          entrypoint: main
          volumes: [{name: shared, persistentVolumeClaim: {claimName: shared}}]
          templates:
          - name: main
            steps:
            - - {name: slow-start, template: slow-start}
            - - {name: after, template: after}
          - name: slow-start
            daemon: true
            container:
              image: busybox
              command: [sh, -c, 'sleep 1; echo warm > /data/state; touch /tmp/ready; sleep 60']
              volumeMounts: [{name: shared, mountPath: /data}]
              readinessProbe:
                exec: {command: [test, -f, /tmp/ready]}
                periodSeconds: 1
          - name: after
            container:
              image: busybox
              command: [cat, /data/state]
              volumeMounts: [{name: shared, mountPath: /data}]
        """,
        mode=mode,
    )
    assert code == 0, rec
    assert by_name(rec)["after"]["outputs"]["result"] == "warm"


@pytest.mark.parametrize("mode", MODES)
def test_sidecar_runs_beside_main_shares_volumes_not_tmp_and_is_killed(
    tmp_path: Path, mode: str
) -> None:
    """docs/walk-through/sidecars.md: sidecars start with the main container and are killed
    once it exits (executor: SIGTERM, then SIGKILL); operator.go inferFailedReason ignores a
    sidecar's 137/143. Containers of one pod share declared volumes only: each has its own
    image filesystem, so its own /tmp."""
    started = time.time()
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: sidecar}
        spec:
          entrypoint: main
          templates:
          - name: main
            volumes: [{name: scratch, emptyDir: {}}]
            container:
              image: busybox
              command: [sh, -c]
              args:
                - |
                  while [ ! -f /scratch/hello ]; do sleep 0.1; done
                  cat /scratch/hello
                  if [ -e /tmp/side ]; then echo "sidecar /tmp leaked"; exit 3; fi
              volumeMounts: [{name: scratch, mountPath: /scratch}]
            sidecars:
            - name: helper
              image: busybox
              command: [sh, -c, 'touch /tmp/side; echo from-sidecar > /scratch/hello; sleep 600']
              mirrorVolumeMounts: true
        """,
        mode=mode,
    )
    assert code == 0, rec
    node = by_name(rec)["sidecar"]
    assert node["phase"] == "Succeeded"
    assert node["outputs"]["result"] == "from-sidecar"
    assert time.time() - started < 60  # the 600 s sidecar was killed with the main container


def test_sidecar_that_fails_by_itself_fails_the_pod(tmp_path: Path) -> None:
    """operator.go inferFailedReason: a sidecar that exits non-zero on its own (not 137/143)
    makes the pod Failed, with the sidecar's name in the message."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: sidecar-fails}
        spec:
          entrypoint: main
          templates:
          - name: main
            container: {image: busybox, command: [sleep, "1"]}
            sidecars:
            - {name: broken, image: busybox, command: [sh, -c, 'exit 3']}
        """,
    )
    assert code == 1
    node = by_name(rec)["sidecar-fails"]
    assert node["phase"] == "Failed"
    assert node["message"] == "broken: Error (exit code 3)"


@pytest.mark.parametrize("mode", MODES)
def test_init_containers_run_in_order_before_main(tmp_path: Path, mode: str) -> None:
    """docs/fields.md (Template.initContainers) and workflowpod.go addInitContainers: init
    containers run one after another before the main container; ``mirrorVolumeMounts`` gives
    one the main container's volume mounts."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: init}
        spec:
          entrypoint: main
          volumes: [{name: work, emptyDir: {}}]
          templates:
          - name: main
            container:
              image: busybox
              command: [cat, /work/log]
              volumeMounts: [{name: work, mountPath: /work}]
            initContainers:
            - {name: one, image: busybox, command: [sh, -c, 'sleep 0.5; echo one >> /work/log'],
               mirrorVolumeMounts: true}
            - name: two
              image: busybox
              command: [sh, -c, 'echo two >> /w/log']
              volumeMounts: [{name: work, mountPath: /w}]
        """,
        mode=mode,
    )
    assert code == 0, rec
    assert by_name(rec)["init"]["outputs"]["result"] == "one\ntwo"


def test_failed_init_container_fails_the_pod_before_main(tmp_path: Path) -> None:
    """operator.go inferFailedReason: an init container's failure is the pod's (Failed, with
    its name); Kubernetes never starts the main container after it."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: init-fails}
        spec:
          entrypoint: main
          templates:
          - name: main
            container: {image: busybox, command: [sh, -c, 'echo main ran']}
            initContainers:
            - {name: check, image: busybox, command: [sh, -c, 'exit 4']}
        """,
    )
    assert code == 1
    node = by_name(rec)["init-fails"]
    assert node["phase"] == "Failed"
    assert node["message"] == "check: Error (exit code 4)"
    stdout = Path(rec["workersRunner"]["pods"][node["id"]]["stdout"])
    assert not stdout.exists() or stdout.read_text() == ""


def test_suspend_with_duration_waits_and_succeeds_with_defaults(tmp_path: Path) -> None:
    """operator.go executeSuspend: a suspend node with a duration resumes by itself once the
    duration passed (Succeeded), its outputs taking their defaults
    (OverrideOutputParametersWithDefault); the duration is seconds or a Go duration."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: pause}
        spec:
          entrypoint: main
          templates:
          - name: main
            steps:
            - - {name: wait, template: wait}
            - - name: after
                template: echo
                arguments:
                  parameters: [{name: m, value: "{{steps.wait.outputs.parameters.answer}}"}]
          - name: wait
            suspend: {duration: "1500ms"}
            outputs:
              parameters:
              - name: answer
                valueFrom: {supplied: {}, default: "yes"}
          - name: echo
            inputs: {parameters: [{name: m}]}
            container: {image: busybox, command: [echo, "{{inputs.parameters.m}}"]}
        """,
    )
    assert code == 0, rec
    nodes = by_name(rec)
    wait = nodes["wait"]
    assert wait["type"] == "Suspend" and wait["phase"] == "Succeeded"
    assert stamp(wait["finishedAt"]) - stamp(wait["startedAt"]) >= 1.4
    assert nodes["after"]["outputs"]["result"] == "yes"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{name: wait, suspend: {}}", "waits for `argo resume`"),
        (
            "{name: wait, steps: [[{name: a, template: leaf}]], timeout: 5s}",
            "Steps template doesn't support timeout field",
        ),
        ("{name: wait, container: {image: x, command: [true]}, timeout: '10'}", "timeout '10'"),
        (
            "{name: wait, steps: [[{name: a, template: leaf, arguments: "
            "{parameters: [{name: p, value: '{{steps.b.ip}}'}]}}], [{name: b, template: leaf}]]}",
            "is not a daemon",
        ),
        ("{name: wait, steps: [[{name: a, template: leaf}]], daemon: true}", "daemon needs"),
        (
            "{name: wait, containerSet: {containers: [{name: a, dependencies: [b]}, "
            "{name: b, dependencies: [a]}]}}",
            "dependency cycle",
        ),
    ],
)
def test_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, expected: str
) -> None:
    """Refused with the file and template named, exit 2: an indefinite suspend needs the
    cluster's resume API; validate.go refuses ``timeout`` on non-leaf templates and a bare
    whole number as its duration; validate.go addOutputsToScope offers ``.ip`` only for a
    daemon; ``daemon`` runs a pod, so it needs a container or script template; a containerSet's
    dependencies must form a graph (docs/container-set-template.md)."""
    code, _ = run(
        tmp_path,
        f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {{name: refused}}
        spec:
          entrypoint: wait
          templates:
          - {template}
          - {{name: leaf, container: {{image: x, command: ["true"]}}, inputs: {{parameters: [{{name: p, default: ""}}]}}}}
        """,
    )
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "wf.yaml" in err and "template wait" in err
    assert "Traceback" not in err


def test_template_timeout_is_the_pods_deadline(tmp_path: Path) -> None:
    """workflowpod.go: a pod template's ``timeout`` becomes the pod's activeDeadlineSeconds
    (the earlier of the two), so the process is killed and the node Failed
    (examples/dag-task-level-timeout.yaml)."""
    started = time.time()
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: timeout}
        spec:
          entrypoint: main
          templates:
          - name: main
            inputs: {parameters: [{name: limit, value: 1s}]}
            timeout: "{{inputs.parameters.limit}}"
            activeDeadlineSeconds: 30
            container: {image: busybox, command: [sleep, "60"]}
        """,
    )
    assert code == 1
    node = by_name(rec)["timeout"]
    assert node["phase"] == "Failed"
    assert "deadline (1s)" in node["message"]
    assert time.time() - started < 30


INTERRUPTED = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: interrupted}
spec:
  entrypoint: main
  activeDeadlineSeconds: DEADLINE
  templates:
  - name: main
    dag:
      tasks:
      - {name: daemon, template: daemon}
      - {name: pod, template: with-sidecar, depends: daemon}
      - {name: pause, template: pause}
      - {name: loop, template: sleep, withSequence: {count: "3"}}
  - name: daemon
    daemon: true
    container: {image: busybox, command: [sleep, "600"]}
  - name: with-sidecar
    container: {image: busybox, command: [sleep, "600"]}
    sidecars: [{name: side, image: busybox, command: [sleep, "600"]}]
  - name: pause
    suspend: {duration: 10m}
  - name: sleep
    container: {image: busybox, command: [sleep, "600"]}
"""


@pytest.mark.parametrize("how", ["deadline", "sigint"])
def test_no_node_is_left_running_after_an_interrupted_run(tmp_path: Path, how: str) -> None:
    """Argo never leaves a node of a completed workflow Running: a workflow that is stopped
    or exceeds activeDeadlineSeconds fails its running nodes (operator.go), and a daemon
    ends Succeeded as its scope ends (test/e2e/signals_test.go TestStopBehaviorWithDaemon).
    Here a daemon, a pod with a sidecar, a suspend and a loop are all running when the run is
    stopped, by its deadline or by Ctrl-C."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(INTERRUPTED.replace("DEADLINE", "5" if how == "deadline" else "600"))
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [PY, "-m", "workers", "run", str(wf), "--runs", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if how == "sigint":
        # Ctrl-C once the daemon, the pod with its sidecar and the loop's pods are up
        give_up = time.time() + 60
        while time.time() < give_up:
            pods = list(runs.glob("*/pods/*"))
            if len(pods) >= 5 and list(runs.glob("*/pods/*/containers/side")):
                break
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out.decode()
    rec = json.loads(next(runs.glob("*/run.json")).read_text())
    assert rec["status"]["phase"] == "Failed"
    nodes = rec["status"]["nodes"].values()
    left = [(n["displayName"], n["phase"]) for n in nodes if n["phase"] in ("Running", "Pending")]
    assert left == []
    assert all(n["finishedAt"] for n in nodes)
    phases = {n["displayName"]: n["phase"] for n in nodes}
    assert phases["daemon"] == "Succeeded"
    assert phases["pod"] == "Failed" and phases["pause"] == "Failed"
    # every process of the run is gone (under bubblewrap their command lines name the run)
    give_up = time.time() + 10
    while time.time() < give_up:
        pids = subprocess.run(["pgrep", "-f", str(runs)], capture_output=True, text=True)
        if not pids.stdout.strip():
            break
        time.sleep(0.2)
    assert pids.stdout.strip() == ""


@pytest.mark.parametrize("mode", MODES)
def test_container_set_runs_its_graph_in_one_pod(tmp_path: Path, mode: str) -> None:
    """docs/container-set-template.md: the containers of a containerSet run in one pod, each
    once its dependencies completed, sharing the set's volumeMounts; outputs come from the
    container named main. operator.go assessNodeStatus records each as a Container node."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: set}
        spec:
          entrypoint: main
          templates:
          - name: main
            volumes: [{name: ws, emptyDir: {}}]
            containerSet:
              volumeMounts: [{name: ws, mountPath: /ws}]
              containers:
              - {name: a, image: busybox, command: [sh, -c, 'sleep 0.5; echo a >> /ws/log']}
              - {name: b, image: busybox, command: [sh, -c, 'echo b >> /ws/log'],
                 dependencies: [a]}
              - {name: c, image: busybox, command: [sh, -c, 'echo c >> /ws/log'],
                 dependencies: [a]}
              - {name: main, image: busybox, command: [sh, -c, 'echo main >> /ws/log; cat /ws/log'],
                 dependencies: [b, c]}
            outputs:
              parameters: [{name: log, valueFrom: {path: /ws/log}}]
        """,
        mode=mode,
    )
    assert code == 0, rec
    nodes = by_name(rec)
    lines = nodes["set"]["outputs"]["result"].split("\n")
    assert lines[0] == "a" and sorted(lines[1:3]) == ["b", "c"] and lines[3] == "main"
    assert nodes["set"]["outputs"]["parameters"][0]["value"].endswith("main")
    assert {nodes[n]["type"] for n in "abc"} == {"Container"}
    assert nodes["main"]["phase"] == "Succeeded"


def test_container_set_dependency_failure_fails_the_pod(tmp_path: Path) -> None:
    """cmd/argoexec/commands/emissary.go: a container whose dependency exited non-zero fails
    without running (exit code 64, which assessNodeStatus records as Error); the pod fails
    with the first failed container's message (inferFailedReason)."""
    code, rec = run(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: set-fails}
        spec:
          entrypoint: main
          templates:
          - name: main
            containerSet:
              containers:
              - {name: a, image: busybox, command: [sh, -c, 'exit 5']}
              - {name: b, image: busybox, command: [sh, -c, 'echo never'], dependencies: [a]}
        """,
    )
    assert code == 1
    nodes = by_name(rec)
    assert nodes["a"]["phase"] == "Failed"
    assert nodes["b"]["phase"] == "Error" and "dependency 'a'" in nodes["b"]["message"]
    assert nodes["set-fails"]["phase"] == "Failed"
    assert nodes["set-fails"]["message"] == "a: Error (exit code 5)"
