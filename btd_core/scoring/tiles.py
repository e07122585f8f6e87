"""Scoring one slice: tiles (or the paper's single patch), body mask, worst tile, heat map.

Used by the scan engine for every slice, and by previews to recompute the heat map of
any slice on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btd_core.engine.scorer import Scorer
from btd_core.slices.body import body_region
from btd_core.slices.tiling import (
    BODY_FRACTION,
    BODY_LEVEL,
    HeatMap,
    centred_patch_origin,
    crop_patch,
    select_body_tiles,
    tile_grid,
)
from btd_core.slices.windowing import to_model_range
from btd_core.study.pixels import read_slice
from btd_core.study.records import Series

DEFAULT_OVERLAYS = 10
"""How many of the highest-scoring slices keep their image and heat map for a PNG overlay
(``--overlays``), unless asked otherwise."""


@dataclass(frozen=True)
class ScanSettings:
    """How slices are covered.

    Attributes
    ----------
    stride:
        Pixels between tile starts; ``None`` means S / 2 (tiles overlap by half).
    body_level, body_fraction:
        Body mask: the patient's body (tissue above ``body_level``, windowed [0, 1], with
        the lungs and other air it encloses; not the table: :mod:`btd_core.slices.body`);
        a tile is scored when at least ``body_fraction`` (0..1) of its pixels are body.
    overlays:
        How many of the highest-scoring slices keep their windowed image and heat map,
        the ones a report draws as PNG overlays (``--overlays``; >= 0, 0: none).
    patch_at:
        The paper's mode: ``(x, y)`` (column, row, pixels) of the one patch to score
        per slice, centred there; no tiling, no body mask.
    workers:
        Threads that read, decode, window and tile slices ahead of the scorer
        (>= 1); ``None`` = one per CPU core, at most 8.

    How the scored tiles become the slice's score is not a setting of the coverage:
    it is the :class:`btd_core.scoring.strategy.SliceScore`, resolved once per scan.
    """

    stride: int | None = None
    body_level: float = BODY_LEVEL
    body_fraction: float = BODY_FRACTION
    overlays: int = DEFAULT_OVERLAYS
    patch_at: tuple[int, int] | None = None
    workers: int | None = None

    def stride_for(self, size: int) -> int:
        """The stride in pixels for tiles of ``size``."""
        return self.stride if self.stride else max(size // 2, 1)


@dataclass(frozen=True)
class SliceView:
    """A kept slice: its windowed image [H, W] in [0, 1] and heat map [H, W] (mean r^2)."""

    image: np.ndarray
    heat: np.ndarray


@dataclass(frozen=True)
class TileSet:
    """The tiles of one slice that are worth scoring, before scoring.

    Attributes
    ----------
    origins:
        (y, x) top-left corners (pixels) of the kept tiles.
    tiles:
        float32 [n, S, S] in [0, 1]: those tiles.
    tiles_skipped:
        Tiles the body mask left out.
    tile_size, stride:
        S and the stride used, pixels.
    body:
        bool [H, W]: the slice's body mask (``None`` for the paper's single patch: the
        patch is where the user pointed).
    """

    origins: list[tuple[int, int]]
    tiles: np.ndarray
    tiles_skipped: int
    tile_size: int
    stride: int
    body: np.ndarray | None = None


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
    body:
        bool [H, W]: the slice's body mask, or ``None`` (the whole image counts).
    """

    origins: list[tuple[int, int]]
    scores: np.ndarray
    residuals: np.ndarray
    tiles_skipped: int
    tile_size: int
    stride: int
    body: np.ndarray | None = None

    @classmethod
    def of(cls, tile_set: TileSet, scores: np.ndarray, residuals: np.ndarray) -> ImageScores:
        """The scores of ``tile_set``'s tiles (in its order)."""
        return cls(
            origins=tile_set.origins,
            scores=scores,
            residuals=residuals,
            tiles_skipped=tile_set.tiles_skipped,
            tile_size=tile_set.tile_size,
            stride=tile_set.stride,
            body=tile_set.body,
        )

    def worst_tile(self) -> tuple[float, int, int]:
        """(score, x, y) of the highest-scoring tile: its top-left column and row, pixels
        (requires at least one tile; the first of equal scores wins)."""
        worst = int(np.argmax(self.scores))
        y, x = self.origins[worst]
        return float(self.scores[worst]), x, y

    def heat_map(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 [H, W]: mean r^2 per pixel over the tiles' inner parts (0 where none)."""
        return self.energy_map(shape)[0]

    def energy_map(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The heat map [H, W] and where it was measured (bool [H, W])."""
        heat = HeatMap(shape[0], shape[1], margin=(self.tile_size - self.stride) // 2)
        for (y, x), residual in zip(self.origins, self.residuals, strict=True):
            heat.add(y, x, residual[0])
        return heat.values(), heat.coverage()


def select_tiles(image: np.ndarray, size: int, settings: ScanSettings) -> TileSet:
    """The tiles of one windowed slice [H, W] in [0, 1] to score (tiles or one patch)."""
    stride = settings.stride_for(size)
    if settings.patch_at is not None:
        x, y = settings.patch_at
        origin = centred_patch_origin(y, x, size)
        tiles = crop_patch(image, origin[0], origin[1], size)[None]
        return TileSet([origin], tiles, tiles_skipped=0, tile_size=size, stride=size)
    grid = tile_grid(image.shape[0], image.shape[1], size, stride)
    body = body_region(image, settings.body_level)
    keep, tiles = select_body_tiles(image, grid, fraction=settings.body_fraction, region=body)
    kept = [o for o, k in zip(grid.origins, keep, strict=True) if k]
    return TileSet(kept, tiles, int((~keep).sum()), tile_size=size, stride=stride, body=body)


def score_tiles(tile_set: TileSet, scorer: Scorer) -> ImageScores:
    """Score the tiles of one slice."""
    size = tile_set.tile_size
    if tile_set.origins:
        scored = scorer.score(tile_set.tiles, with_residuals=True)
        assert scored.residuals is not None
        return ImageScores.of(tile_set, scored.scores, scored.residuals)
    empty = np.zeros((0, 1, size, size), np.float32)
    return ImageScores.of(tile_set, np.zeros(0, np.float32), empty)


def score_image(image: np.ndarray, scorer: Scorer, settings: ScanSettings) -> ImageScores:
    """Score one windowed slice [H, W] in [0, 1] by ``settings`` (tiles or one patch)."""
    return score_tiles(select_tiles(image, scorer.card.patch_size, settings), scorer)


def view_slice(
    series: Series, index: int, scorer: Scorer, settings: ScanSettings
) -> tuple[SliceView, ImageScores]:
    """Read, window and score one slice again: its image and heat map for a preview.

    Raises
    ------
    btd_core.study.pixels.SliceReadError
        When the slice cannot be read.
    """
    ref = series.slices[index]
    image = to_model_range(read_slice(series, ref), series, ref, scorer.card.profile)
    scores = score_image(image, scorer, settings)
    return SliceView(image=image, heat=scores.heat_map(image.shape)), scores
