"""Provenance: which produce run (generation) and which processor made a part.

A **generation** is one committed produce of a run: an id, the row count, the
generator and its arguments. produce writes it in the same transaction as the
rows; split copies it into ``plan.json``; every shard reads it in the same
snapshot as its rows and writes it, with its **processor identity**, into its
commit record. A verified commit is reused only when both match, and merge
refuses any record whose generation or processor differs from the plan's.

The processor identity is the import path, a fingerprint of the code it depends on
(an installed distribution's name, version and RECORD of hashes; else the sha256 of
every file of its top-level package and of every module it loaded from the user's
folders, so a fixed helper module is another identity) and the options that change
output (batch size, source columns).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

IDENTITY = "identity"
"""The import path recorded for the default processor."""


@dataclass(frozen=True)
class Generation:
    """One committed produce of a run, as stored beside its rows."""

    id: str
    rows: int
    generator: str
    args: Mapping[str, Any]
    created: float

    @classmethod
    def new(cls, rows: int, generator: str, args: Mapping[str, Any]) -> Generation:
        return cls(os.urandom(8).hex(), rows, generator, dict(args), round(time.time(), 3))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rows": self.rows,
            "generator": self.generator,
            "args": dict(self.args),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, obj: Any) -> Generation | None:
        """The generation a plan or commit record names, or None when it names none."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return None
        args = obj.get("args")
        return cls(
            obj["id"],
            int(obj.get("rows") or 0),
            str(obj.get("generator")),
            args if isinstance(args, dict) else {},
            float(obj.get("created") or 0.0),
        )

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return f"generation {self.id} ({self.rows} rows by {self.generator}, committed {when})"


def describe(generation: Any) -> str:
    """A generation dict from a plan or record, in words; 'no generation' for None."""
    gen = Generation.from_dict(generation)
    return gen.describe() if gen is not None else "no recorded generation"


def generation_id(obj: Any) -> str | None:
    return obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None


def _file_sha256(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _distribution(module_name: str, module_file: str | None) -> Any:
    """The installed distribution that holds the module's file, if any.

    Looked up by the top-level package's name, and kept only when the module's file lies
    inside it: an unrelated distribution of the same name (or an editable install, whose
    files live in the user's folder) must not vouch for user code.
    """
    from importlib import metadata  # deferred: only user processors pay for it

    top = module_name.split(".", 1)[0]
    if not module_file:
        return None
    try:
        dist = metadata.distribution(top)
        root = os.path.realpath(str(dist.locate_file(top)))
    except Exception:  # not installed, or a broken dist-info: the code hashes still bind
        return None
    if os.path.commonpath([root, os.path.realpath(module_file)]) != root:
        return None
    return dist


def _record_sha256(dist: Any) -> str | None:
    """sha256 of the distribution's RECORD: the hash of every file it installed."""
    text = dist.read_text("RECORD")
    return hashlib.sha256(text.encode()).hexdigest() if text else None


_MAX_PACKAGE_FILES = 10_000
"""A package folder with more Python files than this is not a processor's code: refused."""


def _package_files(package: Any) -> dict[str, str]:
    """Every ``.py`` file under a package's folders, by path relative to them."""
    from workers.failures import is_library_file

    files: dict[str, str] = {}
    for root in getattr(package, "__path__", None) or ():
        if is_library_file(os.path.abspath(root) + os.sep):
            continue  # a namespace package's share of site-packages is not the user's code
        base = os.path.dirname(os.path.abspath(root))
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    files[os.path.relpath(path, base)] = path
            if len(files) > _MAX_PACKAGE_FILES:
                from workers.errors import UsageError

                raise UsageError(
                    f"package {getattr(package, '__name__', root)!r} at {root} holds more than "
                    f"{_MAX_PACKAGE_FILES} Python files: is it the processor's own package?"
                )
    return files


def _loaded_user_modules() -> dict[str, str]:
    """Modules already imported from the user's folders (not the standard library, an
    installed package or workers): a single-file processor's helper modules."""
    from workers.failures import is_library_file

    files: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py") or name == "__main__":
            continue
        if not is_library_file(os.path.abspath(file)):
            files[
                name.replace(".", "/") + ("/__init__.py" if file.endswith("__init__.py") else ".py")
            ] = file
    return files


def code_fingerprint(path: str, func: Callable[..., Any] | None) -> dict[str, Any]:
    """What binds a processor's code: for an installed distribution, its name, version and
    the sha256 of its RECORD (which hashes every file it installed); otherwise the sha256
    of every Python file of the processor's top-level package and of every module loaded
    from the user's folders (its helpers), by path."""
    if func is None:
        from workers import __version__

        return {"workers": __version__}
    module_name = path.partition(":")[0]
    module = sys.modules.get(module_name)
    dist = _distribution(module_name, getattr(module, "__file__", None))
    if dist is not None:
        return {
            "distribution": f"{dist.metadata['Name']}=={dist.version}",
            "record": _record_sha256(dist),
        }
    sources = _loaded_user_modules()
    top = sys.modules.get(module_name.split(".", 1)[0])
    sources.update(_package_files(top))
    # The named module and the function's own, even from a folder taken for a library's.
    for name in (module_name, getattr(func, "__module__", None)):
        file = getattr(sys.modules.get(name or ""), "__file__", None)
        if isinstance(file, str) and file not in sources.values():
            sources[os.path.basename(file)] = file
    files = {}
    for rel in sorted(sources):
        digest = _file_sha256(sources[rel])
        if digest:
            files[rel] = digest
    return {"files": files}


def processor_identity(
    path: str | None,
    func: Callable[..., Any] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """What a commit record says made its part; equal identities make equal bytes."""
    return {
        "path": path or IDENTITY,
        "code": code_fingerprint(path or IDENTITY, func),
        "options": dict(options),
    }


def identity_of(
    path: str | None, batch_size: int, source: Any, batch_format: str = "rows"
) -> dict[str, Any]:
    """The processor identity a step with these flags runs (``source`` is a ``db.Source``).
    A columnar batch format is part of it (absent for ``rows``, so earlier plans still match)."""
    func = None
    if path:
        from workers import plugins

        func = plugins.load(path, "--processor")
    options = {
        "batch_size": batch_size,
        "source": [source.table, source.key_column, source.run_column, source.data_column],
    }
    if batch_format != "rows":
        options["batch_format"] = batch_format
    return processor_identity(path, func, options)


def identity_differences(expected: Any, got: Any) -> list[str]:
    """How a processor identity differs from the expected one, in words (empty when equal)."""
    if expected == got:
        return []
    if not isinstance(expected, dict) or not isinstance(got, dict):
        return [f"processor {_path(got)} is not described as the plan requires"]
    out = []
    if expected.get("path") != got.get("path"):
        out.append(f"processor {_path(got)}, not {_path(expected)}")
    elif expected.get("code") != got.get("code"):
        out.append(f"another version of processor {_path(got)} (its code fingerprint differs)")
    want, have = expected.get("options") or {}, got.get("options") or {}
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            out.append(f"{key} {have.get(key)!r}, not {want.get(key)!r}")
    return out or ["a processor identity that differs from the plan's"]


def _path(identity: Any) -> str:
    return repr(identity.get("path")) if isinstance(identity, dict) else repr(identity)
