"""Daemon steps (``daemon: true``): a pod that runs on while the steps after it run.

As Argo's controller does (controller/operator.go assessNodeStatus, exec_control.go
killDaemonedChildren): the node becomes Running and *daemoned* once its process started and
every readiness probe passed; the step after it starts then; when the steps or DAG template
that started it (its boundary) ends, its processes are killed and the node ends Succeeded.
A daemon whose process exits on its own, even with 0, ends Failed (a daemon should run until
its scope ends), and its ``retryStrategy`` starts it again.

Readiness probes (``exec``, ``httpGet``, ``tcpSocket``) are run locally with Kubernetes'
defaults (no initial delay, every 10 s, 1 s timeout, 1 success). A daemon's pod IP is
127.0.0.1 here: every pod shares this machine's network.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from argo_local.model.nodes import Node
from argo_local.model.spec import SpecError

if TYPE_CHECKING:
    import subprocess


class DaemonRun(Protocol):
    """What a run's daemons need of it."""

    cancel: threading.Event
    nodes: dict[str, Node]

    def warn_once(self, message: str) -> None: ...


LOCAL_IP = "127.0.0.1"


class Daemon:
    """The lifetime of one daemon node: its live processes, readiness and release."""

    def __init__(self, node: Node, boundary: str | None) -> None:
        self.node = node
        self.boundary = boundary
        self.changed = threading.Condition()
        self.ready_attempt: int | None = None  # the attempt that became ready, if any
        self.done = False
        self.released = False
        self.procs: list[subprocess.Popen[bytes]] = []
        self.thread: threading.Thread | None = None

    def own(self, proc: subprocess.Popen[bytes]) -> None:
        """A process of the current attempt: killed with the daemon (now, if released)."""
        from argo_local.pods.signals import kill

        with self.changed:
            self.procs.append(proc)
            released = self.released
        if released:
            kill(proc)

    def disown(self, proc: subprocess.Popen[bytes]) -> None:
        with self.changed:
            if proc in self.procs:
                self.procs.remove(proc)

    def mark_ready(self, attempt: int) -> None:
        with self.changed:
            self.ready_attempt = attempt
            self.node.daemoned = True
            self.changed.notify_all()

    def mark_done(self) -> None:
        with self.changed:
            self.done = True
            self.changed.notify_all()

    def poke(self) -> None:
        """Wake a readiness loop (the main process exited)."""
        with self.changed:
            self.changed.notify_all()

    def killed_by_scope(self, attempt: int) -> bool:
        """Whether this attempt ended because its scope released it after it became ready."""
        with self.changed:
            return self.released and self.ready_attempt == attempt

    def wait_started(self) -> bool:
        """Block until the daemon is ready (True) or its node ended before that (False)."""
        with self.changed:
            while self.ready_attempt is None and not self.done:
                self.changed.wait()
            return self.ready_attempt is not None and not self.done

    def flag(self) -> None:
        """Released without waiting (a stopped run kills the processes itself)."""
        with self.changed:
            self.released = True
            self.changed.notify_all()

    def release(self, timeout: float = 30.0) -> None:
        """Kill the daemon's processes as its scope ends and wait until its node has ended."""
        from argo_local.pods.signals import kill

        with self.changed:
            self.released = True
            procs = list(self.procs)
            self.changed.notify_all()
        for proc in procs:
            kill(proc)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def wait_released(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (a retry's backoff, a probe's period); True if released."""
        with self.changed:
            if not self.released:
                self.changed.wait(seconds)
            return self.released


class Daemons:
    """The run's live daemons, by the steps or DAG node whose end kills them."""

    def __init__(self, run: DaemonRun) -> None:
        self.run = run
        self.lock = threading.Lock()
        self.live: list[Daemon] = []

    def add(self, daemon: Daemon) -> None:
        with self.lock:
            self.live.append(daemon)
        if self.run.cancel.is_set():
            daemon.flag()  # stopped while it became ready: as stop() flags every daemon
        self.run.warn_once(
            "daemon steps: {{steps.X.ip}} and {{tasks.X.ip}} are 127.0.0.1 locally, as every "
            "pod shares this machine's network (two daemons cannot listen on one port)"
        )

    def release(self, boundary: Node | None) -> None:
        """End the daemons a steps or DAG node started (Argo: killDaemonedChildren)."""
        key = boundary.id if boundary is not None else None
        with self.lock:
            ending = [d for d in self.live if d.boundary == key]
            self.live = [d for d in self.live if d.boundary != key]
        for d in ending:
            d.release()

    def release_all(self) -> None:
        with self.lock:
            ending, self.live = self.live, []
        for d in ending:
            d.release()

    def flag_all(self) -> None:
        with self.lock:
            ending = list(self.live)
        for d in ending:
            d.flag()


def boundary_of(run: DaemonRun, node: Node) -> str | None:
    """The nearest steps or DAG node above ``node``: the scope whose end kills a daemon."""
    parent = run.nodes.get(node.parent) if node.parent else None
    while parent is not None and parent.type not in ("Steps", "DAG"):
        parent = run.nodes.get(parent.parent) if parent.parent else None
    return parent.id if parent is not None else None


class Readiness:
    """One container's readiness probe, run as the kubelet does (core/v1 Probe defaults)."""

    def __init__(
        self,
        probe: Mapping[str, Any],
        ports: Mapping[str, int],
        run_exec: Callable[[list[str], float], int],
    ) -> None:
        self.probe = probe
        self.ports = ports
        self.run_exec = run_exec
        self.delay = float(probe.get("initialDelaySeconds") or 0)
        self.period = float(probe.get("periodSeconds") or 10)
        self.timeout = float(probe.get("timeoutSeconds") or 1)
        self.needed = int(probe.get("successThreshold") or 1)
        self.successes = 0

    def check(self) -> bool:
        """One probe; True once ``successThreshold`` consecutive probes passed."""
        self.successes = self.successes + 1 if self._probe() else 0
        return self.successes >= self.needed

    def _port(self, value: Any) -> int:
        if isinstance(value, int):
            return value
        if str(value).isdigit():
            return int(value)
        if str(value) in self.ports:
            return self.ports[str(value)]
        raise SpecError(f"readinessProbe: no container port named {value!r}")

    def _probe(self) -> bool:
        p = self.probe
        try:
            if p.get("exec") is not None:
                argv = [str(a) for a in p["exec"]["command"]]
                return self.run_exec(argv, self.timeout) == 0
            if p.get("tcpSocket") is not None:
                t = p["tcpSocket"]
                host = str(t.get("host") or LOCAL_IP)
                with socket.create_connection((host, self._port(t["port"])), self.timeout):
                    return True
            h = p["httpGet"]
            return _http_ok(
                str(h.get("scheme") or "HTTP").lower(),
                str(h.get("host") or LOCAL_IP),
                self._port(h["port"]),
                str(h.get("path") or "/"),
                {str(x["name"]): str(x["value"]) for x in h.get("httpHeaders") or []},
                self.timeout,
            )
        except (OSError, ValueError):
            return False


def _http_ok(
    scheme: str, host: str, port: int, path: str, headers: dict[str, str], timeout: float
) -> bool:
    """The kubelet's HTTP probe: a status from 200 to 399 passes; certificates are not checked."""
    import http.client

    conn: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path if path.startswith("/") else "/" + path, headers=headers)
        status = conn.getresponse().status
    finally:
        conn.close()
    return 200 <= status < 400


def wait_ready(
    daemon: Daemon,
    attempt: int,
    probes: list[Readiness],
    alive: Callable[[], bool],
    cancelled: threading.Event,
) -> None:
    """Probe until every container is ready (then mark the attempt ready) or the pod ends."""
    start = time.monotonic()
    pending = list(probes)
    next_at = {id(p): start + p.delay for p in pending}
    while pending:
        now = time.monotonic()
        due = min(next_at[id(p)] for p in pending)
        if due > now and daemon.wait_released(due - now):
            return
        if not alive() or cancelled.is_set() or daemon.released:
            return
        for p in list(pending):
            if next_at[id(p)] <= time.monotonic():
                if p.check():
                    pending.remove(p)
                else:
                    next_at[id(p)] = time.monotonic() + p.period
    if alive():
        daemon.mark_ready(attempt)
