"""Whole-slice coverage: tiles of the model's size, a body mask, and the residual heat map.

All images here are float32 [H, W] already windowed to [0, 1].  Coordinates are
pixels: ``x`` is the column, ``y`` the row.

Memory bound.  :func:`extract_tiles` allocates its result and nothing else of that order:
``n x S x S x 4`` bytes for ``n`` tiles (:func:`tiles_nbytes` computes it from the sizes
alone, with Python integers).  Over an H x W image, ``n`` is at most
``(ceil((max(H, S) - S) / stride) + 1) x (ceil((max(W, S) - S) / stride) + 1)``
(:func:`tile_count`): at the default stride S/2, about 4 tiles cover each pixel, so all
tiles take about 16 bytes per image pixel (a 512 x 512 CT slice: 100 tiles of 96 px,
3.7 MB), at most 16 x 16384 x 16384 bytes = 4.3 GB at the default frame limit of
:class:`btd_core.study.limits.StudyLimits` (which also caps a side at 65535 pixels, so a
long thin image cannot multiply zero-padded tiles).  :func:`tile_body_mask` decides which
tiles hold body from the image itself (memory: one band of S rows), and
``extract_tiles(image, grid, keep)`` then copies only those: use the pair
(:func:`select_body_tiles`) so that air never costs memory.  :func:`body_mask` on tiles
already made works in chunks of :data:`MASK_CHUNK` tiles.
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

MASK_CHUNK = 1024
"""Tiles :func:`body_mask` thresholds at a time (its temporary: MASK_CHUNK x S x S bytes)."""


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


def axis_count(length: int, size: int, stride: int) -> int:
    """``len(axis_origins(length, size, stride))``, computed (Python integers, no list)."""
    if stride < 1:
        raise ValueError("stride must be at least 1 pixel")
    if length <= size:
        return 1
    return -(-(length - size) // stride) + 1


def tile_count(height: int, width: int, size: int, stride: int) -> int:
    """Tiles of ``size`` pixels every ``stride`` pixels over a ``height`` x ``width`` image."""
    return axis_count(height, size, stride) * axis_count(width, size, stride)


def tiles_nbytes(height: int, width: int, size: int, stride: int) -> int:
    """Bytes of all float32 tiles of an image (what :func:`extract_tiles` allocates for
    the whole grid), from the sizes alone."""
    return tile_count(height, width, size, stride) * size * size * 4


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


def extract_tiles(image: np.ndarray, grid: TileGrid, keep: np.ndarray | None = None) -> np.ndarray:
    """The tiles of ``grid`` as float32 [N, S, S], row by row (zero-padded where the image
    is smaller than S); with ``keep`` (bool, one per origin) only the tiles it marks.

    Allocates the result only (see the module's memory bound); copies one row of tiles
    at a time.
    """
    size = grid.size
    nx = len(grid.xs)
    wanted = np.ones(len(grid.ys) * nx, bool) if keep is None else np.asarray(keep, bool)
    if wanted.shape != (len(grid.ys) * nx,):
        raise ValueError(f"keep has {wanted.size} entries, the grid {len(grid.ys) * nx} tiles")
    out = np.empty((int(wanted.sum()), size, size), dtype=np.float32)
    padded = image.shape[0] < size or image.shape[1] < size
    windows = None if padded else np.lib.stride_tricks.sliding_window_view(image, (size, size))
    xs = np.asarray(grid.xs, dtype=np.intp)
    filled = 0
    for row, y in enumerate(grid.ys):
        chosen = wanted[row * nx : (row + 1) * nx]
        count = int(chosen.sum())
        if not count:
            continue
        if windows is None:
            for x in xs[chosen]:
                out[filled] = crop_patch(image, y, int(x), size)
                filled += 1
            continue
        out[filled : filled + count] = windows[y][xs[chosen]]
        filled += count
    return out


def body_mask(
    tiles: np.ndarray, level: float = BODY_LEVEL, fraction: float = BODY_FRACTION
) -> np.ndarray:
    """bool [N]: which tiles hold enough body to be worth scoring (the rest is air).

    Thresholds :data:`MASK_CHUNK` tiles at a time, so its temporary stays small.
    """
    if len(tiles) == 0:
        return np.zeros(0, dtype=bool)
    keep = np.empty(len(tiles), dtype=bool)
    for start in range(0, len(tiles), MASK_CHUNK):
        share = (tiles[start : start + MASK_CHUNK] > level).mean(axis=(1, 2))
        keep[start : start + MASK_CHUNK] = share >= fraction
    return keep


def tile_body_mask(
    image: np.ndarray,
    grid: TileGrid,
    level: float = BODY_LEVEL,
    fraction: float = BODY_FRACTION,
) -> np.ndarray:
    """bool [N], the same as ``body_mask(extract_tiles(image, grid), level, fraction)``,
    computed from the image without making the tiles.

    Per row of tiles: body pixels counted per column over the S rows of the band, then
    per tile by a running sum (memory: S x W booleans and a few W-long arrays).  A zero
    padding pixel counts as body only when ``0 > level``, as it does in the tiles.
    """
    size = grid.size
    width = image.shape[1]
    area = size * size
    xs = np.asarray(grid.xs, dtype=np.intp)
    keep = np.empty(len(grid.ys) * len(xs), dtype=bool)
    pad_is_body = level < 0.0
    for row, y in enumerate(grid.ys):
        band = image[y : y + size]
        body = _counts_per_tile(band > level, xs, size)
        if pad_is_body:
            body = body + (area - band.shape[0] * (np.minimum(xs + size, width) - xs))
        keep[row * len(xs) : (row + 1) * len(xs)] = body / area >= fraction
    return keep


def _counts_per_tile(band: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """True pixels of a band of rows (bool [<= S, W]) in each tile starting at ``xs``
    (a running sum over per-column counts; tiles cut by the image's edge stop there)."""
    per_column = np.count_nonzero(band, axis=0)
    running = np.concatenate(([0], np.cumsum(per_column, dtype=np.int64)))
    return running[np.minimum(xs + size, band.shape[1])] - running[xs]


def tile_region_mask(
    region: np.ndarray, grid: TileGrid, fraction: float = BODY_FRACTION
) -> np.ndarray:
    """bool [N]: tiles of ``grid`` with at least ``fraction`` (0..1) of their S x S pixels
    in ``region`` (bool [H, W], e.g. :func:`btd_core.slices.body.body_region`); zero
    padding beyond the image is never in the region.  Memory: one band of S rows."""
    size = grid.size
    xs = np.asarray(grid.xs, dtype=np.intp)
    keep = np.empty(len(grid.ys) * len(xs), dtype=bool)
    for row, y in enumerate(grid.ys):
        inside = _counts_per_tile(region[y : y + size], xs, size)
        keep[row * len(xs) : (row + 1) * len(xs)] = inside / (size * size) >= fraction
    return keep


def select_body_tiles(
    image: np.ndarray,
    grid: TileGrid,
    level: float = BODY_LEVEL,
    fraction: float = BODY_FRACTION,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(keep bool [N], the kept tiles float32 [n, S, S]): the body mask decided on the
    image (or, given ``region``, bool [H, W], on that region's share of each tile), then
    only the kept tiles copied (memory: those tiles, see the module doc)."""
    if region is None:
        keep = tile_body_mask(image, grid, level, fraction)
    else:
        keep = tile_region_mask(region, grid, fraction)
    return keep, extract_tiles(image, grid, keep)


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
