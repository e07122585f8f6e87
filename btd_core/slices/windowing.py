"""From a slice's pixel values to the model's input range [0, 1], by the modality profile.

``btd_core.study.pixels.read_slice`` gives float32 values in the series' own units:
Hounsfield units for CT DICOM (Rescale Slope/Intercept applied), rescaled stored
values for MR DICOM, [0, 1] for 8/16-bit images (value / max), and values as
stored for ``.npy``.  This module maps them to [0, 1]:

CT model
    DICOM CT and ``.npy`` are taken as HU (the public CT test sets store HU in
    ``.npy``) and windowed to the card's window, ``(HU + 700) / 2700`` clipped.
    Images are taken as already windowed (value / max).
MRI model
    DICOM MR: the slice's own (0028,1050)/(0028,1051) Window Center/Width when
    present, else its 0.5th..99.5th percentiles, mapped linearly onto [0, 1] and
    clipped (upstream trained on 8-bit exports of the displayed image).  Images:
    as they are.  ``.npy``: as they are when already in [0, 1], else percentiles.
"""

from __future__ import annotations

import numpy as np

from btd_core.slices.profiles import ModalityProfile
from btd_core.study.records import Series, SliceRef

MR_PERCENTILES = (0.5, 99.5)
"""Robust range (percent) of an MR slice without a stored window."""

_ACCEPTED_MODALITIES = {"ct": {"CT"}, "mri": {"MR"}}


def modality_mismatch(series: Series, profile: ModalityProfile) -> str:
    """Why ``series`` must not be scored (or trained on) for ``profile``, or ``""`` when it fits.

    Only DICOM series carry a (0008,0060) Modality; image and ``.npy`` series are
    accepted as the model's modality.
    """
    if series.kind != "dicom":
        return ""
    accepted = _ACCEPTED_MODALITIES.get(profile.name, set())
    if series.modality.upper() in accepted:
        return ""
    shown = series.modality or "unknown"
    return f"modality {shown} does not fit the {profile.name.upper()} model"


def to_model_range(
    pixels: np.ndarray, series: Series, ref: SliceRef, profile: ModalityProfile
) -> np.ndarray:
    """Window one slice's values to float32 [0, 1] for ``profile`` (see module doc)."""
    if series.kind == "image":
        return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)
    if profile.name == "ct":
        return profile.to_unit_range(pixels)
    if series.kind == "dicom" and ref.window is not None and ref.window[1] > 1:
        centre, width = ref.window
        return _linear(pixels, centre - width / 2, centre + width / 2)
    if series.kind == "npy" and pixels.size and pixels.min() >= 0 and pixels.max() <= 1:
        return pixels.astype(np.float32, copy=False)
    low, high = np.percentile(pixels, MR_PERCENTILES) if pixels.size else (0.0, 1.0)
    return _linear(pixels, float(low), float(high))


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    span = max(high - low, 1e-6)
    unit = (values.astype(np.float32) - np.float32(low)) / np.float32(span)
    return np.clip(unit, 0.0, 1.0, out=unit)
