"""Read one slice's pixels as a float32 array (runtime world: numpy, pydicom, Pillow).

:func:`read_slice` decodes the slice a :class:`~btd_core.study.records.SliceRef` points at:
DICOM through pydicom and its codec plugins (only the needed frame of a multi-frame
file), with the slice's rescale applied so CT comes out in Hounsfield units; PNG,
JPEG and TIFF as grayscale in [0, 1]; ``.npy`` as stored.  Every failure becomes a
:class:`SliceReadError` with a plain message.
"""

from __future__ import annotations

import warnings
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from btd_core.study.dicom_header import has_dicm_prefix, read_dataset
from btd_core.study.file_access import (
    IMAGE_FORMATS,
    npy_problem,
    open_regular_file,
    read_npy_header,
    short_message,
)
from btd_core.study.records import Series, SliceRef

SOP_CLASS_UID = 0x00080016
_COLOUR_PHOTOMETRICS = ("PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


class SliceReadError(Exception):
    """A slice could not be read or decoded; the message says what is wrong."""


# --------------------------------------------------------------------------- DICOM


def _fast_path_ok(fp: BinaryIO) -> bool:
    """Whether pydicom can decode straight from the file: ``DICM`` prefix, (0002,0010)
    Transfer Syntax UID present and not deflated."""
    fp.seek(0)
    if not has_dicm_prefix(fp.read(132)):
        return False
    fp.seek(0)
    head = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=[SOP_CLASS_UID])
    syntax = head.file_meta.get("TransferSyntaxUID")
    return bool(syntax) and syntax != DeflatedExplicitVRLittleEndian


def _decode_dicom(ref: SliceRef) -> np.ndarray:
    """The stored values of the slice's frame: (0028,0002) Samples per Pixel 1 only.

    Decodes only frame ``ref.frame`` of a multi-frame file when the file is in the DICOM
    File Format; a bare dataset (no File Meta Information) is read whole.
    """
    with open_regular_file(ref.path) as fp:
        if _fast_path_ok(fp):
            info = Dataset()
            fp.seek(0)
            stored = pixel_array(fp, index=ref.frame, ds_out=info)
        else:
            info, _ = read_dataset(fp, stop_before_pixels=False)
            stored = pixel_array(info, index=ref.frame)
    photometric = str(info.get("PhotometricInterpretation", "")).strip()
    if int(info.get("SamplesPerPixel", 1) or 1) > 1 or photometric in _COLOUR_PHOTOMETRICS:
        raise SliceReadError(f"colour image ({photometric or 'RGB'}), expected grayscale")
    return stored


def _read_dicom(ref: SliceRef) -> np.ndarray:
    """Stored values x (0028,1053) Rescale Slope + (0028,1052) Rescale Intercept of the slice."""
    stored = _decode_dicom(ref)
    values = stored.astype(np.float64)
    if ref.rescale_slope != 1.0 or ref.rescale_intercept != 0.0:
        values = values * ref.rescale_slope + ref.rescale_intercept
    return values.astype(np.float32)


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


def _read_image(ref: SliceRef) -> np.ndarray:
    """A PNG/JPEG/TIFF page as grayscale (colour is converted with Pillow's ``L`` weights)."""
    with open_regular_file(ref.path) as fp, Image.open(fp, formats=IMAGE_FORMATS) as im:
        if ref.frame is not None:
            im.seek(ref.frame)
        im.load()
        return _image_values(im)


def _read_npy(ref: SliceRef) -> np.ndarray:
    """The 2-D array, or frame ``ref.frame`` of a 3-D one, as float32 (values as stored)."""
    with open_regular_file(ref.path) as fp:
        shape, dtype, fortran, offset = read_npy_header(fp)
        fp.seek(0, 2)
        problem = npy_problem(shape, dtype, fp.tell() - offset)
        if problem:
            raise SliceReadError(problem)
        order = "F" if fortran else "C"
        array = np.memmap(fp, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        try:
            part = array if ref.frame is None or len(shape) == 2 else array[ref.frame]
            return np.array(part, dtype=np.float32)
        finally:
            del array


# --------------------------------------------------------------------------- entry point

_READERS = {"dicom": _read_dicom, "image": _read_image, "npy": _read_npy}


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

    Raises
    ------
    SliceReadError
        For any failure: unreadable or truncated file, codec missing or failing,
        colour image, wrong size, non-finite values.
    """
    reader = _READERS.get(series.kind)
    if reader is None:
        raise SliceReadError(f"unknown series kind {series.kind!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = reader(ref)
    except SliceReadError:
        raise
    except PermissionError as exc:
        raise SliceReadError("permission denied") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # also a codec's Rust panic (pyo3 PanicException)
        raise SliceReadError(f"could not decode the pixels: {short_message(exc)}") from exc
    return _check(values, series)
