"""The pod runtime: one local process per attempt, in its own session so a deadline or a
stopped run kills its whole process group; retries with backoff and ``retryStrategy``;
stderr read live for progress events; the exit code and outputs turned into a phase."""

from __future__ import annotations

import json
import os
import re
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

from workers.runner import dataflow, expr, params, sandbox
from workers.runner.nodes import (
    ERROR,
    FAILED,
    SUCCEEDED,
    Attempt,
    Cancelled,
    Node,
    node_id_of,
)
from workers.runner.params import ParamError
from workers.runner.podenv import PACKAGE_ROOT, remap_container
from workers.runner.spec import Document, SpecError

if TYPE_CHECKING:
    from workers.runner.engine import Run


class PodRuntime:
    """Starts, waits for and retries the pods of one :class:`~workers.runner.engine.Run`."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def run_pod(
        self, node: Node, doc: Document, tmpl: dict[str, Any], scope: dict[str, str], where: str
    ) -> None:
        # `retryStrategy: {}` is a strategy (an empty one), not none
        retried = tmpl.get("retryStrategy") is not None
        rs = tmpl.get("retryStrategy") or {}
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
                if self.run.cancel.wait(delay):
                    raise Cancelled()
            attempt = self.run_attempt(node, doc, tmpl, scope, where, n)
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
        if self.run.resumed and tmp_dir.exists():
            # The earlier run's attempt of this name left its /tmp (output files included):
            # a new pod starts with an empty one.
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        kind = "script" if "script" in tmpl else "container"
        try:
            c = params.substitute(dict(tmpl[kind]), ascope, f"{where}.{kind}")
            outputs = params.substitute(dict(tmpl.get("outputs") or {}), ascope, f"{where}.outputs")
            deadline_raw = tmpl.get("activeDeadlineSeconds")
            deadline = (
                float(params.substitute(str(deadline_raw), ascope, where)) if deadline_raw else None
            )
            mounts = self.run.podenv.mounts(tmpl, c, pod_dir, tmp_dir, where)
            workdir = str(self.run.work_dir)
            if c.get("workingDir"):
                wd = str(c["workingDir"])
                if any(wd == m.target or wd.startswith(m.target.rstrip("/") + "/") for m in mounts):
                    workdir = wd
                else:
                    self.run.warn(
                        f"{where}: workingDir {wd} is in the image; the run's work folder is used"
                    )
            if self.run.mode == "remap":
                # Only the template's own strings: the runner's paths (sys.executable,
                # PYTHONPATH) are host paths already, and may lie under a mount target.
                c = remap_container(c, mounts)
            # A retried step is a Retry node; its pods are the attempt nodes run.json lists.
            pod_node_id = (
                node_id_of(self.run.name, f"{node.name}({number})") if node.retry else node.id
            )
            env = self.run.podenv.environment(
                c, where, pod_name=pod_name, node=node, node_id=pod_node_id
            )
            argv = self.run.podenv.argv(c, kind, pod_dir, where)
        except (ParamError, SpecError) as exc:
            return self._end(attempt, ERROR, None, str(exc))
        attempt.mounts = [(m.target, str(m.host)) for m in mounts]
        if self.run.mode == "bwrap":
            keep = [
                (self.run.work_dir, True),
                (pod_dir, False),
                (PACKAGE_ROOT, False),
                (Path(sys.prefix), False),
                (Path(sys.base_prefix), False),
                *((p, False) for p in self.run.import_paths if p.exists()),
            ]
            if any(m.target == str(self.run.code) for m in mounts):
                self.run.warn_once(
                    f"code folder {self.run.code} is where pods mount a volume, so its files are "
                    "hidden in them: run from (or pass --code) the project's own folder"
                )
            cmd = sandbox.bwrap_command(argv, mounts, keep, workdir)
            cwd = None
        else:
            cmd = argv
            env["TMPDIR"] = str(tmp_dir)
            # the run's work folder is a host path already; a container workingDir is not
            cwd = (
                str(sandbox.host_path(workdir, mounts))
                if workdir != str(self.run.work_dir)
                else workdir
            )
        attempt.stdout = str(pod_dir / "stdout.log")
        attempt.stderr = str(pod_dir / "stderr.log")
        self.run.progress("start", node)
        try:
            with open(attempt.stdout, "wb") as out, open(attempt.stderr, "wb") as err:
                try:
                    ctx = self.run.wf_limit or nullcontext()
                    with ctx:
                        self.run.check_cancel()
                        attempt.started = time.time()
                        proc = subprocess.Popen(
                            cmd,
                            stdout=out,
                            stderr=subprocess.PIPE,
                            env=env,
                            cwd=cwd,
                            start_new_session=True,
                        )
                        self.run.progress("running", node)
                        code, timed_out = self._wait(proc, err, attempt, node, deadline)
                except OSError as exc:
                    return self._end(attempt, ERROR, None, f"cannot start {argv[0]}: {exc}")
        except Cancelled:
            return self._end(attempt, FAILED, None, self.run.cancel_reason or "cancelled")
        if timed_out:
            return self._end(
                attempt,
                FAILED,
                code,
                f"Pod was active on the node longer than the specified deadline ({deadline:g}s)",
            )
        if self.run.cancel.is_set():
            return self._end(attempt, FAILED, code, self.run.cancel_reason)
        node.outputs = {"exitCode": str(code)}
        if code != 0:
            return self._end(attempt, FAILED, code, f"Error (exit code {code})")
        try:
            node.outputs.update(
                dataflow.pod_outputs(attempt, outputs, mounts, where, self.run.warn)
            )
        except ParamError as exc:
            return self._end(attempt, ERROR, code, str(exc))
        return self._end(attempt, SUCCEEDED, code, "")

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
    ) -> tuple[int, bool]:
        with self.run.lock:
            self.run.processes[proc.pid] = proc
            cancelled = self.run.cancel.is_set()
        reader = threading.Thread(
            target=self._read_stderr, args=(proc, err_file, attempt, node), daemon=True
        )
        reader.start()
        timed_out = False
        try:
            # Block until the exit (or the deadline), never poll: a poll interval is latency
            # every pod pays. stop() kills registered processes itself; one registered after
            # its sweep sees the flag here.
            if cancelled:
                kill(proc)
            left = None if deadline is None else deadline - (time.time() - attempt.started)
            try:
                code = proc.wait(timeout=None if left is None else max(left, 0.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                kill(proc)
                code = proc.wait()
        finally:
            with self.run.lock:
                self.run.processes.pop(proc.pid, None)
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
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ParamError(f"bad duration {value!r}")
    for number, unit in parts:
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def _should_retry(policy: str, expression: Any, attempt: Attempt, where: str) -> bool:
    if policy == "OnFailure" and attempt.phase != FAILED:
        return False
    if policy in ("OnError", "OnTransientError") and attempt.phase != ERROR:
        return False
    if expression:
        names = {
            "lastRetry.exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
            "lastRetry.status": attempt.phase,
            "lastRetry.duration": str(int((attempt.finished or time.time()) - attempt.started)),
            "lastRetry.message": attempt.message,
        }
        try:
            return expr.condition(str(expression), names)
        except expr.ExprError as exc:
            raise SpecError(f"{where}: retryStrategy.expression: {exc}") from None
    return True
