"""A study whose file names and DICOM tags are HTML, script and spreadsheet formulas, for the
tests of ``report.html`` (parsed, and opened in a real browser)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from tests.study_builder import write_series

SCRIPT_FILE = "<script>alert(1)</script>"
"""A relative path (a folder ``<script>alert(1)<`` holding a file ``script>``) that reads as
a script element."""
IMG_FILE = "<img src=x onerror=alert(2)>"
DESCRIPTION = "<img src=x onerror=alert(3)><b>CHEST</b>"
PATIENT = '=HYPERLINK("http://evil.example/x","click")'
FAILED_FILE = '=HYPERLINK("http:evil")<i>.dcm'
SKIPPED_FILE = "notes <b onmouseover=alert(4)>.txt"
HOSTILE_TEXTS = (SCRIPT_FILE, IMG_FILE, DESCRIPTION, PATIENT, FAILED_FILE, SKIPPED_FILE)
"""Every hostile text, each of which the page must show literally."""


@dataclass(frozen=True)
class HostileStudy:
    """The study folder and the number of slices it holds (all in one series)."""

    root: Path
    slices: int


def write_hostile_study(root: Path, slices: int = 4) -> HostileStudy:
    """One CT series (pydicom's CT_small.dcm, a noise block planted in slice 2) whose files
    and tags are hostile, a DICOM file that cannot be decoded and a text file (skipped)."""
    built = write_series(
        root / "ct", "CT_small.dcm", slices, seed=21, planted_index=1, planted_box=(30, 40, 40)
    )
    for path in built.files:
        dataset = pydicom.dcmread(path)
        dataset.SeriesDescription = DESCRIPTION
        dataset.PatientName = PATIENT
        dataset.save_as(path)
    script = root / SCRIPT_FILE
    script.parent.mkdir(parents=True)
    built.files[1].rename(script)
    built.files[2].rename(root / "ct" / IMG_FILE)
    broken = root / FAILED_FILE
    broken.write_bytes(built.files[0].read_bytes()[:-4000])  # truncated pixel data
    (root / SKIPPED_FILE).write_text("examiner's notes, not an image\n")
    return HostileStudy(root, slices)
