import numpy as np
import pytest

from btd_core.slices.tiling import (
    HeatMap,
    axis_origins,
    body_mask,
    centred_patch_origin,
    crop_patch,
    extract_tiles,
    tile_grid,
)


@pytest.mark.parametrize(
    "length, size, stride, expected",
    [
        (512, 96, 48, (0, 48, 96, 144, 192, 240, 288, 336, 384, 416)),
        (192, 96, 48, (0, 48, 96)),
        (192, 96, 96, (0, 96)),
        (200, 96, 96, (0, 96, 104)),
        (96, 96, 48, (0,)),
        (64, 96, 48, (0,)),
    ],
)
def test_axis_origins_cover_every_pixel(length, size, stride, expected):
    starts = axis_origins(length, size, stride)
    assert starts == expected
    covered = np.zeros(max(length, size), bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered[:length].all()


def test_stride_must_be_positive():
    with pytest.raises(ValueError):
        axis_origins(100, 10, 0)


def test_grid_and_tiles_are_crops_of_the_image():
    image = np.random.default_rng(0).random((130, 200)).astype(np.float32)
    grid = tile_grid(130, 200, 96, 48)
    tiles = extract_tiles(image, grid)
    assert tiles.shape == (len(grid.origins), 96, 96)
    for (y, x), tile in zip(grid.origins, tiles, strict=True):
        np.testing.assert_array_equal(tile, image[y : y + 96, x : x + 96])


def test_small_image_is_zero_padded_bottom_right():
    image = np.ones((50, 60), np.float32)
    tile = crop_patch(image, 0, 0, 96)
    assert tile[:50, :60].all() and not tile[50:].any() and not tile[:, 60:].any()


def test_papers_patch_origin():
    assert centred_patch_origin(y_centre=100, x_centre=200, size=96) == (52, 152)
    assert centred_patch_origin(y_centre=10, x_centre=20, size=96) == (0, 0)


def test_body_mask_skips_air_only():
    air = np.zeros((96, 96), np.float32)
    body = air.copy()
    body[:30, :30] = 0.4  # ~10 % of the tile is tissue
    speck = air.copy()
    speck[:3, :3] = 0.4  # 0.1 %: noise, not a body
    assert body_mask(np.stack([air, body, speck])).tolist() == [False, True, False]
    assert body_mask(np.zeros((0, 96, 96), np.float32)).shape == (0,)


def test_heat_map_averages_overlapping_tiles():
    heat = HeatMap(4, 6)
    heat.add(0, 0, np.full((4, 4), 1.0, np.float32))
    heat.add(0, 2, np.full((4, 4), 3.0, np.float32))
    values = heat.values()
    np.testing.assert_allclose(values[:, :2], 1.0)
    np.testing.assert_allclose(values[:, 2:4], (1.0 + 9.0) / 2)
    np.testing.assert_allclose(values[:, 4:], 9.0)


def test_heat_map_clips_tiles_at_the_edge_and_leaves_unscored_zero():
    heat = HeatMap(5, 5)
    heat.add(3, 3, np.full((4, 4), 2.0, np.float32))
    values = heat.values()
    assert values[3:, 3:].tolist() == [[4.0, 4.0], [4.0, 4.0]]
    assert values[:3].sum() == 0


def test_heat_map_margin_drops_tile_borders_inside_the_image_only():
    heat = HeatMap(8, 12, margin=2)
    heat.add(0, 0, np.full((8, 8), 1.0, np.float32))  # left/top/bottom on the edge
    heat.add(0, 4, np.full((8, 8), 2.0, np.float32))  # right/top/bottom on the edge
    values = heat.values()
    np.testing.assert_allclose(values[:, :6], 1.0)  # first tile up to its inner margin
    np.testing.assert_allclose(values[:, 6:], 4.0)  # second tile from its inner margin on
    assert (values > 0).all()
