"""Previews with real pixels: the picture (btd_tui.pixels), the mode choice
(btd_tui.preview_mode), and the kitty graphics and sixel output of a real slice."""

from __future__ import annotations

import numpy as np
import pytest

from btd_core.findings.overlay import BOX_WIDTH, HEAT_THRESHOLD
from btd_tui.pixels import fit_cells, picture_size, slice_image
from btd_tui.preview_mode import PREVIEW_MODES, choose_preview
from btd_tui.render import BOX_RGB, ZOOM_MARGIN, RenderRequest, zoom_region

CYAN = np.array(BOX_RGB, np.uint8)


def gradient(height: int = 64, width: int = 64) -> np.ndarray:
    return np.tile(np.linspace(0.1, 0.9, width), (height, 1))


def pixels(image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def cyan_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb == CYAN).all(axis=2)


def test_native_picture_has_the_slice_pixels_and_the_box_inside_its_edge():
    image = gradient()
    box = (10, 20, 16)  # x, y, size
    rgb = pixels(slice_image(RenderRequest(image, box=box, show_heat=False)))
    assert rgb.shape == (64, 64, 3)
    cyan = cyan_mask(rgb)
    ys, xs = np.nonzero(cyan)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 25, 20, 35)
    ring = np.zeros((64, 64), bool)
    ring[20:36, 10:26] = True
    ring[20 + BOX_WIDTH : 36 - BOX_WIDTH, 10 + BOX_WIDTH : 26 - BOX_WIDTH] = False
    assert (cyan == ring).all()
    gray = np.round(image * 255).astype(np.uint8)
    assert (rgb[~cyan] == np.repeat(gray[..., None], 3, 2)[~cyan]).all()


def test_box_is_scaled_with_the_picture():
    request = RenderRequest(gradient(), box=(10, 20, 16), show_heat=False)
    rgb = pixels(slice_image(request, 128, 128))
    ys, xs = np.nonzero(cyan_mask(rgb))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 51, 40, 71)
    assert not cyan_mask(rgb)[45:66, 25:46].any()  # the region's inside stays clear


def test_heat_is_blended_only_where_it_is_hot():
    image = np.full((32, 32), 0.5)
    heat = np.zeros((32, 32))
    heat[8:12, 8:12] = 1.0
    heat[20, 20] = 0.1 * HEAT_THRESHOLD  # below the threshold after normalising
    rgb = pixels(slice_image(RenderRequest(image, heat=heat))).astype(int)
    hot = np.zeros((32, 32), bool)
    hot[8:12, 8:12] = True
    assert (rgb[~hot] == 128).all()
    red, green, blue = rgb[hot].T
    assert (red > 128).all() and (red >= green).all() and (green > blue + 50).all()  # yellow
    off = pixels(slice_image(RenderRequest(image, heat=heat, show_heat=False)))
    assert (off == 128).all()


def test_zoom_crops_the_worst_region_with_its_margin_at_native_resolution():
    image = np.random.default_rng(0).uniform(size=(128, 128))
    box = (40, 50, 24)
    request = RenderRequest(image, box=box, zoom=True, show_heat=False)
    margin = round(24 * ZOOM_MARGIN)
    assert zoom_region(image.shape, box) == (50 - margin, 74 + margin, 40 - margin, 64 + margin)
    assert picture_size(request) == (24 + 2 * margin, 24 + 2 * margin)
    native = pixels(slice_image(request))
    crop = np.round(image[50 - margin : 74 + margin, 40 - margin : 64 + margin] * 255)
    cyan = cyan_mask(native)
    assert (native[..., 0][~cyan] == crop[~cyan]).all()
    ys, xs = np.nonzero(cyan)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (margin, margin, margin + 23, margin + 23)
    # clipped at the slice's edge
    edge = RenderRequest(image, box=(0, 0, 24), zoom=True)
    assert picture_size(edge) == (24 + margin, 24 + margin)


def test_zoom_is_enlarged_by_nearest_neighbour():
    image = np.random.default_rng(1).uniform(size=(64, 64))
    request = RenderRequest(image, box=(16, 16, 16), zoom=True, show_heat=False)
    side = picture_size(request)[0]  # 24 slice pixels
    big = pixels(slice_image(request, side * 5, side * 5))
    native = pixels(slice_image(request))
    # every slice pixel is a 5 x 5 block of one colour (away from the box's outline)
    assert (big[2::5, 2::5][:4, :4] == native[:4, :4]).all()
    block = big[:5, :5].reshape(-1, 3)
    assert (block == block[0]).all()


def test_picture_is_letterboxed_to_the_size_asked():
    image = gradient(32, 64)  # twice as wide as high
    rgb = pixels(slice_image(RenderRequest(image, show_heat=False), 64, 48))
    assert rgb.shape == (48, 64, 3)
    assert (rgb[:8] == 0).all() and (rgb[40:] == 0).all()  # black bands above and below
    assert rgb[8:40].min() > 0


def test_small_hot_spot_survives_shrinking():
    image = np.full((200, 200), 0.5)
    heat = np.zeros((200, 200))
    heat[101, 101] = 1.0
    rgb = pixels(slice_image(RenderRequest(image, heat=heat), 50, 50)).astype(int)
    assert (rgb[..., 0] > rgb[..., 2] + 40).sum() == 1


def test_bad_requests_are_refused():
    with pytest.raises(ValueError):
        slice_image(RenderRequest(np.zeros((4, 4)), heat=np.zeros((3, 3))))
    with pytest.raises(ValueError):
        slice_image(RenderRequest(np.zeros((4, 4))), 0, 10)


def test_fit_cells_keeps_the_aspect_ratio_in_screen_pixels():
    # 512 x 512 into 40 x 20 cells of 10 x 20 px: 400 x 400 px -> 40 x 20 cells
    assert fit_cells(512, 512, 40, 20, (10, 20)) == (40, 20)
    # 60 x 20 cells: limited by the height (400 px): 40 columns
    assert fit_cells(512, 512, 60, 20, (10, 20)) == (40, 20)
    # a wide picture in a tall box: limited by the width
    assert fit_cells(200, 100, 20, 30, (10, 20)) == (20, 5)
    assert fit_cells(0, 10, 20, 30, (10, 20)) == (0, 0)
    assert fit_cells(10, 10, 0, 30, (10, 20)) == (0, 0)


@pytest.mark.parametrize("mode", ["halfblock", "ascii"])
def test_forced_text_modes_are_used_as_asked(mode):
    choice = choose_preview(mode, {"TERM": "xterm-kitty"})
    assert choice.mode == mode and not choice.graphics


@pytest.mark.parametrize(
    "environ",
    [
        {"TERM": "tmux-256color"},
        {"TERM": "screen-256color"},
        {"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1000/default,1,0"},
        {"TERM": "xterm-256color", "STY": "1234.pts-0.host"},
        {"TERM": "xterm-256color", "ZELLIJ": "0"},
    ],
)
def test_auto_is_half_blocks_inside_a_multiplexer(environ):
    choice = choose_preview("auto", environ)
    assert choice.mode == "halfblock" and "inside" in choice.reason


def test_auto_without_a_terminal_is_half_blocks():
    # pytest's stdin/stdout are not terminals: nothing to ask, half-blocks
    choice = choose_preview("auto", {"TERM": "xterm-kitty"})
    assert choice.mode == "halfblock" and "not a terminal" in choice.reason


def test_auto_follows_btd_preview():
    assert choose_preview("auto", {"BTD_PREVIEW": "ascii", "TMUX": "x"}).mode == "ascii"
    assert choose_preview("auto", {"BTD_PREVIEW": "sixel", "TMUX": "x"}).mode == "sixel"
    assert choose_preview("auto", {"BTD_PREVIEW": "auto", "TMUX": "x"}).mode == "halfblock"
    assert choose_preview("halfblock", {"BTD_PREVIEW": "kitty"}).mode == "halfblock"
    with pytest.raises(ValueError, match="BTD_PREVIEW"):
        choose_preview("auto", {"BTD_PREVIEW": "pixels"})
    lenient = choose_preview("auto", {"BTD_PREVIEW": "pixels", "TMUX": "x"}, strict=False)
    assert lenient.mode == "halfblock" and "ignored" in lenient.reason
    with pytest.raises(ValueError):
        choose_preview("iterm", {})


def test_forced_graphics_modes_are_used_even_in_tmux():
    for mode in ("kitty", "sixel"):
        choice = choose_preview(mode, {"TMUX": "x", "TERM": "tmux-256color"})
        assert choice.mode == mode and choice.graphics
    assert set(PREVIEW_MODES) == {"auto", "kitty", "sixel", "halfblock", "ascii"}
