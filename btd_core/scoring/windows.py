"""Local residual energy: the mean of r^2 in small windows over an overlapping grid.

The paper scores one number per 96 x 96 patch (the mean of r^2 over the whole patch).
A tampered region of 20-28 px then changes the mean little, and the patch's tissue
changes it a lot (see ``design/METHOD.md``, "What a measurement here showed").  Here
the per-pixel residual energy of a slice (its heat map, mean r^2 over the tiles that
cover each pixel) is averaged over ``window`` x ``window`` boxes every ``stride``
pixels; each box also gets the windowed image's local mean and standard deviation
(its tissue), which calibration (:mod:`btd_core.scoring.calibration`) conditions on.

Also here: the non-learned baseline, the squared difference from a 3 x 3 median
filter, reduced the same way.  Everything is numpy, float32 images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btd_core.slices.tiling import axis_origins

WINDOW_PX = 24
"""Default side of a local window, pixels (the tampered regions measured were 20-28 px)."""

EDGE_PX = 16
"""Windows closer than this to the image's edge are not scored, pixels: the U-Net's zero
padding inflates the residual there (an artefact of the image's border, not of the
scan).  Narrowed on images too small to keep one window inside such a band."""


def box_means(
    values: np.ndarray, window: int, stride: int
) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """Means of ``values`` [H, W] over ``window`` x ``window`` boxes every ``stride`` px.

    Returns the means [len(ys), len(xs)] (float64) and the boxes' top rows ``ys`` and
    left columns ``xs``; the last box of each axis is flush with the edge.  An image
    smaller than the window gets one box, the whole image.
    """
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be at least 1 pixel")
    height, width = values.shape
    win_y, win_x = min(window, height), min(window, width)
    ys = axis_origins(height, win_y, stride)
    xs = axis_origins(width, win_x, stride)
    # separable: each box row's column sums (a slice sum per row of boxes: numpy's
    # cumsum over the whole image was 8x slower), then running sums across
    strips = np.stack([values[y : y + win_y].sum(axis=0, dtype=np.float64) for y in ys])
    columns = np.zeros((len(ys), width + 1), dtype=np.float64)
    np.cumsum(strips, axis=1, out=columns[:, 1:])
    left = np.asarray(xs)
    sums = columns[:, left + win_x] - columns[:, left]
    return sums / (win_y * win_x), ys, xs


@dataclass(frozen=True)
class LocalWindows:
    """The local windows of one slice, with their residual energy and tissue.

    Attributes
    ----------
    energy:
        float64 [ny, nx]: mean r^2 in each window (model space; typically 1e-6 .. 1e-1).
    intensity:
        [ny, nx]: the windowed image's mean in each window, [0, 1] (CT: (HU + 700) / 2700).
    texture:
        [ny, nx]: the windowed image's standard deviation in each window, [0, 0.5].
    valid:
        bool [ny, nx]: windows wholly inside the body (its tissue and the air spaces it
        encloses), covered by scored tiles and at least :data:`EDGE_PX` from the image's
        edge; only these count.
    ys, xs:
        Top row / left column of each window row / column, pixels.
    window:
        Side of a window, pixels.
    """

    energy: np.ndarray
    intensity: np.ndarray
    texture: np.ndarray
    valid: np.ndarray
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    window: int

    def worst(self, scores: np.ndarray) -> tuple[float, int, int] | None:
        """(score, x, y) of the valid window with the highest ``scores`` [ny, nx], or None."""
        cell = self.worst_cell(scores)
        if cell is None:
            return None
        row, col = cell
        return float(np.where(self.valid, scores, -np.inf)[row, col]), self.xs[col], self.ys[row]

    def worst_cell(self, scores: np.ndarray) -> tuple[int, int] | None:
        """(row, col) in the [ny, nx] grid of the valid window with the highest ``scores``
        (the first of equals, as :meth:`worst`), or None without a valid window."""
        if not self.valid.any():
            return None
        masked = np.where(self.valid, scores, -np.inf)
        row, col = np.unravel_index(int(np.argmax(masked)), masked.shape)
        return int(row), int(col)


def local_windows(
    image: np.ndarray,
    energy_map: np.ndarray,
    covered: np.ndarray,
    *,
    window: int = WINDOW_PX,
    stride: int | None = None,
    body: np.ndarray | None = None,
    edge: int = EDGE_PX,
) -> LocalWindows:
    """The windows of one slice.

    Parameters
    ----------
    image:
        float32 [H, W] windowed to [0, 1].
    energy_map:
        float32 [H, W]: residual energy per pixel (the scan's heat map, mean r^2).
    covered:
        bool [H, W]: pixels where ``energy_map`` was measured (inside scored tiles).
    window, stride:
        Window side and step, pixels (stride default: window / 2).
    body:
        bool [H, W]: the body mask (:func:`btd_core.slices.body.body_region`); a window
        counts only when wholly inside it.  ``None``: the whole image counts (a patch the
        user pointed at).
    edge:
        Windows closer than this to the image's edge do not count, pixels (>= 0).
    """
    stride = stride or max(window // 2, 1)
    energy, ys, xs = box_means(energy_map, window, stride)
    mean, _, _ = box_means(image, window, stride)
    square, _, _ = box_means(np.square(image, dtype=np.float64), window, stride)
    coverage, _, _ = box_means(covered, window, stride)
    texture = np.sqrt(np.maximum(square - mean * mean, 0.0))
    valid = coverage >= 1.0 - 1e-9
    if body is not None:
        inside, _, _ = box_means(body, window, stride)
        valid &= inside >= 1.0 - 1e-9
    size = min(window, *image.shape)
    valid &= _away_from_edge(ys, image.shape[0], size, edge)[:, None]
    valid &= _away_from_edge(xs, image.shape[1], size, edge)[None, :]
    return LocalWindows(energy, mean, texture, valid, ys, xs, size)


def _away_from_edge(starts: tuple[int, ...], length: int, size: int, edge: int) -> np.ndarray:
    """bool per window start: the window keeps ``edge`` px (narrowed so that at least one
    window fits on a short axis) from both ends of an axis of ``length`` px."""
    band = max(0, min(edge, (length - size) // 2))
    first = np.asarray(starts)
    return (first >= band) & (first + size <= length - band)


def median_residual(image: np.ndarray) -> np.ndarray:
    """The non-learned baseline's residual: image minus its 3 x 3 median, [H, W] float32.

    Edges are replicated.  Its square, reduced like the model's residual energy, is the
    high-pass baseline that a learned detector has to beat.
    """
    padded = np.pad(np.asarray(image, dtype=np.float32), 1, mode="edge")
    height, width = image.shape
    stack = np.stack(
        [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    )
    return (image - np.median(stack, axis=0)).astype(np.float32)
