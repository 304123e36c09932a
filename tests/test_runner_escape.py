"""No route of the runner's own file handling leads out of the run folder, in either sandbox.

Each test plants a symlink the way a hostile (or careless) pod can — in an ``archive: none``
output folder, in a shared volume, at the path the runner stages an input through, in the
artifact repository — and checks that the runner, which runs as the user with the host's
files in reach, never writes a host file, mounts a host folder or reads its own process
through it. Kubernetes' own rule is the model: a ``subPath`` is resolved inside its volume
(kubelet's safe subpath opens each component with ``O_NOFOLLOW``), and a pod's processes end
with it. Every test runs ``python -m workers run`` as its own process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_helpers import pod_node, run_process, write_yaml

from argo_local.pods import safepath, sandbox

# Under CI a bwrap that cannot run fails its cases (the runner exits 2 naming why), never
# drops them; elsewhere a machine without it runs the remap cases.
MODES = ["remap"] + (["bwrap"] if sandbox.bwrap_works()[0] or os.environ.get("CI") else [])
CANARY = "host-canary-5d81e2"
PWNED = "written-through-a-link-4c09"


def _host_folder(tmp_path: Path) -> Path:
    """A host folder outside the run folder, with a canary file in it.

    Pods name it with a leading ``//`` (the same path to the kernel): remap mode rewrites a
    literal ``/tmp/...`` to the pod's own /tmp, and a pod can always build a path at run time.
    """
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary.txt").write_text(CANARY)
    return host


def _everything(tmp_path: Path, proc: object) -> str:
    text = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("run.json"))
    return text + str(getattr(proc, "stdout", "")) + str(getattr(proc, "stderr", ""))


def _links_leaving(root: Path) -> list[Path]:
    """Symlinks under ``root`` whose target resolves outside it."""
    found = []
    base = os.path.realpath(root)
    for folder, dirs, names in os.walk(root):
        for n in [*dirs, *names]:
            p = Path(folder) / n
            if p.is_symlink():
                real = os.path.realpath(p)
                if not (real == base or real.startswith(base + os.sep)):
                    found.append(p)
    return found


@pytest.mark.parametrize("mode", MODES)
def test_an_archive_none_folder_with_a_link_out_is_not_stored_nor_written_through(
    tmp_path: Path, mode: str
) -> None:
    host = _host_folder(tmp_path)
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: folder-link
        spec:
          entrypoint: main
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c]
                args: ["mkdir /tmp/out && ln -s /{host} /tmp/out/link && echo {PWNED} > /tmp/data"]
              outputs:
                artifacts:
                  - name: folder
                    path: /tmp/out
                    archive: {{none: {{}}}}
                    s3: {{key: k/out}}
                  - name: through
                    path: /tmp/data
                    archive: {{none: {{}}}}
                    s3: {{key: k/out/link/pwned.txt}}
        """,
        "--sandbox",
        mode,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(p.name for p in host.iterdir()) == ["canary.txt"]
    assert _links_leaving(tmp_path / "runs" / "folder-link" / "artifacts") == []
    node = rec["status"]["nodes"]["folder-link"]
    assert node["phase"] == "Error"
    assert "symlink" in node["message"] and "leaves" in node["message"], node["message"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_subpath_an_earlier_pod_made_a_link_out_is_not_mounted(tmp_path: Path, mode: str) -> None:
    host = _host_folder(tmp_path)
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: subpath-link
        spec:
          entrypoint: main
          volumeClaimTemplates:
            - metadata:
                name: shared
              spec:
                accessModes: [ReadWriteOnce]
                resources:
                  requests:
                    storage: 1Mi
          templates:
            - name: main
              steps:
                - - name: plant
                    template: plant
                - - name: write
                    template: write
            - name: plant
              container:
                image: busybox
                command: [sh, -c, "ln -s /{host} /mnt/vol/sub"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/vol
            - name: write
              container:
                image: busybox
                command: [sh, -c, "echo {PWNED} > /mnt/sub/pwned.txt; ls /mnt/sub"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/sub
                    subPath: sub
        """,
        "--sandbox",
        mode,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(p.name for p in host.iterdir()) == ["canary.txt"]
    write = pod_node(rec, "write")
    assert write["phase"] == "Error"
    message = write["message"]
    assert "subPath 'sub'" in message and "leaves its volume" in message, message
    assert CANARY not in _everything(tmp_path, proc)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["raw-file", "tarball"])
def test_a_link_planted_where_an_input_is_staged_is_not_followed(
    tmp_path: Path, mode: str, kind: str
) -> None:
    """The runner stages an input next to its path before moving it there; a link an
    earlier pod left at that staging name (``in.tmp``, ``in.tmpdir``) is never written
    through."""
    host = _host_folder(tmp_path)
    victim = host / "canary.txt"
    argument = (
        "raw: {data: " + PWNED + "}"
        if kind == "raw-file"
        else "from: '{{steps.plant.outputs.artifacts.packed}}'"
    )
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: staging-link
        spec:
          entrypoint: main
          volumeClaimTemplates:
            - metadata:
                name: shared
              spec:
                accessModes: [ReadWriteOnce]
                resources:
                  requests:
                    storage: 1Mi
          templates:
            - name: main
              steps:
                - - name: plant
                    template: plant
                - - name: use
                    template: use
                    arguments:
                      artifacts:
                        - name: in
                          {argument}
            - name: plant
              container:
                image: busybox
                command: [sh, -c]
                args:
                  - >-
                    ln -s /{victim} /mnt/vol/in.tmp && ln -s /{host} /mnt/vol/in.tmpdir &&
                    mkdir -p /tmp/packed && echo {PWNED} > /tmp/packed/pwned.txt
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/vol
              outputs:
                artifacts:
                  - name: packed
                    path: /tmp/packed
            - name: use
              inputs:
                artifacts:
                  - name: in
                    path: /mnt/vol/in
              container:
                image: busybox
                command: [sh, -c, "find /mnt/vol/in -type f | sort; cat $(find /mnt/vol/in -type f)"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/vol
        """,
        "--sandbox",
        mode,
    )
    assert victim.read_text() == CANARY
    assert sorted(p.name for p in host.iterdir()) == ["canary.txt"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    use = pod_node(rec, "use")
    assert use["phase"] == "Succeeded"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ["archive-none-output", "planted-in-repository"])
def test_an_artifact_key_through_a_link_to_proc_self_reads_nothing_of_the_runner(
    tmp_path: Path, mode: str, route: str
) -> None:
    if route == "archive-none-output":
        plant = "mkdir /tmp/d && ln -s /proc/self /tmp/d/self"
        key = "k/d/self/environ"
    else:
        # A remap pod runs in the run's work folder, next to the repository (RUN/artifacts).
        plant = "mkdir -p ../artifacts/k && ln -s /proc/self ../artifacts/k/self; mkdir /tmp/d"
        key = "k/self/environ"
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: proc-self
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: plant
                    template: plant
                - - name: read
                    template: read
            - name: plant
              container:
                image: busybox
                command: [sh, -c, "{plant}"]
              outputs:
                artifacts:
                  - name: d
                    path: /tmp/d
                    archive: {{none: {{}}}}
                    s3: {{key: k/d}}
            - name: read
              inputs:
                artifacts:
                  - name: env
                    path: /tmp/env
                    s3: {{key: {key}}}
              container:
                image: busybox
                command: [sh, -c, "cat /tmp/env"]
              outputs:
                parameters:
                  - name: env
                    valueFrom:
                      path: /tmp/env
        """,
        "--sandbox",
        mode,
        env={"WORKERS_TEST_CANARY": CANARY},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert CANARY not in _everything(tmp_path, proc)
    for log in (tmp_path / "runs").rglob("*.log"):
        assert CANARY not in log.read_text(errors="replace")
    for f in (tmp_path / "runs").rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert CANARY.encode() not in f.read_bytes(), f
    assert rec["status"]["phase"] in ("Failed", "Error")


def _sleeps(seconds: str) -> list[int]:
    """The pids of live ``sleep SECONDS`` processes (the shell that started one is not)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        is_sleep = os.path.basename(argv[0]) == b"sleep" and argv[1:2] == [seconds.encode()]
        if is_sleep and state != "Z":
            found.append(int(entry))
    return found


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["background", "own-group", "own-session", "many-sessions"])
def test_a_pods_background_processes_end_with_it(tmp_path: Path, mode: str, how: str) -> None:
    seconds = str(random.randint(700_000, 799_999))
    start = {
        "background": f"sleep {seconds} &",
        # a shell with job control puts each job in a process group of its own
        "own-group": f"set -m; sleep {seconds} &",
        "own-session": f"setsid sleep {seconds} &",
        # several at once, the pod exiting while they are still between fork, setsid and exec:
        # one look at /proc at the pod's exit missed such a process now and then
        "many-sessions": " ".join([f"setsid sleep {seconds} &"] * 12),
    }[how]
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: outlive
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: start
                    template: start
                - - name: after
                    template: after
            - name: start
              container:
                image: busybox
                command: [sh, -c, "{start} echo started"]
            - name: after
              container:
                image: busybox
                command: [sh, -c, "pgrep -f 'slee[p] {seconds}' && exit 9 || exit 0"]
        """,
        "--sandbox",
        mode,
    )
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # the next step no longer saw it: it ended with its pod, not only with the run
        assert pod_node(rec, "after")["phase"] == "Succeeded"
        assert _sleeps(seconds) == []
    finally:
        for pid in _sleeps(seconds):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


_MAKE_ARCHIVE = {
    "tar-slip": "with tarfile.open('/tmp/evil', 'w:gz') as t:\n    add(t, '../../../../escaped.txt')",
    "tar-link": (
        "with tarfile.open('/tmp/evil', 'w:gz') as t:\n"
        "    link = tarfile.TarInfo('out')\n"
        "    link.type = tarfile.SYMTYPE\n"
        "    link.linkname = HOST\n"
        "    t.addfile(link)\n"
        "    add(t, 'out/escaped.txt')"
    ),
    "zip-slip": (
        "with zipfile.ZipFile('/tmp/evil', 'w') as z:\n"
        "    z.writestr('../../../../escaped.txt', PWNED)"
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(_MAKE_ARCHIVE))
def test_an_input_archive_never_unpacks_outside_its_path(
    tmp_path: Path, mode: str, kind: str
) -> None:
    host = _host_folder(tmp_path)
    source = (
        "import io, tarfile, zipfile\n"
        f"HOST, PWNED = '/{host}', '{PWNED}'\n"
        "def add(t, name):\n"
        "    info = tarfile.TarInfo(name)\n"
        "    info.size = len(PWNED)\n"
        "    t.addfile(info, io.BytesIO(PWNED.encode()))\n" + _MAKE_ARCHIVE[kind] + "\n"
    )
    archive = "{zip: {}}" if kind.startswith("zip") else "{tar: {}}"
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: slip
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: make
                    template: make
                - - name: use
                    template: use
            - name: make
              script:
                image: python
                command: [python]
                source: {json.dumps(source)}
              outputs:
                artifacts:
                  - name: evil
                    path: /tmp/evil
                    archive: {{none: {{}}}}
                    s3: {{key: k/evil}}
            - name: use
              inputs:
                artifacts:
                  - name: in
                    path: /tmp/in/x
                    archive: {archive}
                    s3: {{key: k/evil}}
              container:
                image: busybox
                command: [sh, -c, "find /tmp/in"]
        """,
        "--sandbox",
        mode,
    )
    assert pod_node(rec, "make")["phase"] == "Succeeded", proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    use = pod_node(rec, "use")
    assert use["phase"] == "Error"
    assert "cannot unpack" in use["message"], use["message"]
    assert sorted(p.name for p in host.iterdir()) == ["canary.txt"]
    assert not [p for p in tmp_path.rglob("escaped.txt")]


@pytest.mark.parametrize("mode", MODES)
def test_a_working_folder_through_a_planted_link_is_not_made_on_the_host(
    tmp_path: Path, mode: str
) -> None:
    host = _host_folder(tmp_path)
    proc, rec = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: workdir-link
        spec:
          entrypoint: main
          volumeClaimTemplates:
            - metadata:
                name: shared
              spec:
                accessModes: [ReadWriteOnce]
                resources:
                  requests:
                    storage: 1Mi
          templates:
            - name: main
              steps:
                - - name: plant
                    template: plant
                - - name: work
                    template: work
            - name: plant
              container:
                image: busybox
                command: [sh, -c, "ln -s /{host} /mnt/vol/wd"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/vol
            - name: work
              container:
                image: busybox
                workingDir: /mnt/vol/wd/made
                command: [sh, -c, "echo {PWNED} > here.txt"]
                volumeMounts:
                  - name: shared
                    mountPath: /mnt/vol
        """,
        "--sandbox",
        mode,
    )
    assert sorted(p.name for p in host.iterdir()) == ["canary.txt"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    work = pod_node(rec, "work")
    assert work["phase"] == "Error"
    assert "wd is a symlink that leaves its volume" in work["message"], work["message"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_process_of_its_pods(
    tmp_path: Path, mode: str, signum: int
) -> None:
    seconds = str(random.randint(800_000, 899_999))
    path = write_yaml(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: interrupted
        spec:
          entrypoint: main
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c]
                args: ["setsid sleep {seconds} & sleep {seconds} & wait"]
        """,
    )
    argv = [sys.executable, "-m", "workers", "run", str(path), "--runs", str(tmp_path / "runs")]
    runner = subprocess.Popen(
        [*argv, "--sandbox", mode],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while len(_sleeps(seconds)) < 2 and time.time() < deadline:
            assert runner.poll() is None, runner.communicate()
            time.sleep(0.05)
        assert len(_sleeps(seconds)) == 2
        runner.send_signal(signum)
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 1, out + err
        assert _sleeps(seconds) == []
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in _sleeps(seconds):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["in-the-pod", "host-file", "link-to-host-file"])
def test_the_summary_a_merge_logs_is_read_only_inside_the_run_folder(
    tmp_path: Path, mode: str, where: str
) -> None:
    """The runner prints merge's row reconciliation from the summary file merge's log names: a
    path the step controls, read only inside the run folder and through no link."""
    host = _host_folder(tmp_path)
    totals = '{"totals": {"rows": 7, "rows_expected": 7, "shards": 1}}'
    (host / "summary.json").write_text(totals)
    path = {
        "in-the-pod": "/tmp/summary.json",
        "host-file": f"/{host}/summary.json",
        "link-to-host-file": "/tmp/link.json",
    }[where]
    event = json.dumps({"event": "merged", "output": "/tmp/out.json", "summary": path})
    script = (
        f"echo '{totals}' > /tmp/summary.json && echo '[]' > /tmp/out.json && "
        f"ln -s /{host}/summary.json /tmp/link.json && echo '{event}' >&2"
    )
    proc, _ = run_process(
        tmp_path,
        f"""
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          name: summary
        spec:
          entrypoint: main
          templates:
            - name: main
              container:
                image: busybox
                command: [sh, -c, {json.dumps(script)}]
        """,
        "--sandbox",
        mode,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reconciled = "rows:          merged 7 == produced 7 in 1 shards" in proc.stdout
    assert reconciled == (where == "in-the-pod"), proc.stdout


def test_a_folder_swapped_for_a_link_after_resolution_is_not_followed(tmp_path: Path) -> None:
    """The window a pod sharing a volume could use: the runner resolved an output's path, then
    a folder on the way became a link to a host folder before the runner opened it."""
    host = _host_folder(tmp_path)
    vol = tmp_path / "vol"
    (vol / "d").mkdir(parents=True)
    (vol / "d" / "canary.txt").write_text("the pod's own")
    mounts = [sandbox.Mount(vol, "/mnt/vol")]
    resolved = sandbox.pod_file("/mnt/vol/d/canary.txt", mounts)
    assert resolved == vol / "d" / "canary.txt"
    (vol / "d" / "canary.txt").unlink()
    (vol / "d").rmdir()
    (vol / "d").symlink_to(host)
    with pytest.raises(safepath.EscapeError, match="is a symlink"):
        safepath.open_below(resolved, [vol])
    with pytest.raises(sandbox.PodPathError):
        sandbox.read_pod_text("/mnt/vol/d/canary.txt", mounts)
    # the repository's own walk refuses the same
    with pytest.raises(safepath.EscapeError, match="is a symlink"):
        safepath.read_text(vol, vol / "d" / "canary.txt")
