"""No workflow reaches outside its run folder, and the sandbox never weakens silently.

Every test runs ``python -m workers run`` as its own process on a small workflow written
here. The rules come from Kubernetes (a ``subPath`` stays below its volume: validation.go
validateLocalDescendingPath; object names are RFC 1123 subdomains, volume names RFC 1123
labels), Argo (template names: validate.go workflowFieldNameFmt) and the pod's own view of
its filesystem (the wait container reads outputs from the pod, never from the node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runner_helpers import MODES, one_pod_workflow, pod_node, run_process

from argo_local.pods import sandbox

CANARY = "host-canary-7f3a9c"


workers_run = run_process


def output_workflow(command: str, path: str) -> str:
    return one_pod_workflow(command, path, step="leak", image="busybox")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["canary", "/etc/hostname"])
def test_a_symlink_planted_in_the_pods_tmp_does_not_pull_a_host_file_in(
    tmp_path: Path, mode: str, target: str
) -> None:
    host_file = tmp_path / "outside" / "secret.txt"
    host_file.parent.mkdir()
    host_file.write_text(CANARY)
    link_to = str(host_file) if target == "canary" else target
    proc, rec = workers_run(
        tmp_path,
        output_workflow(f"ln -s {link_to} /tmp/out", "/tmp/out"),
        "--sandbox",
        mode,
    )
    assert proc.returncode == 1, proc.stderr
    leak = pod_node(rec, "leak")
    assert leak["phase"] == "Error"
    assert "outputs" not in leak or not leak["outputs"].get("parameters")
    if target == "/etc/hostname":
        assert "outside the pod's /tmp, emptyDirs and volumes" in leak["message"]
    else:
        # The host path starts with /tmp, which in the pod (and in remap's rewriting) is the
        # pod's own /tmp: the link leads to a file the pod never wrote.
        assert "was not written" in leak["message"]
    everything = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("run.json"))
    assert CANARY not in everything + proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_proc_self_environ_is_not_the_runners_environment(tmp_path: Path, mode: str) -> None:
    """A path the host has (and the pod's image would have its own of) is refused before
    anything runs: reading it would read the runner's own process, not the pod's."""
    proc, rec = workers_run(
        tmp_path,
        output_workflow("true", "/proc/self/environ"),
        "--sandbox",
        mode,
        env={"WORKERS_TEST_CANARY": CANARY},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "/proc/self/environ" in proc.stderr
    assert rec == {}
    assert CANARY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_symlink_that_stays_in_the_pod_is_followed_as_the_pod_would(
    tmp_path: Path, mode: str
) -> None:
    # An absolute link target is the pod's path, not the host's: /tmp/real is the pod's /tmp.
    proc, rec = workers_run(
        tmp_path,
        output_workflow("echo inside > /tmp/real && ln -s /tmp/real /tmp/out", "/tmp/out"),
        "--sandbox",
        mode,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    params = pod_node(rec, "leak")["outputs"]["parameters"]
    assert params == [{"name": "value", "value": "inside"}]


def test_pod_file_resolution_table(tmp_path: Path) -> None:
    """The resolution rules themselves, on real files and links."""
    pod_tmp = tmp_path / "pod-tmp"
    vol = tmp_path / "vol"
    pod_tmp.mkdir()
    vol.mkdir()
    (vol / "data").write_text("v")
    (pod_tmp / "to-vol").symlink_to("/mnt/vol/data")  # absolute: the pod's /mnt/vol
    (pod_tmp / "rel").symlink_to("../mnt/vol/data")  # relative to the pod's /tmp
    (pod_tmp / "loop").symlink_to("/tmp/loop")
    (pod_tmp / "up").symlink_to("../../etc/passwd")
    mounts = [sandbox.Mount(pod_tmp, "/tmp"), sandbox.Mount(vol, "/mnt/vol")]
    assert sandbox.pod_file("/tmp/to-vol", mounts) == vol / "data"
    assert sandbox.pod_file("/tmp/rel", mounts) == vol / "data"
    assert sandbox.pod_file("/tmp/x/../to-vol", mounts) == vol / "data"
    assert sandbox.pod_file("/tmp/not-yet", mounts) == pod_tmp / "not-yet"
    for bad, why in [
        ("/tmp/loop", "too many levels"),
        ("/tmp/up", "outside the pod"),
        ("/tmp/../etc/passwd", "outside the pod"),
        ("/etc/hostname", "outside the pod"),
        ("tmp/relative", "not an absolute path"),
    ]:
        with pytest.raises(sandbox.PodPathError, match=why):
            sandbox.pod_file(bad, mounts)


def test_a_subpath_that_climbs_out_of_its_volume_is_refused(tmp_path: Path) -> None:
    proc, rec = workers_run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: climb
        spec:
          entrypoint: main
          volumeClaimTemplates:
            - metadata:
                name: shared
              spec:
                accessModes: [ReadWriteMany]
                resources:
                  requests:
                    storage: 1Mi
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c, "echo escaped > /mnt/x"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt
                    subPath: ../../../escaped
        """,
        "--sandbox",
        "remap",
    )
    assert proc.returncode == 1
    root = rec["status"]["nodes"]["climb"]
    assert root["phase"] == "Error"
    assert "subPath '../../../escaped': must be a relative path without '..'" in root["message"]
    assert not list(tmp_path.rglob("escaped"))


@pytest.mark.parametrize(
    ("meta", "volumes", "template", "expected"),
    [
        ("name: ../../evil", "[]", "t", "metadata.name '../../evil' is not a valid name"),
        ("generateName: a/b-", "[]", "t", "metadata.generateName 'a/b-x' is not a valid name"),
        ("name: ok", "[{name: ../v, emptyDir: {}}]", "t", "volume name '../v' is not a valid"),
        ("name: ok", "[]", "../t", "name '../t' is not a valid name"),
    ],
    ids=["workflow-name", "generate-name", "volume-name", "template-name"],
)
def test_names_that_would_be_paths_are_refused_before_running(
    tmp_path: Path, meta: str, volumes: str, template: str, expected: str
) -> None:
    text = f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          {meta}
        spec:
          entrypoint: '{template}'
          volumes: {volumes}
          templates:
            - name: '{template}'
              container: {{image: busybox, command: ['true']}}
        """
    proc, _ = workers_run(tmp_path, text, "--sandbox", "remap")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path.parent / "evil").exists()


def _broken_bwrap(tmp_path: Path) -> dict[str, str]:
    """A ``bwrap`` first on PATH that fails the way one without user namespaces does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


HELLO = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata:
      name: hello
    spec:
      entrypoint: main
      templates:
        - name: main
          container:
            image: busybox
            command: [echo, hello]
    """


def test_a_bwrap_that_cannot_create_namespaces_stops_the_run(tmp_path: Path) -> None:
    env = _broken_bwrap(tmp_path)
    proc, rec = workers_run(tmp_path, HELLO, env=env)
    assert proc.returncode == 2
    assert "bwrap cannot create namespaces" in proc.stderr
    assert "--sandbox remap" in proc.stderr
    assert rec == {}  # nothing ran
    proc, rec = workers_run(tmp_path, HELLO, "--sandbox", "remap", env=env)
    assert proc.returncode == 0, proc.stderr
    assert rec["status"]["phase"] == "Succeeded"


def test_remap_mode_prints_the_real_merged_output_and_reconciles(tmp_path: Path) -> None:
    """Without bubblewrap the pipeline's printed paths are the host's, and the rows add up."""
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers",
            "run",
            "workers-pipeline",
            "-p",
            "rows=3000",
            "-p",
            "rows-per-shard=1000",
            "--runs",
            str(runs),
            "--sandbox",
            "remap",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(
        line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line and line[0] != " "
    )
    merged = Path(lines["merged output"].strip())
    assert merged.is_file() and str(merged).startswith(str(runs.resolve()))
    assert len(json.loads(merged.read_text())) == 3000
    assert lines["rows"].strip() == "merged 3,000 == produced 3,000 in 3 shards"
