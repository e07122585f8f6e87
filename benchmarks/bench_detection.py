"""Detection quality of the score modes on real chest CT the model never saw.

Data: pyradiomics' ``lung1`` (a real chest CT, 512 x 512 x 48, with a labelled nodule
in slices 32-34; ``lung2`` of the same package is reserved and never used here).
Slices 0-23 train the model and its calibration; slices 24-47 are the test series.

1. Model: the method's U-Net, trained here with the library's ``p_losses`` on random
   crops of the training slices (``--train-steps``, ``--crop``; t in [0, 100), the
   low-noise end that the t = 0 score uses), exported by btd-export; or ``--model``
   with ``--checkpoint`` for one trained elsewhere (say on a GPU with ``btd train``).
2. Calibration on the training slices (``btd calibrate``'s own code path).
3. Tampering of the test slices by both of ``btd tamper``'s methods: copy-move, and
   diffusion inpainting (by default with the detector's own checkpoint: the attacker
   knows the model, the hardest case; ``--attacker`` names another), injection and
   removal, at three sizes, at random body locations, two per slice, method, kind and size.
4. Location known (the paper's protocol): AUROC of tampered vs the same location in
   the untouched slice, for (a) the paper's whole-patch mean of r^2 over the 96 px
   patch centred there, (b) the highest local-window mean r^2 in that patch, (c) the
   highest calibrated surprise of those windows, (d) the non-learned baseline: the
   highest local-window mean of the squared 3 x 3 median-filter residual.
5. Location unknown (an audit): each tampered slice is ranked among the genuine test
   slices by each mode's whole-slice score: median rank, top-1 and top-5 rates.
6. Real lesions: do the genuine slices with the labelled nodule rank as suspicious?
   AUROC of nodule slices vs the other genuine test slices (0.5: not singled out).

    python benchmarks/bench_detection.py --lung1 DIR    # DIR holds lung1_image.nrrd
    python benchmarks/bench_detection.py --lung1 DIR --keep MODELS   # keep the trained model
    python benchmarks/bench_detection.py --lung1 DIR --model M.onnx --checkpoint M.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btd_core.cli.tamper import tamperers_for
from btd_core.engine.scorer import Scorer
from btd_core.evaluation.metrics import auroc
from btd_core.scoring.calibration import Calibration, fit_calibration
from btd_core.scoring.strategy import SliceScore
from btd_core.scoring.tiles import ImageScores, ScanSettings, TileSet, score_tiles, select_tiles
from btd_core.scoring.windows import local_windows, median_residual
from btd_core.slices.profiles import CT
from btd_core.tamper.copy_move import KINDS, choose_location
from btd_core.tamper.labelled_set import METHODS

TRAIN_SLICES = range(0, 24)
TEST_SLICES = range(24, 48)
RADII = (6, 10, 14)
"""Tampered disc radii, px (12-28 px across plus a feathered edge)."""
MODES = ("a_patch_mean", "b_local", "c_calibrated", "d_highpass")
PATCH = 96


def load_lung1(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """HU volume [Z, H, W] float32 and nodule label [Z, H, W] bool from the NRRD files."""
    import nrrd

    image, _ = nrrd.read(str(folder / "lung1_image.nrrd"))
    label, _ = nrrd.read(str(folder / "lung1_label.nrrd"))
    return (
        np.ascontiguousarray(image.transpose(2, 1, 0), dtype=np.float32),
        np.ascontiguousarray(label.transpose(2, 1, 0) > 0),
    )


def train_model(slices: np.ndarray, steps: int, crop: int, folder: Path) -> tuple[Path, Path]:
    """Train the method's U-Net on crops of ``slices`` (windowed); export.

    Returns the ONNX scorer and the torch checkpoint it was exported from.
    """
    import torch

    from btd_core.model.diffusion import build_diffusion
    from export.onnx_export import export_scorer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [CT.to_unit_range(s) for s in slices]
    diffusion = build_diffusion(PATCH)
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=1e-3)
    started = time.perf_counter()
    for step in range(steps):
        image = images[step % len(images)]
        starts = rng.integers(0, image.shape[0] - crop, (16, 2))
        crops = np.stack([image[y : y + crop, x : x + crop] for y, x in starts])[:, None]
        loss = diffusion.p_losses(torch.from_numpy(crops) * 2 - 1, torch.randint(0, 100, (16,)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 200 == 0:
            print(f"  train step {step}: loss {loss.item():.4f}", flush=True)
    print(f"  trained {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    checkpoint = folder / "lung1_train.pt"
    torch.save(
        {
            "model": diffusion.state_dict(),
            "step": steps,
            "version": "1.8.3",
            "btd": {"modality": "ct", "description": f"bench_detection: {steps} steps"},
        },
        checkpoint,
    )
    return export_scorer(checkpoint, folder / "lung1_train.onnx", modality="ct").path, checkpoint


def slice_scores(
    scorer: Scorer, image: np.ndarray, settings: ScanSettings
) -> tuple[ImageScores, TileSet]:
    tiles = select_tiles(image, PATCH, settings)
    return score_tiles(tiles, scorer), tiles


def rescore_region(
    scorer: Scorer, image: np.ndarray, base: ImageScores, box: tuple[int, int, int, int]
) -> ImageScores:
    """``base`` with the tiles that overlap ``box`` (x0, y0, x1, y1) scored on ``image``."""
    x0, y0, x1, y1 = box
    touched = [
        i
        for i, (y, x) in enumerate(base.origins)
        if x < x1 and x0 < x + PATCH and y < y1 and y0 < y + PATCH
    ]
    if not touched:
        return base
    patches = np.stack(
        [image[base.origins[i][0] : base.origins[i][0] + PATCH,
               base.origins[i][1] : base.origins[i][1] + PATCH] for i in touched]
    )  # fmt: skip
    scored = scorer.score(patches, with_residuals=True)
    scores, residuals = base.scores.copy(), base.residuals.copy()
    scores[touched] = scored.scores
    residuals[touched] = scored.residuals
    return replace(base, scores=scores, residuals=residuals)


def whole_slice_modes(
    image: np.ndarray,
    scores: ImageScores,
    settings: ScanSettings,
    calibration: Calibration,
) -> dict[str, float]:
    """The slice score under each mode (the paper's mode: the highest tile mean)."""
    local = SliceScore.local(calibration.window, calibration.stride)
    calibrated = SliceScore(
        "calibrated", calibration.window, calibration.stride, calibration=calibration
    )
    local_verdict = local.judge("s", 0, image, scores)
    calibrated_verdict = calibrated.judge("s", 0, image, scores)
    return {
        "a_patch_mean": float(scores.scores.max()),
        "b_local": local_verdict.result.score if local_verdict else 0.0,
        "c_calibrated": calibrated_verdict.result.score if calibrated_verdict else -99.0,
        "d_highpass": highpass_score(image, calibration.window),
    }


def highpass_score(image: np.ndarray, window: int) -> float:
    energy = np.square(median_residual(image))
    covered = np.ones(image.shape, dtype=bool)
    windows = local_windows(image, energy, covered, window=window)
    worst = windows.worst(windows.energy)
    return worst[0] if worst else 0.0


def patch_modes(
    scorer: Scorer, image: np.ndarray, x: int, y: int, calibration: Calibration, window: int
) -> dict[str, float]:
    """Location known: the 96 px patch centred at (x, y), scored by each mode."""
    top, left = max(y - PATCH // 2, 0), max(x - PATCH // 2, 0)
    top, left = min(top, image.shape[0] - PATCH), min(left, image.shape[1] - PATCH)
    patch = image[top : top + PATCH, left : left + PATCH]
    scored = scorer.score(patch[None], with_residuals=True)
    energy = np.square(scored.residuals[0, 0])
    covered = np.zeros(patch.shape, dtype=bool)
    margin = window // 2  # the U-Net's zero padding inflates the residual at the border
    covered[margin:-margin, margin:-margin] = True
    windows = local_windows(patch, energy, covered, window=window)
    z = calibration.surprise(windows.energy, windows.intensity, windows.texture)
    high = local_windows(patch, np.square(median_residual(patch)), covered, window=window)
    return {
        "a_patch_mean": float(scored.scores[0]),
        "b_local": (windows.worst(windows.energy) or (0.0,))[0],
        "c_calibrated": (windows.worst(z) or (-99.0,))[0],
        "d_highpass": (high.worst(high.energy) or (0.0,))[0],
    }


def measure(
    scorer: Scorer,
    image: np.ndarray,
    original: np.ndarray,
    key: dict,
    calibration: Calibration,
    settings: ScanSettings,
    genuine_scores: ImageScores,
    others: list[dict[str, float]],
) -> tuple[list[dict], dict[str, int]]:
    """One tampering: both location-known rows, and its slice's rank under each mode."""
    x, y, radius = key["x"], key["y"], key["radius"]
    rows = []
    for label_value, source in ((1, image), (0, original)):
        modes = patch_modes(scorer, source, x, y, calibration, settings.window)
        rows.append({**key, "label": label_value, **modes})
    reach = radius + int(max(radius / 3, 2)) + 1
    if key["method"] == "diffusion":
        reach = PATCH // 2 + 1  # the inpainted patch is blended back whole
    box = (x - reach, y - reach, x + reach, y + reach)
    rescored = rescore_region(scorer, image, genuine_scores, box)
    modes = whole_slice_modes(image, rescored, settings, calibration)
    ranks = {f"rank_{m}": 1 + sum(v[m] >= modes[m] for v in others) for m in MODES}
    return rows, ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lung1", type=Path, required=True, help="folder with lung1_*.nrrd")
    parser.add_argument("--model", type=Path, help="an ONNX scorer (default: train one here)")
    parser.add_argument("--checkpoint", type=Path, help="the .pt --model was exported from")
    parser.add_argument(
        "--attacker", type=Path, help="the .pt that inpaints (default: the detector's own)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--keep", type=Path, help="train into this folder and keep the model")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--crop", type=int, default=32, help="training crop side, px")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--locations", type=int, default=2, help="per slice, kind and size")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    volume, label = load_lung1(args.lung1)
    rng = np.random.default_rng(0)
    settings = ScanSettings()
    local = SliceScore.local(args.window)
    if "diffusion" in args.methods and args.model and not (args.attacker or args.checkpoint):
        parser.error("diffusion tampering with --model needs --checkpoint or --attacker")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model, checkpoint = args.model, args.checkpoint
        else:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            model, checkpoint = train_model(
                volume[list(TRAIN_SLICES)], args.train_steps, args.crop, folder
            )
        tamperers = tamperers_for(args.methods, args.attacker or checkpoint, CT)
        scorer = Scorer(model, provider="auto")
        print(f"model {model.name} on {scorer.provider_in_use}", flush=True)

        started = time.perf_counter()
        collected = []
        for index in TRAIN_SLICES:
            image = CT.to_unit_range(volume[index])
            scores, _ = slice_scores(scorer, image, settings)
            verdict = local.judge("s", index, image, scores)
            if verdict is None or verdict.windows is None:
                continue
            w = verdict.windows
            collected.append(
                np.column_stack([w.energy[w.valid], w.intensity[w.valid], w.texture[w.valid]])
            )
        table = np.concatenate(collected)
        calibration = fit_calibration(
            table[:, 0], table[:, 1], table[:, 2], model_sha256=scorer.model_sha256,
            window=args.window, stride=args.window // 2, slices=len(TRAIN_SLICES),
        )  # fmt: skip
        print(
            f"calibrated on {calibration.windows} windows of the training slices "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

        genuine: dict[int, dict[str, float]] = {}
        genuine_scores: dict[int, ImageScores] = {}
        for index in TEST_SLICES:
            image = CT.to_unit_range(volume[index])
            scores, _ = slice_scores(scorer, image, settings)
            genuine_scores[index] = scores
            genuine[index] = whole_slice_modes(image, scores, settings, calibration)
        print(f"scored {len(TEST_SLICES)} genuine test slices", flush=True)

        patch_rows, slice_rows = [], []
        for index in TEST_SLICES:
            hu = volume[index]
            original = CT.to_unit_range(hu)
            for method, tamper in tamperers.items():
                for kind in KINDS:
                    for radius in RADII:
                        for _ in range(args.locations):
                            try:
                                x, y = choose_location(hu, radius, rng)
                                tampering = tamper(hu, kind, x, y, radius, rng)
                            except ValueError:
                                continue
                            key = {"slice": index, "method": method, "kind": kind,
                                   "radius": radius, "x": x, "y": y}  # fmt: skip
                            rows, ranks = measure(
                                scorer, CT.to_unit_range(tampering.values), original, key,
                                calibration, settings, genuine_scores[index],
                                [genuine[j] for j in TEST_SLICES if j != index],
                            )  # fmt: skip
                            patch_rows.extend(rows)
                            slice_rows.append({**key, **ranks})
            print(f"  tampered slice {index}: {len(slice_rows)} tampered slices so far", flush=True)

    results = summarise(patch_rows, slice_rows, genuine, label)
    if args.out:
        args.out.write_text(json.dumps({"results": results, "patches": patch_rows,
                                        "slices": slice_rows}, indent=1))  # fmt: skip


def summarise(patch_rows, slice_rows, genuine, label) -> dict:
    out: dict = {"location_known": {}, "whole_slice": {}, "lesions": {}}
    methods = sorted({r["method"] for r in patch_rows})
    print()
    print("Location known: AUROC, tampered vs the same spot untouched (real chest CT, unseen)")
    print("| method | kind | disc radius px | pairs | (a) whole-patch mean | (b) local | "
          "(c) local calibrated | (d) high-pass baseline |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for method in (*methods, None):
        for kind in (*KINDS, None):
            for radius in (*RADII, None):
                if (method is None or kind is None) and radius is not None:
                    continue
                rows = [
                    r
                    for r in patch_rows
                    if (method is None or r["method"] == method)
                    and (kind is None or r["kind"] == kind)
                    and (radius is None or r["radius"] == radius)
                ]
                if not rows:
                    continue
                labels = np.array([r["label"] for r in rows])
                values = {m: auroc(labels, np.array([r[m] for r in rows])) for m in MODES}
                name = f"{method or 'all'}/{kind or 'all'}/{radius or 'all'}"
                out["location_known"][name] = values
                print(f"| {method or 'all'} | {kind or 'all'} | {radius or 'all'} | "
                      f"{len(rows) // 2} | "
                      + " | ".join(f"{values[m]:.3f}" for m in MODES) + " |")  # fmt: skip
    print()
    print("Location unknown: rank of the tampered slice among the 24 genuine test slices")
    print("| method | radius px | tampered slices | mode | median rank | top-1 | top-5 |")
    print("|---|---|---|---|---|---|---|")
    for method in (*methods, None):
        for radius in (*RADII, None):
            rows = [
                r
                for r in slice_rows
                if (method is None or r["method"] == method)
                and (radius is None or r["radius"] == radius)
            ]
            if not rows or (method is None and radius is not None):
                continue
            for mode in MODES:
                ranks = np.array([r[f"rank_{mode}"] for r in rows])
                stats = {
                    "median_rank": float(np.median(ranks)),
                    "top1": float((ranks == 1).mean()),
                    "top5": float((ranks <= 5).mean()),
                }
                out["whole_slice"][f"{method or 'all'}/{radius or 'all'}/{mode}"] = stats
                print(f"| {method or 'all'} | {radius or 'all'} | {len(rows)} | {mode} | "
                      f"{stats['median_rank']:.1f} | {100 * stats['top1']:.0f} % | "
                      f"{100 * stats['top5']:.0f} % |")  # fmt: skip
    nodule = np.array([label[j].any() for j in TEST_SLICES])
    print()
    print(f"Real lesion: {nodule.sum()} genuine test slices hold the labelled nodule")
    print("| mode | AUROC nodule vs other genuine slices | ranks of the nodule slices (of 24) |")
    print("|---|---|---|")
    for mode in MODES:
        values = np.array([genuine[j][mode] for j in TEST_SLICES])
        order = (-values).argsort().argsort() + 1
        value = auroc(nodule.astype(int), values)
        out["lesions"][mode] = {"auroc": value, "ranks": order[nodule].tolist()}
        print(f"| {mode} | {value:.3f} | {', '.join(map(str, order[nodule]))} |")
    return out


if __name__ == "__main__":
    main()
