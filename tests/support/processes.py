"""Processes a test starts itself: ended and reaped by their own pid."""

from __future__ import annotations

import os
import signal
import subprocess


def stop(process: subprocess.Popen) -> None:
    """End a process this test started (SIGKILL: no clean-up code runs), reap it and close
    its stdout."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()
