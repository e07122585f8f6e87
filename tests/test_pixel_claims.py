"""The image size a header declares, read once, and the checks of what it claims about its
pixels, on pydicom's real test files and on datasets built here.  The refusal messages
become rows of files.csv: they are pinned word for word."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.uid import ExplicitVRLittleEndian

from btd_core.study.dicom_framing import PixelElement, read_framed
from btd_core.study.dicom_values import DicomReadError
from btd_core.study.limits import DEFAULT_LIMITS, LimitExceeded
from btd_core.study.pixel_claims import (
    ImageSize,
    check_pixel_claims,
    count_fragments,
    image_size,
    read_pixel_claims,
)

PIXEL_DATA = 0x7FE00010


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def sized(**elements: object) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def test_absent_sizes_default_to_one_frame_of_one_sample() -> None:
    assert image_size(Dataset(), DEFAULT_LIMITS) == ImageSize(None, None, 1, 1)
    assert not image_size(sized(Rows=4), DEFAULT_LIMITS).has_image
    assert image_size(
        sized(Rows=4, Columns=5, NumberOfFrames="3", SamplesPerPixel=3), (DEFAULT_LIMITS)
    ) == ImageSize(4, 5, 3, 3)


def test_a_refused_frame_wins_over_an_unusable_samples_per_pixel() -> None:
    """The order :func:`image_size` reads in decides which reason a file with both faults
    gets: the frame is checked before (0028,0002) is read."""
    ds = sized(Rows=20000, Columns=20000, SamplesPerPixel=0)
    with pytest.raises(LimitExceeded) as refused:
        image_size(ds, DEFAULT_LIMITS)
    assert str(refused.value) == (
        "refused: 20000 x 20000 pixels per frame is over the limit of 16384 x 16384 (--max-pixels)"
    )
    with pytest.raises(DicomReadError) as invalid:  # a DICOMDIR's sizes are not checked
        image_size(ds, DEFAULT_LIMITS, check=False)
    assert str(invalid.value) == "invalid Samples per Pixel (0028,0002): 0"


def test_claims_without_rows_or_columns_are_a_read_error() -> None:
    with pytest.raises(DicomReadError) as missing:
        check_pixel_claims(
            Dataset(), PixelElement(PIXEL_DATA, 0, 0), ImageSize(None, 4, 1, 1), DEFAULT_LIMITS
        )
    assert str(missing.value) == "no Rows/Columns (0028,0010/0011)"


def test_frames_the_declared_length_cannot_hold_are_refused_word_for_word() -> None:
    ds = sized(BitsAllocated=16)
    ds.file_meta = sized(TransferSyntaxUID=ExplicitVRLittleEndian)
    size = ImageSize(4, 5, 3, 1)
    with pytest.raises(LimitExceeded) as refused:
        check_pixel_claims(ds, PixelElement(PIXEL_DATA, 100, 119), size, DEFAULT_LIMITS)
    assert str(refused.value) == (
        "refused: 3 frames of 5 x 4 pixels x 1 sample x 16 bits need 120 bytes of pixel "
        "data, the Pixel Data element declares 119"
    )
    with pytest.raises(LimitExceeded) as short_file:
        check_pixel_claims(
            ds, PixelElement(PIXEL_DATA, 100, 120), size, DEFAULT_LIMITS, file_size=179
        )
    assert str(short_file.value) == (
        "refused: 3 frames of 5 x 4 pixels x 1 sample x 16 bits need 120 bytes of pixel "
        "data, the file holds 79 (truncated, or a false Number of Frames)"
    )
    claims = check_pixel_claims(
        ds, PixelElement(PIXEL_DATA, 100, 120), size, DEFAULT_LIMITS, file_size=220
    )
    assert (claims.frame_bits, claims.frame_end(0), claims.frame_end(2)) == (320, 140, 220)


def test_uncompressed_multiframe_file_claims_its_frames_where_they_lie() -> None:
    path = data_file("emri_small.dcm")  # 10 frames of 64 x 64 x 16 bits
    with path.open("rb") as fp:
        claims = read_pixel_claims(fp)
    whole = pydicom.dcmread(path)
    assert (claims.rows, claims.columns, claims.frames, claims.samples, claims.bits) == (
        64,
        64,
        10,
        1,
        16,
    )
    assert claims.file_syntax == str(whole.file_meta.TransferSyntaxUID)
    assert claims.frame_end(9) == claims.file_size == path.stat().st_size
    assert claims.frame_end(0) == claims.pixel.value_offset + 64 * 64 * 2  # type: ignore[operator]


@pytest.mark.parametrize("name", ["rtdose_rle.dcm", "MR_small_RLE.dcm", "emri_small_RLE.dcm"])
def test_fragments_are_counted_from_item_headers_as_pydicom_reads_them(name: str) -> None:
    data = data_file(name).read_bytes()
    framed = read_framed(io.BytesIO(data))
    assert framed.pixel is not None and framed.pixel.value_offset is not None
    whole = pydicom.dcmread(io.BytesIO(data))
    fragments = len(list(generate_fragments(whole.PixelData))) - 1  # less the offset table
    assert count_fragments(io.BytesIO(data), framed.pixel.value_offset, 1000) == fragments
    assert count_fragments(io.BytesIO(data), framed.pixel.value_offset, 2) == min(2, fragments)
    with io.BytesIO(data) as fp:
        assert read_pixel_claims(fp).pixel.fragments == int(whole.get("NumberOfFrames", 1))


def test_an_item_claiming_more_than_the_file_holds_is_refused() -> None:
    items = b"\xfe\xff\x00\xe0" + bytes(4)  # an empty Basic Offset Table
    items += b"\xfe\xff\x00\xe0" + (1000).to_bytes(4, "little") + bytes(10)
    with pytest.raises(LimitExceeded) as refused:
        count_fragments(io.BytesIO(items), 0, 5)
    assert str(refused.value) == (
        "refused: a compressed pixel data item claims 1000 bytes, the file has 10 left "
        "(truncated or damaged)"
    )
