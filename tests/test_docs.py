"""Docs as tests: every command block in docs/ and the README runs, against the real services.

Each page's ```sh / ```bash / ```console blocks run in order as one shell session (a reader's
terminal: an ``export`` holds for the blocks after it) in a temporary folder holding a copy of the
repository's ``examples/`` and ``manifests/``; a ```python block with ``title="NAME"`` is written there as NAME first,
so the page's commands run the code it shows. A page starting with ``<!-- docs-test: postgres s3
gcs -->`` gets those services the way a reader configures them: ``WORKERS_DATABASE_URL`` naming a
fresh PostgreSQL database; AWS_* and the GCS emulator's variables, with a bucket ``my-bucket``.

A block that needs what a test cannot have (a cluster, an image registry) is marked with
``<!-- no-run: REASON -->`` on the line above it; it must still parse (``bash -n``), and what it
names must exist: kustomize folders render and validate against Argo's schema, Workflow files
load and validate, ``--from workflowtemplate/NAME -p P=V`` names a template of the library and its
parameters, a ``buildah bud`` folder has a Dockerfile. The set of such blocks is kept small.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import manifest_checks as mc
import pytest
import services

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))
import reference  # noqa: E402  (docs/hooks/reference.py)

PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(\w+)?(.*)$")
NO_RUN = re.compile(r"^<!-- no-run: (.+) -->$")
SERVICES = re.compile(r"^<!-- docs-test: ([a-z0-9 ]+) -->$", re.M)
MAX_NO_RUN = 10
"""No-run blocks in all the docs: a cluster's commands, the set-up commands; more needs a reason."""
README_MAX_LINES = 200


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    info: str
    text: str
    no_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def title(self) -> str | None:
        m = re.search(r'title="([^"]+)"', self.info)
        return m.group(1) if m else None

    def commands(self) -> str:
        """The shell text: a console block's ``$ `` lines (and their continuations)."""
        if self.lang != "console":
            return self.text
        out, more = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or more:
                out.append(line[2:] if line.startswith("$ ") and not more else line)
                more = line.endswith("\\")
        return "\n".join(out) + "\n"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = lines[i - 1] if i else ""
        marker = NO_RUN.match(above)
        text = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(
            Block(page, i + 1, m.group(1) or "", m.group(2), text, marker and marker.group(1))
        )
        i = end + 1
    return found


SHELL = ("sh", "bash", "console")


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in SHELL]


RUN_PAGES = [p for p in PAGES if any(b.no_run is None for b in shell_blocks(p))]
NO_RUN_BLOCKS = [b for p in PAGES for b in shell_blocks(p) if b.no_run is not None]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ------------------------------------------------------------------------------- run them


def _services(page: Path, request: pytest.FixtureRequest, home: Path) -> dict[str, str]:
    m = SERVICES.search(page.read_text())
    wanted = set(m.group(1).split()) if m else set()
    assert wanted <= {"postgres", "s3", "gcs"}, wanted
    env: dict[str, str] = {}
    if "postgres" in wanted:
        env["WORKERS_DATABASE_URL"] = request.getfixturevalue("pg_db")
    if "s3" in wanted:
        server = request.getfixturevalue("s3_server")
        _fresh_bucket(services.s3_create_bucket, services.s3_delete_bucket, server.endpoint_url)
        env.update(services.s3_env(server.endpoint_url))
    if "gcs" in wanted:
        server = request.getfixturevalue("gcs_server")
        _fresh_bucket(services.gcs_create_bucket, services.gcs_delete_bucket, server.endpoint_url)
        env.update(services.gcs_env(server.endpoint_url))
    return env


def _fresh_bucket(create: object, delete: object, endpoint: str) -> None:
    with contextlib.suppress(Exception):  # no such bucket yet
        delete(endpoint, "my-bucket")  # type: ignore[operator]
    create(endpoint, "my-bucket")  # type: ignore[operator]


@pytest.mark.parametrize("page", RUN_PAGES, ids=_page_id)
def test_every_command_block_runs(
    page: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    work = tmp_path / "work"
    for folder in ("examples", "manifests"):  # what a reader's clone has beside the docs
        shutil.copytree(ROOT / folder, work / folder)
    script = ["set -euo pipefail"]
    for b in blocks(page):
        if b.lang == "python" and b.title:
            (work / b.title).write_text(b.text)
        elif b.lang in SHELL and b.no_run is None:
            script += [f"echo '>>> {b.where}' >&2", "cd " + shlex.quote(str(work)), b.commands()]
    env = services.step_env(tmp_path / "home", _services(page, request, tmp_path / "home"))
    # `python` and `workers` are this environment's, as in a reader's activated venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]


# -------------------------------------------------------------------- the ones that cannot


def test_no_run_blocks_are_few_and_say_why() -> None:
    assert 0 < len(NO_RUN_BLOCKS) <= MAX_NO_RUN, [b.where for b in NO_RUN_BLOCKS]
    for b in NO_RUN_BLOCKS:
        assert len(b.no_run or "") > 10, f"{b.where}: say why the block cannot run"


@pytest.mark.parametrize("block", NO_RUN_BLOCKS, ids=lambda b: b.where)
def test_no_run_blocks_parse_and_name_what_exists(block: Block) -> None:
    proc = subprocess.run(
        ["bash", "-n"], input=block.commands(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"{block.where}: {proc.stderr}"
    for argv in _command_lines(block.commands()):
        assert _names_what_exists(argv) == [], f"{block.where}: {shlex.join(argv)}"


def _command_lines(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def _names_what_exists(argv: list[str]) -> list[str]:
    """Problems with what a cluster command names: folders, files, templates, parameters."""
    problems: list[str] = []
    if argv[:2] == ["kubectl", "apply"] and "-k" in argv:
        folder = ROOT / argv[argv.index("-k") + 1]
        for doc in mc.render(folder):
            problems += mc.schema_problems(doc)
    elif argv[:2] == ["argo", "submit"]:
        files = [a for a in argv[2:] if a.endswith((".yaml", ".yml"))]
        for f in files:
            problems += [p for d in mc.load(ROOT / f) for p in mc.schema_problems(d)]
        if "--from" in argv:
            kind, _, name = argv[argv.index("--from") + 1].partition("/")
            library = {d["metadata"]["name"]: d for f in mc.base_files() for d in mc.load(f)}
            if kind != "workflowtemplate" or name not in library:
                return [f"no WorkflowTemplate {name}"]
            declared = {p["name"] for p in library[name]["spec"]["arguments"]["parameters"]}
            given = [argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "-p"]
            problems += [f"-p {p} is not a parameter of {name}" for p in given if p not in declared]
    elif argv[:2] == ["buildah", "bud"]:
        if not (ROOT / argv[-1] / "Dockerfile").is_file():
            problems.append(f"{argv[-1]} has no Dockerfile")
    elif Path(argv[0]).name == "python" and argv[1:] and argv[1].endswith(".py"):
        if not (ROOT / argv[1]).is_file():
            problems.append(f"{argv[1]} is not a file of the repository")
    elif argv[0].startswith("./bin/"):
        path = ROOT / argv[0]
        if not (path.is_file() and os.access(path, os.X_OK)):
            problems.append(f"{argv[0]} is not an executable of the repository")
    return problems


def test_no_run_check_has_teeth() -> None:
    bad = "argo submit --from workflowtemplate/workers-pipeline -p rowz=1"
    assert _names_what_exists(shlex.split(bad)) == [
        "-p rowz is not a parameter of workers-pipeline"
    ]
    assert _names_what_exists(["buildah", "bud", "-t", "x", "examples"]) == [
        "examples has no Dockerfile"
    ]


# -------------------------------------------------------------------- the pages themselves


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_reference_markers_render(page: Path) -> None:
    rendered = reference.render(page.read_text())
    assert "<!-- reference:" not in rendered


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in PAGES if p.parent != ROOT]
    assert [p for p in pages if f" {p}\n" not in nav] == []


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_console_blocks_keep_their_commands() -> None:
    b = Block(ROOT, 1, "console", "", "$ echo a \\\n  b\na b\n$ true\n", None)
    assert b.commands() == "echo a \\\n  b\ntrue\n"
