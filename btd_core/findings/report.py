"""Forensic reports: ``findings.csv``, ``series.csv``, ``files.csv`` and a ``report.json`` sidecar.

A report is meant to be filed by a hospital forensics team, so it records what was
run (tool, command line, host, times in UTC, model file and its SHA-256, model card,
execution provider, settings, library versions), what was examined (every file, with
size, SHA-256 and status) and what was found (ranked slices; series ranked by their
most suspicious slice).  Each file is written atomically; the sidecar carries the
SHA-256 of every other report file.

Slices are numbered twice, so that the base is plain from the name: ``slice_index``
counts a series' slices from 0 in slice order (for programs), ``slice_number`` counts
the same slice from 1, as people read it and as ``btd scan`` and the app show it ("slice
3/24"); series.csv has both as ``top_slice_index`` / ``top_slice_number``.

Text taken from files and DICOM tags (paths, UIDs, descriptions, patient fields,
reasons) is data, never markup: in the CSV files its control characters are visible
escapes and a cell that a spreadsheet would run as a formula is neutralised (see
:func:`btd_core.findings.csv_table.neutralise_cell`); numbers the writer itself formats
(such as negative positions in mm) stay numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from btd_core.atomic import atomic_write_bytes
from btd_core.engine.model_card import ModelCard
from btd_core.findings.csv_table import csv_bytes
from btd_core.findings.provenance import (
    iso_utc,
    json_bytes,
    json_safe,
    model_record,
)
from btd_core.findings.ranking import SeriesFinding, rank_series
from btd_core.hashing import bytes_sha256, file_sha256
from btd_core.scoring.rarity import chance_leads, chance_text, rarity_text
from btd_core.study.evidence import check_output_outside
from btd_core.study.records import FileRecord, Finding, Series

TOP_FINDINGS = 20
"""How many findings the sidecar repeats under ``top_findings``."""

NUMERIC_COLUMNS = frozenset(
    {"rank", "score", "frame", "slice_index", "slice_number", "slice_location_mm", "size_bytes"}
    | {"position_x_mm", "position_y_mm", "position_z_mm", "tile_x", "tile_y", "tile_size"}
    | {"window_x", "window_y", "window_size", "slices_scored", "top_slice_rank"}
    | {"top_slice_index", "top_slice_number", "top_window_x", "top_window_y", "top_window_size"}
    | {"genuine_tail", "genuine_slices"}
)
"""Columns whose cells the writer formats itself from numbers (never neutralised)."""
FINDINGS_COLUMNS = (
    *("rank", "score", "reduction", "file", "file_sha256"),
    *("study_uid", "series_uid", "sop_instance_uid", "frame", "slice_index", "slice_number"),
    *("slice_location_mm", "position_x_mm", "position_y_mm", "position_z_mm", "orientation"),
    *("tile_x", "tile_y", "tile_size", "score_mode", "window_x", "window_y", "window_size"),
    *("signal", "genuine_tail", "genuine_slices", "modality", "series_description"),
)
SERIES_COLUMNS = (
    *("rank", "score", "score_mode", "slices_scored", "top_slice_rank", "top_slice_index"),
    *("top_slice_number", "top_file", "top_window_x", "top_window_y", "top_window_size"),
    *("study_uid", "series_uid", "modality", "series_description"),
)
PHI_COLUMNS = ("patient_id", "patient_name", "study_date")
FILES_COLUMNS = ("file", "size_bytes", "sha256", "kind", "status", "reason", "link_target")
FILE_STATUSES = ("pending", "scored", "skipped", "error")


@dataclass(frozen=True)
class RunInfo:
    """What was run, where and when: everything the sidecar records besides the results.

    ``started_utc`` / ``ended_utc`` must be timezone-aware (they are written in UTC);
    ``settings`` holds whatever the caller chose (stride in pixels, body-mask
    threshold, batch size, ...) and must be JSON-serialisable or convertible by ``str``.
    """

    tool_version: str
    command_line: list[str]
    host: str
    started_utc: datetime
    ended_utc: datetime
    study_root: Path
    model_path: Path
    model_sha256: str
    model_card: ModelCard
    provider: str
    provider_note: str
    settings: dict[str, object]
    library_versions: dict[str, str]


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the report files written by :func:`write_report`."""

    findings_csv: Path
    files_csv: Path
    sidecar_json: Path
    series_csv: Path


def write_report(
    out_dir: Path,
    run: RunInfo,
    findings: Sequence[Finding],
    files: Sequence[FileRecord],
    include_phi: bool = True,
    extra_files: Sequence[Path] = (),
    slices_scored: int | None = None,
) -> ReportFiles:
    """Write ``findings.csv``, ``series.csv``, ``files.csv`` and ``report.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir:
        Output folder, created if needed; must not be (inside) ``run.study_root``.
    run:
        What was run (see :class:`RunInfo`).
    findings:
        Ranked findings, most suspicious first; all go to the CSV, the first
        :data:`TOP_FINDINGS` also to the sidecar.
    files:
        Every file examined.
    include_phi:
        Whether patient ID, patient name and study date are written.
    extra_files:
        Files already written into ``out_dir`` (e.g. PNG overlays), absolute or
        relative to ``out_dir``; their SHA-256 go into the sidecar's ``report_files``.
    slices_scored:
        Number of slices scored; defaults to the number of distinct slices in ``findings``.

    Raises
    ------
    ValueError
        When ``out_dir`` is inside the study root (nothing is written then), when a
        timestamp is naive, or when an extra file lies outside ``out_dir``.
    """
    check_output_outside(out_dir, run.study_root, what="report folder", inputs_are="study root")
    out = Path(out_dir).expanduser().resolve()
    for stamp in (run.started_utc, run.ended_utc):
        iso_utc(stamp)
    extras = _extra_file_hashes(out, extra_files)
    out.mkdir(parents=True, exist_ok=True)
    rows = [finding_row(f, run.model_card.reduction, include_phi) for f in findings]
    columns = FINDINGS_COLUMNS + (PHI_COLUMNS if include_phi else ())
    series_rows = [series_row(s, include_phi) for s in rank_series(findings)]
    findings_csv = out / "findings.csv"
    series_csv = out / "series.csv"
    files_csv = out / "files.csv"
    series_columns = SERIES_COLUMNS + (PHI_COLUMNS if include_phi else ())
    hashes = {
        findings_csv.name: _write_atomic(findings_csv, csv_bytes(columns, rows, NUMERIC_COLUMNS)),
        series_csv.name: _write_atomic(
            series_csv, csv_bytes(series_columns, series_rows, NUMERIC_COLUMNS)
        ),
        files_csv.name: _write_atomic(files_csv, _files_csv(files)),
        **extras,
    }
    if slices_scored is None:
        slices_scored = len({(f.result.series_key, f.result.slice_index) for f in findings})
    sidecar = _sidecar(run, rows, files, include_phi, hashes, slices_scored, len(findings))
    sidecar["top_findings"] = [
        {**row, **rarity_record(finding, slices_scored)}  # type: ignore[dict-item]
        for row, finding in zip(sidecar["top_findings"], findings, strict=False)
    ]
    sidecar["chance_leads"] = chance_record(findings, slices_scored)
    sidecar["series_ranking"] = [json_safe(row) for row in series_rows[:TOP_FINDINGS]]
    sidecar_json = out / "report.json"
    _write_atomic(sidecar_json, json_bytes(sidecar))
    return ReportFiles(findings_csv, files_csv, sidecar_json, series_csv)


def series_row(ranked: SeriesFinding, include_phi: bool = True) -> dict[str, object]:
    """One series of :func:`btd_core.findings.ranking.rank_series` as a row of typed values."""
    top = ranked.top
    result, series = top.result, top.series
    row: dict[str, object] = {
        "rank": ranked.rank,
        "score": float(result.score),
        "score_mode": result.score_mode,
        "slices_scored": ranked.slices_scored,
        "top_slice_rank": top.rank,
        "top_slice_index": result.slice_index,
        "top_slice_number": result.slice_index + 1,
        "top_file": top.file.relpath,
        "top_window_x": result.window_x,
        "top_window_y": result.window_y,
        "top_window_size": result.window_size,
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "modality": series.modality,
        "series_description": series.description,
    }
    if include_phi:
        row.update(_phi(series))
    return row


def finding_row(finding: Finding, reduction: str, include_phi: bool = True) -> dict[str, object]:
    """One finding as a row of typed values (numbers, raw text, ``None`` for absent).

    ``reduction`` is the model card's score reduction (e.g. ``"mean_sq"``); positions
    and the slice location are in mm, tile coordinates and size in pixels.
    """
    result, series, ref = finding.result, finding.series, finding.slice
    position = ref.position or (None, None, None)
    row: dict[str, object] = {
        "rank": finding.rank,
        "score": float(result.score),
        "reduction": reduction,
        "file": finding.file.relpath,
        "file_sha256": finding.file.sha256,
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "sop_instance_uid": ref.sop_instance_uid,
        "frame": ref.frame,
        "slice_index": result.slice_index,
        "slice_number": result.slice_index + 1,
        "slice_location_mm": ref.location,
        "position_x_mm": position[0],
        "position_y_mm": position[1],
        "position_z_mm": position[2],
        "orientation": ref.orientation,
        "tile_x": result.tile_x,
        "tile_y": result.tile_y,
        "tile_size": result.tile_size,
        "score_mode": result.score_mode,
        "window_x": result.window_x,
        "window_y": result.window_y,
        "window_size": result.window_size,
        "signal": result.signal,
        "genuine_tail": finding.genuine_tail,
        "genuine_slices": finding.genuine_slices,
        "modality": series.modality,
        "series_description": series.description,
    }
    if include_phi:
        row.update(_phi(series))
    return row


def rarity_record(finding: Finding, slices: int) -> dict[str, object]:
    """A top finding's rarity for ``report.json``: the tail in words (``rarity``) and
    how many of the study's ``slices`` would score as high by chance if all were genuine
    (``chance_leads``, slices x tail); both ``None`` without genuine scores."""
    tail, genuine = finding.genuine_tail, finding.genuine_slices
    if tail is None or not genuine:
        return {"rarity": None, "chance_leads": None}
    return {"rarity": rarity_text(tail, genuine), "chance_leads": chance_leads(tail, slices)}


def chance_record(findings: Sequence[Finding], slices: int) -> dict[str, object] | None:
    """The study's false-discovery view at its top lead's level (``None`` without genuine
    scores): the tail, the genuine slices, the study's slices, the expected number of
    chance leads at that level and the line that says it."""
    top = findings[0] if findings else None
    if top is None or top.genuine_tail is None or not top.genuine_slices:
        return None
    tail, genuine = top.genuine_tail, top.genuine_slices
    return {
        "rank": top.rank,
        "genuine_tail": tail,
        "genuine_slices": genuine,
        "study_slices": slices,
        "expected": chance_leads(tail, slices),
        "text": chance_text(tail, genuine, slices),
    }


def _phi(series: Series) -> dict[str, object]:
    """The series' patient fields (left out of reports made with ``include_phi=False``)."""
    return {
        "patient_id": series.patient_id,
        "patient_name": series.patient_name,
        "study_date": series.study_date,
    }


def _extra_file_hashes(out: Path, extra_files: Sequence[Path]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for extra in extra_files:
        path = (out / extra).resolve()
        if out not in path.parents:
            raise ValueError(f"extra report file {extra} is not inside the output folder {out}")
        name = path.relative_to(out).as_posix()
        if name in ("findings.csv", "files.csv", "report.json"):
            raise ValueError(f"extra report file {extra} would clash with the report's own files")
        hashes[name] = file_sha256(path)
    return hashes


def _write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to a temporary file beside ``path``, then rename; returns SHA-256."""
    atomic_write_bytes(path, data)
    return bytes_sha256(data)


def _files_csv(files: Sequence[FileRecord]) -> bytes:
    rows = [
        {c: getattr(record, "relpath" if c == "file" else c) for c in FILES_COLUMNS}
        for record in files
    ]
    return csv_bytes(FILES_COLUMNS, rows, NUMERIC_COLUMNS)


def _sidecar(
    run: RunInfo,
    rows: Sequence[dict[str, object]],
    files: Sequence[FileRecord],
    include_phi: bool,
    hashes: dict[str, str],
    slices_scored: int,
    n_findings: int,
) -> dict[str, object]:
    by_status = {status: 0 for status in FILE_STATUSES}
    for record in files:
        by_status[record.status] = by_status.get(record.status, 0) + 1
    return {
        "tool": {"name": "btd", "version": run.tool_version},
        "command_line": list(run.command_line),
        "host": run.host,
        "started_utc": iso_utc(run.started_utc),
        "ended_utc": iso_utc(run.ended_utc),
        "study_root": str(run.study_root),
        "model": model_record(run.model_path, run.model_sha256, run.model_card),
        "provider": {"in_use": run.provider, "note": run.provider_note},
        "settings": json_safe(dict(run.settings)),
        "library_versions": dict(run.library_versions),
        "counts": {
            "files": by_status,
            "files_total": len(files),
            "slices_scored": slices_scored,
            "findings": n_findings,
        },
        "include_phi": include_phi,
        "report_files": hashes,
        "top_findings": [json_safe(row) for row in rows[:TOP_FINDINGS]],
    }
