"""Scoring one slice: tiles (or the paper's single patch), body mask, worst tile, heat map.

Used by the scan engine for every slice, and by previews to recompute the heat map of
any slice on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from btd_core.engine.model_card import ModelCard
from btd_core.engine.scorer import Scorer
from btd_core.errors import BtdError
from btd_core.slices.body import body_region
from btd_core.slices.regions import RegionPlan, crop_region, plan_regions, region_inputs, stitch
from btd_core.slices.tiling import (
    BODY_FRACTION,
    BODY_LEVEL,
    HeatMap,
    centred_patch_origin,
    crop_patch,
    select_body_tiles,
    tile_grid,
    tile_region_mask,
)
from btd_core.slices.windowing import to_model_range
from btd_core.study.pixels import read_slice
from btd_core.study.records import Series

DEFAULT_OVERLAYS = 10
"""How many of the highest-scoring slices keep their image and heat map for a PNG overlay
(``--overlays``), unless asked otherwise."""

Coverage = Literal["auto", "body", "patch"]
COVERAGES: tuple[Coverage, ...] = ("auto", "body", "patch")
"""How a slice's tiles go through the model (``--tiles``):

``body``
    The region the body's tiles cover, in as few passes as the graph allows (one for a
    512 x 512 slice; :mod:`btd_core.slices.regions`), then cut into those tiles.
``patch``
    Each tile through the model on its own (the method's patch; before body coverage,
    the only way).
``auto``
    The coverage of the calibration in use, else ``body`` when the model file takes
    free sizes (:attr:`~btd_core.engine.model_card.ModelCard.side_multiple`), else
    ``patch``."""


TILES_MEANING: dict[str, str] = {
    "body": "the region of the body's tiles through the model in one pass (at most "
    "512 px a side per pass), its residual cut into those tiles",
    "patch": "each tile through the model on its own (the method's patch)",
    "auto": "not resolved: body when the model file takes free sizes, else patch",
}
"""What each coverage means, for the report."""


class CoverageError(BtdError, ValueError):
    """The coverage asked for cannot be used with this model file or calibration."""


def resolve_coverage(
    asked: Coverage, side_multiple: int, patch_size: int, calibrated_with: str | None
) -> str:
    """``body`` or ``patch``: the coverage to scan with (see :data:`COVERAGES`), for a model
    whose card has ``side_multiple`` and ``patch_size``.

    ``calibrated_with``: the coverage the calibration in use was made with (``None``:
    no calibration).  Raises :class:`CoverageError` for ``body`` with a fixed-size model
    file, and for a coverage other than the calibration's (its genuine levels were
    measured with its own)."""
    if asked == "auto":
        asked = calibrated_with or "body"  # type: ignore[assignment]
        if asked == "body" and not side_multiple:
            if calibrated_with is None:
                return "patch"
            raise CoverageError(
                "the calibration was made with body coverage, but this model file takes "
                "only patch-size tiles: export it again with btd-export"
            )
        return asked
    if asked == "body" and not side_multiple:
        raise CoverageError(
            f"--tiles body: body coverage needs a model file that takes free sizes; this one "
            f"takes only {patch_size} px tiles: export it again with btd-export, or scan with "
            "--tiles patch"
        )
    if calibrated_with is not None and asked != calibrated_with:
        raise CoverageError(
            f"the calibration was made with --tiles {calibrated_with}, this scan asks for "
            f"--tiles {asked}: scan with --tiles {calibrated_with}, or calibrate again"
        )
    return asked


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
    tiles:
        The coverage (:data:`COVERAGES`): ``auto`` until resolved for a model and a
        calibration (:meth:`resolved`), then ``body`` or ``patch``.
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
    tiles: Coverage = "auto"
    patch_at: tuple[int, int] | None = None
    workers: int | None = None

    def stride_for(self, size: int) -> int:
        """The stride in pixels for tiles of ``size``."""
        return self.stride if self.stride else max(size // 2, 1)

    def resolved(self, card: ModelCard, calibrated_with: str | None) -> ScanSettings:
        """These settings with ``tiles`` resolved (:func:`resolve_coverage`); the paper's
        single patch is always ``patch``."""
        if self.patch_at is not None:
            return replace(self, tiles="patch")
        coverage = resolve_coverage(
            self.tiles, card.side_multiple, card.patch_size, calibrated_with
        )
        return replace(self, tiles=coverage)  # type: ignore[arg-type]


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
        float32 [n, S, S] in [0, 1]: those tiles; with ``passes``, the passes' inputs
        [k, h, w] instead.
    tiles_skipped:
        Tiles the body mask left out.
    tile_size, stride:
        S and the stride used, pixels.
    body:
        bool [H, W]: the slice's body mask (``None`` for the paper's single patch: the
        patch is where the user pointed).
    passes:
        Body coverage: the model passes whose residual is cut into the tiles;
        ``None``: each tile is its own pass.
    """

    origins: list[tuple[int, int]]
    tiles: np.ndarray
    tiles_skipped: int
    tile_size: int
    stride: int
    body: np.ndarray | None = None
    passes: RegionPlan | None = None


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
    passes:
        Body coverage: the model passes the residuals were cut from (``None``: each tile
        was its own pass).
    """

    origins: list[tuple[int, int]]
    scores: np.ndarray
    residuals: np.ndarray
    tiles_skipped: int
    tile_size: int
    stride: int
    body: np.ndarray | None = None
    passes: RegionPlan | None = None

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
            passes=tile_set.passes,
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


def select_tiles(
    image: np.ndarray, size: int, settings: ScanSettings, side_multiple: int = 0
) -> TileSet:
    """The tiles of ``size`` px of one windowed slice [H, W] in [0, 1] to score (tiles or
    one patch), by ``settings``; ``side_multiple``: the model card's (0: the graph takes
    only ``size`` tiles).  Resolve ``auto`` first where a calibration is in use
    (:meth:`ScanSettings.resolved`); unresolved, it means none."""
    stride = settings.stride_for(size)
    if settings.patch_at is not None:
        x, y = settings.patch_at
        origin = centred_patch_origin(y, x, size)
        tiles = crop_patch(image, origin[0], origin[1], size)[None]
        return TileSet([origin], tiles, tiles_skipped=0, tile_size=size, stride=size)
    coverage = resolve_coverage(settings.tiles, side_multiple, size, None)
    grid = tile_grid(image.shape[0], image.shape[1], size, stride)
    body = body_region(image, settings.body_level)
    if coverage == "patch":
        keep, tiles = select_body_tiles(image, grid, fraction=settings.body_fraction, region=body)
        kept = [o for o, k in zip(grid.origins, keep, strict=True) if k]
        return TileSet(kept, tiles, int((~keep).sum()), tile_size=size, stride=stride, body=body)
    keep = tile_region_mask(body, grid, settings.body_fraction)
    kept = [o for o, k in zip(grid.origins, keep, strict=True) if k]
    skipped = int((~keep).sum())
    if not kept:
        empty = np.zeros((0, size, size), np.float32)
        return TileSet(kept, empty, skipped, tile_size=size, stride=stride, body=body)
    ys = [y for y, _ in kept]
    xs = [x for _, x in kept]
    box = (min(ys), max(ys) + size, min(xs), max(xs) + size)
    plan = plan_regions(box, image.shape[:2], side_multiple, margin=(size - stride) // 2)
    inputs = region_inputs(image, plan)
    return TileSet(kept, inputs, skipped, size, stride, body=body, passes=plan)


def reduce_tiles(residuals: np.ndarray, reduction: str) -> np.ndarray:
    """float32 [n]: each residual tile [n, 1, S, S] reduced as the model card says
    (:data:`btd_core.engine.model_card.REDUCTIONS`), as the graph's ``score`` output."""
    if reduction == "mean_sq":
        return np.square(residuals).mean(axis=(1, 2, 3), dtype=np.float32)
    if reduction == "mean_abs":
        return np.abs(residuals).mean(axis=(1, 2, 3), dtype=np.float32)
    if reduction == "max_sq":
        return np.square(residuals).max(axis=(1, 2, 3)).astype(np.float32)
    raise ValueError(f"unknown reduction {reduction!r}")


def cut_tiles(tile_set: TileSet, pass_residuals: np.ndarray, reduction: str) -> ImageScores:
    """Body coverage: the passes' residuals [k, 1, h, w] stitched and cut into the tile
    set's tiles, each scored by ``reduction``."""
    plan = tile_set.passes
    assert plan is not None
    field, (top, left) = stitch(plan, pass_residuals[:, 0])
    size = tile_set.tile_size
    residuals = np.empty((len(tile_set.origins), 1, size, size), np.float32)
    for i, (y, x) in enumerate(tile_set.origins):
        residuals[i, 0] = crop_region(field, y - top, x - left, size, size)
    return ImageScores.of(tile_set, reduce_tiles(residuals, reduction), residuals)


def score_tiles(tile_set: TileSet, scorer: Scorer) -> ImageScores:
    """Score the tiles of one slice."""
    size = tile_set.tile_size
    if tile_set.origins:
        scored = scorer.score(tile_set.tiles, with_residuals=True)
        assert scored.residuals is not None
        if tile_set.passes is not None:
            return cut_tiles(tile_set, scored.residuals, scorer.card.reduction)
        return ImageScores.of(tile_set, scored.scores, scored.residuals)
    empty = np.zeros((0, 1, size, size), np.float32)
    return ImageScores.of(tile_set, np.zeros(0, np.float32), empty)


def score_image(image: np.ndarray, scorer: Scorer, settings: ScanSettings) -> ImageScores:
    """Score one windowed slice [H, W] in [0, 1] by ``settings`` (resolved for the
    scorer's model: :meth:`ScanSettings.resolved`)."""
    card = scorer.card
    return score_tiles(select_tiles(image, card.patch_size, settings, card.side_multiple), scorer)


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
