"""Slices as real pixels, for terminals with a graphics protocol (kitty graphics, sixel).

A pure function from a :class:`btd_tui.render.RenderRequest` to an RGB
:class:`PIL.Image.Image`: the windowed slice in gray with the heat map blended in the
same red-to-yellow colours as the half-block preview
(:func:`btd_tui.render.blend_red_yellow`) and the worst region outlined in the same cyan
(:data:`btd_tui.render.BOX_RGB`).  With ``zoom`` only the worst region and its margin
(:func:`btd_tui.render.zoom_region`) is shown.

Without a size, the picture has the slice's (or the zoomed region's) own pixels, one
picture pixel per slice pixel.  Given a size in screen pixels, the slice is fitted into
it keeping its aspect ratio and centred on black: enlarged by nearest neighbour (every
slice pixel stays a sharp square, so a zoomed region is crisp), shrunk by area average
for the slice and by maximum for the heat map (a small hot spot stays visible), as the
half-block renderer does.  The box is drawn after scaling, inside the region's edge, at
least :data:`btd_core.findings.overlay.BOX_WIDTH` screen pixels and one slice pixel wide.

:func:`fit_cells` says how many terminal cells such a picture takes.  No terminal and
no Textual app are needed here.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from btd_core.findings.overlay import BOX_WIDTH, gray_uint8, normalise_heat
from btd_tui.render import (
    BOX_RGB,
    RenderRequest,
    blend_red_yellow,
    resample,
    scale_box,
    shown_region,
)


def picture_size(request: RenderRequest) -> tuple[int, int]:
    """``(width, height)`` in slice pixels of what ``request`` shows (the zoomed region's
    size with ``zoom``)."""
    image, _, _ = shown_region(request)
    return int(image.shape[1]), int(image.shape[0])


def slice_image(
    request: RenderRequest, width_px: int | None = None, height_px: int | None = None
) -> Image.Image:
    """The slice (or the zoomed worst region) with heat map and box as an RGB image.

    Parameters
    ----------
    request:
        What to show (``ascii`` is ignored: this is the colour picture).
    width_px, height_px:
        The picture's size in screen pixels (both >= 1), or ``None`` for the slice's own
        resolution.  The slice is fitted inside, aspect ratio kept, centred on black.

    Raises
    ------
    ValueError
        For a non-2-D image, a heat map of another shape, or a size below 1 pixel.
    """
    image, heat, box = shown_region(request)
    src_h, src_w = image.shape
    if width_px is None or height_px is None:
        width_px, height_px = src_w, src_h
    if width_px < 1 or height_px < 1:
        raise ValueError(f"need at least 1 x 1 pixel, got {width_px} x {height_px}")
    scale = min(width_px / src_w, height_px / src_h)
    out_w = min(width_px, max(1, round(src_w * scale)))
    out_h = min(height_px, max(1, round(src_h * scale)))
    enlarged = out_h >= src_h and out_w >= src_w
    # Enlarging: colour the slice's own pixels, then repeat them (nearest neighbour, in
    # PIL).  Shrinking: area average of the slice, maximum of the heat, then colour.
    size_h, size_w = (src_h, src_w) if enlarged else (out_h, out_w)
    gray = np.asarray(image, np.float64) if enlarged else resample(image, out_h, out_w)
    gray8 = gray_uint8(gray)
    if request.show_heat and heat is not None:
        heat01 = normalise_heat(heat)
        if heat01.shape != (size_h, size_w):
            heat01 = resample(heat01, size_h, size_w, how="max")
        rgb = blend_red_yellow(gray8, heat01)
    else:
        rgb = np.repeat(gray8[..., None], 3, axis=2)
    picture = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if enlarged and (out_h, out_w) != (src_h, src_w):
        picture = picture.resize((out_w, out_h), Image.Resampling.NEAREST)
    if box is not None and box[2] > 0:
        top, bottom, left, right = scale_box(box, image.shape, (out_h, out_w))
        width = max(BOX_WIDTH, round(scale))
        ImageDraw.Draw(picture).rectangle((left, top, right, bottom), outline=BOX_RGB, width=width)
    if (out_w, out_h) == (width_px, height_px):
        return picture
    canvas = Image.new("RGB", (width_px, height_px), (0, 0, 0))
    canvas.paste(picture, ((width_px - out_w) // 2, (height_px - out_h) // 2))
    return canvas


def fit_cells(
    width: int, height: int, cells_w: int, cells_h: int, cell_px: tuple[int, int]
) -> tuple[int, int]:
    """``(columns, rows)``: the fewest cells that hold a ``width`` x ``height`` pixel picture
    scaled as large as fits in ``cells_w`` x ``cells_h`` cells of ``cell_px`` = ``(width,
    height)`` screen pixels each, aspect ratio kept; ``(0, 0)`` when nothing fits."""
    cell_w, cell_h = cell_px
    if min(width, height, cells_w, cells_h, cell_w, cell_h) < 1:
        return 0, 0
    scale = min(cells_w * cell_w / width, cells_h * cell_h / height)
    columns = math.ceil(width * scale / cell_w - 1e-9)
    rows = math.ceil(height * scale / cell_h - 1e-9)
    return min(cells_w, max(1, columns)), min(cells_h, max(1, rows))
