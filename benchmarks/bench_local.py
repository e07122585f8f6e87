"""Cost of the local score modes per 512 x 512 slice, on the thread that ranks slices.

The local modes reduce each scored slice's residual heat map to windows after the
model ran; on a GPU that work sits on the scan's main thread, so it must stay small
against ~80 tiles of scoring.  Side by side, on one real CT slice (pydicom-data's
693_UNCI.dcm) with random residuals (the cost does not depend on their values):

- the tile mode (the paper's: the highest tile mean; nothing to compute),
- ``local`` and ``calibrated`` as shipped (separable window sums),
- the same with window sums from a whole-image integral image (the first version),
- image context's per-slice work (the pixels against two neighbours, here the slice
  moved by 3 px): each slice's maximum filter computed once and kept while it is a
  neighbour (as shipped) against computing all three in every comparison (before).

    python benchmarks/bench_local.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btd_core.scoring import windows as local_energy
from btd_core.scoring.calibration import fit_calibration
from btd_core.scoring.image_context import disagreement, nearby_maximum
from btd_core.scoring.strategy import LocalScore, TileScore, calibrated_score
from btd_core.scoring.tiles import ImageScores, ScanSettings, select_tiles
from btd_core.slices.profiles import CT
from btd_core.slices.tiling import axis_origins


def integral_box_means(values: np.ndarray, window: int, stride: int):
    """The first version of :func:`btd_core.scoring.windows.box_means` (baseline)."""
    height, width = values.shape
    win_y, win_x = min(window, height), min(window, width)
    ys, xs = axis_origins(height, win_y, stride), axis_origins(width, win_x, stride)
    integral = np.zeros((height + 1, width + 1), dtype=np.float64)
    integral[1:, 1:] = np.asarray(values, dtype=np.float64).cumsum(0).cumsum(1)
    top, left = np.ix_(np.asarray(ys), np.asarray(xs))
    sums = (
        integral[top + win_y, left + win_x]
        - integral[top, left + win_x]
        - integral[top + win_y, left]
        + integral[top, left]
    )
    return sums / (win_y * win_x), ys, xs


def per_slice_ms(run, repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("693_UNCI.dcm"))
    hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    image = CT.to_unit_range(hu.astype(np.float32))
    settings = ScanSettings()
    tiles = select_tiles(image, 96, settings)
    rng = np.random.default_rng(0)
    count = len(tiles.origins)
    residuals = (0.01 * rng.standard_normal((count, 1, 96, 96))).astype(np.float32)
    scores = ImageScores.of(tiles, rng.random(count).astype(np.float32), residuals)
    tile, local = TileScore(), LocalScore()
    verdict = local.judge("s", 0, image, scores)
    assert verdict is not None
    windows = verdict.windows
    valid = windows.valid
    calibration = fit_calibration(
        windows.energy[valid], windows.intensity[valid], windows.texture[valid],
        model_sha256="0" * 64, window=local.window, stride=local.window_stride, slices=1,
    )  # fmt: skip
    calibrated = calibrated_score(calibration)
    rows = [
        ("tile (the paper's)", lambda: tile.judge("s", 0, image, scores)),
        ("local", lambda: local.judge("s", 0, image, scores)),
        ("calibrated", lambda: calibrated.judge("s", 0, image, scores)),
    ]
    print(f"one 512 x 512 CT slice, {count} tiles of 96 px, median of {args.repeat} runs")
    print("| slice score | window sums | ms per slice | 300 slices, s |")
    print("|---|---|---|---|")
    for name, run in rows:
        ms = per_slice_ms(run, args.repeat)
        sums = "separable" if name != rows[0][0] else "none"
        print(f"| {name} | {sums} | {ms:.2f} | {0.3 * ms:.2f} |")
        if name != rows[0][0]:
            with mock.patch.object(local_energy, "box_means", integral_box_means):
                ms = per_slice_ms(run, args.repeat)
            print(f"| {name} | integral image (baseline) | {ms:.2f} | {0.3 * ms:.2f} |")
    before, after = np.roll(image, 3, axis=1), np.roll(image, -3, axis=0)
    kept = [nearby_maximum(before), nearby_maximum(after)]
    window, stride = local.window, local.window_stride
    context = [
        ("image context", "once per slice", lambda: disagreement(
            image, [before, after], window, stride, nearby=[nearby_maximum(image), *kept])),
        ("image context", "3 per comparison (baseline)", lambda: disagreement(
            image, [before, after], window, stride)),
    ]  # fmt: skip
    print()
    print("| slice score part | maximum filters | ms per slice | 300 slices, s |")
    print("|---|---|---|---|")
    for name, filters, run in context:
        ms = per_slice_ms(run, args.repeat)
        print(f"| {name} | {filters} | {ms:.2f} | {0.3 * ms:.2f} |")


if __name__ == "__main__":
    main()
