"""Your own code in local runs: the example project, import paths in pods, the rows line, pruning.

``python -m workers run`` must make the user's project importable in every pod the same way on
every machine: the current folder (or ``--code``) and every PYTHONPATH entry, bound read-only
under bubblewrap, also from under /tmp where each pod's own /tmp would hide it. Everything runs
as real processes, with and without bubblewrap.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import unavailable

from argo_local import runs
from argo_local.cli import build_parser
from argo_local.pods import sandbox
from workers import runadapter

try:  # tests/ may or may not become a package on other branches
    from tests import orders_example as orders
except ImportError:
    import orders_example as orders  # type: ignore[no-redef]

SANDBOXES = ["bwrap", "remap"]


def _need(mode: str) -> None:
    if mode == "bwrap":
        ok, why = sandbox.bwrap_works()
        if not ok:
            unavailable(why)


def workers_run(
    cwd: Path, *args: str, pythonpath: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m workers run ARGS`` in ``cwd``, as a user would type it, on embedded defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORKERS_DATABASE_URL", "PYTHONPATH")}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-m", "workers", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ------------------------------------------------------------------ the example project


@pytest.mark.slow
@pytest.mark.parametrize("mode", SANDBOXES)
def test_example_project_runs_from_its_own_folder(mode: str, tmp_path: Path) -> None:
    """examples/orders copied outside the repository (under /tmp), run from its own folder."""
    _need(mode)
    project = orders.copy_to(tmp_path / "orders-project")
    rows, seed = 3000, 7
    proc = workers_run(
        project,
        "workers-pipeline",
        "--sandbox",
        mode,
        "-p",
        f"rows={rows}",
        "-p",
        f"seed={seed}",
        "-p",
        "rows-per-shard=800",
        "-p",
        f"generator={orders.GENERATOR}",
        "-p",
        f"processor={orders.PROCESSOR}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [merged_file] = (project / "workers-runs").glob("*/volumes/workers-shared/*/merged.json")
    merged = json.loads(merged_file.read_text())
    want = orders.expected(rows, seed)
    assert 0 < len(want) < rows  # the processor drops rows by design
    assert merged == want
    assert (
        f"merged {len(want):,} of {rows:,} produced rows in 4 shards; "
        f"the processor dropped {rows - len(want):,}"
    ) in proc.stdout
    assert f"code: {project}" in proc.stderr


# ------------------------------------------------------------------ import paths in pods

IMPORTER = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: importer-
spec:
  entrypoint: main
  templates:
    - name: main
      container:
        image: ghcr.io/workers-project/workers:latest
        command: [python, -c]
        args:
          - |
            import os, orders.enrich as m
            here = os.path.dirname(m.__file__)
            try:
                open(os.path.join(here, "written-by-a-pod"), "w").close()
                print(m.__file__, "writable")
            except OSError:
                print(m.__file__, "read-only")
"""

# case: (where the runner starts, extra arguments, PYTHONPATH) relative to tmp_path; the
# package lives in tmp_path/project (cwd, --code) or tmp_path/libs (PYTHONPATH).
IMPORT_CASES = {
    "current folder": ("project", [], None, "project"),
    "--code": ("elsewhere", ["--code", "{tmp}/project"], None, "project"),
    "--code relative": ("elsewhere", ["--code", "../project"], None, "project"),
    "PYTHONPATH": ("elsewhere", [], "{tmp}/nothing-here:{tmp}/libs", "libs"),
    "PYTHONPATH relative": ("elsewhere", [], "../libs", "libs"),
    # A pure-Python wheel is a zip Python imports from directly: no unpacking, no pip.
    "PYTHONPATH wheel": ("elsewhere", [], "{tmp}/" + orders.WHEEL, orders.WHEEL),
}


@pytest.mark.parametrize("mode", SANDBOXES)
@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_pods_import_the_users_code(case: str, mode: str, tmp_path: Path) -> None:
    _need(mode)
    start, extra, pythonpath, home = IMPORT_CASES[case]
    orders.copy_to(tmp_path / "project")
    orders.copy_to(tmp_path / "libs")
    orders.wheel_in(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    workflow = tmp_path / "importer.yaml"
    workflow.write_text(IMPORTER)
    fill = {"tmp": str(tmp_path)}
    proc = workers_run(
        tmp_path / start,
        str(workflow),
        "--sandbox",
        mode,
        *(a.format(**fill) for a in extra),
        pythonpath=pythonpath.format(**fill) if pythonpath else None,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [stdout] = (tmp_path / start / "workers-runs").glob("*/pods/*/stdout.log")
    module, access = stdout.read_text().split()
    assert module == str(tmp_path / home / "orders" / "enrich.py")
    if mode == "bwrap":
        assert access == "read-only"
        assert not (tmp_path / home / "orders" / "written-by-a-pod").exists()


def test_missing_code_folder_is_refused(tmp_path: Path) -> None:
    proc = workers_run(tmp_path, "workers-pipeline", "--code", "no-such-folder")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "python -m workers run: --code no-such-folder: not a folder"
    assert not (tmp_path / "workers-runs").exists() or not any(
        (tmp_path / "workers-runs").iterdir()
    )


IMPORT_PATH_CASES = [
    # code, PYTHONPATH, cwd -> paths
    ("/p", None, "/c", ["/p"]),
    ("/p", "", "/c", ["/p"]),  # an empty PYTHONPATH names nothing, as for Python
    ("/p", "/a:rel::/p", "/c", ["/p", "/a", "/c/rel", "/c"]),
    ("/p", "../up:/a/./b/", "/c/d", ["/p", "/c/up", "/a/b"]),
]


@pytest.mark.parametrize(("code", "pythonpath", "cwd", "want"), IMPORT_PATH_CASES)
def test_import_paths(code: str, pythonpath: str | None, cwd: str, want: list[str]) -> None:
    got = sandbox.import_paths(Path(code), pythonpath, Path(cwd))
    assert got == [Path(w) for w in want]


def test_code_folder_above_a_mount_is_not_bound_over_it(tmp_path: Path) -> None:
    """Binding /mnt read-only after /mnt/shared would hide the volume; the root shows /mnt."""
    mounts = [sandbox.Mount(tmp_path / "t", "/tmp"), sandbox.Mount(tmp_path / "v", "/mnt/shared")]
    keep = [(Path("/mnt"), False), (Path("/tmp/project"), False), (tmp_path / "w", True)]
    cmd = sandbox.bwrap_command(["true"], mounts, keep, "/")
    binds = [tuple(cmd[i : i + 3]) for i, a in enumerate(cmd) if a in ("--bind", "--ro-bind")]
    assert ("--ro-bind", "/mnt", "/mnt") not in binds
    assert ("--ro-bind", "/tmp/project", "/tmp/project") in binds
    assert ("--bind", str(tmp_path / "w"), str(tmp_path / "w")) in binds


# ------------------------------------------------------------------ the summary's rows line

ROWS_CASES = [
    (
        {"rows": 5000, "rows_expected": 5000, "shards": 5},
        "merged 5,000 == produced 5,000 in 5 shards",
    ),
    (
        {"rows": 1720, "rows_expected": 3000, "shards": 4},
        "merged 1,720 of 3,000 produced rows in 4 shards; the processor dropped 1,280",
    ),
    (
        {"rows": 200, "rows_expected": 100, "shards": 1},
        "merged 200 of 100 produced rows in 1 shards; the processor added 100",
    ),
    ({"rows": 0, "rows_expected": 0, "shards": 0}, "merged 0 == produced 0 in 0 shards"),
    ({"rows_expected": 10}, None),
]


@pytest.mark.parametrize(("totals", "line"), ROWS_CASES)
def test_rows_line(totals: dict[str, object], line: str | None) -> None:
    got = runadapter.rows_line(totals)
    if line is None:
        assert got is None
    else:
        assert got is not None and got.removeprefix("rows:").strip() == line


# ------------------------------------------------------------------ pruning old runs


def _finished_run(runs_dir: Path, name: str, mtime: float, size: int = 1000) -> Path:
    folder = runs_dir / name
    (folder / "work").mkdir(parents=True)
    (folder / "work" / "workers.db").write_bytes(os.urandom(size))
    (folder / "run.json").write_text("{}")
    os.utime(folder / "run.json", (mtime, mtime))
    return folder


PRUNE_CASES = [
    # keep, finished runs (oldest first) -> names left
    (3, ["a", "b", "c", "d"], ["c", "d"]),
    (1, ["a", "b"], []),
    (10, ["a", "b"], ["a", "b"]),
    (0, ["a", "b", "c"], ["a", "b", "c"]),
]


@pytest.mark.parametrize(("keep", "names", "left"), PRUNE_CASES)
def test_prune_keeps_the_newest_finished_runs(
    keep: int, names: list[str], left: list[str], tmp_path: Path
) -> None:
    for i, name in enumerate(names):
        _finished_run(tmp_path, name, 1_700_000_000 + i)
    current = tmp_path / "current"
    current.mkdir()
    result = runs.prune(tmp_path, current, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*left, "current"])
    assert result.removed == len(names) - len(left) and result.kept == len(left)
    assert (result.freed > 0) == (result.removed > 0)


def test_prune_never_removes_a_running_or_unfinished_run(tmp_path: Path) -> None:
    old = _finished_run(tmp_path, "old", 1_600_000_000)
    running = _finished_run(tmp_path, "running", 1_500_000_000)
    (running / runs.LOCK).touch()
    killed = tmp_path / "killed"  # a runner killed before run.json: never removed, only counted
    (killed / "work").mkdir(parents=True)
    (killed / "work" / "workers.db").write_bytes(os.urandom(50_000))
    (tmp_path / "notes.txt").write_text("not a run")
    # Another process holds the running run's lock, as its runner does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(running / runs.LOCK),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        current = tmp_path / "current"
        current.mkdir()
        result = runs.prune(tmp_path, current, 1)
        assert not old.exists() and running.exists() and killed.exists()
        assert (tmp_path / "notes.txt").exists()
        assert (result.removed, result.running, result.unfinished) == (1, 1, 1)
        assert result.unfinished_bytes >= 50_000
    finally:
        holder.kill()
        holder.wait()
    # Its runner gone (the lock freed), the run is finished like any other.
    assert runs.prune(tmp_path, current, 1).removed == 1 and not running.exists()


def test_create_locks_the_run_folder_and_refuses_an_existing_one(tmp_path: Path) -> None:
    fd = runs.create(tmp_path / "r")
    try:
        probe = os.open(tmp_path / "r" / runs.LOCK, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(probe)
        with pytest.raises(FileExistsError):
            runs.create(tmp_path / "r")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging left behind
    finally:
        os.close(fd)


ECHO = textwrap.dedent(
    """\
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata:
      generateName: echo-
    spec:
      entrypoint: main
      templates:
        - name: main
          container:
            image: busybox
            command: [sh, -c, "echo hi"]
    """
)


def test_runner_keeps_the_last_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "echo.yaml").write_text(ECHO)
    made: list[set[str]] = []
    for _ in range(4):
        assert runadapter.main(["echo.yaml", "--runs", "runs", "--keep", "2"]) == 0
        made.append({p.name for p in (tmp_path / "runs").iterdir()})
    assert [len(m) for m in made] == [1, 2, 2, 2]
    newest = made[3] - made[2]
    assert len(newest) == 1 and made[3] == newest | (made[2] - made[1])
    err = capsys.readouterr().err
    assert "kept 1 earlier finished runs (" in err and "removed 1 older (" in err
    assert err.rstrip().count("; --keep 2") == 4


@pytest.mark.parametrize("value", ["-1", "two"])
def test_bad_keep_is_refused(value: str, tmp_path: Path) -> None:
    proc = workers_run(tmp_path, "workers-pipeline", "--keep", value)
    assert proc.returncode == 2 and "--keep" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ the docs stay true

DOCS = [orders.EXAMPLE.parents[1] / "docs" / "tutorial.md", orders.EXAMPLE / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(orders.EXAMPLE.parents[1])))
def test_user_code_docs_name_real_parameters_and_figures(doc: Path) -> None:
    import yaml

    text = doc.read_text()
    if doc.name == "tutorial.md":
        text = text[text.index("### With the templates") :]
    pipeline = yaml.safe_load(
        (orders.EXAMPLE.parents[1] / "manifests/base/templates/pipeline.yaml").read_text()
    )
    declared = {p["name"] for p in pipeline["spec"]["arguments"]["parameters"]}
    given: dict[str, str] = {}
    for name, value in re.findall(r"-p ([\w-]+)=(\w[\w.:/-]*)", text):
        assert name in declared, f"{doc.name}: -p {name} is not a workers-pipeline parameter"
        given.setdefault(name, value)  # the first command is the local run the figure is from
    assert {"image", "generator", "processor"} <= set(given)
    assert (given["generator"], given["processor"]) == (orders.GENERATOR, orders.PROCESSOR)
    # The quoted summary line is what the quoted command makes (seed 0, its rows).
    m = re.search(
        r"merged ([\d,]+) of ([\d,]+) produced rows in (\d+) shards; "
        r"the processor dropped ([\d,]+)",
        text,
    )
    assert m, "no rows line quoted"
    merged, produced, shards, dropped = (int(g.replace(",", "")) for g in m.groups())
    assert produced == int(given["rows"]) and shards == -(-produced // int(given["rows-per-shard"]))
    assert merged == len(orders.expected(produced, 0)) and dropped == produced - merged
    assert "--code" in text and "--code" in build_parser(runadapter.embedding()).format_help()
