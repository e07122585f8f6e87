"""A report folder written by ``btd scan``, read back (no rescoring): to browse a scan that
ran elsewhere (a GPU box, a batch job).

:func:`read_report` reads ``report.json`` and ``findings.csv`` and checks them against the
SHA-256 the sidecar recorded for each report file, so a report edited after it was written
is named as such.  :func:`attach_to_study` puts the rows back on the study's slices as
:class:`~btd_core.study.records.Finding` objects (the app's table and previews take those),
matched by file and frame, and says which files changed or went missing since the scan.

A report folder is input here, like a study: it is read, never written; its size is checked
before it is read (:data:`MAX_REPORT_BYTES`), and its text stays data (the CSV cells were
neutralised when written and are shown through :func:`btd_core.safe_text.printable`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from btd_core.engine.model_card import ModelCard, ModelCardError
from btd_core.errors import BtdError
from btd_core.findings.csv_table import neutralise_cell
from btd_core.hashing import bytes_sha256
from btd_core.study.records import (
    SIGNALS,
    Discovery,
    FileRecord,
    Finding,
    Series,
    SliceRef,
    SliceResult,
)

MAX_REPORT_BYTES = 512 * 1024 * 1024
"""Largest ``findings.csv`` or ``report.json`` read (bytes): a report of about 2 million
slices; anything bigger is refused before it is read."""

REPORT_FILES = ("report.json", "findings.csv")


class ReportReadError(BtdError, ValueError):
    """The folder is not a readable btd report (the message says what is wrong)."""


def is_report_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a btd report (``report.json`` and
    ``findings.csv``)."""
    return path.is_dir() and all((path / name).is_file() for name in REPORT_FILES)


@dataclass(frozen=True)
class ReportRow:
    """One ranked slice of ``findings.csv``: as written (text neutralised), numbers parsed.

    Positions in pixels of the slice (``tile_*``, ``window_*``); ``slice_index`` from 0.
    ``signal``, ``genuine_tail`` and ``genuine_slices``: which signal fired (one of
    :data:`btd_core.study.records.SIGNALS`, ``""`` in reports written before btd recorded
    it) and the rarity among genuine slices (``None`` when the report has none).
    """

    rank: int
    score: float
    file: str
    file_sha256: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame: int | None
    slice_index: int
    slice_location_mm: float | None
    tile_x: int
    tile_y: int
    tile_size: int
    score_mode: str
    window_x: int | None
    window_y: int | None
    window_size: int | None
    modality: str
    series_description: str
    signal: str = ""
    genuine_tail: float | None = None
    genuine_slices: int | None = None


@dataclass(frozen=True)
class SavedReport:
    """A report folder, read back.

    ``altered`` names the report files whose SHA-256 differs from the one the sidecar
    recorded (empty: the report is as written); ``card`` is ``None`` when the sidecar's
    model card cannot be read (the previews then cannot window the pixels as the scan did).
    """

    folder: Path
    sidecar: dict
    rows: list[ReportRow]
    card: ModelCard | None
    altered: list[str] = field(default_factory=list)

    @property
    def study_root(self) -> Path:
        """Where the study was when it was scanned."""
        return Path(str(self.sidecar.get("study_root", "")))

    def summary(self) -> str:
        """One line: tool version, when and where it ran, the model and provider."""
        tool = self.sidecar.get("tool", {})
        model = self.sidecar.get("model", {})
        provider = self.sidecar.get("provider", {})
        started = str(self.sidecar.get("started_utc", "?")).split(".")[0].replace("T", " ")
        return (
            f"btd {tool.get('version', '?')} · {started} UTC on "
            f"{self.sidecar.get('host', '?')} · model {Path(str(model.get('path', '?'))).name} "
            f"({str(model.get('sha256', ''))[:12]}) · provider {provider.get('in_use', '?')}"
        )


def _read_bounded(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_REPORT_BYTES:
        raise ReportReadError(
            f"{path.name} is {size} bytes, more than the {MAX_REPORT_BYTES} a report may hold"
        )
    return path.read_bytes()


def _number(text: str, kind: type, column: str, line: int) -> int | float | None:
    if text == "":
        return None
    try:
        value = kind(text)
    except ValueError as err:
        raise ReportReadError(
            f"findings.csv line {line}: {column} {text!r} is not a number"
        ) from err
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportReadError(f"findings.csv line {line}: {column} {text!r} is not finite")
    return value


def _required(value: int | float | None, column: str, line: int) -> int | float:
    if value is None:
        raise ReportReadError(f"findings.csv line {line}: {column} is empty")
    return value


def _signal(cell: str) -> str:
    """A signal cell, when it names one btd writes (:data:`SIGNALS`), else ``""``."""
    return cell if cell in SIGNALS else ""


def _tail(value: float | None, line: int) -> float | None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ReportReadError(f"findings.csv line {line}: genuine_tail {value} is not in (0, 1]")
    return value


def _count(value: int | None, line: int) -> int | None:
    if value is not None and value < 1:
        raise ReportReadError(f"findings.csv line {line}: genuine_slices {value} is not positive")
    return value


def _rows(data: bytes) -> list[ReportRow]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReportReadError(f"findings.csv is not UTF-8 text: {err}") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    needed = {"rank", "score", "file", "slice_index", "tile_x", "tile_y", "tile_size"}
    missing = needed - set(reader.fieldnames or ())
    if missing:
        raise ReportReadError(f"findings.csv lacks the columns {', '.join(sorted(missing))}")
    rows = []
    for line, cells in enumerate(reader, start=2):

        def num(column: str, kind: type = int, cells: dict = cells, line: int = line):
            return _number(cells.get(column) or "", kind, column, line)

        rows.append(
            ReportRow(
                rank=int(_required(num("rank"), "rank", line)),
                score=float(_required(num("score", float), "score", line)),
                file=cells["file"],
                file_sha256=cells.get("file_sha256") or "",
                study_uid=cells.get("study_uid") or "",
                series_uid=cells.get("series_uid") or "",
                sop_instance_uid=cells.get("sop_instance_uid") or "",
                frame=num("frame"),  # type: ignore[arg-type]
                slice_index=int(_required(num("slice_index"), "slice_index", line)),
                slice_location_mm=num("slice_location_mm", float),  # type: ignore[arg-type]
                tile_x=int(_required(num("tile_x"), "tile_x", line)),
                tile_y=int(_required(num("tile_y"), "tile_y", line)),
                tile_size=int(_required(num("tile_size"), "tile_size", line)),
                score_mode=cells.get("score_mode") or "tile",
                window_x=num("window_x"),  # type: ignore[arg-type]
                window_y=num("window_y"),  # type: ignore[arg-type]
                window_size=num("window_size"),  # type: ignore[arg-type]
                modality=cells.get("modality") or "",
                series_description=cells.get("series_description") or "",
                signal=_signal(cells.get("signal") or ""),
                genuine_tail=_tail(num("genuine_tail", float), line),  # type: ignore[arg-type]
                genuine_slices=_count(num("genuine_slices"), line),  # type: ignore[arg-type]
            )
        )
    rows.sort(key=lambda row: row.rank)
    return rows


def read_report(folder: Path) -> SavedReport:
    """Read the report in ``folder`` (``report.json`` and ``findings.csv``).

    Raises
    ------
    ReportReadError
        When a file is missing, too large, not JSON/CSV, or lacks what a btd report holds.
    """
    folder = Path(folder)
    if not is_report_folder(folder):
        raise ReportReadError(
            f"{folder} is not a btd report folder (it needs report.json and findings.csv)"
        )
    try:
        sidecar_bytes = _read_bounded(folder / "report.json")
        findings_bytes = _read_bounded(folder / "findings.csv")
    except OSError as err:
        raise ReportReadError(f"cannot read the report in {folder}: {err}") from err
    try:
        sidecar = json.loads(sidecar_bytes)
    except ValueError as err:
        raise ReportReadError(f"report.json is not JSON: {err}") from err
    if not isinstance(sidecar, dict) or sidecar.get("tool", {}).get("name") != "btd":
        raise ReportReadError("report.json was not written by btd (no tool name 'btd')")
    recorded = sidecar.get("report_files") or {}
    altered = [
        name
        for name, data in (("findings.csv", findings_bytes),)
        if recorded.get(name) and bytes_sha256(data) != recorded[name]
    ]
    card = None
    metadata = (sidecar.get("model") or {}).get("card")
    if isinstance(metadata, dict):
        try:
            card = ModelCard.from_metadata({str(k): str(v) for k, v in metadata.items()})
        except (ModelCardError, ValueError, TypeError):
            card = None
    return SavedReport(folder, sidecar, _rows(findings_bytes), card, altered)


@dataclass(frozen=True)
class AttachedReport:
    """The report's rows on the study's slices.

    ``findings`` in rank order; ``changed`` files whose SHA-256 differs from the report's;
    ``missing`` files the report names that the study no longer holds (their rows are
    kept, on a series of the report's own, without pixels).
    """

    findings: list[Finding]
    series: list[Series]
    changed: list[str]
    missing: list[str]


def _report_series_key(row: ReportRow) -> str:
    return row.series_uid or f"report:{row.file.rsplit('/', 1)[0] if '/' in row.file else '.'}"


def attach_to_study(report: SavedReport, discovery: Discovery | None) -> AttachedReport:
    """Match each report row to the study's slice by file and frame (``discovery`` of the
    study as it is now; ``None`` when it cannot be reached)."""
    by_place: dict[tuple[str, int | None], tuple[Series, int]] = {}
    records: dict[str, FileRecord] = {}
    if discovery is not None:
        by_path = {str(record.path): record for record in discovery.files}
        for series in discovery.series:
            for index, ref in enumerate(series.slices):
                record = by_path.get(str(ref.path))
                if record is not None:  # the report's file cell: the relpath as written
                    by_place[(neutralise_cell(record.relpath), ref.frame)] = (series, index)
        for record in discovery.files:
            records[neutralise_cell(record.relpath)] = record
    findings: list[Finding] = []
    orphans: dict[str, Series] = {}
    changed: list[str] = []
    missing: list[str] = []
    for row in report.rows:
        place = by_place.get((row.file, row.frame))
        record = records.get(row.file)
        if place is not None and record is not None:
            series, index = place
            if row.file_sha256 and record.sha256 and record.sha256 != row.file_sha256:
                changed.append(row.file)
            ref = series.slices[index]
        else:
            missing.append(row.file)
            key = _report_series_key(row)
            series = orphans.setdefault(
                key,
                Series(
                    key=key,
                    kind="dicom" if row.series_uid else "image",  # type: ignore[arg-type]
                    study_uid=row.study_uid,
                    series_uid=row.series_uid,
                    modality=row.modality,
                    description=row.series_description,
                ),
            )
            ref = SliceRef(
                path=report.study_root / row.file,
                frame=row.frame,
                sop_instance_uid=row.sop_instance_uid,
                location=row.slice_location_mm,
            )
            index = row.slice_index
            while len(series.slices) <= index:
                series.slices.append(ref)
            series.slices[index] = ref
            record = FileRecord(
                path=ref.path,
                relpath=row.file,
                size_bytes=None,
                sha256=row.file_sha256,
                kind="dicom",  # type: ignore[arg-type]
                status="scored",  # type: ignore[arg-type]
            )
        result = SliceResult(
            series_key=series.key,
            slice_index=index,
            score=row.score,
            tile_x=row.tile_x,
            tile_y=row.tile_y,
            tile_size=row.tile_size,
            tiles_scored=0,
            tiles_skipped=0,
            window_x=row.window_x,
            window_y=row.window_y,
            window_size=row.window_size,
            score_mode=row.score_mode,
            signal=row.signal,
        )
        findings.append(
            Finding(row.rank, result, series, ref, record, row.genuine_tail, row.genuine_slices)
        )
    known = [] if discovery is None else list(discovery.series)
    return AttachedReport(
        findings, known + list(orphans.values()), sorted(set(changed)), sorted(set(missing))
    )


def unique_files(rows: Sequence[ReportRow]) -> list[str]:
    """The report's files, each once, in rank order."""
    return list(dict.fromkeys(row.file for row in rows))


def _as_written(cell: str) -> str:
    """A file cell back to the relative path, where the CSV writer's neutralising can be
    undone (a quote put before a formula-like name); escaped control characters stay."""
    if cell.startswith("'") and cell[1:2] and cell[1] in "=+-@":
        return cell[1:]
    return cell


def examined_entries(report: SavedReport) -> list[str]:
    """The study entries the scan examined (``files.csv``; ``findings.csv``'s files when it
    is missing), relative to the study root: what to read again to rebuild its series
    without walking anything else (a zip's members come from the zip itself)."""
    path = report.folder / "files.csv"
    names: list[str] = []
    if path.is_file():
        try:
            text = _read_bounded(path).decode("utf-8")
            names = [row.get("file") or "" for row in csv.DictReader(io.StringIO(text))]
        except (OSError, UnicodeDecodeError, csv.Error, ReportReadError):
            names = []
    if not names:
        names = unique_files(report.rows)
    entries = (_as_written(name).split("!/", 1)[0] for name in names if name)
    return list(dict.fromkeys(entries))
