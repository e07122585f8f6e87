"""Body coverage: the body's tiles scored in a few large model passes instead of one each.

The U-Net is fully convolutional, so a graph exported with free height and width
(:attr:`btd_core.engine.model_card.ModelCard.side_multiple`) takes the whole region
that the body's tiles cover at once: on a 512 x 512 chest CT slice one pass of about
370 x 512 pixels instead of about 70 tiles of 96 px that overlap by half (each pixel
through the U-Net once, not four times).

The residual of the pass is then cut into the same tiles that patch coverage would
have scored (:mod:`btd_core.scoring.tiles`), so everything after scoring (tile scores,
heat map, windows, calibration) works on the same tiles.  The residual inside a large
pass is not the 96 px tiles' residual: the U-Net's group normalisations and attention
see the whole pass (on lung1 its windows' energies are about 1.3x higher, rank
correlation with the tiles' 0.99): a calibration therefore records the coverage it was
made with, and a scan with another coverage is refused (:mod:`btd_core.scoring.strategy`).

Memory bound: one pass is at most :data:`REGION_MAX_SIDE` pixels a side; a larger
region is split into passes of that size that overlap by ``2 x margin`` pixels, and the
stitched residual keeps each pass's inner part (the margin next to a cut is left out,
as :class:`btd_core.slices.tiling.HeatMap` leaves out the tiles' borders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btd_core.slices.tiling import axis_origins

REGION_MAX_SIDE = 512
"""Largest side of one model pass, pixels.  The U-Net's middle attention compares every
pair of positions at 1/8 resolution: (512 / 8)^2 = 4,096 positions, 4 heads x 4,096^2
float32 = 268 MB per pass; a side twice as long would take 4.3 GB."""


@dataclass(frozen=True)
class RegionPlan:
    """The passes that cover one box of an image.

    Attributes
    ----------
    box:
        (top, bottom, left, right), pixels, bottom/right exclusive: what must be covered
        (may reach beyond the image, where tiles are zero-padded).
    origins:
        (y, x) top-left of each pass.
    height, width:
        Every pass's size, pixels (multiples of the graph's side multiple).
    margin:
        Pixels left out next to a cut between two passes.
    """

    box: tuple[int, int, int, int]
    origins: tuple[tuple[int, int], ...]
    height: int
    width: int
    margin: int


def _round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def _axis(
    start: int, stop: int, limit: int, multiple: int, margin: int, max_side: int
) -> tuple[int, tuple[int, ...]]:
    """(pass length, pass starts) covering [start, stop) of an axis of ``limit`` pixels."""
    length = _round_up(stop - start, multiple)
    if length <= max_side:
        # grow towards the image's start when the rounded pass would leave the image
        first = max(min(start, limit - length), 0) if stop <= limit else start
        return length, (first,)
    side = (max_side // multiple) * multiple
    stride = side - 2 * margin
    starts = tuple(start + s for s in axis_origins(stop - start, side, stride))
    return side, starts


def plan_regions(
    box: tuple[int, int, int, int],
    shape: tuple[int, int],
    multiple: int,
    margin: int,
    max_side: int = REGION_MAX_SIDE,
) -> RegionPlan:
    """The passes that cover ``box`` (top, bottom, left, right) of an image of ``shape``
    (H, W), each a multiple of ``multiple`` pixels a side and at most ``max_side``."""
    top, bottom, left, right = box
    height, ys = _axis(top, bottom, shape[0], multiple, margin, max_side)
    width, xs = _axis(left, right, shape[1], multiple, margin, max_side)
    return RegionPlan(box, tuple((y, x) for y in ys for x in xs), height, width, margin)


def crop_region(image: np.ndarray, y: int, x: int, height: int, width: int) -> np.ndarray:
    """float32 [height, width] of ``image`` from (y, x), zero-padded beyond its edges."""
    out = np.zeros((height, width), dtype=np.float32)
    piece = image[max(y, 0) : max(y + height, 0), max(x, 0) : max(x + width, 0)]
    out[: piece.shape[0], : piece.shape[1]] = piece
    return out


def region_inputs(image: np.ndarray, plan: RegionPlan) -> np.ndarray:
    """float32 [k, h, w]: the passes' inputs."""
    return np.stack([crop_region(image, y, x, plan.height, plan.width) for y, x in plan.origins])


def stitch(plan: RegionPlan, residuals: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(field float32 [bh, bw], (top, left)): the passes' residuals [k, h, w] over the
    plan's box, each pass's inner part kept (averaged where inner parts overlap)."""
    top, bottom, left, right = plan.box
    total = np.zeros((bottom - top, right - left), dtype=np.float32)
    count = np.zeros(total.shape, dtype=np.uint16)
    m = plan.margin
    for (y, x), residual in zip(plan.origins, residuals, strict=True):
        y0 = 0 if y <= top else m
        x0 = 0 if x <= left else m
        y1 = plan.height if y + plan.height >= bottom else plan.height - m
        x1 = plan.width if x + plan.width >= right else plan.width - m
        ty0, ty1 = max(y + y0, top), min(y + y1, bottom)
        tx0, tx1 = max(x + x0, left), min(x + x1, right)
        if ty1 <= ty0 or tx1 <= tx0:
            continue
        total[ty0 - top : ty1 - top, tx0 - left : tx1 - left] += residual[
            ty0 - y : ty1 - y, tx0 - x : tx1 - x
        ]
        count[ty0 - top : ty1 - top, tx0 - left : tx1 - left] += 1
    field = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return field, (top, left)
