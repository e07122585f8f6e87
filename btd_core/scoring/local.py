"""Slice scores from local windows: raw (``local``) or against genuine tissue (``calibrated``).

The tile mode's slice score is the highest whole-tile score.  The local modes turn a
slice's scored tiles into its residual energy map (:meth:`ImageScores.energy_map`),
average it over small windows (:func:`btd_core.scoring.windows.local_windows`) and score
the slice by its most anomalous window, whose position and size the finding carries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from btd_core.scoring.calibration import Calibration
from btd_core.scoring.tiles import ImageScores, ScanSettings
from btd_core.scoring.windows import LocalWindows, local_windows
from btd_core.study.records import SliceResult

SCORE_MODES = ("tile", "local", "calibrated")
"""Slice score modes (:attr:`btd_core.scoring.tiles.ScanSettings.score_mode`); ``auto``
picks ``calibrated`` or ``local`` before a scan starts."""


@dataclass(frozen=True)
class LocalVerdict:
    """One slice judged by its windows.

    Attributes
    ----------
    result:
        The slice's result with the local score and worst window, or ``None`` when no
        window lies in scored tissue.
    windows:
        The slice's windows (for calibration).
    values:
        [ny, nx]: each window's score (mean r^2, or surprise z).
    energy_map:
        float32 [H, W]: the slice's residual energy per pixel.
    calibrated:
        Whether ``values`` are surprises.
    """

    result: SliceResult | None
    windows: LocalWindows
    values: np.ndarray
    energy_map: np.ndarray
    calibrated: bool

    def heat_map(self) -> np.ndarray:
        """float32 [H, W] to show: the residual energy map (``local``), or per pixel the
        highest surprise z of the windows covering it, negative values as 0
        (``calibrated``).  Made on demand: only the kept slices need it."""
        if not self.calibrated:
            return self.energy_map
        return paint_windows(self.windows, self.values, self.energy_map.shape)


def resolve_auto(settings: ScanSettings, calibration: Calibration | None) -> ScanSettings:
    """``settings`` with ``auto`` made concrete: ``calibrated`` given a calibration,
    else ``local``."""
    if settings.score_mode != "auto":
        return settings
    return replace(settings, score_mode="calibrated" if calibration is not None else "local")


def check_mode(settings: ScanSettings, calibration: Calibration | None) -> None:
    """Raise ``ValueError`` for an unknown mode, or ``calibrated`` without a calibration."""
    if settings.score_mode not in SCORE_MODES:
        raise ValueError(
            f"unknown score mode {settings.score_mode!r}; choose from {', '.join(SCORE_MODES)}"
        )
    if settings.score_mode == "calibrated" and calibration is None:
        raise ValueError(
            "the calibrated score needs the model's calibration: run btd calibrate first"
        )


def judge_locally(
    base: SliceResult,
    image: np.ndarray,
    scores: ImageScores,
    settings: ScanSettings,
    calibration: Calibration | None,
) -> LocalVerdict:
    """Score one slice by its most anomalous window (``base`` is its tile-mode result)."""
    energy_map, covered = scores.energy_map(image.shape)
    windows = local_windows(
        image,
        energy_map,
        covered,
        window=settings.window,
        stride=settings.window_stride,
        body_level=settings.body_level,
    )
    calibrated = settings.score_mode == "calibrated"
    if calibrated:
        assert calibration is not None
        values = calibration.surprise(windows.energy, windows.intensity, windows.texture)
    else:
        values = windows.energy
    worst = windows.worst(values)
    if worst is None:
        return LocalVerdict(None, windows, values, energy_map, calibrated)
    score, x, y = worst
    result = replace(
        base,
        score=score,
        window_x=x,
        window_y=y,
        window_size=windows.window,
        score_mode=settings.score_mode,
    )
    return LocalVerdict(result, windows, values, energy_map, calibrated)


def paint_windows(windows: LocalWindows, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 [H, W]: per pixel the highest value of the valid windows over it, at least 0."""
    canvas = np.zeros(shape[:2], dtype=np.float32)
    size = windows.window
    for row, y in enumerate(windows.ys):
        for col, x in enumerate(windows.xs):
            if windows.valid[row, col] and values[row, col] > 0:
                patch = canvas[y : y + size, x : x + size]
                np.maximum(patch, np.float32(values[row, col]), out=patch)
    return canvas
