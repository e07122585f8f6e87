"""The slice score: how a slice's scored tiles become one number and a place.

One :class:`SliceScore` is resolved once, before a scan starts, from what the user asked
for (mode, calibration, window) by :func:`resolve_slice_score`; the scan, the previews,
``btd eval`` and the benchmarks then all judge slices with it (:meth:`SliceScore.judge`).
Each mode is its own type, and so is what it judges a slice to be: :class:`TileScore`
gives a :class:`SliceVerdict`, :class:`LocalScore` a :class:`WindowVerdict`,
:class:`CalibratedScore` and :class:`ContextScore` a :class:`CalibratedVerdict`.

Modes
-----
``tile``
    The highest whole-tile score (the model card's reduction over an S x S tile): the
    paper's whole-patch mean.
``local``
    The highest mean r^2 in ``window`` x ``window`` windows over the slice's residual
    energy map (:mod:`btd_core.scoring.windows`), in tissue only.
``calibrated``
    The highest surprise z of those windows against what genuine tissue of the same
    intensity and texture produces (:mod:`btd_core.scoring.calibration`).  With series
    context (the default, when the calibration has it and the slice has scored
    neighbours in its series), each window is judged by how far its energy stands from
    the same window in the neighbouring slices, ``z_context``, with the tissue surprise
    weighted by :data:`TISSUE_WEIGHT` (0 by default: the context alone), and, where
    higher, by how far its pixels leave the range of the neighbours' (image context,
    :mod:`btd_core.scoring.image_context`; :meth:`SliceScore.in_context`).  Measured in
    ``benchmarks/bench_detection.py`` and ``docs/detection.md``.
``auto``
    Asked for, never run: ``calibrated`` when a calibration is at hand (a named file,
    or the model's sidecar ``MODEL.onnx.calibration.json``), else ``local``.  The best
    measured modes (``benchmarks/bench_detection.py``); the default everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from btd_core.errors import BtdError
from btd_core.hashing import bytes_sha256
from btd_core.scoring.calibration import Calibration, CalibrationError, sidecar_path
from btd_core.scoring.image_context import disagreement, nearby_maximum
from btd_core.scoring.tiles import ImageScores
from btd_core.scoring.windows import WINDOW_PX, LocalWindows, local_windows
from btd_core.study.records import SliceResult

ScoreMode = Literal["tile", "local", "calibrated"]
SCORE_MODES: tuple[ScoreMode, ...] = ("tile", "local", "calibrated")
"""The modes a scan runs."""
SCORE_CHOICES = ("auto", "calibrated", "local", "tile")
"""What a user may ask for (``--score``); ``auto`` is the default."""

_DESCRIPTIONS = {
    "tile": "max tile score ({reduction})",
    "local": "max over local windows of mean r^2",
    "calibrated": "max over local windows of the calibrated surprise z vs genuine tissue",
    "context": "max over local windows of the surprise z vs the same window in the "
    "neighbouring slices (genuine spreads), with the tissue surprise weighted {tissue_weight}",
}


TISSUE_WEIGHT = 0.0
"""How much a window's tissue surprise counts next to its series-context surprise in the
default score (:meth:`SliceScore.in_context`).  0: a slice with scored neighbours is judged
by how its windows differ from the same place in those neighbours alone; its tissue
surprise still judges a slice without neighbours.  Measured against 1 (equal weights, the
default before) in ``benchmarks/bench_detection.py`` on two models: context alone lifts
more edits on both (``docs/detection.md``), and genuine tissue that is unusual
for the model, being unusual in every slice it spans, no longer outranks an edit."""

SCORE_MEANING = (
    "a high score means the slice holds a region unlike the same place in its neighbouring "
    "slices (with series context: its pixels leave the range the neighbours agree on, or the "
    "model's residual there differs from theirs) or, for a slice judged alone, unusual for the "
    "model: a lead to examine, not proof of tampering; real lesions and unusual anatomy can "
    "score high too"
)
"""What a slice score says, in the report, the terminal summary and the app."""


SERIES_ENDS_TREND = (
    "a slice with neighbours on one side only (a series' end) is judged by its residual against "
    "their linear trend, with the calibration's statistics for series ends"
)
SERIES_ENDS_ONE_SIDE = (
    "a slice with neighbours on one side only is judged against those two like a slice between "
    "its neighbours (a calibration older than format 5: btd calibrate again to judge series ends "
    "fairly)"
)
"""How the report says series ends were judged (``settings.series_ends``)."""


class ScoreModeError(BtdError, ValueError):
    """The slice score asked for cannot run: no calibration, another model's, another
    window's, or an unknown mode.  The message says what to do."""


@dataclass(frozen=True)
class SliceVerdict:
    """One slice judged by its tiles (the ``tile`` mode; the base of the others).

    Attributes
    ----------
    result:
        The slice's score and where it is worst.
    heat:
        Makes the float32 [H, W] map to show (made on demand: only kept slices need it):
        mean r^2 per pixel, or per pixel the highest value of the windows over it.
    """

    result: SliceResult
    heat: Callable[[], np.ndarray]


@dataclass(frozen=True)
class WindowVerdict(SliceVerdict):
    """One slice judged by local windows (``local``; the base of :class:`CalibratedVerdict`).

    Attributes
    ----------
    windows:
        The slice's local windows (calibration collects them).
    values:
        [ny, nx] each window's score (mean r^2, or a surprise z).
    image:
        The windowed slice it was judged on, float32 [H, W] in [0, 1] (a reference, not
        a copy): what image context compares neighbours by.
    """

    windows: LocalWindows
    values: np.ndarray
    image: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the slice, pixels."""
        return (self.image.shape[0], self.image.shape[1])

    @cached_property
    def nearby(self) -> np.ndarray:
        """float32 [H, W]: :attr:`image`'s maximum within
        :data:`btd_core.scoring.image_context.SHIFT_PX` (image context's removal term),
        computed once per slice however many slices compare with it."""
        return nearby_maximum(self.image)


@dataclass(frozen=True)
class CalibratedVerdict(WindowVerdict):
    """One slice judged by calibrated windows (``calibrated``).

    Attributes
    ----------
    levels:
        [ny, nx] ``log10(E + floor)`` of each window: what neighbouring slices are
        compared by (:meth:`ContextScore.in_context`).
    """

    levels: np.ndarray


@dataclass(frozen=True)
class Neighbours:
    """The slices one slice is judged with (chosen by
    :func:`btd_core.scoring.series_context.neighbour_indices`), their own verdicts.

    Attributes
    ----------
    verdicts:
        The slice before and the slice after it; or, ``one_sided``, the nearest and the
        next on the one side that has them (at a series' end, or next to a slice that
        could not be read), nearest first; ``()`` for a slice with none.
    one_sided:
        Whether both lie on one side: with a calibration that judges series ends
        (format 5), the slice's residual is then compared with the range around the two's
        linear prediction and judged by the ends' own tables
        (:class:`btd_core.scoring.calibration.EndsContext`); with an older one, as a
        slice between its neighbours.
    """

    verdicts: tuple[SliceVerdict, ...] = ()
    one_sided: bool = False

    def __iter__(self) -> Iterator[SliceVerdict]:
        return iter(self.verdicts)

    def __len__(self) -> int:
        return len(self.verdicts)


def _common(series_key: str, index: int, scores: ImageScores) -> dict[str, object]:
    """The fields of a slice's result that every mode fills from its scored tiles."""
    tile_score, tile_x, tile_y = scores.worst_tile()
    return {
        "series_key": series_key,
        "slice_index": index,
        "tile_x": tile_x,
        "tile_y": tile_y,
        "tile_size": scores.tile_size,
        "tiles_scored": len(scores.origins),
        "tiles_skipped": scores.tiles_skipped,
        "tile_score": tile_score,
    }


class SliceScore(ABC):
    """A resolved slice score: how a slice's scored tiles become one verdict (see the
    module docstring for the modes)."""

    mode: ClassVar[ScoreMode]
    """``tile``, ``local`` or ``calibrated`` (never ``auto``): what the report records."""
    uses_windows: ClassVar[bool] = False
    """Whether slices are judged by local windows (the scorer then returns residuals)."""

    @property
    def uses_context(self) -> bool:
        """Whether slices are judged with their neighbours (:meth:`in_context`)."""
        return False

    @property
    def uses_image_context(self) -> bool:
        """Whether series context also compares the slices' pixels (:meth:`in_context`)."""
        return False

    @property
    def calibrated_with(self) -> str | None:
        """The coverage (``body`` or ``patch``) of the calibration in use; ``None``: none."""
        return None

    @property
    def genuine_scores(self) -> tuple[float, ...] | None:
        """The calibration's genuine slices' scores (ascending) when they are scores of
        this very slice score, so a finding's rarity among them means something; else
        ``None`` (no calibration, none recorded, or another score: ``--no-context``,
        ``local``, ``tile``)."""
        return None

    @abstractmethod
    def judge(
        self, series_key: str, index: int, image: np.ndarray, scores: ImageScores
    ) -> SliceVerdict | None:
        """Judge one slice from its scored tiles; ``None`` when nothing of it was scored
        (no tile, or in the window modes no window in tissue).  ``image`` is the windowed
        slice, float32 [H, W] in [0, 1]."""

    @abstractmethod
    def describe(self, reduction: str) -> str:
        """One line for the report: what the slice score is (``reduction``: the card's)."""

    def in_context(self, verdict: SliceVerdict, neighbours: Neighbours) -> SliceVerdict:
        """``verdict`` judged again with its neighbouring slices (chosen by
        :mod:`btd_core.scoring.series_context`): unchanged unless the score uses series
        context (:class:`ContextScore`)."""
        return verdict

    def record(self) -> dict[str, object]:
        """The report's record of this slice score."""
        return {
            "score_mode": self.mode,
            "window_px": None,
            "window_stride_px": None,
            "calibration": None,
            "series_context": False,
            "context_tissue_weight": None,
            "image_context": False,
            "series_ends": None,
            "score_meaning": SCORE_MEANING,
        }


@dataclass(frozen=True)
class TileScore(SliceScore):
    """The highest whole-tile score: the paper's whole-patch mean."""

    mode: ClassVar[ScoreMode] = "tile"

    def judge(
        self, series_key: str, index: int, image: np.ndarray, scores: ImageScores
    ) -> SliceVerdict | None:
        if not scores.origins:
            return None
        common = _common(series_key, index, scores)
        score = common.pop("tile_score")
        result = SliceResult(
            score=score,  # type: ignore[arg-type]
            score_mode="tile",
            signal="tile",
            **common,  # type: ignore[arg-type]
        )
        return SliceVerdict(result, heat=lambda: scores.heat_map(image.shape))

    def describe(self, reduction: str) -> str:
        return f"max tile score ({reduction})"


@dataclass(frozen=True)
class WindowScore(SliceScore):
    """What the window modes share: ``window`` px windows every ``window_stride`` px
    (both >= 1) over the slice's residual energy map, in tissue only."""

    window: int = WINDOW_PX
    window_stride: int = WINDOW_PX // 2
    uses_windows: ClassVar[bool] = True

    def record(self) -> dict[str, object]:
        return {
            **super().record(),
            "window_px": self.window,
            "window_stride_px": self.window_stride,
        }

    def _windows(self, image: np.ndarray, scores: ImageScores) -> tuple[np.ndarray, LocalWindows]:
        """The slice's residual energy map (float32 [H, W]) and its local windows."""
        energy_map, covered = scores.energy_map(image.shape)
        windows = local_windows(
            image,
            energy_map,
            covered,
            window=self.window,
            stride=self.window_stride,
            body=scores.body,
        )
        return energy_map, windows

    def _result(
        self, series_key: str, index: int, scores: ImageScores, worst: tuple[float, int, int]
    ) -> SliceResult:
        common = _common(series_key, index, scores)
        del common["tile_score"]
        score, x, y = worst
        return SliceResult(
            score=score,
            window_x=x,
            window_y=y,
            window_size=self.window,
            score_mode=self.mode,
            signal="energy" if self.mode == "local" else "tissue",
            **common,  # type: ignore[arg-type]
        )

    def image_disagreement(
        self, verdict: WindowVerdict, neighbours: Iterable[SliceVerdict]
    ) -> np.ndarray | None:
        """[ny, nx] the disagreement ratio of ``verdict``'s windows with its two
        ``neighbours``' pixels (:func:`btd_core.scoring.image_context.disagreement`; only
        neighbours judged by windows count), each slice's :attr:`WindowVerdict.nearby`
        computed once; ``None`` without two such neighbours of the slice's size."""
        others = [other for other in neighbours if isinstance(other, WindowVerdict)]
        return disagreement(
            verdict.image,
            [other.image for other in others],
            verdict.windows.window,
            self.window_stride,
            nearby=[verdict.nearby, *(other.nearby for other in others)],
        )


@dataclass(frozen=True)
class LocalScore(WindowScore):
    """The highest mean r^2 in local windows (:mod:`btd_core.scoring.windows`)."""

    mode: ClassVar[ScoreMode] = "local"

    def judge(
        self, series_key: str, index: int, image: np.ndarray, scores: ImageScores
    ) -> WindowVerdict | None:
        if not scores.origins:
            return None
        energy_map, windows = self._windows(image, scores)
        worst = windows.worst(windows.energy)
        if worst is None:
            return None
        result = self._result(series_key, index, scores, worst)
        return WindowVerdict(result, lambda: energy_map, windows, windows.energy, image)

    def describe(self, reduction: str) -> str:
        return "max over local windows of mean r^2"


@dataclass(frozen=True, kw_only=True)
class CalibratedScore(WindowScore):
    """The highest surprise z of local windows against what genuine tissue of the same
    intensity and texture produces (:mod:`btd_core.scoring.calibration`), each slice
    judged alone.

    Attributes
    ----------
    calibration:
        The model's calibration (window and step equal to this score's).
    calibration_path, calibration_sha256:
        Where it was read from and the SHA-256 of the bytes read, recorded in the
        report (``None`` for a calibration made in memory).
    """

    mode: ClassVar[ScoreMode] = "calibrated"
    calibration: Calibration
    calibration_path: Path | None = None
    calibration_sha256: str | None = field(default=None, compare=False)

    @property
    def calibrated_with(self) -> str | None:
        return self.calibration.tiles

    @property
    def genuine_scores(self) -> tuple[float, ...] | None:
        default = calibrated_score(self.calibration)
        if replace(self, calibration_path=None) != default:
            return None  # judged otherwise than the genuine slices were
        return self.calibration.genuine_scores

    def judge(
        self, series_key: str, index: int, image: np.ndarray, scores: ImageScores
    ) -> CalibratedVerdict | None:
        if not scores.origins:
            return None
        energy_map, windows = self._windows(image, scores)
        calibration = self.calibration
        values = calibration.surprise(windows.energy, windows.intensity, windows.texture)
        levels = calibration.levels(windows.energy)

        def heat() -> np.ndarray:
            return paint_windows(windows, values, energy_map.shape)

        worst = windows.worst(values)
        if worst is None:
            return None
        result = self._result(series_key, index, scores, worst)
        return CalibratedVerdict(result, heat, windows, values, image, levels)

    def rejudged(self, verdict: WindowVerdict) -> CalibratedVerdict | None:
        """``verdict`` (a slice judged by windows of this score's size and step, as
        :class:`LocalScore` judges them) judged again by the calibration, without scoring
        the slice again: what :meth:`judge` gives for the same slice (``btd calibrate``
        records its genuine slices' scores this way)."""
        windows = verdict.windows
        calibration = self.calibration
        values = calibration.surprise(windows.energy, windows.intensity, windows.texture)
        worst = windows.worst(values)
        if worst is None:
            return None
        score, x, y = worst
        result = replace(
            verdict.result,
            score=score,
            window_x=x,
            window_y=y,
            window_size=self.window,
            score_mode=self.mode,
            signal="tissue",
        )
        shape = verdict.shape

        def heat() -> np.ndarray:
            return paint_windows(windows, values, shape)

        levels = calibration.levels(windows.energy)
        return CalibratedVerdict(result, heat, windows, values, verdict.image, levels)

    def describe(self, reduction: str) -> str:
        return "max over local windows of the calibrated surprise z vs genuine tissue"

    def record(self) -> dict[str, object]:
        calibration = None
        if self.calibration_path is not None:
            calibration = {
                "file": str(self.calibration_path.resolve()),
                "sha256": self.calibration_sha256,
            }
        return {**super().record(), "calibration": calibration}


@dataclass(frozen=True, kw_only=True)
class ContextScore(CalibratedScore):
    """The calibrated score with series context: each window judged by how far its
    energy stands from the same window in the neighbouring slices, and, with
    ``image_context``, by how far its pixels leave their range (:meth:`in_context`).

    Attributes
    ----------
    tissue_weight:
        How much the tissue surprise counts next to the context surprise, in [0, 1]
        (:data:`TISSUE_WEIGHT`; 0: the context alone).
    image_context:
        Also judge each window's pixels against the neighbours'
        (:mod:`btd_core.scoring.image_context`); needs a calibration that has it.
    """

    tissue_weight: float = TISSUE_WEIGHT
    image_context: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.tissue_weight <= 1.0:
            raise ScoreModeError(f"tissue weight {self.tissue_weight} is not in [0, 1]")
        if not self.calibration.has_context:
            raise ScoreModeError("series context needs a calibration that has it (format 2)")
        if self.image_context and not self.calibration.has_image_context:
            raise ScoreModeError("image context needs a calibration that has it (format 3)")

    @property
    def uses_context(self) -> bool:
        return True

    @property
    def uses_image_context(self) -> bool:
        return self.image_context

    def describe(self, reduction: str) -> str:
        text = (
            "max over local windows of the surprise z vs the same window in the neighbouring "
            f"slices (genuine spreads), with the tissue surprise weighted {self.tissue_weight}"
        )
        if self.image_context:
            text += "; or, where higher, the surprise z of the window's pixels leaving the range "
            text += "of the same place in the neighbouring slices (both in spreads of genuine "
            text += "slices' worst window)"
        return text

    def record(self) -> dict[str, object]:
        return {
            **super().record(),
            "series_context": True,
            "context_tissue_weight": self.tissue_weight,
            "image_context": self.image_context,
            "series_ends": SERIES_ENDS_TREND
            if self.calibration.judges_ends
            else SERIES_ENDS_ONE_SIDE,
        }

    def in_context(self, verdict: SliceVerdict, neighbours: Neighbours) -> SliceVerdict:
        """``verdict`` judged again with its neighbouring slices (neighbours judged by
        other windows, or not by calibrated windows, are ignored).  A slice whose two
        neighbours lie on one side is judged by its residual against their trend, with
        the calibration's tables for series ends where it has them (:class:`Neighbours`,
        :class:`btd_core.scoring.calibration.EndsContext`), so that a series' end slices
        rank like its other slices.

        Each window's value becomes ``(w max(z_tissue, 0) + z_context) / sqrt(1 + w^2)``
        with ``w`` the :attr:`tissue_weight`
        (:meth:`btd_core.scoring.calibration.Calibration.context_surprise`): a window
        quieter than its tissue (a covered nodule, aerated lung) is judged by its context
        alone, not pulled down.  With image context, a window's value is the higher of
        that and the surprise z of its pixels' disagreement with the neighbours'
        (:func:`btd_core.scoring.image_context.disagreement`), both in spreads of genuine
        slices' worst window (:meth:`btd_core.scoring.calibration.Calibration.slice_scaled`).
        Unchanged when the slice has no neighbour of its own size.  The result's
        ``signal`` says which comparison gave the worst window its value: ``pixels`` where
        the pixels' surprise is the higher there, else ``residual``.
        """
        if not isinstance(verdict, CalibratedVerdict):
            return verdict
        others = [
            other
            for other in neighbours
            if isinstance(other, CalibratedVerdict) and other.levels.shape == verdict.levels.shape
        ]
        if not others:
            return verdict
        calibration = self.calibration
        one_sided = neighbours.one_sided and len(others) == 2 and calibration.judges_ends
        context = calibration.context_surprise(
            verdict.levels, [other.levels for other in others], one_sided=one_sided
        )
        w = self.tissue_weight
        values = (w * np.maximum(verdict.values, 0.0) + context) / np.sqrt(1.0 + w * w)
        windows = verdict.windows
        pixels_higher: np.ndarray | None = None  # where the pixels' surprise counts
        if one_sided and calibration.ends is not None:
            if self.image_context and calibration.slice_scale is not None:
                values = calibration.ends.scaled(values)  # the default's scale: residual alone
        elif self.image_context:
            ratios = self.image_disagreement(verdict, others)
            if ratios is not None and ratios.shape == values.shape:
                pixels = calibration.image_context_surprise(ratios)
                by_residual, by_pixels = calibration.on_one_scale(values, pixels)
                values = np.maximum(by_residual, by_pixels)
                pixels_higher = by_pixels > by_residual
        cell = windows.worst_cell(values)
        if cell is None:
            return verdict
        row, col = cell
        score, x, y = float(values[row, col]), windows.xs[col], windows.ys[row]
        signal = "pixels" if pixels_higher is not None and pixels_higher[cell] else "residual"
        result = replace(verdict.result, score=score, window_x=x, window_y=y, signal=signal)
        shape = verdict.shape

        def heat() -> np.ndarray:
            return paint_windows(windows, values, shape)

        return replace(verdict, result=result, heat=heat, values=values)


def calibrated_score(
    calibration: Calibration,
    *,
    window: int | None = None,
    window_stride: int | None = None,
    context: bool = True,
    image_context: bool = True,
    tissue_weight: float = TISSUE_WEIGHT,
    path: Path | None = None,
    sha256: str | None = None,
) -> CalibratedScore:
    """The calibrated score ``calibration`` can run: with series context
    (:class:`ContextScore`) when ``context`` is asked and the calibration has it, with
    image context when also asked and had; else each slice judged alone.  ``window`` /
    ``window_stride`` default to the calibration's."""
    window = window or calibration.window
    stride = window_stride or calibration.stride
    common = {
        "window": window,
        "window_stride": stride,
        "calibration": calibration,
        "calibration_path": path,
        "calibration_sha256": sha256,
    }
    if not (context and calibration.has_context):
        return CalibratedScore(**common)  # type: ignore[arg-type]
    return ContextScore(
        **common,  # type: ignore[arg-type]
        tissue_weight=tissue_weight,
        image_context=image_context and calibration.has_image_context,
    )


def resolve_slice_score(
    mode: str = "auto",
    *,
    model_path: Path | None = None,
    model_sha256: str | None = None,
    calibration_path: Path | None = None,
    window: int | None = None,
    window_stride: int | None = None,
    context: bool = True,
) -> SliceScore:
    """The slice score to run for what was asked: done once, before a scan starts.

    ``mode``: one of :data:`SCORE_CHOICES`.  ``calibrated`` reads ``calibration_path``
    (default: the model's sidecar), checks that it belongs to the model
    (``model_sha256``) and was made with the same window and window step; ``auto`` is
    ``calibrated`` when a calibration file is named or the sidecar exists, else
    ``local``.  ``window`` / ``window_stride`` (pixels) default to the calibration's
    own, else 24 and half the window.  ``context``: judge each slice with its
    neighbours too (``calibrated`` with a format-2 calibration, see :meth:`SliceScore.in_context`).

    Raises
    ------
    ScoreModeError
        An unknown mode; ``calibrated`` with no calibration file; a calibration that is
        damaged, of another model, or made for another window or window step.  Never a
        quiet step down from ``calibrated`` to ``local``.
    """
    if mode not in SCORE_CHOICES:
        raise ScoreModeError(f"unknown score mode {mode!r}; choose from {', '.join(SCORE_CHOICES)}")
    if mode == "tile":
        return TileScore()
    sidecar = sidecar_path(Path(model_path)) if model_path is not None else None
    wanted = mode == "calibrated" or (
        mode == "auto"
        and (calibration_path is not None or (sidecar is not None and sidecar.is_file()))
    )
    if not wanted:
        window = window or WINDOW_PX
        return LocalScore(window, window_stride or max(window // 2, 1))
    path = Path(calibration_path) if calibration_path is not None else sidecar
    if path is None or not path.is_file():
        raise ScoreModeError(
            f"the calibrated score needs {path or 'a calibration file'}: make it with "
            f"btd calibrate --model {model_path} GENUINE_DIR (or give --calibration)"
        )
    try:
        content = path.read_bytes()
        calibration = Calibration.parse(content, path, model_sha256)
    except OSError as err:
        raise ScoreModeError(f"{path} is not a readable calibration file ({err})") from None
    except CalibrationError as err:
        raise ScoreModeError(str(err)) from None
    window = window or calibration.window
    window_stride = window_stride or max(window // 2, 1)
    if (window, window_stride) != (calibration.window, calibration.stride):
        raise ScoreModeError(
            f"the calibration {path} was made with {calibration.window} px windows every "
            f"{calibration.stride} px, this scan asks for {window} px every {window_stride} px: "
            f"scan with --window {calibration.window}, or calibrate again with "
            f"btd calibrate --window {window}"
        )
    return calibrated_score(
        calibration,
        window=window,
        window_stride=window_stride,
        context=context,
        path=path,
        sha256=bytes_sha256(content),
    )


def paint_windows(windows: LocalWindows, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 [H, W]: per pixel the highest value of the valid windows over it, at least 0."""
    canvas = np.zeros(shape[:2], dtype=np.float32)
    size = windows.window
    for row, y in enumerate(windows.ys):
        for col, x in enumerate(windows.xs):
            if windows.valid[row, col] and values[row, col] > 0:
                patch = canvas[y : y + size, x : x + size]
                np.maximum(patch, np.float32(values[row, col]), out=patch)
    return canvas


@dataclass(frozen=True)
class ScoreRequest:
    """The slice score a user asked for (``--score``, ``--window``, ``--calibration``),
    before it is resolved against a model (:meth:`resolve`).

    Attributes
    ----------
    mode:
        One of :data:`SCORE_CHOICES` (default ``auto``).
    window, window_stride:
        Local window side and step, pixels; ``None``: the calibration's, else 24 and half.
    calibration_path:
        A calibration file; ``None``: the model's sidecar.
    context:
        Judge slices with their neighbouring slices too (``--no-context`` turns it off).
    """

    mode: str = "auto"
    window: int | None = None
    window_stride: int | None = None
    calibration_path: Path | None = None
    context: bool = True

    def resolve(self, model_path: Path | None, model_sha256: str | None) -> SliceScore:
        """The :class:`SliceScore` to run with this model (:func:`resolve_slice_score`)."""
        return resolve_slice_score(
            self.mode,
            model_path=model_path,
            model_sha256=model_sha256,
            calibration_path=self.calibration_path,
            window=self.window,
            window_stride=self.window_stride,
            context=self.context,
        )
