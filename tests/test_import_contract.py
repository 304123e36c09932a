"""The seam between the workers product and its local runner (``argo_local``), and the
runner's own shape, read from the source with ``ast`` (never by importing it): every import
counts, those under ``if TYPE_CHECKING:`` and those inside functions too.

* ``argo_local`` imports at most two ``workers`` modules (redaction and a formatting helper);
  everything else it knows of the product comes through ``workers/runadapter.py``'s
  :class:`argo_local.embedding.Embedding`.
* Only ``workers.runadapter`` imports ``argo_local`` (``workers run`` goes through it).
* ``argo_local``'s modules import each other without a circle, and its layers only downwards:
  expr <- model <- pods <- engine <- report <- the command (cli, runs, resume).
* No function of ``argo_local`` is longer than :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER_USES = {"workers.redaction", "workers.timeline.model"}
"""The ``workers`` modules the runner may import: secrets' masking and time formatting."""

RUNNER_USERS = {"workers.runadapter"}
"""The ``workers`` modules that may import the runner."""

LAYERS = (
    ("argo_local.embedding", "argo_local.expr"),
    ("argo_local.model",),
    ("argo_local.pods",),
    ("argo_local.engine",),
    ("argo_local.report",),
    ("argo_local.cli", "argo_local.runs", "argo_local.resume"),
)
"""Bottom first: a module imports its own layer's modules and those of the layers below."""

MAX_LINES = 110


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every name an import statement of ``path`` names: ``a.b`` and ``a.b.c`` for
    ``from a.b import c`` (c may be a module or a name in one), relative imports resolved."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def runner_graph() -> dict[str, set[str]]:
    """Module -> the ``argo_local`` modules it imports (package ``__init__``s, which hold only
    a docstring, left out: importing a submodule runs them, but they import nothing)."""
    mods = modules("argo_local")
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    return {
        m: {n for n in imported(p) if n in mods and n not in packages and n != m}
        for m, p in mods.items()
    }


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return i
    raise AssertionError(f"{module}: in no layer of LAYERS")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_runner_is_a_package_of_its_own_with_its_layers() -> None:
    assert not list((ROOT / "workers" / "runner").glob("*.py"))
    mods = modules("argo_local")
    for layer in LAYERS:
        for top in layer:
            assert any(m == top or m.startswith(top + ".") for m in mods), top
    for m in mods:
        if m != "argo_local":  # the package's __init__: its docstring only
            layer_of(m)  # every module in a layer


def test_the_runner_imports_only_redaction_and_formatting_of_workers() -> None:
    uses = {
        (m, n)
        for m, p in modules("argo_local").items()
        for n in imported(p)
        if n == "workers" or n.startswith("workers.")
    }
    mods = modules("workers")
    # ``from workers import redaction`` names the package and its module: the module counts;
    # a name that is no module (``from workers import version_text``) counts as its package.
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    used = {n if n in mods else n.rpartition(".")[0] for _, n in uses if n not in packages}
    assert used <= RUNNER_USES, sorted(used - RUNNER_USES)
    assert len(RUNNER_USES) <= 2


def test_only_the_adapter_imports_the_runner() -> None:
    users = {
        m
        for m, p in modules("workers").items()
        if any(n == "argo_local" or n.startswith("argo_local.") for n in imported(p))
    }
    assert users <= RUNNER_USERS, sorted(users - RUNNER_USERS)
    assert len(RUNNER_USERS) <= 2


def test_the_runner_has_no_import_circle() -> None:
    assert cycles(runner_graph()) == []


def test_the_cycle_check_sees_a_circle_through_type_checking() -> None:
    # the check itself: a TYPE_CHECKING import back up is a circle too
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from argo_local.x import Y\n"
    tree = ast.parse(source)
    assert any(isinstance(n, ast.ImportFrom) and n.module == "argo_local.x" for n in ast.walk(tree))


def test_layers_import_only_downwards() -> None:
    upwards = {
        (m, n) for m, deps in runner_graph().items() for n in deps if layer_of(n) > layer_of(m)
    }
    assert upwards == set()


def function_lengths() -> dict[str, int]:
    lengths: dict[str, int] = {}
    for name, path in modules("argo_local").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lengths[f"{name}:{node.name}:{node.lineno}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_over_max_lines() -> None:
    long = {key: n for key, n in function_lengths().items() if n > MAX_LINES}
    assert long == {}, "over MAX_LINES lines (split them)"
