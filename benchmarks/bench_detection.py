"""Detection quality on real chest CT: edits in the lungs, location known and unknown.

Data: pyradiomics' ``lung1`` (a real chest CT, 512 x 512 x 48, 5 mm slices, with a
labelled nodule in slices 32-34; ``lung2`` of the same package is reserved for
independent evaluation and never used here).  Slices 0-23 train the model and its
calibration; slices 24-47 are the test series.

1. Model: the method's U-Net trained here on random crops of the training slices
   (``--train-steps``, ``--crop``), exported by btd-export; or ``--model`` (with
   ``--checkpoint`` for diffusion tampering) for one trained elsewhere.  A model whose
   training saw lung1 (the shared GPU model) measures in-sample: say so.
2. Calibration: ``btd calibrate``'s own code (:func:`calibrate_model`) on the training
   slices, written as one ``.npy`` series (so series context is fitted too).
3. Edits in the lungs, as CT-GAN attacks: ``btd tamper``'s methods (copy-move; and
   diffusion inpainting with ``--methods diffusion``), injection (a mass in aerated
   lung) and removal (a vessel or nodule covered with lung), at three radii, at random
   lung places, ``--locations`` per test slice, kind and radius; and 3-D edits (a ball
   over 3 consecutive slices, copy-move) for the series-level result.
4. Location known (the paper's protocol): AUROC of the 96 px patch centred on the
   edit against the same patch untouched.
5. Whole slice (location unknown), each score judged as the product judges it (body
   mask, tiles, windows, calibration and series context through the same functions):
   paired lift rate (the edited slice scores above its own untouched original), rank
   of the edited slice in its series (the other 23 slices, their context recomputed
   with the edit in place), AUROC of edited slices against the genuine test slices,
   and whether the reported region lies on the edit.
6. Coverage and artefacts: the share of lung parenchyma pixels inside a scorable window,
   and the share of genuine slices whose worst region touches the image border or
   leaves the body.  Real lesion: the rank of the nodule slices among genuine slices.

    python benchmarks/bench_detection.py --lung1 ~/.cache/btd/pyradiomics --keep M
    python benchmarks/bench_detection.py --lung1 DIR --model M.onnx --checkpoint M.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btd_core.audit.calibrate import calibrate_model
from btd_core.cli.tamper import tamperers_for
from btd_core.engine.scorer import Scorer
from btd_core.evaluation.metrics import auroc
from btd_core.scoring.calibration import Calibration
from btd_core.scoring.series_context import SeriesContext
from btd_core.scoring.strategy import (
    TISSUE_WEIGHT,
    ContextScore,
    LocalScore,
    SliceVerdict,
    TileScore,
    WindowVerdict,
    calibrated_score,
)
from btd_core.scoring.tiles import (
    COVERAGES,
    Coverage,
    ImageScores,
    ScanSettings,
    TileSet,
    score_image,
    score_tiles,
)
from btd_core.scoring.windows import local_windows, median_residual
from btd_core.slices.profiles import CT
from btd_core.slices.regions import region_inputs
from btd_core.tamper.copy_move import (
    KINDS,
    choose_location,
    copy_move_stack,
    lung_mask,
    round_mask,
)

TRAIN_SLICES = range(0, 24)
TEST_SLICES = range(24, 48)
RADII = (6, 10, 14)
"""Edit disc radii, px (12-28 px across plus a feathered edge; 0.57 mm pixels)."""
STACK_RADII = (10, 14)
"""Radii of the 3-D edits (a ball over 3 slices)."""
MODES = ("tile", "local", "calibrated", "residual context", "pixel context", "default", "highpass")
"""tile: the paper's whole-patch mean; local: raw window energy; calibrated: tissue
surprise alone; residual context: the model's residual energy against the same windows
of the neighbouring slices, the tissue surprise weighted by :data:`TISSUE_WEIGHT` (the
default before image context); pixel context: the windows' pixels against the neighbours'
alone (:mod:`btd_core.scoring.image_context`); default: what ``btd scan`` runs (the
higher of the two context surprises per window); highpass: the non-learned baseline
(3 x 3 median residual in the same windows)."""
CONTEXT_MODES = ("residual context", "default")
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
    from btd_core.model.texture_fit import fit_texture, save_fitted
    from export.onnx_export import export_scorer

    def report(step: int, loss: float) -> None:
        if step % 200 == 0:
            print(f"  train step {step}: loss {loss:.4f}", flush=True)

    started = time.perf_counter()
    images = [CT.to_unit_range(s) for s in slices]
    diffusion = fit_texture(images, steps, crop, image_size=PATCH, seed=0, on_step=report)
    print(f"  trained {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    checkpoint = save_fitted(
        diffusion,
        folder / "lung1_train.pt",
        steps,
        btd={"modality": "ct", "description": f"bench_detection: {steps} steps"},
    )
    return export_scorer(checkpoint, folder / "lung1_train.onnx", modality="ct").path, checkpoint


@dataclass
class Judged:
    """One slice judged by every mode: own verdicts (before series context)."""

    scores: ImageScores
    verdicts: dict[str, SliceVerdict | None]
    highpass: tuple[float, int, int] | None


class Judge:
    """Judges slices the way ``btd scan`` does, for every mode of :data:`MODES`."""

    def __init__(
        self, scorer: Scorer, calibration: Calibration, window: int, tiles: Coverage = "auto"
    ) -> None:
        self.scorer = scorer
        self.settings = ScanSettings(tiles=tiles).resolved(scorer.card, calibration.tiles)
        stride = calibration.stride
        self.modes = {
            "tile": TileScore(),
            "local": LocalScore(window, stride),
            "calibrated": calibrated_score(calibration, window=window, context=False),
            "residual context": calibrated_score(calibration, window=window, image_context=False),
            "default": calibrated_score(calibration, window=window),
        }
        self.window, self.stride = window, stride

    def score(self, image: np.ndarray) -> ImageScores:
        return score_image(image, self.scorer, self.settings)

    def rescore(self, image: np.ndarray, base: ImageScores, box: tuple[int, ...]) -> ImageScores:
        """``base`` with the tiles overlapping ``box`` (x0, y0, x1, y1) scored on ``image``
        (the edit changes nothing else; the body mask is the untouched slice's).  In body
        coverage every tile of the pass sees the edit: the whole pass is scored again."""
        if base.passes is not None:
            tile_set = TileSet(
                base.origins, region_inputs(image, base.passes), base.tiles_skipped,
                base.tile_size, base.stride, base.body, base.passes,
            )  # fmt: skip
            return score_tiles(tile_set, self.scorer)
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
        scored = self.scorer.score(patches, with_residuals=True)
        scores, residuals = base.scores.copy(), base.residuals.copy()
        scores[touched] = scored.scores
        residuals[touched] = scored.residuals
        return replace(base, scores=scores, residuals=residuals)

    def judge(self, image: np.ndarray, scores: ImageScores) -> Judged:
        verdicts = {name: mode.judge("s", 0, image, scores) for name, mode in self.modes.items()}
        energy = np.square(median_residual(image))
        windows = local_windows(
            image, energy, np.ones(image.shape, bool), window=self.window, body=scores.body
        )
        return Judged(scores, verdicts, windows.worst(windows.energy))

    def final(
        self, series: dict[int, Judged], z: int, mode: str
    ) -> tuple[float, int, int, int] | None:
        """(score, x, y, size) of slice ``z`` of ``series`` under ``mode`` (the default
        with its neighbours), ``None`` when nothing of it was scored."""
        judged = series[z]
        if mode == "highpass":
            if judged.highpass is None:
                return None
            return (*judged.highpass, self.window)
        verdict = judged.verdicts["default" if mode == "pixel context" else mode]
        if verdict is None:
            return None
        if mode == "pixel context":
            return self.pixel_context(series, z, verdict)
        if mode in CONTEXT_MODES:
            verdict = self.context(series, mode).judged(z)
        r = verdict.result
        if r.window_x is None:
            return r.score, r.tile_x, r.tile_y, r.tile_size
        return r.score, r.window_x, r.window_y, r.window_size

    def context(self, series: dict[int, Judged], mode: str) -> SeriesContext:
        """The series context of ``series`` (slices by index) under ``mode``."""
        return SeriesContext(
            self.modes[mode], lambda q: series[q].verdicts[mode] if q in series else None
        )

    def pixel_context(
        self, series: dict[int, Judged], z: int, verdict: SliceVerdict
    ) -> tuple[float, int, int, int] | None:
        """The image-context surprise alone: the worst window of slice ``z``."""
        mode = self.modes["default"]
        assert isinstance(mode, ContextScore) and isinstance(verdict, WindowVerdict)
        neighbours = self.context(series, "default").neighbours(z)
        if neighbours.one_sided and mode.calibration.judges_ends:
            return None  # a series' end is judged by its residual alone
        ratios = mode.image_disagreement(verdict, neighbours)
        if ratios is None:
            return None
        calibration = mode.calibration
        worst = verdict.windows.worst(calibration.image_context_surprise(ratios))
        return None if worst is None else (*worst, self.window)


def on_edit(place: tuple[float, int, int, int] | None, x: int, y: int, radius: int) -> bool:
    """Whether the reported box overlaps the edit's disc."""
    if place is None:
        return False
    _, bx, by, size = place
    nearest_x = min(max(x, bx), bx + size)
    nearest_y = min(max(y, by), by + size)
    return (nearest_x - x) ** 2 + (nearest_y - y) ** 2 <= radius * radius


def calibrate(
    volume: np.ndarray, model: Path, folder: Path, window: int, tiles: Coverage = "auto"
) -> Calibration:
    """``btd calibrate`` on the training slices, written as one .npy series (HU)."""
    genuine = folder / "genuine"
    genuine.mkdir(parents=True, exist_ok=True)
    np.save(genuine / "lung1_train.npy", volume[list(TRAIN_SLICES)])
    run = calibrate_model(
        genuine,
        model,
        folder / "calibration.json",
        provider="cpu",
        window=window,
        settings=ScanSettings(tiles=tiles),
    )
    return run.calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lung1", type=Path, required=True, help="folder with lung1_*.nrrd")
    parser.add_argument("--model", type=Path, help="an ONNX scorer (default: train one here)")
    parser.add_argument("--checkpoint", type=Path, help="the .pt --model was exported from")
    parser.add_argument(
        "--attacker", type=Path, help="the .pt that inpaints (default: the detector's own)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=("copy-move", "diffusion"), default=["copy-move"]
    )
    parser.add_argument("--keep", type=Path, help="train into this folder and keep the model")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--crop", type=int, default=32, help="training crop side, px")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument(
        "--tiles", choices=COVERAGES, default="auto", help="coverage (btd scan --tiles)"
    )
    parser.add_argument("--locations", type=int, default=2, help="per slice, kind and radius")
    parser.add_argument("--label", default="", help="what the model is, for the tables")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    volume, label = load_lung1(args.lung1)
    rng = np.random.default_rng(0)
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
        scorer = Scorer(model, provider="cpu")
        started = time.perf_counter()
        calibration = calibrate(volume, model, Path(tmp), args.window, args.tiles)
        print(
            f"model {model.name}; calibrated on {calibration.windows} windows of "
            f"{calibration.slices} training slices in {time.perf_counter() - started:.0f} s "
            f"(floor {calibration.energy_floor:.2e}, context spread "
            f"{calibration.context.spread if calibration.context else None})",
            flush=True,
        )
        judge = Judge(scorer, calibration, args.window, args.tiles)
        print(f"default: series context (residual, tissue weight {TISSUE_WEIGHT}, and pixels)",
              flush=True)  # fmt: skip
        started = time.perf_counter()
        genuine = {z: judge.judge(img, judge.score(img)) for z, img in _test_images(volume)}
        print(f"judged {len(genuine)} genuine test slices in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        results = {
            "model": args.label or model.name,
            "tiles": judge.settings.tiles,
            "coverage": coverage(judge, volume, genuine),
        }
        edits = single_edits(judge, volume, genuine, tamperers, rng, args.locations)
        edits += stack_edits(judge, volume, genuine, rng)
    results.update(summarise(judge, edits, genuine, label, results["coverage"]))
    if args.out:
        args.out.write_text(json.dumps({"results": results, "edits": edits}, indent=1))


def _test_images(volume: np.ndarray):
    for z in TEST_SLICES:
        yield z, CT.to_unit_range(volume[z])


def coverage(judge: Judge, volume: np.ndarray, genuine: dict[int, Judged]) -> dict:
    """Lung pixels inside a scorable window; genuine worst regions on the border or
    outside the body (default score)."""
    lung_total = lung_scored = border = outside = judged = 0
    for z, item in genuine.items():
        lung = lung_mask(volume[z])
        verdict = item.verdicts["default"]
        scorable = np.zeros(lung.shape, bool)
        if isinstance(verdict, WindowVerdict):
            w = verdict.windows
            for row, y in enumerate(w.ys):
                for col, x in enumerate(w.xs):
                    if w.valid[row, col]:
                        scorable[y : y + w.window, x : x + w.window] = True
        lung_total += int(lung.sum())
        lung_scored += int((lung & scorable).sum())
        place = judge.final(genuine, z, "default")
        if place is None:
            continue
        judged += 1
        _, x, y, size = place
        height, width = lung.shape
        border += x <= 0 or y <= 0 or x + size >= width or y + size >= height
        body = item.scores.body
        outside += body is not None and not body[y : y + size, x : x + size].all()
    return {
        "lung_pixels": lung_total,
        "lung_share_scorable": lung_scored / max(lung_total, 1),
        "genuine_slices": judged,
        "worst_on_border": border,
        "worst_outside_body": outside,
    }


def _series_finals(judge: Judge, series: dict[int, Judged]) -> dict[str, dict[int, float]]:
    finals: dict[str, dict[int, float]] = {}
    for mode in MODES:
        finals[mode] = {}
        for z in series:
            place = judge.final(series, z, mode)
            finals[mode][z] = place[0] if place else -np.inf
    return finals


def single_edits(judge, volume, genuine, tamperers, rng, locations) -> list[dict]:
    """Single-slice edits in the lungs, every method, kind and radius."""
    rows = []
    genuine_finals = _series_finals(judge, genuine)
    started = time.perf_counter()
    for z in TEST_SLICES:
        hu = volume[z]
        for method, tamper in tamperers.items():
            for kind in KINDS:
                for radius in RADII:
                    for _ in range(locations):
                        try:
                            x, y = choose_location(hu, radius, rng, place="lung", kind=kind)
                            done = tamper(hu, kind, x, y, radius, rng)
                        except ValueError:
                            continue
                        image = CT.to_unit_range(done.values)
                        rows.append(
                            measure(judge, genuine, genuine_finals, {z: (image, done.mask)},
                                    {"slice": z, "method": method, "kind": kind, "depth": 1,
                                     "radius": radius, "x": x, "y": y}, hu)
                        )  # fmt: skip
                        if kind == "removal" and 0 < z < len(volume) - 1:
                            rows[-1]["removed_in_neighbours"] = removed_in_neighbours(
                                volume, z, x, y, radius
                            )
        print(f"  edited slice {z}: {len(rows)} edits ({time.perf_counter() - started:.0f} s)",
              flush=True)  # fmt: skip
    return rows


def removed_in_neighbours(volume: np.ndarray, z: int, x: int, y: int, radius: int) -> float:
    """Of what a removal at column x, row y of slice ``z`` takes away (the windowed
    original inside the edit's disc), the share that both neighbouring slices hold at the
    same pixels (their pixel-wise minimum): what series context can see of it, [0, 1]."""
    disc = round_mask(volume[z].shape, x, y, radius, feather=max(radius / 3, 2.0)) > 0.5
    removed = CT.to_unit_range(volume[z])[disc].sum()
    both = np.minimum(CT.to_unit_range(volume[z - 1]), CT.to_unit_range(volume[z + 1]))[disc]
    return float(both.sum() / removed) if removed > 0 else 0.0


def stack_edits(judge, volume, genuine, rng) -> list[dict]:
    """3-D copy-move edits: a ball over 3 consecutive slices (its centre slice at z)."""
    rows = []
    genuine_finals = _series_finals(judge, genuine)
    for z in list(TEST_SLICES)[1:-1]:
        for kind in KINDS:
            for radius in STACK_RADII:
                try:
                    x, y = choose_location(volume[z], radius, rng, place="lung", kind=kind)
                    done = copy_move_stack([volume[q] for q in (z - 1, z, z + 1)], kind, x, y,
                                           radius, rng)  # fmt: skip
                except ValueError:
                    continue
                edited = {
                    q: (CT.to_unit_range(t.values), t.mask)
                    for q, t in zip((z - 1, z, z + 1), done, strict=True)
                }
                rows.append(
                    measure(judge, genuine, genuine_finals, edited,
                            {"slice": z, "method": "copy-move", "kind": kind, "depth": 3,
                             "radius": radius, "x": x, "y": y}, volume[z])
                )  # fmt: skip
    return rows


def measure(judge, genuine, genuine_finals, edited, key, hu) -> dict:
    """Whole-slice and located results of one edit (``edited``: slice -> (image, mask))."""
    x, y, radius = key["x"], key["y"], key["radius"]
    series = dict(genuine)
    for q, (image, mask) in edited.items():
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        series[q] = judge.judge(image, judge.rescore(image, genuine[q].scores, box))
    row = dict(key)
    for mode in MODES:
        finals = {z: genuine_finals[mode][z] for z in genuine}
        for q in range(min(edited) - 2, max(edited) + 3):
            if q in series:
                place = judge.final(series, q, mode)
                finals[q] = place[0] if place else -np.inf
        best = max(edited, key=lambda q: finals[q])
        others = [finals[q] for q in finals if q not in edited]
        centre = key["slice"]
        row[f"{mode}_score"] = finals[centre]
        row[f"{mode}_lift"] = bool(finals[centre] > genuine_finals[mode][centre])
        row[f"{mode}_rank"] = 1 + sum(v >= finals[best] for v in others)
        row[f"{mode}_on_edit"] = on_edit(judge.final(series, centre, mode), x, y, radius)
    row["located"] = located(judge, edited[key["slice"]][0], CT.to_unit_range(hu), x, y)
    return row


def located(judge: Judge, image: np.ndarray, original: np.ndarray, x: int, y: int) -> dict:
    """The paper's protocol: the 96 px patch centred on the edit, edited and untouched,
    scored by the whole-patch mean, the calibrated windows and the high-pass baseline."""
    top = int(np.clip(y - PATCH // 2, 0, image.shape[0] - PATCH))
    left = int(np.clip(x - PATCH // 2, 0, image.shape[1] - PATCH))
    out = {}
    for name, source in (("edited", image), ("genuine", original)):
        patch = source[top : top + PATCH, left : left + PATCH]
        scored = judge.scorer.score(patch[None], with_residuals=True)
        scores = ImageScores([(0, 0)], scored.scores, scored.residuals, 0, PATCH, PATCH)
        verdict = judge.modes["calibrated"].judge("p", 0, patch, scores)
        high = local_windows(patch, np.square(median_residual(patch)), np.ones_like(patch, bool),
                             window=judge.window)  # fmt: skip
        out[name] = {
            "tile": float(scored.scores[0]),
            "calibrated": verdict.result.score if verdict else float("-inf"),
            "highpass": (high.worst(high.energy) or (0.0,))[0],
        }
    return out


def summarise(judge, edits, genuine, label, cover) -> dict:
    out: dict = {"whole_slice": {}, "located": {}, "lesion": {}}
    genuine_finals = _series_finals(judge, genuine)
    print()
    print(f"Coverage: {100 * cover['lung_share_scorable']:.1f} % of {cover['lung_pixels']} "
          f"lung pixels lie in a scorable window; of {cover['genuine_slices']} genuine slices, "
          f"{cover['worst_on_border']} have their worst region on the image border and "
          f"{cover['worst_outside_body']} outside the body")  # fmt: skip
    print()
    print(
        "Whole slice (location unknown), each mode: paired lift rate | median rank in the "
        "series of 24 | top-5 rate | AUROC vs the 24 genuine slices | region on the edit"
    )
    print("| method | kind | depth | radius px | edits | " + " | ".join(MODES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(MODES))
    groups = sorted({(e["method"], e["kind"], e["depth"], e["radius"]) for e in edits})
    groups += sorted({(e["method"], e["kind"], e["depth"], None) for e in edits})
    for method, kind, depth, radius in groups:
        rows = [e for e in edits if (e["method"], e["kind"], e["depth"]) == (method, kind, depth)
                and (radius is None or e["radius"] == radius)]  # fmt: skip
        cells, stats = [], {}
        for mode in MODES:
            ranks = np.array([r[f"{mode}_rank"] for r in rows])
            values = np.array([r[f"{mode}_score"] for r in rows])
            negatives = np.array(list(genuine_finals[mode].values()))
            labels = np.r_[np.ones(len(values)), np.zeros(len(negatives))]
            both = np.nan_to_num(np.r_[values, negatives], neginf=-1e9)
            stats[mode] = {
                "lift": float(np.mean([r[f"{mode}_lift"] for r in rows])),
                "median_rank": float(np.median(ranks)),
                "top5": float(np.mean(ranks <= 5)),
                "auroc": auroc(labels, both),
                "on_edit": float(np.mean([r[f"{mode}_on_edit"] for r in rows])),
            }
            s = stats[mode]
            cells.append(
                f"{100 * s['lift']:.0f} % / {s['median_rank']:.0f} / {100 * s['top5']:.0f} % / "
                f"{s['auroc']:.2f} / {100 * s['on_edit']:.0f} %"
            )
        name = f"{method}/{kind}/{depth}/{radius or 'all'}"
        out["whole_slice"][name] = stats
        print(f"| {method} | {kind} | {depth} | {radius or 'all'} | {len(rows)} | "
              + " | ".join(cells) + " |")  # fmt: skip
    print()
    print("Location known (the paper's protocol): AUROC, the 96 px patch on the edit vs untouched")
    print("| method | kind | edits | whole-patch mean | calibrated windows | high-pass baseline |")
    print("|---|---|---|---|---|---|")
    for method, kind in sorted({(e["method"], e["kind"]) for e in edits if e["depth"] == 1}):
        rows = [e for e in edits if (e["method"], e["kind"], e["depth"]) == (method, kind, 1)]
        labels = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
        values = {}
        for mode in ("tile", "calibrated", "highpass"):
            both = [r["located"]["edited"][mode] for r in rows]
            both += [r["located"]["genuine"][mode] for r in rows]
            values[mode] = auroc(labels, np.nan_to_num(np.array(both), neginf=-1e9))
        out["located"][f"{method}/{kind}"] = values
        print(f"| {method} | {kind} | {len(rows)} | {values['tile']:.2f} | "
              f"{values['calibrated']:.2f} | {values['highpass']:.2f} |")  # fmt: skip
    shares = [e["removed_in_neighbours"] for e in edits if "removed_in_neighbours" in e]
    if shares:
        out["removed_in_neighbours"] = float(np.median(shares))
        print()
        print(f"Removals: of what a removal takes away, both neighbouring slices hold "
              f"{100 * np.median(shares):.0f} % at the same pixels (median of {len(shares)}; "
              f"quartiles {100 * np.quantile(shares, 0.25):.0f}-"
              f"{100 * np.quantile(shares, 0.75):.0f} %): what series context can see")  # fmt: skip
    nodule = [z for z in TEST_SLICES if label[z].any()]
    print()
    print(
        f"Real lesion: the labelled nodule lies in slices {nodule}; their ranks among the "
        f"{len(genuine)} genuine test slices (top 10 % = ranks 1-{max(1, len(genuine) // 10)})"
    )
    for mode in MODES:
        values = genuine_finals[mode]
        order = sorted(values, key=lambda z: -values[z])
        ranks = [order.index(z) + 1 for z in nodule]
        out["lesion"][mode] = ranks
        print(f"  {mode}: {ranks}")
    return out


if __name__ == "__main__":
    main()
