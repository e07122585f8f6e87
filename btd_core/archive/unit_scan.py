"""Scanning one unit in a worker: ``btd scan``'s engine and report, with a scorer kept open.

A worker (a process on this machine, or a Ray actor) opens its scorer once
(:class:`UnitScanner`) and scans unit after unit with it: discovery
(:func:`btd_core.study.discovery.discover`, the unit's listed files or its whole folder),
the scan (:func:`btd_core.audit.pipeline.scan`) and the report
(:func:`btd_core.audit.study_audit.write_audit_report`), exactly as ``btd scan`` does.  The
report is written into a scratch folder on the worker's machine and sent back as bytes
(:class:`UnitOutcome`), so only the driver writes into OUT; a unit's result is plain
picklable data.  Inputs are read where they lie (the archive root, on a shared file
system for a cluster).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from btd_core.audit.scan_config import ScanConfig
from btd_core.errors import BtdError

if TYPE_CHECKING:
    from btd_core.scoring.strategy import SliceScore

ProgressHook = Callable[[int, int], None]
"""``(slices done, slices total)`` of the unit being scanned."""


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of one run needs (the same for all units; picklable).

    ``model``: the ONNX scorer's path; ``scan``: the scan configuration (its
    ``engine.threads``: onnxruntime threads per worker); ``command_line``: recorded in
    each report; ``scratch``: the folder for a unit's report before it is sent back
    (``None``: the system's temp).  ``model_sha256``, ``calibration_sha256``: the content
    the run was planned with (the archive's resume identity; ``"none"``: no calibration):
    a worker that opens other files refuses to start, so one run never mixes two
    (``None``: not checked).
    """

    model: str
    scan: ScanConfig = field(default_factory=ScanConfig)
    command_line: tuple[str, ...] = ()
    scratch: str | None = None
    model_sha256: str | None = None
    calibration_sha256: str | None = None

    def with_scan(self, **changes: object) -> WorkerConfig:
        """This config with the scan configuration's fields ``changes`` replaced (an
        executor fitting the engine and read threads to its machine)."""
        return replace(self, scan=replace(self.scan, **changes))


@dataclass(frozen=True)
class UnitTask:
    """One unit to scan: its key, its absolute root folder, the files listed (relative to
    the root; ``None``: the whole folder) and the attempt number (from 1)."""

    key: str
    root: str
    files: tuple[str, ...] | None
    attempt: int = 1


@dataclass
class UnitOutcome:
    """What a worker returns for a unit.

    ``status``: ``done`` (``files`` holds the report: relative name -> bytes, and
    ``summary`` its figures), ``cancelled`` (stopped before the end: nothing to keep) or
    ``error`` (``reason``: the unit could not be scanned).  ``worker``: ``host:pid``;
    ``slices``: slices scanned.
    """

    key: str
    status: str
    worker: str
    reason: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    summary: dict[str, object] = field(default_factory=dict)
    slices: int = 0


class ContentChanged(BtdError, RuntimeError):
    """The model or calibration file a worker opened is not the one the run was planned with."""


def calibration_sha256(slice_score: SliceScore) -> str:
    """The SHA-256 of the calibration file ``slice_score`` resolved to, as its reports
    record it; ``"none"`` when it runs without one."""
    calibration = slice_score.record()["calibration"]
    return str(calibration["sha256"]) if isinstance(calibration, dict) else "none"


def _check_content(config: WorkerConfig, model_sha256: str, calibration: str) -> None:
    """Raise :class:`ContentChanged` when the files opened are not the run's."""
    for what, pinned, found in (
        ("model", config.model_sha256, model_sha256),
        ("calibration", config.calibration_sha256, calibration),
    ):
        if pinned is not None and found != pinned:
            raise ContentChanged(
                f"the {what} file changed while the archive ran (SHA-256 {found[:12]}..., the "
                f"run began with {pinned[:12]}...): stop, then resume with the files it began "
                "with, or scan into a new --out"
            )


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class UnitScanner:
    """One worker's scorer, opened once, and the scan of one unit after another.

    Raises (at construction) what :func:`btd_core.engine.opening.open_scorer` and
    :meth:`btd_core.scoring.strategy.ScoreRequest.resolve` raise: a worker that cannot
    open the model cannot scan anything, and the run stops with that message.
    """

    def __init__(self, config: WorkerConfig) -> None:
        from btd_core.engine.opening import open_scorer

        self.config = config
        scan = config.scan
        self.scorer = open_scorer(Path(config.model), scan.provider, scan.engine)
        self.slice_score = scan.score.resolve(self.scorer.model_path, self.scorer.model_sha256)
        _check_content(config, self.scorer.model_sha256, calibration_sha256(self.slice_score))
        self.name = worker_name()

    def scan(
        self,
        task: UnitTask,
        should_stop: Callable[[], bool] | None = None,
        on_progress: ProgressHook | None = None,
    ) -> UnitOutcome:
        """Scan ``task``'s study and return its report as bytes (never raises for a bad
        study: an error outcome with the reason)."""
        from btd_core.study.file_access import short_message

        try:
            return self._scan(task, should_stop, on_progress)
        except (KeyboardInterrupt, SystemExit):
            raise
        except MemoryError:
            return UnitOutcome(task.key, "error", self.name, "out of memory")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {short_message(exc, limit=300)}"
            return UnitOutcome(task.key, "error", self.name, reason)

    def _scan(
        self,
        task: UnitTask,
        should_stop: Callable[[], bool] | None,
        on_progress: ProgressHook | None,
    ) -> UnitOutcome:
        from btd_core.audit.pipeline import scan
        from btd_core.audit.study_audit import write_audit_report
        from btd_core.findings.provenance import utc_now
        from btd_core.study.discovery import discover

        scan_config = self.config.scan
        started = utc_now()
        stop = should_stop or (lambda: False)
        discovery = discover(
            Path(task.root), limits=scan_config.limits, should_stop=stop, files=task.files
        )
        if discovery.cancelled or stop():
            return UnitOutcome(task.key, "cancelled", self.name, "stopped")

        def progress(state: object) -> None:
            if on_progress is not None:
                on_progress(state.slices_done, state.slices_total)  # type: ignore[attr-defined]

        outcome = scan(
            discovery,
            self.scorer,
            scan_config.settings,
            on_progress=progress,
            should_stop=stop,
            slice_score=self.slice_score,
        )
        if outcome.cancelled:
            return UnitOutcome(task.key, "cancelled", self.name, "stopped", slices=0)
        scratch = Path(tempfile.mkdtemp(prefix="btd-unit-", dir=self.config.scratch))
        try:
            result = write_audit_report(
                scratch / "report",
                discovery=discovery,
                outcome=outcome,
                scorer=self.scorer,
                settings=scan_config.settings,
                slice_score=self.slice_score,
                started=started,
                outputs=scan_config.outputs,
                command_line=list(self.config.command_line),
            )
            folder = scratch / "report"
            files = {
                path.relative_to(folder).as_posix(): path.read_bytes()
                for path in sorted(folder.rglob("*"))
                if path.is_file() and not path.name.startswith(".")
            }
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return UnitOutcome(
            task.key,
            "done",
            self.name,
            files=files,
            summary=unit_summary(result, scan_config.outputs.include_phi),
            slices=outcome.slices_done,
        )


def unit_summary(result: object, include_phi: bool = True) -> dict[str, object]:
    """The figures of one study's audit that the archive ranks and lists (plain JSON).

    ``status``: ``scored`` (slices scored, every file read), ``partly`` (slices scored,
    some files failed), ``unscored`` (no slice could be scored); ``top_score``: the most
    suspicious slice's score (``None`` when none); the top series and slice; counts of
    series, slices and files; the Study Instance UIDs; patient fields unless
    ``include_phi`` is false.
    """
    from btd_core.audit.study_audit import AuditResult
    from btd_core.findings.ranking import rank_series

    assert isinstance(result, AuditResult)
    findings = result.findings
    series_ranked = rank_series(findings)
    files = result.discovery.files
    failed = sum(1 for f in files if f.status == "error")
    skipped = sum(1 for f in files if f.status == "skipped")
    status = "unscored" if not findings else "partly" if failed else "scored"
    summary: dict[str, object] = {
        "status": status,
        "top_score": float(findings[0].result.score) if findings else None,
        "score_mode": result.run.settings.get("score_mode"),
        "series": len(result.discovery.series),
        "series_scored": len(series_ranked),
        "slices_total": result.outcome.slices_total,
        "slices_scored": len(result.outcome.results),
        "files": len(files),
        "files_failed": failed,
        "files_skipped": skipped,
        "study_uids": sorted({s.study_uid for s in result.discovery.series if s.study_uid}),
        "modalities": sorted({s.modality for s in result.discovery.series if s.modality}),
        "provider": result.run.provider,
        "first_error": next((f"{f.relpath}: {f.reason}" for f in files if f.status == "error"), ""),
    }
    if findings:
        top = findings[0]
        summary.update(
            {
                "top_series_key": top.series.key,
                "top_series_uid": top.series.series_uid,
                "top_series_description": top.series.description,
                "top_file": top.file.relpath,
                "top_slice_index": top.result.slice_index,
            }
        )
    if include_phi:
        source = next((s for s in result.discovery.series if s.patient_id or s.patient_name), None)
        summary["patient_id"] = source.patient_id if source else ""
        summary["patient_name"] = source.patient_name if source else ""
        summary["study_date"] = source.study_date if source else ""
    return summary


def relative_files(names: Sequence[str]) -> list[str]:
    """``names`` that are plain relative paths (no ``..``, not absolute): what the driver
    accepts from a worker as report files."""
    safe = []
    for name in names:
        parts = name.split("/")
        if name and not name.startswith("/") and all(p not in ("", ".", "..") for p in parts):
            safe.append(name)
    return safe
