"""Two ONNX files of one model (e.g. two exports) on real body passes: speed and sameness.

    python benchmarks/bench_graphs.py OLD.onnx NEW.onnx [--lung1 DIR] [--slices N] [--rounds R]

Scores the body coverage (``btd scan --tiles body``) of lung1's slices 14.. (512 x 512 chest
CT, windowed as the CT profile does) with each file in turn, R rounds, on onnxruntime's CPU
provider with the threads ``OMP_NUM_THREADS`` names (else one per core), and prints the best
round's seconds per slice of each and the largest residual and tile-score differences.  A
graph rewrite that claims the same arithmetic must show 0 there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from btd_core.engine.scorer import Scorer
from btd_core.scoring.tiles import ImageScores, ScanSettings, score_tiles, select_tiles
from btd_core.slices.profiles import CT

LUNG1 = Path.home() / ".cache" / "btd" / "pyradiomics"


def lung1_slices(folder: Path, first: int, count: int) -> list[np.ndarray]:
    """lung1's axial slices ``first`` .. ``first + count - 1``, windowed to [0, 1] (CT)."""
    import nrrd

    hu, _ = nrrd.read(str(folder / "lung1_image.nrrd"))
    volume = np.asarray(hu, np.float32).transpose(2, 1, 0)
    return [CT.to_unit_range(volume[i]).astype(np.float32) for i in range(first, first + count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--lung1", type=Path, default=LUNG1)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scorers = {"old": Scorer(args.old, provider="cpu"), "new": Scorer(args.new, provider="cpu")}
    card = scorers["old"].card
    images = lung1_slices(args.lung1, 14, args.slices)
    settings = ScanSettings(tiles="body")
    sets = [select_tiles(im, card.patch_size, settings, card.side_multiple) for im in images]
    shapes = sorted({tuple(s.tiles.shape[1:]) for s in sets})
    print(f"{len(sets)} lung1 slices, body passes {shapes}, {scorers['old'].provider_in_use}")
    for scorer in scorers.values():
        score_tiles(sets[0], scorer)  # first call: onnxruntime plans its memory
    best: dict[str, float] = {}
    scored: dict[str, list[ImageScores]] = {}
    for _ in range(args.rounds):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scored[name] = [score_tiles(tile_set, scorer) for tile_set in sets]
            per_slice = (time.perf_counter() - start) / len(sets)
            best[name] = min(best.get(name, per_slice), per_slice)
    for name, path in (("old", args.old), ("new", args.new)):
        print(f"{name} ({path.name}): {best[name]:.3f} s/slice (best of {args.rounds} rounds)")
    print(f"speed-up {best['old'] / best['new']:.2f}x")
    pairs = list(zip(scored["old"], scored["new"], strict=True))
    residual = max(float(np.abs(a.residuals - b.residuals).max()) for a, b in pairs)
    score = max(float(np.abs(a.scores - b.scores).max() / a.scores.max()) for a, b in pairs)
    print(f"max |residual difference| {residual:.2e}; max tile-score difference {score:.2e} of the")
    print("slice's top tile score")


if __name__ == "__main__":
    main()
