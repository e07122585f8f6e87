"""Whole-slice coverage: tiles of the model's size, a body mask, and the residual heat map.

All images here are float32 [H, W] already windowed to [0, 1].  Coordinates are
pixels: ``x`` is the column, ``y`` the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BODY_LEVEL = 0.02
"""A pixel counts as body (not air/background) above this windowed value in [0, 1].
For CT that is about -646 HU ((HU + 700) / 2700 = 0.02); lung parenchyma (-900 to
-500 HU) sits partly below it, which is why a tile needs only a small share of body."""

BODY_FRACTION = 0.05
"""A tile is scored when at least this share of its pixels (0..1) is body."""


@dataclass(frozen=True)
class TileGrid:
    """Top-left corners of the S x S tiles that cover an image of ``height`` x ``width``.

    The last tile of each row/column is aligned with the image's edge, so every
    pixel is covered; an image smaller than S gets one tile, zero-padded.
    """

    height: int
    width: int
    size: int
    stride: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def origins(self) -> list[tuple[int, int]]:
        """(y, x) of every tile, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]


def axis_origins(length: int, size: int, stride: int) -> tuple[int, ...]:
    """Tile starts along one axis of ``length`` pixels: 0, stride, ..., length - size."""
    if stride < 1:
        raise ValueError("stride must be at least 1 pixel")
    if length <= size:
        return (0,)
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return tuple(starts)


def tile_grid(height: int, width: int, size: int, stride: int) -> TileGrid:
    """The grid of ``size`` tiles every ``stride`` pixels over a ``height`` x ``width`` image."""
    return TileGrid(
        height=height,
        width=width,
        size=size,
        stride=stride,
        ys=axis_origins(height, size, stride),
        xs=axis_origins(width, size, stride),
    )


def crop_patch(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` patch with top-left (y, x), zero-padded at the bottom/right."""
    patch = np.zeros((size, size), dtype=np.float32)
    piece = image[max(y, 0) : y + size, max(x, 0) : x + size]
    patch[: piece.shape[0], : piece.shape[1]] = piece
    return patch


def centred_patch_origin(y_centre: int, x_centre: int, size: int) -> tuple[int, int]:
    """Top-left of the paper's patch around (x, y): rows [y - S/2, y + S/2), clipped at 0."""
    return max(y_centre - size // 2, 0), max(x_centre - size // 2, 0)


def extract_tiles(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """All tiles of ``grid`` as float32 [N, S, S] (N = len(grid.origins)), row by row."""
    size = grid.size
    if image.shape[0] < size or image.shape[1] < size:
        return np.stack([crop_patch(image, y, x, size) for y, x in grid.origins])
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    tiles = windows[np.ix_(grid.ys, grid.xs)]  # one copy: [rows, cols, S, S]
    return np.ascontiguousarray(tiles.reshape(-1, size, size), dtype=np.float32)


def body_mask(
    tiles: np.ndarray, level: float = BODY_LEVEL, fraction: float = BODY_FRACTION
) -> np.ndarray:
    """bool [N]: which tiles hold enough body to be worth scoring (the rest is air)."""
    if len(tiles) == 0:
        return np.zeros(0, dtype=bool)
    share = (tiles > level).mean(axis=(1, 2))
    return share >= fraction


class HeatMap:
    """Per-pixel residual energy of one slice: mean of r^2 over the tiles covering a pixel.

    The U-Net's zero padding makes residuals large along every tile's border, which
    would draw the tile grid into the map.  ``margin`` pixels along each tile side are
    therefore left out, except where the side lies on the image's edge; with
    ``margin = (S - stride) / 2`` the tiles' centres still cover the whole image.
    """

    def __init__(self, height: int, width: int, margin: int = 0) -> None:
        self._sum = np.zeros((height, width), dtype=np.float32)
        self._count = np.zeros((height, width), dtype=np.uint16)
        self.margin = max(int(margin), 0)

    def add(self, y: int, x: int, residual: np.ndarray) -> None:
        """Add one tile's residual [S, S] (model space) at top-left (y, x)."""
        height, width = self._sum.shape
        size_y, size_x = residual.shape
        m = self.margin
        top = 0 if y == 0 else m
        left = 0 if x == 0 else m
        bottom = size_y if y + size_y >= height else size_y - m
        right = size_x if x + size_x >= width else size_x - m
        bottom = min(bottom, height - y)
        right = min(right, width - x)
        if bottom <= top or right <= left:
            return
        energy = np.square(residual[top:bottom, left:right], dtype=np.float32)
        self._sum[y + top : y + bottom, x + left : x + right] += energy
        self._count[y + top : y + bottom, x + left : x + right] += 1

    def coverage(self) -> np.ndarray:
        """bool [H, W]: pixels that some tile's kept part covered."""
        return self._count > 0

    def values(self) -> np.ndarray:
        """float32 [H, W]: mean r^2 where tiles were scored, 0 elsewhere."""
        return np.divide(
            self._sum, self._count, out=np.zeros_like(self._sum), where=self._count > 0
        )
