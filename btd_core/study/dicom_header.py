"""Read one DICOM file's header into a small record (runtime world: numpy-free, pydicom only).

:func:`read_dataset` parses a DICOM dataset from an open file, whatever its framing:
the DICOM File Format (128-byte preamble, ``DICM``, File Meta Information), a bare
dataset without preamble, or a bare dataset behind a few stray bytes (pydicom's own
``no_meta.dcm`` starts with one).  :func:`read_header` turns the dataset into a
:class:`DicomHeader`: plain strings and numbers, one :class:`FrameGeometry` per frame,
so that discovery never keeps a pydicom dataset alive.
"""

from __future__ import annotations

import io
import math
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, TypeVar

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from btd_core.errors import BtdError
from btd_core.study.file_access import ClampedReader, StopCheck, check_stop, short_message
from btd_core.study.limits import DEFAULT_LIMITS, LimitExceeded, StudyLimits

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: the SOP class of a DICOMDIR."""

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
"""(7FE0,0010) Pixel Data, (7FE0,0008) Float Pixel Data, (7FE0,0009) Double Float Pixel Data."""

RAW_DEFER_BYTES = 1 << 20
"""While guessing whether a file without preamble is DICOM, values larger than this are
skipped rather than read, so that a large non-DICOM file cannot fill memory."""

MAX_RESYNC_TRIES = 4
"""At most this many candidate dataset starts are tried inside a file's first 128 bytes."""

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    b"UL UN UR US UT UV".split()
)
_FIRST_GROUPS = (0x0002, 0x0008, 0x0200, 0x0800)
"""A bare dataset starts with group 0002 or 0008; 0x0200 / 0x0800 are the same read big-endian."""

_LONG_LENGTH_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
"""Explicit VRs whose value length takes 4 bytes (after 2 reserved bytes)."""

_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
INFLATE_CHUNK = 1 << 20
"""Bytes of deflated data fed to zlib at a time while measuring what a data set inflates to."""


T = TypeVar("T")


class DicomReadError(BtdError):
    """The file is not a DICOM dataset, or a header value it needs is unusable."""


@dataclass(frozen=True)
class PixelElement:
    """Where the top-level pixel data element lies, from its element header (not read).

    Attributes
    ----------
    tag:
        (7FE0,0010) Pixel Data, (7FE0,0008) Float or (7FE0,0009) Double Float Pixel Data.
    value_offset:
        Bytes from the start of the file to the element's value; ``None`` when the data
        set was read from an inflated copy (deflated transfer syntax).
    length:
        The value length the element declares, bytes; ``None`` for undefined length
        (encapsulated, compressed frames).
    fragments:
        For undefined length: the fragments after the Basic Offset Table, counted from
        the item headers (counting stops at the number of frames); else ``None``.
    """

    tag: int
    value_offset: int | None
    length: int | None
    fragments: int | None = None


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


@dataclass(frozen=True)
class FrameGeometry:
    """Where one frame lies and how its stored values map to modality values.

    Attributes
    ----------
    position:
        (0020,0032) Image Position (Patient), mm, or ``None``.
    location:
        ``position`` projected on the slice normal of (0020,0037), or ``None``.
    rescale_slope, rescale_intercept:
        (0028,1053) / (0028,1052); 1 and 0 when absent.
    window:
        (0028,1050) Window Center and (0028,1051) Window Width (first values), or ``None``.
    """

    position: tuple[float, float, float] | None
    location: float | None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class DicomHeader:
    """What discovery needs from one DICOM file (no pixels, no pydicom objects).

    Attributes
    ----------
    sop_class_uid, sop_instance_uid:
        (0008,0016) / (0008,0018); the class falls back to (0002,0002) Media Storage
        SOP Class UID.  ``""`` when absent.
    study_uid, series_uid:
        (0020,000D) Study Instance UID / (0020,000E) Series Instance UID, ``""`` when absent.
    modality, series_description, patient_id, patient_name, study_date:
        (0008,0060), (0008,103E), (0010,0020), (0010,0010), (0008,0020) as plain text.
    rows, columns:
        (0028,0010) / (0028,0011), ``None`` when absent.
    samples_per_pixel:
        (0028,0002), 1 when absent.
    number_of_frames:
        (0028,0008) Number of Frames, 1 when absent.
    instance_number:
        (0020,0013), ``None`` when absent or not a number.
    has_pixel_data:
        Whether (7FE0,0010), (7FE0,0008) or (7FE0,0009) is present at the top level.
    is_dicomdir:
        A DICOMDIR: (0004,1220) Directory Record Sequence present, or SOP class
        1.2.840.10008.1.3.10.
    frames:
        One :class:`FrameGeometry` per frame; empty when there are no rows/columns.
    sop_class_name:
        The SOP class's name, e.g. ``"RT Plan Storage"``, or its UID when not in the
        standard; ``""`` when the UID is missing or malformed (not digits and dots).
    is_image_class:
        Whether the SOP class is an image storage class (``... Image Storage``).
    claims:
        The pixel claims checked against the limits (when read by :func:`read_header`
        with pixel data, rows and columns), else ``None``.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    modality: str
    series_description: str
    patient_id: str
    patient_name: str
    study_date: str
    rows: int | None
    columns: int | None
    samples_per_pixel: int
    number_of_frames: int
    instance_number: int | None
    has_pixel_data: bool
    is_dicomdir: bool
    frames: tuple[FrameGeometry, ...]
    sop_class_name: str = ""
    is_image_class: bool = False
    claims: PixelClaims | None = None


# --------------------------------------------------------------------------- parsing


def has_dicm_prefix(head: bytes) -> bool:
    """Whether ``head`` (a file's first 132 bytes) holds ``DICM`` at offset 128."""
    return head[128:132] == b"DICM"


def _plausible_start(head: bytes, offset: int) -> bool:
    """Whether a bare dataset could start at ``offset``: group 0002/0008, explicit VR or not."""
    chunk = head[offset : offset + 8]
    if len(chunk) < 8:
        return False
    group = int.from_bytes(chunk[0:2], "little")
    if group not in _FIRST_GROUPS:
        return False
    if chunk[4:6] in _VRS:
        return True
    return int.from_bytes(chunk[4:8], "little") <= 1024  # implicit VR: a short first value


def _pixel_element_at(fp: Any, ds: Dataset, base: int) -> PixelElement | None:
    """The top-level pixel element whose header starts at ``fp``'s position (where pydicom
    stopped before pixels), or ``None`` when there is none.  ``base``: bytes from the
    start of the file to ``fp``'s position 0."""
    start = fp.tell()
    header = fp.read(8)
    if len(header) < 8:
        return None
    implicit, little = ds.original_encoding[0], ds.original_encoding[1] is not False
    order = "little" if little else "big"
    tag = int.from_bytes(header[0:2], order) << 16 | int.from_bytes(header[2:4], order)
    if tag not in PIXEL_DATA_TAGS:
        return None
    if implicit:
        length, value_at = int.from_bytes(header[4:8], order), start + 8
    elif header[4:6] in _LONG_LENGTH_VRS:
        more = fp.read(4)
        if len(more) < 4:
            return PixelElement(tag, base + start + 12, 0)
        length, value_at = int.from_bytes(more, order), start + 12
    else:
        length, value_at = int.from_bytes(header[6:8], order), start + 8
    if length == UNDEFINED_LENGTH:
        return PixelElement(tag, base + value_at, None)
    return PixelElement(tag, base + value_at, length)


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


def _pixel_element_in(ds: Dataset) -> PixelElement | None:
    """The pixel element of a data set read whole (an inflated copy): no file offset."""
    for tag in PIXEL_DATA_TAGS:
        if tag in ds:
            elem = ds[tag]
            value = elem.value if isinstance(elem.value, bytes) else b""
            if elem.is_undefined_length:
                return PixelElement(tag, None, None)
            return PixelElement(tag, None, len(value))
    return None


def _meta_transfer_syntax(view: ClampedReader) -> str:
    """(0002,0010) Transfer Syntax UID of a file with the ``DICM`` prefix (``""`` when it
    cannot be read); leaves ``view`` just after the File Meta Information."""
    view.seek(132)
    try:
        meta = pydicom.filereader._read_file_meta_info(view)  # type: ignore[arg-type]
        return str(meta.get("TransferSyntaxUID", "") or "")
    except Exception:
        return ""


def _inflated_size_problem(view: ClampedReader, start: int, limits: StudyLimits) -> str | None:
    """Why the deflated data set from ``start`` is refused (it inflates to more bytes than
    ``limits.max_member_bytes``), or ``None``.  Measured by inflating 1 MiB at a time
    and discarding the output: nothing of the inflated size is kept."""
    view.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while chunk := view.read(INFLATE_CHUNK):
            data = inflater.decompress(chunk, INFLATE_CHUNK)
            total += len(data)
            while inflater.unconsumed_tail and total <= limits.max_member_bytes:
                data = inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK)
                total += len(data)
            if total > limits.max_member_bytes:
                return limits.member_bytes_problem(total, "deflated data set")
            if inflater.eof:
                break
    except zlib.error:
        return None  # pydicom reports the damage
    return None


def _dcmread(
    fp: IO[bytes], offset: int, *, stop_before_pixels: bool, defer: bool
) -> tuple[Dataset, PixelElement | None]:
    """pydicom's reader from ``offset``; returns the dataset and its pixel element."""
    view = ClampedReader(fp, offset)
    view.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(
            view,  # type: ignore[arg-type]
            force=True,
            stop_before_pixels=stop_before_pixels,
            defer_size=RAW_DEFER_BYTES if defer else None,
        )
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not stop_before_pixels:
        return ds, _pixel_element_in(ds)
    if syntax == DeflatedExplicitVRLittleEndian:  # pydicom read an inflated copy
        return _dcmread(fp, offset, stop_before_pixels=False, defer=defer)
    return ds, _pixel_element_at(view, ds, offset)


def _has_content(ds: Dataset) -> bool:
    """A bare dataset counts as DICOM when it has a SOP class, image size or DICOMDIR records."""
    try:
        return bool(
            ds.get("SOPClassUID")
            or (ds.get("Rows") and ds.get("Columns"))
            or "DirectoryRecordSequence" in ds
        )
    except Exception:
        return False


def _set_transfer_syntax(ds: Dataset) -> None:
    """Give a dataset without (0002,0010) Transfer Syntax UID the encoding it was read with."""
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding[0], ds.original_encoding[1]
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little is False:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _read(
    fp: IO[bytes], *, stop_before_pixels: bool, limits: StudyLimits
) -> tuple[Dataset, PixelElement | None, str]:
    """:func:`read_dataset`, returning the pixel element instead of whether there is one,
    and the (0002,0010) Transfer Syntax UID the file itself holds (``""`` for a bare
    data set or when absent)."""
    fp.seek(0)
    head = fp.read(132)
    if has_dicm_prefix(head):
        view = ClampedReader(fp)
        file_syntax = _meta_transfer_syntax(view)
        if file_syntax == DeflatedExplicitVRLittleEndian:
            problem = _inflated_size_problem(view, view.tell(), limits)
            if problem:
                raise LimitExceeded(problem)
        ds, pixel = _dcmread(fp, 0, stop_before_pixels=stop_before_pixels, defer=False)
        _set_transfer_syntax(ds)
        return ds, pixel, file_syntax
    offsets = [p for p in range(min(len(head), 128)) if _plausible_start(head, p)]
    first_error = ""
    for offset in offsets[:MAX_RESYNC_TRIES]:
        try:
            ds, _ = _dcmread(fp, offset, stop_before_pixels=True, defer=True)
        except Exception as exc:
            first_error = first_error or short_message(exc)
            continue
        if _has_content(ds):
            ds, pixel = _dcmread(fp, offset, stop_before_pixels=stop_before_pixels, defer=False)
            _set_transfer_syntax(ds)
            return ds, pixel, ""
    raise DicomReadError(first_error or "no DICOM preamble and no recognisable data elements")


def read_dataset(
    fp: IO[bytes], *, stop_before_pixels: bool = True, limits: StudyLimits | None = None
) -> tuple[Dataset, bool]:
    """Parse the DICOM dataset in an open binary file.

    Parameters
    ----------
    fp:
        The file, opened for binary reading and seekable.
    stop_before_pixels:
        Stop at the top-level (7FE0,0010) Pixel Data / (7FE0,0008) / (7FE0,0009)
        element without reading it (its presence is still reported).
    limits:
        A deflated data set is inflated only when it inflates to at most
        ``limits.max_member_bytes`` (measured first, without keeping the output).

    Returns
    -------
    tuple[Dataset, bool]
        The dataset, and whether it has top-level pixel data.  A dataset read without
        File Meta Information gets (0002,0010) Transfer Syntax UID set (in memory only)
        to the encoding it was read with, so that pydicom can decode its pixels.

    Raises
    ------
    DicomReadError
        No DICOM dataset was found (no ``DICM`` prefix and no dataset start that yields
        a SOP class, image size or DICOMDIR records).
    LimitExceeded
        A deflated data set inflates to more than the limit.
    Exception
        Whatever pydicom raises while parsing a file that has the ``DICM`` prefix.
    """
    ds, pixel, _ = _read(fp, stop_before_pixels=stop_before_pixels, limits=limits or DEFAULT_LIMITS)
    return ds, pixel is not None


# --------------------------------------------------------------------------- values


def _text(ds: Dataset, keyword: str) -> str:
    """A text-like element as plain ``str``; multiple values joined by ``\\``; ``""`` if absent."""
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, (list, tuple, MultiValue)):
            return "\\".join(str(v) for v in value).strip(" \x00")
        return str(value).strip(" \x00")
    except Exception:
        return ""


def _values(ds: Dataset | None, keyword: str) -> list[Any] | None:
    """The element's values as a list, ``None`` when absent or empty."""
    if ds is None or keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None or value == "":
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _count(ds: Dataset, keyword: str, label: str, default: int | None) -> int | None:
    """A positive integer element (Rows, Columns, Number of Frames...), strict.

    Raises :class:`DicomReadError` when present but not a positive integer.
    """
    try:
        values = _values(ds, keyword)
    except Exception as exc:
        raise DicomReadError(f"unreadable {label}: {short_message(exc)}") from exc
    if values is None:
        return default
    try:
        number = int(values[0])
    except (TypeError, ValueError) as exc:
        raise DicomReadError(f"invalid {label}: {values[0]!r}") from exc
    if number <= 0:
        raise DicomReadError(f"invalid {label}: {number}")
    return number


def _optional_int(ds: Dataset, keyword: str) -> int | None:
    """An integer element such as (0020,0013) Instance Number, tolerant: ``None`` if unusable."""
    try:
        values = _values(ds, keyword)
        return None if values is None else int(values[0])
    except Exception:
        return None


def _floats(ds: Dataset | None, keyword: str, count: int) -> tuple[float, ...] | None:
    """``count`` finite numbers from a DS/FD element, tolerant: ``None`` if absent or unusable."""
    try:
        values = _values(ds, keyword)
        if values is None or len(values) < count:
            return None
        numbers = tuple(float(v) for v in values[:count])
    except Exception:
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _strict_float(ds: Dataset, keyword: str, label: str) -> float | None:
    """A number that changes pixel values (rescale), strict: bad values raise DicomReadError."""
    try:
        values = _values(ds, keyword)
        if values is None:
            return None
        number = float(values[0])
    except Exception as exc:
        raise DicomReadError(f"invalid {label}") from exc
    if not math.isfinite(number):
        raise DicomReadError(f"invalid {label}: {number}")
    return number


def _rescale(item: Dataset | None) -> tuple[float, float] | None:
    """(0028,1053) Rescale Slope and (0028,1052) Rescale Intercept of ``item``, if any."""
    if item is None:
        return None
    slope = _strict_float(item, "RescaleSlope", "Rescale Slope (0028,1053)")
    intercept = _strict_float(item, "RescaleIntercept", "Rescale Intercept (0028,1052)")
    if slope is None and intercept is None:
        return None
    return (1.0 if slope is None else slope, 0.0 if intercept is None else intercept)


def _window(item: Dataset | None) -> tuple[float, float] | None:
    """(0028,1050) Window Center and (0028,1051) Window Width, first values, tolerant."""
    center = _floats(item, "WindowCenter", 1)
    width = _floats(item, "WindowWidth", 1)
    if center is None or width is None:
        return None
    return (center[0], width[0])


def slice_normal(orientation: Sequence[float] | None) -> tuple[float, float, float] | None:
    """Unit normal (row cosines x column cosines) of (0020,0037) Image Orientation (Patient)."""
    if orientation is None or len(orientation) < 6:
        return None
    r, c = orientation[0:3], orientation[3:6]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def slice_location(
    position: Sequence[float] | None, orientation: Sequence[float] | None
) -> float | None:
    """(0020,0032) position projected on the slice normal of (0020,0037), mm, or ``None``."""
    normal = slice_normal(orientation)
    if position is None or normal is None:
        return None
    return float(sum(n * p for n, p in zip(normal, position, strict=False)))


# --------------------------------------------------------------------------- frames


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a sequence element, tolerant: ``None`` when absent or unreadable."""
    try:
        if ds is None or keyword not in ds:
            return None
        seq = ds[keyword].value
        return seq[0] if seq else None
    except Exception:
        return None


def _from_groups(
    per_frame: Dataset | None,
    shared: Dataset | None,
    keyword: str,
    read: Callable[[Dataset | None], T | None],
) -> T | None:
    """``read`` applied to the macro ``keyword`` of a frame: per-frame item, else shared."""
    found = read(_first_item(per_frame, keyword))
    return found if found is not None else read(_first_item(shared, keyword))


def _per_frame_items(ds: Dataset, n_frames: int) -> list[Dataset] | None:
    """(5200,9230) Per-Frame Functional Groups Sequence items, if there is one per frame."""
    try:
        if "PerFrameFunctionalGroupsSequence" not in ds:
            return None
        items = list(ds.PerFrameFunctionalGroupsSequence)
    except Exception:
        return None
    return items if len(items) == n_frames else None


def _frame_geometry(
    ds: Dataset, item: Dataset | None, shared: Dataset | None, single: bool
) -> FrameGeometry:
    """One frame's position, location, rescale and window (enhanced macros, then top level).

    Reads (0020,9113) Plane Position Sequence, (0020,9116) Plane Orientation Sequence,
    (0028,9145) Pixel Value Transformation Sequence and (0028,9132) Frame VOI LUT
    Sequence from the frame's functional groups, then the shared ones, then the
    top-level (0020,0032), (0020,0037), (0028,1052/1053) and (0028,1050/1051).
    Top-level (0020,0032) is used only for a single frame: for a classic multi-frame
    file it is the first frame's position, not every frame's.
    """
    position = _from_groups(
        item, shared, "PlanePositionSequence", lambda m: _floats(m, "ImagePositionPatient", 3)
    )
    if position is None and single:
        position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _from_groups(
        item, shared, "PlaneOrientationSequence", lambda m: _floats(m, "ImageOrientationPatient", 6)
    ) or _floats(ds, "ImageOrientationPatient", 6)
    rescale = _from_groups(item, shared, "PixelValueTransformationSequence", _rescale)
    slope, intercept = rescale or _rescale(ds) or (1.0, 0.0)
    window = _from_groups(item, shared, "FrameVOILUTSequence", _window)
    pos3 = None if position is None else (position[0], position[1], position[2])
    return FrameGeometry(
        position=pos3,
        location=slice_location(pos3, orientation),
        rescale_slope=slope,
        rescale_intercept=intercept,
        window=window or _window(ds),
    )


def frame_geometries(
    ds: Dataset, n_frames: int, should_stop: StopCheck | None = None
) -> tuple[FrameGeometry, ...]:
    """A :class:`FrameGeometry` per frame, from (5200,9229) Shared and (5200,9230)
    Per-Frame Functional Groups Sequences when present, else from top-level elements.

    ``should_stop`` is asked every 64 frames (:class:`Cancelled` when it says so); callers
    check ``n_frames`` against the limits first."""
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = _per_frame_items(ds, n_frames)
    frames = []
    for i in range(n_frames):
        if i % 64 == 63:
            check_stop(should_stop)
        frames.append(
            _frame_geometry(ds, per_frame[i] if per_frame else None, shared, n_frames == 1)
        )
    return tuple(frames)


# --------------------------------------------------------------------------- pixel claims


def _bits_per_sample(ds: Dataset, tag: int) -> int | None:
    """Bits one stored sample takes: 32 / 64 for float pixel data, else (0028,0100) Bits
    Allocated when it is 1 or a multiple of 8 up to 64; ``None`` when unusable."""
    if tag == 0x7FE00008:
        return 32
    if tag == 0x7FE00009:
        return 64
    try:
        bits = _count(ds, "BitsAllocated", "Bits Allocated (0028,0100)", None)
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


def pixel_claims(
    ds: Dataset,
    pixel: PixelElement,
    size: tuple[int, int, int, int],
    limits: StudyLimits,
    fp: Any = None,
    file_size: int | None = None,
    should_stop: StopCheck | None = None,
) -> PixelClaims:
    """Check what a header claims about its pixels, before anything is allocated.

    ``size``: (rows, columns, frames, samples per pixel).  Checked with Python integers:
    the frame size, the bytes a frame decodes to and the frame count against ``limits``;
    uncompressed data: the bytes all
    frames need against the element's declared length, and (several frames) against the
    bytes the file holds, so that a false Number of Frames cannot make thousands of
    slices of a small file; compressed data: at least one fragment per frame (fragments
    are counted in ``fp`` from their item headers).

    Raises
    ------
    LimitExceeded
        With the reason (``refused: ...``).
    """
    rows, columns, frames, samples = size
    limits.check_frame(rows, columns, frames)
    bits = _bits_per_sample(ds, pixel.tag)
    too_many_bytes = limits.frame_bytes_problem(rows, columns, samples, bits) if bits else None
    if too_many_bytes:
        raise LimitExceeded(too_many_bytes)
    photometric = _text(ds, "PhotometricInterpretation").upper()
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


def header_from_dataset(
    ds: Dataset,
    has_pixel_data: bool,
    limits: StudyLimits | None = None,
    should_stop: StopCheck | None = None,
    pixel: PixelElement | None = None,
    fp: Any = None,
    file_size: int | None = None,
) -> DicomHeader:
    """Build a :class:`DicomHeader` from a parsed dataset (see its attributes for the tags).

    Before one record per frame is made, the frame size and count are checked against
    ``limits`` (default :data:`~btd_core.study.limits.DEFAULT_LIMITS`), and with the
    ``pixel`` element (its header, in ``fp`` of ``file_size`` bytes) what the pixels
    claim (:func:`pixel_claims`).

    Raises :class:`DicomReadError` when Rows, Columns, Number of Frames or a rescale value
    is present but unusable, :class:`~btd_core.study.limits.LimitExceeded` when a claim
    is refused, :class:`~btd_core.study.file_access.Cancelled` when ``should_stop`` says so.
    """
    limits = limits or DEFAULT_LIMITS
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds, "SOPClassUID") or (
        _text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    )
    class_name = str(UID(sop_class).name) if sop_class and UID(sop_class).is_valid else ""
    rows = _count(ds, "Rows", "Rows (0028,0010)", None)
    columns = _count(ds, "Columns", "Columns (0028,0011)", None)
    n_frames = _count(ds, "NumberOfFrames", "Number of Frames (0028,0008)", 1) or 1
    try:
        is_dicomdir = sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds
    except Exception:
        is_dicomdir = sop_class == DICOMDIR_SOP_CLASS
    claims = None
    if rows and columns and not is_dicomdir:
        limits.check_frame(rows, columns, n_frames)
        samples = _count(ds, "SamplesPerPixel", "Samples per Pixel (0028,0002)", 1) or 1
        if pixel is not None:
            claims = pixel_claims(
                ds, pixel, (rows, columns, n_frames, samples), limits, fp, file_size, should_stop
            )
    frames = (
        frame_geometries(ds, n_frames, should_stop) if rows and columns and not is_dicomdir else ()
    )
    return DicomHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        series_description=_text(ds, "SeriesDescription"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_date=_text(ds, "StudyDate"),
        rows=rows,
        columns=columns,
        samples_per_pixel=_count(ds, "SamplesPerPixel", "Samples per Pixel (0028,0002)", 1) or 1,
        number_of_frames=n_frames,
        instance_number=_optional_int(ds, "InstanceNumber"),
        has_pixel_data=has_pixel_data,
        is_dicomdir=is_dicomdir,
        frames=frames,
        sop_class_name=class_name,
        is_image_class="Image Storage" in class_name,
        claims=claims,
    )


def read_header(
    fp: IO[bytes], limits: StudyLimits | None = None, should_stop: StopCheck | None = None
) -> DicomHeader:
    """Read the header of the DICOM file open in ``fp`` (pixels are not read).

    Raises :class:`DicomReadError` (not DICOM, or an unusable required value),
    :class:`~btd_core.study.limits.LimitExceeded` (a claim over ``limits``),
    :class:`~btd_core.study.file_access.Cancelled`, or any exception pydicom raises on a
    damaged file; callers catch ``Exception``.
    """
    limits = limits or DEFAULT_LIMITS
    with warnings.catch_warnings():  # pydicom warns on every odd value, lazily
        warnings.simplefilter("ignore")
        ds, pixel, _ = _read(fp, stop_before_pixels=True, limits=limits)
        file_size = fp.seek(0, 2)
        return header_from_dataset(ds, pixel is not None, limits, should_stop, pixel, fp, file_size)


def read_pixel_claims(
    fp: IO[bytes], limits: StudyLimits | None = None, should_stop: StopCheck | None = None
) -> PixelClaims:
    """The pixel claims of the DICOM file open in ``fp``, checked against ``limits``
    (without the per-frame geometry: quick enough to run before decoding each slice).

    Raises :class:`DicomReadError` (not DICOM, no pixel data, no rows/columns),
    :class:`~btd_core.study.limits.LimitExceeded`, or what pydicom raises.
    """
    limits = limits or DEFAULT_LIMITS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, pixel, file_syntax = _read(fp, stop_before_pixels=True, limits=limits)
        file_size = fp.seek(0, 2)
        if pixel is None:
            raise DicomReadError("no pixel data")
        rows = _count(ds, "Rows", "Rows (0028,0010)", None)
        columns = _count(ds, "Columns", "Columns (0028,0011)", None)
        if not (rows and columns):
            raise DicomReadError("no Rows/Columns (0028,0010/0011)")
        frames = _count(ds, "NumberOfFrames", "Number of Frames (0028,0008)", 1) or 1
        samples = _count(ds, "SamplesPerPixel", "Samples per Pixel (0028,0002)", 1) or 1
        size = (rows, columns, frames, samples)
        claims = pixel_claims(ds, pixel, size, limits, fp, file_size, should_stop)
        return replace(claims, file_syntax=file_syntax)
