"""The driver: one place that plans, hands out units, writes reports and keeps the manifest.

:func:`run_archive` checks OUT (outside the root; empty, or holding this archive's
manifest), plans the units (:func:`btd_core.archive.plan.plan_archive`), reconciles the
manifest (done and unchanged units are kept, the rest scanned), runs the units on an
executor (embedded processes or Ray actors) and commits each finished unit: its report
files are written into ``OUT/studies/.partial-<folder>-<token>`` (each file atomically,
then the folder synced) and renamed to ``OUT/studies/<folder>``; only then is the unit
marked ``done`` in the manifest.  A unit whose worker died is retried (up to
``max_attempts`` in one run); a unit that cannot be scanned is ``failed`` with the reason
and the run goes on.  ``studies.csv`` is rewritten at the end, on a stop, and every
:data:`SUMMARY_EVERY_S` seconds; ``index.html`` (each study linked to its ``report.html``)
and ``archive.json`` at the end and on a stop.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from btd_core import __version__
from btd_core.archive.executor import Event, Executor
from btd_core.archive.html_index import INDEX_HTML, write_archive_index
from btd_core.archive.manifest import MANIFEST_NAME, Manifest, UnitRow
from btd_core.archive.plan import plan_archive
from btd_core.archive.summary import (
    STUDIES_DIR,
    status_counts,
    write_archive_json,
    write_studies_csv,
)
from btd_core.archive.unit_scan import (
    UnitOutcome,
    UnitTask,
    WorkerConfig,
    calibration_sha256,
    relative_files,
)
from btd_core.atomic import atomic_write_bytes
from btd_core.errors import BtdError
from btd_core.file_lock import HeldLock, LockBusy, hold_lock
from btd_core.findings.provenance import iso_utc, library_versions, utc_now
from btd_core.hashing import bytes_sha256, file_sha256
from btd_core.study.evidence import check_output_outside

SUMMARY_EVERY_S = 300.0
"""Seconds between two rewrites of ``studies.csv`` / ``archive.json`` during a run."""
POLL_S = 0.5


class ArchiveError(BtdError, ValueError):
    """The archive cannot be run as asked (the message says why and what to do)."""


@dataclass
class ArchiveProgress:
    """The run's state, posted after every event: units finished this run of ``total``
    to do, slices scored this run, seconds since the first unit started, failures."""

    units_done: int
    units_total: int
    slices: int
    elapsed_s: float
    failed: int
    event: Event | None = None


@dataclass
class ArchiveResult:
    """What a run did: the units it found (``units``), how many were kept from earlier
    runs, done now, failed, and whether it was stopped; ``counts``: studies by status."""

    out: Path
    units: int
    kept: int
    done_now: int
    failed_now: int
    retried_workers: int
    cancelled: bool
    slices: int
    wall_s: float
    counts: dict[str, int] = field(default_factory=dict)
    reconcile: dict[str, int] = field(default_factory=dict)


def report_intact(report: Path, recorded_sha256: str | None) -> bool:
    """Whether the file ``report`` can be read and has the SHA-256 the manifest recorded."""
    try:
        return file_sha256(report) == recorded_sha256
    except OSError:
        return False


def check_out(root: Path, out: Path) -> None:
    """Refuse an OUT inside the root (or holding it), a file, or a non-empty folder that
    holds no archive manifest."""
    check_output_outside(out, root, what="archive output folder", inputs_are="archive root")
    resolved_out, resolved_root = out.expanduser().resolve(), root.expanduser().resolve()
    if resolved_out in resolved_root.parents:
        raise ArchiveError(
            f"the archive root {root} is inside the output folder {out}: choose an output "
            "folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise ArchiveError(f"the output folder {out} is an existing file: choose a folder")
    foreign = [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []
    if foreign and not (out / MANIFEST_NAME).is_file():
        raise ArchiveError(
            f"the output folder {out} holds files but no archive manifest ({MANIFEST_NAME}): "
            "it is not an archive to resume; choose a new or empty folder"
        )


def btd_version() -> str:
    """The btd version every report records (``btd_core.__version__``)."""
    return __version__


def resume_identity(root: Path, config: WorkerConfig, depth: int) -> dict[str, str]:
    """What must be the same for a rerun to resume: everything that changes a report.

    ``root``; the model's SHA-256; the SHA-256 of the calibration file the slice score
    resolves to (``none`` without one: its content, wherever it lies, so a rerun of
    ``btd calibrate`` is seen); the btd version; and ``report_settings``, the JSON of
    :meth:`btd_core.audit.scan_config.ScanConfig.report_identity` with the study depth.

    Raises
    ------
    ArchiveError
        The model file cannot be read.
    btd_core.scoring.strategy.ScoreModeError
        The slice score asked for cannot run with this model (before any work).
    """
    try:
        model_sha = file_sha256(config.model)
    except OSError:
        raise ArchiveError(f"no such model file: {config.model}") from None
    slice_score = config.scan.score.resolve(Path(config.model), model_sha)
    settings = {**config.scan.report_identity(), "study_depth": depth}
    return {
        "root": str(root.resolve()),
        "model_sha256": model_sha,
        "calibration_sha256": calibration_sha256(slice_score),
        "btd_version": btd_version(),
        "report_settings": json.dumps(settings, sort_keys=True),
    }


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_report(studies: Path, folder: str, outcome: UnitOutcome) -> str:
    """Put a finished unit's report in place as ``studies/<folder>``; returns the SHA-256
    of its ``report.json``.  Written into a hidden partial folder first, then renamed: a
    reader (or a crash) never sees half a report under the final name."""
    names = relative_files(list(outcome.files))
    if "report.json" not in names:
        raise ArchiveError("the worker sent no report.json")
    token = secrets.token_hex(4)
    partial = studies / f".partial-{folder}-{token}"
    partial.mkdir(parents=True)
    try:
        for name in names:
            path = partial.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, outcome.files[name])
        _fsync_dir(partial)
        final = studies / folder
        old = None
        if final.exists():
            old = studies / f".old-{folder}-{token}"
            os.replace(final, old)
        os.replace(partial, final)
        _fsync_dir(studies)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return bytes_sha256(outcome.files["report.json"])


def _clean_leftovers(studies: Path) -> None:
    """Remove partial and replaced report folders a stopped run left behind."""
    for leftover in studies.glob(".partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in studies.glob(".old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def run_archive(
    root: Path,
    out: Path,
    config: WorkerConfig,
    make_executor: Callable[[WorkerConfig], Executor],
    *,
    depth: int = 1,
    max_attempts: int = 3,
    command_line: Sequence[str] = (),
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[ArchiveProgress], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> ArchiveResult:
    """Audit every study under ``root`` into ``out``, resuming what ``out`` holds.

    ``make_executor(config)`` makes the executor (started here only when there is work).
    ``depth``: folder levels of a study folder below the root (>= 1).  ``max_attempts``:
    how often one run hands a unit to a worker before giving up on it (a worker that dies
    costs its unit one attempt).  ``should_stop``: checked between events (Ctrl-C): no new
    unit is handed out, units in flight are asked to stop, nothing unfinished is marked
    done, and the summary is written.  ``on_plan(units, to_do)`` is called once planned.

    Raises
    ------
    ArchiveError, btd_core.archive.manifest.ManifestError,
    btd_core.study.evidence.OutputInsideEvidence
        Before any work, when ``root``/``out`` cannot be used as asked.
    btd_core.archive.executor.ExecutorError
        When the workers cannot run (the model cannot be opened, Ray missing, or the
        model or calibration file changed since the run began).
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ArchiveError(f"the archive root {root} is not a folder")
    if max_attempts < 1:
        raise ArchiveError("max_attempts must be at least 1")
    check_out(root, out)
    identity = resume_identity(root, config, depth)  # a bad calibration: refused now
    config = replace(  # the workers check that they open the same files
        config,
        model_sha256=identity["model_sha256"],
        calibration_sha256=identity["calibration_sha256"],
    )
    started, clock0 = utc_now(), time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_out(out)
    studies = out / STUDIES_DIR
    studies.mkdir(exist_ok=True)
    manifest = Manifest(out)
    try:
        manifest.claim(identity)
        _clean_leftovers(studies)
        plan = plan_archive(root, depth, cache=manifest.stamps(), limits=config.scan.limits)
        manifest.store_stamps(plan.stamps)
        report_ok = {
            row.key: report_intact(studies / row.folder / "report.json", row.report_sha256)
            for row in manifest.units()
            if row.state == "done"
        }
        reconciled = manifest.reconcile(plan.units, report_ok)
        todo = deque(row for row in manifest.units() if row.state == "pending")
        if on_plan is not None:
            on_plan(len(plan.units), len(todo))
        state = _Run(manifest, studies, root.resolve(), max_attempts, on_progress, len(todo))
        state.include_phi = config.scan.outputs.include_phi
        executor = None
        description = "nothing to scan"
        start_s = scan_s = 0.0
        try:
            if todo:
                executor = make_executor(config)
                clock = time.monotonic()
                executor.start()
                start_s = time.monotonic() - clock
                description = executor.description
                state.loop(executor, todo, should_stop)
                scan_s = time.monotonic() - clock - start_s
        finally:
            if executor is not None:
                executor.close()
        units = manifest.units()
        csv_sha = write_studies_csv(out, units, config.scan.outputs.include_phi)
        run_record = {
            "tool": {"name": "btd", "command": "archive", "version": __version__},
            "command_line": list(command_line),
            "host": socket.gethostname(),
            "started_utc": iso_utc(started),
            "ended_utc": iso_utc(utc_now()),
            "root": str(root.resolve()),
            "out": str(out.resolve()),
            "manifest": MANIFEST_NAME,
            "model": {
                "path": str(Path(config.model).resolve()),
                "sha256": identity["model_sha256"],
            },
            "calibration_sha256": identity["calibration_sha256"],
            "providers_in_use": sorted(getattr(executor, "providers", set())),
            "executor": description,
            "settings": {
                **json.loads(identity["report_settings"]),
                "provider": config.scan.provider,
                "max_attempts": max_attempts,
            },
            "this_run": {
                "cancelled": state.cancelled,
                "units_planned": len(plan.units),
                "kept_from_earlier_runs": reconciled["kept"],
                "scanned": state.done_now,
                "failed": state.failed_now,
                "worker_losses": state.lost,
                "slices_scored": state.slices,
                "reconcile": reconciled,
                "workers_start_s": round(start_s, 3),
                "scanning_s": round(scan_s, 3),
            },
            "library_versions": library_versions(),
        }
        include_phi = config.scan.outputs.include_phi
        index_sha = write_archive_index(out, units, run_record, include_phi)
        write_archive_json(out, units, csv_sha, run_record, {INDEX_HTML: index_sha})
        return ArchiveResult(
            out=out,
            units=len(plan.units),
            kept=reconciled["kept"],
            done_now=state.done_now,
            failed_now=state.failed_now,
            retried_workers=state.lost,
            cancelled=state.cancelled,
            slices=state.slices,
            wall_s=time.monotonic() - clock0,
            counts=status_counts(units),
            reconcile=reconciled,
        )
    finally:
        manifest.close()
        lock.release()


LOCK_NAME = ".lock"


def _lock_out(out: Path) -> HeldLock:
    """Hold ``OUT/.lock`` (exclusive, see :mod:`btd_core.file_lock`) for the run: a second
    ``btd archive`` into the same OUT is refused instead of scanning the same units twice.
    The lock goes with the process, however it ends; the file names its holder."""
    try:
        lock = hold_lock(out / LOCK_NAME)
    except LockBusy:
        raise ArchiveError(
            f"another btd archive is running into {out}: wait for it to end (or stop it), "
            "then run again to resume"
        ) from None
    lock.handle.seek(0)
    lock.handle.truncate()
    lock.handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
    lock.handle.flush()
    return lock


class _Run:
    """The dispatch loop of one run (driver side)."""

    def __init__(
        self,
        manifest: Manifest,
        studies: Path,
        root: Path,
        max_attempts: int,
        on_progress: Callable[[ArchiveProgress], None] | None,
        total: int,
    ) -> None:
        self.manifest = manifest
        self.studies = studies
        self.root = root
        self.max_attempts = max_attempts
        self.on_progress = on_progress
        self.total = total
        self.attempts: dict[str, int] = {}
        self.rows: dict[str, UnitRow] = {}
        self.progress: dict[str, int] = {}
        self.done_now = self.failed_now = self.lost = self.slices = 0
        self.cancelled = False
        self.include_phi = True
        self.started = time.monotonic()
        self.last_summary = time.monotonic()

    def task(self, row: UnitRow) -> UnitTask:
        attempt = self.attempts.get(row.key, 0) + 1
        self.attempts[row.key] = attempt
        folder = self.root if row.root == "." else self.root.joinpath(*row.root.split("/"))
        return UnitTask(row.key, str(folder), row.files, attempt)

    def loop(
        self, executor: Executor, todo: deque[UnitRow], should_stop: Callable[[], bool] | None
    ) -> None:
        stopping = False
        while True:
            if not stopping and should_stop is not None and should_stop():
                stopping = self.cancelled = True
                for event in executor.stop_units():
                    self.handle(event, todo, stopping)
            while not stopping and todo and executor.idle():
                row = todo.popleft()
                self.rows[row.key] = row
                self.manifest.mark_running(row.key)
                event = executor.submit(self.task(row))
                self.manifest.mark_worker(row.key, event.worker)
                self.post(event)
            if not executor.busy() and (stopping or not todo):
                break
            for event in executor.poll(POLL_S):
                self.handle(event, todo, stopping)
        if stopping:
            for row in todo:
                self.manifest.mark_pending(row.key, "not started: the run was stopped")

    def handle(self, event: Event, todo: deque[UnitRow], stopping: bool) -> None:
        key = event.key
        if event.kind == "progress":
            before = self.progress.get(key, 0)
            self.progress[key] = event.done
            self.slices += max(0, event.done - before)
        elif event.kind == "finished" and event.outcome is not None:
            self.finish(event.outcome)
        elif event.kind == "lost":
            self.lost += 1
            self.slices -= self.progress.pop(key, 0)
            if stopping:
                self.manifest.mark_pending(key, f"interrupted: {event.reason}")
            elif self.attempts.get(key, 0) < self.max_attempts:
                self.manifest.mark_pending(key, f"retried after: {event.reason}")
                todo.appendleft(self.rows[key])
            else:
                attempts = self.attempts.get(key, 0)
                self.manifest.mark_failed(key, f"{event.reason} ({attempts} attempts)")
                self.failed_now += 1
        self.post(event)

    def finish(self, outcome: UnitOutcome) -> None:
        key = outcome.key
        counted = self.progress.pop(key, 0)
        if outcome.status == "cancelled":
            self.slices -= counted
            self.manifest.mark_pending(key, "interrupted: the run was stopped")
            return
        if outcome.status != "done":
            self.manifest.mark_failed(key, outcome.reason or "the unit could not be scanned")
            self.failed_now += 1
            return
        row = self.rows[key]
        try:
            report_sha = commit_report(self.studies, row.folder, outcome)
        except (OSError, ArchiveError) as err:
            self.manifest.mark_failed(key, f"its report could not be written: {err}")
            self.failed_now += 1
            return
        self.slices += outcome.slices - counted
        self.manifest.mark_done(key, row.fingerprint, report_sha, outcome.summary)
        self.done_now += 1
        now = time.monotonic()
        if now - self.last_summary >= SUMMARY_EVERY_S:
            self.last_summary = now
            write_studies_csv(self.studies.parent, self.manifest.units(), self.include_phi)

    def post(self, event: Event) -> None:
        if self.on_progress is not None:
            finished = self.done_now + self.failed_now
            elapsed = time.monotonic() - self.started
            self.on_progress(
                ArchiveProgress(finished, self.total, self.slices, elapsed, self.failed_now, event)
            )
