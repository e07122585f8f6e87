"""The demo cache's lock: two ``btd demo`` runs at once never build into the same folder.

The lock helper is tested with real processes (the demo's own build takes minutes):
a holder process takes the lock and keeps it for a while; the test process (or a second
worker) must wait, say so, and get the lock only once the holder has let go.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from btd_core.cli import demo_build
from btd_core.cli.demo_build import DemoLockTimeout, demo_lock, waiting_message
from tests.support.processes import stop

REPO = Path(__file__).resolve().parents[1]

_WORKER = """
import sys, time
from pathlib import Path
from btd_core.cli.demo_build import demo_lock

folder, log, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
name = sys.argv[4]

def waiting(message):
    with log.open("a") as handle:
        handle.write(f"{name} waits: {message}\\n")

with demo_lock(folder, timeout_s=60, on_wait=waiting, poll_s=0.05):
    with log.open("a") as handle:
        handle.write(f"{name} start\\n")
    print("locked", flush=True)
    time.sleep(hold)
    with log.open("a") as handle:
        handle.write(f"{name} end\\n")
"""


def _start_worker(folder: Path, log: Path, hold_s: float, name: str) -> subprocess.Popen:
    """A process that takes the demo lock of ``folder`` and holds it for ``hold_s`` seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(folder), str(log), str(hold_s), name],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _start_holder(folder: Path, log: Path, hold_s: float) -> subprocess.Popen:
    """A worker that already holds the lock when this returns."""
    holder = _start_worker(folder, log, hold_s, "holder")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_process_waits_says_so_then_gets_the_lock(tmp_path: Path):
    folder, log = tmp_path / "demo", tmp_path / "log.txt"
    holder = _start_holder(folder, log, hold_s=1.5)
    try:
        messages: list[str] = []
        started = time.monotonic()
        with demo_lock(folder, timeout_s=30, on_wait=messages.append, poll_s=0.05):
            waited = time.monotonic() - started
            assert holder.wait(timeout=10) == 0  # it let go: it has finished
            assert log.read_text().splitlines()[-1] == "holder end"
    finally:
        stop(holder)
    assert messages == [waiting_message(folder)]
    assert messages[0] == (f"another btd demo is building the demo files in {folder}; waiting ...")
    assert waited > 0.5


def test_two_processes_never_hold_the_lock_together(tmp_path: Path):
    folder, log = tmp_path / "demo", tmp_path / "log.txt"
    workers = [_start_worker(folder, log, 0.6, name) for name in ("a", "b")]
    try:
        for worker in workers:
            assert worker.wait(timeout=60) == 0
    finally:
        for worker in workers:
            stop(worker)
    events = [line for line in log.read_text().splitlines() if " waits: " not in line]
    waits = [line for line in log.read_text().splitlines() if " waits: " in line]
    assert len(events) == 4
    first = events[0].split()[0]
    second = "b" if first == "a" else "a"
    assert events == [f"{first} start", f"{first} end", f"{second} start", f"{second} end"]
    assert waits == [f"{second} waits: {waiting_message(folder)}"]


def test_the_wait_gives_up_after_the_timeout(tmp_path: Path):
    folder, log = tmp_path / "demo", tmp_path / "log.txt"
    holder = _start_holder(folder, log, hold_s=60)
    try:
        started = time.monotonic()
        with (
            pytest.raises(DemoLockTimeout, match="gave up waiting") as caught,
            demo_lock(folder, timeout_s=0.4, poll_s=0.05),
        ):
            pytest.fail("the lock was taken while another process held it")
        assert 0.3 < time.monotonic() - started < 10
        assert str(folder) in str(caught.value)
    finally:
        stop(holder)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path):
    folder, log = tmp_path / "demo", tmp_path / "log.txt"
    holder = _start_holder(folder, log, hold_s=60)
    stop(holder)  # SIGKILL: no clean-up code runs; the kernel drops the flock
    messages: list[str] = []
    with demo_lock(folder, timeout_s=5, on_wait=messages.append):
        pass
    assert messages == []
    assert (folder / demo_build.LOCK_NAME).exists()


def _fake_built_demo(cache: Path) -> None:
    """Empty stand-ins for every file a built demo has (no training here)."""
    root = cache / "demo"
    files = demo_build._demo_files(root)
    for path in (files.model, files.model.with_name(files.model.name + ".calibration.json")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    for truth in files.truth:
        truth.write_text("file,method,kind,x,y\n")


def test_ensure_demo_waits_for_a_build_in_progress_then_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BTD_CACHE", str(cache))
    _fake_built_demo(cache)
    log = tmp_path / "log.txt"
    holder = _start_holder(cache / "demo", log, hold_s=1.0)
    try:
        messages: list[str] = []
        files = demo_build.ensure_demo(on_wait=messages.append, lock_timeout_s=30)
        # it only returned once the builder had finished
        assert log.read_text().splitlines()[-1] == "holder end"
    finally:
        stop(holder)
    assert messages == [waiting_message(cache / "demo")]
    assert files.model == cache / "demo" / "demo_ct.onnx"


def test_btd_demo_exits_2_when_the_wait_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from btd_core.cli.demo import run

    cache = tmp_path / "cache"
    monkeypatch.setenv("BTD_CACHE", str(cache))
    short = functools.partial(demo_build.ensure_demo, lock_timeout_s=0.3)
    monkeypatch.setattr(demo_build, "ensure_demo", short)
    holder = _start_holder(cache / "demo", tmp_path / "log.txt", hold_s=60)
    out = io.StringIO()
    try:
        args = argparse.Namespace(fresh=False, headless=True, out=tmp_path / "r", provider="cpu")
        status = run(args, Console(file=out, width=300))
    finally:
        stop(holder)
    printed = out.getvalue()
    assert status == 2
    assert waiting_message(cache / "demo") in printed
    assert "gave up waiting" in printed
    assert not (tmp_path / "r").exists()
