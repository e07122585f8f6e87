"""One audit of a study directory, end to end, as a plain function (what ``btd scan`` runs).

discover -> open the scorer -> scan every slice -> rank -> PNG overlays of the top
slices -> ``report.html`` and the CSV/JSON report.  Nothing is written into the study directory.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from btd_core import __version__
from btd_core.audit.pipeline import ProgressCallback, ScanOutcome, ScanSettings, StopCheck, scan
from btd_core.audit.scan_config import ReportOutputs, ScanConfig
from btd_core.engine.opening import ModelOpenError, open_scorer
from btd_core.engine.scorer import EngineOptions, ProviderChoice, Scorer
from btd_core.errors import BtdError
from btd_core.findings.html_report import TopSlice, write_scan_html
from btd_core.findings.output_folder import remove_earlier_dicom
from btd_core.findings.overlay import write_overlay
from btd_core.findings.provenance import library_versions, utc_now
from btd_core.findings.ranking import rank
from btd_core.findings.report import ReportFiles, RunInfo, write_report
from btd_core.scoring.rarity import GENUINE_TAIL_MEANING
from btd_core.scoring.strategy import SliceScore
from btd_core.scoring.tiles import TILES_MEANING
from btd_core.slices.profiles import INTENSITY_METHODS
from btd_core.study.discovery import discover
from btd_core.study.evidence import check_output_outside
from btd_core.study.limits import StudyLimits
from btd_core.study.records import Discovery, Finding


class AuditError(BtdError, RuntimeError):
    """The audit could not run at all (bad model, output inside the evidence, ...)."""


@dataclass(frozen=True)
class AuditResult:
    """Everything one audit produced (``html``: its ``report.html``)."""

    discovery: Discovery
    outcome: ScanOutcome
    findings: list[Finding]
    report: ReportFiles
    run: RunInfo
    overlays: list[Path]
    html: Path

    @property
    def files_failed(self) -> int:
        """Files that could not be read or decoded (error rows)."""
        return sum(1 for f in self.discovery.files if f.status == "error")


def open_study(
    study_dir: Path,
    model: Path,
    provider: ProviderChoice = "auto",
    engine: EngineOptions | None = None,
    *,
    should_stop: StopCheck | None = None,
    limits: StudyLimits | None = None,
) -> tuple[Discovery, Scorer]:
    """Walk the study and open the model's session (seconds on a GPU) at the same time.

    ``should_stop`` is checked while the study is walked (a cancelled walk returns what
    it found, with ``cancelled`` set, and the scan then stops at once).

    Raises
    ------
    btd_core.engine.opening.ModelOpenError
        When the model cannot be opened as asked; a missing file is said before the
        study is walked.
    """
    if not Path(model).is_file():
        raise ModelOpenError("model file not found", f"no such model file: {model}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="btd-session") as pool:
        opening = pool.submit(open_scorer, model, provider, engine)
        discovery = discover(study_dir, limits=limits, should_stop=should_stop)
        return discovery, opening.result()


def audit_study(
    study_dir: Path,
    model: Path,
    out_dir: Path,
    config: ScanConfig | None = None,
    *,
    command_line: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AuditResult:
    """Audit ``study_dir`` with the ONNX scorer ``model``; write the report into ``out_dir``.

    ``config``: everything the scan was asked (:class:`btd_core.audit.scan_config.ScanConfig`,
    default: ``btd scan``'s defaults).  Its slice score (default ``auto``: calibrated when
    the model has a calibration, else local) is resolved once against the model before the
    scan starts; the top ``config.settings.overlays`` slices get a PNG overlay; with
    ``config.outputs.dicom_top``, each DICOM series' top slices are also written as DICOM
    SR and SEG into ``out_dir/dicom`` (see :func:`write_audit_report`).
    ``command_line`` is recorded in the report (default ``sys.argv``).

    Raises
    ------
    AuditError
        When the study is not a folder or the output folder is inside it.
    btd_core.scoring.strategy.ScoreModeError
        When the slice score asked for cannot run with this model (no calibration,
        another model's or another window's).
    btd_core.engine.opening.ModelOpenError
        When the model cannot be opened as asked.
    """
    config = config or ScanConfig()
    if not study_dir.is_dir():
        raise AuditError(f"{study_dir} is not a folder")
    check_output_outside(out_dir, study_dir, what="report folder", inputs_are="study")
    started = utc_now()
    discovery, scorer = open_study(
        study_dir,
        model,
        config.provider,
        config.engine,
        should_stop=should_stop,
        limits=config.limits,
    )
    slice_score = config.score.resolve(model, scorer.model_sha256)
    settings = config.settings.resolved(scorer.card, slice_score.calibrated_with)
    outcome = scan(
        discovery,
        scorer,
        settings,
        on_progress=on_progress,
        should_stop=should_stop,
        slice_score=slice_score,
    )
    return write_audit_report(
        out_dir,
        discovery=discovery,
        outcome=outcome,
        scorer=scorer,
        settings=settings,
        slice_score=slice_score,
        started=started,
        outputs=config.outputs,
        command_line=command_line,
    )


def write_audit_report(
    out_dir: Path,
    *,
    discovery: Discovery,
    outcome: ScanOutcome,
    scorer: Scorer,
    settings: ScanSettings,
    slice_score: SliceScore,
    started: datetime,
    outputs: ReportOutputs | None = None,
    command_line: Sequence[str] | None = None,
) -> AuditResult:
    """Rank a finished (or cancelled) scan and write its report and overlays into ``out_dir``.

    Also what the TUI's export runs.  Every one of the top ``settings.overlays`` slices
    gets an overlay, or the report's settings say why not (``overlays_missing``: a slice
    scored by an earlier run of the app keeps no image).  With ``--overwrite`` the overlays
    of an earlier report in ``out_dir`` are replaced, and its surplus ``rankNNN.png``
    removed.  ``outputs`` (default :class:`ReportOutputs`: with patient identifiers, no
    DICOM): with ``outputs.dicom_top``,
    :func:`btd_core.findings.dicom_export.write_dicom_findings` also writes ``out_dir/dicom``
    (its files hashed in ``report.json``, its notes under ``settings.dicom``); without it,
    DICOM objects of an earlier report there are removed.  ``report.html``
    (:mod:`btd_core.findings.html_report`: the same run and findings, the top slices'
    pictures inside it) is written before ``report.json``, which hashes it.
    """
    outputs = outputs or ReportOutputs()
    out_dir = Path(out_dir).resolve()  # overlay paths are then absolute, whatever the cwd
    check_output_outside(out_dir, discovery.root, what="report folder", inputs_are="study")
    findings = rank(outcome.results, discovery, slice_score.genuine_scores)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_paths, missing = _write_overlays(out_dir, findings[: settings.overlays], outcome)
    dicom = None
    if outputs.dicom_top is None:  # an earlier report's objects (--overwrite) never stay behind
        remove_earlier_dicom(out_dir)
    else:  # highdicom is imported only when asked for
        from btd_core.findings.dicom_export import write_dicom_findings
        from btd_core.findings.dicom_sr import Producer

        producer = Producer(__version__, scorer.model_sha256, slice_score.mode)
        dicom = write_dicom_findings(out_dir, findings, discovery, producer, outputs.dicom_top)
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
        settings={
            **_settings_record(settings, slice_score, scorer, outcome),
            "overlays_missing": missing,
            **({"dicom": dicom.record()} if dicom else {}),
        },
        library_versions=library_versions(),
    )
    top = [_top_slice(finding, outcome) for finding in findings[: settings.overlays]]
    html = write_scan_html(out_dir, run, discovery, findings, top, outputs.include_phi)
    report = write_report(
        out_dir,
        run,
        findings,
        discovery.files,
        include_phi=outputs.include_phi,
        extra_files=[*overlay_paths, *(dicom.files if dicom else []), html],
        slices_scored=len(outcome.results),
    )
    return AuditResult(discovery, outcome, findings, report, run, overlay_paths, html)


def _top_slice(finding: Finding, outcome: ScanOutcome) -> TopSlice:
    """A top slice for ``report.html``, with its pixels when the scan kept them."""
    view = outcome.views.get((finding.result.series_key, finding.result.slice_index))
    if view is None:
        return TopSlice(finding)
    return TopSlice(finding, view.image, view.heat)


def _write_overlays(
    out_dir: Path, findings: Sequence[Finding], outcome: ScanOutcome
) -> tuple[list[Path], list[dict[str, object]]]:
    """The overlays of ``findings`` (the top slices), and a note for each one not written."""
    written: list[Path] = []
    missing: list[dict[str, object]] = []
    folder = out_dir / "overlays"
    for stale in sorted(folder.glob("rank[0-9][0-9][0-9].png")) if folder.is_dir() else []:
        stale.unlink()  # an earlier report's (--overwrite): never mixed with this one's
    for finding in findings:
        view = outcome.views.get((finding.result.series_key, finding.result.slice_index))
        if view is None:
            reason = "the slice's image was not kept (scored before the scan was resumed)"
            missing.append({"rank": finding.rank, "file": finding.file.relpath, "reason": reason})
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
    return written, missing


def _settings_record(
    settings: ScanSettings,
    slice_score: SliceScore,
    scorer: Scorer,
    outcome: ScanOutcome,
) -> dict:
    size = scorer.card.patch_size
    genuine = slice_score.genuine_scores
    return {
        **slice_score.record(),
        "genuine_slices": len(genuine) if genuine else None,
        "genuine_tail_meaning": GENUINE_TAIL_MEANING if genuine else None,
        "mode": "patch at (x, y)" if settings.patch_at else "whole slice, tiled",
        "patch_at_xy": list(settings.patch_at) if settings.patch_at else None,
        "intensity": scorer.card.profile.intensity,
        "intensity_meaning": INTENSITY_METHODS.get(scorer.card.profile.intensity, ""),
        "tile_size_px": size,
        "stride_px": settings.stride_for(size),
        "tiles": settings.tiles,
        "tiles_meaning": TILES_MEANING[settings.tiles],
        "model_side_multiple": scorer.card.side_multiple,
        "body_level": settings.body_level,
        "body_fraction": settings.body_fraction,
        "slice_score": slice_score.describe(scorer.card.reduction),
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
