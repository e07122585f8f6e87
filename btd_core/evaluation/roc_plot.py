"""ROC curves as a 640 x 640 PNG, drawn with Pillow only (no matplotlib).

Axes from 0 to 1 (false positive rate across, true positive rate up), ticks every 0.2,
a light grid, the dashed chance diagonal, one coloured curve per set and a legend
``name  AUC 0.912``.  Set names come from files: control characters are escaped and
long names shortened.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from btd_core.atomic import atomic_write_bytes
from btd_core.safe_text import printable

SIZE = 640
PLOT_LEFT, PLOT_TOP, PLOT_SIZE = 80, 50, 520
"""The plot square: left and top edge and side, pixels."""
COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (188, 189, 34),
    (127, 127, 127),
)
"""Curve colours (the tab10 palette), in the order of the sets."""
INK, GRID, FAINT = (30, 30, 30), (225, 225, 225), (150, 150, 150)
TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MAX_NAME = 28

Curves = Mapping[str, tuple[np.ndarray, np.ndarray, float]]
"""``{set name: (fpr, tpr, auroc)}`` with fpr/tpr in [0, 1] as from :func:`roc_curve`."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (scalable since Pillow 10.1), else the bitmap one."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def _to_pixel(fpr: float, tpr: float) -> tuple[float, float]:
    return PLOT_LEFT + fpr * PLOT_SIZE, PLOT_TOP + (1.0 - tpr) * PLOT_SIZE


def _short(name: str) -> str:
    text = printable(name)
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _axes(draw: ImageDraw.ImageDraw, image: Image.Image, title: str) -> None:
    """Grid, frame, ticks with labels, axis titles and the title."""
    small, label = _font(13), _font(15)
    right, bottom = PLOT_LEFT + PLOT_SIZE, PLOT_TOP + PLOT_SIZE
    for tick in TICKS:
        x, y = _to_pixel(tick, tick)
        draw.line([(x, PLOT_TOP), (x, bottom)], fill=GRID)
        draw.line([(PLOT_LEFT, y), (right, y)], fill=GRID)
        draw.line([(x, bottom), (x, bottom + 5)], fill=INK)
        draw.line([(PLOT_LEFT - 5, y), (PLOT_LEFT, y)], fill=INK)
        text = f"{tick:.1f}"
        draw.text((x, bottom + 8), text, fill=INK, font=small, anchor="mt")
        draw.text((PLOT_LEFT - 8, y), text, fill=INK, font=small, anchor="rm")
    draw.rectangle([PLOT_LEFT, PLOT_TOP, right, bottom], outline=INK)
    centre = PLOT_LEFT + PLOT_SIZE / 2
    draw.text((centre, bottom + 30), "false positive rate", fill=INK, font=label, anchor="mt")
    draw.text((SIZE / 2, 18), title, fill=INK, font=_font(18), anchor="mt")
    # The y-axis title: drawn on its own strip, turned a quarter to read upwards.
    strip = Image.new("RGB", (PLOT_SIZE, 24), "white")
    ImageDraw.Draw(strip).text(
        (PLOT_SIZE / 2, 12), "true positive rate", fill=INK, font=label, anchor="mm"
    )
    image.paste(strip.rotate(90, expand=True), (PLOT_LEFT - 62, PLOT_TOP))


def _diagonal(draw: ImageDraw.ImageDraw) -> None:
    """The chance line, dashed."""
    steps = 40
    for k in range(0, steps, 2):
        a, b = k / steps, (k + 1) / steps
        draw.line([_to_pixel(a, a), _to_pixel(b, b)], fill=FAINT, width=1)


def _legend(draw: ImageDraw.ImageDraw, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    """Entries ``(text, colour)`` in a white box at the plot's lower right."""
    font = _font(13)
    line_height = 20
    width = max(int(draw.textlength(text, font=font)) for text, _ in entries) + 44
    height = line_height * len(entries) + 10
    right, bottom = PLOT_LEFT + PLOT_SIZE - 10, PLOT_TOP + PLOT_SIZE - 10
    left, top = right - width, bottom - height
    draw.rectangle([left, top, right, bottom], fill="white", outline=FAINT)
    for k, (text, colour) in enumerate(entries):
        y = top + 5 + line_height * k + line_height / 2
        draw.line([(left + 8, y), (left + 32, y)], fill=colour, width=3)
        draw.text((left + 38, y), text, fill=INK, font=font, anchor="lm")


def render_roc(curves: Curves, title: str = "ROC curves") -> Image.Image:
    """The plot as a 640 x 640 RGB image (curves drawn in the mapping's order)."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    _axes(draw, image, printable(title))
    _diagonal(draw)
    entries = []
    for k, (name, (fpr, tpr, area)) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [_to_pixel(float(f), float(t)) for f, t in zip(fpr, tpr, strict=True)]
        if len(points) == 1:
            points.append(points[0])
        draw.line(points, fill=colour, width=2, joint="curve")
        entries.append((f"{_short(name)}  AUC {area:.3f}", colour))
    if entries:
        _legend(draw, entries)
    return image


def write_roc_png(path: Path, curves: Curves, title: str = "ROC curves") -> Path:
    """Draw ``curves`` (see :data:`Curves`) and write the PNG atomically; returns ``path``."""
    buffer = io.BytesIO()
    render_roc(curves, title).save(buffer, format="PNG", optimize=True)
    return atomic_write_bytes(Path(path), buffer.getvalue())
