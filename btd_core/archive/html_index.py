"""The archive's ``OUT/index.html``: its studies ranked, each linked to its ``report.html``.

One self-contained page (:mod:`btd_core.findings.html_page`: inline CSS, no script, nothing
fetched) with the rows and order of ``studies.csv``: rank, the study's name, status and
why, its top score, where its most suspicious slice is, and a link to
``studies/<folder>/report.html`` (relative, so the archive folder can be moved or copied
as a whole) when that page exists.  Text from folder names and DICOM tags is escaped and
made printable, as everywhere.  Written at the end of every run (a stopped one too),
beside ``studies.csv``; ``archive.json`` hashes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from btd_core.archive.manifest import UnitRow
from btd_core.archive.summary import (
    STUDIES_DIR,
    StudyRow,
    ranked_studies,
    status_counts,
    study_csv_row,
)
from btd_core.findings.html_page import render_page, write_page
from btd_core.findings.html_report import REPORT_HTML
from btd_core.safe_text import printable

INDEX_HTML = "index.html"


def write_archive_index(
    out: Path, units: Sequence[UnitRow], run: Mapping[str, object], include_phi: bool
) -> str:
    """Write ``OUT/index.html`` atomically; returns its SHA-256.

    ``run``: the archive's run record (``archive.json`` without its counts: tool, root,
    model, UTC times, settings); ``include_phi``: whether patient names are listed.
    """
    out = Path(out)
    html = render_page(
        "archive_index.html.j2",
        title=f"btd archive: {printable(Path(str(run.get('root', out))).name)}",
        version=printable(_get(run, "tool", "version")),
        facts=_facts(run),
        counts={k: v for k, v in status_counts(units).items() if v},
        studies=[_study(out, row, include_phi) for row in ranked_studies(units)],
        include_phi=include_phi,
        calibrated=_get(run, "calibration_sha256") not in ("", "none"),
    )
    return write_page(out / INDEX_HTML, html)


def _get(record: Mapping[str, object], *keys: str) -> str:
    """``record[k1][k2]...`` as text, ``""`` when absent."""
    value: object = record
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def _facts(run: Mapping[str, object]) -> list[tuple[str, str]]:
    rows = [
        ("archive root", _get(run, "root")),
        ("model file", _get(run, "model", "path")),
        ("model SHA-256", _get(run, "model", "sha256")),
        ("calibration SHA-256", _get(run, "calibration_sha256")),
        ("btd version", _get(run, "tool", "version")),
        ("this run started (UTC)", _get(run, "started_utc")),
        ("this run ended (UTC)", _get(run, "ended_utc")),
        ("host", _get(run, "host")),
        ("executor", _get(run, "executor")),
    ]
    return [(label, printable(value)) for label, value in rows if value]


def _study(out: Path, ranked: StudyRow, include_phi: bool) -> dict[str, object]:
    """One study's row: ``studies.csv``'s values, printable, and the link to its page."""
    row = study_csv_row(ranked, include_phi)
    folder = row.get("report_folder")
    link = None
    if folder and (out / str(folder) / REPORT_HTML).is_file():
        link = quote(f"{folder}/{REPORT_HTML}")
    number = row.get("top_slice_number")
    return {
        "rank": row["rank"],
        "label": printable(row["label"] or row["study"]),
        "study": printable(row["study"]),
        "status": printable(row["status"]),
        "reason": printable(row["reason"] or ""),
        "score": row["top_score"],
        "score_mode": printable(row.get("score_mode") or ""),
        "where": printable(str(row.get("top_series_description") or "")),
        "slice": number or "",
        "files": f"{row.get('files') or 0} ({row.get('files_failed') or 0} failed)",
        "patient": printable(row.get("patient_name") or "") if include_phi else "",
        "link": link,
        "folder": printable(f"{STUDIES_DIR}/{folder}" if folder else ""),
    }
