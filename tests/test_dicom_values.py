"""Element values as plain Python values: tolerant readers give ``""`` / ``None``, strict
readers raise :class:`DicomReadError` with the message that becomes the file's error row."""

from __future__ import annotations

import math

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from btd_core.study.dicom_values import (
    DicomReadError,
    finite_floats,
    optional_int,
    positive_count,
    strict_float,
    text,
)


def dataset(*elements: tuple[int, str, str | int]) -> Dataset:
    """A dataset holding each (tag, VR, value) undecoded, as read from a file (Explicit VR
    Little Endian): a text value as its bytes (``\\`` between values), US as 2 bytes."""
    raw = {}
    for tag, vr, value in elements:
        data = value.to_bytes(2, "little") if isinstance(value, int) else value.encode()
        raw[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(data), data, 0, False, True)
    return Dataset(raw)


def test_text_is_plain_stripped_and_joined() -> None:
    ds = dataset((0x00080008, "CS", "ORIGINAL\\PRIMARY"), (0x00100020, "LO", " ID7\x00"))
    assert text(ds, "ImageType") == "ORIGINAL\\PRIMARY"
    assert text(ds, "PatientID") == "ID7"
    assert text(ds, "Modality") == ""


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        ([(0x00280010, "US", 0)], "invalid Rows (0028,0010): 0"),
        ([(0x00280008, "IS", "-2")], "invalid Number of Frames (0028,0008): -2"),
        ([(0x00280008, "LO", "many")], "invalid Number of Frames (0028,0008): 'many'"),
    ],
)
def test_unusable_counts_are_read_errors_word_for_word(
    elements: list[tuple[int, str, str | int]], message: str
) -> None:
    ds = dataset(*elements)
    keyword, label = (
        ("Rows", "Rows (0028,0010)")
        if elements[0][0] == 0x00280010
        else ("NumberOfFrames", "Number of Frames (0028,0008)")
    )
    with pytest.raises(DicomReadError) as invalid:
        positive_count(ds, keyword, label, 1)
    assert str(invalid.value) == message


def test_counts_and_numbers_when_usable_or_absent() -> None:
    ds = dataset((0x00280008, "IS", "12"), (0x00200013, "IS", "x7"))
    assert positive_count(ds, "NumberOfFrames", "Number of Frames (0028,0008)", 1) == 12
    assert positive_count(ds, "Rows", "Rows (0028,0010)", None) is None
    assert optional_int(ds, "InstanceNumber") is None  # tolerant: not a number
    assert optional_int(dataset((0x00200013, "IS", "7")), "InstanceNumber") == 7


def test_floats_are_finite_and_complete_or_none() -> None:
    ds = dataset((0x00200032, "DS", "1.5\\2\\-3"), (0x00281050, "DS", "nan"))
    assert finite_floats(ds, "ImagePositionPatient", 3) == (1.5, 2.0, -3.0)
    assert finite_floats(ds, "ImagePositionPatient", 4) is None
    assert finite_floats(ds, "WindowCenter", 1) is None
    assert finite_floats(None, "WindowCenter", 1) is None


def test_rescale_values_are_strict() -> None:
    assert strict_float(dataset((0x00281053, "DS", "0.5")), "RescaleSlope", "x") == 0.5
    assert strict_float(Dataset(), "RescaleSlope", "x") is None
    with pytest.raises(DicomReadError) as infinite:
        strict_float(
            dataset((0x00281053, "DS", "inf")), "RescaleSlope", "Rescale Slope (0028,1053)"
        )
    assert str(infinite.value) == f"invalid Rescale Slope (0028,1053): {math.inf}"
    with pytest.raises(DicomReadError) as garbled:
        strict_float(dataset((0x00281052, "DS", "1,5")), "RescaleIntercept", "Intercept")
    assert str(garbled.value) == "invalid Intercept"
