"""Installable by name, runnable from a wheel: the ``workers`` command, ``--version``, and the
distribution (``fanout-workers``) built, installed in a fresh venv and run from an empty folder.

The fast tests run the commands of this checkout; the slow one builds the wheel with pip,
installs it with its dependencies (from the package index, through pip's cache) and runs the
README's pipeline where no ``manifests/`` exists, so the WorkflowTemplates must come from the
wheel itself.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import workers
from workers import runadapter

REPO = Path(__file__).resolve().parents[1]
VERSION_LINE = f"workers {workers.__version__}\n"

STEPS = ("produce", "split", "shard", "merge", "cleanup")


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ("-m", "workers", "--version"),
        *(("-m", f"workers.{step}", "--version") for step in STEPS),
        *(("-m", "workers", step, "--version") for step in STEPS),
        ("-m", "workers", "run", "--version"),
        ("-m", "workers", "pipeline", "--version"),
        ("-m", "workers", "timeline", "--version"),
    ],
    ids=" ".join,
)
def test_every_command_prints_the_one_version(args: tuple[str, ...]) -> None:
    proc = _python(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, VERSION_LINE, "")


@pytest.mark.parametrize("step", STEPS)
def test_workers_step_is_python_m_workers_step(step: str) -> None:
    by_name = _python("-m", "workers", step, "--help")
    by_module = _python("-m", f"workers.{step}", "--help")
    assert by_name.returncode == by_module.returncode == 0
    assert by_name.stdout == by_module.stdout
    assert f"python -m workers.{step}" in by_name.stdout


def test_workers_help_names_every_command() -> None:
    proc = _python("-m", "workers", "--help")
    assert proc.returncode == 0
    for command in ("run", "pipeline", "timeline", *STEPS):
        assert f"\n  {command} " in proc.stdout, command


def test_unknown_command_is_one_line_and_exit_2() -> None:
    proc = _python("-m", "workers", "shards")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "workers: unknown command 'shards' (see workers --help)\n"


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_wheel_lists_every_package_of_the_source_tree() -> None:
    # The packages are listed (workers.manifests lives outside workers/), so a new
    # subpackage must be added there or the wheel would silently lack it. One distribution
    # ships two packages: workers and argo_local (the local runner).
    setuptools = _pyproject()["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for package in ("workers", "argo_local")
        for init in REPO.glob(f"{package}/**/__init__.py")
    }
    assert set(setuptools["packages"]) == found | {"workers.manifests"}
    assert setuptools["package-dir"] == {"workers.manifests": "manifests"}


def test_one_version_source() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]
    assert dynamic == {"version": {"attr": "workers.__version__"}}


def test_docs_install_commands_name_this_distribution_and_its_extras() -> None:
    project = _pyproject()["project"]
    extras = set(project["optional-dependencies"])
    readme = "".join((REPO / p).read_text() for p in ("README.md", "docs/install.md"))
    installs = re.findall(r"pip install '([^'\[]+)\[([^\]]+)\]'", readme)
    assert (project["name"], "postgres,s3,gcs") in installs
    for name, wanted in installs:
        assert name in (project["name"], "."), name
        assert set(wanted.split(",")) <= extras, wanted
    assert f"{project['name']}[postgres,s3,gcs]" in project["optional-dependencies"]["all"]


def test_default_manifests_outside_a_checkout_is_the_repository_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a checkout (editable install) there is no workers/manifests: the top-level one serves.
    monkeypatch.chdir(tmp_path)
    assert runadapter.default_manifests() == REPO / "manifests"
    (tmp_path / "manifests").mkdir()
    assert runadapter.default_manifests() == Path("manifests")


SOURCE = ("pyproject.toml", "README.md", "LICENSE", "workers", "argo_local", "manifests")
"""What building the distribution reads; .dockerignore lets the same into the image build."""


def test_dockerignore_lets_in_what_the_build_reads() -> None:
    allowed = {
        line.strip().removeprefix("!").rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(SOURCE) <= allowed


def _wheel_metadata(wheel: Path) -> tuple[email.message.Message, set[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(meta)), names


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_the_pipeline_from_an_empty_folder(
    tmp_path: Path,
) -> None:
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
        proc = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=pip_env,
            check=False,
        )
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    # Built from a copy of what the image's build context holds (.dockerignore): a build in
    # the checkout would leave build/ there, whose stale files setuptools puts in later wheels.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            caches = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(REPO / name, source / name, ignore=caches)
        else:
            shutil.copy2(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source)
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name == f"fanout_workers-{workers.__version__}-py3-none-any.whl"
    meta, names = _wheel_metadata(wheel)
    assert meta["Name"] == "fanout-workers"
    assert meta["Version"] == workers.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert f"fanout_workers-{workers.__version__}.dist-info/licenses/LICENSE" in names
    shipped = {n for n in names if n.startswith("workers/manifests/")}
    in_repo = {
        "workers/" + p.relative_to(REPO).as_posix()
        for p in (REPO / "manifests").rglob("*")
        if p.is_file()
    }
    assert shipped == in_repo
    assert {"workers/py.typed", "argo_local/py.typed"} <= names

    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/python", "-m", "pip", "install", "-q", wheel)
    bin_workers = venv / "bin/workers"
    assert run(bin_workers, "--version", cwd=empty) == VERSION_LINE
    probe = "import importlib.metadata as m, workers; print(m.version('fanout-workers'), workers.__file__)"
    version, location = run(venv / "bin/python", "-c", probe, cwd=empty).split()
    assert version == workers.__version__
    assert Path(location).is_relative_to(venv), "the wheel's package, not this checkout's"

    rows = 2500
    out = run(
        bin_workers,
        "run",
        "workers-pipeline",
        "-p",
        f"rows={rows}",
        "-p",
        "rows-per-shard=1000",
        cwd=empty,
    )
    assert f"rows:          merged {rows:,} == produced {rows:,} in 3 shards\n" in out
    (line,) = (line for line in out.splitlines() if line.startswith("merged output: "))
    merged = Path(line.removeprefix("merged output: "))
    assert merged.is_relative_to(empty / "workers-runs"), "the run happened in the empty folder"
    assert len(json.loads(merged.read_bytes())) == rows
    assert sorted(p.name for p in empty.iterdir()) == ["workers-runs"]


def _checkout_copy(dest: Path) -> None:
    """The files of this checkout as a fresh clone has them (tracked or new, none ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():  # a tracked file deleted in the working tree is gone from a clone too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
def test_bin_demo_from_a_fresh_clone_prints_only_the_demo(tmp_path: Path) -> None:
    # The README's first command installs on first use; pip's and setuptools' chatter
    # (deprecation warnings included) belongs in .venv/install.log, not before the demo.
    clone = tmp_path / "clone"
    _checkout_copy(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "WORKERS_"))}
    for attempt in ("installs", "reuses the install"):
        proc = subprocess.run(
            ["./bin/demo", "-p", "rows=2000"],
            cwd=clone,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, f"{attempt}:\n{proc.stdout}"
        first, *_ = proc.stdout.splitlines()
        assert first.startswith("workflow workers-pipeline-"), f"{attempt}:\n{proc.stdout[:2000]}"
        noise = re.compile(r"\bpip\b|setuptools|Warning|WARNING|[Dd]eprecat")
        assert [line for line in proc.stdout.splitlines() if noise.search(line)] == []
        assert "rows:          merged 2,000 == produced 2,000 in 1 shards" in proc.stdout
    assert (clone / ".venv/install.log").stat().st_size > 0


def _lock_pins(lock: Path) -> dict[str, str]:
    """``name -> version`` of every pin in a pip-compile lock (names normalized)."""
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("requirements/test.txt", ("all", "test")),
        ("requirements/run.txt", ("all",)),
        ("images/requirements.txt", ("all", "arrow")),
    ],
)
def test_every_lock_satisfies_pyproject_and_every_pin_has_a_hash(
    lock: str, extras: tuple[str, ...]
) -> None:
    from packaging.requirements import Requirement

    text = (REPO / lock).read_text()
    pins = _lock_pins(REPO / lock)
    # Every pin carries at least one sha256 (pip installs it with --require-hashes).
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    unhashed = [
        b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b
    ]
    assert unhashed == []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec_ in project["optional-dependencies"][extra]:
            req = Requirement(spec_)
            if req.name == project["name"]:
                todo.extend(req.extras)
            else:
                wanted.append(spec_)
    for spec_ in wanted:
        req = Requirement(spec_)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{lock}: {spec_} is not locked (run bin/lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock}: {name}=={pins[name]} does not satisfy {spec_} (run bin/lock)"
        )


def test_the_test_venv_holds_exactly_the_locked_versions() -> None:
    import importlib.metadata as md

    pins = _lock_pins(REPO / "requirements/test.txt")
    installed = {
        re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in md.distributions()
    }
    drift = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert drift == {}, "installed versions differ from requirements/test.txt (bin/test reinstalls)"
