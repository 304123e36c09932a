"""A container starts in its working folder, as Kubernetes starts it, in a root of its own.

Kubernetes' core/v1 ``Container.workingDir`` (Argo v4.1.2 docs/fields.md, which Argo passes to
the pod unchanged): "Container's working directory. If not specified, the container runtime's
default will be used, which might be configured in the container image" (the image's
``WORKDIR``, ``/`` for alpine, busybox, python, debian and ubuntu, which set none). Argo's
executor starts the user's command there: cmd/argoexec/commands/emissary_link_artifacts_test.go
TestStageInputArtifacts_ArtifactAtWorkingDir ("The runtime chdirs the emissary into workingDir
before staging runs"; relative paths resolve there). Argo's examples/conditional-artifacts.yaml
writes ``open("result.txt", "w")`` in python:alpine and declares the output at
``/result.txt``. The OCI runtime spec requires ``process.cwd`` to be an absolute path.

Every run test is a real ``python -m workers run`` of a small workflow, in each sandbox mode
this machine has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import MODES, one_pod_workflow, pod_node, run_process

from argo_local.pods import sandbox
from argo_local.pods.podenv import working_dir

workers_run = run_process


def outputs(record: dict[str, Any], display: str) -> dict[str, str]:
    node = pod_node(record, display)
    return {p["name"]: p["value"] for p in (node.get("outputs") or {}).get("parameters") or []}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("working", "options"),
    [
        ("/", []),  # the container's own workingDir
        (None, ["--workdir", "busybox=/"]),  # the image's WORKDIR, every tag
        (None, ["--workdir", "busybox:1.36=/"]),  # the image's WORKDIR, this tag
    ],
    ids=["workingDir", "workdir-untagged", "workdir-tagged"],
)
def test_a_relative_write_in_the_root_is_the_output_declared_at_the_root(
    tmp_path: Path, mode: str, working: str | None, options: list[str]
) -> None:
    """examples/conditional-artifacts.yaml's pattern: a relative write in an image whose
    WORKDIR is ``/`` is the ``/result.txt`` its output reads; it lands in the pod's own
    folder, not in the host's root nor in the run's shared work folder."""
    assert not os.path.lexists("/result.txt")
    proc, record = workers_run(
        tmp_path,
        one_pod_workflow("echo it was heads > result.txt", "/result.txt", working=working),
        "--sandbox",
        mode,
        *options,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(record, "write") == {"value": "it was heads"}
    assert not os.path.lexists("/result.txt")
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "work" / "result.txt").exists()
    (own,) = run.glob("pods/*/root/result.txt")
    assert own.read_text() == "it was heads\n"


@pytest.mark.parametrize("mode", MODES)
def test_without_a_working_folder_a_pod_works_in_a_root_of_its_own(
    tmp_path: Path, mode: str
) -> None:
    """A container without workingDir whose image's WORKDIR the runner is not told works in
    ``/``, the container runtime's default for an image without WORKDIR (busybox sets none):
    a folder of the pod's own, never the run's work folder that every pod would share."""
    proc, record = workers_run(
        tmp_path,
        one_pod_workflow("pwd > /tmp/v; echo here > mark.txt", "/tmp/v"),
        "--sandbox",
        mode,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    (own,) = run.glob("pods/*/root/mark.txt")
    assert own.read_text() == "here\n"
    # under bubblewrap the pod sees its own root at /; remapped, its host folder
    assert outputs(record, "write") == {"value": "/" if mode == "bwrap" else str(own.parent)}
    assert not (run / "work" / "mark.txt").exists()
    assert not os.path.lexists("/mark.txt")


PARTS = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: parts
spec:
  entrypoint: main
  templates:
    - name: main
      steps:
        - - name: part
            template: part
            arguments: {parameters: [{name: n, value: "{{item}}"}]}
            withItems: ["1", "2", "3"]
    - name: part
      inputs: {parameters: [{name: n}]}
      script:
        image: python:3.12-alpine
        command: [python]
        source: |
          import time
          with open("part.txt", "w") as f:
              f.write("{{inputs.parameters.n}}")
          time.sleep(0.5)  # the three pods run at once: each reads its own file back
          with open("part.txt") as f:
              assert f.read() == "{{inputs.parameters.n}}"
      outputs:
        parameters:
          - name: part
            valueFrom: {path: part.txt}
        artifacts:
          - name: copy
            path: part.txt
            archive: {none: {}}
"""


@pytest.mark.parametrize("mode", MODES)
def test_parallel_pods_writing_the_same_relative_file_each_read_their_own(
    tmp_path: Path, mode: str
) -> None:
    """Three parallel Python pods write and read back ``part.txt`` in their working folder:
    on a cluster each container starts in its image's WORKDIR (core/v1 Container.workingDir:
    "If not specified, the container runtime's default will be used, which might be
    configured in the container image"; python:alpine sets none, so ``/``) of a root
    filesystem that is its own (the kubelet gives each container a fresh one), so all three
    Succeed; a working folder shared by the run's pods made two of them fail. The relative
    output paths resolve against the working folder, as Argo's emissary, running in the
    container's working folder, opens them (cmd/argoexec/commands/emissary.go saveParameter
    ``os.Open(filepath.Clean(srcPath))``, saveArtifact ``os.Stat(srcPath)``); Argo's
    validation does not require them absolute (Artifact.CleanPath refuses only ``..``)."""
    proc, record = workers_run(tmp_path, PARTS, "--sandbox", mode)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert record["status"]["phase"] == "Succeeded"
    for i, n in enumerate(["1", "2", "3"]):
        node = pod_node(record, f"part({i}:{n})")
        assert node["phase"] == "Succeeded"
        assert outputs(record, f"part({i}:{n})") == {"part": n}
        (art,) = node["outputs"]["artifacts"]
        assert art["name"] == "copy"
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.read_text() for p in run.glob("pods/*/root/part.txt")) == ["1", "2", "3"]
    stored = sorted(p.read_text() for p in run.glob("artifacts/**/part.txt") if p.is_file())
    assert stored == ["1", "2", "3"]
    assert not (run / "work" / "part.txt").exists()


@pytest.mark.parametrize("mode", MODES)
def test_a_relative_output_path_is_read_in_the_working_folder(tmp_path: Path, mode: str) -> None:
    """A relative ``valueFrom.path`` names a file of the container's working folder (its
    workingDir here, a folder the host lacks), not of the runner's."""
    proc, record = workers_run(
        tmp_path,
        one_pod_workflow("mkdir -p out && echo made > out/v.txt", "out/v.txt", working="/job"),
        "--sandbox",
        mode,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(record, "write") == {"value": "made"}
    assert not os.path.lexists("/job")


@pytest.mark.parametrize("mode", MODES)
def test_pods_in_the_same_image_folder_do_not_see_each_others_files(
    tmp_path: Path, mode: str
) -> None:
    """Each pod has its own root filesystem: two pods writing ``result.txt`` in ``/`` at once
    each read their own, and a later pod in ``/`` finds none (a shared work folder would
    collide: no cluster does)."""
    proc, record = workers_run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: private-roots
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: write
                    template: write
                    arguments: {parameters: [{name: text, value: "{{item}}"}]}
                    withItems: [one, two, three]
                - - name: look
                    template: look
            - name: write
              inputs: {parameters: [{name: text}]}
              container:
                image: busybox
                command: [sh, -c]
                args: ['echo {{inputs.parameters.text}} > result.txt; sleep 0.3']
              outputs:
                parameters:
                  - name: value
                    valueFrom: {path: /result.txt}
            - name: look
              container:
                image: busybox
                command: [sh, -c]
                args: ['if test -e result.txt; then echo seen; else echo absent; fi > /tmp/v']
              outputs:
                parameters:
                  - name: value
                    valueFrom: {path: /tmp/v}
        """,
        "--sandbox",
        mode,
        "--workdir",
        "busybox=/",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, text in enumerate(["one", "two", "three"]):
        assert outputs(record, f"write({i}:{text})") == {"value": text}
    assert outputs(record, "look") == {"value": "absent"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("working", "path"),
    [
        ("/app/src", "/app/src/out.txt"),  # a folder the host lacks: created in the pod's own
        ("/tmp/job", "/tmp/job/out.txt"),  # under the pod's /tmp: created there
    ],
)
def test_a_working_folder_is_created_and_relative_paths_resolve_there(
    tmp_path: Path, mode: str, working: str, path: str
) -> None:
    """workingDir is where relative paths resolve (emissary_link_artifacts_test.go
    TestStageInputArtifacts_ArtifactAtWorkingDir); a missing one is created for the
    container, in its own folders, never on the host."""
    assert not os.path.lexists("/app")
    proc, record = workers_run(
        tmp_path, one_pod_workflow("echo made > out.txt", path, working=working), "--sandbox", mode
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(record, "write") == {"value": "made"}
    assert not os.path.lexists("/app")


@pytest.mark.bwrap
def test_in_a_mount_namespace_the_working_folder_is_the_containers_path(tmp_path: Path) -> None:
    """``pwd`` in the pod is the workingDir itself (under bubblewrap the pod sees container
    paths), and the image's (the host's) entries are still there, read-only."""
    proc, record = workers_run(
        tmp_path,
        one_pod_workflow("pwd > /tmp/v; test -d usr && echo usr >> /tmp/v", "/tmp/v", working="/"),
        "--sandbox",
        "bwrap",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(record, "write") == {"value": "/\nusr"}


@pytest.mark.parametrize("mode", MODES)
def test_an_init_container_has_a_root_of_its_own(tmp_path: Path, mode: str) -> None:
    """Each container has its own image, so its own root: what an init container writes in
    ``/`` is not in the main container's ``/`` (only volumes are shared)."""
    proc, record = workers_run(
        tmp_path,
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: init-root
        spec:
          entrypoint: main
          templates:
            - name: main
              initContainers:
                - name: init
                  image: busybox
                  workingDir: /
                  command: [sh, -c, 'echo init > result.txt']
              container:
                image: busybox
                workingDir: /
                command: [sh, -c]
                args: ['if test -e result.txt; then echo seen; else echo absent; fi > /tmp/v']
              outputs:
                parameters:
                  - name: value
                    valueFrom: {path: /tmp/v}
        """,
        "--sandbox",
        mode,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(record, "init-root") == {"value": "absent"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "workingDir 'work' is not an absolute path"),
        (["--workdir", "busybox=work"], "work is not an absolute path"),
        (["--workdir", "busybox"], "expected IMAGE=DIR"),
    ],
)
def test_a_relative_working_folder_is_refused_before_running(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """The OCI runtime spec requires an absolute ``process.cwd``: a pod with a relative
    workingDir never starts on a cluster, so it is refused (exit 2) rather than run."""
    working = "work" if not args else None
    proc, _ = workers_run(tmp_path, one_pod_workflow("true", "/tmp/v", working=working), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/pods"))


@pytest.mark.parametrize(
    ("container", "workdirs", "expected"),
    [
        ({"image": "python:alpine3.23"}, {"python": "/"}, "/"),
        ({"image": "python:alpine3.23"}, {"python:alpine3.23": "/x", "python": "/"}, "/x"),
        ({"image": "reg:5000/team/tool:v2"}, {"reg:5000/team/tool": "/app"}, "/app"),
        ({"image": "busybox", "workingDir": "/w"}, {"busybox": "/"}, "/w"),
        ({"image": "busybox"}, {}, "/"),  # unknown: the runtime's default
        ({"image": "python:alpine3.23"}, {"python:3.12": "/app"}, "/"),
    ],
)
def test_working_dir_matches_images_as_entrypoint_does(
    container: dict[str, Any], workdirs: dict[str, str], expected: str
) -> None:
    """``--workdir`` names an image as ``--entrypoint`` does (with its tag first, then
    without for every tag); the container's own workingDir wins, as in Kubernetes; an image
    the runner is not told of works in ``/``, as one without WORKDIR does."""
    assert working_dir(container, workdirs) == expected


def test_own_folder_layer_table(tmp_path: Path) -> None:
    """The host folder a pod's own working folder is layered over: the path itself, or its
    deepest ancestor the host has; a host symlink or file on the way is refused."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    assert sandbox.own_folder_layer("/") == "/"
    assert sandbox.own_folder_layer(str(tmp_path / "dir")) == str(tmp_path / "dir")
    assert sandbox.own_folder_layer(str(tmp_path / "dir" / "a" / "b")) == str(tmp_path / "dir")
    for bad in ("file/a", "link/a"):
        with pytest.raises(sandbox.PodPathError):
            sandbox.own_folder_layer(str(tmp_path / bad))
