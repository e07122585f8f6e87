"""The report folder, checked before any work: a bad ``--out`` costs seconds, not a scan.

Refused, each with a message that says what to do: a folder inside the evidence, a path
that is an existing file, a folder that cannot be written, and a folder that already
holds files (an earlier report is never overwritten silently: ``--overwrite`` says so).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from btd_core.errors import BtdError
from btd_core.study.evidence import check_output_outside


class OutputFolderError(BtdError, ValueError):
    """The report folder cannot be used as asked."""


def prepare_report_folder(
    out: Path, *inputs: Path | None, overwrite: bool = False, inputs_are: str = "study"
) -> Path:
    """Check ``out`` as a report folder before any work; nothing is created (a run that
    then fails leaves no trace): a missing folder's nearest existing parent must be a
    writable folder.

    ``inputs`` are the evidence folders (``None`` ignored).  With ``overwrite``, a folder
    that already holds files is used anyway (report files of the same name are
    replaced; nothing else in it is touched).  Returns the resolved folder.

    Raises
    ------
    btd_core.study.evidence.OutputInsideEvidence
        ``out`` is (inside) one of ``inputs``.
    OutputFolderError
        ``out`` is a file, holds files (without ``overwrite``), or cannot be written.
    """
    check_output_outside(out, *inputs, what="report folder", inputs_are=inputs_are)
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(
            f"the report folder {out} is an existing file, not a folder: choose a folder"
        )
    if folder.is_dir() and not overwrite and any(folder.iterdir()):
        raise OutputFolderError(
            f"the report folder {out} is not empty (an earlier report?); choose a new or "
            "empty folder, or give --overwrite to replace the report files in it"
        )
    _check_writable(folder, out)
    return folder.resolve()


def _check_writable(folder: Path, named: Path) -> None:
    """Whether ``folder`` (or, when missing, the folder it would be made in) can be written."""
    if folder.is_dir():
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise OutputFolderError(f"cannot write into {named}: {reason}") from None
        return
    parent = folder.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputFolderError(f"cannot write into {named}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFolderError(f"cannot write into {named}: {parent} is not writable")


def check_output_file(path: Path, *inputs: Path | None, inputs_are: str = "input folder") -> Path:
    """Check ``path`` as an output file (e.g. a calibration) before any work: outside the
    evidence, not a folder, its folder writable (nothing is created).  An existing file
    of that name is replaced when the work is done.

    Raises
    ------
    btd_core.study.evidence.OutputInsideEvidence, OutputFolderError
    """
    check_output_outside(path, *inputs, what="output file", inputs_are=inputs_are)
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputFolderError(f"the output file {path} is an existing folder: name a file")
    _check_writable(target.parent, path)
    return target.resolve()


DICOM_FOLDER = "dicom"
"""The report folder's subfolder of DICOM findings (``btd scan --dicom``)."""

DICOM_OBJECTS = "series[0-9][0-9][0-9]_*.dcm"
"""The names btd gives its DICOM objects there (``series001_sr.dcm``, ...)."""

DICOM_README = "README.txt"
"""What btd writes beside them: what each object is."""


def remove_earlier_dicom(report_dir: Path) -> None:
    """Remove the DICOM objects an earlier report left in ``report_dir/dicom`` (a rerun with
    ``--overwrite``), so that none is ever taken for this report's; the folder goes too when
    nothing else is in it.  Files btd did not name are left alone."""
    folder = Path(report_dir) / DICOM_FOLDER
    if not folder.is_dir():
        return
    for stale in [*sorted(folder.glob(DICOM_OBJECTS)), folder / DICOM_README]:
        stale.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()
