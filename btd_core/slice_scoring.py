"""Scoring one slice: tiles (or the paper's single patch), body mask, worst tile, heat map.

Used by the scan engine for every slice, and by previews to recompute the heat map of
any slice on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pixels import read_slice
from .scorer import Scorer
from .study import Series, SliceResult
from .tiling import (
    BODY_FRACTION,
    BODY_LEVEL,
    HeatMap,
    body_mask,
    centred_patch_origin,
    crop_patch,
    extract_tiles,
    tile_grid,
)
from .windowing import to_model_range


@dataclass(frozen=True)
class ScanSettings:
    """How slices are covered.

    Attributes
    ----------
    stride:
        Pixels between tile starts; ``None`` means S / 2 (tiles overlap by half).
    body_level, body_fraction:
        Body mask: a tile is scored when at least ``body_fraction`` (0..1) of its pixels
        are above ``body_level`` (windowed [0, 1]); see :mod:`btd_core.tiling`.
    keep_views:
        How many of the highest-scoring slices keep their windowed image and heat map.
    patch_at:
        The paper's mode: ``(x, y)`` (column, row, pixels) of the one patch to score
        per slice, centred there; no tiling, no body mask.
    """

    stride: int | None = None
    body_level: float = BODY_LEVEL
    body_fraction: float = BODY_FRACTION
    keep_views: int = 10
    patch_at: tuple[int, int] | None = None

    def stride_for(self, size: int) -> int:
        """The stride in pixels for tiles of ``size``."""
        return self.stride if self.stride else max(size // 2, 1)


@dataclass(frozen=True)
class SliceView:
    """A kept slice: its windowed image [H, W] in [0, 1] and heat map [H, W] (mean r^2)."""

    image: np.ndarray
    heat: np.ndarray


@dataclass(frozen=True)
class ImageScores:
    """The scored tiles of one slice.

    Attributes
    ----------
    origins:
        (y, x) top-left corners (pixels) of the tiles that were scored.
    scores:
        float32 [n]: their scores (the model card's reduction).
    residuals:
        float32 [n, 1, S, S]: their residuals in model space [-1, 1].
    tiles_skipped:
        Tiles the body mask left out.
    tile_size, stride:
        S and the stride used, pixels.
    """

    origins: list[tuple[int, int]]
    scores: np.ndarray
    residuals: np.ndarray
    tiles_skipped: int
    tile_size: int
    stride: int

    def slice_result(self, series_key: str, index: int) -> SliceResult:
        """The slice's summary: max tile score and where (requires at least one tile)."""
        worst = int(np.argmax(self.scores))
        y, x = self.origins[worst]
        return SliceResult(
            series_key=series_key,
            slice_index=index,
            score=float(self.scores[worst]),
            tile_x=x,
            tile_y=y,
            tile_size=self.tile_size,
            tiles_scored=len(self.origins),
            tiles_skipped=self.tiles_skipped,
        )

    def heat_map(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 [H, W]: mean r^2 per pixel over the tiles' inner parts (0 where none)."""
        heat = HeatMap(shape[0], shape[1], margin=(self.tile_size - self.stride) // 2)
        for (y, x), residual in zip(self.origins, self.residuals, strict=True):
            heat.add(y, x, residual[0])
        return heat.values()


def score_image(image: np.ndarray, scorer: Scorer, settings: ScanSettings) -> ImageScores:
    """Score one windowed slice [H, W] in [0, 1] by ``settings`` (tiles or one patch)."""
    size = scorer.card.patch_size
    stride = settings.stride_for(size)
    if settings.patch_at is not None:
        x, y = settings.patch_at
        origins = [centred_patch_origin(y, x, size)]
        tiles = np.stack([crop_patch(image, oy, ox, size) for oy, ox in origins])
        keep = np.ones(1, dtype=bool)
        stride = size
    else:
        grid = tile_grid(image.shape[0], image.shape[1], size, stride)
        origins = grid.origins
        tiles = extract_tiles(image, grid)
        keep = body_mask(tiles, settings.body_level, settings.body_fraction)
    kept = [o for o, k in zip(origins, keep, strict=True) if k]
    if kept:
        scored = scorer.score(tiles[keep], with_residuals=True)
        scores, residuals = scored.scores, scored.residuals
    else:
        scores = np.zeros(0, np.float32)
        residuals = np.zeros((0, 1, size, size), np.float32)
    assert residuals is not None
    return ImageScores(
        origins=kept,
        scores=scores,
        residuals=residuals,
        tiles_skipped=int((~keep).sum()),
        tile_size=size,
        stride=stride,
    )


def view_slice(
    series: Series, index: int, scorer: Scorer, settings: ScanSettings
) -> tuple[SliceView, ImageScores]:
    """Read, window and score one slice again: its image and heat map for a preview.

    Raises
    ------
    btd_core.pixels.SliceReadError
        When the slice cannot be read.
    """
    ref = series.slices[index]
    image = to_model_range(read_slice(series, ref), series, ref, scorer.card.profile)
    scores = score_image(image, scorer, settings)
    return SliceView(image=image, heat=scores.heat_map(image.shape)), scores
