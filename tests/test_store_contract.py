"""One place tests store URL schemes: ``workers/storage.py``. Read from the source with ``ast``.

Every step resolves its ``--store`` once (:func:`workers.storage.resolve`, or
:func:`~workers.storage.check_store`) into a :class:`~workers.storage.Store`, and every module
after it asks that object (``store.is_local``, ``store.local_path``, ``store.fs()``,
``store.join(...)``, ``store.backend`` as a key of a dispatch table). So no other module of
``workers`` may:

* test a string against a store scheme prefix (``url.startswith("s3://")``,
  ``url.removeprefix("file://")``, ``"://" in url``, ``url == "gs://..."``);
* compare anything with a scheme or backend name (``backend == "gs"``, ``scheme in ("s3",
  "gcs")``);
* call storage's own scheme helpers (``storage.is_local``, ``storage.backend_of``,
  ``storage.local_path``) or define helpers of that kind (``is_s3``, ``is_gcs``...).

Splitting a URL (``url.split("://", 1)``, ``url.partition("://")``) is parsing, not a test: a
database URL is read that way, and the redaction of secrets in any URL.

The runner (``argo_local``) knows no store: it tests no URL prefix either (the product tells a
URL from a path before handing a path to it). Its ``"s3"`` and ``"gcs"`` are the artifact
location kinds of Argo's spec, not schemes, so there only the URL rules apply.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORAGE = ROOT / "workers" / "storage.py"

SCHEME_NAMES = {"s3", "s3a", "gs", "gcs", "file", "memory"}
"""Schemes (and backends) a store URL may name, or that a test of one would compare with."""

TESTING_METHODS = {"startswith", "endswith", "removeprefix", "removesuffix"}
STORAGE_HELPERS = {"is_local", "backend_of", "local_path"}
HELPER_NAMES = {"is_s3", "is_gcs", "is_gs", "is_local", "backend_of", "is_bucket", "scheme_of"}


def _strings(node: ast.AST) -> list[str]:
    """The string constants ``node`` is, or holds (a tuple, list or set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def _names_scheme(value: str) -> bool:
    return "://" in value or value.lower() in SCHEME_NAMES


def findings(path: Path, names: bool = True) -> Iterator[str]:
    """Every scheme test in ``path``, as ``file:line: what`` (``names``: comparisons with a
    scheme's bare name count too)."""
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            if attr in TESTING_METHODS and any("://" in s for a in node.args for s in _strings(a)):
                yield f"{line}: .{attr}() with a URL scheme"
            if attr in STORAGE_HELPERS and isinstance(owner, ast.Name) and owner.id == "storage":
                yield f"{line}: storage.{attr}() (ask the resolved Store)"
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            tested = [s for side in sides for s in _strings(side)]
            if any("://" in s or (names and _names_scheme(s)) for s in tested):
                yield f"{line}: a comparison with a URL scheme or backend name"
        elif isinstance(node, ast.ImportFrom) and node.module == "workers.storage":
            for alias in node.names:
                if alias.name in STORAGE_HELPERS:
                    yield f"{line}: imports storage.{alias.name}"
        elif (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in HELPER_NAMES
        ):
            yield f"{line}: defines a scheme helper {node.name}()"


def test_only_storage_tests_url_schemes() -> None:
    found = [
        f
        for path in sorted((ROOT / "workers").rglob("*.py"))
        if path != STORAGE
        for f in findings(path)
    ]
    assert found == [], "\n".join(found)


def test_the_runner_tests_no_url_prefix() -> None:
    found = [
        f for path in sorted((ROOT / "argo_local").rglob("*.py")) for f in findings(path, False)
    ]
    assert found == [], "\n".join(found)


def test_the_check_finds_each_kind_of_scheme_test(tmp_path: Path) -> None:
    """The rules above catch what they name (so an empty result means something)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from workers import storage\n"
        "from workers.storage import backend_of\n"
        "def is_s3(url):\n"
        "    return url.startswith('s3://')\n"
        "def f(url, store):\n"
        "    a = url.removeprefix('file://')\n"
        "    b = '://' in url\n"
        "    c = store.backend == 'gs'\n"
        "    d = store.backend in ('s3', 'gcs')\n"
        "    e = storage.is_local(url)\n"
        "    g = url.split('://', 1)\n"  # parsing: not flagged
        "    h = store.backend == other\n"  # asks the object: not flagged
        "    return a, b, c, d, e, g, h\n"
    )
    found = list(findings(sample))
    lines = sorted(int(f.rsplit(":", 2)[1]) for f in found)
    assert lines == [2, 3, 4, 6, 7, 8, 9, 10], found


def test_storage_itself_holds_the_scheme_table() -> None:
    """The one place: storage.py does test schemes (else the test above proves nothing)."""
    assert list(findings(STORAGE)), "storage.py no longer resolves schemes?"
