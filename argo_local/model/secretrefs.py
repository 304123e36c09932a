"""Secrets as a local run finds them (``<SECRET>_<KEY>`` in the environment, then in
``.env``), and the keys a secret volume holds: for the pod's environment and for the
checks made before a run starts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def secret_volume_keys(source: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The keys a secret volume holds locally: its ``items``; without them the keys the
    workflow's ``secretKeyRef``s name for that Secret (a Secret's keys cannot be listed from
    the environment)."""
    name = str(source.get("secretName") or "")
    if source.get("items"):
        return [str(i.get("key")) for i in source["items"]]
    keys: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("secretKeyRef")
            if isinstance(ref, dict) and str(ref.get("name")) == name and ref.get("key"):
                keys[str(ref["key"])] = None
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(spec)
    return list(keys)


def read_dotenv(env_file: Path | None) -> dict[str, str]:
    """The variables of a ``.env`` file (``env_file``, default ``./.env``), by python-dotenv's
    rules: ``export``, single quotes (raw) and double quotes (escapes, several lines), an
    inline `` # comment`` after a value; ``${VAR}`` is not expanded (a secret may hold ``$``).
    A name without ``=`` has no value and is left out."""
    path = env_file or Path(".env")
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {
        k: v
        for k, v in dotenv_values(path, interpolate=False, encoding="utf-8").items()
        if v is not None
    }


def secret_lookup(env_file: Path | None) -> Callable[[str, str], str | None]:
    """A secret's value by name and key, as pods get theirs (``<SECRET>_<KEY>`` in the
    environment, then in ``.env``), for checks made before a run starts."""

    def lookup(secret: str, key: str) -> str | None:
        name = f"{secret}_{key}".upper().replace("-", "_").replace(".", "_")
        return os.environ.get(name) or read_dotenv(env_file).get(name) or None

    return lookup
