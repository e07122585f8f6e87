"""Small pictures of a top slice for ``report.html``: the slice with its worst region boxed,
and the same with its heat map (the overlay's colours, :mod:`btd_core.findings.overlay`).

Each is at most :data:`THUMB_SIDE` pixels on its longer side: a slice larger than that is
reduced (area averaging), one smaller is kept as it is (the page enlarges it, pixels
square).  The box is drawn after reducing, so it stays a sharp one-pixel line.  The boxed
slice is a palette image (254 grays, white shown as the lightest of them, and the box's
cyan): one byte a pixel, so even a slice of pure noise costs at most 64 KiB at 256 x 256.
The full-size overlay stays in ``overlays/rankNNN.png``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from btd_core.findings.overlay import BOX_COLOUR, gray_uint8, render_overlay

THUMB_SIDE = 256
"""Longest side of a thumbnail, pixels (a 512 x 512 CT slice becomes 256 x 256)."""


@dataclass(frozen=True)
class Thumbnails:
    """A top slice's two pictures (``boxed``: palette, ``heat``: RGB) and the factor they
    were reduced by (<= 1)."""

    boxed: Image.Image
    heat: Image.Image | None
    scale: float


def reduce(picture: Image.Image, side: int = THUMB_SIDE) -> tuple[Image.Image, float]:
    """``picture`` reduced so that its longer side is at most ``side``; and the factor."""
    longest = max(picture.size)
    if longest <= side:
        return picture, 1.0
    scale = side / longest
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BOX), scale


BOX_INDEX = 255
"""The box's entry in the boxed slice's palette (0-254: grays)."""


def draw_box(
    picture: Image.Image,
    box: tuple[int, int, int] | None,
    scale: float,
    colour: int | tuple[int, int, int] = BOX_COLOUR,
) -> None:
    """Outline ``box`` = ``(x, y, size)`` (slice pixels) on ``picture`` reduced by
    ``scale``, one pixel wide, in ``colour`` (a palette index for a palette image)."""
    if box is None or box[2] <= 0:
        return
    x, y, size = box
    left, top = int(x * scale), int(y * scale)
    right = max(left, round((x + size) * scale) - 1)
    bottom = max(top, round((y + size) * scale) - 1)
    ImageDraw.Draw(picture).rectangle((left, top, right, bottom), outline=colour, width=1)


def gray_palette_image(gray: Image.Image) -> Image.Image:
    """A gray (``L``) picture as a palette image: grays 0-254 (255 shown as 254) and
    :data:`BOX_INDEX` for the box's cyan."""
    indices = np.minimum(np.asarray(gray, dtype=np.uint8), BOX_INDEX - 1)
    picture = Image.frombytes("P", gray.size, np.ascontiguousarray(indices).tobytes())
    palette = [level for value in range(BOX_INDEX) for level in (value, value, value)]
    picture.putpalette(palette + list(BOX_COLOUR))
    return picture


def slice_thumbnails(
    image01: np.ndarray,
    heat: np.ndarray | None,
    box: tuple[int, int, int] | None,
    side: int = THUMB_SIDE,
) -> Thumbnails:
    """The slice (float [H, W], windowed to [0, 1]) in gray with ``box`` drawn, and with its
    heat map (float [H, W] >= 0; ``None`` or all zeros: no heat picture) blended as the
    overlay blends it; both reduced to at most ``side`` pixels."""
    gray, scale = reduce(Image.fromarray(gray_uint8(image01)), side)
    boxed = gray_palette_image(gray)
    draw_box(boxed, box, scale, BOX_INDEX)
    shows_heat = heat is not None and bool(np.nan_to_num(np.asarray(heat)).max() > 0)
    hot = None
    if shows_heat:
        hot, _ = reduce(render_overlay(image01, heat, None), side)
        draw_box(hot, box, scale)
    return Thumbnails(boxed, hot, scale)
