"""``report.html``: a scan's report as one self-contained page anyone on the case can open.

What it shows, all from the run itself (the same values as ``report.json`` and the CSV
files): what was run and on what (tool, command, host, UTC times, study folder and UIDs,
model file, SHA-256 and card, calibration, provider, library versions); what a score means
and how it was made; the top slices, each with two thumbnails (the slice with its worst
region boxed, and with its heat map: :mod:`btd_core.findings.thumbnails`); the ranked
slices (the first :data:`TABLE_ROWS`; all are in ``findings.csv``); the series ranked;
and the files that failed or were skipped, with the reason.  Page mechanics (inline CSS,
``data:`` images, no script, the Content-Security-Policy, escaping) are
:mod:`btd_core.findings.html_page`'s.

Its size: per top slice, two 256 px thumbnails as base64 PNG (the boxed one a palette
image, at most 64 KiB before base64), and under 1 KB per table row: a 300-slice study of
512 x 512 CT with the default 10 overlays gives about 0.5 MiB, and 3.2 MiB even if every
picture were pure noise (``tests/test_html_report.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from btd_core.findings.html_page import png_data_uri, render_page, write_page
from btd_core.findings.provenance import iso_utc
from btd_core.findings.ranking import SeriesFinding, rank_series
from btd_core.findings.report import RunInfo
from btd_core.findings.score_text import score_text
from btd_core.findings.thumbnails import slice_thumbnails
from btd_core.safe_text import printable
from btd_core.scoring.rarity import chance_text, rarity_short, rarity_text
from btd_core.scoring.strategy import SCORE_MEANING
from btd_core.study.records import Discovery, FileRecord, Finding, series_label

REPORT_HTML = "report.html"
TABLE_ROWS = 200
"""Ranked slices listed in the page's table (``findings.csv`` has every one)."""
FILE_ROWS = 200
"""Files that failed (and, apart, files skipped) listed by name (``files.csv`` has all)."""


@dataclass(frozen=True)
class TopSlice:
    """One of the top slices: its finding, and its windowed image [H, W] in [0, 1] and heat
    map [H, W] when the scan kept them (``None``: no pictures, the page says why)."""

    finding: Finding
    image01: np.ndarray | None = None
    heat: np.ndarray | None = None


def write_scan_html(
    out_dir: Path,
    run: RunInfo,
    discovery: Discovery,
    findings: Sequence[Finding],
    top: Sequence[TopSlice],
    include_phi: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path; see the module."""
    path = Path(out_dir) / REPORT_HTML
    write_page(path, scan_page(run, discovery, findings, top, include_phi))
    return path


def scan_page(
    run: RunInfo,
    discovery: Discovery,
    findings: Sequence[Finding],
    top: Sequence[TopSlice],
    include_phi: bool = True,
) -> str:
    """The page's HTML (``findings`` ranked, ``top`` the slices shown with pictures)."""
    settings = run.settings
    return render_page(
        "scan_report.html.j2",
        title=f"btd report: {printable(run.study_root.name or run.study_root)}",
        version=printable(run.tool_version),
        meaning=_meaning(settings.get("score_meaning")),
        model_name=printable(run.model_path.name),
        model_sha=run.model_sha256[:16] + "…",
        started=_utc(run.started_utc),
        identity=_identity(run, discovery, include_phi),
        tool=_tool(run),
        model=_model(run),
        settings=settings,
        calibrated=settings.get("score_mode") == "calibrated",
        genuine=findings[0].genuine_slices if findings else None,
        lead=_lead(findings[0]) if findings else "",
        chance=_chance(findings),
        counts=_counts(discovery.files, findings),
        top=[_top_card(item) for item in top],
        rows=[_finding_row(f) for f in findings[:TABLE_ROWS]],
        rows_left=max(0, len(findings) - TABLE_ROWS),
        series=[_series_row(s, include_phi) for s in rank_series(findings)],
        include_phi=include_phi,
        failed=_file_rows(discovery.files, "error"),
        skipped=_file_rows(discovery.files, "skipped"),
        file_rows=FILE_ROWS,
        missing=settings.get("overlays_missing") or [],
        dicom=(settings.get("dicom") or {}).get("series", []),
    )


def _meaning(text: object) -> str:
    """The report's score meaning as a sentence: ``A high score means ... .``"""
    meaning = str(text or SCORE_MEANING)
    return meaning[:1].upper() + meaning[1:] + "."


def _identity(run: RunInfo, discovery: Discovery, include_phi: bool) -> list[tuple[str, str]]:
    """What was examined: the study folder, its UIDs and modalities (and the patient)."""
    studies = sorted({s.study_uid for s in discovery.series if s.study_uid})
    modalities = sorted({s.modality for s in discovery.series if s.modality})
    rows = [
        ("study folder", str(run.study_root)),
        ("Study Instance UID", " ".join(studies) or "none (not DICOM)"),
        ("modalities", " ".join(modalities) or "unknown"),
        ("series", str(len(discovery.series))),
    ]
    if include_phi:
        source = next((s for s in discovery.series if s.patient_id or s.patient_name), None)
        if source is not None:
            rows += [
                ("patient name", source.patient_name),
                ("patient ID", source.patient_id),
                ("study date", source.study_date),
            ]
    return [(label, printable(value)) for label, value in rows]


def _tool(run: RunInfo) -> list[tuple[str, str]]:
    duration = (run.ended_utc - run.started_utc).total_seconds()
    rows = [
        ("btd version", run.tool_version),
        ("command line", " ".join(run.command_line)),
        ("host", run.host),
        ("started (UTC)", _utc(run.started_utc)),
        ("ended (UTC)", f"{_utc(run.ended_utc)} ({duration:.1f} s)"),
        ("provider", run.provider + (f" ({run.provider_note})" if run.provider_note else "")),
    ]
    rows += [(f"{name} version", value) for name, value in run.library_versions.items()]
    return [(label, printable(value)) for label, value in rows]


def _utc(stamp: datetime) -> str:
    """``2026-12-01 09:30:00``: the time in UTC to the second."""
    return iso_utc(stamp).replace("T", " ").split(".")[0].removesuffix("+00:00")


def _model(run: RunInfo) -> list[tuple[str, str]]:
    card = run.model_card
    rows = [
        ("model file", str(run.model_path)),
        ("model SHA-256", run.model_sha256),
        ("modality", card.modality),
        ("patch size", f"{card.patch_size} px"),
        ("window", f"{card.window_low:g} to {card.window_high:g} {card.window_unit}"),
        ("reduction", card.reduction),
        ("weights", card.weights),
        ("checkpoint", f"{card.source_name} (step {card.source_step})"),
        ("checkpoint SHA-256", card.source_sha256),
        ("exported", f"{card.exported_at} by btd-export {card.exporter_version}"),
    ]
    calibration = run.settings.get("calibration")
    if isinstance(calibration, dict):
        rows += [(f"calibration {key}", str(value)) for key, value in calibration.items()]
    return [(label, printable(value)) for label, value in rows]


def _counts(files: Sequence[FileRecord], findings: Sequence[Finding]) -> dict[str, int]:
    counts = {status: 0 for status in ("scored", "skipped", "error", "pending")}
    for record in files:
        counts[record.status] = counts.get(record.status, 0) + 1
    return {**counts, "files": len(files), "slices": len(findings)}


def _where(finding: Finding) -> dict[str, str]:
    """The cells that say which slice a finding is, printable."""
    result = finding.result
    location = finding.slice.location
    frame = finding.slice.frame
    return {
        "series": printable(series_label(finding.series)),
        "slice": f"{result.slice_index + 1}/{len(finding.series.slices)}",
        "position": "" if location is None else f"{location:.1f}",
        "region": "{}, {} ({} px)".format(*result.region),
        "file": printable(finding.file.relpath) + ("" if frame is None else f" [frame {frame}]"),
    }


def _finding_row(finding: Finding) -> dict[str, object]:
    return {
        "rank": finding.rank,
        "score": finding.result.score,
        "rarity": rarity_short(finding.genuine_tail, finding.genuine_slices),
        "signal": finding.result.signal,
        **_where(finding),
    }


def _rarity_words(finding: Finding) -> str:
    """How rare the finding's score is among genuine slices, in words (``""``: not known)."""
    if finding.genuine_tail is None or not finding.genuine_slices:
        return ""
    return rarity_text(finding.genuine_tail, finding.genuine_slices)


def _lead(finding: Finding) -> str:
    """The top lead in one sentence: which slice, its score, which signal, where, how rare."""
    where = _where(finding)
    text = (
        f"slice {where['slice']} of {where['series']}, score {score_text(finding.result.score)}"
        f" by {finding.result.signal or 'an unknown signal'} at {where['region']}"
    )
    rarity = _rarity_words(finding)
    return f"{text}: {rarity}" if rarity else text


def _chance(findings: Sequence[Finding]) -> str:
    """The study's false-discovery line at its top lead's level (``""``: not known)."""
    top = findings[0] if findings else None
    if top is None or top.genuine_tail is None or not top.genuine_slices:
        return ""
    return chance_text(top.genuine_tail, top.genuine_slices, len(findings))


def _top_card(item: TopSlice) -> dict[str, object]:
    finding = item.finding
    card: dict[str, object] = {
        **_finding_row(finding),
        "exact": repr(float(finding.result.score)),
        "rarity_words": _rarity_words(finding),
        "sha256": finding.file.sha256 or "",
        "sop_instance_uid": printable(finding.slice.sop_instance_uid),
        "boxed": None,
        "heat": None,
    }
    if item.image01 is not None:
        pictures = slice_thumbnails(item.image01, item.heat, finding.result.region)
        card["boxed"] = png_data_uri(pictures.boxed)
        card["heat"] = None if pictures.heat is None else png_data_uri(pictures.heat)
        card["width"], card["height"] = pictures.boxed.size
    return card


def _series_row(ranked: SeriesFinding, include_phi: bool) -> dict[str, object]:
    top, series = ranked.top, ranked.top.series
    row: dict[str, object] = {
        "rank": ranked.rank,
        "score": top.result.score,
        "slices": ranked.slices_scored,
        "top_rank": top.rank,
        "modality": printable(series.modality),
        "uid": printable(series.series_uid),
        **_where(top),
    }
    if include_phi:
        row["patient"] = printable(" / ".join(v for v in (series.patient_name, series.patient_id)))
    return row


def _file_rows(files: Sequence[FileRecord], status: str) -> list[dict[str, str]]:
    return [
        {"file": printable(f.relpath), "kind": f.kind, "reason": printable(f.reason)}
        for f in files
        if f.status == status
    ]
