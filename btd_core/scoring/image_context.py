"""Series context in the pixels: where a slice disagrees with both of its neighbours.

Genuine anatomy is continuous across slices: at a given place, a slice's value mostly
lies between its neighbours' values, and where it does not, the two neighbours differ
from each other too (a vessel that branches, the heart's edge moving).  A mass pasted
into one slice stands above both neighbours where both agree (aerated lung, clipped to
0 by the CT window); this is what the diffusion residual alone misses once the paste is
larger than a small nodule (its inside is genuine tissue).

Per pixel, the out-of-range deviation of slice ``x`` from its neighbours ``n1, n2``
(windowed images, [0, 1]), with ``M`` the maximum over the (2 k + 1) px square around a
pixel (k = :data:`SHIFT_PX`)::

    d = max(min(x - n1, x - n2), min(n1 - x, n2 - x), min(M n1, M n2) - M x, 0)

The third term sees a structure that both neighbours hold near the pixel but the slice
has nowhere near it: a removed vessel, which 5 mm away has moved a few pixels (of what a
removal takes away, both neighbours hold 13 % at the same pixels, 87 % within 4 px).

Per local window (the slice score's windows, :func:`btd_core.scoring.windows.box_means`),
the disagreement ratio::

    ratio = mean(d) / (mean(|n1 - n2|) + NEIGHBOUR_FLOOR)

0 where the slice lies between its neighbours; large where it leaves a range they agree
on.  Calibration (:mod:`btd_core.scoring.calibration`) turns ratios into surprise z from
genuine series.  Per slice, a few box means (about 3 ms at 512 x 512) and one maximum
filter (about 6 ms), kept while the slice is a neighbour.

Measured (``benchmarks/bench_detection.py``, lung1, 5 mm slices): single-slice copy-move
injections of radius 10-14 px in the lungs lift their slice in 94-100 % of cases;
removals, which leave a flat region the CT window clips like lung, far fewer
(``docs/detection.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from btd_core.scoring.windows import box_means

SHIFT_PX = 5
"""How far a structure may move in-plane between neighbouring slices and still count as
the same one for the removal term, pixels (lung1, 0.57 mm pixels and 5 mm slices:
removals in the lungs lifted 16 % of slices with 0 px, 42 % with 5 px, 35 % with 7 px;
injections unchanged)."""

NEIGHBOUR_FLOOR = 0.003
"""Added to the neighbours' mean disagreement, windowed units (CT: about 8 HU): where both
neighbours are flat (aerated lung clipped to 0), a slice's deviation is measured against
this instead of dividing by 0.  Chosen on lung1 among 0.003 and 0.01 (0.003 ranked
3-D edits higher at the same single-slice lift)."""


def nearby_maximum(image: np.ndarray, shift: int = SHIFT_PX) -> np.ndarray:
    """float32 [H, W]: each pixel's maximum over the (2 ``shift`` + 1) px square around it
    (``M`` above; about 6 ms at 512 x 512).  A scan computes it once per slice
    (:attr:`btd_core.scoring.strategy.SliceVerdict.nearby`), not once per comparison."""
    return ndimage.maximum_filter(np.asarray(image, dtype=np.float32), size=2 * shift + 1)


def out_of_range(
    image: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    shift: int = SHIFT_PX,
    nearby: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """float32 [H, W]: how far each pixel of ``image`` lies above both neighbours or below
    both, or how much of a structure both neighbours hold within ``shift`` px the image
    lacks within ``shift`` px, whichever is largest, else 0 (windowed units, >= 0).

    ``nearby``: the :func:`nearby_maximum` of ``image``, ``first`` and ``second`` (in that
    order) where the caller has them already; computed here otherwise."""
    above = np.minimum(image - first, image - second)
    below = np.minimum(first - image, second - image)
    deviation = np.maximum(np.maximum(above, below), 0.0)
    if shift > 0:
        if nearby is None:
            nearby = [nearby_maximum(a, shift) for a in (image, first, second)]
        own, near_first, near_second = nearby
        np.maximum(deviation, np.minimum(near_first, near_second) - own, out=deviation)
    return deviation


def disagreement(
    image: np.ndarray,
    neighbours: Sequence[np.ndarray],
    window: int,
    stride: int,
    nearby: Sequence[np.ndarray] | None = None,
) -> np.ndarray | None:
    """[ny, nx] float64: the disagreement ratio of each ``window`` x ``window`` window
    every ``stride`` px (the grid of :func:`btd_core.scoring.windows.local_windows`) of
    ``image`` with its two ``neighbours`` (windowed images of the same shape, [0, 1];
    before and after it, or the two nearest on one side at a series' end).

    ``nearby``: the :func:`nearby_maximum` of ``image`` and of each of ``neighbours`` (in
    that order) where the caller has them already.  ``None`` unless exactly two
    neighbours of the image's shape are given.
    """
    theirs = nearby[1:] if nearby is not None else [None] * len(neighbours)
    usable = [
        (np.asarray(n, dtype=np.float32), m)
        for n, m in zip(neighbours, theirs, strict=True)
        if n is not None and n.shape == image.shape
    ]
    if len(usable) != 2:
        return None
    (first, near_first), (second, near_second) = usable
    image = np.asarray(image, dtype=np.float32)
    maxima = None if nearby is None else (nearby[0], near_first, near_second)
    deviation, _, _ = box_means(out_of_range(image, first, second, nearby=maxima), window, stride)
    spread, _, _ = box_means(np.abs(first - second), window, stride)
    return deviation / (spread + NEIGHBOUR_FLOOR)
