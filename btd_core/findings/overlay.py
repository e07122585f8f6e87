"""Overlay pictures for a report: a slice in gray, its residual heat map, the worst tile (runtime).

The heat map (residual energy per pixel, any non-negative scale) is normalised by its
99.5th percentile, coloured with a hand-written black-red-yellow-white "hot" colour
map and alpha-blended over the gray slice only where it exceeds
:data:`HEAT_THRESHOLD` of its normalised maximum; elsewhere the slice's pixels are
left exactly as they are.  The worst tile is outlined in cyan.  Enlarging uses
nearest-neighbour, so every source pixel stays a visible block of one value.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from btd_core.atomic import atomic_write_bytes

HEAT_PERCENTILE = 99.5
"""Percentile of the heat map that maps to the top of the colour map."""

HEAT_THRESHOLD = 0.2
"""Normalised heat (0..1) at or below which nothing is drawn over the slice."""

HEAT_ALPHA = (0.35, 0.75)
"""Opacity of the heat colour at the threshold and at the top of the colour map."""

BOX_COLOUR = (0, 255, 255)
"""Outline colour of the worst tile (cyan: stands out against gray and the hot map)."""

BOX_WIDTH = 2
"""Outline width in output pixels (after scaling), drawn inside the tile's edge."""

CAPTION_HEIGHT = 14
"""Height in pixels of the caption strip added under the picture when a caption is given."""


def hot_lut() -> np.ndarray:
    """The "hot" colour map: uint8 [256, 3], black -> red -> yellow -> white."""
    t = np.arange(256, dtype=np.float64) / 255.0
    channels = [np.clip(3.0 * t - k, 0.0, 1.0) for k in (0.0, 1.0, 2.0)]
    return np.round(np.stack(channels, axis=1) * 255.0).astype(np.uint8)


HOT_LUT = hot_lut()


def gray_uint8(image01: np.ndarray) -> np.ndarray:
    """A windowed slice (float [H, W], nominally in [0, 1]) as uint8 [H, W]; NaN -> 0."""
    image = np.nan_to_num(np.asarray(image01, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def normalise_heat(heat: np.ndarray) -> np.ndarray:
    """Heat (float [H, W], >= 0, any scale) divided by its 99.5th percentile, clipped to [0, 1].

    NaN and negative values count as 0.  When the percentile is 0 (a small hot spot
    on a zero background) the maximum is used; an all-zero map stays all zero.
    """
    values = np.nan_to_num(np.asarray(heat, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    top = float(np.percentile(values, HEAT_PERCENTILE)) if values.size else 0.0
    if top <= 0.0:
        top = float(values.max()) if values.size else 0.0
    if top <= 0.0:
        return np.zeros_like(values)
    return np.clip(values / top, 0.0, 1.0)


def blend_heat(gray: np.ndarray, heat01: np.ndarray) -> np.ndarray:
    """Gray uint8 [H, W] with normalised heat [H, W] in [0, 1] blended on top: uint8 [H, W, 3].

    Pixels whose heat is at or below :data:`HEAT_THRESHOLD` keep their gray value.
    """
    rgb = np.repeat(gray[..., None].astype(np.float64), 3, axis=2)
    shown = heat01 > HEAT_THRESHOLD
    if shown.any():
        level = heat01[shown]
        colour = HOT_LUT[np.round(level * 255.0).astype(np.intp)].astype(np.float64)
        low, high = HEAT_ALPHA
        alpha = (low + (high - low) * (level - HEAT_THRESHOLD) / (1.0 - HEAT_THRESHOLD))[:, None]
        rgb[shown] = (1.0 - alpha) * rgb[shown] + alpha * colour
    return np.round(rgb).astype(np.uint8)


def render_overlay(
    image01: np.ndarray,
    heat: np.ndarray | None,
    box: tuple[int, int, int] | None,
    scale: int = 1,
    caption: str = "",
) -> Image.Image:
    """The slice in gray with the heat map and the worst tile drawn on it, as an RGB image.

    Parameters
    ----------
    image01:
        The slice, float [H, W], already windowed to [0, 1] (values outside are clipped,
        NaN shows black).
    heat:
        Residual energy map, float [H, W], >= 0, any scale; ``None`` or all zeros draws
        no heat.
    box:
        ``(x, y, size)`` in slice pixels: the worst tile's top-left column, row and side;
        ``None`` draws no box.
    scale:
        Integer enlargement (>= 1); the picture is ``W * scale`` by ``H * scale`` pixels.
    caption:
        Plain text drawn in a strip of :data:`CAPTION_HEIGHT` pixels added under the
        picture (with a colour bar of the heat map when heat is shown); ``""`` adds none.
    """
    gray = gray_uint8(image01)
    if gray.ndim != 2:
        raise ValueError(f"image01 must be 2-D [H, W], got shape {gray.shape}")
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    heat01 = None
    if heat is not None:
        if np.shape(heat) != gray.shape:
            raise ValueError(f"heat shape {np.shape(heat)} differs from image shape {gray.shape}")
        heat01 = normalise_heat(heat)
    rgb = blend_heat(gray, heat01) if heat01 is not None else np.repeat(gray[..., None], 3, 2)
    picture = Image.fromarray(rgb)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    if box is not None:
        _draw_box(picture, box, int(scale))
    if caption:
        shows_heat = heat01 is not None and bool((heat01 > HEAT_THRESHOLD).any())
        picture = _with_caption(picture, caption, shows_heat)
    return picture


def _draw_box(picture: Image.Image, box: tuple[int, int, int], scale: int) -> None:
    """Outline tile ``(x, y, size)`` (slice pixels) in :data:`BOX_COLOUR`, inside its edge."""
    x, y, size = (int(v) for v in box)
    if size <= 0:
        return
    corners = (x * scale, y * scale, (x + size) * scale - 1, (y + size) * scale - 1)
    ImageDraw.Draw(picture).rectangle(corners, outline=BOX_COLOUR, width=BOX_WIDTH)


def _with_caption(picture: Image.Image, caption: str, colour_bar: bool) -> Image.Image:
    """``picture`` with a black strip underneath holding ``caption`` (and the colour bar)."""
    canvas = Image.new("RGB", (picture.width, picture.height + CAPTION_HEIGHT), (0, 0, 0))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    text = caption.replace("\x00", "\ufffd").replace("\n", " ").replace("\r", " ")
    font = ImageFont.load_default()
    draw.text((2, picture.height + 1), text, fill=(255, 255, 255), font=font)
    if colour_bar and picture.width >= 64:
        bar_width = min(64, picture.width // 4)
        index = np.linspace(0, 255, bar_width).round().astype(np.intp)
        bar = np.repeat(HOT_LUT[index][None], CAPTION_HEIGHT - 4, axis=0)
        canvas.paste(Image.fromarray(bar), (picture.width - bar_width - 2, picture.height + 2))
    return canvas


def write_overlay(
    path: Path,
    image01: np.ndarray,
    heat: np.ndarray | None,
    box: tuple[int, int, int] | None,
    scale: int = 1,
    caption: str = "",
) -> Path:
    """Render (see :func:`render_overlay`) and write a PNG atomically to ``path``; returns it.

    The parent folder is created if needed; the file appears complete or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = render_overlay(image01, heat, box, scale=scale, caption=caption)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())
