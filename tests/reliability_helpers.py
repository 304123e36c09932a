"""Fault injection for the reliability suite: a TCP proxy that cuts or stalls connections, a
SIGKILL harness for shard attempts, and views of a store that do not go through the library.

Everything runs real processes against real servers on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

TESTS = Path(__file__).parent
HOOKS = TESTS / "hooks"
STEP_PYTHONPATH = f"{TESTS}{os.pathsep}{HOOKS}"
"""tests/ for ``plugins.userfuncs``, tests/hooks for the phase/breakage hooks (sitecustomize)."""


# ------------------------------------------------------------------------------ TCP proxy


class TcpProxy:
    """A loopback TCP proxy in front of ``target`` that can misbehave on command.

    ``mode``: ``pass`` forwards everything; ``reset`` sends RST (SO_LINGER 0) to both sides
    once ``after_bytes`` have crossed in ``direction`` (``down``: server to client, ``up``:
    client to server, counted per connection after its first ``skip_connections``);
    ``stall`` stops forwarding at that point and keeps both sockets open, like a peer that
    vanished without a FIN. ``blackhole`` listens but never accepts: connects complete in the
    kernel backlog and then nothing is ever said. ``dead_after_trip`` makes every later
    connection reset at once (a server that went away).
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        mode: str = "pass",
        after_bytes: int = 0,
        direction: str = "down",
        dead_after_trip: bool = False,
    ) -> None:
        self.target = target
        self.mode = mode
        self.after_bytes = after_bytes
        self.direction = direction
        self.dead_after_trip = dead_after_trip
        self.tripped = threading.Event()
        self.connections = 0
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64 if mode != "blackhole" else 1)
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        if mode != "blackhole":
            self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.listener], [], [], 0.1)
                if not r:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.dead_after_trip and self.tripped.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        counted = 0
        stalled = False
        try:
            while not self._stop.is_set():
                if stalled:
                    time.sleep(0.1)
                    continue
                r, _, _ = select.select([client, upstream], [], [], 0.1)
                for src in r:
                    data = src.recv(65536)
                    if not data:
                        return
                    dst = upstream if src is client else client
                    way = "up" if src is client else "down"
                    if self.mode in ("reset", "stall") and way == self.direction:
                        counted += len(data)
                        if counted > self.after_bytes:
                            self.tripped.set()
                            if self.mode == "reset":
                                _reset(client)
                                _reset(upstream)
                                return
                            stalled = True  # hold both sockets open, forward nothing
                            break
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            if not stalled:
                for s in (client, upstream):
                    with contextlib.suppress(OSError):
                        s.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def pg_url_via(url: str, address: str, password: str | None = None) -> str:
    """The same database URL, routed through ``address`` (host:port), optionally with a password."""
    scheme, rest = url.split("://", 1)
    userinfo, _, hostpath = rest.rpartition("@")
    _host, _, path = hostpath.partition("/")
    user = userinfo.split(":", 1)[0] or "postgres"
    creds = f"{user}:{password}" if password else user
    return f"{scheme}://{creds}@{address}/{path}"


# --------------------------------------------------------------------------- store views


def fresh_fs(url: str) -> tuple[Any, str]:
    """fsspec filesystem and path for ``url``, with no stale listing cached in this process."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return fs, path


def exists(store: str, rel: str) -> bool:
    fs, path = fresh_fs(f"{store.rstrip('/')}/{rel}")
    return bool(fs.exists(path))


def read(store: str, rel: str) -> bytes:
    fs, path = fresh_fs(f"{store.rstrip('/')}/{rel}")
    return bytes(fs.cat_file(path))


def remove(store: str, rel: str) -> None:
    fs, path = fresh_fs(f"{store.rstrip('/')}/{rel}")
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def store_files(url: str) -> dict[str, bytes]:
    """Every object/file under a store URL, relative name -> bytes (hidden temps included)."""
    fs, root = fresh_fs(url)
    root = root.rstrip("/")
    out: dict[str, bytes] = {}
    if not fs.exists(root):
        return out
    for path in fs.find(root, withdirs=False):
        rel = path[len(root) :].lstrip("/")
        out[rel] = fs.cat_file(path)
    if url.startswith(("/", "file://")) or "://" not in url:
        # fsspec's local find skips nothing, but make sure hidden temps are seen
        base = Path(url.removeprefix("file://"))
        for p in base.rglob(".*"):
            if p.is_file():
                out.setdefault(str(p.relative_to(base)), p.read_bytes())
    return out


FINAL_NAME = re.compile(
    r"^(plan\.json|merged\.jsonl?|summary\.json|parts/part-\d{5}\.jsonl|commits/part-\d{5}\.json)$"
)
LOCAL_TEMP = re.compile(
    r"^(parts|commits)/\.\.?part-\d{5}\.jsonl?(\.checkpoint)?\.tmp-([0-9]+-[0-9a-f]+|resume)$"
)
"""Hidden temp files: an atomic writer's (``.tmp-PID-RANDOM``, also of a checkpoint record) and
a checkpointed part's resumable one (``.tmp-resume``)."""
CHECKPOINT = re.compile(r"^parts/\.part-(\d{5})\.jsonl\.checkpoint$")


def multipart_uploads(store: Any) -> list[dict[str, Any]]:
    """In-progress S3 multipart uploads of a store's bucket (what an orphaned upload leaves)."""
    import s3fs

    fs = s3fs.S3FileSystem(**store.storage_options, skip_instance_cache=True)
    res = fs.call_s3("list_multipart_uploads", Bucket=store.bucket)
    return list(res.get("Uploads", []))


# --------------------------------------------------------------------------- kill harness


@dataclass
class Attempt:
    """One shard attempt: killed ``delay`` s after it announces phase ``after`` (``read``: its
    start line), or left to finish. Aiming from the phase's own announcement keeps a kill in
    the phase it was meant for however the machine's load stretches the phases before it."""

    index: int
    delay: float
    after: str = "read"
    killed: bool = False
    phase: str = "not-started"
    returncode: int | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    """Seconds from the start line to each phase line (and ``exit``)."""

    def windows(self) -> list[tuple[str, float, float]]:
        """(phase, from, to) intervals of a finished attempt: where a kill can be aimed."""
        marks = sorted(self.times.items(), key=lambda kv: kv[1])
        return [(a, t, u) for (a, t), (_b, u) in itertools.pairwise(marks)]


def run_attempt(
    cmd: list[str], env: Mapping[str, str], cwd: Path, attempt: Attempt, timeout: float = 60
) -> Attempt:
    """Start a shard process; SIGKILL it ``attempt.delay`` s after it announces
    ``attempt.after`` (or let it finish when it exits first)."""
    proc = subprocess.Popen(
        cmd,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = threading.Event()
    aimed = threading.Event()  # the phase the delay counts from was announced (or never will be)
    t0 = [time.monotonic()]

    def reader() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                attempt.lines.append(line)
                if line.get("event") == "start":
                    attempt.phase = "read"
                    t0[0] = time.monotonic()
                    attempt.times["read"] = 0.0
                    started.set()
                elif line.get("event") == "phase":
                    attempt.phase = str(line["phase"])
                    attempt.times[attempt.phase] = time.monotonic() - t0[0]
                elif line.get("event") in ("committed", "failed"):
                    attempt.phase = str(line["event"])
                if attempt.phase == attempt.after:
                    aimed.set()
        started.set()
        aimed.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    started.wait(timeout)
    aimed.wait(timeout)
    deadline = time.monotonic() + attempt.delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        attempt.killed = True
    attempt.returncode = proc.wait(timeout)
    attempt.times["exit"] = time.monotonic() - t0[0]
    t.join(5)
    if attempt.killed and attempt.returncode != -signal.SIGKILL:
        attempt.killed = False  # it exited on its own a moment before the signal
    return attempt


def shard_cmd(item: Mapping[str, Any], run_id: str, store: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workers.shard",
        "--shard",
        json.dumps(dict(item)),
        "--run-id",
        run_id,
        "--store",
        store,
        *extra,
    ]


def kill_at(cmd: list[str], env: dict[str, str], cwd: Path, phase: str) -> list[dict[str, Any]]:
    """Run a step with ``WORKERS_TEST_HOLD=phase`` and SIGKILL it once it announces ``phase``
    (it waits there): the kill lands at that point of the protocol whatever the load."""
    proc = subprocess.Popen(
        cmd,
        env={**env, "WORKERS_TEST_HOLD": phase},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        for raw in proc.stderr:
            lines.append(json.loads(raw))
            if lines[-1].get("event") == "phase" and lines[-1].get("phase") == phase:
                proc.kill()
                break
        else:
            raise AssertionError(f"the step exited {proc.wait()} before {phase}: {lines}")
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return lines


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    t0 = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - t0)
