"""The embedded executor: worker processes on this machine, no server to start.

Each worker is a process (``spawn``: a fresh interpreter, no threads inherited) that
opens one scorer (onnxruntime session) and scans unit after unit, talking to the driver
through its own pipe.  By default there is one worker per GPU when onnxruntime's CUDA
provider is there and ``nvidia-smi`` lists GPUs (each worker sees only its GPU through
``CUDA_VISIBLE_DEVICES``), else one per CPU core with one onnxruntime thread each.

A worker that dies (killed, out of memory, a native crash) is noticed through its process
sentinel: exactly the unit it held is reported ``lost`` and a new worker takes its place.
Ctrl-C reaches the workers too (same process group; the driver also forwards SIGINT to
busy workers): they stop their unit at its next slice and answer ``cancelled``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

from btd_core.archive.executor import Event, ExecutorError
from btd_core.archive.unit_scan import UnitOutcome, UnitTask, WorkerConfig

PROGRESS_EVERY_S = 0.5
"""A worker reports its unit's slices at most this often (seconds)."""
START_TIMEOUT_S = 600.0
"""Seconds a new worker may take to open its model."""


def visible_gpus(provider: str) -> list[str]:
    """The GPUs this machine's workers can use: none for ``provider == "cpu"`` or without
    onnxruntime's CUDA provider; else ``CUDA_VISIBLE_DEVICES``' entries, or the indices
    ``nvidia-smi -L`` lists."""
    if provider == "cpu":
        return []
    try:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return []
    except ImportError:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        lines = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in lines if ln.startswith("GPU "))]


def _progress_sender(conn: Connection, key: str) -> Callable[[int, int], None]:
    """A unit's progress hook: ``(done, total)`` to the driver, at most every
    :data:`PROGRESS_EVERY_S` seconds (and the last one)."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = now
            conn.send(("progress", key, done, total))

    return progress


def _worker_main(conn: Connection, config: WorkerConfig, gpu: str | None) -> None:
    """A worker process: open the scorer, then scan each unit the driver sends."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda number, frame: stop.set())
    from btd_core.archive.unit_scan import UnitScanner, worker_name

    try:
        scanner = UnitScanner(config)
    except BaseException as exc:  # the model cannot be opened here: the run cannot go on
        conn.send(("error", worker_name(), f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", scanner.name, scanner.scorer.provider_in_use))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if message[0] != "scan":
            return
        task: UnitTask = message[1]
        stop.clear()
        outcome = scanner.scan(task, stop.is_set, _progress_sender(conn, task.key))
        try:
            conn.send(("done", outcome))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    gpu: str | None
    name: str = ""
    ready: bool = False
    key: str | None = None


class LocalExecutor:
    """Worker processes on this machine (see the module's notes).

    ``jobs``: workers (``None``: one per GPU, else one per CPU core); ``config``'s engine
    threads default to the cores shared out among the workers.
    """

    def __init__(self, config: WorkerConfig, jobs: int | None = None) -> None:
        self.gpus = visible_gpus(config.scan.provider)
        cores = os.cpu_count() or 1
        self.jobs = jobs or (len(self.gpus) if self.gpus else cores)
        engine = config.scan.engine
        if engine.threads is None and not self.gpus:
            engine = replace(engine, threads=max(1, cores // self.jobs))
        settings = config.scan.settings
        if settings.workers is None:
            settings = replace(settings, workers=max(1, min(2, cores // self.jobs)))
        self.config = config.with_scan(engine=engine, settings=settings)
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._slot = 0
        where = f"{len(self.gpus)} GPU(s)" if self.gpus else f"{cores} CPU core(s)"
        self.description = f"embedded: {self.jobs} worker process(es) on this machine, {where}"
        self.providers: set[str] = set()

    def _spawn(self, gpu: str | None) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child, self.config, gpu), daemon=True, name="btd-worker"
        )
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpu is not None:  # the new interpreter sees only its GPU from its first line on
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        try:
            process.start()
        finally:
            if gpu is not None:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child.close()
        return _Worker(process, parent, gpu)

    def _await_ready(self, worker: _Worker) -> None:
        if not worker.conn.poll(START_TIMEOUT_S):
            raise ExecutorError("a worker did not open the model in time")
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            code = worker.process.exitcode
            raise ExecutorError(f"a worker process ended while starting (exit {code})") from None
        if message[0] == "error":
            raise ExecutorError(f"a worker cannot open the model: {message[2]}")
        worker.name, worker.ready = message[1], True
        self.providers.add(message[2])

    def start(self) -> None:
        """Start every worker and wait until each has opened its model."""
        for index in range(self.jobs):
            gpu = self.gpus[index % len(self.gpus)] if self.gpus else None
            self._workers.append(self._spawn(gpu))
        try:
            for worker in self._workers:
                self._await_ready(worker)
        except BaseException:
            self.close()
            raise

    def idle(self) -> int:
        """Workers ready and without a unit."""
        return sum(1 for w in self._workers if w.ready and w.key is None)

    def busy(self) -> int:
        """Units in flight."""
        return sum(1 for w in self._workers if w.key is not None)

    def submit(self, task: UnitTask) -> Event:
        """Send ``task`` to the next idle worker."""
        worker = next(w for w in self._workers if w.ready and w.key is None)
        worker.key = task.key
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead worker: seen by poll()
            worker.conn.send(("scan", task))
        return Event("started", task.key, worker=worker.name)

    def poll(self, timeout: float) -> list[Event]:
        """Messages from the workers and deaths of workers; a dead one is replaced."""
        waitables: list[object] = [w.conn for w in self._workers]
        waitables += [w.process.sentinel for w in self._workers]
        ready = wait(waitables, timeout)  # type: ignore[arg-type]
        events: list[Event] = []
        for worker in list(self._workers):
            if worker.conn in ready:
                events.extend(self._drain(worker))
        for worker in list(self._workers):
            if worker.process.sentinel in ready or not worker.process.is_alive():
                events.extend(self._drain(worker))
                worker.process.join(timeout=5)
                if worker.process.is_alive():
                    continue
                events.extend(self._replace(worker))
        return events

    def _drain(self, worker: _Worker) -> list[Event]:
        events = []
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "progress":
                    events.append(Event("progress", message[1], worker.name, *message[2:4]))
                elif message[0] == "done":
                    outcome: UnitOutcome = message[1]
                    events.append(Event("finished", outcome.key, worker.name, outcome=outcome))
                    worker.key = None
                elif message[0] == "ready":
                    worker.name, worker.ready = message[1], True
                    self.providers.add(message[2])
                elif message[0] == "error":
                    raise ExecutorError(f"a worker cannot open the model: {message[2]}")
        except (EOFError, OSError):
            pass
        return events

    def _replace(self, dead: _Worker) -> list[Event]:
        events = []
        if dead.key is not None:
            code = dead.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            reason = f"worker process {dead.name or '?'} died during the unit ({how})"
            events.append(Event("lost", dead.key, dead.name, reason=reason))
        dead.conn.close()
        index = self._workers.index(dead)
        self._workers[index] = self._spawn(dead.gpu)  # ready once it says so (poll)
        return events

    def stop_units(self) -> list[Event]:
        """Forward SIGINT to the busy workers: each stops its unit at the next slice."""
        for worker in self._workers:
            if worker.key is not None and worker.process.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(worker.process.pid, signal.SIGINT)
        return []

    def close(self) -> None:
        """Ask every worker to quit, then end those that do not within a few seconds."""
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(("quit",))
        deadline = time.monotonic() + 10
        for worker in self._workers:
            worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._workers = []
