"""Patches per second: PyTorch eager ``p_sample(x, 0)`` (upstream's way) vs the ONNX scorer.

Both paths score the same real-looking patches with the same (seeded, random)
weights of the method's U-Net, in one run, interleaved, on this machine.  Also
prints the export's time and the ONNX file's size, and the process's peak
memory.  Needs the train extra.

    python benchmarks/bench_scoring.py            # 96 and 128 px, batch 1, 8, 32
    python benchmarks/bench_scoring.py --quick    # fewer repetitions
    python benchmarks/bench_scoring.py --levers   # also threads, optimisation level, fp16
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from btd_core.engine.scorer import EngineOptions, Scorer
from btd_core.model.diffusion import build_diffusion
from btd_core.model.residual import p_sample_residual
from btd_core.slices.profiles import CT, MRI
from export.onnx_export import export_scorer
from export.sample_patches import parity_patches


def patches_per_second(run: Callable[[], object], batch: int, min_seconds: float) -> float:
    """Median throughput: warm up once, then time rounds until ``min_seconds`` passed (>= 3)."""
    run()
    times: list[float] = []
    while sum(times) < min_seconds or len(times) < 3:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_levers(
    model: Path, base: np.ndarray, size: int, min_seconds: float
) -> list[tuple[int, str, float]]:
    """patches/s of the CPU engine options and of the fp16 file, batch 8."""
    import onnx

    from export.precision import apply_precision

    x = np.resize(base, (8, 1, size, size)).astype(np.float32)
    half = model.with_name(f"{model.stem}_fp16.onnx")
    onnx.save_model(apply_precision(onnx.load(str(model)), "fp16"), str(half))
    variants = [
        ("fp32, default (all optimisations, a thread per core)", model, EngineOptions()),
        ("fp32, 1 thread", model, EngineOptions(threads=1)),
        ("fp32, basic graph optimisations", model, EngineOptions(optimization="basic")),
        ("fp32, no graph optimisations", model, EngineOptions(optimization="disable")),
        ("fp16 file (casts inserted by onnxruntime)", half, EngineOptions()),
    ]
    out = []
    for label, path, engine in variants:
        scorer = Scorer(path, provider="cpu", batch_size=8, engine=engine)
        pps = patches_per_second(partial(scorer.score, x), 8, min_seconds)
        print(f"  {size}px {label}: {pps:.2f} patches/s", flush=True)
        out.append((size, label, pps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", choices=("ct", "mri"), nargs="+", default=["ct", "mri"])
    parser.add_argument("--quick", action="store_true", help="about 1 s per measurement")
    parser.add_argument(
        "--levers",
        action="store_true",
        help="also time the CPU levers: threads, graph optimisation level, fp16 file",
    )
    args = parser.parse_args()
    min_seconds = 1.0 if args.quick else 4.0
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {ort.__version__}, CPU"
    )
    rows = []
    levers: list[tuple[int, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in [CT if name == "ct" else MRI for name in args.sizes]:
            size = profile.patch_size
            diffusion = build_diffusion(size).eval()
            checkpoint = Path(tmp) / f"random_{size}.pt"
            torch.save({"model": diffusion.state_dict(), "step": 0, "version": "1.8.3"}, checkpoint)
            result = export_scorer(checkpoint, Path(tmp) / f"{size}.onnx", modality=profile.name)
            print(
                f"export {profile.name} {size}px: {result.seconds:.1f} s, "
                f"{result.size_bytes / 2**20:.1f} MiB; {result.parity.describe()}"
            )
            scorer = Scorer(result.path, provider="cpu", batch_size=max(args.batches))
            base = parity_patches(profile)
            for batch in args.batches:
                x = np.resize(base, (batch, 1, size, size)).astype(np.float32)
                tx = torch.from_numpy(x)
                eager = patches_per_second(
                    partial(p_sample_residual, diffusion, tx), batch, min_seconds
                )
                onnx = patches_per_second(partial(scorer.score, x), batch, min_seconds)
                rows.append((size, batch, eager, onnx))
                print(
                    f"  {size}px batch {batch:>3}: eager {eager:7.2f}  onnx {onnx:7.2f} patches/s"
                )
            if args.levers:
                levers.extend(cpu_levers(result.path, base, size, min_seconds))
    print()
    if levers:
        print("| patch | ONNX Runtime CPU variant (batch 8) | patches/s |")
        print("|---|---|---|")
        for size, label, pps in levers:
            print(f"| {size}x{size} | {label} | {pps:.2f} |")
        print()
    print()
    print(
        "| patch | batch | PyTorch eager p_sample (patches/s) "
        "| ONNX Runtime CPU (patches/s) | speed-up |"
    )
    print("|---|---|---|---|---|")
    for size, batch, eager, onnx in rows:
        print(f"| {size}x{size} | {batch} | {eager:.2f} | {onnx:.2f} | {onnx / eager:.2f}x |")
    print(f"\npeak RSS of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
