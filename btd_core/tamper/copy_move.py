"""Making tampered slices from genuine ones, to test the detector on a team's own data.

Two kinds (``injection``: a tumour-like mass appears; ``removal``: a structure
disappears) by methods that differ in kind, at places chosen in the body or, as
CT-GAN attacks do, in the lungs (:func:`choose_location`):

``copy-move`` (numpy only)
    Texture cut from elsewhere in the same slice, pasted through a feathered round
    mask (blended edges).  Injection pastes soft tissue as a round mass; removal
    covers the spot with nearby tissue like the spot's surroundings (lung over a
    nodule in the lungs).
``diffusion`` (torch, :mod:`btd_core.model.inpainting`)
    Inpainting with the method's own diffusion model: the masked region is noised
    and denoised while the rest is held to the original (RePaint without resampling).

All work happens in the slice's own values (HU for CT); the result has the same
shape and dtype-range as the input.  Each tampering returns its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

KINDS = ("injection", "removal")
PLACES = ("body", "lung")
"""Where tamperings go: anywhere in the body, or in the lungs (CT only)."""
LUNG_HU = -500.0
"""Below this (HU), a pixel inside the body is aerated lung or airway."""
STRUCTURE_HU = -400.0
"""Above this (HU), a pixel in the lungs is a vessel or nodule: what a removal removes."""
SOFT_TISSUE_HU = (-100.0, 150.0)
"""Hounsfield range that injected masses are cut from (soft tissue)."""


@dataclass(frozen=True)
class Tampering:
    """One tampered slice: the new values, the mask (0..1 float) and where."""

    values: np.ndarray
    mask: np.ndarray
    x: int
    y: int
    radius: int
    kind: str
    method: str


def round_mask(shape: tuple[int, int], x: int, y: int, radius: int, feather: float) -> np.ndarray:
    """float32 [H, W]: 1 inside the circle of ``radius`` px at column x, row y, fading to 0
    over ``feather`` px (a smooth blend edge)."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    distance = np.sqrt((rows - y) ** 2 + (cols - x) ** 2)
    return np.clip((radius + feather - distance) / max(feather, 1e-6), 0.0, 1.0).astype(np.float32)


def body_points(values: np.ndarray, level: float, margin: int) -> np.ndarray:
    """(y, x) of pixels above ``level`` at least ``margin`` px away from the border."""
    inside = values > level
    inside[:margin] = inside[-margin:] = False
    inside[:, :margin] = inside[:, -margin:] = False
    return np.argwhere(inside)


def choose_location(
    values: np.ndarray,
    radius: int,
    rng: np.random.Generator,
    level: float = -500.0,
    *,
    place: str = "body",
    kind: str = "injection",
) -> tuple[int, int]:
    """A random (x, y) for a tampering of ``radius`` px, away from the border.

    ``place="body"``: inside the body (values above ``level``).  ``place="lung"`` (CT,
    ``values`` in HU): an injection goes where its whole disc and blend edge lie in
    aerated lung; a removal is centred on a vessel or nodule (above
    :data:`STRUCTURE_HU`) that lung surrounds.

    Raises
    ------
    ValueError
        When the slice has no such place (no body, no lungs).
    """
    if place not in PLACES:
        raise ValueError(f"place must be one of {PLACES}")
    margin = 2 * radius + 4
    if place == "body":
        points = body_points(values, level, margin=margin)
    else:
        points = _lung_points(values, radius, kind, margin)
    if len(points) == 0:
        raise ValueError(f"no {'lung' if place == 'lung' else 'body'} in this slice to tamper with")
    y, x = points[rng.integers(len(points))]
    return int(x), int(y)


def lung_mask(values: np.ndarray) -> np.ndarray:
    """bool [H, W]: aerated lung (and airways) of a CT slice in HU: below
    :data:`LUNG_HU` and enclosed by the body (:func:`btd_core.slices.body.body_region`),
    at least 4 px inside it (the skin's partial-volume rim is not lung)."""
    from btd_core.slices.body import body_region
    from btd_core.slices.profiles import CT

    values = np.asarray(values, dtype=np.float32)
    inside = ndimage.binary_erosion(body_region(CT.to_unit_range(values)), iterations=4)
    return inside & (values < LUNG_HU)


def _lung_points(values: np.ndarray, radius: int, kind: str, margin: int) -> np.ndarray:
    lung = lung_mask(values)
    reach = int(np.ceil(radius + max(radius / 3, 2.0))) + 1
    if kind == "injection":
        inside = ndimage.binary_erosion(lung, iterations=reach)
    else:
        around = ndimage.uniform_filter(lung.astype(np.float32), 2 * reach + 1) >= 0.6
        inside = around & (np.asarray(values) > STRUCTURE_HU)
    inside[:margin] = inside[-margin:] = False
    inside[:, :margin] = inside[:, -margin:] = False
    return np.argwhere(inside)


def _donor(
    values: np.ndarray, radius: int, rng: np.random.Generator, band: tuple[float, float]
) -> tuple[int, int]:
    """A spot whose neighbourhood mean lies in ``band`` (soft tissue for injections)."""
    candidates = body_points(values, band[0], margin=2 * radius + 4)
    rng.shuffle(candidates)
    for y, x in candidates[:400]:
        patch = values[y - radius : y + radius, x - radius : x + radius]
        if band[0] <= float(patch.mean()) <= band[1]:
            return int(x), int(y)
    raise ValueError("no soft-tissue region found to copy a mass from")


def _cover(
    values: np.ndarray, x: int, y: int, radius: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Where a removal copies its cover from: of up to 64 random spots 2.5 to 6 radii
    away, the one whose disc's median is closest to the median of the ring around
    (x, y) (lung over a nodule in the lungs, muscle over a mass in muscle)."""
    height, width = values.shape
    rows, cols = np.ogrid[:height, :width]
    distance = np.hypot(rows - y, cols - x)
    ring = values[(distance > radius * 1.5) & (distance <= radius * 2.5)]
    target = float(np.median(ring)) if ring.size else float(np.median(values))
    best, best_gap = None, np.inf
    for _ in range(64):
        angle = rng.uniform(0, 2 * np.pi)
        step = rng.uniform(2.5, 6.0) * radius
        cx = int(np.clip(x + step * np.cos(angle), radius, width - radius - 1))
        cy = int(np.clip(y + step * np.sin(angle), radius, height - radius - 1))
        disc = values[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
        gap = abs(float(np.median(disc)) - target)
        if gap < best_gap:
            best, best_gap = (cx, cy), gap
    assert best is not None
    return best


def _shifted(values: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(values, dy, axis=0), dx, axis=1)


def copy_move(
    values: np.ndarray,
    kind: str,
    x: int,
    y: int,
    radius: int,
    rng: np.random.Generator,
    *,
    source_at: tuple[int, int] | None = None,
) -> Tampering:
    """Copy-move tampering at column x, row y (see module doc); ``values`` in HU for CT.

    ``source_at``: (x, y) to copy from instead of a spot chosen here (the slices of one
    3-D edit copy from the same place, :func:`copy_move_stack`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    mask = round_mask(values.shape, x, y, radius, feather=max(radius / 3, 2.0))
    if source_at is not None:
        dx, dy = source_at
    elif kind == "injection":
        dx, dy = _donor(values, radius, rng, SOFT_TISSUE_HU)
    else:
        dx, dy = _cover(values, x, y, radius, rng)
    source = _shifted(values.astype(np.float32), x - dx, y - dy)
    tampered = values.astype(np.float32) * (1 - mask) + source * mask
    return Tampering(tampered, mask, x, y, radius, kind, "copy-move")


def stack_radii(radius: int, depth: int) -> list[int]:
    """Disc radii, px, of a 3-D edit ``depth`` slices deep (odd, >= 1): a ball's sections,
    ``radius`` on the centre slice, ``radius * sqrt(1 - (k / (h + 1))^2)`` on the slice
    ``k`` away from it (``h = depth // 2``), at least 2 px."""
    if depth < 1 or depth % 2 == 0:
        raise ValueError("a 3-D edit spans an odd number of slices (1, 3, 5, ...)")
    half = depth // 2
    return [
        max(2, round(radius * np.sqrt(1 - (k / (half + 1)) ** 2))) for k in range(-half, half + 1)
    ]


def copy_move_stack(
    slices: list[np.ndarray],
    kind: str,
    x: int,
    y: int,
    radius: int,
    rng: np.random.Generator,
) -> list[Tampering]:
    """A 3-D copy-move edit over consecutive slices (as CT-GAN tampers a volume): one
    ball of ``radius`` px centred on the middle slice of ``slices`` (an odd number, HU
    for CT), every slice copying from the same place, so the mass (or its cover) is
    continuous across them.  Returns one :class:`Tampering` per slice, in order.
    """
    middle = slices[len(slices) // 2]
    if kind == "injection":
        source_at = _donor(middle, radius, rng, SOFT_TISSUE_HU)
    else:
        source_at = _cover(middle, x, y, radius, rng)
    return [
        copy_move(values, kind, x, y, r, rng, source_at=source_at)
        for values, r in zip(slices, stack_radii(radius, len(slices)), strict=True)
    ]
