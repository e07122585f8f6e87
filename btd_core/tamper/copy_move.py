"""Making tampered slices from genuine ones, to test the detector on a team's own data.

Two kinds (``injection``: a tumour-like mass appears; ``removal``: a structure
disappears) by methods that differ in kind:

``copy-move`` (numpy only)
    Texture cut from elsewhere in the same slice, pasted through a feathered round
    mask (blended edges).  Injection pastes soft tissue as a round mass; removal
    covers the spot with surrounding tissue.
``diffusion`` (torch, :mod:`btd_core.model.inpainting`)
    Inpainting with the method's own diffusion model: the masked region is noised
    and denoised while the rest is held to the original (RePaint without resampling).

All work happens in the slice's own values (HU for CT); the result has the same
shape and dtype-range as the input.  Each tampering returns its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("injection", "removal")
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
    values: np.ndarray, radius: int, rng: np.random.Generator, level: float = -500.0
) -> tuple[int, int]:
    """A random (x, y) inside the body (values above ``level``), away from the border."""
    points = body_points(values, level, margin=2 * radius + 4)
    if len(points) == 0:
        raise ValueError("no body in this slice to tamper with")
    y, x = points[rng.integers(len(points))]
    return int(x), int(y)


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


def _shifted(values: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(values, dy, axis=0), dx, axis=1)


def copy_move(
    values: np.ndarray,
    kind: str,
    x: int,
    y: int,
    radius: int,
    rng: np.random.Generator,
) -> Tampering:
    """Copy-move tampering at column x, row y (see module doc); ``values`` in HU for CT."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    mask = round_mask(values.shape, x, y, radius, feather=max(radius / 3, 2.0))
    if kind == "injection":
        dx, dy = _donor(values, radius, rng, SOFT_TISSUE_HU)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        distance = 2.5 * radius
        dx = int(np.clip(x + distance * np.cos(angle), radius, values.shape[1] - radius - 1))
        dy = int(np.clip(y + distance * np.sin(angle), radius, values.shape[0] - radius - 1))
    source = _shifted(values.astype(np.float32), x - dx, y - dy)
    tampered = values.astype(np.float32) * (1 - mask) + source * mask
    return Tampering(tampered, mask, x, y, radius, kind, "copy-move")
