"""Overlay pictures: gray slice, heat map, worst-tile box, written as real PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btd_core.findings.overlay import (
    BOX_COLOUR,
    CAPTION_HEIGHT,
    HOT_LUT,
    normalise_heat,
    render_overlay,
    write_overlay,
)


def gradient(height: int = 48, width: int = 64) -> np.ndarray:
    """A gray ramp in [0, 1] across the columns."""
    return np.tile(np.linspace(0.0, 1.0, width), (height, 1))


def expected_gray(image01: np.ndarray) -> np.ndarray:
    gray = np.round(np.clip(np.nan_to_num(image01), 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def hot_spot(height: int = 48, width: int = 64) -> np.ndarray:
    heat = np.zeros((height, width))
    heat[10:20, 30:40] = 5.0
    return heat


def test_png_written_with_scaled_size(tmp_path: Path) -> None:
    image = gradient()
    path = write_overlay(tmp_path / "sub" / "o.png", image, hot_spot(), (8, 4, 16), scale=3)
    assert path == tmp_path / "sub" / "o.png"
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.size == (64 * 3, 48 * 3)
        assert picture.mode == "RGB"
    assert [p.name for p in path.parent.iterdir()] == ["o.png"]


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_box_outline_has_box_colour(scale: int) -> None:
    x, y, size = 8, 4, 16
    pixels = np.asarray(render_overlay(gradient(), None, (x, y, size), scale=scale))
    left, top = x * scale, y * scale
    right, bottom = (x + size) * scale - 1, (y + size) * scale - 1
    for dx in (0, 1):  # the 2-px outline lies inside the tile's edge
        assert (pixels[top : bottom + 1, left + dx] == BOX_COLOUR).all()
        assert (pixels[top : bottom + 1, right - dx] == BOX_COLOUR).all()
        assert (pixels[top + dx, left : right + 1] == BOX_COLOUR).all()
        assert (pixels[bottom - dx, left : right + 1] == BOX_COLOUR).all()
    inside = pixels[top + 2 : bottom - 1, left + 2 : right - 1]
    assert not (inside == BOX_COLOUR).all(axis=-1).any()
    outside = pixels[bottom + 1 :, :]
    assert not (outside == BOX_COLOUR).all(axis=-1).any()


def test_zero_heat_equals_gray_image() -> None:
    image = gradient()
    for heat in (np.zeros_like(image), None):
        pixels = np.asarray(render_overlay(image, heat, None))
        np.testing.assert_array_equal(pixels, expected_gray(image))


def test_hot_spot_is_coloured_and_background_untouched() -> None:
    image = np.full((48, 64), 0.5)
    heat = np.zeros((48, 64))
    heat[10:20, 30:40] = np.linspace(1.0, 5.0, 10)[None, :]  # a graded spot
    pixels = np.asarray(render_overlay(image, heat, None)).astype(int)
    spot = pixels[10:20, 30:40].reshape(-1, 3)
    assert (spot[:, 0] >= spot[:, 1]).all() and (spot[:, 0] >= spot[:, 2]).all()
    mean = spot.mean(axis=0)
    assert mean[0] > mean[1] and mean[0] > mean[2]
    mid = pixels[15, 34]  # normalised heat about 0.6: orange, clearly red-dominant
    assert mid[0] > mid[1] > mid[2]
    rest = np.ones((48, 64), bool)
    rest[10:20, 30:40] = False
    assert (pixels[rest] == 128).all()


def test_low_heat_is_not_drawn() -> None:
    image = np.full((32, 32), 0.25)
    heat = np.full((32, 32), 0.1)
    heat[0:8, 0:8] = 1.0  # the rest is 10% of the top: below the threshold
    pixels = np.asarray(render_overlay(image, heat, None))
    assert (pixels[8:, 8:] == 64).all()
    assert (pixels[:8, :8] != 64).all()


def test_nan_is_safe() -> None:
    image = gradient()
    image[0, :] = np.nan
    heat = hot_spot()
    heat[30, 5] = np.nan
    heat[31, 5] = np.inf
    pixels = np.asarray(render_overlay(image, heat, (0, 0, 8)))
    assert pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(pixels[30:32, 5], expected_gray(image)[30:32, 5])
    all_nan = np.full((48, 64), np.nan)
    pixels = np.asarray(render_overlay(gradient(), all_nan, None))
    np.testing.assert_array_equal(pixels, expected_gray(gradient()))


def test_normalise_heat_uses_max_for_a_small_spot() -> None:
    heat = np.zeros((100, 100))
    heat[50, 50] = 7.0  # one pixel: the 99.5th percentile is 0
    norm = normalise_heat(heat)
    assert norm[50, 50] == 1.0 and norm.sum() == 1.0
    assert not normalise_heat(np.zeros((4, 4))).any()


def test_lut_is_black_to_white_through_red() -> None:
    assert HOT_LUT.shape == (256, 3) and HOT_LUT.dtype == np.uint8
    assert tuple(HOT_LUT[0]) == (0, 0, 0) and tuple(HOT_LUT[255]) == (255, 255, 255)
    assert tuple(HOT_LUT[85]) == (255, 0, 0)


def test_caption_adds_a_strip() -> None:
    picture = render_overlay(gradient(), hot_spot(), None, scale=2, caption="rank 1, =score")
    assert picture.size == (128, 96 + CAPTION_HEIGHT)
    strip = np.asarray(picture)[96:]
    assert strip.max() > 0  # text and colour bar drawn


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2-D"):
        render_overlay(np.zeros((2, 3, 4)), None, None)
    with pytest.raises(ValueError, match="heat shape"):
        render_overlay(gradient(), np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="scale"):
        render_overlay(gradient(), None, None, scale=0)
