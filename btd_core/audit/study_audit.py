"""One audit of a study directory, end to end, as a plain function (what ``btd scan`` runs).

discover -> open the scorer -> scan every slice -> rank -> PNG overlays of the top
slices -> CSV/JSON report.  Nothing is written into the study directory.
"""

from __future__ import annotations

import hashlib
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from btd_core import __version__
from btd_core.audit.pipeline import ProgressCallback, ScanOutcome, ScanSettings, StopCheck, scan
from btd_core.engine.scorer import EngineOptions, ProviderChoice, Scorer
from btd_core.findings.overlay import write_overlay
from btd_core.findings.ranking import rank
from btd_core.findings.report import ReportFiles, RunInfo, library_versions, utc_now, write_report
from btd_core.scoring.calibration import Calibration, CalibrationError, sidecar_path
from btd_core.scoring.local import resolve_auto
from btd_core.study.discovery import discover
from btd_core.study.records import Discovery, Finding


class AuditError(RuntimeError):
    """The audit could not run at all (bad model, output inside the evidence, ...)."""


@dataclass(frozen=True)
class AuditResult:
    """Everything one audit produced."""

    discovery: Discovery
    outcome: ScanOutcome
    findings: list[Finding]
    report: ReportFiles
    run: RunInfo
    overlays: list[Path]

    @property
    def files_failed(self) -> int:
        """Files that could not be read or decoded (error rows)."""
        return sum(1 for f in self.discovery.files if f.status == "error")


SLICE_SCORES = {
    "tile": "max tile score ({reduction})",
    "local": "max over local windows of mean r^2",
    "calibrated": "max over local windows of the calibrated surprise z vs genuine tissue",
}


def load_calibration(model: Path, path: Path | None, scorer: Scorer) -> tuple[Calibration, Path]:
    """The calibration for ``scorer``'s model: ``path`` or the model's sidecar."""
    path = path or sidecar_path(Path(model))
    if not path.is_file():
        raise AuditError(
            f"the calibrated score needs {path}: make it with "
            f"btd calibrate --model {model} GENUINE_DIR (or give --calibration)"
        )
    try:
        return Calibration.load(path, scorer.model_sha256), path
    except CalibrationError as err:
        raise AuditError(str(err)) from None


def settle_score_mode(
    settings: ScanSettings, model: Path, calibration_path: Path | None, scorer: Scorer
) -> tuple[ScanSettings, Calibration | None, Path | None]:
    """The score mode to run, with its calibration, for the mode ``settings`` asks for.

    ``auto`` (the product's default) is ``calibrated`` when a calibration is at hand
    (``calibration_path``, or the model's sidecar ``MODEL.onnx.calibration.json``) and
    ``local`` when none is: the best measured mode available (``benchmarks/bench_detection.py``).
    A calibration that is there but not usable (another model's, damaged) is an error,
    never a quiet step down to ``local``.

    Raises
    ------
    AuditError
        ``calibrated`` without a usable calibration, a named ``calibration_path`` that
        is missing, or a sidecar that does not belong to the model.
    """
    wanted = settings.score_mode == "calibrated" or (
        settings.score_mode == "auto"
        and (calibration_path is not None or sidecar_path(Path(model)).is_file())
    )
    if not wanted:
        return resolve_auto(settings, None), None, None
    calibration, path = load_calibration(model, calibration_path, scorer)
    return resolve_auto(settings, calibration), calibration, path


def _calibration_record(path: Path | None) -> dict | None:
    if path is None:
        return None
    data = path.read_bytes()
    return {"file": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest()}


def open_study(
    study_dir: Path,
    model: Path,
    provider: ProviderChoice = "auto",
    engine: EngineOptions | None = None,
    batch_size: int | None = None,
) -> tuple[Discovery, Scorer]:
    """Walk the study and open the model's session (seconds on a GPU) at the same time.

    Raises
    ------
    AuditError
        When ``model`` is not a file (said before the study is walked).
    """
    if not Path(model).is_file():
        raise AuditError(f"no such model file: {model}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="btd-session") as pool:
        opening = pool.submit(
            Scorer, model, provider=provider, batch_size=batch_size, engine=engine
        )
        discovery = discover(study_dir)
        return discovery, opening.result()


def check_output_outside(study_dir: Path, out_dir: Path) -> None:
    """Refuse an output folder inside the study (evidence is never written into)."""
    study, out = study_dir.resolve(), out_dir.resolve()
    if out == study or study in out.parents:
        raise AuditError(
            f"the report folder {out_dir} is inside the study {study_dir}; evidence folders are "
            "never written into: choose a folder outside it"
        )


def audit_study(
    study_dir: Path,
    model: Path,
    out_dir: Path,
    *,
    provider: ProviderChoice = "auto",
    settings: ScanSettings | None = None,
    overlays: int = 10,
    include_phi: bool = True,
    batch_size: int | None = None,
    command_line: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    engine: EngineOptions | None = None,
    calibration_path: Path | None = None,
) -> AuditResult:
    """Audit ``study_dir`` with the ONNX scorer ``model``; write the report into ``out_dir``.

    ``overlays`` is how many of the top slices get a PNG overlay; ``engine`` says how
    onnxruntime runs (:class:`btd_core.engine.scorer.EngineOptions`).  The ``calibrated`` score
    mode reads ``calibration_path`` (default: the model's sidecar, ``MODEL.onnx.calibration.json``);
    ``auto`` (the default) runs that mode when a calibration is at hand, else ``local``
    (:func:`settle_score_mode`).

    Raises
    ------
    AuditError
        When the study is not a folder, the output folder is inside it, or the
        calibrated mode has no usable calibration for this model.
    btd_core.engine.scorer.ProviderError, btd_core.engine.model_card.ModelCardError
        When the model cannot be opened as asked.
    """
    if not study_dir.is_dir():
        raise AuditError(f"{study_dir} is not a folder")
    check_output_outside(study_dir, out_dir)
    started = utc_now()
    settings = settings or ScanSettings(keep_views=overlays, score_mode="auto")
    discovery, scorer = open_study(study_dir, model, provider, engine, batch_size)
    settings, calibration, calibration_path = settle_score_mode(
        settings, model, calibration_path, scorer
    )
    outcome = scan(
        discovery,
        scorer,
        settings,
        on_progress=on_progress,
        should_stop=should_stop,
        calibration=calibration,
    )
    return write_audit_report(
        out_dir,
        discovery=discovery,
        outcome=outcome,
        scorer=scorer,
        settings=settings,
        started=started,
        overlays=overlays,
        include_phi=include_phi,
        command_line=command_line,
        calibration_path=calibration_path if calibration else None,
    )


def write_audit_report(
    out_dir: Path,
    *,
    discovery: Discovery,
    outcome: ScanOutcome,
    scorer: Scorer,
    settings: ScanSettings,
    started: datetime,
    overlays: int = 10,
    include_phi: bool = True,
    command_line: Sequence[str] | None = None,
    calibration_path: Path | None = None,
) -> AuditResult:
    """Rank a finished (or cancelled) scan and write its report and overlays into ``out_dir``.

    Also what the TUI's export runs.  Slices without a kept view get none in the
    overlays folder.
    """
    out_dir = Path(out_dir).resolve()  # overlay paths are then absolute, whatever the cwd
    check_output_outside(discovery.root, out_dir)
    findings = rank(outcome.results, discovery)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_paths = _write_overlays(out_dir, findings[:overlays], outcome)
    run = RunInfo(
        tool_version=__version__,
        command_line=list(command_line if command_line is not None else sys.argv),
        host=socket.gethostname(),
        started_utc=started,
        ended_utc=utc_now(),
        study_root=discovery.root.resolve(),
        model_path=scorer.model_path.resolve(),
        model_sha256=scorer.model_sha256,
        model_card=scorer.card,
        provider=scorer.provider_in_use,
        provider_note=scorer.provider_note,
        settings=_settings_record(settings, scorer, outcome, calibration_path),
        library_versions=library_versions(),
    )
    report = write_report(
        out_dir,
        run,
        findings,
        discovery.files,
        include_phi=include_phi,
        extra_files=overlay_paths,
        slices_scored=len(outcome.results),
    )
    return AuditResult(discovery, outcome, findings, report, run, overlay_paths)


def _write_overlays(out_dir: Path, findings: Sequence[Finding], outcome: ScanOutcome) -> list[Path]:
    written = []
    folder = out_dir / "overlays"
    for finding in findings:
        view = outcome.views.get((finding.result.series_key, finding.result.slice_index))
        if view is None:
            continue
        folder.mkdir(exist_ok=True)
        result = finding.result
        caption = f"#{finding.rank} score {result.score:.4g}  {finding.file.relpath}"
        if finding.slice.frame is not None:
            caption += f" frame {finding.slice.frame}"
        path = folder / f"rank{finding.rank:03d}.png"
        written.append(
            write_overlay(
                path,
                view.image,
                view.heat,
                result.region,
                caption=caption,
            )
        )
    return written


def _settings_record(
    settings: ScanSettings,
    scorer: Scorer,
    outcome: ScanOutcome,
    calibration_path: Path | None = None,
) -> dict:
    size = scorer.card.patch_size
    local = settings.score_mode != "tile"
    return {
        "score_mode": settings.score_mode,
        "window_px": settings.window if local else None,
        "window_stride_px": (settings.window_stride or max(settings.window // 2, 1))
        if local
        else None,
        "calibration": _calibration_record(calibration_path),
        "mode": "patch at (x, y)" if settings.patch_at else "whole slice, tiled",
        "patch_at_xy": list(settings.patch_at) if settings.patch_at else None,
        "tile_size_px": size,
        "stride_px": settings.stride_for(size),
        "body_level": settings.body_level,
        "body_fraction": settings.body_fraction,
        "slice_score": SLICE_SCORES[settings.score_mode].format(reduction=scorer.card.reduction),
        "batch_size": scorer.batch_size,
        "model_precision": scorer.card.precision,
        "engine": {
            "threads": scorer.engine.threads,
            "optimization": scorer.engine.optimization,
            "cudnn_search": scorer.engine.cudnn_search,
            "cuda_graph": scorer.engine.cuda_graph,
            "nhwc": scorer.engine.nhwc,
        },
        "read_workers": settings.workers,
        "slices_total": outcome.slices_total,
        "slices_done": outcome.slices_done,
        "background_slices": outcome.background_slices,
        "tiles_scored": outcome.tiles_scored,
        "tiles_skipped_by_body_mask": outcome.tiles_skipped,
        "cancelled": outcome.cancelled,
    }
