"""The patient's body in a slice: tissue, lungs and other air inside it; not the table.

A slice's scorable region is the patient, whole: soft tissue and bone, and also the
aerated lungs, airways and bowel gas that the method's CT window clips to 0 (the
window starts at -700 HU, aerated lung lies at about -900 to -500 HU).  Those dark
spaces are exactly where known attacks (CT-GAN) inject and remove nodules, so they
must be scored.  Outside air, the scanner table and the head-rest must not be: their
edges leave large residuals that say nothing about tampering.

:func:`body_region` finds it from the windowed image alone (so it works the same for
every modality and needs no header):

1. tissue: pixels above :data:`TISSUE_LEVEL` (windowed [0, 1]; CT about -646 HU);
2. an opening of :data:`OPENING_PX` pixels removes thin structures (the table's
   plates and rails, the head-rest's shell, cables, noise specks);
3. connected parts of at least :data:`PART_SHARE` of the largest part's area are kept
   (the trunk, and arms or legs beside it); smaller ones (table remnants,
   positioning aids) are dropped;
4. holes are filled: lungs, trachea and gas enclosed by the body wall become body.

Slices larger than :data:`MASK_SIDE` pixels on a side are reduced by block means
first (the mask is coarse by nature) and the result is repeated back, so memory
stays a few bytes per pixel of the slice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TISSUE_LEVEL = 0.02
"""Windowed [0, 1] value above which a pixel is tissue (CT: (HU + 700) / 2700 = 0.02 is
about -646 HU: soft tissue, bone, vessels, but not aerated lung or outside air)."""

OPENING_PX = 3
"""Radius (pixels at <= MASK_SIDE) of the opening that removes thin non-body structures:
anything thinner than about 2 x 3 + 1 = 7 px (4 mm at 0.6 mm pixels) goes."""

PART_SHARE = 0.15
"""A connected part is body when its area is at least this share (0..1) of the largest."""

MASK_SIDE = 1024
"""Slices with a longer side are reduced by an integer factor to at most this, pixels."""


def body_region(image: np.ndarray, level: float = TISSUE_LEVEL) -> np.ndarray:
    """bool [H, W]: the patient's body, with the air spaces it encloses (module doc).

    ``image`` is a windowed slice, float [H, W] in [0, 1].  An image with no tissue
    gives an all-False mask.
    """
    height, width = image.shape
    factor = max(1, -(-max(height, width) // MASK_SIDE))
    small = _block_mean(image, factor) if factor > 1 else np.asarray(image)
    tissue = small > level
    if not tissue.any():
        return np.zeros((height, width), dtype=bool)
    # padded with the edge's own pixels: tissue cut by the field of view stays body
    pad = OPENING_PX + 1
    opened = ndimage.binary_opening(np.pad(tissue, pad, mode="edge"), structure=_disc(OPENING_PX))
    opened = opened[pad:-pad, pad:-pad]
    if not opened.any():
        opened = tissue  # a slice of thin structures only: keep what there is
    labels, count = ndimage.label(opened)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    kept = np.flatnonzero(areas >= PART_SHARE * areas.max()) + 1
    body = ndimage.binary_fill_holes(np.isin(labels, kept))
    if factor > 1:
        body = np.repeat(np.repeat(body, factor, axis=0), factor, axis=1)[:height, :width]
    return np.ascontiguousarray(body)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` x ``factor`` blocks (the edge blocks padded with 0)."""
    height, width = image.shape
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.zeros((rows * factor, cols * factor), dtype=np.float32)
    padded[:height, :width] = image
    return padded.reshape(rows, factor, cols, factor).mean(axis=(1, 3))


def _disc(radius: int) -> np.ndarray:
    """bool [2r+1, 2r+1]: a digital disc, the opening's structuring element."""
    rows, cols = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return rows * rows + cols * cols <= radius * radius
