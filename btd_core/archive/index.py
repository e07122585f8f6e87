"""Reading an archive back: its studies, ranked, for the app and for scripts.

::

    from btd_core.archive.index import read_archive

    index = read_archive(Path("OUT"))
    for study in index.studies:  # ranked: most suspicious first, then the unscored
        print(study.rank, study.key, study.status, study.top_score, study.report_dir)

Reads ``OUT/manifest.sqlite`` read-only (safe while a run is writing it: SQLite WAL), so
what it gives is the live state, the same rows and order as ``OUT/studies.csv``.  Text
fields are raw data from file names and DICOM tags: make them printable
(:func:`btd_core.safe_text.printable`) and show them as plain text, never markup.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from btd_core.archive.manifest import MANIFEST_NAME, connect, read_meta, row_of
from btd_core.archive.summary import STUDIES_DIR, ranked_studies
from btd_core.errors import BtdError


class ArchiveReadError(BtdError, ValueError):
    """The folder is not a ``btd archive`` output (no manifest), or it cannot be read."""


@dataclass(frozen=True)
class ArchiveStudy:
    """One study of an archive.

    Attributes
    ----------
    rank:
        1 = most suspicious; ``None`` for a study without a score (not scored, failed,
        not done yet, gone).
    key:
        The unit's key: ``folder:<path under the root>`` or ``study:<Study Instance UID>``.
    label:
        A short name (the folder, or the folder and the UID).
    status, reason:
        ``scored``, ``partly``, ``unscored``, ``failed``, ``pending``, ``running`` or
        ``gone`` (see :data:`btd_core.archive.summary.STATUSES`), and why (``""`` when
        nothing is to be said).
    top_score:
        The most suspicious slice's score, or ``None``.
    score_mode:
        ``calibrated``, ``local`` or ``tile`` (``None`` when not scanned).
    series, slices_scored, files, files_failed:
        Counts from its report (0 when not scanned).
    top_series_description, top_file, top_slice_number:
        Where its most suspicious slice is (``top_slice_number`` counts from 1).
    patient_name, patient_id, study_date:
        From its first DICOM series with patient fields (``""`` with ``--no-phi``).
    report_dir:
        ``OUT/studies/<folder>``: a folder like ``btd scan --out`` writes (findings.csv,
        series.csv, files.csv, report.json, overlays/), or ``None`` when the study has no
        complete report.
    source:
        The folder it was scanned from (absolute).
    attempts, worker:
        Times handed to a worker, and the last worker (``host:pid``).
    """

    rank: int | None
    key: str
    label: str
    status: str
    reason: str
    top_score: float | None
    score_mode: str | None
    series: int
    slices_scored: int
    files: int
    files_failed: int
    top_series_description: str
    top_file: str
    top_slice_number: int | None
    patient_name: str
    patient_id: str
    study_date: str
    report_dir: Path | None
    source: Path
    attempts: int
    worker: str


@dataclass(frozen=True)
class ArchiveIndex:
    """An archive's studies, ranked, and what it is: its ``root`` (the folder audited),
    the model's SHA-256, when it was created (ISO 8601 UTC) and where it lies (``out``)."""

    out: Path
    root: Path
    model_sha256: str
    created_utc: str
    studies: list[ArchiveStudy]

    def counts(self) -> dict[str, int]:
        """How many studies have each status."""
        counts: dict[str, int] = {}
        for study in self.studies:
            counts[study.status] = counts.get(study.status, 0) + 1
        return counts


def is_archive(folder: Path) -> bool:
    """Whether ``folder`` is a ``btd archive`` output (it holds the manifest)."""
    return (Path(folder) / MANIFEST_NAME).is_file()


def read_archive(out: Path) -> ArchiveIndex:
    """The studies of the archive in ``out``, ranked as ``studies.csv`` ranks them.

    Raises
    ------
    ArchiveReadError
        ``out`` holds no manifest, or it cannot be read.
    """
    out = Path(out).expanduser().resolve()
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise ArchiveReadError(f"{out} is not a btd archive output: no {MANIFEST_NAME} in it")
    try:
        connection = connect(path, readonly=True)
        try:
            meta = read_meta(connection)
            rows = [row_of(r) for r in connection.execute("SELECT * FROM units ORDER BY key")]
        finally:
            connection.close()
    except sqlite3.Error as err:
        raise ArchiveReadError(f"cannot read {path}: {err}") from None
    root = Path(meta.get("root", ""))
    studies = []
    for ranked in ranked_studies(rows):
        unit = ranked.unit
        summary = unit.summary if unit.state == "done" else {}
        report = out / STUDIES_DIR / unit.folder
        index = summary.get("top_slice_index")
        studies.append(
            ArchiveStudy(
                rank=ranked.rank,
                key=unit.key,
                label=unit.label,
                status=ranked.status,
                reason=ranked.reason,
                top_score=ranked.top_score,
                score_mode=summary.get("score_mode"),
                series=int(summary.get("series") or 0),
                slices_scored=int(summary.get("slices_scored") or 0),
                files=int(summary.get("files") or 0),
                files_failed=int(summary.get("files_failed") or 0),
                top_series_description=str(summary.get("top_series_description") or ""),
                top_file=str(summary.get("top_file") or ""),
                top_slice_number=index + 1 if isinstance(index, int) else None,
                patient_name=str(summary.get("patient_name") or ""),
                patient_id=str(summary.get("patient_id") or ""),
                study_date=str(summary.get("study_date") or ""),
                report_dir=report if unit.state == "done" and report.is_dir() else None,
                source=root if unit.root == "." else root.joinpath(*unit.root.split("/")),
                attempts=unit.attempts,
                worker=unit.worker,
            )
        )
    return ArchiveIndex(
        out=out,
        root=root,
        model_sha256=meta.get("model_sha256", ""),
        created_utc=meta.get("created_utc", ""),
        studies=studies,
    )
