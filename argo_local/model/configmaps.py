"""ConfigMaps a local run reads: the ``kind: ConfigMap`` documents of the file being run and of
the YAML files under the manifests folder (``--manifests``), as Argo's e2e suite applies every
ConfigMap under examples/ before it submits the examples.

They back ``valueFrom.configMapKeyRef`` parameters (the controller's
``common.GetConfigMapValue``: only a ConfigMap labelled ``workflows.argoproj.io/configmap-type``
is seen, and it must say ``Parameter``), ``configMap`` volumes, ``env[].valueFrom.configMapKeyRef``
and ``envFrom[].configMapRef`` (what the kubelet does with any ConfigMap), and the limits of
semaphores (synchronization.py). The first document of a name wins: the file being run first,
then the manifests folder in path order.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from argo_local.expr.params import ParamError

TYPE_LABEL = "workflows.argoproj.io/configmap-type"
PARAMETER_TYPE = "Parameter"


class ConfigMapError(ParamError):
    """A ConfigMap value cannot be read; ``not_found`` as Argo's ``errors.CodeNotFound`` (a
    missing ConfigMap or key), which lets a ``valueFrom.default`` apply."""

    def __init__(self, message: str, *, not_found: bool) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True)
class ConfigMap:
    name: str
    source: str
    data: dict[str, str] = field(default_factory=dict)
    binary: dict[str, bytes] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """Every key as the kubelet writes it into a volume: ``data`` then ``binaryData``."""
        return {**{k: v.encode() for k, v in self.data.items()}, **self.binary}


def files_for(source: str, manifests: Path | None) -> list[Path]:
    """Where ConfigMaps are looked for: the file being run, then the manifests folder."""
    files = [Path(source)]
    if manifests is not None and manifests.is_dir():
        files += sorted(
            p for p in manifests.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
        )
    return files


class ConfigMaps:
    """The ConfigMaps of ``files``, read once on first use (thread-safe)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        self._by_name: dict[str, ConfigMap] | None = None
        self._guard = threading.Lock()

    def where(self) -> str:
        """Where they were looked for, for messages."""
        rest = f" or the {len(self.files) - 1} YAML files of the manifests folder"
        return f"{self.files[0]}{rest if len(self.files) > 1 else ''}" if self.files else "nowhere"

    def all(self) -> dict[str, ConfigMap]:
        with self._guard:
            if self._by_name is None:
                self._by_name = _load(self.files)
            return self._by_name

    def get(self, name: str) -> ConfigMap | None:
        return self.all().get(name)

    def parameter(self, name: str, key: str) -> str:
        """A parameter's value as ``common.GetConfigMapValue`` reads it (workflow/common/
        configmap.go): the controller's informer only lists ConfigMaps carrying the
        configmap-type label, and a parameter needs its value to be ``Parameter``."""
        cm = self.get(name)
        if cm is None or TYPE_LABEL not in cm.labels:
            raise ConfigMapError(
                f"ConfigMap '{name}' does not exist. Please make sure it has the label "
                f"{TYPE_LABEL}: {PARAMETER_TYPE} to be detectable by the controller "
                f"({'no' if cm is None else 'an unlabelled'} kind: ConfigMap document of that "
                f"name in {self.where() if cm is None else cm.source})",
                not_found=True,
            )
        if cm.labels[TYPE_LABEL] != PARAMETER_TYPE:
            raise ConfigMapError(
                f"ConfigMap '{name}' needs to have the label {TYPE_LABEL}: {PARAMETER_TYPE} "
                "to load parameters",
                not_found=False,
            )
        if key not in cm.data:
            raise ConfigMapError(
                f"ConfigMap '{name}' does not have the key '{key}'", not_found=True
            )
        return cm.data[key]


def _load(files: Sequence[Path]) -> dict[str, ConfigMap]:
    import yaml

    found: dict[str, ConfigMap] = {}
    for path in files:
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue  # a broken unrelated file must not block running another
        for d in docs:
            if not isinstance(d, dict) or d.get("kind") != "ConfigMap":
                continue
            meta = d.get("metadata") or {}
            name = str(meta.get("name") or "")
            if not name or name in found:
                continue
            binary = {}
            for k, v in (d.get("binaryData") or {}).items():
                try:
                    binary[str(k)] = base64.b64decode(str(v), validate=True)
                except ValueError:
                    continue  # the API server would have refused the ConfigMap
            found[name] = ConfigMap(
                name,
                str(path),
                {str(k): _text(v) for k, v in (d.get("data") or {}).items()},
                binary,
                {str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            )
    return found


def _text(value: object) -> str:
    # ConfigMap data is map[string]string: YAML scalars the API server would refuse unquoted
    # (numbers, booleans) are read as their text, as kubectl users write them quoted.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
