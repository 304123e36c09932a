"""The records a run keeps: node phases, nodes and their pod attempts, Argo's node ids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED, RUNNING = (
    "Succeeded",
    "Failed",
    "Error",
    "Skipped",
    "Omitted",
    "Running",
)
DONE = (SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED)
PENDING = "Pending"  # not started yet: waiting for a lock, or for room to run (capacity.py)


@dataclass
class Attempt:
    number: int
    pod_name: str
    started: float
    finished: float | None = None
    phase: str = RUNNING
    exit_code: int | None = None
    message: str = ""
    backoff_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    mounts: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # ``started`` is when the process was spawned (after any workflow parallelism slot);
    # ``created`` when the attempt began waiting for it, ``first_log`` the first stderr line.
    created: float = 0.0
    first_log: float | None = None


@dataclass
class Node:
    id: str
    name: str
    display: str
    type: str
    template: str
    parent: str | None
    phase: str = "Pending"
    started: float | None = None
    finished: float | None = None
    message: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    input_artifacts: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    loop_phases: list[str] = field(default_factory=list)
    loop_total: int = 0
    index: int = -1  # position in its loop, for ordering
    handled: bool = False  # a failure a continueOn or a depends clause takes care of
    # The controller's executeTemplate returned this node's error (a memoize key its cache
    # refuses): steps.go executeStepGroup then errors the step group whatever continueOn says.
    template_error: bool = False
    retry: bool = False  # a retryStrategy: Argo shows a Retry node with one Pod per attempt
    after: list[str] = field(default_factory=list)  # ids of the DAG tasks it depended on
    reused: bool = False  # kept from the run this one resumes (--resume): not run again
    # memoize: Argo's memoizationStatus (hit, key, cacheName), None without memoize
    memoization: dict[str, Any] | None = None
    daemoned: bool = False  # a daemon that became ready: it runs on until its scope ends
    # A lifecycle hook or exit handler (Argo's nodeFlag.hooked); ``parent`` is then the node it
    # hooks, which lists it in ``hooks`` (run.json: among that node's children).
    hooked: bool = False
    hooks: list[str] = field(default_factory=list)
    # A loop whose items' stdouts are not all JSON: why its outputs.result cannot be aggregated
    # (an error only for a template that reads that result).
    result_error: str = ""
    # The scope of the step or task that started it (steps.X, tasks.X outputs ...): the
    # controller substitutes the workflow's volumes with it (steps.go, dag.go
    # substituteParamsInVolumes), so a configMap or secret volume's name may use it.
    caller_scope: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


class Cancelled(Exception):
    """The run was stopped (deadline, internal error): a node in progress ends Failed."""


def fnv32a(text: str) -> int:
    """Go's hash/fnv New32a sum of ``text``'s UTF-8 bytes (node ids and pod names use it)."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def node_id_of(workflow: str, name: str) -> str:
    """Argo's node id: the workflow's name for the root, else NAME-FNV32a(node name)."""
    if name == workflow:
        return workflow
    return f"{workflow}-{fnv32a(name)}"


# util/pod_name.go: a pod name is at most 253 characters, the hash (up to 10 digits) and its
# dash included, so the prefix keeps 253 - 10 - 1.
_POD_PREFIX_MAX = 253 - 10 - 1


def attempt_node_name(node_name: str, attempt: int, retried: bool) -> str:
    """The node name a pod runs under: a retried node's attempt is its child ``NAME(N)``
    (operator.go executeTemplate, attempt 0 included); any other node is its own pod."""
    return f"{node_name}({attempt})" if retried else node_name


def pod_name_of(workflow: str, node_name: str, template: str) -> str:
    """Argo's v2 pod name (util/pod_name.go GeneratePodName): the workflow's own node is the
    workflow's name, any other ``WORKFLOW-TEMPLATE-FNV32a(node name)`` (``WORKFLOW-HASH`` for
    an inline template, which has no name), the prefix cut to fit a Kubernetes name. The
    one place the runner makes it: ``{{pod.name}}``, the report's podName and
    ``workflow.failures`` all come from here."""
    if node_name == workflow:
        return workflow
    prefix = f"{workflow}-{template}" if template else workflow
    return f"{prefix[:_POD_PREFIX_MAX]}-{fnv32a(node_name)}"


def continues(step: Mapping[str, Any], phase: str) -> bool:
    """``ContinuesOn``: continueOn.failed covers a Failed node, continueOn.error an Errored one."""
    cont = step.get("continueOn") or {}
    if phase == FAILED:
        return bool(cont.get("failed"))
    return phase == ERROR and bool(cont.get("error"))


FAIL_FAST = "template has failed or errored children and failFast enabled"
"""The message of a steps or DAG node failFast ended (Argo's words)."""
