"""``btd scan --dicom``: each scanned DICOM series' findings as DICOM objects in ``REPORT/dicom/``.

Per DICOM series with scored slices: ``seriesNNN_sr.dcm``, a Comprehensive 3D SR
(:mod:`btd_core.findings.dicom_sr`), and ``seriesNNN_seg.dcm``, a fractional (occupancy) SEG of the
flagged regions (:mod:`btd_core.findings.dicom_seg`); ``NNN`` is the series' rank in
``series.csv``.  The reported slices of a series are its ``top`` highest-ranked slices
(the scan's ``--top``): no score threshold, because the score's scale depends on the
score mode and the model (only the calibrated z is comparable across models, and no
cut-off has been validated).  The source files are read back (headers only) from the
study, never written.  A series that is not DICOM (``.npy``, image stacks), whose files
cannot be read back as DICOM, or whose headers highdicom refuses, gets a note instead
(``notes`` below, ``README.txt`` in the folder, ``report.json`` under
``settings.dicom``); the scan goes on.  Patient and study modules are copied from the
source images, so this output holds the study's PHI: ``btd scan`` refuses ``--dicom``
with ``--no-phi``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydicom import Dataset

from btd_core.atomic import atomic_write_bytes
from btd_core.findings.dicom_conformance import complete_deidentification, series_slice_spacing
from btd_core.findings.dicom_seg import build_seg
from btd_core.findings.dicom_sr import FlaggedSlice, Producer, build_sr
from btd_core.findings.output_folder import DICOM_FOLDER, DICOM_README, remove_earlier_dicom
from btd_core.findings.ranking import rank_series
from btd_core.safe_text import printable
from btd_core.study.archives import read_member_of_file
from btd_core.study.dicom_framing import read_dataset
from btd_core.study.file_access import open_regular_file, short_message
from btd_core.study.records import Discovery, Finding, Series, SliceRef

"""The sub-folder of the report folder that holds the DICOM objects."""

NOT_DICOM = (
    "not DICOM ({kind} series): no DICOM SR or SEG can reference it; "
    "its findings are in findings.csv and the overlays"
)


@dataclass(frozen=True)
class SeriesExport:
    """What ``--dicom`` did for one series.

    ``files``: the objects written, relative to the report folder (``/`` separators);
    ``note``: why an object is missing (``""`` when both were written).  Text from the
    study (the key) is data.
    """

    series_key: str
    kind: str
    slices: int
    files: tuple[str, ...] = ()
    note: str = ""


@dataclass
class DicomExport:
    """Everything ``--dicom`` wrote into ``REPORT/dicom/`` and what it could not."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    series: list[SeriesExport] = field(default_factory=list)

    def record(self) -> dict[str, object]:
        """The ``settings.dicom`` entry of ``report.json``."""
        return {
            "folder": DICOM_FOLDER,
            "reported_slices": "the top --top slices of each series (no score threshold)",
            "series": [vars(item) | {"files": list(item.files)} for item in self.series],
        }


def write_dicom_findings(
    report_dir: Path,
    findings: Sequence[Finding],
    discovery: Discovery,
    producer: Producer,
    top: int,
) -> DicomExport:
    """Write the SR and SEG of every scored DICOM series into ``report_dir/dicom``.

    ``findings`` are ranked (most suspicious first); ``top`` is how many slices of each
    series are reported (at least 1).  Earlier ``seriesNNN_*.dcm`` files of the folder
    (``--overwrite``) are removed first.  Never raises for a series: its trouble is a note.
    """
    remove_earlier_dicom(report_dir)
    folder = Path(report_dir) / DICOM_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    export = DicomExport(folder)
    by_series: dict[str, list[Finding]] = {}
    for finding in findings:
        by_series.setdefault(finding.result.series_key, []).append(finding)
    for ranked in rank_series(findings):
        series = ranked.top.series
        chosen = by_series[series.key][: max(top, 1)]
        export.series.append(_export_series(folder, ranked.rank, series, chosen, producer))
    export.files = [folder / name for item in export.series for name in _names(item)]
    scored = set(by_series)
    for series in discovery.series:
        if series.key not in scored:
            note = "no slice of it was scored" if series.kind == "dicom" else _not_dicom(series)
            export.series.append(SeriesExport(series.key, series.kind, 0, note=note))
    export.files.append(atomic_write_bytes(folder / DICOM_README, _readme(export)))
    return export


def _names(item: SeriesExport) -> list[str]:
    return [Path(name).name for name in item.files]


def _not_dicom(series: Series) -> str:
    kind = ".npy" if series.kind == "npy" else "image"
    return NOT_DICOM.format(kind=kind)


def _export_series(
    folder: Path, rank: int, series: Series, chosen: Sequence[Finding], producer: Producer
) -> SeriesExport:
    """The SR and SEG of one series, or the note that says why not."""
    if series.kind != "dicom":
        return SeriesExport(series.key, series.kind, len(chosen), note=_not_dicom(series))
    try:
        flagged = [_flagged(finding) for finding in chosen]
    except Exception as err:  # any reader error: the file changed or is odd
        note = f"cannot read the source back as DICOM: {_message(err)}"
        return SeriesExport(series.key, series.kind, len(chosen), note=note)
    written: list[str] = []
    notes: list[str] = []
    description = series.description
    seg = partial(build_seg, slice_spacing=series_slice_spacing(series))
    for suffix, build in (("sr", build_sr), ("seg", seg)):
        name = f"series{rank:03d}_{suffix}.dcm"
        try:
            dataset = complete_deidentification(build(flagged, producer, description))
            atomic_write_bytes(folder / name, _dicom_bytes(dataset))
        except OSError:
            raise  # the report folder itself failed: the scan says so
        except Exception as err:  # highdicom refuses odd headers with many types
            notes.append(f"no {suffix.upper()}: {_message(err)}")
            continue
        written.append(f"{DICOM_FOLDER}/{name}")
    return SeriesExport(series.key, series.kind, len(chosen), tuple(written), "; ".join(notes))


def _message(err: BaseException) -> str:
    """What went wrong, printable and short: the attribute a source header lacks, else
    ``Type: first line of the message``."""
    missing = getattr(err, "name", None) if isinstance(err, AttributeError) else None
    if missing:
        return f"the source header has no {printable(str(missing))}"
    return f"{type(err).__name__}: {short_message(err)}"


def _flagged(finding: Finding) -> FlaggedSlice:
    """A finding with its source file's header, read back from the study."""
    dataset = read_source_header(finding.slice, finding.series)
    return FlaggedSlice(
        dataset=dataset,
        frame=finding.slice.frame,
        rank=finding.rank,
        score=float(finding.result.score),
        region=finding.result.region,
    )


def read_source_header(ref: SliceRef, series: Series) -> Dataset:
    """The DICOM header (no pixel data) of the file that holds ``ref``: a file of the
    study, a symlink's target inside it, or a ``.zip`` member; opened read-only.

    Raises
    ------
    OSError, btd_core.study.archives.ZipReadError, btd_core.study.dicom_values.DicomReadError
        And whatever pydicom raises for a damaged file.
    """
    if ref.member is not None and ref.source is not None:
        data = read_member_of_file(ref.source, ref.member, series.limits)
        dataset, _ = read_dataset(io.BytesIO(data), limits=series.limits)
        return dataset
    with open_regular_file(ref.source or ref.path) as handle:
        dataset, _ = read_dataset(handle, limits=series.limits)
    return dataset


def _dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _readme(export: DicomExport) -> bytes:
    lines = [
        "DICOM findings written by btd scan --dicom (see report.json, settings.dicom).",
        "seriesNNN_sr.dcm: Comprehensive 3D SR (TID 1500), one ROI per reported slice.",
        "seriesNNN_seg.dcm: fractional (occupancy) SEG of the same regions.",
        "NNN = the series' rank in series.csv.",
        "Reported slices: the top --top slices of each series (no score threshold).",
        "",
    ]
    for item in export.series:
        files = ", ".join(item.files) or "none"
        line = f"{printable(item.series_key)}: {item.slices} slices reported; files: {files}"
        lines.append(line + (f"; note: {item.note}" if item.note else ""))
    return ("\n".join(lines) + "\n").encode("utf-8", errors="backslashreplace")
