"""NIfTI-1 and NIfTI-2 volumes (``.nii``, ``.nii.gz``) as series of axial slices.

One file (one 3-D volume, or each volume of a 4-D file) is one series.  The header is
parsed with nibabel (pure Python); the voxels are read here, with numpy, only after every
size the header claims was checked against the study's
:class:`~btd_core.study.limits.StudyLimits` with Python integers.

**Which slices.**  The slice axis is the voxel axis whose direction (the header's best
affine: sform, else qform, else the voxel sizes) lies closest to the patient's
superior-inferior axis, so a volume stored sagittal or coronal is still read as axial
slices (ties: the later axis).  Of the other two, the one closer to left-right runs
along a slice's columns, and both are flipped where needed so that, as in a DICOM axial
image, a column further right in the image is further to the patient's left and a row
further down is further posterior.

**Where.**  Each slice's position is the centre of its first pixel (row 0, column 0) in
DICOM patient coordinates (LPS, mm: NIfTI's RAS+ world with x and y negated), so
``position_*_mm`` mean the same for NIfTI and DICOM slices; its location is that
position on the slice normal (row direction x column direction), and the slices are
ordered by it, as DICOM slices are.  The volume's orientation is nibabel's
``aff2axcodes`` of the affine (``"RAS"``: the voxel axes run towards the patient's
right, anterior and superior).  A header whose affine is unusable (zero or non-finite
voxel sizes) gives no positions and slices along the third axis in file order.

**Compressed files.**  A ``.nii.gz`` is inflated in 1 MiB steps, and never past the
bytes its header claims (the header, then the voxels): a gzip bomb stops there and is
refused; the claim itself must fit ``--max-member-mb``.  Discovery inflates the whole
stream once to check it (its length and CRC) and reading a slice keeps one inflated
volume in memory for the slices after it.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from btd_core.errors import BtdError
from btd_core.study.file_access import READ_CHUNK, StopCheck, check_stop
from btd_core.study.limits import StudyLimits

GZIP_MAGIC = b"\x1f\x8b"
HEADER_BYTES = {1: 348, 2: 540}
"""``sizeof_hdr`` of NIfTI-1 and NIfTI-2."""
MAGIC_AT = {1: 344, 2: 4}
SINGLE_FILE_MAGIC = {1: b"n+1\x00", 2: b"n+2\x00"}
PAIR_MAGIC = {1: b"ni1\x00", 2: b"ni2\x00"}
REASON_PAIR = "NIfTI header of a .hdr/.img pair: not read (save the volume as one .nii or .nii.gz)"


class NiftiError(BtdError, ValueError):
    """Not a usable NIfTI volume; the message says why (``refused: ...`` for a limit)."""


def nifti_version(head: bytes) -> int | None:
    """1 or 2 when ``head`` (a file's first bytes, inflated) starts a NIfTI header of a
    single file or of a ``.hdr``/``.img`` pair, else ``None``."""
    for version, size in HEADER_BYTES.items():
        if len(head) < MAGIC_AT[version] + 4:
            continue
        sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
        magic = head[MAGIC_AT[version] : MAGIC_AT[version] + 4]
        if size in sizes and magic in (SINGLE_FILE_MAGIC[version], PAIR_MAGIC[version]):
            return version
    return None


def is_pair_header(head: bytes, version: int) -> bool:
    """The header of a ``.hdr``/``.img`` pair (its voxels are in another file)."""
    return head[MAGIC_AT[version] : MAGIC_AT[version] + 4] == PAIR_MAGIC[version]


# --------------------------------------------------------------------------- inflating


def inflate(
    fp: BinaryIO,
    limit: int,
    should_stop: StopCheck | None = None,
    keep: bool = True,
) -> tuple[bytes, int]:
    """The gzip stream in ``fp`` (from its start), inflated, never past ``limit`` + 1 bytes.

    Returns ``(data, total)``: ``data`` its first ``limit`` bytes (empty unless ``keep``:
    then the bytes are only counted) and ``total`` the bytes inflated, ``limit`` + 1 when
    the stream holds more than ``limit``.  Concatenated gzip members are read on; zero
    padding after the last is ignored.  Raises :class:`NiftiError` for a corrupt or
    truncated stream or other data after it.
    """
    fp.seek(0)
    parts: list[bytes] = []
    total = 0
    inflater = zlib.decompressobj(wbits=31)
    pending = b""
    while total <= limit:
        if not pending:
            check_stop(should_stop)
            pending = fp.read(READ_CHUNK)
            if not pending:
                if not inflater.eof:
                    raise NiftiError("corrupt .nii.gz: the gzip stream is truncated")
                break
        try:
            out = inflater.decompress(pending, limit - total + 1)
        except zlib.error as exc:
            raise NiftiError(f"corrupt .nii.gz: {exc}") from exc
        pending = inflater.unconsumed_tail
        total += len(out)
        if keep and out:
            parts.append(out)
        if inflater.eof:
            rest = inflater.unused_data + pending
            if not rest:
                rest = fp.read(READ_CHUNK)
            if not rest.strip(b"\x00"):
                break
            if not rest.startswith(GZIP_MAGIC):
                raise NiftiError("corrupt .nii.gz: other data after the gzip stream")
            inflater = zlib.decompressobj(wbits=31)
            pending = rest
    data = b"".join(parts) if keep else b""
    return data[:limit], total


# --------------------------------------------------------------------------- the header


@dataclass(frozen=True)
class NiftiLayout:
    """What a NIfTI header says, checked, and how its voxels become axial slices.

    ``shape``: (nx, ny, nz, volumes) as stored (Fortran order, x fastest); ``dtype``
    with its byte order; ``offset``: byte where the voxels start; ``slope`` and
    ``intercept``: ``scl_slope``/``scl_inter`` (1 and 0 when unset); ``slice_axis``,
    ``column_axis``, ``row_axis``: voxel axes (0-2) and the flips of the last two;
    ``affine``: the 4 x 4 voxel-to-RAS+ affine, or ``None`` when unusable;
    ``orientation``: ``aff2axcodes`` as text (``""`` without an affine).
    """

    version: int
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    offset: int
    slope: float
    intercept: float
    slice_axis: int
    column_axis: int
    row_axis: int
    flip_columns: bool
    flip_rows: bool
    affine: tuple[tuple[float, ...], ...] | None
    orientation: str

    @property
    def rows(self) -> int:
        return self.shape[self.row_axis]

    @property
    def columns(self) -> int:
        return self.shape[self.column_axis]

    @property
    def slices(self) -> int:
        return self.shape[self.slice_axis]

    @property
    def volumes(self) -> int:
        return self.shape[3]

    @property
    def volume_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2] * self.dtype.itemsize

    @property
    def end(self) -> int:
        """Bytes the file must hold: header, extensions and every voxel."""
        return self.offset + self.volume_bytes * self.volumes

    def geometry(self, index: int) -> tuple[tuple[float, float, float] | None, float | None]:
        """Position (LPS, mm, of the slice's first pixel) and location on the slice normal
        (mm) of slice ``index`` along the slice axis; ``(None, None)`` without an affine."""
        if self.affine is None:
            return None, None
        a = np.array(self.affine, dtype=np.float64)
        voxel = [0.0, 0.0, 0.0, 1.0]
        voxel[self.slice_axis] = float(index)
        voxel[self.column_axis] = float(self.columns - 1) if self.flip_columns else 0.0
        voxel[self.row_axis] = float(self.rows - 1) if self.flip_rows else 0.0
        ras = a @ np.array(voxel)
        lps = np.array([-ras[0], -ras[1], ras[2]])
        lps_of = np.diag([-1.0, -1.0, 1.0]) @ a[:3, :3]
        along_row = lps_of[:, self.column_axis] * (-1.0 if self.flip_columns else 1.0)
        along_column = lps_of[:, self.row_axis] * (-1.0 if self.flip_rows else 1.0)
        normal = np.cross(along_row, along_column)
        normal /= np.linalg.norm(normal)
        position = (float(lps[0]), float(lps[1]), float(lps[2]))
        return position, float(normal @ lps)

    def plane(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of a 3-D (nx, ny, nz) volume as rows x columns, flipped."""
        plane = np.take(volume, index, axis=self.slice_axis)
        kept = [axis for axis in range(3) if axis != self.slice_axis]
        if kept.index(self.row_axis) != 0:
            plane = plane.T
        if self.flip_rows:
            plane = plane[::-1]
        if self.flip_columns:
            plane = plane[:, ::-1]
        return plane


_DTYPE_KINDS = "iuf"


def _axes(affine: np.ndarray | None) -> tuple[int, int, int, bool, bool]:
    """(slice, column, row axis, flip columns, flip rows) for a voxel-to-RAS affine."""
    if affine is None:
        return 2, 0, 1, False, False
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    slice_axis = 2
    for axis in (1, 0):
        if abs(directions[2, axis]) > abs(directions[2, slice_axis]) + 1e-9:
            slice_axis = axis
    first, second = (axis for axis in range(3) if axis != slice_axis)
    column_axis = first
    if abs(directions[0, second]) > abs(directions[0, first]) + 1e-9:
        column_axis = second
    row_axis = second if column_axis == first else first
    # columns towards the patient's left (RAS x falling), rows towards posterior (y falling)
    return (
        slice_axis,
        column_axis,
        row_axis,
        bool(directions[0, column_axis] > 0),
        bool(directions[1, row_axis] > 0),
    )


def _usable_affine(header: object) -> np.ndarray | None:
    try:
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)  # type: ignore[attr-defined]
    except Exception:
        return None
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        return None
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if (sizes < 1e-6).any() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        return None
    return affine


def parse_header(raw: bytes, limits: StudyLimits) -> NiftiLayout:
    """Check a NIfTI header (its first 348 or 540 bytes) and lay out its slices.

    Raises :class:`NiftiError` when it is not a usable single-file 3-D/4-D NIfTI volume
    of integers or floats, or claims more than ``limits`` allow (``refused: ...``).
    """
    import nibabel as nib
    from nibabel.orientations import aff2axcodes

    version = nifti_version(raw)
    if version is None:
        raise NiftiError("not a NIfTI header")
    if is_pair_header(raw, version):
        raise NiftiError(REASON_PAIR)
    if len(raw) < HEADER_BYTES[version]:
        raise NiftiError(f"truncated: {len(raw)} bytes, too short for a NIfTI header")
    cls = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    try:
        header = cls(raw[: HEADER_BYTES[version]], check=False)
        dim = [int(n) for n in header["dim"]]
    except Exception as exc:
        raise NiftiError(f"not a valid NIfTI header: {exc}") from exc
    ndim = dim[0]
    if ndim not in (3, 4):
        raise NiftiError(
            f"not a 3-D or 4-D volume: the header gives {ndim} dimensions "
            f"({'x'.join(str(n) for n in dim[1 : 1 + max(min(ndim, 7), 0)])})"
        )
    sizes = dim[1 : ndim + 1] + ([1] if ndim == 3 else [])
    if any(n < 1 for n in sizes):
        raise NiftiError(f"empty or negative size in the header's dim {tuple(sizes)}")
    try:
        dtype = header.get_data_dtype()
    except Exception as exc:
        raise NiftiError(f"unsupported NIfTI data type: {exc}") from exc
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.itemsize > 8:
        raise NiftiError(f"unsupported NIfTI data type {header.get_value_label('datatype')}")
    vox_offset = float(header["vox_offset"])
    if not math.isfinite(vox_offset) or vox_offset < 0 or vox_offset != int(vox_offset):
        raise NiftiError(f"not a valid NIfTI header: vox_offset {vox_offset}")
    offset = max(int(vox_offset), HEADER_BYTES[version])
    slope, intercept = header.get_slope_inter()
    affine = _usable_affine(header)
    slice_axis, column_axis, row_axis, flip_columns, flip_rows = _axes(affine)
    shape = (sizes[0], sizes[1], sizes[2], sizes[3])
    refused = limits.frame_problem(shape[row_axis], shape[column_axis]) or limits.frames_problem(
        shape[slice_axis] * shape[3]
    )
    if refused:
        raise NiftiError(refused)
    orientation = "".join(aff2axcodes(affine)) if affine is not None else ""
    return NiftiLayout(
        version=version,
        shape=shape,
        dtype=dtype,
        offset=offset,
        slope=1.0 if slope is None else float(slope),
        intercept=0.0 if intercept is None else float(intercept),
        slice_axis=slice_axis,
        column_axis=column_axis,
        row_axis=row_axis,
        flip_columns=flip_columns,
        flip_rows=flip_rows,
        affine=None if affine is None else tuple(tuple(float(v) for v in r) for r in affine),
        orientation=orientation,
    )


def read_layout(
    fp: BinaryIO,
    compressed: bool,
    limits: StudyLimits,
    should_stop: StopCheck | None = None,
    check_stream: bool = False,
) -> NiftiLayout:
    """The checked layout of the NIfTI file open in ``fp`` (plain or gzip).

    The voxels must fit the file (a plain file) or the claim ``--max-member-mb`` (a
    gzip stream, which ``check_stream`` then inflates whole to check that it holds
    exactly that many bytes, never inflating more than one byte past them).
    """
    if compressed:
        raw = inflated_head(fp)
    else:
        fp.seek(0)
        raw = fp.read(HEADER_BYTES[2])
    layout = parse_header(raw, limits)
    if compressed:
        problem = limits.member_bytes_problem(layout.end, "gzip-compressed NIfTI file")
        if problem:
            raise NiftiError(problem)
        if check_stream:
            _, total = inflate(fp, layout.end, should_stop, keep=False)
            _check_total(total, layout.end)
    else:
        size = fp.seek(0, os.SEEK_END)
        if size < layout.end:
            raise NiftiError(
                f"truncated: the header claims {layout.end} bytes (header and voxels), "
                f"the file has {size}"
            )
    return layout


def inflated_head(fp: BinaryIO) -> bytes:
    """The first bytes (a NIfTI-2 header's worth) of the gzip stream in ``fp``; what a
    truncated stream gave (a corrupt one raises :class:`NiftiError`)."""
    fp.seek(0)
    inflater = zlib.decompressobj(wbits=31)
    try:
        return inflater.decompress(fp.read(READ_CHUNK), HEADER_BYTES[2])
    except zlib.error as exc:
        raise NiftiError(f"corrupt .nii.gz: {exc}") from exc


def _check_total(total: int, end: int) -> None:
    """A gzip stream that inflates to ``total`` bytes must hold exactly the ``end`` claimed."""
    if total < end:
        raise NiftiError(
            f"truncated: the header claims {end} bytes (header and voxels), "
            f"the gzip stream holds {total}"
        )
    if total > end:
        raise NiftiError(
            f"refused: the gzip stream inflates to more than the {end} bytes its header "
            "claims (a gzip bomb?); inflating stopped there"
        )


# --------------------------------------------------------------------------- the voxels


class _Inflated:
    """The last inflated ``.nii.gz`` (at most one, within the limits), for the slices
    read after the first: reading slice k of a gzip stream means inflating all before it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: object = None
        self.data: bytes = b""

    def get(self, key: object, fp: BinaryIO, end: int) -> bytes:
        with self.lock:
            if key is not None and key == self.key:
                return self.data
            self.key, self.data = None, b""
            data, total = inflate(fp, end)
            _check_total(total, end)
            if key is not None:
                self.key, self.data = key, data
            return data


_INFLATED = _Inflated()


def read_frame(
    fp: BinaryIO,
    compressed: bool,
    frame: int,
    limits: StudyLimits,
    cache_key: object = None,
) -> tuple[np.ndarray, NiftiLayout]:
    """Frame ``frame`` (volume ``frame // slices``, slice ``frame % slices`` along the
    slice axis) of the NIfTI file in ``fp`` as stored values (float32, ``scl_slope`` and
    ``scl_inter`` not applied), and the layout; the header is checked again first.

    ``cache_key`` names the file's current content (path, size, mtime): a ``.nii.gz``
    with the same key is not inflated again.
    """
    layout = read_layout(fp, compressed, limits)
    volume_index, index = divmod(frame, layout.slices)
    if volume_index >= layout.volumes:
        raise NiftiError(f"frame {frame} is not in the file ({layout.slices * layout.volumes})")
    shape = layout.shape[:3]
    start = layout.offset + volume_index * layout.volume_bytes
    count = shape[0] * shape[1] * shape[2]
    if compressed:
        data = _INFLATED.get(cache_key, fp, layout.end)
        volume = np.frombuffer(data, dtype=layout.dtype, count=count, offset=start)
        volume = volume.reshape(shape, order="F")
    elif isinstance(fp, io.BytesIO):
        volume = np.frombuffer(fp.getbuffer(), dtype=layout.dtype, count=count, offset=start)
        volume = volume.reshape(shape, order="F")
    else:
        volume = np.memmap(fp, dtype=layout.dtype, mode="r", offset=start, shape=shape, order="F")
    try:
        return np.array(layout.plane(volume, index), dtype=np.float32), layout
    finally:
        del volume
