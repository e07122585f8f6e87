"""``btd calibrate``'s work: score genuine scans window by window and fit the tissue table.

The genuine folder is read like a study (same discovery, windowing, tiling and body
mask as ``btd scan``) and never written into.  Each scored slice contributes its valid
local windows (at most ``max_windows_per_slice``, drawn at random with a fixed seed,
so one huge slice does not dominate).  Consecutive slices of a series also give the
series context: each valid window's log energy minus the mean of the same window in
the neighbouring slices (same sampling), and the image context: each valid window's
disagreement ratio with its neighbours' pixels
(:func:`btd_core.scoring.image_context.disagreement`, same sampling).  Memory: the
window energies of every slice (a few kB each), kept until the energy floor (their median) is known.

Once fitted, every genuine slice is judged again by the fitted calibration's default score
(:func:`btd_core.scoring.strategy.calibrated_score`: series context, series ends and all),
exactly as ``btd scan`` with this calibration would score it, from the windows and the
windowed image the first pass kept (:meth:`btd_core.scoring.strategy.CalibratedScore.rejudged`,
:class:`btd_core.scoring.series_context.SeriesContext`; the model does not run again), and
every genuine slice's score is recorded (``genuine_scores``), so that a scan can say how rare
a finding's score is among genuine slices (:mod:`btd_core.scoring.rarity`).  Memory: each
genuine slice's windowed image until then (4 bytes a pixel: 1 MiB per 512 x 512 slice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from btd_core import __version__
from btd_core.audit.pipeline import ProgressCallback, scan
from btd_core.audit.study_audit import AuditError, open_study
from btd_core.engine.options import EngineOptions
from btd_core.engine.scorer import ProviderChoice
from btd_core.findings.output_folder import check_output_file
from btd_core.scoring.calibration import (
    Calibration,
    context_deviation,
    energy_levels,
    fit_calibration,
    genuine_floor,
    sidecar_path,
)
from btd_core.scoring.series_context import SeriesContext
from btd_core.scoring.strategy import (
    CalibratedScore,
    CalibratedVerdict,
    LocalScore,
    Neighbours,
    SliceVerdict,
    WindowVerdict,
    calibrated_score,
)
from btd_core.scoring.tiles import ScanSettings
from btd_core.scoring.windows import WINDOW_PX
from btd_core.study.limits import StudyLimits

MAX_WINDOWS_PER_SLICE = 4000


@dataclass(frozen=True)
class CalibrationRun:
    """What one calibration produced."""

    path: Path
    calibration: Calibration
    slices: int
    files_failed: list[tuple[str, str]]


def calibrate_model(
    genuine_dir: Path,
    model: Path,
    out: Path | None = None,
    *,
    provider: ProviderChoice = "auto",
    settings: ScanSettings | None = None,
    window: int = WINDOW_PX,
    window_stride: int | None = None,
    engine: EngineOptions | None = None,
    limits: StudyLimits | None = None,
    on_progress: ProgressCallback | None = None,
    max_windows_per_slice: int = MAX_WINDOWS_PER_SLICE,
    seed: int = 0,
) -> CalibrationRun:
    """Calibrate ``model`` on the genuine scans under ``genuine_dir``; write the table.

    ``out`` defaults to the model's sidecar (``MODEL.onnx.calibration.json``); every genuine
    slice's default score under the fitted calibration is recorded in it.  The
    windows are ``window`` px every ``window_stride`` px (default half the window); the
    calibration records both, and a scan with other windows refuses it.

    Raises
    ------
    AuditError
        The folder is missing, ``out`` lies inside it (evidence is never written into), or
        no slice in it could be scored (the message names unreadable files).
    btd_core.scoring.calibration.CalibrationError
        Too few genuine tissue windows.
    """
    genuine_dir, model = Path(genuine_dir), Path(model)
    if not genuine_dir.is_dir():
        raise AuditError(f"{genuine_dir} is not a folder")
    out = Path(out) if out is not None else sidecar_path(model)
    check_output_file(out, genuine_dir, inputs_are="genuine folder")
    settings = replace(settings or ScanSettings(), overlays=0)
    slice_score = LocalScore(window, window_stride or max(window // 2, 1))
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    grids: list[_WindowGrid] = []
    ratios: list[np.ndarray] = []
    ratio_maxima: list[float] = []
    judged: dict[tuple[str, int], WindowVerdict] = {}

    def collect(verdict: WindowVerdict, neighbours: Neighbours) -> None:
        judged[_key(verdict)] = replace(verdict, heat=_no_heat)  # not the residuals
        windows = verdict.windows
        valid = windows.valid.ravel()
        rows = np.column_stack(
            [windows.energy.ravel(), windows.intensity.ravel(), windows.texture.ravel()]
        )[valid]
        kept.append(_sample(rows, max_windows_per_slice, rng))
        grids.append(
            _WindowGrid(
                _key(verdict),
                windows.energy.astype(np.float32),
                windows.valid,
                [_key(other) for other in neighbours],
                neighbours.one_sided,
            )
        )
        if not neighbours.one_sided:  # a slice between its neighbours (series ends: below)
            found = slice_score.image_disagreement(verdict, neighbours)
            if found is not None and found.shape == windows.valid.shape and windows.valid.any():
                ratios.append(_sample(found[windows.valid], max_windows_per_slice, rng))
                ratio_maxima.append(float(found[windows.valid].max()))

    discovery, scorer = open_study(genuine_dir, model, provider, engine, limits=limits)
    settings = settings.resolved(scorer.card, None)
    outcome = scan(
        discovery,
        scorer,
        settings,
        on_progress=on_progress,
        slice_score=slice_score,
        on_verdict=collect,
    )
    failed = [(r.relpath, r.reason) for r in discovery.files if r.status == "error"]
    if not outcome.results:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in failed[:3])
        raise AuditError(
            f"no genuine slice could be scored in {genuine_dir} ({len(discovery.files)} files"
            + (f", {len(failed)} unreadable: {reasons}" if failed else "")
            + ")"
        )
    windows = np.concatenate(kept) if kept else np.zeros((0, 3))
    floor = genuine_floor(windows[:, 0])
    between, ends = _context_differences(grids, floor, max_windows_per_slice, rng)
    calibration = fit_calibration(
        windows[:, 0],
        windows[:, 1],
        windows[:, 2],
        model_sha256=scorer.model_sha256,
        window=slice_score.window,
        stride=slice_score.window_stride,
        slices=len(outcome.results),
        energy_floor=floor,
        context_differences=between[0],
        image_context_ratios=np.concatenate(ratios) if ratios else None,
        context_slice_maxima=between[1],
        image_context_slice_maxima=np.asarray(ratio_maxima),
        ends_differences=ends[0],
        ends_slice_maxima=ends[1],
        tiles=settings.tiles,
        source={
            "folder": str(genuine_dir.resolve()),
            "files": len(discovery.files),
            "files_failed": len(failed),
            "model": str(model.resolve()),
            "modality": scorer.card.modality,
            "tool_version": __version__,
            "max_windows_per_slice": max_windows_per_slice,
        },
    )
    genuine = _genuine_scores(calibrated_score(calibration), judged)
    calibration = replace(calibration, genuine_scores=tuple(genuine))
    out.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(out)
    return CalibrationRun(out, calibration, len(outcome.results), failed)


def _no_heat() -> np.ndarray:
    raise RuntimeError("calibration keeps no heat maps")


def _genuine_scores(
    slice_score: CalibratedScore, judged: dict[tuple[str, int], WindowVerdict]
) -> list[float]:
    """Sorted: the score ``slice_score`` gives each genuine slice (``judged``: its
    windows and image by series key and index), with its series' context."""
    by_series: dict[str, dict[int, CalibratedVerdict | None]] = {}
    for (series, index), verdict in judged.items():
        by_series.setdefault(series, {})[index] = slice_score.rejudged(verdict)
    found = []
    for own in by_series.values():
        context = SeriesContext(slice_score, own.get)
        for index in own:
            verdict = context.judged(index)
            if verdict is not None:
                found.append(float(verdict.result.score))
    return sorted(found)


@dataclass(frozen=True)
class _WindowGrid:
    """One genuine slice's window energies (float32 [ny, nx], model space r^2), which of
    its windows are valid, the slices series context compared it with (keys) and whether
    they lie on one side of it (:class:`btd_core.scoring.strategy.Neighbours`)."""

    key: tuple[str, int]
    energy: np.ndarray
    valid: np.ndarray
    neighbours: list[tuple[str, int]]
    one_sided: bool


def _key(verdict: SliceVerdict) -> tuple[str, int]:
    return verdict.result.series_key, verdict.result.slice_index


def _context_differences(
    grids: list[_WindowGrid], floor: float, per_slice: int, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Genuine windows' context deviation (:func:`context_deviation` of the
    :func:`energy_levels`), at most ``per_slice`` per slice drawn at random, and each
    slice's highest: for slices between their neighbours (those series context compared
    them with), and for the tables of series ends (each slice compared one-sidedly with
    the two slices before it and with the two after it)."""
    energy_of = {grid.key: grid.energy for grid in grids}
    between: tuple[list[np.ndarray], list[float]] = ([], [])
    ends: tuple[list[np.ndarray], list[float]] = ([], [])
    for grid in grids:
        if not grid.valid.any():
            continue
        levels = energy_levels(grid.energy, floor)
        series, index = grid.key
        comparisons = [] if grid.one_sided else [(grid.neighbours, False, between)]
        comparisons.append(([(series, index - 1), (series, index - 2)], True, ends))
        comparisons.append(([(series, index + 1), (series, index + 2)], True, ends))
        for keys, one_sided, (found, maxima) in comparisons:
            neighbours = [
                energy_levels(energy_of[key], floor)
                for key in keys
                if key in energy_of and energy_of[key].shape == grid.energy.shape
            ]
            if not neighbours or (one_sided and len(neighbours) != 2):
                continue
            deviation = context_deviation(levels, neighbours, one_sided)[grid.valid]
            found.append(_sample(deviation, per_slice, rng))
            maxima.append(float(deviation.max()))
    return tuple(  # type: ignore[return-value]
        (np.concatenate(found) if found else np.zeros(0), np.asarray(maxima))
        for found, maxima in (between, ends)
    )


def _sample(rows: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """``rows``, or ``most`` of them drawn at random without replacement."""
    if len(rows) > most:
        return rows[rng.choice(len(rows), most, replace=False)]
    return rows
