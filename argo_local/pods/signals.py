"""Ending a pod's processes: SIGTERM to its process group, SIGKILL two seconds later, as the
kubelet does after a (short) grace period. Its own module: processes and daemons both end
processes, and the engine ends the run's stragglers."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import suppress


def kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return

    def hard() -> None:
        time.sleep(2)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    try:
        threading.Thread(target=hard, daemon=True).start()
    except RuntimeError:
        # no thread to wait the grace period on (the task limit): no grace, as the kubelet
        # gives none to a pod it must remove at once
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
