"""How fast the U-Net runs per pixel as one model pass grows (a graph with free sides).

    python benchmarks/bench_pass_size.py model.onnx [--sizes 96,128,...] [--runs N]

One input of each side (square, plus the 464 x 512 of a lung1 body pass) on onnxruntime's
CPU provider with the threads ``OMP_NUM_THREADS`` names (else one per core): milliseconds
per pass and thousands of pixels per second.  Body coverage costs what its passes' pixels
cost at that rate: only fewer pixels or a cheaper U-Net make it faster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from btd_core.engine.scorer import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sizes", default="96,128,192,256,320,384,448,512")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scorer = Scorer(args.model, provider="cpu")
    shapes = [(int(s), int(s)) for s in args.sizes.split(",")] + [(464, 512)]
    rng = np.random.default_rng(0)
    print(f"{args.model.name}, {scorer.provider_in_use}, side multiple {scorer.card.side_multiple}")
    print("| pass, px | ms per pass | kpx/s |")
    print("|---|---|---|")
    for rows, columns in shapes:
        if not scorer.accepts(rows, columns):
            continue
        x = rng.uniform(0.2, 0.8, (1, rows, columns)).astype(np.float32)
        scorer.score(x)  # first call of a shape: onnxruntime plans it
        start = time.perf_counter()
        for _ in range(args.runs):
            scorer.score(x)
        seconds = (time.perf_counter() - start) / args.runs
        rate = rows * columns / seconds / 1e3
        print(f"| {rows} x {columns} | {1000 * seconds:.0f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
