"""Slices as terminal pictures: a pure function from arrays to lines of styled cells.

Two modes:

half-block
    Each cell shows two pixels stacked: ``"▀"`` with the foreground colour = the upper
    pixel and the background colour = the lower one (true colour).  A terminal cell is
    about twice as high as it is wide, so such pixels are square.
ASCII
    Each cell is one character of :data:`ASCII_RAMP` (dark to bright) for a pixel one
    cell wide and two "square units" high; heat is shown by colouring characters red
    or yellow, and the worst tile by ``+``, ``-`` and ``|`` in cyan.

The slice is resampled to the space it is given (area average for the image, maximum
for the heat map so a small hot spot stays visible when shrunk; nearest when enlarged),
keeping its aspect ratio, and centred.  The heat map is normalised and thresholded as
in the PNG overlays (:mod:`btd_core.findings.overlay`) and drawn from red (just above the
threshold) to yellow (the hottest), blended over the gray slice.  No Textual app is needed:
the result is a list of :class:`textual.strip.Strip`, one per line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from btd_core.findings.overlay import HEAT_ALPHA, HEAT_THRESHOLD, gray_uint8, normalise_heat

HALF_BLOCK = "▀"
ASCII_RAMP = " .:-=+*#%@"
BOX_RGB = (0, 255, 255)
ZOOM_MARGIN = 0.25
"""Context kept around the worst tile when zoomed, as a fraction of the tile's side."""

Box = tuple[int, int, int]
"""``(x, y, size)``: a tile's top-left column and row and its side, in slice pixels."""


@dataclass(frozen=True)
class RenderRequest:
    """What to draw and how.

    Attributes
    ----------
    image:
        The windowed slice, float [H, W] in [0, 1].
    heat:
        Residual energy per pixel [H, W] (>= 0, any scale), or ``None``.
    box:
        The worst tile to outline, or ``None``.
    ascii:
        ASCII ramp instead of half-blocks.
    show_heat:
        Blend the heat map over the slice.
    zoom:
        Show only the worst tile (with a margin of :data:`ZOOM_MARGIN`), enlarged.
    """

    image: np.ndarray
    heat: np.ndarray | None = None
    box: Box | None = None
    ascii: bool = False
    show_heat: bool = True
    zoom: bool = False


def blend_red_yellow(gray8: np.ndarray, heat01: np.ndarray) -> np.ndarray:
    """Gray uint8 [H, W] with normalised heat [H, W] blended as red -> yellow: uint8 [H, W, 3].

    Pixels whose heat is at or below :data:`btd_core.findings.overlay.HEAT_THRESHOLD` stay gray;
    above it, the colour goes from red to yellow and its opacity from ``HEAT_ALPHA[0]``
    to ``HEAT_ALPHA[1]``.
    """
    rgb = np.repeat(gray8[..., None].astype(np.float64), 3, axis=2)
    shown = heat01 > HEAT_THRESHOLD
    if shown.any():
        level = (heat01[shown] - HEAT_THRESHOLD) / (1.0 - HEAT_THRESHOLD)
        colour = np.stack([np.full_like(level, 255.0), 255.0 * level, np.zeros_like(level)], 1)
        low, high = HEAT_ALPHA
        alpha = (low + (high - low) * level)[:, None]
        rgb[shown] = (1.0 - alpha) * rgb[shown] + alpha * colour
    return np.round(rgb).astype(np.uint8)


def resample(values: np.ndarray, out_h: int, out_w: int, how: str = "mean") -> np.ndarray:
    """Resize a 2-D array to ``out_h`` x ``out_w``: area ``"mean"`` or ``"max"`` when
    shrinking, nearest when enlarging (per axis)."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"need a non-empty 2-D array, got shape {data.shape}")
    out_h, out_w = max(int(out_h), 1), max(int(out_w), 1)
    reduce = np.maximum.reduceat if how == "max" else np.add.reduceat
    rows = _starts(data.shape[0], out_h)
    cols = _starts(data.shape[1], out_w)
    out = reduce(reduce(data, rows, axis=0), cols, axis=1)
    if how != "max":
        counts = _counts(rows, data.shape[0])[:, None] * _counts(cols, data.shape[1])[None, :]
        out = out / counts
    return out


def _starts(size: int, out: int) -> np.ndarray:
    return np.floor(np.arange(out) * (size / out)).astype(np.intp)


def _counts(starts: np.ndarray, size: int) -> np.ndarray:
    ends = np.append(starts[1:], size)
    # reduceat takes the single element at a start that repeats (enlarging): count 1.
    return np.maximum(ends - starts, 1).astype(np.float64)


def fit(height: int, width: int, cells_w: int, cells_h: int, ascii: bool) -> tuple[int, int]:
    """Output size ``(rows, columns)`` in the mode's pixels that fits ``cells_w`` x
    ``cells_h`` cells and keeps the slice's aspect ratio (rows are cell rows in ASCII
    mode, half-cell rows in half-block mode)."""
    if cells_w < 1 or cells_h < 1 or height < 1 or width < 1:
        return 0, 0
    scale = min(cells_w / width, 2 * cells_h / height)  # square units: 1 wide, 2 per cell row
    out_w = min(cells_w, max(1, round(width * scale)))
    units_h = max(1, round(height * scale))
    if ascii:
        return min(cells_h, max(1, round(units_h / 2))), out_w
    return min(2 * cells_h, units_h), out_w


def zoom_region(shape: tuple[int, int], box: Box) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the worst tile with its margin, clipped to the slice."""
    x, y, size = box
    margin = round(size * ZOOM_MARGIN)
    y0, x0 = max(0, y - margin), max(0, x - margin)
    y1, x1 = min(shape[0], y + size + margin), min(shape[1], x + size + margin)
    return y0, y1, x0, x1


def render(request: RenderRequest, cells_w: int, cells_h: int) -> list[Strip]:
    """The picture as ``cells_h`` lines of exactly ``cells_w`` cells (centred)."""
    image, heat, box = shown_region(request)
    out_h, out_w = fit(image.shape[0], image.shape[1], cells_w, cells_h, request.ascii)
    if out_h == 0:
        return [Strip.blank(max(cells_w, 0)) for _ in range(max(cells_h, 0))]
    gray = resample(image, out_h, out_w)
    heat01 = None
    if request.show_heat and heat is not None:
        heat01 = resample(normalise_heat(heat), out_h, out_w, how="max")
    scaled_box = scale_box(box, image.shape, (out_h, out_w)) if box else None
    if request.ascii:
        body = _ascii_lines(gray, heat01, scaled_box)
    else:
        body = _half_block_lines(gray, heat01, scaled_box)
    return _centre(body, out_w, cells_w, cells_h)


def shown_region(request: RenderRequest) -> tuple[np.ndarray, np.ndarray | None, Box | None]:
    """The part of the slice the request shows: ``(image, heat, box)``, the whole slice, or
    with ``zoom`` the worst tile with its margin (:func:`zoom_region`), the box then given
    in the cropped image's pixels.  Raises ``ValueError`` for a non-2-D image or a heat
    map of another shape."""
    image, heat, box = np.asarray(request.image), request.heat, request.box
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D [H, W], got shape {image.shape}")
    if heat is not None and np.shape(heat) != image.shape:
        raise ValueError(f"heat shape {np.shape(heat)} differs from image shape {image.shape}")
    if not (request.zoom and box):
        return image, heat, box
    y0, y1, x0, x1 = zoom_region(image.shape, box)
    if y1 <= y0 or x1 <= x0:
        return image, heat, box
    cropped_heat = None if heat is None else np.asarray(heat)[y0:y1, x0:x1]
    return image[y0:y1, x0:x1], cropped_heat, (box[0] - x0, box[1] - y0, box[2])


def scale_box(box: Box, shape: tuple[int, ...], out: tuple[int, int]) -> tuple[int, int, int, int]:
    """The tile in output pixels: ``(top, bottom, left, right)``, inclusive, clipped."""
    x, y, size = box
    sy, sx = out[0] / shape[0], out[1] / shape[1]
    top = int(np.clip(np.floor(y * sy), 0, out[0] - 1))
    left = int(np.clip(np.floor(x * sx), 0, out[1] - 1))
    bottom = int(np.clip(np.ceil((y + size) * sy) - 1, top, out[0] - 1))
    right = int(np.clip(np.ceil((x + size) * sx) - 1, left, out[1] - 1))
    return top, bottom, left, right


def _half_block_lines(
    gray: np.ndarray, heat01: np.ndarray | None, box: tuple[int, int, int, int] | None
) -> list[list[Segment]]:
    gray8 = gray_uint8(gray)
    rgb = (
        blend_red_yellow(gray8, heat01) if heat01 is not None else np.repeat(gray8[..., None], 3, 2)
    )
    if box:
        top, bottom, left, right = box
        rgb[[top, bottom], left : right + 1] = BOX_RGB
        rgb[top : bottom + 1, [left, right]] = BOX_RGB
    if rgb.shape[0] % 2:
        rgb = np.concatenate([rgb, np.zeros((1, *rgb.shape[1:]), np.uint8)])
    styles: dict[tuple[int, ...], Style] = {}
    lines = []
    for row in range(0, rgb.shape[0], 2):
        pairs = np.concatenate([rgb[row], rgb[row + 1]], axis=1).tolist()
        segments: list[Segment] = []
        run_key, run_length = None, 0
        for pair in pairs:
            key = tuple(pair)
            if key == run_key:
                run_length += 1
                continue
            if run_key is not None:
                segments.append(Segment(HALF_BLOCK * run_length, _style(styles, run_key)))
            run_key, run_length = key, 1
        if run_key is not None:
            segments.append(Segment(HALF_BLOCK * run_length, _style(styles, run_key)))
        lines.append(segments)
    return lines


def _style(cache: dict[tuple[int, ...], Style], key: tuple[int, ...]) -> Style:
    style = cache.get(key)
    if style is None:
        style = Style(color=Color.from_rgb(*key[:3]), bgcolor=Color.from_rgb(*key[3:]))
        cache[key] = style
    return style


HEAT_STYLES = (Style(color="red", bold=True), Style(color="yellow", bold=True))
BOX_STYLE = Style(color="cyan", bold=True)


def _ascii_lines(
    gray: np.ndarray, heat01: np.ndarray | None, box: tuple[int, int, int, int] | None
) -> list[list[Segment]]:
    levels = np.clip(np.nan_to_num(gray), 0.0, 1.0)
    index = np.round(levels * (len(ASCII_RAMP) - 1)).astype(np.intp)
    chars = np.array(list(ASCII_RAMP))[index]
    style_id = np.zeros(gray.shape, np.int8)  # 0 plain, 1 red, 2 yellow, 3 box
    if heat01 is not None:
        style_id[heat01 > HEAT_THRESHOLD] = 1
        style_id[heat01 > 0.6] = 2
    if box:
        top, bottom, left, right = box
        chars[[top, bottom], left : right + 1] = "-"
        chars[top : bottom + 1, [left, right]] = "|"
        for corner in ((top, left), (top, right), (bottom, left), (bottom, right)):
            chars[corner] = "+"
        style_id[[top, bottom], left : right + 1] = 3
        style_id[top : bottom + 1, [left, right]] = 3
    styles = (Style.null(), *HEAT_STYLES, BOX_STYLE)
    lines = []
    for row_chars, row_styles in zip(chars.tolist(), style_id.tolist(), strict=True):
        segments: list[Segment] = []
        start = 0
        for col in range(1, len(row_chars) + 1):
            if col == len(row_chars) or row_styles[col] != row_styles[start]:
                text = "".join(row_chars[start:col])
                segments.append(Segment(text, styles[row_styles[start]]))
                start = col
        lines.append(segments)
    return lines


def _centre(body: list[list[Segment]], body_w: int, cells_w: int, cells_h: int) -> list[Strip]:
    left = (cells_w - body_w) // 2
    right = cells_w - body_w - left
    top = (cells_h - len(body)) // 2
    blank = Strip.blank(cells_w)
    lines = [blank] * top
    for segments in body:
        padded = [Segment(" " * left), *segments, Segment(" " * right)]
        lines.append(Strip([s for s in padded if s.text], cells_w))
    lines.extend([blank] * (cells_h - len(lines)))
    return lines[:cells_h]


def strips_text(strips: list[Strip]) -> list[str]:
    """The characters of each line, without styles (for tests and logs)."""
    return [strip.text for strip in strips]
