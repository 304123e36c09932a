"""The pod runtime: one local process per container of an attempt, each in its own session so
a deadline or a stopped run kills its whole process group; init containers in order before the
main one, sidecars beside it until it exits; retries with backoff and ``retryStrategy``;
``activeDeadlineSeconds`` and ``timeout``; a daemon's attempts in a thread of their own
(:mod:`daemons`); stderr read live for progress events; exit codes and outputs turned into a
phase."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.runner import artifacts, daemons, dataflow, expr, exprlang, params
from workers.runner.containers import Containers, Pod, Process
from workers.runner.nodes import (
    ERROR,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    node_id_of,
)
from workers.runner.params import ParamError
from workers.runner.podenv import (
    SECRETS_DIR,
)
from workers.runner.spec import Document, SpecError, seconds

if TYPE_CHECKING:
    from workers.runner.engine import Run


class PodRuntime:
    """Starts, waits for and retries the pods of one :class:`~workers.runner.engine.Run`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.containers = Containers(run, self.secret)
        self.terminals: dict[int, int] = {}  # pid -> the pseudo-terminal of a ``tty`` container

    def run_pod(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        prior = self.run.resumed.get(node.name)
        if prior is not None:
            # As argo retry keeps a succeeded node: its outputs feed the steps after it.
            with self.run.lock:
                node.reused = True
                node.outputs = dict(prior.outputs)
                node.started = prior.started or node.started
            self.run.finish(node, SUCCEEDED, "succeeded in the run this one resumes (kept)")
            if prior.finished is not None:
                node.finished = prior.finished
            return
        if not tmpl.get("daemon"):
            self._attempts(node, doc, tmpl, scope, where, None)
            return
        # A daemon: its attempts run in a thread of their own; the step returns (and the
        # steps after it start) once it is ready, and its scope's end kills it (daemons.py).
        daemon = daemons.Daemon(node, daemons.boundary_of(self.run, node))

        def life() -> None:
            try:
                self._attempts(node, doc, tmpl, scope, where, daemon)
            except Cancelled:
                self.run.finish(node, FAILED, self.run.cancel_reason or "cancelled")
            except (ParamError, SpecError, expr.ExprError) as exc:
                self.run.finish(node, ERROR, str(exc))
            except Exception as exc:  # a runner bug must end the node, never leave it Running
                self.run.finish(node, ERROR, f"internal error {type(exc).__name__}: {exc}")
            finally:
                daemon.mark_done()
            if node.daemoned:  # its step returned long ago: the metrics are computed here
                outputs = node.outputs if node.phase == SUCCEEDED else {}
                self.run.template_metrics(
                    tmpl,
                    node,
                    where,
                    node.phase,
                    node.duration or 0.0,
                    len(node.attempts) - 1,
                    outputs or dataflow.declared_defaults(tmpl),
                )

        daemon.thread = threading.Thread(target=life, name=f"daemon {node.name}", daemon=True)
        daemon.thread.start()
        if daemon.wait_started():
            self.run.daemons.add(daemon)
            self.run.progress("daemoned", node)
            return
        daemon.thread.join()

    def _attempts(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        daemon: daemons.Daemon | None,
    ) -> None:
        """The node's attempts as its ``retryStrategy`` allows; the node ends with the last."""
        # `retryStrategy: {}` is a strategy (an empty one), not none
        retried = tmpl.get("retryStrategy") is not None
        rs = tmpl.get("retryStrategy") or {}
        # The controller substitutes the whole template, retryStrategy included, before it reads
        # it: {{inputs.parameters.X}} works in limit and expression alike.
        rs = params.substitute(dict(rs), scope, f"{where}.retryStrategy")
        # No limit is no limit: processNodeRetries stops on "No more retries left" only when
        # retryStrategy.limit is set, so `retryStrategy: {}` retries until the pod succeeds.
        limit: int | None = None
        if rs.get("limit") is not None:
            limit = params.integer(rs["limit"], f"{where}.retryStrategy.limit")
        policy = rs.get("retryPolicy") or ("Always" if rs.get("expression") else "OnFailure")
        if policy not in ("Always", "OnFailure", "OnError", "OnTransientError"):
            raise SpecError(f"{where}: retryStrategy.retryPolicy {policy!r} is not an Argo policy")
        if policy == "OnTransientError":
            self.run.warn(f"{where}: retryPolicy OnTransientError retries Error nodes locally")
        backoff = rs.get("backoff") or {}
        node.retry = retried
        first = time.time()
        attempt: Attempt | None = None
        n = -1
        while True:
            n += 1
            self.run.check_cancel()
            if daemon is not None and daemon.released:
                break
            delay = 0.0
            if n > 0 and backoff:
                delay = _seconds(backoff.get("duration", 0)) * float(
                    backoff.get("factor", 1) or 1
                ) ** (n - 1)
                if backoff.get("cap"):
                    delay = min(delay, _seconds(backoff["cap"]))
                max_d = backoff.get("maxDuration")
                if max_d and time.time() + delay - first > _seconds(max_d):
                    node.message = f"retries stopped: backoff.maxDuration {max_d} reached"
                    break
                if daemon is not None and daemon.wait_released(delay):
                    break
                if self.run.cancel.wait(0 if daemon is not None else delay):
                    raise Cancelled()
            attempt = self.run_attempt(node, doc, tmpl, scope, where, n, daemon)
            attempt.backoff_s = delay
            if attempt.phase == SUCCEEDED or not retried:
                break
            if not _should_retry(policy, None, attempt, where):
                break
            if limit is not None and n >= limit:
                node.message = "No more retries left"
                break
            if not _should_retry(policy, rs.get("expression"), attempt, where):
                node.message = "retryStrategy.expression evaluated to false"
                break
            # Argo also computes the metrics of an attempt it retries (the retry node's last
            # child), with that attempt's status and duration.
            self.run.template_metrics(
                tmpl,
                node,
                where,
                attempt.phase,
                (attempt.finished or attempt.started) - attempt.started,
                n,
                dataflow.declared_defaults(tmpl),
            )
            self.run.progress("retry", node)
        if daemon is not None and daemon.released and node.daemoned:
            # Its scope ended while it ran or waited to retry: Argo's killDaemonedChildren
            # marks a daemoned node Succeeded whatever its pod does next.
            self.run.finish(node, SUCCEEDED, "")
            return
        assert attempt is not None
        self.run.finish(node, attempt.phase, node.message or attempt.message)

    def run_attempt(
        self,
        node: Node,
        doc: Document,
        tmpl: dict[str, Any],
        scope: dict[str, str],
        where: str,
        number: int,
        daemon: daemons.Daemon | None = None,
    ) -> Attempt:
        base = f"{node.name}({number})" if number else node.name
        pod_name = f"{self.run.name}-{tmpl.get('name')}-{zlib.crc32(base.encode())}"
        now = time.time()
        attempt = Attempt(number, pod_name, now, created=now)
        with self.run.lock:
            node.attempts.append(attempt)
        ascope = {**scope, "retries": str(number), "pod.name": pod_name, "node.name": node.name}
        pod_dir = self.run.run_dir / "pods" / pod_name
        tmp_dir = pod_dir / "tmp"
        if self.run.resumed:
            # The earlier run's attempt of this name left its /tmp (output files included) and
            # what it created in its image's folders: a new pod starts from its image again
            # (and so does each of its other containers).
            for old in (tmp_dir, pod_dir / "containers", pod_dir / "root"):
                if old.exists():
                    shutil.rmtree(old)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        kind = next(k for k in ("script", "container", "containerSet") if k in tmpl)
        # A retried step is a Retry node; its pods are the attempt nodes run.json lists.
        pod_node_id = node_id_of(self.run.name, f"{node.name}({number})") if node.retry else node.id
        pod = Pod(
            node, pod_name, pod_node_id, pod_dir, tmpl, where, scope={**node.caller_scope, **ascope}
        )
        members: list[tuple[Process, list[str]]] = []
        try:
            # Outputs first: their paths are variables of the container ({{outputs.*.path}}),
            # each evaluated once per pod (a random name in a path is the same in both).
            outputs = params.substitute(dict(tmpl.get("outputs") or {}), ascope, f"{where}.outputs")
            ascope.update(artifacts.path_scope(node.input_artifacts, outputs))
            c = params.substitute(dict(tmpl[kind]), ascope, f"{where}.{kind}")
            deadline = self._deadline(tmpl, ascope, where)
            if kind == "containerSet":
                members, c = self.containers.container_set(
                    pod, c, tmp_dir, node.input_artifacts, outputs
                )
                main = next((p for p, _ in members if p.name == "main"), None)
            else:
                # The main container's view: its mounts plus where its input artifacts go and
                # the folders its outputs need (artifacts.prepare_pod).
                files = self.containers.artifact_view(
                    pod, c, tmp_dir, node.input_artifacts, outputs
                )
                main = self.containers.container(pod, c, kind, "main", tmp_dir, files)
            inits = [
                self.containers.container(
                    pod, u, "container", str(u["name"]), self.containers.own_tmp(pod, u)
                )
                for u in self.containers.user_containers(tmpl, c, "initContainers", ascope, where)
            ]
            sides = [
                self.containers.container(
                    pod, u, "container", str(u["name"]), self.containers.own_tmp(pod, u)
                )
                for u in self.containers.user_containers(tmpl, c, "sidecars", ascope, where)
            ]
            probes = (
                self.containers.probes(pod, c, tmp_dir, sides, where) if daemon is not None else []
            )
        except (ParamError, SpecError, artifacts.ArtifactError) as exc:
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)
            return self._end(attempt, ERROR, None, str(exc))
        if main is not None:
            attempt.mounts = [(m.target, str(m.host)) for m in main.mounts]
        # a container set without a "main" container has no outputs (its logs are per container)
        attempt.stdout = str(pod_dir / "stdout.log")
        attempt.stderr = str(pod_dir / "stderr.log")
        self.run.progress("start", node)
        try:
            ctx = self.run.wf_limit or nullcontext()
            with ctx:
                self.run.check_cancel()
                attempt.started = time.time()
                return self._run_containers(
                    node,
                    attempt,
                    main,
                    members,
                    inits,
                    sides,
                    probes,
                    deadline,
                    outputs,
                    where,
                    daemon,
                )
        except Cancelled:
            return self._end(attempt, FAILED, None, self.run.cancel_reason or "cancelled")
        finally:
            # secret values are not left on disk once the pod is gone
            shutil.rmtree(pod_dir / SECRETS_DIR, ignore_errors=True)

    def _deadline(self, tmpl: dict[str, Any], scope: dict[str, str], where: str) -> float | None:
        """``activeDeadlineSeconds`` and ``timeout``, whichever ends first: for a pod template
        Argo turns ``timeout`` into the pod's activeDeadlineSeconds (workflowpod.go)."""
        deadline: float | None = None
        raw = tmpl.get("activeDeadlineSeconds")
        if raw:
            deadline = float(params.substitute(str(raw), scope, f"{where}.activeDeadlineSeconds"))
        raw = tmpl.get("timeout")
        if raw:
            text = params.substitute(str(raw), scope, f"{where}.timeout")
            try:
                seconds = _seconds(text)
            except ParamError:
                raise ParamError(f"{where}.timeout: {text!r} is not a duration") from None
            deadline = seconds if deadline is None else min(deadline, seconds)
        return deadline

    def _run_containers(
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
        then the main container with its sidecars, which are killed once the main exits."""
        for init in inits:
            try:
                with open(_fresh(init.stdout), "wb") as out, open(init.stderr, "wb") as err:
                    proc = self._popen(init, out, err, daemon)
                code, timed_out = self._wait(proc, None, attempt, node, deadline, daemon)
            except OSError as exc:
                return self._end(attempt, ERROR, None, f"cannot start {init.argv0}: {exc}")
            if timed_out:
                return self._timed_out(attempt, code, deadline)
            if self.run.cancel.is_set():
                return self._end(attempt, FAILED, code, self.run.cancel_reason)
            if code != 0:
                # inferFailedReason: an init container's failure is the pod's message
                return self._end(attempt, FAILED, code, f"{init.name}: Error (exit code {code})")
        running: list[tuple[Process, subprocess.Popen[bytes]]] = []
        side_codes: list[tuple[str, int]] = []
        failure = ""
        try:
            if members:
                for s in sides:
                    with open(_fresh(s.stdout), "wb") as sout, open(s.stderr, "wb") as serr:
                        running.append((s, self._popen(s, sout, serr, daemon)))
                code, timed_out, failure = self._run_set(node, attempt, members, deadline)
            else:
                assert main is not None
                code, timed_out = self._run_main(
                    node, attempt, main, sides, running, probes, deadline, daemon
                )
        except OSError as exc:
            return self._end(attempt, ERROR, None, str(exc))
        finally:
            side_codes = self._stop_sidecars(running, daemon)
        if timed_out:
            return self._timed_out(attempt, code, deadline)
        if daemon is not None:
            if daemon.killed_by_scope(attempt.number):
                return self._end(attempt, SUCCEEDED, code, "")
            if self.run.cancel.is_set():
                return self._end(attempt, FAILED, code, self.run.cancel_reason)
            # operator.go: a daemon's pod that succeeds is marked Failed, as daemons should
            # run until their scope ends.
            text = f"Error (exit code {code})" if code else "daemon exited (exit code 0)"
            return self._end(attempt, FAILED, code, text)
        if self.run.cancel.is_set():
            return self._end(attempt, FAILED, code, self.run.cancel_reason)
        node.outputs = {"exitCode": str(code)}
        if failure:
            return self._end(attempt, FAILED, code, failure)
        if code != 0:
            return self._end(attempt, FAILED, code, f"Error (exit code {code})")
        for name, scode in side_codes:
            # inferFailedReason: a sidecar's own failure fails the pod; 137 and 143 (killed
            # by SIGKILL or SIGTERM, as the executor kills sidecars) are ignored.
            if scode not in (0, 137, 143):
                return self._end(attempt, FAILED, code, f"{name}: Error (exit code {scode})")
        if main is None:
            return self._end(attempt, SUCCEEDED, code, "")
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
            return self._end(attempt, ERROR, code, str(exc))
        if saved:
            node.outputs["artifacts"] = saved
        return self._end(attempt, SUCCEEDED, code, "")

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
                        running.append((s, self._popen(s, sout, serr, daemon)))
                starting = main
                proc = self._popen(main, out, subprocess.PIPE, daemon)
            except OSError as exc:
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
            code, timed_out = self._wait(proc, err, attempt, node, deadline, daemon)
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
                    proc = self._popen(p, out, subprocess.PIPE if main else err, None)
                    code, timed[p.name] = self._wait(
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
            t.start()
        for t in threads:
            t.join()
        order = sorted(members, key=lambda m: m[0].name != "main")
        failure = next(
            (f"{p.name}: Error (exit code {codes[p.name]})" for p, _ in order if codes[p.name]),
            "",
        )
        return codes.get("main", 0), any(timed.values()), failure

    def _timed_out(self, attempt: Attempt, code: int, deadline: float | None) -> Attempt:
        return self._end(
            attempt,
            FAILED,
            code,
            f"Pod was active on the node longer than the specified deadline ({deadline:g}s)",
        )

    def _popen(
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
        try:
            proc = subprocess.Popen(
                p.cmd,
                stdin=stdin,
                stdout=out,
                stderr=err,
                env=p.env,
                cwd=p.cwd,
                start_new_session=True,
            )
        finally:
            if terminal is not None:
                os.close(stdin)
        with self.run.lock:
            self.run.processes[proc.pid] = proc
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

    def _forget(self, proc: subprocess.Popen[bytes], daemon: daemons.Daemon | None) -> None:
        with self.run.lock:
            self.run.processes.pop(proc.pid, None)
            terminal = self.terminals.pop(proc.pid, None)
        if terminal is not None:
            os.close(terminal)
        if daemon is not None:
            daemon.disown(proc)

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
            self._forget(proc, daemon)
            codes.append((s.name, code if code >= 0 else 128 - code))
        return codes

    def secret(self, name: str, key: str) -> str | None:
        """A secret an artifact location names, found as env secrets are (and redacted)."""
        value, _ = self.run.podenv.secret(name, key, "")
        if value is not None:
            self.run.podenv.add_secret(value, f"secret {name}/{key}")
        return value

    def _end(self, attempt: Attempt, phase: str, code: int | None, message: str) -> Attempt:
        attempt.phase = phase
        attempt.exit_code = code
        attempt.message = message
        attempt.finished = time.time()
        return attempt

    def _wait(
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
            reader.start()
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
            self._forget(proc, daemon)
        if reader is not None:
            reader.join(timeout=5)
        return code, timed_out

    def _read_stderr(
        self, proc: subprocess.Popen[bytes], err_file: Any, attempt: Attempt, node: Node
    ) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if attempt.first_log is None:
                attempt.first_log = time.time()
            err_file.write(line)
            err_file.flush()
            if self.run.options.verbose:
                sys.stderr.write(f"  {node.display} | {line.decode(errors='replace')}")
            if line.startswith(b"{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    attempt.events.append(event)
                    if event.get("rows") is not None:
                        self.run.progress("event", node)


def _fresh(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return

    def hard() -> None:
        time.sleep(2)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    threading.Thread(target=hard, daemon=True).start()


def _seconds(value: Any) -> float:
    """An Argo duration: a number of seconds or a Go duration string (``10s``, ``2m``, ``1h30m``)."""
    try:
        return seconds(value)
    except ValueError:
        raise ParamError(f"bad duration {value!r}") from None


def _should_retry(policy: str, expression: Any, attempt: Attempt, where: str) -> bool:
    if policy == "OnFailure" and attempt.phase != FAILED:
        return False
    if policy in ("OnError", "OnTransientError") and attempt.phase != ERROR:
        return False
    if expression:
        names = {
            "retries": str(attempt.number),
            "lastRetry.exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
            "lastRetry.status": attempt.phase,
            # whole seconds: Argo's node timestamps have a one-second resolution
            "lastRetry.duration": str(int((attempt.finished or time.time()) - attempt.started)),
            "lastRetry.message": attempt.message,
        }
        try:
            return exprlang.condition(str(expression), exprlang.environment(names))
        except expr.ExprError as exc:
            raise SpecError(f"{where}: retryStrategy.expression: {exc}") from None
    return True
