"""The framing parser on pydicom's real test files, whole, truncated and damaged.

:func:`~btd_core.study.dicom_framing.read_file_meta` is held to pydicom's public
:func:`pydicom.filereader.read_file_meta_info` on every bundled file with a ``DICM``
prefix and on damaged copies of them; the pixel element :func:`read_framed` locates
from its element header is held to the bytes pydicom reads for it.
"""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from btd_core.study.dicom_framing import (
    has_dicm_prefix,
    read_dataset,
    read_file_meta,
    read_framed,
)
from btd_core.study.dicom_values import DicomReadError
from btd_core.study.file_access import ClampedReader
from btd_core.study.limits import LimitExceeded, StudyLimits

ITEM_TAG = b"\xfe\xff\x00\xe0"
"""(FFFE,E000) Item, little endian: the first bytes of encapsulated pixel data."""


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def dicm_files() -> list[Path]:
    """pydicom's bundled test files that carry the ``DICM`` prefix, by name."""
    folder = Path(pydicom.data.__file__).parent / "test_files"
    files = [p for p in sorted(folder.glob("*.dcm")) if has_dicm_prefix(p.read_bytes()[:132])]
    assert len(files) > 50
    return files


def meta_or_error(read: Callable[[], FileMetaDataset]) -> tuple[object, ...]:
    """``("meta", encoding, elements)``, each element as its tag, VR and value (or the
    name of what converting it raised), or ``("error", name)`` when reading raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            meta = read()
        except Exception as exc:
            return "error", type(exc).__name__
        elements: list[tuple[object, ...]] = []
        for tag in list(meta.keys()):
            try:
                elements.append((tag, meta[tag].VR, meta[tag].value))
            except Exception as exc:
                elements.append((tag, type(exc).__name__))
        return "meta", meta.original_encoding, elements


def file_meta_at_132(data: bytes) -> Callable[[], FileMetaDataset]:
    view = ClampedReader(io.BytesIO(data))
    view.seek(132)
    return lambda: read_file_meta(view)


def test_file_meta_equals_pydicoms_public_reader_on_every_bundled_file() -> None:
    for path in dicm_files():
        ours = meta_or_error(file_meta_at_132(path.read_bytes()))
        assert ours == meta_or_error(lambda p=path: read_file_meta_info(p)), path.name
        assert ours[0] == "meta", path.name


def test_file_meta_equals_pydicoms_public_reader_on_damaged_copies(tmp_path: Path) -> None:
    """Three bytes of the File Meta Information overwritten at random, every other copy
    truncated there: the same elements, the same encoding, or the same error."""
    rng = random.Random(25)
    errors = 0
    copy = tmp_path / "damaged.dcm"
    for path in dicm_files():
        data = path.read_bytes()
        for n in range(4):
            damaged = bytearray(data)
            for _ in range(3):
                damaged[rng.randrange(132, min(600, len(data)))] = rng.randrange(256)
            if n % 2:
                del damaged[rng.randrange(140, min(600, len(data))) :]
            copy.write_bytes(damaged)
            ours = meta_or_error(file_meta_at_132(bytes(damaged)))
            assert ours == meta_or_error(lambda: read_file_meta_info(copy)), path.name
            errors += ours[0] == "error"
    assert errors < 30  # most damaged groups still parse: the comparison is not vacuous


def test_file_meta_that_explicit_vr_cannot_decode_is_read_again_as_implicit_vr(
    tmp_path: Path,
) -> None:
    """pydicom reads the group again as Implicit VR when its first element's VR is
    unknown (``ZZ`` here); so does :func:`read_file_meta`."""

    def explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
        head = group.to_bytes(2, "little") + element.to_bytes(2, "little")
        return head + vr + len(value).to_bytes(2, "little") + value

    data = bytes(128) + b"DICM" + explicit(2, 0x10, b"ZZ", b"1.2.840.10008.1.2\x00")
    data += explicit(8, 0x16, b"UI", b"1.2.3\x00")
    (tmp_path / "zz.dcm").write_bytes(data)
    ours = meta_or_error(file_meta_at_132(data))
    assert ours[:2] == ("meta", (True, True))  # read again, as Implicit VR Little Endian
    assert ours == meta_or_error(lambda: read_file_meta_info(tmp_path / "zz.dcm"))


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("CT_small.dcm", ExplicitVRLittleEndian),
        ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
        ("MR_small_implicit.dcm", ImplicitVRLittleEndian),
        ("rtdose.dcm", ImplicitVRLittleEndian),
    ],
)
def test_pixel_element_is_where_pydicom_reads_its_value(name: str, syntax: str) -> None:
    data = data_file(name).read_bytes()
    framed = read_framed(io.BytesIO(data))
    assert framed.file_syntax == syntax
    assert "PixelData" not in framed.dataset  # stopped before the pixels
    pixel = framed.pixel
    assert pixel is not None and pixel.tag == 0x7FE00010
    assert pixel.value_offset is not None and pixel.length is not None
    whole = pydicom.dcmread(io.BytesIO(data))
    assert data[pixel.value_offset : pixel.value_offset + pixel.length] == whole.PixelData


def test_encapsulated_pixel_data_has_undefined_length_and_starts_with_an_item() -> None:
    data = data_file("MR_small_RLE.dcm").read_bytes()
    pixel = read_framed(io.BytesIO(data)).pixel
    assert pixel is not None and pixel.length is None and pixel.value_offset is not None
    assert data[pixel.value_offset : pixel.value_offset + 4] == ITEM_TAG


@pytest.mark.parametrize(
    ("name", "start"),
    [("no_meta.dcm", 1), ("ExplVR_BigEndNoMeta.dcm", 0), ("ExplVR_LitEndNoMeta.dcm", 0)],
)
def test_bare_data_set_is_found_and_given_the_encoding_it_was_read_with(
    name: str, start: int
) -> None:
    """``no_meta.dcm`` (with pixels) starts with one stray byte before its first element;
    the two ``ExplVR_*NoMeta.dcm`` files have no pixel data."""
    data = data_file(name).read_bytes()
    framed = read_framed(io.BytesIO(data))
    assert framed.file_syntax == ""  # the file holds no File Meta Information
    whole = pydicom.dcmread(io.BytesIO(data[start:]), force=True)
    read_with = framed.dataset.file_meta.TransferSyntaxUID
    assert (read_with.is_implicit_VR, read_with.is_little_endian) == whole.original_encoding
    assert framed.dataset.SOPInstanceUID == whole.SOPInstanceUID
    pixel = framed.pixel
    assert (pixel is not None) == ("PixelData" in whole)
    if pixel is not None:
        assert pixel.value_offset is not None and pixel.length is not None
        assert data[pixel.value_offset : pixel.value_offset + pixel.length] == whole.PixelData


def test_truncated_files() -> None:
    data = data_file("CT_small.dcm").read_bytes()
    pixel = read_framed(io.BytesIO(data)).pixel
    assert pixel is not None and pixel.value_offset is not None
    half = read_framed(io.BytesIO(data[: pixel.value_offset + 100])).pixel
    assert half == pixel  # the declared length is kept: the claims checks compare it
    before_pixels = read_framed(io.BytesIO(data[: pixel.value_offset - 8]))
    assert before_pixels.pixel is None and "Rows" in before_pixels.dataset
    in_meta = read_framed(io.BytesIO(data[:200]))
    assert in_meta.file_syntax == "" and len(in_meta.dataset) == 0
    with pytest.raises(DicomReadError, match=r"^no DICOM preamble and no recognisable"):
        read_framed(io.BytesIO(data[:131]))


def test_bytes_that_are_not_dicom_are_a_read_error() -> None:
    junk = random.Random(3).randbytes(4096)
    with pytest.raises(DicomReadError, match=r"^no DICOM preamble and no recognisable"):
        read_dataset(io.BytesIO(junk))


def test_deflated_data_set_is_measured_before_it_is_inflated() -> None:
    data = data_file("image_dfl.dcm").read_bytes()
    framed = read_framed(io.BytesIO(data))
    assert framed.file_syntax == DeflatedExplicitVRLittleEndian
    whole = pydicom.dcmread(io.BytesIO(data))
    pixel = framed.pixel
    assert pixel is not None and pixel.value_offset is None  # read from an inflated copy
    assert pixel.length == len(whole.PixelData)
    with pytest.raises(LimitExceeded) as refused:
        read_framed(io.BytesIO(data), limits=StudyLimits(max_member_bytes=1 << 10))
    assert str(refused.value).startswith("refused: the deflated data set holds ")
    assert str(refused.value).endswith(
        " bytes uncompressed, over the limit of 0 MiB (--max-member-mb)"
    )
