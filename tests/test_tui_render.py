"""The TUI's pure parts: the slice renderer, the model config, the scan bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btd_tui.config import ConfigError, config_path, resolve_model
from btd_tui.render import (
    ASCII_RAMP,
    HALF_BLOCK,
    RenderRequest,
    fit,
    render,
    resample,
    strips_text,
    zoom_region,
)
from btd_tui.scan_worker import format_duration


def gradient(height: int = 128, width: int = 128) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, width), (height, 1))


def hot_spot(shape: tuple[int, int], box: tuple[int, int, int]) -> np.ndarray:
    heat = np.zeros(shape)
    x, y, size = box
    heat[y : y + size, x : x + size] = 1.0
    return heat


def styles_of(strips) -> set:
    return {seg.style for strip in strips for seg in strip if seg.text.strip()}


def test_resample_area_mean_max_and_nearest():
    values = np.arange(16.0).reshape(4, 4)
    assert resample(values, 2, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert resample(values, 2, 2, how="max").tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert resample(np.array([[1.0, 2.0]]), 2, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]
    with pytest.raises(ValueError):
        resample(np.zeros(3), 1, 1)


@pytest.mark.parametrize(
    ("shape", "cells", "ascii", "expected"),
    [
        ((512, 512), (40, 20), False, (40, 40)),  # square pixels: 40 cells wide, 20 rows x 2
        ((512, 512), (40, 20), True, (20, 40)),  # ASCII: one cell is two square units high
        ((512, 512), (80, 20), False, (40, 40)),  # height-bound
        ((256, 512), (40, 40), False, (20, 40)),  # wide slice keeps 2:1
        ((10, 10), (0, 5), False, (0, 0)),
    ],
)
def test_fit_keeps_the_aspect_ratio(shape, cells, ascii, expected):
    assert fit(shape[0], shape[1], cells[0], cells[1], ascii) == expected


def test_half_blocks_fill_the_box_and_centre():
    strips = render(RenderRequest(gradient()), 50, 10)
    lines = strips_text(strips)
    assert len(lines) == 10 and all(len(line) == 50 for line in lines)
    assert all(strip.cell_length == 50 for strip in strips)
    assert all(line.strip() == HALF_BLOCK * 20 for line in lines)  # 20 x 20 pixels, centred
    assert lines[0].index(HALF_BLOCK) == 15


def test_half_block_colours_are_upper_and_lower_pixels():
    image = np.zeros((2, 1))
    image[1, 0] = 1.0  # black above, white below
    strips = render(RenderRequest(image, show_heat=False), 1, 1)
    segment = next(iter(strips[0]))
    assert segment.text == HALF_BLOCK
    assert segment.style.color.triplet == (0, 0, 0)
    assert segment.style.bgcolor.triplet == (255, 255, 255)


def test_ascii_mode_uses_the_ramp_only():
    strips = render(RenderRequest(gradient(), ascii=True), 40, 20)
    text = "".join(strips_text(strips))
    assert HALF_BLOCK not in text
    assert set(text) <= set(ASCII_RAMP)
    first = strips_text(strips)[0].strip()
    assert first[0] == " " or first[0] == ASCII_RAMP[0] or first.startswith(".")
    assert strips_text(strips)[5].rstrip()[-1] == "@"  # bright right edge


def test_heat_overlay_changes_colours_and_can_be_turned_off():
    box = (32, 32, 32)
    image = np.full((128, 128), 0.5)
    heat = hot_spot(image.shape, box)
    with_heat = render(RenderRequest(image, heat, show_heat=True), 32, 16)
    without = render(RenderRequest(image, heat, show_heat=False), 32, 16)
    assert strips_text(with_heat) == strips_text(without)
    assert styles_of(with_heat) != styles_of(without)
    assert len(styles_of(without)) == 1  # uniform gray
    reds = [s for s in styles_of(with_heat) if s.color.triplet[0] > s.color.triplet[2] + 50]
    assert reds, "the hot spot is drawn in red/yellow"


def test_ascii_heat_and_box():
    box = (32, 32, 64)
    image = np.full((128, 128), 0.5)
    strips = render(RenderRequest(image, hot_spot(image.shape, box), box=box, ascii=True), 64, 32)
    lines = strips_text(strips)
    assert sum(line.count("+") for line in lines) >= 4  # corners (the ramp has + too)
    assert any("|" in line for line in lines)
    colours = {s.color.name for s in styles_of(strips) if s.color is not None}
    assert {"red", "cyan"} <= colours or {"yellow", "cyan"} <= colours


def test_box_outline_is_cyan_in_half_block_mode():
    box = (32, 32, 64)
    strips = render(RenderRequest(np.zeros((128, 128)), box=box), 64, 32)
    cyan = [
        s
        for s in styles_of(strips)
        if (s.color and s.color.triplet == (0, 255, 255))
        or (s.bgcolor and s.bgcolor.triplet == (0, 255, 255))
    ]
    assert cyan


def test_zoom_crops_the_worst_tile_with_a_margin():
    assert zoom_region((512, 512), (200, 100, 96)) == (76, 220, 176, 320)
    assert zoom_region((128, 128), (0, 0, 96)) == (0, 120, 0, 120)
    image = np.zeros((512, 512))
    image[100:196, 200:296] = 1.0  # the tile is bright, the rest dark
    whole = strips_text(render(RenderRequest(image, box=(200, 100, 96), ascii=True), 60, 30))
    zoomed = strips_text(
        render(RenderRequest(image, box=(200, 100, 96), ascii=True, zoom=True), 60, 30)
    )
    bright = sum(line.count("@") for line in zoomed)
    assert bright > 10 * max(sum(line.count("@") for line in whole), 1)


def test_render_rejects_mismatched_heat():
    with pytest.raises(ValueError, match="heat shape"):
        render(RenderRequest(np.zeros((4, 4)), np.zeros((3, 3))), 10, 5)


def test_tiny_areas_render_blank_lines():
    assert strips_text(render(RenderRequest(gradient()), 0, 2)) == ["", ""]


def test_model_from_argument_env_and_config(tmp_path: Path):
    given = tmp_path / "given.onnx"
    assert resolve_model(given, {}) == given
    assert resolve_model(None, {"BTD_MODEL": "~/m.onnx"}) == Path("~/m.onnx").expanduser()
    config = tmp_path / "cfg" / "btd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('model = "models/ct.onnx"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert config_path(env) == config
    assert resolve_model(None, env) == config.parent / "models" / "ct.onnx"
    config.write_text('model = "/abs/ct.onnx"\n')
    assert resolve_model(None, env) == Path("/abs/ct.onnx")


def test_no_model_anywhere_is_a_clear_error(tmp_path: Path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="BTD_MODEL") as caught:
        resolve_model(None, env)
    assert "--model" in str(caught.value) and "config.toml" in str(caught.value)
    bad = tmp_path / "btd" / "config.toml"
    bad.parent.mkdir()
    bad.write_text("model = [1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_model(None, env)
    bad.write_text("model = 3\n")
    with pytest.raises(ConfigError, match="non-empty string"):
        resolve_model(None, env)


def test_durations():
    assert format_duration(None) == "?"
    assert format_duration(62.4) == "1:02"
    assert format_duration(3723) == "1:02:03"
