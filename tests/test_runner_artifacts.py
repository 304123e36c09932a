"""Artifacts in the local runner, against Argo's documentation and executor.

Each test runs one of our own YAML files from tests/argo_examples/ through
``python -m workers run`` (real processes, real files) and reads the run folder: run.json (an
Argo Workflow object), the artifact repository ``RUN/artifacts`` and the archives in it.
Sources: docs/walk-through/artifacts.md, hardwired-artifacts.md, docs/key-only-artifacts.md,
docs/configure-artifact-repository.md (the default key format), workflow/executor/executor.go
(loadArtifact, unarchiveArtifact, saveArtifact, stageArchiveFile), util/archive/archive.go.
"""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_runner_semantics import MODES, nodes, outputs, root_of, run
from workers.runadapter import main


def repository(record: dict[str, Any]) -> Path:
    return Path(record["workersRunner"]["artifactRepository"])


def artifact(node: dict[str, Any], name: str, side: str = "outputs") -> dict[str, Any]:
    found = [a for a in node[side].get("artifacts") or [] if a["name"] == name]
    assert found, f"{node['displayName']} has no {side} artifact {name}: {node[side]}"
    return dict(found[0])


def members(archive: Path) -> dict[str, str]:
    """An archive's entries: file contents, ``->target`` for links, ``/`` for folders."""
    out: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf.getmembers():
            if m.issym():
                out[m.name] = "->" + m.linkname
            elif m.isdir():
                out[m.name] = "/"
            else:
                f = tf.extractfile(m)
                out[m.name] = f.read().decode() if f else ""
    return out


@pytest.mark.parametrize("mode", MODES)
def test_artifacts_pass_between_steps(tmp_path: Path, mode: str) -> None:
    """walk-through/artifacts.md: an output artifact saved after the step, passed with
    ``from: "{{steps.X.outputs.artifacts.Y}}"`` and placed at the consumer's path; tar+gzip
    by default, ``archive: none`` kept raw, ``tar.compressionLevel`` honoured; the default key
    ``{{workflow.name}}/{{pod.name}}/<name>.tgz`` (configure-artifact-repository.md keyFormat,
    executor.go saveArtifactFromFile); raw inputs with ``mode``; ``spec.arguments.artifacts``;
    ``{{inputs|outputs.artifacts.X.path}}`` and ``{{outputs.parameters.X.path}}``
    (common/util.go SubstituteParams); a steps template's output artifact ``from`` a child."""
    code, rec = run(tmp_path, "artifacts-passing.yaml", sandbox_mode=mode)
    assert code == 0, rec["status"]
    by = nodes(rec)
    repo = repository(rec)
    make, use = by["make"], by["use"]
    assert outputs(make)["answer"] == "42"
    pod = rec["workersRunner"]["pods"][make["id"]]["podName"]
    file = artifact(make, "file")
    assert file == {
        "name": "file",
        "path": "/tmp/file.txt",
        "s3": {"key": f"{rec['metadata']['name']}/{pod}/file.tgz"},
    }
    assert members(repo / file["s3"]["key"]) == {
        "file.txt": "tool ran with hello from the workflow\n"
    }
    folder = members(repo / artifact(make, "folder")["s3"]["key"])
    assert folder == {
        "folder": "/",
        "folder/one.txt": "one\n",
        "folder/sub": "/",
        "folder/sub/two.txt": "two\n",
    }
    plain = artifact(make, "plain")
    assert plain["s3"]["key"].endswith(f"{pod}/plain.txt")  # none: the path's base name
    assert (repo / plain["s3"]["key"]).read_text() == "plain\n"
    stored = repo / artifact(make, "stored")["s3"]["key"]
    assert members(stored) == {"stored.txt": "stored\n"}
    assert stored.stat().st_size > 10_000  # level 0: tar blocks, uncompressed
    assert use["outputs"]["result"] == (
        "tool ran with hello from the workflow\none\ntwo\nplain\nstored"
    )
    # The consumer's inputs are the producer's records, at the consumer's own paths.
    assert artifact(use, "file", "inputs") == {**file, "path": "/tmp/in/file.txt"}
    root = root_of(rec)
    report = artifact(root, "report")
    assert report["path"] == "/tmp/report.txt"
    assert members(repo / report["s3"]["key"])["report.txt"].startswith("tool ran")


@pytest.mark.parametrize("mode", MODES)
def test_dag_key_only_optional_and_new_top_level_folders(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``{{tasks.X.outputs.artifacts.Y}}``; key-only artifacts (key-only-artifacts.md) in
    the run's repository; an optional output that was not written is left out and an
    optional input that was not supplied is skipped (executor.go saveArtifact, loadArtifact);
    input and output paths in a new top-level folder (examples/artifact-path-placeholders)."""
    code, rec = run(tmp_path, "artifacts-dag.yaml", sandbox_mode=mode)
    assert code == 0, rec["status"]
    by = nodes(rec)
    repo = repository(rec)
    produce, consume = by["produce"], by["consume"]
    assert [a["name"] for a in produce["outputs"]["artifacts"]] == [
        "text",
        "keyed",
        "parts",
        "made",
    ]
    keyed = artifact(produce, "keyed")
    assert keyed["s3"] == {"key": "shared/keyed.tgz"}
    assert members(repo / "shared" / "keyed.tgz") == {"keyed.txt": "keyed\n"}
    name = rec["metadata"]["name"]
    assert artifact(produce, "parts")["s3"] == {"key": f"{name}/parts"}
    assert sorted(p.name for p in (repo / name / "parts").iterdir()) == ["a.txt", "b.txt"]
    assert members(repo / artifact(produce, "made")["s3"]["key"]) == {
        "workers-art-made.txt": "made\n"
    }
    assert not Path("/usr/local/workers-art-made.txt").exists()  # the pod's own, not the host's
    assert consume["outputs"]["result"] == "3\nkeyed\nB"
    # The run's summary says where each output artifact was saved.
    printed = capsys.readouterr().out
    assert f"artifacts:     {repo} (4 saved)" in printed
    assert f"  produce.keyed: {repo / 'shared' / 'keyed.tgz'}" in printed


@pytest.mark.parametrize("mode", MODES)
def test_missing_required_output_artifact_is_an_error(tmp_path: Path, mode: str) -> None:
    """executor.go stageArchiveFile: "<path> no such file or directory"; the wait container
    fails, which operator.go makes NodeError."""
    code, rec = run(tmp_path, "artifacts-missing.yaml", sandbox_mode=mode)
    assert code == 1
    root = root_of(rec)
    assert root["phase"] == "Error"
    assert "/tmp/result.txt no such file or directory" in root["message"]
    assert rec["status"]["phase"] == "Error"


@pytest.mark.parametrize("mode", MODES)
def test_symlinks_cannot_pull_host_files_into_artifacts(tmp_path: Path, mode: str) -> None:
    """An output is resolved inside the pod's own view: a link to a host file is refused,
    and a link inside a saved folder is archived as a link (util/archive tarDir)."""
    code, rec = run(tmp_path, "artifacts-escape.yaml", sandbox_mode=mode)
    assert code == 1
    by = nodes(rec)
    assert by["link"]["phase"] == "Error"
    assert "outside the pod's /tmp, emptyDirs and volumes" in by["link"]["message"]
    repo = repository(rec)
    saved = members(repo / artifact(by["folder"], "out")["s3"]["key"])
    assert saved == {"out": "/", "out/own.txt": "mine\n", "out/host": "->/etc/hostname"}
    # Nothing else was stored: the refused link left no artifact behind.
    assert [p.name for p in repo.rglob("*") if p.is_file()] == ["out.tgz"]
    assert "artifacts" not in (by["link"].get("outputs") or {})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _rejected(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main([str(_write(tmp_path, text)), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not list((tmp_path / "runs").glob("*/run.json"))
    assert len(err.strip().splitlines()) == 1, err  # one line, never a traceback
    return err


POD = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata: {{name: art}}
    spec:
      entrypoint: main
      templates:
        - name: main
          container: {{image: busybox, command: ["true"]}}
          {body}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "inputs: {artifacts: [{name: a, path: /tmp/a, http: {url: 'https://x.invalid/a'}}]}",
            "inputs.artifacts[a].http: not supported by the local runner",
        ),
        (
            "inputs: {artifacts: [{name: a, path: /src, git: {repo: 'https://x.invalid/r'}}]}",
            "inputs.artifacts[a].git: not supported by the local runner",
        ),
        (
            "outputs: {artifacts: [{name: etc, path: /etc}]}",
            "outputs.artifacts.etc: path /etc is in the image's filesystem",
        ),
        (
            "outputs: {artifacts: [{name: a, path: /tmp/a, s3: {bucket: b, key: k, "
            "accessKeySecret: {name: nowhere-creds, key: ak}, "
            "secretKeySecret: {name: nowhere-creds, key: sk}}}]}",
            "secret nowhere-creds/ak not found locally (set NOWHERE_CREDS_AK",
        ),
        (
            "inputs: {artifacts: [{name: a, path: /tmp/a}]}",
            "does not supply input artifact 'a' of template main",
        ),
        (
            "outputs: {artifacts: [{name: a, path: /tmp/a, archive: {tar: {compressionLevel: 12}}}]}",
            "archive.tar.compressionLevel: expected -1 to 9",
        ),
    ],
)
def test_unrunnable_artifacts_are_rejected_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    """What a local run cannot do is refused before any pod starts, with the field's path;
    a missing input artifact is ProcessArgs' "was not supplied", found by validation."""
    err = _rejected(tmp_path, POD.format(body=body), capsys)
    assert message in err


def test_reference_to_an_undeclared_artifact_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate.go resolveAllVariables: ``{{steps.X.outputs.artifacts.Y}}`` must name an
    output artifact the step's template declares."""
    text = """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {name: art}
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - {name: a, template: make}
                - - name: b
                    template: take
                    arguments:
                      artifacts: [{name: x, from: "{{steps.a.outputs.artifacts.nope}}"}]
            - name: make
              container: {image: busybox, command: ["true"]}
            - name: take
              inputs: {artifacts: [{name: x, path: /tmp/x}]}
              container: {image: busybox, command: ["true"]}
    """
    err = _rejected(tmp_path, text, capsys)
    assert "template make declares no output artifact 'nope'" in err


def test_s3_bucket_round_trip(
    tmp_path: Path, s3_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An artifact naming a bucket (hardwired-artifacts.md, output-artifact-s3) is written
    and read there through fsspec, with the keys its secretKeyRefs name, looked up as env
    secrets are (``<SECRET>_<KEY>``)."""
    monkeypatch.setenv("MINIO_CREDS_ACCESSKEY", "testing")
    monkeypatch.setenv("MINIO_CREDS_SECRETKEY", "testing")
    endpoint = s3_store.endpoint_url.removeprefix("http://")
    location = (
        f"{{bucket: {s3_store.bucket}, endpoint: '{endpoint}', insecure: true, key: {{key}}, "
        "accessKeySecret: {name: minio-creds, key: accesskey}, "
        "secretKeySecret: {name: minio-creds, key: secretkey}}"
    )
    text = f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {{name: s3-art}}
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - {{name: put, template: put}}
                - - {{name: get, template: get}}
            - name: put
              container: {{image: busybox, command: [sh, -c, "echo remote > /tmp/r.txt"]}}
              outputs:
                artifacts:
                  - name: r
                    path: /tmp/r.txt
                    s3: {location.replace("{key}", "dir/r.tgz")}
            - name: get
              inputs:
                artifacts:
                  - name: r
                    path: /tmp/got.txt
                    s3: {location.replace("{key}", "dir/r.tgz")}
              container: {{image: busybox, command: [cat, /tmp/got.txt]}}
    """
    path = _write(tmp_path, text)
    code = main([str(path), "--runs", str(tmp_path / "runs")])
    rec = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert code == 0, rec["status"]
    by = nodes(rec)
    assert by["get"]["outputs"]["result"] == "remote"
    saved = artifact(by["put"], "r")["s3"]
    assert saved["bucket"] == s3_store.bucket and saved["key"] == "dir/r.tgz"
    import s3fs

    fs = s3fs.S3FileSystem(**s3_store.storage_options, skip_instance_cache=True)
    local = tmp_path / "r.tgz"
    fs.get(f"{s3_store.bucket}/dir/r.tgz", str(local))
    assert members(local) == {"r.txt": "remote\n"}
    assert not list(Path(rec["workersRunner"]["artifactRepository"]).rglob("*.tgz"))
