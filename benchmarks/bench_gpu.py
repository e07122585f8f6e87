"""Scoring speed on a GPU, side by side in one run, with the fast paths' fidelity.

Anchor: upstream's way, PyTorch eager fp32 ``GaussianDiffusion.p_sample(x, 0)``.
Against it: the ONNX scorer on onnxruntime's CUDA provider in each precision
(``btd-export --precision fp32 | fp16``) and with the engine's options
(CUDA graph, NHWC, cuDNN search), at several batch sizes; each figure also as a
share of the H200's arithmetic limit (~790 TFLOP/s dense bf16 / 9.04 GFLOP per
96 x 96 patch ~ 87,000 patches/s; 16.1 GFLOP per 128 x 128 patch ~ 49,000).

Fidelity: real CT slices (varied by flips, shifts and planted noise blocks of several
sizes), tiled as ``btd scan`` tiles them, scored by PyTorch fp32 (TF32 off: the
reference) and by every ONNX variant; printed: max relative tile-score error and the
Spearman rank correlation of slice scores (max tile) against the reference.

The 96 px weights are the method's U-Net trained briefly on real CT crops on the GPU
(``--train-steps``), so that residuals have real structure; 128 px weights are random
(speed does not depend on the weights).  Throughput is end to end from host numpy
arrays (copies to and from the GPU included), scores only.

    python benchmarks/bench_gpu.py --out results/      # on a CUDA machine
    python benchmarks/bench_gpu.py --device cpu --quick  # checks the script on a CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIMIT_PATCHES_PER_S = {96: 790e12 / 9.04e9, 128: 790e12 / 16.1e9}
"""H200 dense bf16 arithmetic limit, patches per second, by patch size."""


def log(record: dict, sink: Path | None) -> None:
    print(json.dumps(record), flush=True)
    if sink is not None:
        with sink.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def throughput(run: Callable[[], object], batch: int, min_seconds: float, sync) -> float:
    """Median patches/s over timed rounds (>= 3, >= ``min_seconds``) after two warm-ups."""
    run()
    run()
    sync()
    times: list[float] = []
    while sum(times) < min_seconds or len(times) < 3:
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def real_slices(data: Path | None) -> list[np.ndarray]:
    """Real 512 x 512 CT slices windowed to [0, 1]: head (693_UNCI) and abdomen (JPEG 2000)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from btd_core.slices.profiles import CT

    slices = []
    if data is not None and (data / "693_UNCI.dcm").exists():
        head = pydicom.dcmread(data / "693_UNCI.dcm")
        slices.append(CT.to_unit_range(apply_modality_lut(head.pixel_array, head)))
        abdomen = data / "abdomen_hu.npy"
        if abdomen.exists():
            slices.append(CT.to_unit_range(np.load(abdomen).astype(np.float32)))
        return slices
    from pydicom.data import get_testdata_file

    for name in ("693_UNCI.dcm", "explicit_VR-UN.dcm"):
        dataset = pydicom.dcmread(get_testdata_file(name))
        slices.append(CT.to_unit_range(apply_modality_lut(dataset.pixel_array, dataset)))
    return slices


def varied_slices(sources: list[np.ndarray], count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` different slices: flips, shifts, and noise blocks of 8-48 px on half of them."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        image = sources[index % len(sources)].copy()
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = np.roll(image, (int(rng.integers(-40, 40)), int(rng.integers(-40, 40))), (0, 1))
        if index % 2:
            size = int(rng.integers(8, 49))
            y, x = (int(v) for v in rng.integers(150, 350, 2))
            image[y : y + size, x : x + size] = rng.uniform(0.1, 0.9, (size, size))
        out.append(np.ascontiguousarray(image, dtype=np.float32))
    return out


def train_texture(size: int, steps: int, device: str, sources: list[np.ndarray]):
    """The method's diffusion, trained ``steps`` Adam steps on real CT crops (t in [0, 100))."""
    import torch

    from btd_core.model.diffusion import build_diffusion

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    diffusion = build_diffusion(size).to(device)
    if steps <= 0:
        return diffusion.eval()
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=1e-3)
    for step in range(steps):
        image = sources[step % len(sources)]
        starts = rng.integers(0, 512 - size, (32, 2))
        crops = np.stack([image[y : y + size, x : x + size] for y, x in starts])[:, None]
        x0 = torch.from_numpy(crops).to(device) * 2 - 1
        loss = diffusion.p_losses(x0, torch.randint(0, 100, (32,), device=device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return diffusion.eval()


def export_variants(diffusion, size: int, folder: Path) -> dict[str, Path]:
    """fp32 through btd-export's own export (parity checked), then the other precisions."""
    import onnx
    import torch

    from export.onnx_export import export_scorer
    from export.precision import apply_precision

    checkpoint = folder / f"bench_{size}.pt"
    state = {k: v.detach().cpu() for k, v in diffusion.state_dict().items()}
    modality = "ct" if size == 96 else "mri"
    torch.save({"model": state, "step": 0, "version": "1.8.3"}, checkpoint)
    fp32 = export_scorer(checkpoint, folder / f"bench_{size}_fp32.onnx", modality=modality)
    print(f"export {size}px fp32: {fp32.seconds:.1f} s; {fp32.parity.describe()}", flush=True)
    paths = {"fp32": fp32.path}
    model = onnx.load(str(fp32.path))
    for precision in ("fp16",):
        try:
            variant = apply_precision(model, precision)
            _set_card_precision(variant, precision)
            path = folder / f"bench_{size}_{precision}.onnx"
            onnx.save_model(variant, str(path))
            paths[precision] = path
        except Exception as err:  # report and go on with the other variants
            print(f"precision {precision} failed: {type(err).__name__}: {err}", flush=True)
    return paths


def _set_card_precision(model, precision: str) -> None:
    for entry in model.metadata_props:
        if entry.key == "btd.precision":
            entry.value = precision
            return
    model.metadata_props.add(key="btd.precision", value=precision)


def tiles_of(images: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """All kept tiles of ``images`` as ``btd scan`` makes them, and each tile's slice index."""
    from btd_core.scoring.tiles import ScanSettings, select_tiles

    tiles, owner = [], []
    for index, image in enumerate(images):
        tile_set = select_tiles(image, size, ScanSettings())
        tiles.append(tile_set.tiles)
        owner += [index] * len(tile_set.origins)
    return np.concatenate(tiles), np.asarray(owner)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def slice_scores(tile_scores: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    out = np.full(count, -np.inf)
    np.maximum.at(out, owner, tile_scores)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[512, 256],
        help="batch sizes, capped at the CUDA limit per patch size (every option at the first)",
    )
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--fidelity-slices", type=int, default=40)
    parser.add_argument("--data", type=Path, help="folder with 693_UNCI.dcm and abdomen_hu.npy")
    parser.add_argument("--out", type=Path, help="folder for models and gpu.jsonl")
    parser.add_argument("--budget-s", type=float, default=330, help="stop measuring after this")
    parser.add_argument("--quick", action="store_true", help="short timings (script check)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()

    import onnxruntime as ort
    import torch

    from btd_core.engine.scorer import EngineOptions, Scorer, cuda_batch_limit
    from btd_core.model.residual import p_sample_residual

    cuda = args.device == "cuda"
    provider = "cuda" if cuda else "cpu"
    folder = args.out or Path("bench_gpu_out")
    folder.mkdir(parents=True, exist_ok=True)
    sink = folder / "gpu.jsonl"
    min_s = 0.5 if args.quick else 1.0
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    env = {
        "kind": "env",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
    }
    log(env, sink)
    sources = real_slices(args.data)
    rows = []
    fidelity_rows = []
    for size in args.sizes:
        steps = args.train_steps if size == 96 else 0
        t0 = time.perf_counter()
        diffusion = train_texture(size, steps, args.device, sources)
        log({"kind": "train", "size": size, "steps": steps, "s": time.perf_counter() - t0}, sink)
        paths = export_variants(diffusion, size, folder)
        limit = LIMIT_PATCHES_PER_S.get(size, float("nan"))
        base = np.stack(varied_slices(sources, 4))[:, None, :size, :size]
        limit_batch = cuda_batch_limit(size) if cuda else max(args.batches)
        batches = list(dict.fromkeys(min(b, limit_batch) for b in args.batches))
        for batch in batches:
            if time.perf_counter() - started > args.budget_s:
                break
            x = np.resize(base, (batch, 1, size, size)).astype(np.float32)
            tx = torch.from_numpy(x).to(args.device)
            for tf32, label in (
                (False, "PyTorch eager fp32 p_sample (upstream)"),
                (True, "PyTorch eager, TF32 convolutions (torch default)"),
            ):
                torch.backends.cudnn.allow_tf32 = tf32
                with torch.no_grad():
                    pps = throughput(partial(p_sample_residual, diffusion, tx), batch, min_s, sync)
                rows.append((size, batch, label, pps, limit))
                log(
                    {"kind": "speed", "size": size, "batch": batch, "path": label, "pps": pps}, sink
                )
            torch.backends.cudnn.allow_tf32 = True
            variants = [("fp32", EngineOptions()), ("fp16", EngineOptions())]
            if cuda and batch == batches[0]:
                variants += [
                    ("fp16", EngineOptions(cuda_graph=True)),
                    ("fp16", EngineOptions(cudnn_search="heuristic")),
                    ("fp16", EngineOptions(nhwc=True)),
                ]
            for precision, engine in variants:
                if precision not in paths or time.perf_counter() - started > args.budget_s:
                    continue
                label = f"ORT {provider} {precision} {_engine_label(engine)}"
                scorer = None
                try:
                    begin = time.perf_counter()
                    scorer = Scorer(
                        paths[precision], provider=provider, batch_size=batch, engine=engine
                    )
                    scorer.score(x[:1])
                    ready = time.perf_counter() - begin
                    pps = throughput(partial(scorer.score, x), batch, min_s, sync)
                except Exception as err:
                    log(
                        {"kind": "error", "size": size, "path": label, "error": str(err)[:400]},
                        sink,
                    )
                    continue
                finally:
                    del scorer
                    gc.collect()
                rows.append((size, batch, label, pps, limit))
                record = {"kind": "speed", "size": size, "batch": batch, "path": label}
                log({**record, "pps": pps, "session_ready_s": ready}, sink)
        if size == 96 and time.perf_counter() - started < args.budget_s:
            fidelity_rows += fidelity(diffusion, paths, sources, args, provider, sink)
    print_tables(rows, fidelity_rows)


def _engine_label(engine) -> str:
    parts = []
    if engine.cuda_graph:
        parts.append("+CUDA graph")
    if engine.nhwc:
        parts.append("+NHWC")
    if engine.cudnn_search:
        parts.append(f"+cuDNN {engine.cudnn_search}")
    return " ".join(parts)


def fidelity(diffusion, paths, sources, args, provider, sink) -> list[tuple]:
    """Tile and slice scores of every variant against PyTorch fp32 with TF32 off."""
    import torch

    from btd_core.engine.scorer import Scorer
    from btd_core.model.residual import p_sample_residual, reduce_residual

    images = varied_slices(sources, args.fidelity_slices, seed=1)
    tiles, owner = tiles_of(images, 96)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    reference = []
    with torch.no_grad():
        for start in range(0, len(tiles), 256):
            x = torch.from_numpy(tiles[start : start + 256, None]).to(args.device)
            reference.append(reduce_residual(p_sample_residual(diffusion, x), "mean_sq").cpu())
    ref = torch.cat(reference).numpy()
    torch.backends.cudnn.allow_tf32 = True
    ref_slices = slice_scores(ref, owner, len(images))
    rows = []
    for precision, path in paths.items():
        try:
            scores = Scorer(path, provider=provider, batch_size=256).score(tiles).scores
        except Exception as err:
            log({"kind": "error", "path": f"fidelity {precision}", "error": str(err)[:400]}, sink)
            continue
        rel = np.abs(scores - ref) / np.maximum(np.abs(ref), 1e-30)
        mine = slice_scores(scores, owner, len(images))
        slice_rel = np.abs(mine - ref_slices) / np.abs(ref_slices)
        record = {
            "kind": "fidelity",
            "precision": precision,
            "tiles": len(tiles),
            "slices": len(images),
            "max_rel_tile": float(rel.max()),
            "median_rel_tile": float(np.median(rel)),
            "max_rel_slice": float(slice_rel.max()),
            "spearman_slices": spearman(mine, ref_slices),
            "spearman_tiles": spearman(scores, ref),
            "same_top_slice": bool(np.argmax(mine) == np.argmax(ref_slices)),
        }
        log(record, sink)
        rows.append(record)
    return rows


def print_tables(rows: list[tuple], fidelity_rows: list[dict]) -> None:
    print()
    print("| patch | batch | path | patches/s | vs upstream | share of H200 limit |")
    print("|---|---|---|---|---|---|")
    anchors = {(s, b): p for s, b, label, p, _ in rows if "(upstream)" in label}
    for size, batch, label, pps, limit in rows:
        anchor = anchors.get((size, batch), float("nan"))
        print(
            f"| {size}x{size} | {batch} | {label} | {pps:,.0f} | {pps / anchor:.2f}x | "
            f"{100 * pps / limit:.1f} % |"
        )
    if fidelity_rows:
        print()
        print(
            "| precision | tiles | slices | max rel tile err | median rel tile err | "
            "max rel slice err | Spearman slices | Spearman tiles | same top slice |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in fidelity_rows:
            print(
                f"| {r['precision']} | {r['tiles']} | {r['slices']} | {r['max_rel_tile']:.2e} | "
                f"{r['median_rel_tile']:.2e} | {r['max_rel_slice']:.2e} | "
                f"{r['spearman_slices']:.5f} | {r['spearman_tiles']:.5f} | {r['same_top_slice']} |"
            )


if __name__ == "__main__":
    main()
