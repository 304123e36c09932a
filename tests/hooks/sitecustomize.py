"""Test-only hooks for step subprocesses, active only when PYTHONPATH includes this folder.

``WORKERS_TEST_PAUSE=SECONDS`` widens the windows of the commit protocol so that a kill can
land in each of them: every ``AtomicWriter.commit`` sleeps before it publishes (the data is
complete but not visible) and after (the part is visible, its commit record not yet). Each
phase is announced as a JSON log line on stderr (``{"event": "phase", "phase": ...}``), so the
fault-injection tests can tell where a SIGKILL struck.

``WORKERS_TEST_HOLD=mid-write-part`` (or ``mid-write-record``): the first write into a part
(or commit record) writes half of its bytes, flushes them, announces the phase ``mid-write-part``
(``mid-write-record``) and then waits to be killed. A test kills exactly there, whatever the
machine's load: no timing decides where the kill lands.

``WORKERS_TEST_HOLD=checkpoint-K``: once the shard's K-th checkpoint record is published
(chunk K is durable and vouched for), announce the phase ``checkpoint-K`` and wait to be
killed. The checkpoint record's own publish is announced as ``before-publish-checkpoint`` and
``after-publish-checkpoint`` (with ``WORKERS_TEST_PAUSE``, kills land on both sides of it).

``WORKERS_TEST_BREAK=direct-write`` deliberately breaks the protocol (local stores only): the
writer streams straight into the final name. The reliability suite must then fail; it is used
by the test that proves the suite has teeth, never by production code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time


def _phase(name: str) -> None:
    sys.stderr.write(f'{{"level":"debug","event":"phase","phase":"{name}"}}\n')
    sys.stderr.flush()


def _install() -> None:
    pause = float(os.environ.get("WORKERS_TEST_PAUSE") or 0)
    breakage = os.environ.get("WORKERS_TEST_BREAK", "")
    hold = os.environ.get("WORKERS_TEST_HOLD", "")
    if not pause and not breakage and not hold:
        return
    from workers import storage

    original_commit = storage.AtomicWriter.commit
    original_init = storage.AtomicWriter.__init__

    def what(url: str) -> str:
        if url.endswith(".checkpoint"):
            return "checkpoint"
        return "record" if "/commits/" in url else "part" if "/parts/" in url else "other"

    checkpoints_published = [0]

    def commit(self: storage.AtomicWriter) -> None:
        kind = what(self.url)
        _phase(f"before-publish-{kind}")
        if pause:
            time.sleep(pause)
        original_commit(self)
        _phase(f"after-publish-{kind}")
        if pause:
            time.sleep(pause)
        if kind == "checkpoint":
            checkpoints_published[0] += 1
            if hold == f"checkpoint-{checkpoints_published[0]}":
                _phase(hold)
                time.sleep(3600)  # until the test's SIGKILL

    storage.AtomicWriter.commit = commit  # type: ignore[method-assign]

    if hold:
        original_write = storage.AtomicWriter.write

        def write(self: storage.AtomicWriter, data: bytes | bytearray | memoryview) -> None:
            phase = f"mid-write-{what(self.url)}"
            if phase != hold or getattr(self, "_held", False) or len(data) < 2:
                original_write(self, data)
                return
            self._held = True  # type: ignore[attr-defined]
            half = len(data) // 2
            original_write(self, data[:half])
            self._file.flush()
            _phase(phase)
            time.sleep(3600)  # until the test's SIGKILL
            original_write(self, data[half:])

        storage.AtomicWriter.write = write  # type: ignore[method-assign]

    from workers import checkpoints, checkpoints_gcs, checkpoints_s3

    # The checkpointed part writers publish without AtomicWriter: the same phases, holds and
    # breakage for them.
    for cls in (checkpoints._Local, checkpoints_s3.S3Part, checkpoints_gcs.GCSPart):

        def part_commit(self: checkpoints.PartWriter, _orig=cls.commit) -> None:  # type: ignore[no-untyped-def]
            _phase("before-publish-part")
            if pause:
                time.sleep(pause)
            _orig(self)
            _phase("after-publish-part")
            if pause:
                time.sleep(pause)

        cls.commit = part_commit  # type: ignore[method-assign]

        if hold == "mid-write-part":

            def sink(self: checkpoints.PartWriter, data: bytes, _orig=cls._sink) -> None:  # type: ignore[no-untyped-def]
                if getattr(self, "_held", False) or len(data) < 2:
                    _orig(self, data)
                    return
                self._held = True  # type: ignore[attr-defined]
                half = len(data) // 2
                _orig(self, data[:half])
                with contextlib.suppress(AttributeError):
                    self._file.flush()  # type: ignore[attr-defined]
                _phase(hold)
                time.sleep(3600)  # until the test's SIGKILL
                _orig(self, data[half:])

            cls._sink = sink  # type: ignore[method-assign]

    if breakage == "direct-write":
        original_local_init = checkpoints._Local.__init__

        def local_init(self: checkpoints._Local, *args, **kw) -> None:  # type: ignore[no-untyped-def]
            original_local_init(self, *args, **kw)
            # Broken on purpose: write into the final name, so a kill leaves a torn file.
            self._file.close()
            os.unlink(self._tmp)
            self._tmp = self._path
            self._file = open(self._path, "w+b")  # noqa: SIM115

        checkpoints._Local.__init__ = local_init  # type: ignore[method-assign]

        def init(self: storage.AtomicWriter, url: str) -> None:
            original_init(self, url)
            if self._local:
                # Broken on purpose: write into the final name, so a kill leaves a torn file.
                self._file.close()
                os.unlink(self._tmp)
                self._tmp = self._path
                self._file = open(self._path, "wb")  # noqa: SIM115

        storage.AtomicWriter.__init__ = init  # type: ignore[method-assign]


with contextlib.suppress(ImportError):  # not a workers process
    _install()


def _install_generation_pause() -> None:
    """``WORKERS_TEST_PAUSE_AFTER_GENERATION=SECONDS``: after a step reads the run's generation,
    announce phase ``generation-read`` and sleep, so a test can commit a new produce between
    that read and the rows (the snapshot must keep both from the same generation)."""
    pause = float(os.environ.get("WORKERS_TEST_PAUSE_AFTER_GENERATION") or 0)
    if not pause:
        return
    from workers import db

    for cls in (db.PostgresDatabase, db.SqliteDatabase, db.SqlAlchemyDatabase):
        original = cls.read_generation

        def read_generation(self, source, run_id, _original=original):  # type: ignore[no-untyped-def]
            result = _original(self, source, run_id)
            _phase("generation-read")
            time.sleep(pause)
            return result

        cls.read_generation = read_generation  # type: ignore[method-assign]


with contextlib.suppress(ImportError):  # not a workers process
    _install_generation_pause()
