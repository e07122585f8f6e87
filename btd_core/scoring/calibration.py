"""Tissue calibration: how much residual energy genuine tissue of each kind produces.

Genuine scans are scored window by window (:mod:`btd_core.scoring.windows`); for each
cell of a table over the window's intensity (its mean, windowed [0, 1]) and texture
(its standard deviation), the robust centre and spread of log10 energy are kept: the
median, and 1.4826 x the median absolute deviation.  A window is then scored by its
calibrated surprise ``z = (log10 E - centre) / spread`` of its own cell, so that soft
tissue, which always leaves more residual than lung, does not look tampered by
itself.  Cells with fewer than :data:`MIN_WINDOWS` genuine windows borrow the
statistics of their intensity row, then of all windows.

Series context (format 2).  Genuine anatomy changes smoothly from one slice to the
next; a tampered slice differs at the edit from both of its neighbours, in the same
direction (more residual where a mass was pasted, less where one was covered), while
its neighbours each still match one slice.  A window's context deviation
(:func:`context_deviation`) is how far its ``log10 E`` stands above both neighbours'
same window, or below both, whichever is larger; the calibration keeps its robust
centre and spread over genuine series (:meth:`Calibration.context_surprise`).
Energies are floored at the genuine windows' median energy
(:attr:`Calibration.energy_floor`), so that windows quieter than typical tissue
(aerated lung, which the CT window clips to 0) all sit at the floor instead of
spreading over many decades of numerical noise.  A format-1 file still loads: floor
1e-12 and no series context.

Image context (format 3).  The same idea in the pixels
(:mod:`btd_core.scoring.image_context`): each window's disagreement ratio with its
neighbours, judged by ``z = (log10(ratio + floor) - centre) / spread`` over genuine
windows (the floor is their median ratio).  A format-2 file loads without it.

The two contexts have tails of their own (on lung1 with the GPU model, a genuine slice's
most surprising window reaches 3-10 spreads by its residual, 2-7 by its pixels), so
with both, each window's two surprises are put on one scale before the higher counts:
in spreads of genuine slices' worst window (:meth:`Calibration.slice_scaled`), robust
centre and spread of the per-slice maxima over the genuine series.

Genuine slices' scores (format 5).  ``btd calibrate`` also records the default score of
every genuine slice it was fitted on (:attr:`Calibration.genuine_scores`), so that a
finding can say how rare its score is among genuine slices
(:mod:`btd_core.scoring.rarity`); a file without them still loads, without that.

Series ends (format 5).  A slice whose two neighbours lie on one side (a series' first or
last slice, or a slice next to one that could not be read) cannot be judged like a slice
between its neighbours: genuine anatomy that changes along the series leaves the range of
two slices on one side far more often (lung1: the same genuine slices' median window
disagreement is 0.5 one-sided against 0.17 between their neighbours, and the series' end
slices were its top slices in 94-100 % of genuine 6-24 slice series).  Such a slice is
judged by its residual alone, against the range around its neighbours' linear prediction
(:func:`context_deviation`), with tables of its own (:class:`EndsContext`) fitted on every
genuine slice compared one-sidedly with the two slices before it and the two after it.
The pixels' comparison extrapolates too poorly to judge a series' end (anatomy such as
the diaphragm does not move linearly) and is left out there.  Earlier formats judge a
one-sided slice as before: against its two neighbours, with the two-sided tables.

A calibration belongs to one model: it records the ONNX file's SHA-256 and is refused
for any other file.  It is stored as JSON beside the model
(``MODEL.onnx.calibration.json``, :func:`sidecar_path`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from btd_core.errors import BtdError

FORMAT_NAME = "btd-calibration"
FORMAT_VERSION = 5
INTENSITY_BINS = 20
"""Equal bins of windowed intensity over [0, 1] (CT: 135 HU each over [-700, 2000])."""
TEXTURE_BINS = 4
"""Bins of local standard deviation, at the genuine windows' quantiles."""
MIN_WINDOWS = 30
"""A cell with fewer genuine windows borrows its row's (then the global) statistics."""
ENERGY_FLOOR = 1e-12
"""Added to energies before the logarithm (r^2 means of a flat region can be 0)."""
MIN_SLICES = 5
"""Genuine slices with neighbours needed to put the two contexts on one scale."""
MIN_SLICE_SPREAD = 0.5
"""The least spread (in z) of genuine slices' worst-window surprise (lung1: 1.5-2)."""
IMAGE_RATIO_FLOOR = 1e-3
"""The least floor added to disagreement ratios before the logarithm (genuine series
whose slices are all identical have a median ratio of 0)."""
MAD_TO_SD = 1.4826
MIN_SPREAD = 0.05
"""The least spread (decades of energy) a cell or the series context may claim: genuine
windows of one tissue measured here vary by 0.06-0.16 decades (lung1, the GPU model) and
neighbouring slices by 0.04-0.08; calibration data more uniform than that (copies of one
slice) would otherwise turn tiny differences into huge surprises."""
TEXTURE_TOP = 1.0
"""Upper edge of the last texture bin (a [0, 1] image's standard deviation is <= 0.5)."""


class CalibrationError(BtdError, ValueError):
    """A calibration file that cannot be used: unreadable, another model's, or empty."""


@dataclass(frozen=True)
class TissueTable:
    """Robust centre and spread of genuine windows' ``log10(E + floor)`` per (intensity,
    texture) cell (every format): ``centre``, ``spread`` and ``counts`` are
    [:data:`INTENSITY_BINS`][:data:`TEXTURE_BINS`]; the edges are the cells' bounds
    (intensity over [0, 1], texture the windows' standard deviation)."""

    intensity_edges: list[float]
    texture_edges: list[float]
    centre: list[list[float]]
    spread: list[list[float]]
    counts: list[list[int]]

    def surprise(
        self, levels: np.ndarray, intensity: np.ndarray, texture: np.ndarray
    ) -> np.ndarray:
        """z of windows' ``levels`` against their own cell (same-shaped arrays)."""
        rows = _bin(self.intensity_edges, intensity)
        cols = _bin(self.texture_edges, texture)
        return (levels - np.asarray(self.centre)[rows, cols]) / np.asarray(self.spread)[rows, cols]


@dataclass(frozen=True)
class ResidualContext:
    """Series context by the model's residual (format 2 on): robust centre and spread of
    genuine windows' :func:`context_deviation` (decades of energy)."""

    centre: float
    spread: float

    def surprise(
        self, levels: np.ndarray, neighbours: list[np.ndarray], one_sided: bool = False
    ) -> np.ndarray:
        """z of one slice's window ``levels`` against the same windows of its neighbours
        (``one_sided``: see :func:`context_deviation`)."""
        return (context_deviation(levels, neighbours, one_sided) - self.centre) / self.spread


@dataclass(frozen=True)
class ImageContext:
    """Series context by the pixels (format 3): the floor added to disagreement ratios
    before the logarithm (their genuine median), and the robust centre and spread of
    genuine windows' ``log10(ratio + floor)``."""

    floor: float
    centre: float
    spread: float

    def surprise(self, ratios: np.ndarray) -> np.ndarray:
        """z of windows' disagreement ratios (0 = the genuine median)."""
        logs = np.log10(np.asarray(ratios, dtype=np.float64) + self.floor)
        return (logs - self.centre) / self.spread


@dataclass(frozen=True)
class SliceScale:
    """The two contexts on one scale (format 3, from :data:`MIN_SLICES` genuine slices):
    robust centre and spread (z) of genuine slices' worst window by each context."""

    context_centre: float
    context_spread: float
    image_context_centre: float
    image_context_spread: float

    def higher(self, residual: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Per window the higher of the two surprises, each in spreads of genuine slices'
        worst window (0: as surprising as a typical genuine slice's most surprising one)."""
        return np.maximum(*self.scaled(residual, pixels))

    def scaled(self, residual: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two surprises, each in spreads of genuine slices' worst window: (residual,
        pixels), same-shaped arrays (what :meth:`higher` takes the higher of)."""
        return (
            (residual - self.context_centre) / self.context_spread,
            (pixels - self.image_context_centre) / self.image_context_spread,
        )


@dataclass(frozen=True)
class EndsContext:
    """Series context for a slice whose two neighbours lie on one side (format 5), by the
    residual: the robust centre and spread of genuine one-sided windows'
    :func:`context_deviation` (``context``), and of genuine slices' worst such window in
    z (``slice_centre``, ``slice_spread``), which put a one-sided slice's windows on the
    scale of the default score (spreads of genuine slices' worst window)."""

    context: ResidualContext
    slice_centre: float
    slice_spread: float

    def scaled(self, residual: np.ndarray) -> np.ndarray:
        """Windows' one-sided residual surprise z in spreads of genuine slices' worst."""
        return (residual - self.slice_centre) / self.slice_spread


@dataclass(frozen=True)
class Calibration:
    """What genuine scans taught about one model's residual: the tissue table, and what
    the file's format and the genuine data allowed of series context.

    Attributes
    ----------
    model_sha256:
        The ONNX file it belongs to.
    window, stride:
        Local window side and step, pixels.
    tissue:
        The per-cell statistics (every format).
    windows, slices:
        Genuine windows and slices it was fitted on.
    energy_floor:
        Added to window energies before the logarithm (format 2 on: the genuine median;
        format 1: :data:`ENERGY_FLOOR`).
    context, image_context, slice_scale:
        Series context by the residual, by the pixels, and the two on one scale: each
        present when the file's format has it and the genuine data sufficed (too few
        windows or slices leave it out, whatever the format).
    ends:
        Series context for slices whose neighbours lie on one side (format 5 on, when
        the genuine data sufficed: at least :data:`MIN_SLICES` one-sided comparisons;
        ``None``: such slices are judged with the tables above, as before).
    tiles:
        The coverage its genuine slices were scored with (``body`` or ``patch``,
        :data:`btd_core.scoring.tiles.COVERAGES`): a scan must use the same (format 4 on;
        earlier formats were all ``patch``).
    genuine_scores:
        The default score (:func:`btd_core.scoring.strategy.calibrated_score`: with series
        context, series ends included) of every genuine slice it was fitted on, exactly as
        ``btd scan`` with this calibration reports it, ascending: what a finding's rarity
        among genuine slices is counted against (:mod:`btd_core.scoring.rarity`).  Format 5
        on; ``None`` when the file does not have it (older formats, or written before btd
        recorded it).
    format_version:
        The format it was read as (1-5) or is written as (:data:`FORMAT_VERSION`).
    """

    model_sha256: str
    window: int
    stride: int
    tissue: TissueTable
    windows: int
    slices: int
    source: dict[str, object] = field(default_factory=dict)
    energy_floor: float = ENERGY_FLOOR
    context: ResidualContext | None = None
    image_context: ImageContext | None = None
    slice_scale: SliceScale | None = None
    ends: EndsContext | None = None
    tiles: str = "patch"
    genuine_scores: tuple[float, ...] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def has_context(self) -> bool:
        """Whether this calibration can judge a window against its neighbouring slices."""
        return self.context is not None

    @property
    def has_image_context(self) -> bool:
        """Whether this calibration can judge a window's pixels against its neighbours'."""
        return self.image_context is not None

    @property
    def judges_ends(self) -> bool:
        """Whether a slice with neighbours on one side is judged by tables of its own
        (:attr:`ends`), against the trend of its neighbours."""
        return self.ends is not None

    def image_context_surprise(self, ratios: np.ndarray) -> np.ndarray:
        """Surprise z of windows' disagreement ratios with their neighbouring slices
        (:func:`btd_core.scoring.image_context.disagreement`): 0 = the genuine median.

        Raises
        ------
        ValueError
            When this calibration has no image context (format 2 or older).
        """
        if self.image_context is None:
            raise ValueError("image context needs a format-3 calibration")
        return self.image_context.surprise(ratios)

    def on_one_scale(
        self, residual: np.ndarray, pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The residual-context surprise ``residual`` and the image-context surprise
        ``pixels`` (same-shaped z arrays) on one scale (:meth:`SliceScale.scaled`); without
        that scale (too few genuine slices), as they are."""
        if self.slice_scale is None:
            return residual, pixels
        return self.slice_scale.scaled(residual, pixels)

    def slice_scaled(self, residual: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Per window, the higher of the two surprises on one scale (:meth:`on_one_scale`)."""
        return np.maximum(*self.on_one_scale(residual, pixels))

    def levels(self, energy: np.ndarray) -> np.ndarray:
        """``log10(E + floor)`` of window energies (model space r^2), float64."""
        return energy_levels(energy, self.energy_floor)

    def surprise(
        self, energy: np.ndarray, intensity: np.ndarray, texture: np.ndarray
    ) -> np.ndarray:
        """Calibrated surprise z of windows (same-shaped arrays): 0 = typical genuine tissue."""
        return self.tissue.surprise(self.levels(energy), intensity, texture)

    def context_surprise(
        self, levels: np.ndarray, neighbours: list[np.ndarray], one_sided: bool = False
    ) -> np.ndarray:
        """Series-context surprise of windows: the :func:`context_deviation` of ``levels``
        (:meth:`levels` of one slice's windows) from the same windows of the neighbouring
        slices, in genuine spreads (0 = as genuine slices differ).  ``one_sided``: the two
        neighbours lie on one side, nearest first; with :attr:`judges_ends` the slice is
        judged against their trend by the ends' tables, else as before.

        Raises
        ------
        ValueError
            Without neighbours, or when this calibration has no series context.
        """
        if self.context is None or not neighbours:
            raise ValueError("series context needs neighbours and a format-2 calibration")
        if one_sided and self.ends is not None:
            return self.ends.context.surprise(levels, neighbours, one_sided=True)
        return self.context.surprise(levels, neighbours)

    def save(self, path: Path) -> None:
        """Write the calibration as JSON (atomically: a partial file never appears), in the
        current format (:func:`calibration_json`)."""
        from btd_core.atomic import atomic_write_bytes

        text = json.dumps(calibration_json(self), indent=1) + "\n"
        atomic_write_bytes(Path(path), text.encode())

    @classmethod
    def load(cls, path: Path, model_sha256: str | None = None) -> Calibration:
        """Read a calibration of any known format (:data:`READERS`); with
        ``model_sha256``, refuse one made for another model."""
        try:
            content = Path(path).read_bytes()
        except OSError as err:
            raise CalibrationError(f"{path} is not a readable calibration file ({err})") from None
        return cls.parse(content, path, model_sha256)

    @classmethod
    def parse(cls, content: bytes, path: Path, model_sha256: str | None = None) -> Calibration:
        """A calibration from the bytes of its file (``path``: named in messages); with
        ``model_sha256``, refuse one made for another model."""
        try:
            data = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CalibrationError(f"{path} is not a readable calibration file ({err})") from None
        if not isinstance(data, dict) or data.get("format_name") != FORMAT_NAME:
            raise CalibrationError(f"{path} is not a btd calibration file")
        try:
            version = int(data.get("format_version", 0))
        except (TypeError, ValueError):
            raise CalibrationError(f"{path} has no valid format_version") from None
        if version > FORMAT_VERSION:
            raise CalibrationError(f"{path} is from a newer btd; upgrade btd")
        if version not in READERS:
            raise CalibrationError(f"{path} has an unknown format_version {version}")
        try:
            calibration = READERS[version](data)
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"{path} is incomplete ({type(err).__name__}: {err})") from None
        if model_sha256 is not None and calibration.model_sha256 != model_sha256:
            raise CalibrationError(
                f"{path} was made for another model (SHA-256 {calibration.model_sha256[:12]}..., "
                f"this one is {model_sha256[:12]}...): run btd calibrate for this model"
            )
        return calibration


def calibration_json(calibration: Calibration) -> dict[str, object]:
    """The format-5 JSON object of a calibration: flat keys, an absent part as nulls
    (``genuine_scores``: a list of floats, ascending, or null)."""
    tissue, context = calibration.tissue, calibration.context
    image, scale = calibration.image_context, calibration.slice_scale
    ends = calibration.ends
    return {
        "model_sha256": calibration.model_sha256,
        "window": calibration.window,
        "stride": calibration.stride,
        "intensity_edges": tissue.intensity_edges,
        "texture_edges": tissue.texture_edges,
        "centre": tissue.centre,
        "spread": tissue.spread,
        "counts": tissue.counts,
        "windows": calibration.windows,
        "slices": calibration.slices,
        "source": calibration.source,
        "format_name": FORMAT_NAME,
        "format_version": calibration.format_version,
        "energy_floor": calibration.energy_floor,
        "context_centre": context.centre if context else None,
        "context_spread": context.spread if context else None,
        "image_context_floor": image.floor if image else None,
        "image_context_centre": image.centre if image else None,
        "image_context_spread": image.spread if image else None,
        "context_slice_centre": scale.context_centre if scale else None,
        "context_slice_spread": scale.context_spread if scale else None,
        "image_context_slice_centre": scale.image_context_centre if scale else None,
        "image_context_slice_spread": scale.image_context_spread if scale else None,
        "tiles": calibration.tiles,
        "ends_context_centre": ends.context.centre if ends else None,
        "ends_context_spread": ends.context.spread if ends else None,
        "ends_context_slice_centre": ends.slice_centre if ends else None,
        "ends_context_slice_spread": ends.slice_spread if ends else None,
        "genuine_scores": (
            None if calibration.genuine_scores is None else list(calibration.genuine_scores)
        ),
    }


def _read_format_1(data: dict) -> Calibration:
    """Format 1: the tissue table alone, energies floored at :data:`ENERGY_FLOOR`."""
    return Calibration(
        model_sha256=str(data["model_sha256"]),
        window=int(data["window"]),
        stride=int(data["stride"]),
        tissue=TissueTable(
            intensity_edges=list(data["intensity_edges"]),
            texture_edges=list(data["texture_edges"]),
            centre=data["centre"],
            spread=data["spread"],
            counts=data["counts"],
        ),
        windows=int(data["windows"]),
        slices=int(data["slices"]),
        source=dict(data.get("source") or {}),
        format_version=int(data["format_version"]),
    )


def _read_format_2(data: dict) -> Calibration:
    """Format 2: format 1, the genuine energy floor and series context by the residual."""
    context = None
    if data["context_centre"] is not None and data["context_spread"] is not None:
        context = ResidualContext(float(data["context_centre"]), float(data["context_spread"]))
    return replace(_read_format_1(data), energy_floor=float(data["energy_floor"]), context=context)


def _read_format_3(data: dict) -> Calibration:
    """Format 3: format 2, series context by the pixels and the two contexts' scale."""
    image = None
    keys = ("image_context_floor", "image_context_centre", "image_context_spread")
    if all(data[key] is not None for key in keys):
        image = ImageContext(*(float(data[key]) for key in keys))
    scale = None
    keys = (
        "context_slice_centre",
        "context_slice_spread",
        "image_context_slice_centre",
        "image_context_slice_spread",
    )
    if all(data[key] is not None for key in keys):
        scale = SliceScale(*(float(data[key]) for key in keys))
    return replace(_read_format_2(data), image_context=image, slice_scale=scale)


def _read_format_4(data: dict) -> Calibration:
    """Format 4: format 3 and the coverage it was made with."""
    tiles = str(data["tiles"])
    if tiles not in ("body", "patch"):
        raise ValueError(f"tiles must be body or patch, not {tiles!r}")
    return replace(_read_format_3(data), tiles=tiles)


def _read_format_5(data: dict) -> Calibration:
    """Format 5: format 4 and the tables for slices with neighbours on one side."""
    keys = (
        "ends_context_centre",
        "ends_context_spread",
        "ends_context_slice_centre",
        "ends_context_slice_spread",
    )
    ends = None
    if all(data[key] is not None for key in keys):
        centre, spread, slice_centre, slice_spread = (float(data[key]) for key in keys)
        ends = EndsContext(ResidualContext(centre, spread), slice_centre, slice_spread)
    return replace(
        _read_format_4(data), ends=ends, genuine_scores=_genuine_scores(data.get("genuine_scores"))
    )


def _genuine_scores(found: object) -> tuple[float, ...] | None:
    """The genuine slices' scores of a format-5 file, ascending (``None``: not recorded)."""
    if found is None:
        return None
    if not isinstance(found, list):
        raise TypeError("genuine_scores must be a list of numbers")
    scores = [float(value) for value in found]
    if not all(np.isfinite(scores)):
        raise ValueError("genuine_scores must be finite")
    return tuple(sorted(scores))


READERS = {
    1: _read_format_1,
    2: _read_format_2,
    3: _read_format_3,
    4: _read_format_4,
    5: _read_format_5,
}
"""One reader per calibration format: what each format holds, read explicitly."""


def sidecar_path(model_path: Path) -> Path:
    """Where a model's calibration lives by default: ``MODEL.onnx.calibration.json``."""
    return model_path.with_name(model_path.name + ".calibration.json")


def fit_calibration(
    energy: np.ndarray,
    intensity: np.ndarray,
    texture: np.ndarray,
    *,
    model_sha256: str,
    window: int,
    stride: int,
    slices: int,
    source: dict[str, object] | None = None,
    energy_floor: float = ENERGY_FLOOR,
    context_differences: np.ndarray | None = None,
    image_context_ratios: np.ndarray | None = None,
    context_slice_maxima: np.ndarray | None = None,
    image_context_slice_maxima: np.ndarray | None = None,
    ends_differences: np.ndarray | None = None,
    ends_slice_maxima: np.ndarray | None = None,
    tiles: str = "patch",
) -> Calibration:
    """Fit the table from genuine windows (1-D arrays of equal length, valid windows only).

    ``energy_floor`` is added to energies before the logarithm (model space r^2; use
    :func:`genuine_floor`).  ``context_differences``: genuine windows' ``log10(E + floor)``
    minus the mean of the same windows in their neighbouring slices; with at least
    :data:`MIN_WINDOWS` of them the calibration also judges series context.
    ``image_context_ratios``: genuine windows' disagreement ratios with their neighbours
    (:func:`btd_core.scoring.image_context.disagreement`); with at least
    :data:`MIN_WINDOWS` of them, image context too.  ``context_slice_maxima`` and
    ``image_context_slice_maxima``: per genuine slice, its windows' highest context
    deviation and highest disagreement ratio; with at least :data:`MIN_SLICES` of each,
    the two contexts are judged on one scale (:meth:`Calibration.slice_scaled`).
    ``ends_differences`` and ``ends_slice_maxima``: genuine windows' context deviation
    when compared one-sidedly (:func:`context_deviation`), and per comparison its highest;
    with at least :data:`MIN_WINDOWS` and :data:`MIN_SLICES` of them (and series context),
    slices with neighbours on one side get tables of their own (:class:`EndsContext`).

    Raises
    ------
    CalibrationError
        With fewer than :data:`MIN_WINDOWS` windows in all.
    """
    energy = np.asarray(energy, dtype=np.float64).ravel()
    intensity = np.asarray(intensity, dtype=np.float64).ravel()
    texture = np.asarray(texture, dtype=np.float64).ravel()
    if len(energy) < MIN_WINDOWS:
        raise CalibrationError(
            f"only {len(energy)} genuine tissue windows; calibration needs at least "
            f"{MIN_WINDOWS} (give it more genuine slices)"
        )
    logs = np.log10(energy + energy_floor)
    intensity_edges = np.linspace(0.0, 1.0, INTENSITY_BINS + 1)
    inner = np.quantile(texture, np.linspace(0, 1, TEXTURE_BINS + 1)[1:-1])
    texture_edges = np.concatenate([[0.0], np.maximum.accumulate(inner), [TEXTURE_TOP]])
    global_stats = _robust(logs)
    context = None
    if context_differences is not None and np.size(context_differences) >= MIN_WINDOWS:
        context = ResidualContext(*_robust(np.asarray(context_differences, np.float64)))
    image = None
    if image_context_ratios is not None and np.size(image_context_ratios) >= MIN_WINDOWS:
        ratios = np.asarray(image_context_ratios, dtype=np.float64).ravel()
        image_floor = max(float(np.median(ratios)), IMAGE_RATIO_FLOOR)
        image = ImageContext(image_floor, *_robust(np.log10(ratios + image_floor)))
    scale = None
    if (
        context is not None
        and image is not None
        and np.size(context_slice_maxima) >= MIN_SLICES
        and np.size(image_context_slice_maxima) >= MIN_SLICES
    ):
        residual = (np.asarray(context_slice_maxima, np.float64) - context.centre) / context.spread
        pixels = image.surprise(np.asarray(image_context_slice_maxima, np.float64))
        r_centre, r_spread = _robust(residual)
        p_centre, p_spread = _robust(pixels)
        scale = SliceScale(
            r_centre, max(r_spread, MIN_SLICE_SPREAD), p_centre, max(p_spread, MIN_SLICE_SPREAD)
        )
    ends = None
    if (
        context is not None
        and np.size(ends_differences) >= MIN_WINDOWS
        and np.size(ends_slice_maxima) >= MIN_SLICES
    ):
        ends_context = ResidualContext(*_robust(np.asarray(ends_differences, np.float64)))
        maxima = np.asarray(ends_slice_maxima, np.float64)
        slice_centre, slice_spread = _robust((maxima - ends_context.centre) / ends_context.spread)
        ends = EndsContext(ends_context, slice_centre, max(slice_spread, MIN_SLICE_SPREAD))
    centre = np.empty((INTENSITY_BINS, TEXTURE_BINS))
    spread = np.empty_like(centre)
    counts = np.zeros((INTENSITY_BINS, TEXTURE_BINS), dtype=int)
    rows = _bin(intensity_edges, intensity)
    cols = _bin(texture_edges, texture)
    for row in range(INTENSITY_BINS):
        in_row = rows == row
        row_stats = _robust(logs[in_row]) if in_row.sum() >= MIN_WINDOWS else global_stats
        for col in range(TEXTURE_BINS):
            in_cell = in_row & (cols == col)
            counts[row, col] = int(in_cell.sum())
            stats = _robust(logs[in_cell]) if counts[row, col] >= MIN_WINDOWS else row_stats
            centre[row, col], spread[row, col] = stats
    return Calibration(
        model_sha256=model_sha256,
        window=window,
        stride=stride,
        tissue=TissueTable(
            intensity_edges=intensity_edges.tolist(),
            texture_edges=texture_edges.tolist(),
            centre=centre.tolist(),
            spread=spread.tolist(),
            counts=counts.tolist(),
        ),
        windows=len(energy),
        slices=slices,
        source=dict(source or {}),
        energy_floor=float(energy_floor),
        context=context,
        image_context=image,
        slice_scale=scale,
        ends=ends,
        tiles=tiles,
    )


def energy_levels(energy: np.ndarray, floor: float) -> np.ndarray:
    """``log10(E + floor)`` of window energies (model space r^2, >= 0), float64: what
    series context compares windows by (:meth:`Calibration.levels`)."""
    return np.log10(np.asarray(energy, dtype=np.float64) + floor)


def context_deviation(
    levels: np.ndarray, neighbours: list[np.ndarray], one_sided: bool = False
) -> np.ndarray:
    """Per window, how far ``levels`` (log10 energies, [ny, nx]) stand above every
    neighbour's, or below every neighbour's, whichever is larger (decades; negative when
    the window lies between its neighbours).  With one neighbour: the absolute difference.
    A slice next to an edited one matches its other neighbour, so it is not lifted.

    ``one_sided``: the two neighbours lie on one side of the slice, nearest first (a
    series' end): the slice is judged against the range from the nearest, ``n1``, to
    ``3 n1 - 2 n2``, centred on their linear prediction ``2 n1 - n2`` as an interior slice's
    range is centred on the mean of the slices around it, so a steady trend does not lift
    a series' end slices."""
    if one_sided and len(neighbours) == 2:
        nearest, following = neighbours
        neighbours = [nearest, 3.0 * nearest - 2.0 * following]
    above = np.min([levels - other for other in neighbours], axis=0)
    below = np.min([other - levels for other in neighbours], axis=0)
    return np.maximum(above, below)


def genuine_floor(energy: np.ndarray) -> float:
    """The energy floor of a calibration: the median energy of genuine windows (model
    space r^2), at least :data:`ENERGY_FLOOR`."""
    energy = np.asarray(energy, dtype=np.float64)
    return max(float(np.median(energy)), ENERGY_FLOOR) if energy.size else ENERGY_FLOOR


def _bin(edges: list[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value (values outside the edges go to the first / last bin)."""
    found = np.searchsorted(np.asarray(edges), values, side="right") - 1
    return np.clip(found, 0, len(edges) - 2)


def _robust(logs: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x MAD) of log energies; the spread is at least :data:`MIN_SPREAD`."""
    centre = float(np.median(logs))
    spread = float(MAD_TO_SD * np.median(np.abs(logs - centre)))
    return centre, max(spread, MIN_SPREAD)
