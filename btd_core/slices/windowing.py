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
    By the card's ``intensity`` (:data:`~btd_core.slices.profiles.INTENSITY_METHODS`).
    The default, ``series-head-p1-99.5``: DICOM MR, NIfTI and ``.npy`` through one
    linear map per series, the 1st..99.5th percentiles of the head (:func:`head_mask`)
    over up to :data:`SERIES_SAMPLE_SLICES` of its slices, clipped to [0, 1]: every
    slice of a series is mapped alike, so neighbouring slices stay comparable, and one
    edited slice barely moves the map (``docs/mri.md`` has the
    measurement).  Cards without the entry (``slice-window-else-p0.5-99.5``): the
    slice's own (0028,1050)/(0028,1051) Window Center/Width when present, else its
    0.5th..99.5th percentiles.  Images: as they are.  ``.npy``: as they are when
    already in [0, 1].
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from btd_core.slices.profiles import MR_LEGACY, MR_SERIES, ModalityProfile
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Series, SliceRef

MR_PERCENTILES = (0.5, 99.5)
"""Robust range (percent) of an MR slice without a stored window."""
MR_HEAD_PERCENTILES = (1.0, 99.5)
"""The range (percent) of the head's values that :data:`MR_SERIES` maps onto [0, 1]."""
SERIES_SAMPLE_SLICES = 24
"""Slices (evenly spaced) read to measure a series' MR range."""
SERIES_SAMPLE_PIXELS = 1 << 16
"""Head pixels kept per sampled slice (every k-th), so the measure's memory is bounded."""
_SERIES_LOCK = threading.Lock()

MR_NORMALISATIONS: dict[str, str] = {
    "slice-minmax": "the slice's minimum and maximum",
    "slice-p0.5-99.5": "the slice's 0.5th and 99.5th percentiles",
    "slice-head-p1-99.5": "the 1st and 99.5th percentiles of the slice's head (Otsu mask)",
    "series-p0.5-99.5": "the series' 0.5th and 99.5th percentiles",
    "series-head-p1-99.5": "the 1st and 99.5th percentiles of the series' head (Otsu masks)",
}
"""The MR normalisations ``benchmarks/bench_mr_intensity.py`` compares, by name."""


@dataclass(frozen=True)
class MrRange:
    """A linear map of raw MR values onto [0, 1]: ``low`` to 0, ``high`` to 1, clipped."""

    low: float
    high: float
    method: str

    def apply(self, values: np.ndarray) -> np.ndarray:
        return _linear(values, self.low, self.high)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (256 bins): the level that best splits them in two.

    Computed in float64 over the finite values, so a float32 slice spanning nearly its whole
    range (+-3.4e38, a corrupt file) still gets its bins; where even float64 cannot cut the
    range into 256 bins (a nearly constant slice of huge values), the range's middle."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0
    low, high = float(finite.min()), float(finite.max())
    if not high > low:
        return low
    try:
        hist, edges = np.histogram(finite, bins=256, range=(low, high))
    except ValueError:  # numpy: "Too many bins for data range"
        return low / 2 + high / 2
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres, dtype=np.float64)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    return float(centres[int(np.argmax(w0 * w1 * (mean0 - mean1) ** 2))])


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head (or body) of a raw MR slice: above Otsu's threshold, the largest
    connected part, holes filled; all ``False`` for a flat slice."""
    if not image.size or float(image.max()) <= float(image.min()):
        return np.zeros(image.shape, dtype=bool)
    foreground = image > otsu_threshold(image)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = ndimage.sum(foreground, labels, range(1, count + 1))
    return ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))


def head_values(pixels: np.ndarray) -> np.ndarray:
    """The raw values inside a slice's head (:func:`head_mask`), flat; the whole slice's
    when it has none."""
    mask = head_mask(pixels)
    return pixels[mask] if mask.any() else pixels.ravel()


def mr_range(pixels: np.ndarray, method: str, series_values: np.ndarray | None = None) -> MrRange:
    """The range ``method`` (:data:`MR_NORMALISATIONS`) maps onto [0, 1] for one slice;
    the ``series-*`` methods take ``series_values``: the series' raw values (head voxels
    for ``series-head-p1-99.5``)."""
    if method == "slice-minmax":
        low, high = float(pixels.min()), float(pixels.max())
    elif method == "slice-p0.5-99.5":
        low, high = (float(v) for v in np.percentile(pixels, MR_PERCENTILES))
    elif method == "slice-head-p1-99.5":
        low, high = (float(v) for v in np.percentile(head_values(pixels), MR_HEAD_PERCENTILES))
    elif method in ("series-p0.5-99.5", "series-head-p1-99.5"):
        if series_values is None:
            raise ValueError(f"{method} needs the series' values")
        pct = MR_PERCENTILES if method == "series-p0.5-99.5" else MR_HEAD_PERCENTILES
        low, high = (float(v) for v in np.percentile(series_values, pct))
    else:
        raise ValueError(f"unknown MR normalisation {method!r}")
    return MrRange(low, high, method)


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


def series_mr_range(series: Series) -> MrRange | None:
    """The series' :data:`MR_SERIES` range, measured once per series (kept on it).

    Reads up to :data:`SERIES_SAMPLE_SLICES` evenly spaced slices (an unreadable one is
    passed over: its own read reports it), takes each one's head (:func:`head_mask`;
    the whole slice when it has none) and the 1st..99.5th percentiles of those values
    (every k-th pixel, at most :data:`SERIES_SAMPLE_PIXELS` a slice); ``None`` when no
    slice could be read.
    """
    with _SERIES_LOCK:
        if MR_SERIES in series.intensity_ranges:
            return series.intensity_ranges[MR_SERIES]  # type: ignore[return-value]
        count = len(series.slices)
        picks = sorted(
            {
                round(i * (count - 1) / max(SERIES_SAMPLE_SLICES - 1, 1))
                for i in range(min(SERIES_SAMPLE_SLICES, count))
            }
        )
        parts = []
        for index in picks:
            try:
                pixels = read_slice(series, series.slices[index])
            except SliceReadError:
                continue
            inside = head_values(pixels)
            parts.append(inside[:: max(inside.size // SERIES_SAMPLE_PIXELS, 1)])
        found = None
        if parts:
            low, high = np.percentile(np.concatenate(parts), MR_HEAD_PERCENTILES)
            found = MrRange(float(low), float(high), MR_SERIES)
        series.intensity_ranges[MR_SERIES] = found
        return found


def to_model_range(
    pixels: np.ndarray, series: Series, ref: SliceRef, profile: ModalityProfile
) -> np.ndarray:
    """Window one slice's values to float32 [0, 1] for ``profile`` (see module doc)."""
    if series.kind == "image":
        return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)
    if profile.name == "ct":
        return profile.to_unit_range(pixels)
    if series.kind == "npy" and pixels.size and pixels.min() >= 0 and pixels.max() <= 1:
        return pixels.astype(np.float32, copy=False)
    if profile.intensity == MR_SERIES:
        found = series_mr_range(series)
        if found is not None:
            return found.apply(pixels)
    elif profile.intensity != MR_LEGACY:
        raise ValueError(f"unknown MR intensity normalisation {profile.intensity!r}")
    if series.kind == "dicom" and ref.window is not None and ref.window[1] > 1:
        centre, width = ref.window
        return _linear(pixels, centre - width / 2, centre + width / 2)
    low, high = np.percentile(pixels, MR_PERCENTILES) if pixels.size else (0.0, 1.0)
    return _linear(pixels, float(low), float(high))


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` from ``low`` .. ``high`` onto float32 [0, 1], clipped; worked in float64, so
    a range wider than float32's (a corrupt file's +-3e38) maps without overflow, and what is
    not a number becomes 0."""
    span = max(high - low, 1e-6)
    with np.errstate(over="ignore", invalid="ignore"):
        unit = ((np.asarray(values, dtype=np.float64) - low) / span).astype(np.float32)
    np.nan_to_num(unit, copy=False, nan=0.0)
    return np.clip(unit, 0.0, 1.0, out=unit)
