"""Series ends on genuine chest CT: do a series' first and last slices outrank its interior?

A slice at a series' end has neighbours on one side only.  This measures, on pyradiomics'
lung1 (genuine slices only; calibrated on slices 0-23 as ``benchmarks/bench_detection.py``
does), how the end slices of genuine series rank under each score of
``bench_detection.MODES`` that uses neighbours:

- every run of ``--length`` consecutive test slices (24-47) is a series of its own; per
  series, the ranks of its two end slices among its slices (1 = the highest score);
- the share of series whose top slice is an end slice (2 / length by chance), the mean
  percentile of end and interior slices (0 = top, 1 = bottom: 0.5 for both when ends are
  judged fairly) and the median score of ends against the interior.

    python benchmarks/bench_series_ends.py --lung1 ~/.cache/btd/pyradiomics --model M.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_detection import TEST_SLICES, Judge, Judged, calibrate, load_lung1
from btd_core.engine.scorer import Scorer
from btd_core.scoring.tiles import COVERAGES
from btd_core.slices.profiles import CT

MODES = ("residual context", "pixel context", "default")
"""The scores that judge a slice with its neighbours (``bench_detection.MODES``)."""


def end_ranks(judge: Judge, genuine: dict[int, Judged], length: int) -> dict[str, dict]:
    """Per mode: how the end slices of every ``length``-slice run of ``genuine`` rank."""
    first, last = min(genuine), max(genuine)
    starts = range(first, last - length + 2)
    results: dict[str, dict] = {}
    for mode in MODES:
        end_pct, inner_pct, end_scores, inner_scores, top_is_end = [], [], [], [], 0
        for start in starts:
            series = {z: genuine[z] for z in range(start, start + length)}
            scores = {}
            for z in series:
                place = judge.final(series, z, mode)
                scores[z] = place[0] if place else -np.inf
            order = sorted(series, key=lambda z: -scores[z])
            ends = (start, start + length - 1)
            top_is_end += order[0] in ends
            for rank, z in enumerate(order):
                percentile = rank / (length - 1)
                (end_pct if z in ends else inner_pct).append(percentile)
                (end_scores if z in ends else inner_scores).append(scores[z])
        results[mode] = {
            "series": len(starts),
            "top_is_end": top_is_end,
            "top_is_end_share": top_is_end / len(starts),
            "chance_share": 2 / length,
            "end_mean_percentile": float(np.mean(end_pct)),
            "interior_mean_percentile": float(np.mean(inner_pct)),
            "end_median_score": float(np.median(end_scores)),
            "interior_median_score": float(np.median(inner_scores)),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lung1", type=Path, required=True, help="folder with lung1_*.nrrd")
    parser.add_argument("--model", type=Path, required=True, help="an ONNX scorer")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--tiles", choices=COVERAGES, default="auto")
    parser.add_argument("--lengths", type=int, nargs="+", default=[7, 24])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    volume, _ = load_lung1(args.lung1)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        calibration = calibrate(volume, args.model, Path(tmp), args.window, args.tiles)
        judge = Judge(Scorer(args.model, provider="cpu"), calibration, args.window, args.tiles)
        genuine = {}
        for z in TEST_SLICES:
            image = CT.to_unit_range(volume[z])
            genuine[z] = judge.judge(image, judge.score(image))
        print(f"model {args.model.name}, {judge.settings.tiles} coverage: calibrated and judged "
              f"in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    results = {"model": args.model.name, "tiles": judge.settings.tiles}
    print(f"{'length':>6}  {'mode':<17} {'top is an end':>14} {'chance':>6} "
          f"{'end pct':>7} {'inner pct':>9} {'end median':>10} {'inner median':>12}")  # fmt: skip
    for length in args.lengths:
        by_mode = end_ranks(judge, genuine, length)
        results[f"length {length}"] = by_mode
        for mode, row in by_mode.items():
            print(
                f"{length:>6}  {mode:<17} {row['top_is_end']:>5}/{row['series']:<3} "
                f"({row['top_is_end_share']:4.0%}) {row['chance_share']:>6.0%} "
                f"{row['end_mean_percentile']:>7.2f} {row['interior_mean_percentile']:>9.2f} "
                f"{row['end_median_score']:>10.2f} {row['interior_median_score']:>12.2f}"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
