"""Find and parse the DICOM data set in an open file, whatever its framing (runtime world).

Three framings are met: the DICOM File Format (128-byte preamble, ``DICM``, File Meta
Information), a bare data set without preamble, and a bare data set behind a few stray
bytes (pydicom's own ``no_meta.dcm`` starts with one).  :func:`read_framed` finds the
data set, has pydicom parse it (through a :class:`~btd_core.study.file_access.ClampedReader`,
so that no length field can make it allocate more than the file holds) and locates the
top-level pixel data element from its element header without reading it.  A deflated
data set is measured before pydicom inflates it.  Only pydicom's public reading API is used.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import IO, Any

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset as read_elements
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from btd_core.study.dicom_values import DicomReadError
from btd_core.study.file_access import ClampedReader, short_message
from btd_core.study.limits import DEFAULT_LIMITS, LimitExceeded, StudyLimits

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
"""(7FE0,0010) Pixel Data, (7FE0,0008) Float Pixel Data, (7FE0,0009) Double Float Pixel Data."""

RAW_DEFER_BYTES = 1 << 20
"""While guessing whether a file without preamble is DICOM, values larger than this are
skipped rather than read, so that a large non-DICOM file cannot fill memory."""

MAX_RESYNC_TRIES = 4
"""At most this many candidate dataset starts are tried inside a file's first 128 bytes."""

UNDEFINED_LENGTH = 0xFFFFFFFF
"""The value length of an element whose value runs to a delimiter (encapsulated pixel data)."""

INFLATE_CHUNK = 1 << 20
"""Bytes of deflated data fed to zlib at a time while measuring what a data set inflates to."""

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    b"UL UN UR US UT UV".split()
)
_FIRST_GROUPS = (0x0002, 0x0008, 0x0200, 0x0800)
"""A bare dataset starts with group 0002 or 0008; 0x0200 / 0x0800 are the same read big-endian."""

_LONG_LENGTH_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
"""Explicit VRs whose value length takes 4 bytes (after 2 reserved bytes)."""


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
class FramedDataset:
    """A parsed data set and what its framing says about it.

    Attributes
    ----------
    dataset:
        The parsed data set; one read without (0002,0010) Transfer Syntax UID has it
        set (in memory only) to the encoding it was read with.
    pixel:
        The top-level pixel data element, ``None`` when there is none.
    file_syntax:
        (0002,0010) Transfer Syntax UID as the file's own File Meta Information holds it;
        ``""`` for a bare data set, or when absent or unreadable.
    """

    dataset: Dataset
    pixel: PixelElement | None
    file_syntax: str


def has_dicm_prefix(head: bytes) -> bool:
    """Whether ``head`` (a file's first 132 bytes) holds ``DICM`` at offset 128."""
    return head[128:132] == b"DICM"


# --------------------------------------------------------------------------- File Meta


def _not_group_0002(tag: BaseTag, vr: str | None, length: int) -> bool:
    """Stop condition for :func:`read_file_meta`: the element is past group 0002."""
    return tag >> 16 != 2


def read_file_meta(fp: Any) -> FileMetaDataset:
    """The File Meta Information (group 0002) that starts at ``fp``'s position (just
    after ``DICM``); leaves ``fp`` just after it.  May be empty.

    pydicom's public :func:`pydicom.filereader.read_file_meta_info` does the same from a
    path, but a study member may be an in-memory copy and every read here goes through a
    :class:`~btd_core.study.file_access.ClampedReader`; so this reads the group with the
    public :func:`pydicom.filereader.read_dataset` step by step as that function does
    (pydicom 3.0): Explicit VR Little Endian, read again as Implicit VR when an element
    cannot be decoded that way, (0002,0000) decoded.  Raises what pydicom raises on a
    damaged group.  ``tests/test_dicom_framing.py`` holds the two equal on every bundled
    file and on damaged copies.
    """
    start = fp.tell()
    meta = FileMetaDataset(
        read_elements(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_not_group_0002)
    )
    meta.set_original_encoding(
        is_implicit_vr=False, is_little_endian=True, character_encoding=default_encoding
    )
    if len(meta) == 0:
        return meta
    try:  # pydicom's own test, kept whole: elements() decodes every element whose value
        # is None (deferred or empty), then the first element is decoded
        meta[list(meta.elements())[0].tag]  # noqa: RUF015 (next(iter(...)) skips the others)
    except NotImplementedError:  # an element Explicit VR cannot decode: Implicit VR group
        fp.seek(start)
        meta = FileMetaDataset(
            read_elements(fp, is_implicit_VR=True, is_little_endian=True, stop_when=_not_group_0002)
        )
        meta.set_original_encoding(
            is_implicit_vr=True, is_little_endian=True, character_encoding=default_encoding
        )
    if "FileMetaInformationGroupLength" in meta:  # decoded there too (to log a mismatch)
        _ = meta.FileMetaInformationGroupLength
    return meta


def _meta_transfer_syntax(view: ClampedReader) -> str:
    """(0002,0010) Transfer Syntax UID of a file with the ``DICM`` prefix (``""`` when it
    cannot be read); leaves ``view`` just after the File Meta Information."""
    view.seek(132)
    try:
        return str(read_file_meta(view).get("TransferSyntaxUID", "") or "")
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


# --------------------------------------------------------------------------- pixel element


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


# --------------------------------------------------------------------------- data set


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


def read_framed(
    fp: IO[bytes], *, stop_before_pixels: bool = True, limits: StudyLimits | None = None
) -> FramedDataset:
    """Find and parse the DICOM data set in ``fp`` (binary, seekable).

    ``stop_before_pixels``: stop at the top-level pixel data element without reading its
    value (it is still located).  ``limits.max_member_bytes`` bounds what a deflated data
    set may inflate to (measured first, without keeping the output).

    Raises
    ------
    DicomReadError
        No DICOM dataset was found (no ``DICM`` prefix and no dataset start within the
        first 128 bytes that yields a SOP class, image size or DICOMDIR records).
    LimitExceeded
        A deflated data set inflates to more than the limit.
    Exception
        Whatever pydicom raises while parsing a file that has the ``DICM`` prefix.
    """
    limits = limits or DEFAULT_LIMITS
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
        return FramedDataset(ds, pixel, file_syntax)
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
            return FramedDataset(ds, pixel, "")
    raise DicomReadError(first_error or "no DICOM preamble and no recognisable data elements")


def read_dataset(
    fp: IO[bytes], *, stop_before_pixels: bool = True, limits: StudyLimits | None = None
) -> tuple[Dataset, bool]:
    """:func:`read_framed`'s data set, and whether it has top-level pixel data (for
    callers that decode or copy the data set itself).  Raises what :func:`read_framed` raises.
    """
    framed = read_framed(fp, stop_before_pixels=stop_before_pixels, limits=limits)
    return framed.dataset, framed.pixel is not None
