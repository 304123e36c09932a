"""A pod's processes. :class:`PodProcesses` runs a pod's life: its init containers one after
another, then its main container with its sidecars (or a ``containerSet``'s containers as their
dependencies allow), and turns exit codes and outputs into the attempt's phase.
:class:`Launcher` starts each container's process in a session of its own, so that a deadline
or a stopped run kills its whole process group, and reads its stderr live for progress events.
The attempts, retries and deadlines around them are :mod:`pods`'."""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from argo_local.expr.params import ParamError
from argo_local.model.nodes import ERROR, FAILED, RUNNING, SUCCEEDED, Attempt, Node
from argo_local.pods import artifacts, capacity, daemons, dataflow, reaper
from argo_local.pods.containers import ContainerRun
from argo_local.pods.dataflow import FlowRun
from argo_local.pods.signals import kill
from workers.redaction import redact

if TYPE_CHECKING:
    from argo_local.pods.containers import Process


class ProcessRun(ContainerRun, FlowRun, Protocol):
    """What a pod's processes need of their run."""

    cancel: threading.Event
    cancel_reason: str
    lock: threading.RLock
    processes: dict[int, subprocess.Popen[bytes]]
    progress: Callable[[str, Node | None], None]
    uid: str  # marks every process of the run (reaper.py), so none outlives it
    slots: capacity.PodSlots  # the pods that run at once (capacity.py)

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


class PodProcesses:
    """Runs the containers of a pod's attempts as processes of one
    :class:`~argo_local.engine.run.Run`."""

    def __init__(self, run: ProcessRun, secret: Callable[[str, str], str | None]) -> None:
        self.run = run
        self.secret = secret
        self.launcher = Launcher(run)

    def run_containers(
        self,
        node: Node,
        attempt: Attempt,
        main: Process | None,
        members: list[tuple[Process, list[str]]],
        inits: list[Process],
        sides: list[Process],
        probes: list[daemons.Readiness],
        deadline: float | None,
        outputs: dict[str, Any],
        where: str,
        daemon: daemons.Daemon | None,
    ) -> Attempt:
        """A pod's life: its init containers one after another (a failure fails the pod),
        then the main container with its sidecars, which are killed once the main exits. A
        container the machine refused to start (bubblewrap could not fork: the task limit)
        never ran: the pod waits for room and starts again (capacity.py)."""
        return capacity.retry_exhausted(
            lambda: self._life(
                node, attempt, main, members, inits, sides, probes, deadline, outputs, where, daemon
            ),
            f"pod {node.display}",
            others_running=lambda: bool(self.run.processes),
            wait=self.run.slots.wait_for_room,
            cancelled=self.run.cancel,
        )

    def _life(
        self,
        node: Node,
        attempt: Attempt,
        main: Process | None,
        members: list[tuple[Process, list[str]]],
        inits: list[Process],
        sides: list[Process],
        probes: list[daemons.Readiness],
        deadline: float | None,
        outputs: dict[str, Any],
        where: str,
        daemon: daemons.Daemon | None,
    ) -> Attempt:
        for init in inits:
            try:
                with open(_fresh(init.stdout), "wb") as out, open(init.stderr, "wb") as err:
                    proc = self.launcher.popen(init, out, err, daemon)
                code, timed_out = self.launcher.wait(proc, None, attempt, node, deadline, daemon)
            except OSError as exc:
                if capacity.is_exhausted(exc):
                    raise
                return end(attempt, ERROR, None, f"cannot start {init.argv0}: {exc}")
            self.launcher.check_refused(init, code)
            if timed_out:
                return self._timed_out(attempt, code, deadline)
            if self.run.cancel.is_set():
                return end(attempt, FAILED, code, self.run.cancel_reason)
            if code != 0:
                # inferFailedReason: an init container's failure is the pod's message
                return end(attempt, FAILED, code, f"{init.name}: Error (exit code {code})")
        running: list[tuple[Process, subprocess.Popen[bytes]]] = []
        side_codes: list[tuple[str, int]] = []
        failure = ""
        try:
            if members:
                for s in sides:
                    with open(_fresh(s.stdout), "wb") as sout, open(s.stderr, "wb") as serr:
                        running.append((s, self.launcher.popen(s, sout, serr, daemon)))
                code, timed_out, failure = self._run_set(node, attempt, members, deadline)
            else:
                assert main is not None
                code, timed_out = self._run_main(
                    node, attempt, main, sides, running, probes, deadline, daemon
                )
        except OSError as exc:
            if capacity.is_exhausted(exc):
                raise
            return end(attempt, ERROR, None, str(exc))
        finally:
            side_codes = self._stop_sidecars(running, daemon)
        if main is not None:
            self.launcher.check_refused(main, code)
        if timed_out:
            return self._timed_out(attempt, code, deadline)
        if daemon is not None:
            if daemon.killed_by_scope(attempt.number):
                return end(attempt, SUCCEEDED, code, "")
            if self.run.cancel.is_set():
                return end(attempt, FAILED, code, self.run.cancel_reason)
            # operator.go: a daemon's pod that succeeds is marked Failed, as daemons should
            # run until their scope ends.
            text = f"main: Error (exit code {code})" if code else "daemon exited (exit code 0)"
            return end(attempt, FAILED, code, text)
        if self.run.cancel.is_set():
            return end(attempt, FAILED, code, self.run.cancel_reason)
        node.outputs = {"exitCode": str(code)}
        if failure:
            return end(attempt, FAILED, code, failure)
        if code != 0:
            # operator.go inferFailedReason: "<container>: <reason> (exit code N)", the main
            # container's name included (test/e2e/cli_test.go: "main: Error (exit code 1)")
            return end(attempt, FAILED, code, f"main: Error (exit code {code})")
        for name, scode in side_codes:
            # inferFailedReason: a sidecar's own failure fails the pod; 137 and 143 (killed
            # by SIGKILL or SIGTERM, as the executor kills sidecars) are ignored.
            if scode not in (0, 137, 143):
                return end(attempt, FAILED, code, f"{name}: Error (exit code {scode})")
        if main is None:
            return end(attempt, SUCCEEDED, code, "")
        # the pod's whole view: its mounts and the folders its outputs were given
        view = main.files.view if main.files is not None else main.mounts
        try:
            node.outputs.update(
                dataflow.pod_outputs(
                    attempt, outputs, view, where, self.run.warn, remapped=self.run.mode == "remap"
                )
            )
            saved = artifacts.save_outputs(
                self.run.artifact_repository,
                outputs,
                view,
                f"{self.run.name}/{attempt.pod_name}",
                main.stdout.parent / "staging",
                self.secret,
                where,
            )
        except (ParamError, artifacts.ArtifactError) as exc:
            return end(attempt, ERROR, code, str(exc))
        if saved:
            node.outputs["artifacts"] = saved
        return end(attempt, SUCCEEDED, code, "")

    def _run_main(
        self,
        node: Node,
        attempt: Attempt,
        main: Process,
        sides: list[Process],
        running: list[tuple[Process, subprocess.Popen[bytes]]],
        probes: list[daemons.Readiness],
        deadline: float | None,
        daemon: daemons.Daemon | None,
    ) -> tuple[int, bool]:
        """The main container with its sidecars started first (``running`` collects them)."""
        with open(main.stdout, "wb") as out, open(main.stderr, "wb") as err:
            starting = main
            try:
                for s in sides:
                    starting = s
                    with open(_fresh(s.stdout), "wb") as sout, open(s.stderr, "wb") as serr:
                        running.append((s, self.launcher.popen(s, sout, serr, daemon)))
                starting = main
                proc = self.launcher.popen(main, out, subprocess.PIPE, daemon)
            except OSError as exc:
                if capacity.is_exhausted(exc):
                    raise
                raise OSError(f"cannot start {starting.argv0}: {exc}") from None
            self.run.progress("running", node)
            if daemon is not None:
                threading.Thread(
                    target=daemons.wait_ready,
                    args=(
                        daemon,
                        attempt.number,
                        probes,
                        lambda: proc.poll() is None,
                        self.run.cancel,
                    ),
                    daemon=True,
                ).start()
            code, timed_out = self.launcher.wait(proc, err, attempt, node, deadline, daemon)
            if daemon is not None:
                daemon.poke()
        return code, timed_out

    def _run_set(
        self,
        node: Node,
        attempt: Attempt,
        members: list[tuple[Process, list[str]]],
        deadline: float | None,
    ) -> tuple[int, bool, str]:
        """A containerSet: every container a process, started once its dependencies exited
        0 (the emissary waits for them, and fails with exit code 64 when one failed); each a
        Container node under the pod node, as operator.go assessNodeStatus records them.
        Returns the main container's exit code, whether the deadline hit, and the pod's
        failure message (inferFailedReason: the main container's first, then the others)."""
        base = f"{node.name}({attempt.number})" if node.retry else node.name
        cnodes = {
            p.name: self.run.new_node(f"{base}.{p.name}", p.name, "Container", node.template, node)
            for p, _ in members
        }
        done = {p.name: threading.Event() for p, _ in members}
        codes: dict[str, int] = {}
        timed: dict[str, bool] = {}

        def one(p: Process, deps: list[str]) -> None:
            cnode = cnodes[p.name]
            cnode.started = time.time()
            try:
                for d in deps:
                    done[d].wait()
                failed = [d for d in deps if codes.get(d) != 0]
                if failed or self.run.cancel.is_set():
                    codes[p.name] = 64
                    why = (
                        f"dependency {failed[0]!r} exited with non-zero code: {codes.get(failed[0])}"
                        if failed
                        else self.run.cancel_reason
                    )
                    self.run.finish(cnode, ERROR, f"{p.name}: Error (exit code 64): {why}")
                    return
                cnode.phase = RUNNING
                main = p.name == "main"
                with open(_fresh(p.stdout), "wb") as out, open(p.stderr, "wb") as err:
                    proc = self.launcher.popen(p, out, subprocess.PIPE if main else err, None)
                    code, timed[p.name] = self.launcher.wait(
                        proc, err if main else None, attempt, node, deadline, None
                    )
                codes[p.name] = code if code >= 0 else 128 - code
                if code == 0:
                    self.run.finish(cnode, SUCCEEDED)
                else:
                    self.run.finish(cnode, FAILED, f"{p.name}: Error (exit code {codes[p.name]})")
            except OSError as exc:
                codes[p.name] = 64
                self.run.finish(cnode, ERROR, f"{p.name}: cannot start {p.argv0}: {exc}")
            finally:
                done[p.name].set()

        threads = [
            threading.Thread(target=one, args=(p, deps), name=f"{node.name}.{p.name}", daemon=True)
            for p, deps in members
        ]
        self.run.progress("running", node)
        for t in threads:
            capacity.start_thread(
                t, f"container {t.name}", others_running=lambda: bool(self.run.processes)
            )
        for t in threads:
            t.join()
        order = sorted(members, key=lambda m: m[0].name != "main")
        failure = next(
            (f"{p.name}: Error (exit code {codes[p.name]})" for p, _ in order if codes[p.name]),
            "",
        )
        return codes.get("main", 0), any(timed.values()), failure

    def _timed_out(self, attempt: Attempt, code: int, deadline: float | None) -> Attempt:
        return end(
            attempt,
            FAILED,
            code,
            f"Pod was active on the node longer than the specified deadline ({deadline:g}s)",
        )

    def _stop_sidecars(
        self,
        running: list[tuple[Process, subprocess.Popen[bytes]]],
        daemon: daemons.Daemon | None,
    ) -> list[tuple[str, int]]:
        """Kill the sidecars once the main container exited (the executor sends SIGTERM, then
        SIGKILL) and return their exit codes, a signal's as 128 + its number."""
        for _, proc in running:
            if proc.poll() is None:
                kill(proc)
        codes = []
        for s, proc in running:
            code = proc.wait()
            self.launcher.forget(proc, daemon)
            codes.append((s.name, code if code >= 0 else 128 - code))
        return codes


class Launcher:
    """The container processes of one :class:`~argo_local.engine.run.Run`: each started in a
    session of its own and registered with the run (so that a stopped run kills its process
    group), waited for up to a deadline while its stderr is read live, then forgotten."""

    def __init__(self, run: ProcessRun) -> None:
        self.run = run
        self.terminals: dict[int, int] = {}  # pid -> the pseudo-terminal of a ``tty`` container
        self.markers: dict[int, str] = {}  # pid -> its reaper.MARKER value
        self._count = itertools.count()
        # bwrap: the runner reaps the namespaces' inits itself (reaper.adopt_orphans)
        self.adopted = run.mode == "bwrap" and reaper.adopt_orphans()

    def popen(
        self, p: Process, out: Any, err: Any, daemon: daemons.Daemon | None
    ) -> subprocess.Popen[bytes]:
        """Start a container's process in its own session, registered so that a stopped run
        (and a daemon's scope) can kill its whole process group."""
        # A container's stdin is closed unless it asks for a terminal (core/v1 Container.stdin,
        # .tty): never the runner's own terminal. With ``tty`` it is a pseudo-terminal, so
        # ``[ -t 0 ]`` holds as in the pod; stdout and stderr still go to the pod's logs.
        stdin: Any = subprocess.DEVNULL
        terminal = None
        if p.tty:
            import pty

            terminal, stdin = pty.openpty()
        # what it starts carries this, so its leftovers are found once it exits (reaper.py)
        mark = f"{self.run.uid}/{next(self._count)}"

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                p.cmd,
                stdin=stdin,
                stdout=out,
                stderr=err,
                env={**p.env, reaper.MARKER: mark},
                cwd=p.cwd,
                start_new_session=True,
            )

        try:
            # A fork the machine refuses (EAGAIN: the task limit, a cgroup's pids.max) is no
            # failure of the pod: it waits, as a pod waits for room on a cluster, until a
            # process of the run ends (capacity.py).
            proc = capacity.retry_exhausted(
                start,
                p.argv0,
                others_running=lambda: bool(self.run.processes),
                wait=self.run.slots.wait_for_room,
                cancelled=self.run.cancel,
            )
        finally:
            if terminal is not None:
                os.close(stdin)
        with self.run.lock:
            self.run.processes[proc.pid] = proc
            self.markers[proc.pid] = mark
            if terminal is not None:
                self.terminals[proc.pid] = terminal
            cancelled = self.run.cancel.is_set()
        if daemon is not None:
            daemon.own(proc)
        # stop() kills registered processes itself; one registered after its sweep sees the
        # flag here.
        if cancelled:
            kill(proc)
        return proc

    def check_refused(self, p: Process, code: int) -> None:
        """Raise EAGAIN when ``p`` never ran because bubblewrap could not fork or clone its
        namespace (``bwrap: ... Resource temporarily unavailable``, exit 1): the machine's
        task limit, not the container's failure, so the pod waits and starts again."""
        if self.run.mode != "bwrap" or code != 1:
            return
        try:
            with open(p.stderr, "rb") as f:
                head = f.read(512)
        except OSError:
            return
        if head.startswith(b"bwrap: ") and any(
            os.strerror(e).encode() in head for e in capacity.EXHAUSTED_ERRNOS
        ):
            line = head.split(b"\n", 1)[0].decode(errors="replace")
            raise OSError(errno.EAGAIN, line)

    def forget(self, proc: subprocess.Popen[bytes], daemon: daemons.Daemon | None) -> None:
        """Once ``proc`` exited: what it left running is killed (a container's processes end
        with its main process), and the run no longer tracks it."""
        with self.run.lock:
            self.run.processes.pop(proc.pid, None)
            terminal = self.terminals.pop(proc.pid, None)
            mark = self.markers.pop(proc.pid, None)
        if mark is not None and self.run.mode != "bwrap":
            # bwrap's PID namespace (--unshare-pid) ends them already; remap has only this
            reaper.end(proc.pid, mark)
        if self.adopted:
            reaper.reap_orphans()  # the namespace's init bubblewrap left unreaped
        if terminal is not None:
            os.close(terminal)
        if daemon is not None:
            daemon.disown(proc)

    def wait(
        self,
        proc: subprocess.Popen[bytes],
        err_file: Any,
        attempt: Attempt,
        node: Node,
        deadline: float | None,
        daemon: daemons.Daemon | None,
    ) -> tuple[int, bool]:
        reader = None
        if err_file is not None:
            reader = threading.Thread(
                target=self._read_stderr, args=(proc, err_file, attempt, node), daemon=True
            )
            try:
                reader.start()
            except RuntimeError:
                # no thread for it (the task limit): this thread reads the log, up to the
                # deadline, before it waits
                reader = None
                self._read_until(proc, err_file, attempt, node, deadline)
        timed_out = False
        try:
            # Block until the exit (or the deadline), never poll: a poll interval is latency
            # every pod pays.
            left = None if deadline is None else deadline - (time.time() - attempt.started)
            try:
                code = proc.wait(timeout=None if left is None else max(left, 0.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                kill(proc)
                code = proc.wait()
        finally:
            self.forget(proc, daemon)
        if reader is not None:
            reader.join(timeout=5)
        return code, timed_out

    def _read_until(
        self,
        proc: subprocess.Popen[bytes],
        err_file: Any,
        attempt: Attempt,
        node: Node,
        deadline: float | None,
    ) -> None:
        """:meth:`_read_stderr` in this thread, until the log ends or the deadline passes
        (the wait after it then sees the deadline)."""
        import selectors

        assert proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            while True:
                left = None if deadline is None else deadline - (time.time() - attempt.started)
                if left is not None and left <= 0:
                    return
                if not sel.select(timeout=left):
                    return
                line = proc.stderr.readline()
                if not line:
                    return
                self._log_line(line, err_file, attempt, node)

    def _read_stderr(
        self, proc: subprocess.Popen[bytes], err_file: Any, attempt: Attempt, node: Node
    ) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._log_line(line, err_file, attempt, node)

    def _log_line(self, line: bytes, err_file: Any, attempt: Attempt, node: Node) -> None:
        """One line of a pod's stderr: to its log, to the terminal with ``-v``, and its
        JSON event to the attempt."""
        if attempt.first_log is None:
            attempt.first_log = time.time()
        err_file.write(line)
        err_file.flush()
        if self.run.options.verbose:
            # the pod's own words, masked like everything else the runner prints
            with self.run.lock:
                secrets = tuple(self.run.secret_values)
            text = f"  {node.display} | {line.decode(errors='replace')}"
            sys.stderr.write(redact(text, secrets))
        if line.startswith(b"{"):
            try:
                event = json.loads(line)
            except ValueError:
                return
            if isinstance(event, dict):
                attempt.events.append(event)
                if event.get("rows") is not None:
                    self.run.progress("event", node)


def end(attempt: Attempt, phase: str, code: int | None, message: str) -> Attempt:
    attempt.phase = phase
    attempt.exit_code = code
    attempt.message = message
    attempt.finished = time.time()
    return attempt


def _fresh(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
