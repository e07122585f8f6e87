"""What a source header lacks, completed for btd's SR and SEG: slice thickness and the
de-identification method (``btd_core.findings.dicom_conformance``), on pydicom datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from btd_core.findings.dicom_conformance import (
    METHOD_UNKNOWN,
    complete_deidentification,
    series_slice_spacing,
    with_slice_thickness,
)
from btd_core.study.records import Series, SliceRef


def series_at(*locations: float | None) -> Series:
    slices = [SliceRef(path=Path(f"s{i}"), location=loc) for i, loc in enumerate(locations)]
    return Series(key="1.2", kind="dicom", slices=slices)


def test_the_series_spacing_is_the_median_gap_between_distinct_locations():
    assert series_slice_spacing(series_at(0.0, 2.5, 5.0, 5.0, 7.5, 20.0)) == 2.5
    assert series_slice_spacing(series_at(10.0, None, 4.0)) == 6.0
    assert series_slice_spacing(series_at(3.0)) is None
    assert series_slice_spacing(series_at(None, None)) is None
    assert series_slice_spacing(series_at(1.0, 1.0)) is None


def header(**values: object) -> Dataset:
    dataset = Dataset()
    dataset.SOPInstanceUID = "1.2.3"
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


def test_a_thickness_is_filled_in_a_copy_only_where_the_header_has_none():
    has = header(SliceThickness="1.25")
    absent, empty = header(), header(SliceThickness="")
    spaced = header(SpacingBetweenSlices="3.0")
    completed = with_slice_thickness([has, absent, empty, spaced], 2.5)
    assert completed[0] is has
    assert [float(d.SliceThickness) for d in completed] == [1.25, 2.5, 2.5, 3.0]
    assert "SliceThickness" not in absent and empty.SliceThickness == ""  # sources as read
    assert "SliceThickness" not in spaced


def test_a_multi_frame_header_gets_the_thickness_in_its_shared_pixel_measures():
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    enhanced = header(SharedFunctionalGroupsSequence=Sequence([shared]))
    (completed,) = with_slice_thickness([enhanced], 10.0)
    item = completed.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(item.SliceThickness) == 10.0 and "SliceThickness" not in completed
    assert "SliceThickness" not in measures


def test_without_a_thickness_or_a_spacing_there_is_no_seg():
    with pytest.raises(ValueError, match="no Slice Thickness"):
        with_slice_thickness([header(SliceThickness="")], None)


def test_a_de_identified_object_without_a_method_says_the_method_is_unknown():
    made = complete_deidentification(header(PatientIdentityRemoved="YES"))
    assert made.DeidentificationMethod == METHOD_UNKNOWN and len(METHOD_UNKNOWN) <= 64
    named = complete_deidentification(
        header(PatientIdentityRemoved="YES", DeidentificationMethod="BASIC PROFILE")
    )
    assert named.DeidentificationMethod == "BASIC PROFILE"
    coded = header(PatientIdentityRemoved="YES", DeidentificationMethodCodeSequence=[Dataset()])
    assert "DeidentificationMethod" not in complete_deidentification(coded)
    for flag in ("NO", None):
        plain = header() if flag is None else header(PatientIdentityRemoved=flag)
        assert "DeidentificationMethod" not in complete_deidentification(plain)
