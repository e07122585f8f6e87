"""The archive's own report: ``OUT/studies.csv`` (studies ranked) and ``OUT/archive.json``.

``studies.csv`` has one row per unit of the manifest, every study accounted for: those
scanned ranked by their most suspicious slice (``top_score``, highest first; ties by
study key), then those without a score (nothing scored, failed, not done yet, gone),
each with its ``status`` and ``reason``.  With the calibrated score, scores are
surprises comparable across studies; with ``local``/``tile`` they are residual energies
(comparable only between studies of similar images).  Text cells are made safe as in
every btd CSV (:func:`btd_core.findings.csv_table.csv_bytes`: control characters as
visible escapes, formula starts neutralised).

``archive.json`` records the run (tool, command line, host, UTC times, root, model file
and SHA-256, how the units ran), the settings, counts by status, and the SHA-256 of
``studies.csv``, of ``index.html`` (:mod:`btd_core.archive.html_index`) and of every
study's ``report.json`` (each of which holds the SHA-256 of its own files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from btd_core.archive.manifest import UnitRow
from btd_core.atomic import atomic_write_bytes
from btd_core.findings.csv_table import csv_bytes
from btd_core.findings.provenance import json_bytes
from btd_core.hashing import bytes_sha256

STUDIES_CSV = "studies.csv"
ARCHIVE_JSON = "archive.json"
STUDIES_DIR = "studies"
STUDY_COLUMNS = (
    *("rank", "study", "label", "status", "reason", "top_score", "score_mode"),
    *("top_series_description", "top_series_uid", "top_file", "top_slice_number"),
    *("series", "slices_scored", "files", "files_failed", "study_uids", "modalities"),
    *("attempts", "worker", "report_folder"),
)
PHI_COLUMNS = ("patient_id", "patient_name", "study_date")
NUMERIC = frozenset(
    {"rank", "top_score", "top_slice_number", "series", "slices_scored", "files"}
    | {"files_failed", "attempts"}
)
STATUSES = ("scored", "partly", "unscored", "failed", "pending", "running", "gone")
"""A study's status in ``studies.csv``: ``scored`` (every file read), ``partly`` (slices
scored, some files failed: ``reason`` names the first), ``unscored`` (its report is
written but no slice could be scored), ``failed`` (could not be scanned: ``reason``),
``pending``/``running`` (not done: the run stopped first), ``gone`` (no longer under the
root)."""


@dataclass(frozen=True)
class StudyRow:
    """One study of the archive, as ranked: its manifest row and where it stands."""

    rank: int | None
    unit: UnitRow
    status: str
    reason: str
    top_score: float | None


def study_status(unit: UnitRow) -> tuple[str, str]:
    """``(status, reason)`` of a unit (see :data:`STATUSES`)."""
    if unit.state == "done":
        status = str(unit.summary.get("status", "scored"))
        reason = str(unit.summary.get("first_error", "")) if status != "scored" else ""
        if status == "unscored" and not reason:
            reason = "no slice could be scored (see files.csv)"
        return status, reason
    return unit.state, unit.reason


def ranked_studies(units: Sequence[UnitRow]) -> list[StudyRow]:
    """Every unit, ranked: by top score (highest first, ties by key), then the rest by
    status and key."""
    rows = []
    for unit in units:
        status, reason = study_status(unit)
        score = unit.summary.get("top_score") if unit.state == "done" else None
        rows.append(
            StudyRow(None, unit, status, reason, float(score) if score is not None else None)
        )
    scored = sorted((r for r in rows if r.top_score is not None), key=_score_order)
    rest = sorted(
        (r for r in rows if r.top_score is None),
        key=lambda r: (STATUSES.index(r.status) if r.status in STATUSES else 99, r.unit.key),
    )
    ranked = [StudyRow(i, r.unit, r.status, r.reason, r.top_score) for i, r in enumerate(scored, 1)]
    return ranked + rest


def _score_order(row: StudyRow) -> tuple[float, str]:
    return (-(row.top_score or 0.0), row.unit.key)


def study_csv_row(row: StudyRow, include_phi: bool) -> dict[str, object]:
    """One ``studies.csv`` row of typed values."""
    summary = row.unit.summary if row.unit.state == "done" else {}
    index = summary.get("top_slice_index")
    values: dict[str, object] = {
        "rank": row.rank,
        "study": row.unit.key,
        "label": row.unit.label,
        "status": row.status,
        "reason": row.reason,
        "top_score": row.top_score,
        "score_mode": summary.get("score_mode"),
        "top_series_description": summary.get("top_series_description"),
        "top_series_uid": summary.get("top_series_uid"),
        "top_file": summary.get("top_file"),
        "top_slice_number": index + 1 if isinstance(index, int) else None,
        "series": summary.get("series"),
        "slices_scored": summary.get("slices_scored"),
        "files": summary.get("files"),
        "files_failed": summary.get("files_failed"),
        "study_uids": " ".join(summary.get("study_uids", [])) or None,
        "modalities": " ".join(summary.get("modalities", [])) or None,
        "attempts": row.unit.attempts,
        "worker": row.unit.worker,
        "report_folder": f"{STUDIES_DIR}/{row.unit.folder}" if row.unit.state == "done" else None,
    }
    if include_phi:
        for name in PHI_COLUMNS:
            values[name] = summary.get(name)
    return values


def write_studies_csv(out: Path, units: Sequence[UnitRow], include_phi: bool) -> str:
    """Write ``OUT/studies.csv`` atomically; returns its SHA-256."""
    columns = STUDY_COLUMNS + (PHI_COLUMNS if include_phi else ())
    rows = [study_csv_row(r, include_phi) for r in ranked_studies(units)]
    data = csv_bytes(columns, rows, NUMERIC)
    atomic_write_bytes(Path(out) / STUDIES_CSV, data)
    return bytes_sha256(data)


def status_counts(units: Sequence[UnitRow]) -> dict[str, int]:
    """How many studies have each status (every status listed, zeros too)."""
    counts = dict.fromkeys(STATUSES, 0)
    for unit in units:
        status, _ = study_status(unit)
        counts[status] = counts.get(status, 0) + 1
    return counts


def write_archive_json(
    out: Path,
    units: Sequence[UnitRow],
    studies_csv_sha256: str,
    run: Mapping[str, object],
    other_files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``OUT/archive.json`` atomically: ``run`` (provenance and settings, from the
    driver), the counts and the hashes of every report (``other_files``: more of OUT's
    files, name -> SHA-256, such as ``index.html``)."""
    reports = {
        f"{STUDIES_DIR}/{u.folder}/report.json": u.report_sha256
        for u in units
        if u.state == "done" and u.report_sha256
    }
    record = {
        **run,
        "counts": {
            "studies": len(units),
            "by_status": status_counts(units),
            "slices_scored": sum(int(u.summary.get("slices_scored") or 0) for u in units),
        },
        "report_files": {STUDIES_CSV: studies_csv_sha256, **(other_files or {})},
        "study_reports": reports,
    }
    path = Path(out) / ARCHIVE_JSON
    atomic_write_bytes(path, json_bytes(record))
    return path
