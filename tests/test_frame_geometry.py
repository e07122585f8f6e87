"""Frame positions along the slice normal, rescale and window, per frame."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from btd_core.study.frame_geometry import (
    axis_codes,
    frame_geometries,
    slice_location,
    slice_normal,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def test_location_is_the_position_along_the_slice_normal() -> None:
    assert slice_normal(AXIAL) == (0.0, 0.0, 1.0)
    assert slice_location((10.0, -4.0, -12.5), AXIAL) == -12.5
    a = math.radians(30)  # rows tilted about x: the normal leans towards -y
    tilted = (1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a))
    assert slice_location((0.0, 0.0, 2.0), tilted) == pytest.approx(2.0 * math.cos(a))
    assert slice_normal((1.0, 0.0, 0.0, 1.0, 0.0, 0.0)) is None  # parallel cosines
    assert slice_location(None, AXIAL) is None and slice_location((0, 0, 0), None) is None


def test_enhanced_ct_frames_come_from_their_functional_groups() -> None:
    ds = pydicom.dcmread(data_file("eCT_Supplemental.dcm"))
    frames = frame_geometries(ds, int(ds.NumberOfFrames))
    shared = ds.SharedFunctionalGroupsSequence[0]
    rescale = shared.PixelValueTransformationSequence[0]
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        position = tuple(float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        assert frame.position == position
        orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        assert frame.location == slice_location(position, [float(v) for v in orientation])
        assert (frame.rescale_slope, frame.rescale_intercept) == (
            float(rescale.RescaleSlope),
            float(rescale.RescaleIntercept),
        )
    assert frames[0].location != frames[1].location


def test_classic_multiframe_has_no_per_frame_position() -> None:
    ds = pydicom.dcmread(data_file("emri_small.dcm"))  # 10 frames, top-level elements only
    frames = frame_geometries(ds, 10)
    assert len(frames) == 10 and all(f.position is None for f in frames)
    (single,) = frame_geometries(pydicom.dcmread(data_file("CT_small.dcm")), 1)
    assert single.position == (-158.135803, -179.035797, -75.699997)
    assert (single.rescale_slope, single.rescale_intercept) == (1.0, -1024.0)


@pytest.mark.parametrize(
    ("orientation", "codes"),
    [
        ([1, 0, 0, 0, 1, 0], "LPS"),  # plain axial
        ([-1, 0, 0, 0, -1, 0], "RAS"),  # axial, rotated 180 degrees
        ([0, 1, 0, 0, 0, -1], "PIR"),  # sagittal
        ([1, 0, 0, 0, 0, -1], "LIP"),  # coronal
        ([0.9, 0.1, 0, -0.1, 0.9, 0], "LPS"),  # a slightly oblique axial
        (None, ""),
        ([1, 0, 0, 1, 0, 0], ""),  # parallel cosines: no normal
    ],
)
def test_axis_codes_name_where_columns_rows_and_slices_run(orientation, codes: str):
    assert axis_codes(orientation) == codes


def test_a_real_axial_ct_slice_is_lps():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    (geometry,) = frame_geometries(ds, 1)
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert geometry.orientation == "LPS"
