"""Read one slice's pixels as a float32 array (runtime world: numpy, pydicom, Pillow).

:func:`read_slice` decodes the slice a :class:`~btd_core.study.records.SliceRef` points at:
DICOM through pydicom and its codec plugins (only the needed frame of a multi-frame
file), with the slice's rescale applied so CT comes out in Hounsfield units; PNG,
JPEG and TIFF as grayscale in [0, 1]; ``.npy`` as stored.  Every failure becomes a
:class:`SliceReadError` with a plain message.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from btd_core.errors import BtdError
from btd_core.study.archives import ZipReadError, read_member_of_file
from btd_core.study.dicom_framing import read_dataset
from btd_core.study.dicom_values import DicomReadError
from btd_core.study.file_access import (
    IMAGE_FORMATS,
    ClampedReader,
    npy_problem,
    open_regular_file,
    read_npy_header,
    short_message,
)
from btd_core.study.limits import LimitExceeded, StudyLimits
from btd_core.study.nifti import GZIP_MAGIC, NiftiError, read_frame
from btd_core.study.pixel_claims import PixelClaims, read_pixel_claims
from btd_core.study.records import Series, SliceRef

_COLOUR_PHOTOMETRICS = ("PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
RESCALE_ROWS = 256
"""Rows rescaled at a time in float64 (keeps the float64 copy of a large frame small)."""


class SliceReadError(BtdError):
    """A slice could not be read or decoded; the message says what is wrong."""


@contextmanager
def open_slice_file(ref: SliceRef, limits: StudyLimits) -> Iterator[BinaryIO]:
    """The slice's file, open for reading: ``ref.path``, or its resolved symlink target
    (opened without following a link again), or its zip member read into memory
    (checked against ``limits`` first)."""
    if ref.member is not None and ref.source is not None:
        yield io.BytesIO(read_member_of_file(ref.source, ref.member, limits))
        return
    path = ref.source or ref.path
    with open_regular_file(path, nofollow=ref.source is not None) as fp:
        yield fp


# --------------------------------------------------------------------------- DICOM


def _check_claims(fp: BinaryIO, series: Series, ref: SliceRef) -> PixelClaims:
    """Before decoding: the header's claims within the series' limits (the file may have
    changed since discovery), its size the series' size, grayscale (a colour frame is not
    decoded at all), the frame in the file, and an uncompressed frame's bytes inside the
    file.  Returns the claims."""
    try:
        claims = read_pixel_claims(fp, series.limits)
    except DicomReadError as exc:
        raise SliceReadError(f"could not decode the pixels: {short_message(exc)}") from exc
    if (
        series.rows
        and series.columns
        and (claims.rows, claims.columns)
        != (
            series.rows,
            series.columns,
        )
    ):
        raise SliceReadError(
            f"slice is {claims.rows}x{claims.columns} pixels, "
            f"the series is {series.rows}x{series.columns}"
        )
    if claims.samples > 1 or claims.photometric in _COLOUR_PHOTOMETRICS:
        raise SliceReadError(f"colour image ({claims.photometric or 'RGB'}), expected grayscale")
    index = ref.frame or 0
    if index >= claims.frames:
        raise SliceReadError(f"frame {index} is not in the file ({claims.frames} frames)")
    end = claims.frame_end(index)
    if end is not None and claims.file_size is not None and end > claims.file_size:
        raise SliceReadError(
            f"could not decode the pixels: truncated pixel data (the frame ends at byte "
            f"{end}, the file has {claims.file_size})"
        )
    return claims


def _decode_dicom(ref: SliceRef, series: Series) -> np.ndarray:
    """The stored values of the slice's frame: (0028,0002) Samples per Pixel 1 only.

    Decodes only frame ``ref.frame`` of a multi-frame file when the file is in the DICOM
    File Format with its (0002,0010) Transfer Syntax UID (not deflated); a bare dataset
    (no File Meta Information) or a deflated one is read whole.  The header's claims are
    checked first (:func:`_check_claims`).
    """
    with open_slice_file(ref, series.limits) as fp:
        claims = _check_claims(fp, series, ref)
        syntax = claims.file_syntax
        if syntax and syntax != DeflatedExplicitVRLittleEndian:
            info = Dataset()
            fp.seek(0)
            reader = ClampedReader(fp)  # a hostile fragment length cannot allocate gigabytes
            stored = pixel_array(reader, index=ref.frame, ds_out=info)  # type: ignore[arg-type]
        else:
            info, _ = read_dataset(fp, stop_before_pixels=False, limits=series.limits)
            stored = pixel_array(info, index=ref.frame)
    photometric = str(info.get("PhotometricInterpretation", "")).strip()
    if int(info.get("SamplesPerPixel", 1) or 1) > 1 or photometric in _COLOUR_PHOTOMETRICS:
        raise SliceReadError(f"colour image ({photometric or 'RGB'}), expected grayscale")
    return stored


def _read_dicom(ref: SliceRef, series: Series) -> np.ndarray:
    """Stored values x (0028,1053) Rescale Slope + (0028,1052) Rescale Intercept of the slice.

    Computed in float64, :data:`RESCALE_ROWS` rows at a time, into a float32 array: the
    extra memory is the float32 result (4 bytes per pixel), not a float64 copy of the frame.
    """
    stored = _decode_dicom(ref, series)
    if stored.ndim != 2:
        return stored.astype(np.float32)
    values = np.empty(stored.shape, dtype=np.float32)
    rescale = ref.rescale_slope != 1.0 or ref.rescale_intercept != 0.0
    for top in range(0, stored.shape[0], RESCALE_ROWS):
        block = stored[top : top + RESCALE_ROWS].astype(np.float64)
        if rescale:
            block = block * ref.rescale_slope + ref.rescale_intercept
        values[top : top + RESCALE_ROWS] = block
    return values


# --------------------------------------------------------------------------- images, .npy


def _image_values(im: Image.Image) -> np.ndarray:
    """Grayscale in [0, 1]: 8-bit / 255, 16-bit / 65535; 32-bit float TIFF as stored."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32) / 65535.0
    if mode == "I":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise SliceReadError("32-bit integer image outside the 16-bit range")
        return values.astype(np.float32) / 65535.0
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode == "1":
        return np.asarray(im, dtype=np.float32)
    if mode != "L":
        im = im.convert("L")
    return np.asarray(im).astype(np.float32) / 255.0


def _read_image(ref: SliceRef, series: Series) -> np.ndarray:
    """A PNG/JPEG/TIFF page as grayscale (colour is converted with Pillow's ``L`` weights);
    its size is checked against the series' limits before it is decoded."""
    with (
        open_slice_file(ref, series.limits) as fp,
        Image.open(fp, formats=IMAGE_FORMATS) as im,
    ):
        if ref.frame is not None:
            im.seek(ref.frame)
        columns, rows = im.size
        refused = series.limits.frame_problem(rows, columns)
        if refused:
            raise SliceReadError(refused)
        im.load()
        return _image_values(im)


def _read_npy(ref: SliceRef, series: Series) -> np.ndarray:
    """The 2-D array, or frame ``ref.frame`` of a 3-D one, as float32 (values as stored);
    its header is checked again (:func:`~btd_core.study.file_access.npy_problem`)."""
    with open_slice_file(ref, series.limits) as fp:
        shape, dtype, fortran, offset = read_npy_header(fp)
        size = fp.seek(0, 2)
        problem = npy_problem(shape, dtype, size - offset, series.limits)
        if problem:
            raise SliceReadError(problem)
        order = "F" if fortran else "C"
        if isinstance(fp, io.BytesIO):
            count = math.prod(shape)
            flat = np.frombuffer(fp.getbuffer(), dtype=dtype, count=count, offset=offset)
            array = flat.reshape(shape, order=order)
        else:
            array = np.memmap(fp, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        try:
            part = array if ref.frame is None or len(shape) == 2 else array[ref.frame]
            return np.array(part, dtype=np.float32)
        finally:
            del array


def _read_nifti(ref: SliceRef, series: Series) -> np.ndarray:
    """Frame ``ref.frame`` of a NIfTI volume (plain or gzip), its header checked again
    against the series' limits first, times ``scl_slope`` plus ``scl_inter``."""
    with open_slice_file(ref, series.limits) as fp:
        compressed = fp.read(2) == GZIP_MAGIC
        key = None
        if compressed:
            stat = (
                os.fstat(fp.fileno())
                if hasattr(fp, "fileno") and not isinstance(fp, io.BytesIO)
                else None
            )
            identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat else None
            key = (str(ref.source or ref.path), ref.member, identity) if identity else None
        try:
            values, layout = read_frame(fp, compressed, ref.frame or 0, series.limits, key)
        except NiftiError as exc:
            raise SliceReadError(short_message(exc, limit=300)) from exc
    if series.rows and (layout.rows, layout.columns) != (series.rows, series.columns):
        raise SliceReadError(
            f"slice is {layout.rows}x{layout.columns} pixels, "
            f"the series is {series.rows}x{series.columns}"
        )
    if layout.slope != 1.0 or layout.intercept != 0.0:
        values = values * np.float32(layout.slope) + np.float32(layout.intercept)
    return values


# --------------------------------------------------------------------------- entry point

_READERS = {"dicom": _read_dicom, "image": _read_image, "npy": _read_npy, "nifti": _read_nifti}


def _check(values: np.ndarray, series: Series) -> np.ndarray:
    """2-D, the series' size, finite values only."""
    if values.ndim != 2:
        raise SliceReadError(f"expected a 2-D slice, got shape {values.shape}")
    expected = (series.rows, series.columns)
    if series.rows and series.columns and values.shape != expected:
        raise SliceReadError(
            f"slice is {values.shape[0]}x{values.shape[1]} pixels, "
            f"the series is {expected[0]}x{expected[1]}"
        )
    if not np.isfinite(values).all():
        raise SliceReadError("non-finite values (NaN or infinity) in the slice")
    return values


def read_slice(series: Series, ref: SliceRef) -> np.ndarray:
    """Read one slice as float32 ``[rows, columns]``.

    Parameters
    ----------
    series:
        The series the slice belongs to (its ``kind``, ``rows`` and ``columns`` are used).
    ref:
        The slice: file, and frame for multi-frame DICOM, multi-page TIFF or 3-D ``.npy``.

    Returns
    -------
    numpy.ndarray
        DICOM: (7FE0,0010) stored values x (0028,1053) Rescale Slope + (0028,1052)
        Rescale Intercept as recorded in ``ref`` (Hounsfield units for CT).  Images:
        grayscale, 8-bit / 255 and 16-bit / 65535.  ``.npy``: values as stored.
        NIfTI: stored values x ``scl_slope`` + ``scl_inter``, the slice laid out as
        :mod:`btd_core.study.nifti` says.

    Raises
    ------
    SliceReadError
        For any failure: unreadable or truncated file, codec missing or failing,
        colour image, wrong size, non-finite values, a header over the series' limits
        (``refused: ...``), a zip member that cannot be read.
    """
    reader = _READERS.get(series.kind)
    if reader is None:
        raise SliceReadError(f"unknown series kind {series.kind!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = reader(ref, series)
    except SliceReadError:
        raise
    except (LimitExceeded, ZipReadError) as exc:
        raise SliceReadError(short_message(exc, limit=300)) from exc
    except PermissionError as exc:
        raise SliceReadError("permission denied") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # also a codec's Rust panic (pyo3 PanicException)
        raise SliceReadError(f"could not decode the pixels: {short_message(exc)}") from exc
    return _check(values, series)
