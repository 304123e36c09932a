"""What the engine's parts need of a run, as Protocols: each part is typed by what it uses,
so none imports :class:`~argo_local.engine.run.Run` (which imports them all) and the modules
import each other without a circle. mypy checks ``Run`` against each where it hands itself
over."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from argo_local.model.nodes import Node
from argo_local.model.spec import Document


class NodeRun(Protocol):
    """A run's nodes: made, finished and watched under the run's lock."""

    name: str
    spec: dict[str, Any]
    scope: dict[str, str]
    nodes: dict[str, Node]
    lock: threading.RLock
    cancel: threading.Event
    cancel_reason: str
    progress: Callable[[str, Node | None], None]

    def new_node(
        self,
        name: str,
        display: str,
        type_: str,
        template: str,
        parent: Node | None,
        *,
        hooked: bool = False,
    ) -> Node: ...
    def finish(self, node: Node, phase: str, message: str = "") -> Node: ...
    def check_cancel(self) -> None: ...
    def find_template(
        self, doc: Document, ref: Mapping[str, Any], where: str
    ) -> tuple[Document, dict[str, Any]]: ...
    def warn(self, text: str) -> None: ...
    def warn_once(self, message: str) -> None: ...


class TemplateRunner(Protocol):
    """Runs a template as a node (the scheduler, as hooks and steps see it)."""

    def run_template(
        self,
        doc: Document,
        tmpl: dict[str, Any],
        arguments: Mapping[str, Any],
        name: str,
        display: str,
        parent: Node | None,
        *,
        lenient: bool = False,
        fail_fast: threading.Event | None = None,
        hooked: bool = False,
        caller_scope: Mapping[str, str] | None = None,
    ) -> Node: ...
