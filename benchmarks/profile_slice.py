"""Where one slice's time goes in today's default ``btd scan``, stage by stage.

Real 512 x 512 chest CT slices (pyradiomics' lung1, ``benchmarks/fetch_lung1.py``) are
written as a DICOM series into a temporary folder.  The real ``btd calibrate`` calibrates
the model there on 12 other lung1 slices (unless ``--calibration`` names a calibration),
so that the default score (``--score auto``) is the calibrated one, with series and image
context when the calibration has them.  Each slice then goes through the scan's own
functions one stage at a time, called as ``btd_core/audit/pipeline.py`` calls them:

- DICOM decode: ``btd_core.study.pixels.read_slice``
- windowing: ``btd_core.slices.windowing.to_model_range``
- body mask: ``btd_core.slices.body.body_region`` (inside ``select_tiles``)
- tiling: ``btd_core.scoring.tiles.select_tiles`` (grid, ``select_body_tiles``), less its body mask
- ONNX scoring: ``Scorer.score(tiles, with_residuals=True)``
- energy map: ``ImageScores.energy_map`` (inside ``SliceScore.judge``)
- windows + judging: ``SliceScore.judge`` of the resolved default score, less its energy map
- series context: ``SeriesStream.push`` -> ``SliceScore.in_context``, less image context
- image context: ``WindowScore.image_disagreement`` (inside ``in_context``), when used
- overlay heat map: ``SliceVerdict.heat()`` of the slices the scan keeps for overlays

Nested stages are told apart by wrapping those functions for the run (their code is
unchanged); a stage's time excludes the stages timed inside it.  The profile runs the
stages one after another in one thread and scores each slice's tiles in its own
``Scorer.score`` call (the scan packs consecutive slices' tiles into full batches); the
first onnxruntime call is made before timing starts.

Then the real ``btd scan`` of the same study runs in a child process (same model,
calibration and onnxruntime threads, every other flag its default).  Its wall time per
slice less the sum of the stages is the row "other: threads, report, startup":
interpreter start and imports, discovery, opening the model, the first onnxruntime call,
the pipeline's reader threads and batching, ranking, overlays and the report files
(negative where the scan's reader threads ran stages alongside the scoring).  The
profile's slice scores are checked against the scan's ``findings.csv``.

    python benchmarks/fetch_lung1.py     # once: lung1 into ~/.cache/btd/pyradiomics
    python benchmarks/profile_slice.py --model ct.onnx --lung1 ~/.cache/btd/pyradiomics
    python benchmarks/profile_slice.py --model ct.onnx --lung1 DIR --slices 12 --threads 2 \\
        --calibration ct.onnx.calibration.json --json profile.json
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import btd_core.scoring.tiles as tiles_module
from benchmarks.bench_detection import load_lung1
from btd_core.engine.opening import open_scorer
from btd_core.engine.options import EngineOptions
from btd_core.engine.scorer import Scorer
from btd_core.findings.ranking import rank_key
from btd_core.scoring.series_context import Finished, SeriesStream
from btd_core.scoring.strategy import (
    ScoreRequest,
    SliceScore,
    SliceVerdict,
    WindowScore,
)
from btd_core.scoring.tiles import (
    COVERAGES,
    ImageScores,
    ScanSettings,
    score_tiles,
    select_tiles,
)
from btd_core.slices.windowing import modality_mismatch, to_model_range
from btd_core.study.discovery import discover
from btd_core.study.pixels import read_slice
from btd_core.study.records import Discovery
from tests.study_builder import write_hu_series

ROOT = Path(__file__).resolve().parents[1]
BTD = [sys.executable, "-m", "btd_core.cli.main"]
LUNG1_SLICES = 48
CALIBRATION_SLICES = range(0, 12)
"""The genuine lung1 slices ``btd calibrate`` is run on (never profiled)."""

DECODE = "DICOM decode (read_slice)"
WINDOWING = "windowing (to_model_range)"
BODY = "body mask (body_region)"
TILING = "tiling (select_tiles less body mask)"
ONNX = "ONNX scoring (score_tiles: Scorer.score, body passes cut into tiles)"
ENERGY = "energy map (ImageScores.energy_map)"
JUDGE = "windows + judging (judge less energy map)"
CONTEXT = "series context (in_context)"
IMAGE_CONTEXT = "image context (image_disagreement)"
HEAT = "overlay heat map (verdict.heat, kept)"
STAGES = (DECODE, WINDOWING, BODY, TILING, ONNX, ENERGY, JUDGE, CONTEXT, IMAGE_CONTEXT, HEAT)
OTHER = "other: threads, report, startup"

Key = tuple[str, int]
"""A slice: (series key, index in the series)."""
Function = TypeVar("Function", bound=Callable[..., Any])


class StageClock:
    """Time per stage and slice, each stage's time less that of the stages timed inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
        self.current: Key = ("", -1)
        self._nested: list[float] = []

    @contextmanager
    def stage(self, name: str, key: Key | None = None) -> Iterator[None]:
        """Time the block as ``name`` of slice ``key`` (default: :attr:`current`)."""
        key = key if key is not None else self.current
        self._nested.append(0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name][key] += elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def wrap(
        self, name: str, function: Function, key_of: Callable[..., Key] | None = None
    ) -> Function:
        """``function`` timed as ``name`` (of the slice ``key_of(*args)``, else :attr:`current`)."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name, key_of(*args) if key_of is not None else None):
                return function(*args, **kwargs)

        return timed  # type: ignore[return-value]

    def per_slice_ms(self, name: str, keys: list[Key]) -> list[float]:
        """The stage's milliseconds for each slice of ``keys`` (0 where it did not run)."""
        times = self.seconds.get(name, {})
        return [1000.0 * times.get(key, 0.0) for key in keys]


def _verdict_key(_score: SliceScore, verdict: SliceVerdict, *_: object) -> Key:
    return (verdict.result.series_key, verdict.result.slice_index)


def _write_dicom_series(folder: Path, hu: np.ndarray, seed: int) -> None:
    """Write [N, H, W] HU as one CT series, 5 mm apart, shuffled file names, on the header
    of pydicom-data's 693_UNCI.dcm (as ``benchmarks/same_reports.py`` does)."""
    from pydicom.uid import generate_uid

    names = np.random.default_rng(seed).permutation(10_000)[: len(hu)]
    write_hu_series(
        folder,
        hu,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_uid=lambda index: generate_uid(),
        file_name=lambda index: f"IM{names[index]:05d}",
    )


def _btd(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a ``btd`` command of this tree in a child process; its wall time and result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    # from a temporary folder: `python -m` puts the working directory first on sys.path
    done = subprocess.run([*BTD, *args], capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"btd {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done


def profile_slices(
    discovery: Discovery, scorer: Scorer, slice_score: SliceScore, settings: ScanSettings
) -> tuple[StageClock, list[Key], dict[Key, float]]:
    """Every slice of every fitting series through the scan's stages, timed.

    Returns the clock, the slices in study order and each judged slice's final score.
    """
    clock = StageClock()
    size = scorer.card.patch_size
    keys: list[Key] = []
    final: dict[Key, float] = {}
    kept: list[tuple[float, str, int]] = []  # rank keys of the views the scan keeps

    def finished(done: Finished[Key]) -> None:
        """What the scan does with a slice judged in context: keep its image and heat map
        while it is among the top ``settings.overlays`` so far (``_Run._keep_view``)."""
        if done.judged is None:
            return
        result = done.judged.result
        final[done.payload] = result.score
        key = rank_key(result)
        if settings.overlays <= 0 or (len(kept) >= settings.overlays and key >= max(kept)):
            return
        with clock.stage(HEAT, done.payload):
            done.judged.heat()
        if len(kept) >= settings.overlays:
            kept.remove(max(kept))
        kept.append(key)

    stream: SeriesStream[Key] = SeriesStream(slice_score, finished)
    with ExitStack() as patches:
        for target, name, stage, key_of in (
            (tiles_module, "body_region", BODY, None),
            (ImageScores, "energy_map", ENERGY, None),
            (type(slice_score), "in_context", CONTEXT, _verdict_key),
            (WindowScore, "image_disagreement", IMAGE_CONTEXT, _verdict_key),
        ):
            wrapped = clock.wrap(stage, getattr(target, name), key_of)
            patches.enter_context(mock.patch.object(target, name, wrapped))
        for series in discovery.series:
            if modality_mismatch(series, scorer.card.profile):
                continue
            for index, ref in enumerate(series.slices):
                key = clock.current = (series.key, index)
                keys.append(key)
                with clock.stage(DECODE):
                    pixels = read_slice(series, ref)
                with clock.stage(WINDOWING):
                    image = to_model_range(pixels, series, ref, scorer.card.profile)
                del pixels
                with clock.stage(TILING):
                    tile_set = select_tiles(image, size, settings, scorer.card.side_multiple)
                verdict = None
                if tile_set.origins:
                    with clock.stage(ONNX):
                        scores = score_tiles(tile_set, scorer)
                    with clock.stage(JUDGE):
                        verdict = slice_score.judge(series.key, index, image, scores)
                with clock.stage(CONTEXT):
                    stream.push(series, index, verdict, key)
        with clock.stage(CONTEXT):
            stream.flush()
    return clock, keys, final


def _scan_scores(report: Path) -> dict[int, float]:
    """slice index -> score from a scan's ``findings.csv`` (one series)."""
    with (report / "findings.csv").open(newline="") as fp:
        return {int(row["slice_index"]): float(row["score"]) for row in csv.DictReader(fp)}


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX scorer (btd-export)")
    parser.add_argument(
        "--lung1",
        type=Path,
        default=Path.home() / ".cache/btd/pyradiomics",
        help="folder with lung1_image.nrrd and lung1_label.nrrd (benchmarks/fetch_lung1.py)",
    )
    parser.add_argument("--slices", type=int, default=12, help="lung1 slices to profile (1-36)")
    parser.add_argument(
        "--threads", type=int, default=2, help="onnxruntime intra-op threads (default: 2)"
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="an existing calibration of the model (default: btd calibrate on 12 lung1 slices)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--tiles", choices=COVERAGES, default="auto", help="coverage (btd scan --tiles)"
    )
    args = parser.parse_args()
    if not 1 <= args.slices <= LUNG1_SLICES - len(CALIBRATION_SLICES):
        parser.error(f"--slices must be 1..{LUNG1_SLICES - len(CALIBRATION_SLICES)}")
    started = time.perf_counter()
    load_before = os.getloadavg()
    volume, _ = load_lung1(args.lung1)
    first = min(24, LUNG1_SLICES - args.slices)  # the mid-chest, past the calibration slices
    chosen = range(first, first + args.slices)
    threads = ["--threads", str(args.threads), "--tiles", args.tiles]
    fixed: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="btd-profile-") as tmp:
        folder = Path(tmp)
        study = folder / "study"
        _write_dicom_series(study / "chest", volume[chosen.start : chosen.stop], seed=1)
        calibration = args.calibration
        if calibration is None:
            genuine = folder / "genuine"
            cal_hu = volume[CALIBRATION_SLICES.start : CALIBRATION_SLICES.stop]
            _write_dicom_series(genuine / "chest", cal_hu, seed=2)
            calibration = folder / "calibration.json"
            command = ["calibrate", str(genuine), "--model", str(args.model)]
            fixed["btd calibrate (child process), s"], _ = _btd(
                [*command, "--out", str(calibration), *threads], folder
            )
        # the real scan: every flag at its default but the calibration and the threads
        report = folder / "report"
        command = ["scan", str(study), "--model", str(args.model), "--out", str(report)]
        wall, _ = _btd([*command, "--calibration", str(calibration), *threads], folder)
        scanned = json.loads((report / "report.json").read_text())
        scan_scores = _scan_scores(report)

        # the same study, stage by stage, in this process
        start = time.perf_counter()
        discovery = discover(study)
        fixed["discovery, s"] = time.perf_counter() - start
        start = time.perf_counter()
        scorer = open_scorer(args.model, "auto", EngineOptions(threads=args.threads))
        fixed["opening the model, s"] = time.perf_counter() - start
        start = time.perf_counter()
        request = ScoreRequest(calibration_path=calibration)  # --score auto, as the scan
        slice_score = request.resolve(args.model, scorer.model_sha256)
        fixed["resolving the score (reading the calibration), s"] = time.perf_counter() - start
        size = scorer.card.patch_size
        start = time.perf_counter()
        scorer.score(np.full((scorer.batch_size, size, size), 0.5, np.float32), True)
        fixed["first onnxruntime call (one batch, untimed in the stages), s"] = (
            time.perf_counter() - start
        )
        start = time.perf_counter()
        settings = ScanSettings(tiles=args.tiles).resolved(scorer.card, slice_score.calibrated_with)
        clock, keys, final = profile_slices(discovery, scorer, slice_score, settings)
        loop_s = time.perf_counter() - start

    slices = len(keys)
    if slices != args.slices:
        raise SystemExit(f"discovery found {slices} slices, expected {args.slices}")
    rows = []
    for name in STAGES:
        per_slice = clock.per_slice_ms(name, keys)
        rows.append((name, statistics.fmean(per_slice), statistics.median(per_slice)))
    total_ms = 1000.0 * wall / slices
    stages_ms = sum(mean for _, mean, _ in rows)
    other_ms = total_ms - stages_ms

    record = {k: v for k, v in slice_score.record().items() if k != "score_meaning"}
    settings = scanned["settings"]
    scan_mode = {k: settings.get(k) for k in ("score_mode", "series_context", "image_context")}
    ours = {k: record[k] for k in ("score_mode", "series_context", "image_context")}
    matched = [(final[(s, i)], scan_scores[i]) for s, i in keys if i in scan_scores]
    worst_diff = max((abs(a - b) / max(abs(b), 1e-12) for a, b in matched), default=float("nan"))

    print(
        f"profile of one slice in btd scan: {slices} lung1 slices {chosen.start}-"
        f"{chosen.stop - 1} (512 x 512 CT, DICOM), model {args.model.name} "
        f"({size} px, {scorer.card.precision}), provider {scorer.provider_in_use}, "
        f"{args.threads} onnxruntime threads, batch {scorer.batch_size}, "
        f"tiles per slice {settings.get('tiles_scored', 0) / slices:.1f} scored, "
        f"coverage {settings.get('tiles')} (--tiles {args.tiles})"
    )
    print(
        f"score profiled: --score auto -> {record['score_mode']} "
        f"(series context {record['series_context']}, image context {record['image_context']}, "
        f"{record['window_px']} px windows every {record['window_stride_px']} px); "
        f"the scan's report says {scan_mode}" + ("" if scan_mode == ours else "  <-- DIFFERENT")
    )
    print(
        f"profile's slice scores vs the scan's findings.csv: {len(matched)} of {slices} "
        f"slices compared, largest relative difference {worst_diff:.1e}"
    )
    print()
    print("| stage | ms/slice mean | ms/slice median | share |")
    print("|---|---:|---:|---:|")
    for name, mean, median in rows:
        if name == IMAGE_CONTEXT and not slice_score.uses_image_context:
            name += ": not used by this score"
        print(f"| {name} | {mean:.1f} | {median:.1f} | {100 * mean / total_ms:.1f} % |")
    print(f"| sum of the stages | {stages_ms:.1f} | | {100 * stages_ms / total_ms:.1f} % |")
    print(f"| {OTHER} | {other_ms:.1f} | | {100 * other_ms / total_ms:.1f} % |")
    print(f"| btd scan wall / slice ({wall:.2f} s / {slices}) | {total_ms:.1f} | | 100 % |")
    print()
    audit_s = _seconds_between(scanned["started_utc"], scanned["ended_utc"])
    print(
        f"btd scan (child process): {wall:.2f} s wall, of which {audit_s:.2f} s from the "
        f"audit's start (discovery, model) to its ranking and overlays (report.json's "
        f"started_utc .. ended_utc); the rest is interpreter start, imports and report files"
    )
    for what, seconds in fixed.items():
        print(f"  {what}: {seconds:.3f}")
    print(
        f"the profile's own loop: {loop_s:.2f} s, of which the stages "
        f"{stages_ms * slices / 1000:.2f} s (the rest: Python between the stages)"
    )
    load_after = os.getloadavg()
    run_s = time.perf_counter() - started
    print(
        f"load average (1 min) {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the "
        f"end, {os.cpu_count()} CPUs; this run took {run_s:.0f} s"
    )
    if args.json:
        result = {
            "model": str(args.model),
            "model_sha256": scorer.model_sha256,
            "lung1_slices": [chosen.start, chosen.stop - 1],
            "slices": slices,
            "threads": args.threads,
            "provider": scorer.provider_in_use,
            "batch_size": scorer.batch_size,
            "score": record,
            "scan_report_score": scan_mode,
            "largest_relative_score_difference": worst_diff,
            "stages": {
                name: {
                    "per_slice_ms": clock.per_slice_ms(name, keys),
                    "mean_ms": mean,
                    "median_ms": median,
                    "share": mean / total_ms,
                }
                for name, mean, median in rows
            },
            "other_ms": other_ms,
            "scan_wall_s": wall,
            "scan_audit_s": audit_s,
            "profile_loop_s": loop_s,
            "fixed": fixed,
            "loadavg": [load_before[0], load_after[0]],
            "cpus": os.cpu_count(),
            "run_s": run_s,
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
