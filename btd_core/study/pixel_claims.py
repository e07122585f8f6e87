"""Check what a DICOM header claims about its pixels before anything is allocated.

A hostile header can claim a frame of 65535 x 65535 pixels, ten thousand frames in a
small file, or compressed items of gigabytes.  :func:`image_size` reads (0028,0010) Rows,
(0028,0011) Columns, (0028,0008) Number of Frames and (0028,0002) Samples per Pixel once
and checks the frame against the study limits; :func:`check_pixel_claims` then checks
the bytes those sizes need against the Pixel Data element and the file (with Python
integers, which never overflow).  A refusal is a
:class:`~btd_core.study.limits.LimitExceeded` whose message becomes the file's error row.
Runtime world: pydicom only.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from typing import IO, Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from btd_core.study.dicom_framing import UNDEFINED_LENGTH, PixelElement, read_framed
from btd_core.study.dicom_values import DicomReadError, positive_count, text
from btd_core.study.file_access import StopCheck, check_stop
from btd_core.study.limits import DEFAULT_LIMITS, LimitExceeded, StudyLimits

_ITEM = 0xFFFEE000
"""(FFFE,E000) Item: the header of each fragment of encapsulated pixel data."""


@dataclass(frozen=True)
class ImageSize:
    """The image size a header declares.

    ``rows``, ``columns``: (0028,0010) / (0028,0011) in pixels, ``None`` when absent;
    ``frames``: (0028,0008) Number of Frames, 1 when absent; ``samples``: (0028,0002)
    Samples per Pixel, 1 when absent.
    """

    rows: int | None
    columns: int | None
    frames: int
    samples: int

    @property
    def has_image(self) -> bool:
        """Whether both Rows and Columns are present."""
        return bool(self.rows and self.columns)


def image_size(ds: Dataset, limits: StudyLimits, *, check: bool = True) -> ImageSize:
    """Rows, Columns, Number of Frames and Samples per Pixel of ``ds``, read once, strict.

    When ``check`` and both Rows and Columns are present, the frame size and count are
    checked against ``limits`` before Samples per Pixel is read (so that a file with
    both faults is refused for its size, whoever reads it).

    Raises :class:`~btd_core.study.dicom_values.DicomReadError` when a value is present
    but not a positive integer, :class:`~btd_core.study.limits.LimitExceeded` when refused.
    """
    rows = positive_count(ds, "Rows", "Rows (0028,0010)", None)
    columns = positive_count(ds, "Columns", "Columns (0028,0011)", None)
    frames = positive_count(ds, "NumberOfFrames", "Number of Frames (0028,0008)", 1) or 1
    if check and rows and columns:
        limits.check_frame(rows, columns, frames)
    samples = positive_count(ds, "SamplesPerPixel", "Samples per Pixel (0028,0002)", 1) or 1
    return ImageSize(rows, columns, frames, samples)


@dataclass(frozen=True)
class PixelClaims:
    """What a DICOM header claims about its pixels, checked against the study limits.

    ``rows``, ``columns``, ``frames``, ``samples``: from (0028,0010), (0028,0011),
    (0028,0008), (0028,0002); ``bits``: bits per sample stored, from (0028,0100) Bits
    Allocated (32 / 64 for float pixel data), ``None`` when unusable; ``frame_bits``:
    bits one uncompressed frame takes, ``None`` for compressed data; ``file_size``:
    bytes in the file (``None`` for an inflated copy); ``file_syntax``: the (0002,0010)
    Transfer Syntax UID in the file's own File Meta Information (``""`` when it has none;
    filled by :func:`read_pixel_claims`); ``photometric``: (0028,0004), upper case.
    """

    rows: int
    columns: int
    frames: int
    samples: int
    bits: int | None
    pixel: PixelElement
    frame_bits: int | None
    file_size: int | None
    file_syntax: str = ""
    photometric: str = ""

    def frame_end(self, index: int) -> int | None:
        """Byte offset in the file just after uncompressed frame ``index`` (0-based), or
        ``None`` when it cannot be known (compressed, inflated copy)."""
        if self.frame_bits is None or self.pixel.value_offset is None:
            return None
        return self.pixel.value_offset + -(-(index + 1) * self.frame_bits // 8)


def count_fragments(fp: Any, offset: int, cap: int, should_stop: StopCheck | None = None) -> int:
    """Fragments of encapsulated pixel data whose first item header is at ``offset``.

    Item headers are read and their values skipped (nothing is read into memory); the
    first item (the Basic Offset Table) is not counted; counting stops at ``cap``, at the
    sequence delimiter, or where the items stop making sense.

    Raises
    ------
    LimitExceeded
        An item claims more bytes than the file has left (a decoder would allocate what
        it claims before finding the file too short).
    """
    end = fp.seek(0, 2)
    fp.seek(offset)
    items = 0
    while items <= cap:
        at = fp.tell()
        header = fp.read(8)
        if len(header) < 8:
            break
        tag = int.from_bytes(header[0:2], "little") << 16 | int.from_bytes(header[2:4], "little")
        length = int.from_bytes(header[4:8], "little")
        if tag != _ITEM or length == UNDEFINED_LENGTH:
            break
        if at + 8 + length > end:
            raise LimitExceeded(
                f"refused: a compressed pixel data item claims {length} bytes, the file has "
                f"{max(end - at - 8, 0)} left (truncated or damaged)"
            )
        items += 1
        fp.seek(length, 1)
        if items % 1024 == 0:
            check_stop(should_stop)
    return min(max(items - 1, 0), cap)


def _bits_per_sample(ds: Dataset, tag: int) -> int | None:
    """Bits one stored sample takes: 32 / 64 for float pixel data, else (0028,0100) Bits
    Allocated when it is 1 or a multiple of 8 up to 64; ``None`` when unusable."""
    if tag == 0x7FE00008:
        return 32
    if tag == 0x7FE00009:
        return 64
    try:
        bits = positive_count(ds, "BitsAllocated", "Bits Allocated (0028,0100)", None)
    except DicomReadError:
        return None
    if bits is None or not (bits == 1 or (bits % 8 == 0 and bits <= 64)):
        return None
    return bits


def _is_encapsulated(ds: Dataset, pixel: PixelElement) -> bool:
    """Compressed frames in items: by the transfer syntax, else by undefined length."""
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", "") or "")) if meta is not None else UID("")
    if syntax.is_transfer_syntax:
        return bool(syntax.is_encapsulated)
    return pixel.length is None


def check_pixel_claims(
    ds: Dataset,
    pixel: PixelElement,
    size: ImageSize,
    limits: StudyLimits,
    fp: Any = None,
    file_size: int | None = None,
    should_stop: StopCheck | None = None,
) -> PixelClaims:
    """Check what a header claims about its pixels, before anything is allocated.

    ``size``: from :func:`image_size`.  Checked with Python integers: the frame size,
    the bytes a frame decodes to and the frame count against ``limits``; uncompressed
    data: the bytes all frames need against the element's declared length, and (several
    frames) against the bytes the file holds, so that a false Number of Frames cannot
    make thousands of slices of a small file; compressed data: at least one fragment per
    frame (fragments are counted in ``fp`` from their item headers).

    Raises
    ------
    DicomReadError
        ``size`` has no Rows or no Columns.
    LimitExceeded
        With the reason (``refused: ...``).
    """
    if not (size.rows and size.columns):
        raise DicomReadError("no Rows/Columns (0028,0010/0011)")
    rows, columns, frames, samples = size.rows, size.columns, size.frames, size.samples
    limits.check_frame(rows, columns, frames)
    bits = _bits_per_sample(ds, pixel.tag)
    too_many_bytes = limits.frame_bytes_problem(rows, columns, samples, bits) if bits else None
    if too_many_bytes:
        raise LimitExceeded(too_many_bytes)
    photometric = text(ds, "PhotometricInterpretation").upper()
    if _is_encapsulated(ds, pixel):
        if pixel.length is None:
            if pixel.value_offset is not None and fp is not None:
                fragments = count_fragments(fp, pixel.value_offset, frames, should_stop)
            else:
                value = ds[pixel.tag].value if pixel.tag in ds else b""
                fragments = count_fragments(io.BytesIO(value or b""), 0, frames, should_stop)
            if fragments < frames:
                raise LimitExceeded(
                    f"refused: {frames} frames declared, the compressed pixel data holds "
                    f"{fragments} fragment{'s' if fragments != 1 else ''}"
                )
            pixel = PixelElement(pixel.tag, pixel.value_offset, None, fragments)
        return PixelClaims(
            rows, columns, frames, samples, bits, pixel, None, file_size, photometric=photometric
        )
    if bits is None or pixel.length is None:
        return PixelClaims(
            rows, columns, frames, samples, bits, pixel, None, file_size, photometric=photometric
        )
    per_pixel = 2 if photometric == "YBR_FULL_422" and samples == 3 else samples
    frame_bits = rows * columns * per_pixel * bits
    needed = -(-frames * frame_bits // 8)
    what = (
        f"{frames} frame{'s' if frames != 1 else ''} of {columns} x {rows} pixels x "
        f"{samples} sample{'s' if samples != 1 else ''} x {bits} bits"
    )
    if needed > pixel.length:
        raise LimitExceeded(
            f"refused: {what} need {needed} bytes of pixel data, the Pixel Data element "
            f"declares {pixel.length}"
        )
    if frames > 1 and file_size is not None and pixel.value_offset is not None:
        available = max(file_size - pixel.value_offset, 0)
        if frames > -(-available * 8 // frame_bits):
            raise LimitExceeded(
                f"refused: {what} need {needed} bytes of pixel data, the file holds "
                f"{available} (truncated, or a false Number of Frames)"
            )
    return PixelClaims(
        rows, columns, frames, samples, bits, pixel, frame_bits, file_size, photometric=photometric
    )


def read_pixel_claims(
    fp: IO[bytes], limits: StudyLimits | None = None, should_stop: StopCheck | None = None
) -> PixelClaims:
    """The pixel claims of the DICOM file open in ``fp``, checked against ``limits``
    (without the per-frame geometry: quick enough to run before decoding each slice).

    Raises :class:`~btd_core.study.dicom_values.DicomReadError` (not DICOM, no pixel
    data, no rows/columns), :class:`~btd_core.study.limits.LimitExceeded`, or what
    pydicom raises.
    """
    limits = limits or DEFAULT_LIMITS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        framed = read_framed(fp, stop_before_pixels=True, limits=limits)
        file_size = fp.seek(0, 2)
        if framed.pixel is None:
            raise DicomReadError("no pixel data")
        size = image_size(framed.dataset, limits)
        claims = check_pixel_claims(
            framed.dataset, framed.pixel, size, limits, fp, file_size, should_stop
        )
        return replace(claims, file_syntax=framed.file_syntax)
