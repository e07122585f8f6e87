"""Make ``docs/dicom_sr.png``: a slice with the ROI that ``btd scan --dicom``'s SR holds.

A study of three real CT slices (pydicom-data's 693_UNCI.dcm, 512 x 512) with a 40 px
block of uniform noise planted in the middle one is scanned by the real ``btd scan
--dicom`` with the test suite's torch-free high-pass scorer (no detector: it only makes
the planted block rank first).  The SR of the series is read back with highdicom; its
first ROI's polygon and referenced SOP instance pick the slice and the box that the
picture draws (the project's overlay code, with the CT window).  Needs the test extra
(onnx, pydicom-data); run from the repository root::

    .venv/bin/python docs/make_dicom_sr_png.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.pixels import apply_modality_lut

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from btd_core.cli.main import main as btd_main  # noqa: E402
from btd_core.findings.overlay import write_overlay  # noqa: E402
from btd_core.slices.profiles import CT  # noqa: E402
from tests.onnx_scorer import build_scorer  # noqa: E402
from tests.study_builder import write_series  # noqa: E402

OUT = ROOT / "docs" / "dicom_sr.png"


def main() -> int:
    """Scan, read the SR back, draw its first ROI on its slice; returns the exit status."""
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        built = write_series(
            root / "study", "693_UNCI.dcm", 3, planted_index=1, planted_box=(300, 230, 40)
        )
        model = build_scorer(root / "ct.onnx", modality="ct")
        report = root / "report"
        args = ["scan", str(root / "study"), "--model", str(model), "--out", str(report)]
        if btd_main([*args, "--provider", "cpu", "--dicom", "--top", "3"]) != 0:
            return 1
        sr = hd.sr.srread(report / "dicom" / "series001_sr.dcm")
        group = sr.content.get_planar_roi_measurement_groups()[0]
        polygon = group.roi.value  # [5, 2] (column, row), closed
        uid = group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        source = next(p for p in built.files if pydicom.dcmread(p).SOPInstanceUID == uid)
        dataset = pydicom.dcmread(source)
        image = CT.to_unit_range(apply_modality_lut(dataset.pixel_array, dataset))
        x, y = (int(v) for v in polygon.min(axis=0))
        size = int(polygon[:, 0].max()) - x
        (score,) = group.get_measurements()
        caption = (
            f"SR ROI {group.tracking_identifier}: ({x},{y}) {size} px, "
            f"score {score.value:.3g} {{score}}, suspected synthetic content"
        )
        write_overlay(OUT, image, None, (x, y, size), caption=caption)
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
