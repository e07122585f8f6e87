"""The one lock helper (btd_core/file_lock.py): a second holder is refused at once, or
waits until the first lets go; tested across real processes (flock is per open file)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from btd_core.errors import BtdError
from btd_core.file_lock import LockBusy, hold_lock
from tests.support.processes import stop

REPO = Path(__file__).resolve().parents[1]

_HOLDER = """
import sys, time
from pathlib import Path
from btd_core.file_lock import hold_lock

lock = hold_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
print("releasing", flush=True)
lock.release()
time.sleep(float(sys.argv[2]))
"""


def _start_holder(path: Path, hold_s: float) -> subprocess.Popen:
    """A process that holds the lock of ``path`` when this returns, for ``hold_s`` seconds."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_holder_is_refused_at_once(tmp_path: Path):
    path = tmp_path / ".lock"
    holder = _start_holder(path, hold_s=60)
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy, match="another process holds the lock") as caught:
            hold_lock(path)
        assert time.monotonic() - started < 1.0
        assert isinstance(caught.value, BtdError)
    finally:
        stop(holder)
    with hold_lock(path) as lock:  # the holder was killed: the kernel let go
        assert lock.path == path


def test_a_waiting_holder_gets_the_lock_once_the_first_lets_go(tmp_path: Path):
    path = tmp_path / ".lock"
    holder = _start_holder(path, hold_s=1.0)
    waits: list[float] = []
    try:
        started = time.monotonic()
        with hold_lock(path, wait_s=30, on_wait=lambda: waits.append(1.0), poll_s=0.05):
            waited = time.monotonic() - started
            assert holder.stdout is not None  # it said it lets go before we got the lock:
            assert select.select([holder.stdout], [], [], 0)[0]  # no two holders at once
            assert holder.stdout.readline().strip() == "releasing"
    finally:
        stop(holder)
    assert waits == [1.0]  # said once, before waiting
    assert waited > 0.5


def test_a_wait_gives_up_after_wait_s(tmp_path: Path):
    path = tmp_path / ".lock"
    holder = _start_holder(path, hold_s=60)
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy):
            hold_lock(path, wait_s=0.3, poll_s=0.05)
        assert 0.25 < time.monotonic() - started < 10
    finally:
        stop(holder)


def test_release_lets_another_open_file_take_it_and_is_idempotent(tmp_path: Path):
    path = tmp_path / ".lock"
    first = hold_lock(path)
    with pytest.raises(LockBusy):  # flock: a second open file of this process is refused too
        hold_lock(path)
    first.release()
    first.release()
    with hold_lock(path):
        pass
    assert path.exists()  # the file stays; only the lock goes
