"""Modality profiles: the one source of the method's per-modality constants.

A profile says how raw pixel values of a modality become the model's input
range [0, 1], and how large the model's square patches are.  Everything else
(export metadata, the runtime's windowing) reads these values from here, or
from an ONNX model card that was written from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModalityProfile:
    """How one modality is windowed and tiled for the BTD model.

    Attributes
    ----------
    name:
        ``"ct"`` or ``"mri"``.
    patch_size:
        Side S of the model's square input patch, in pixels (96 for CT, 128 for MRI).
    window_low, window_high:
        The intensity window mapped linearly onto [0, 1]; values outside are clipped.
        Hounsfield units for CT; for MRI the input is already in [0, 1] (8-bit / 255).
    unit:
        Unit of the window values: ``"HU"`` for CT, ``"unit"`` for MRI.
    intensity:
        How raw values become the window's input (:data:`INTENSITY_METHODS`): ``"window"``
        for CT (Hounsfield units through the window); for MRI, whose values have no unit,
        the normalisation of :mod:`btd_core.slices.windowing`, measured by
        ``benchmarks/bench_mr_intensity.py`` (``docs/mri.md``).
    """

    name: str
    patch_size: int
    window_low: float
    window_high: float
    unit: str
    intensity: str = "window"

    def to_unit_range(self, values: np.ndarray) -> np.ndarray:
        """Window raw values (HU for CT, [0, 1] for MRI) to float32 in [0, 1].

        ``(v - low) / (high - low)`` clipped to [0, 1]; for CT this is
        ``(HU + 700) / 2700``.  NaN becomes 0.
        """
        span = self.window_high - self.window_low
        unit = (np.asarray(values, dtype=np.float32) - np.float32(self.window_low)) / np.float32(
            span
        )
        return np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0, out=unit)


MR_SERIES = "series-head-p1-99.5"
"""The MRI default: the 1st..99.5th percentiles of the head (Otsu mask) over the whole
series, one map for all its slices (``docs/mri.md``: it keeps brain tissue where it is
from slice to slice and does not move with the field of view)."""
MR_LEGACY = "slice-window-else-p0.5-99.5"
"""MRI before the measurement: the slice's Window Center/Width, else its own 0.5..99.5th
percentiles; what a model card without an ``intensity`` entry means for MRI."""
INTENSITY_METHODS: dict[str, str] = {
    "window": "raw values (HU for CT) through the profile's window",
    MR_SERIES: "per series: the 1st..99.5th percentiles of its head (Otsu mask, largest "
    "part, holes filled) in up to 24 of its slices, mapped onto [0, 1] and clipped; the "
    "same map for every slice of the series",
    MR_LEGACY: "per slice: its DICOM Window Center/Width, else its 0.5th..99.5th percentiles",
}
"""How raw values are normalised before the window, by name (the model card's
``intensity`` and ``report.json``'s ``settings.intensity``)."""

CT = ModalityProfile(name="ct", patch_size=96, window_low=-700.0, window_high=2000.0, unit="HU")
"""Chest CT as upstream trained it: HU window [-700, 2000], 96 x 96 patches."""

MRI = ModalityProfile(
    name="mri",
    patch_size=128,
    window_low=0.0,
    window_high=1.0,
    unit="unit",
    intensity=MR_SERIES,
)
"""MRI: 128 x 128 patches (as upstream), values normalised per series to [0, 1]
(:data:`MR_SERIES`; upstream trained on 8-bit exports of displayed images)."""

PROFILES: dict[str, ModalityProfile] = {p.name: p for p in (CT, MRI)}


def profile_for(name: str) -> ModalityProfile:
    """Return the profile called ``name`` (case-insensitive; ``"mr"`` means MRI).

    Raises
    ------
    ValueError
        For an unknown modality, naming the known ones.
    """
    key = name.strip().lower()
    key = {"mr": "mri"}.get(key, key)
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(
            f"unknown modality {name!r}; expected one of: {', '.join(sorted(PROFILES))}"
        ) from None
