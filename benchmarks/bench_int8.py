"""Static int8 scorers (onnxruntime ``quantize_static``, QDQ, per-channel) against fp32, on CPU.

An experiment, not a product path: can onnxruntime's static int8 quantiser speed the
scorer up on a CPU without changing what it finds?  From a fp32 scorer export it builds
int8 variants with ``quantize_static`` (QDQ format, per-channel int8 weights, uint8
activations), calibrated on 96 px tiles (stride 48, tiles with >= 5 % of pixels above
0.02) of the calibration slices of a real chest CT, then prints, side by side with fp32
in the same run:

- tiles/s on the CPU provider (batch 8, ``--threads`` intra-op threads, rounds
  interleaved over the models so that a busy machine slows all of them alike);
- parity on the parity slices, judged on the residual energy r^2 (the residual
  itself is ~7e-3 in model space): the Pearson correlation of log(r^2) averaged over
  24 px windows (stride 12) that lie inside the body, the Spearman rank correlation of
  the per-tile scores, the median ratio of window energies int8 / fp32 (with its 5th and
  95th percentiles), and on how many slices the highest 24 px window is the same.  log(r^2)
  needs a floor (see FLOOR: in aerated lung the fp32 residual is exactly 0), so the low
  windows (mostly lung) are also reported apart.

Variants (``--variants``): ``all`` quantises every Conv and MatMul; ``conv`` only the
convolutions; ``inner`` every Conv and MatMul except the first and last convolution and
the attention blocks (their to_qkv / to_out convolutions and all MatMuls), named in
``nodes_to_exclude``; ``deep`` as ``inner`` and also every convolution of the U-Net's
full-resolution level (only the coarser levels in int8).  Each with each calibration
method of ``--methods``; a method calibrates once per operator set and calibration set
(``calibration_cache_path`` in ``--out``), later variants and later runs reuse it.

With ``--dyn`` it also times a fp32 graph with dynamic spatial dimensions against its int8
variant (``--dyn-variant``, calibrated on the same tiles) on whole body crops of slices
(``--crop``, ``--crop-size`` 368 x 512 centred on the body, one image per run), with the
same window parity on each crop.

The int8 files keep the fp32 file's metadata (model card) as is and add
``btd.experiment.int8`` (the product knows no int8 precision; the card still says fp32).

    PYTHONPATH=$PWD python benchmarks/bench_int8.py --model ref.onnx --dyn dyn.onnx \\
        --volume ~/.cache/btd/pyradiomics/lung1_image.nrrd --out /tmp/int8 \\
        [--variants all conv inner deep] [--methods minmax percentile entropy] \\
        [--threads 2] [--parity-threads 1] [--calib-tiles 0] [--speed-tiles 200] \\
        [--parity-slices 1 3 ...] [--no-parity | --no-speed] [--extended] [--skip-main]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import CalibraterBase
from onnxruntime.quantization.shape_inference import quant_pre_process
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btd_core.scoring.windows import box_means
from btd_core.slices.body import body_region
from btd_core.slices.tiling import HeatMap, extract_tiles, tile_body_mask, tile_grid

TILE, STRIDE, MARGIN = 96, 48, 24
"""The scan's tiling: 96 px tiles every 48 px; heat maps drop 24 px along inner tile sides."""
LEVEL, FRACTION = 0.02, 0.05
"""A tile is scored (and used for calibration) with >= 5 % of its pixels above 0.02."""
WINDOW, WINDOW_STRIDE = 24, 12
"""Parity windows: the mean of r^2 over 24 px windows every 12 px, inside the body."""
BATCH = 8
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
VARIANTS = ("all", "conv", "inner", "deep")
QUANT_ARGS: dict[str, object] = {
    "quant_format": QuantFormat.QDQ,
    "per_channel": True,
    "activation_type": QuantType.QUInt8,
    "weight_type": QuantType.QInt8,
    "reduce_range": False,
}
"""The quantize_static arguments shared by every variant (the CPU has AVX-512 VNNI:
u8 activations x s8 weights, no range reduction, as onnxruntime's docstring advises)."""
EXTRA_OPTIONS: dict[str, object] = {"CalibStridedMinMax": 1}
"""Calibrate one batch at a time (the histogram calibrators otherwise hold every
intermediate tensor of every batch in memory)."""


def window_volume(path: Path) -> np.ndarray:
    """float32 [z, y, x] in [0, 1]: a NRRD CT volume (HU) in the model's window."""
    import nrrd

    hu, _ = nrrd.read(str(path))
    return np.clip((np.transpose(hu, (2, 1, 0)).astype(np.float32) + 700.0) / 2700.0, 0, 1)


def slice_tiles(image: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The scored tiles of one slice: their origins and pixels float32 [n, 96, 96]."""
    grid = tile_grid(*image.shape, TILE, STRIDE)
    keep = tile_body_mask(image, grid, LEVEL, FRACTION)
    origins = [origin for origin, kept in zip(grid.origins, keep, strict=True) if kept]
    return origins, extract_tiles(image, grid, keep)


class TileReader(CalibrationDataReader):
    """Calibration batches of 8 tiles; ``set_range`` lets quantize_static take them in strides."""

    def __init__(self, tiles: np.ndarray, input_name: str = "x") -> None:
        self.batches = [
            np.ascontiguousarray(tiles[i : i + BATCH, None]) for i in range(0, len(tiles), BATCH)
        ]
        self.input_name = input_name
        self.start, self.end = 0, len(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.batches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= self.end:
            return None
        self.start += 1
        return {self.input_name: self.batches[self.start - 1]}

    def rewind(self) -> None:
        self.start, self.end = 0, len(self.batches)


def limit_calibration_threads(threads: int) -> None:
    """quantize_static's calibrator opens its session with default options (a thread per
    core); give it ``threads`` intra-op threads instead, the optimisation level unchanged."""

    def create_inference_session(self: CalibraterBase) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        self.infer_session = ort.InferenceSession(
            self.augmented_model_path, sess_options=options, providers=self.execution_providers
        )

    CalibraterBase.create_inference_session = create_inference_session  # type: ignore[method-assign]


FULL_RESOLUTION = ("unet.downs.0.", "unet.ups.2.3.", "unet.ups.3.", "unet.final_res_block.")
"""Weight name prefixes of the convolutions that run at full resolution (``ups.2.3`` is the
last upsampling's convolution): the ``deep`` variant keeps them float."""


def excluded_nodes(model: onnx.ModelProto, variant: str) -> list[str]:
    """``nodes_to_exclude`` of a variant: for ``inner`` the first and last convolution and
    the attention blocks (convolutions reading a to_qkv / to_out weight, every MatMul);
    for ``deep`` also every convolution of the full-resolution level."""
    if variant not in ("inner", "deep"):
        return []
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    excluded = [convs[0].name, convs[-1].name]
    for node in model.graph.node:
        if node.name in excluded:
            continue
        attention = node.op_type == "MatMul" or (
            node.op_type == "Conv" and any(".to_qkv." in n or ".to_out" in n for n in node.input)
        )
        full = node.op_type == "Conv" and any(n.startswith(FULL_RESOLUTION) for n in node.input)
        if attention or (variant == "deep" and full):
            excluded.append(node.name)
    return excluded


def op_types(variant: str) -> list[str]:
    return ["Conv"] if variant == "conv" else ["Conv", "MatMul"]


@dataclass
class Built:
    name: str
    path: Path
    seconds: float
    calibrated: bool
    excluded: list[str]


def quantise(
    pre: Path,
    card: Sequence[onnx.StringStringEntryProto],
    out: Path,
    method: str,
    variant: str,
    reader: TileReader,
    tag: str,
    key: str,
) -> Built:
    """One int8 variant of the pre-processed fp32 file ``pre``; the card copied onto it.
    ``key`` names the fp32 file and calibration tiles in the calibration cache's name."""
    model = onnx.load(str(pre), load_external_data=False)
    excluded = excluded_nodes(model, variant)
    types = op_types(variant)
    cache = out / f"calib-{tag}-{key}-{method}-{'+'.join(types)}.json"
    calibrated = not cache.exists()
    path = out / f"{tag}-int8-{method}-{variant}.onnx"
    reader.rewind()
    start = time.perf_counter()
    quantize_static(
        str(pre),
        str(path),
        reader,
        op_types_to_quantize=types,
        nodes_to_exclude=excluded,
        calibrate_method=METHODS[method],
        calibration_cache_path=str(cache),
        extra_options=dict(EXTRA_OPTIONS),
        **QUANT_ARGS,  # type: ignore[arg-type]
    )
    seconds = time.perf_counter() - start
    quantised = onnx.load(str(path))
    note = {
        "tool": f"onnxruntime {ort.__version__} quantize_static",
        "calibrate_method": method,
        "op_types_to_quantize": types,
        "nodes_to_exclude": excluded,
        "calibration_batches": len(reader),
        **{key: str(value) for key, value in QUANT_ARGS.items()},
    }
    onnx.helper.set_model_props(
        quantised,
        {**{p.key: p.value for p in card}, "btd.experiment.int8": json.dumps(note)},
    )
    onnx.save_model(quantised, str(path))
    return Built(f"{method}-{variant}", path, seconds, calibrated, excluded)


def cache_key(model: Path, tiles: np.ndarray) -> str:
    """A short digest of the fp32 file and the calibration tiles: a calibration cache is
    reused only for the same model and the same tiles."""
    digest = hashlib.sha256(model.read_bytes())
    digest.update(np.ascontiguousarray(tiles).tobytes())
    return f"{len(tiles)}t-{digest.hexdigest()[:12]}"


def session(path: Path, threads: int, extended: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if extended:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def score_tiles(sess: ort.InferenceSession, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(residual float32 [n, 96, 96], score [n]) in batches of 8."""
    residuals, scores = [], []
    for i in range(0, len(tiles), BATCH):
        residual, score = sess.run(None, {"x": np.ascontiguousarray(tiles[i : i + BATCH, None])})
        residuals.append(residual[:, 0])
        scores.append(score)
    return np.concatenate(residuals), np.concatenate(scores)


@dataclass
class SliceResult:
    """One slice through one model: window energies (inside the body) and tile scores."""

    energies: np.ndarray
    scores: np.ndarray


def valid_windows(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """bool over the 24 px windows: wholly inside the body and covered by scored tiles."""
    inside = body_region(image, LEVEL) & covered
    share, _, _ = box_means(inside.astype(np.float32), WINDOW, WINDOW_STRIDE)
    return share >= 1.0 - 1e-9


def energy_windows(energy: np.ndarray) -> np.ndarray:
    return box_means(energy, WINDOW, WINDOW_STRIDE)[0]


def score_slice(sess: ort.InferenceSession, image: np.ndarray) -> tuple[SliceResult, np.ndarray]:
    """The slice's window energies (all windows) and tile scores, and its coverage."""
    origins, tiles = slice_tiles(image)
    residuals, scores = score_tiles(sess, tiles)
    heat = HeatMap(*image.shape, margin=MARGIN)
    for (y, x), residual in zip(origins, residuals, strict=True):
        heat.add(y, x, residual)
    return SliceResult(energy_windows(heat.values()), scores), heat.coverage()


FLOOR, LOW = 1e-3, 0.1
"""log(r^2) needs a floor: where x0_hat is clamped to -1 (aerated lung, windowed to 0) the
fp32 residual is exactly 0, so windows there can hold no energy at all.  Energies are
floored at FLOOR x the median fp32 window energy (30 dB below it); windows below LOW x
that median are the *low* windows (mostly lung), reported apart."""


@dataclass
class Parity:
    log_corr: float
    log_corr_tissue: float
    log_corr_min: float
    spearman: float
    ratio: float
    ratio_p5: float
    ratio_p95: float
    low_windows: float
    low_ratio: float
    top_same: int
    top_in_3: int
    slices: int
    score_ratio: float

    HEADER = (
        "log-corr windows | log-corr, fp32 >= 0.1 median | min per slice "
        "| Spearman tile scores | median window ratio (p5-p95) | low windows (share) "
        "| their median ratio | top window same (in fp32's top 3) | median score ratio"
    )

    def cells(self) -> str:
        return (
            f"{self.log_corr:.4f} | {self.log_corr_tissue:.4f} | {self.log_corr_min:.4f} | "
            f"{self.spearman:.4f} | {self.ratio:.3f} ({self.ratio_p5:.3f}-{self.ratio_p95:.3f}) | "
            f"{self.low_windows:.3f} | {self.low_ratio:.1f} | "
            f"{self.top_same}/{self.slices} ({self.top_in_3}/{self.slices}) | "
            f"{self.score_ratio:.3f}"
        )


def parity(
    reference: list[SliceResult], other: list[SliceResult], valid: list[np.ndarray]
) -> Parity:
    """The parity measures of ``other`` against ``reference`` over the slices (module doc)."""
    pairs = [
        (r.energies[v], o.energies[v]) for r, o, v in zip(reference, other, valid, strict=True)
    ]
    ref_e = np.concatenate([r for r, _ in pairs])
    oth_e = np.concatenate([o for _, o in pairs])
    median = float(np.median(ref_e))
    floor = FLOOR * median

    def log_corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(np.log(np.maximum(a, floor)), np.log(np.maximum(b, floor)))[0, 1])

    def rank_of_top(r: np.ndarray, o: np.ndarray) -> int:
        """Where the other model's highest window ranks among the fp32 windows (0: first)."""
        return int(np.count_nonzero(r > r[np.argmax(o)]))

    tops = [rank_of_top(r, o) for r, o in pairs]
    tissue = ref_e >= LOW * median
    ref_s = np.concatenate([r.scores for r in reference])
    oth_s = np.concatenate([o.scores for o in other])
    ratio = np.maximum(oth_e, floor) / np.maximum(ref_e, floor)
    return Parity(
        log_corr=log_corr(ref_e, oth_e),
        log_corr_tissue=log_corr(ref_e[tissue], oth_e[tissue]),
        log_corr_min=min(log_corr(r, o) for r, o in pairs),
        spearman=float(stats.spearmanr(ref_s, oth_s)[0]),
        ratio=float(np.median(ratio)),
        ratio_p5=float(np.percentile(ratio, 5)),
        ratio_p95=float(np.percentile(ratio, 95)),
        low_windows=float(np.mean(~tissue)),
        low_ratio=float(np.median(ratio[~tissue])) if (~tissue).any() else float("nan"),
        top_same=sum(rank == 0 for rank in tops),
        top_in_3=sum(rank < 3 for rank in tops),
        slices=len(pairs),
        score_ratio=float(np.median(oth_s / ref_s)),
    )


def timed_rounds(
    sessions: dict[str, ort.InferenceSession], batches: list[np.ndarray], rounds: int
) -> dict[str, list[float]]:
    """Seconds per round (all ``batches``) of each session; rounds interleaved over models."""
    for sess in sessions.values():
        sess.run(None, {"x": batches[0]})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            start = time.perf_counter()
            for batch in batches:
                sess.run(None, {"x": batch})
            times[name].append(time.perf_counter() - start)
    return times


def body_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [1, 1, height, width]: a crop centred on the body's bounding box, moved
    inside the image (zero-padded only where the image is smaller)."""
    ys, xs = np.nonzero(body_region(image, LEVEL))
    centre_y, centre_x = (int(ys.min()) + int(ys.max())) // 2, (int(xs.min()) + int(xs.max())) // 2
    y0 = min(max(centre_y - height // 2, 0), max(image.shape[0] - height, 0))
    x0 = min(max(centre_x - width // 2, 0), max(image.shape[1] - width, 0))
    crop = np.zeros((1, 1, height, width), dtype=np.float32)
    piece = image[y0 : y0 + height, x0 : x0 + width]
    crop[0, 0, : piece.shape[0], : piece.shape[1]] = piece
    return crop


def dyn_benchmark(
    args: argparse.Namespace, volume: np.ndarray, calib: np.ndarray, out: Path
) -> None:
    """fp32 dynamic-shape graph vs its int8 variant on whole body crops, one image per run."""
    method, variant = args.dyn_variant.split("-")
    pre = out / "dyn-pre.onnx"
    start = time.perf_counter()
    quant_pre_process(str(args.dyn), str(pre), skip_symbolic_shape=True)
    pre_s = time.perf_counter() - start
    card = list(onnx.load(str(args.dyn), load_external_data=False).metadata_props)
    built = quantise(
        pre, card, out, method, variant, TileReader(calib), "dyn", cache_key(args.dyn, calib)
    )
    print(
        f"\ndyn: pre-process {pre_s:.1f} s; quantize_static {built.name} {built.seconds:.1f} s "
        f"({'calibrated' if built.calibrated else 'cached calibration'})",
        flush=True,
    )
    crops = [body_crop(volume[z], *args.crop_size) for z in args.crop]
    paths = {"fp32": args.dyn, f"int8 {built.name}": built.path}
    # parity on each crop (1 thread): windows of the residual energy inside the body
    par = {name: session(path, args.parity_threads) for name, path in paths.items()}
    results: dict[str, list[SliceResult]] = {name: [] for name in par}
    valid = []
    for z, crop in zip(args.crop, crops, strict=True):
        image = crop[0, 0]
        for name, sess in par.items():
            residual, score = sess.run(None, {"x": crop})
            results[name].append(SliceResult(energy_windows(np.square(residual[0, 0])), score))
        valid.append(valid_windows(image, np.ones(image.shape, dtype=bool)))
        print(f"  crop of slice {z}: {image.shape[0]}x{image.shape[1]}", flush=True)
    del par
    names = list(paths)
    p = parity(results[names[0]], results[names[1]], valid)
    sessions = {name: session(path, args.threads) for name, path in paths.items()}
    for sess in sessions.values():
        sess.run(None, {"x": crops[0]})
    per_image: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.dyn_rounds):
        for crop in crops:
            for name, sess in sessions.items():
                start = time.perf_counter()
                sess.run(None, {"x": crop})
                per_image[name].append(time.perf_counter() - start)
    print(
        f"\n| dynamic graph, whole crop, 1 image/run, {args.threads} threads "
        "| s/image (median) | s/image (best) | speed-up (median) |"
    )
    print("|---|---|---|---|")
    base = float(np.median(per_image[names[0]]))
    for name in names:
        med, best = float(np.median(per_image[name])), min(per_image[name])
        print(f"| {name} | {med:.3f} | {best:.3f} | {base / med:.2f}x |")
    print(f"\ncrop parity (int8 vs fp32; Spearman over the crops' scores): {Parity.HEADER}")
    print(f"  {p.cells()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 scorer, fixed 96 px")
    parser.add_argument("--dyn", type=Path, help="fp32 graph with dynamic H, W (optional)")
    parser.add_argument("--volume", type=Path, required=True, help="chest CT NRRD (HU)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the int8 files")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:3]))
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=["minmax", "percentile"]
    )
    parser.add_argument("--calib-slices", type=int, nargs="+", default=list(range(0, 48, 4)))
    parser.add_argument("--parity-slices", type=int, nargs="+", default=list(range(1, 48, 2)))
    parser.add_argument(
        "--calib-tiles", type=int, default=0, help="use this many tiles, evenly spread (0: all)"
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for timing")
    parser.add_argument(
        "--parity-threads", type=int, default=1, help="intra-op threads for parity, calibration"
    )
    parser.add_argument("--speed-tiles", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per model")
    parser.add_argument("--dyn-variant", default="minmax-inner")
    parser.add_argument("--crop", type=int, nargs="+", default=[11, 25, 41], help="dyn slices")
    parser.add_argument("--crop-size", type=int, nargs=2, default=[368, 512], help="H W")
    parser.add_argument("--dyn-rounds", type=int, default=3)
    parser.add_argument("--skip-main", action="store_true", help="only the dynamic graph part")
    parser.add_argument("--no-parity", action="store_true", help="time only")
    parser.add_argument("--no-speed", action="store_true", help="parity only")
    parser.add_argument(
        "--extended",
        action="store_true",
        help="also time each int8 file at ORT_ENABLE_EXTENDED (no NHWC layout transposes)",
    )
    args = parser.parse_args()
    overlap = set(args.calib_slices) & set(args.parity_slices)
    if overlap:
        parser.error(f"calibration and parity slices overlap: {sorted(overlap)}")
    args.out.mkdir(parents=True, exist_ok=True)
    limit_calibration_threads(args.parity_threads)
    print(
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
        f"{os.cpu_count()} CPUs; timing with {args.threads} threads, parity and calibration "
        f"with {args.parity_threads}",
        flush=True,
    )
    volume = window_volume(args.volume)
    calib = np.concatenate([slice_tiles(volume[z])[1] for z in args.calib_slices])
    if 0 < args.calib_tiles < len(calib):
        calib = calib[np.linspace(0, len(calib) - 1, args.calib_tiles).round().astype(int)]
    print(
        f"calibration: {len(calib)} tiles of slices {args.calib_slices}; "
        f"parity slices {args.parity_slices}",
        flush=True,
    )
    if not args.skip_main:
        main_benchmark(args, volume, calib)
    if args.dyn is not None:
        dyn_benchmark(args, volume, calib, args.out)
    print(f"\npeak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main_benchmark(args: argparse.Namespace, volume: np.ndarray, calib: np.ndarray) -> None:
    out: Path = args.out
    pre = out / "ref-pre.onnx"
    start = time.perf_counter()
    quant_pre_process(str(args.model), str(pre), skip_symbolic_shape=True)
    print(f"quant_pre_process: {time.perf_counter() - start:.1f} s", flush=True)
    card = list(onnx.load(str(args.model), load_external_data=False).metadata_props)
    reader = TileReader(calib)
    key = cache_key(args.model, calib)
    # the Conv + MatMul variants first: their calibration cache serves the later ones
    order = sorted(args.variants, key=lambda v: (op_types(v) != ["Conv", "MatMul"], v))
    built: list[Built] = []
    for method in args.methods:
        for variant in order:
            b = quantise(pre, card, out, method, variant, reader, "ref", key)
            built.append(b)
            print(
                f"quantize_static {b.name}: {b.seconds:.1f} s "
                f"({'calibrated' if b.calibrated else 'cached calibration'}); "
                f"excluded {len(b.excluded)} nodes; {b.path.stat().st_size / 2**20:.1f} MiB",
                flush=True,
            )
    paths = {"fp32": args.model, **{f"int8 {b.name}": b.path for b in built}}

    parities: dict[str, Parity] = {}
    windows = tiles_scored = 0
    if not args.no_parity:
        # every model on every parity slice, --parity-threads threads
        results: dict[str, list[SliceResult]] = {name: [] for name in paths}
        valid: list[np.ndarray] = []
        for name, path in paths.items():
            start = time.perf_counter()
            sess = session(path, args.parity_threads)
            for z in args.parity_slices:
                result, covered = score_slice(sess, volume[z])
                results[name].append(result)
                if name == "fp32":
                    valid.append(valid_windows(volume[z], covered))
            print(f"parity pass {name}: {time.perf_counter() - start:.1f} s", flush=True)
        parities = {name: parity(results["fp32"], results[name], valid) for name in paths}
        windows = sum(int(v.sum()) for v in valid)
        tiles_scored = sum(len(r.scores) for r in results["fp32"])
        print(
            f"\nparity on {len(args.parity_slices)} slices ({windows} windows, "
            f"{tiles_scored} tiles) against fp32"
        )

    rates: dict[str, tuple[float, float, float]] = {}
    count = -(-args.speed_tiles // BATCH) * BATCH
    if not args.no_speed:
        # batch 8, >= speed_tiles tiles of the parity slices, rounds interleaved
        tiles = np.concatenate([slice_tiles(volume[z])[1] for z in args.parity_slices])
        tiles = np.resize(tiles, (count, TILE, TILE))
        batches = [np.ascontiguousarray(tiles[i : i + BATCH, None]) for i in range(0, count, BATCH)]
        timed = {name: (path, False) for name, path in paths.items()}
        if args.extended:
            timed.update({f"{n} (extended)": (p, True) for n, p in paths.items() if n != "fp32"})
        sessions = {name: session(path, args.threads, ext) for name, (path, ext) in timed.items()}
        times = timed_rounds(sessions, batches, args.rounds)
        base = float(np.median(times["fp32"]))
        for name, seconds in times.items():
            median = float(np.median(seconds))
            rates[name] = (count / median, count / min(seconds), base / median)
        print(
            f"\nspeed: {count} tiles, batch {BATCH}, {args.threads} threads, {args.rounds} rounds"
        )

    print(f"\n| model | tiles/s (median) | tiles/s (best) | speed-up | {Parity.HEADER} |")
    print("|---" * 13 + "|")
    for name in dict.fromkeys([*paths, *rates]):
        speed = "{:.2f} | {:.2f} | {:.2f}x".format(*rates[name]) if name in rates else "- | - | -"
        cells = parities[name].cells() if name in parities else " | ".join("-" * 9)
        print(f"| {name} | {speed} | {cells} |")
    print(
        "\nquantize_static(model_input, model_output, TileReader, "
        + ", ".join(f"{k}={v}" for k, v in QUANT_ARGS.items())
        + f", extra_options={EXTRA_OPTIONS}, calibration_cache_path=..., per variant:"
    )
    for b in built:
        method, variant = b.name.split("-")
        print(
            f"  {b.name}: op_types_to_quantize={op_types(variant)}, "
            f"calibrate_method={METHODS[method]}, nodes_to_exclude={b.excluded}"
        )


if __name__ == "__main__":
    main()
