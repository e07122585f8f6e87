"""The scan engine: every slice of a discovered study, tiled, scored, summarised.

Streaming: one slice is decoded, windowed, tiled, scored and released before the
next; only small per-slice results are kept, plus the image and heat map of the
``keep_views`` highest-scoring slices (for overlays and previews).  Memory does not
grow with the number of slices.

A slice that cannot be read makes its file an error row; the scan goes on.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .pixels import SliceReadError, read_slice
from .scorer import Scorer
from .study import Discovery, FileRecord, Series, SliceRef, SliceResult
from .tiling import (
    BODY_FRACTION,
    BODY_LEVEL,
    HeatMap,
    body_mask,
    centred_patch_origin,
    crop_patch,
    extract_tiles,
    tile_grid,
)
from .windowing import modality_mismatch, to_model_range


@dataclass(frozen=True)
class ScanSettings:
    """How slices are covered.

    Attributes
    ----------
    stride:
        Pixels between tile starts; ``None`` means S / 2 (tiles overlap by half).
    body_level, body_fraction:
        Body mask: a tile is scored when at least ``body_fraction`` (0..1) of its pixels
        are above ``body_level`` (windowed [0, 1]); see :mod:`btd_core.tiling`.
    keep_views:
        How many of the highest-scoring slices keep their windowed image and heat map.
    patch_at:
        The paper's mode: ``(x, y)`` (column, row, pixels) of the one patch to score
        per slice, centred there; no tiling, no body mask.
    """

    stride: int | None = None
    body_level: float = BODY_LEVEL
    body_fraction: float = BODY_FRACTION
    keep_views: int = 10
    patch_at: tuple[int, int] | None = None

    def stride_for(self, size: int) -> int:
        """The stride in pixels for tiles of ``size``."""
        return self.stride if self.stride else max(size // 2, 1)


@dataclass(frozen=True)
class ScanProgress:
    """Posted after every slice."""

    slices_done: int
    slices_total: int
    tiles_scored: int
    tiles_skipped: int
    files_failed: int
    current: str


@dataclass(frozen=True)
class SliceView:
    """A kept slice: its windowed image [H, W] in [0, 1] and heat map [H, W] (mean r^2)."""

    image: np.ndarray
    heat: np.ndarray


@dataclass
class ScanOutcome:
    """What a scan produced; the discovery's file records are updated in place."""

    results: list[SliceResult] = field(default_factory=list)
    views: dict[tuple[str, int], SliceView] = field(default_factory=dict)
    slices_total: int = 0
    slices_done: int = 0
    background_slices: int = 0
    tiles_scored: int = 0
    tiles_skipped: int = 0
    cancelled: bool = False


ProgressCallback = Callable[[ScanProgress], None]
StopCheck = Callable[[], bool]


def scan(
    discovery: Discovery,
    scorer: Scorer,
    settings: ScanSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> ScanOutcome:
    """Score every slice of every series that fits the model.

    Series whose modality does not fit the model are not scored: their files are
    marked skipped with the reason.  ``should_stop`` is checked before each slice;
    when it returns true the scan ends early with ``cancelled`` set.
    """
    settings = settings or ScanSettings()
    run = _Run(discovery, scorer, settings, on_progress)
    for series in discovery.series:
        reason = modality_mismatch(series, scorer.card)
        if reason:
            run.mark_files(series, "skipped", reason)
    fitting = [s for s in discovery.series if not modality_mismatch(s, scorer.card)]
    run.outcome.slices_total = sum(len(s.slices) for s in fitting)
    for series in fitting:
        for index, ref in enumerate(series.slices):
            if should_stop is not None and should_stop():
                run.outcome.cancelled = True
                break
            run.score_slice(series, index, ref)
        run.finish_series(series)
        if run.outcome.cancelled:
            break
    if run.outcome.cancelled:
        for record in discovery.files:
            if record.status == "pending":
                record.status, record.reason = "skipped", "not scored: the scan was cancelled"
    run.outcome.views = run.kept_views()
    return run.outcome


class _Run:
    """State of one scan: per-file errors, kept views, counters."""

    def __init__(
        self,
        discovery: Discovery,
        scorer: Scorer,
        settings: ScanSettings,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.scorer = scorer
        self.settings = settings
        self.on_progress = on_progress
        self.records: dict[str, FileRecord] = {str(r.path): r for r in discovery.files}
        self.errors: dict[str, str] = {}
        self.slices_left: dict[str, int] = {}
        for series in discovery.series:
            for ref in series.slices:
                self.slices_left[str(ref.path)] = self.slices_left.get(str(ref.path), 0) + 1
        self.outcome = ScanOutcome()
        self._heap: list[tuple[float, int, tuple[str, int], SliceView]] = []
        self._counter = 0

    def score_slice(self, series: Series, index: int, ref: SliceRef) -> None:
        try:
            pixels = read_slice(series, ref)
        except SliceReadError as err:
            where = f"frame {ref.frame}: " if ref.frame is not None else ""
            self.errors.setdefault(str(ref.path), f"{where}{err}")
        else:
            image = to_model_range(pixels, series, ref, self.scorer.card)
            del pixels
            self._score_image(series, index, image)
        self.outcome.slices_done += 1
        self.slices_left[str(ref.path)] -= 1
        if self.on_progress is not None:
            self.on_progress(
                ScanProgress(
                    slices_done=self.outcome.slices_done,
                    slices_total=self.outcome.slices_total,
                    tiles_scored=self.outcome.tiles_scored,
                    tiles_skipped=self.outcome.tiles_skipped,
                    files_failed=len(self.errors),
                    current=ref.path.name,
                )
            )

    def _score_image(self, series: Series, index: int, image: np.ndarray) -> None:
        size = self.scorer.card.patch_size
        if self.settings.patch_at is not None:
            x, y = self.settings.patch_at
            origins = [centred_patch_origin(y, x, size)]
            tiles = np.stack([crop_patch(image, oy, ox, size) for oy, ox in origins])
            keep = np.ones(1, dtype=bool)
        else:
            grid = tile_grid(image.shape[0], image.shape[1], size, self.settings.stride_for(size))
            origins = grid.origins
            tiles = extract_tiles(image, grid)
            keep = body_mask(tiles, self.settings.body_level, self.settings.body_fraction)
        self.outcome.tiles_skipped += int((~keep).sum())
        if not keep.any():
            self.outcome.background_slices += 1
            return
        scored = self.scorer.score(tiles[keep], with_residuals=True)
        assert scored.residuals is not None
        kept_origins = [o for o, k in zip(origins, keep, strict=True) if k]
        self.outcome.tiles_scored += len(kept_origins)
        worst = int(np.argmax(scored.scores))
        result = SliceResult(
            series_key=series.key,
            slice_index=index,
            score=float(scored.scores[worst]),
            tile_x=kept_origins[worst][1],
            tile_y=kept_origins[worst][0],
            tile_size=size,
            tiles_scored=len(kept_origins),
            tiles_skipped=int((~keep).sum()),
        )
        self.outcome.results.append(result)
        self._keep_view(result, image, kept_origins, scored.residuals)

    def _keep_view(
        self,
        result: SliceResult,
        image: np.ndarray,
        origins: list[tuple[int, int]],
        residuals: np.ndarray,
    ) -> None:
        limit = self.settings.keep_views
        if limit <= 0 or (len(self._heap) >= limit and result.score <= self._heap[0][0]):
            return
        size = self.scorer.card.patch_size
        heat = HeatMap(*image.shape, margin=(size - self.settings.stride_for(size)) // 2)
        for (y, x), residual in zip(origins, residuals, strict=True):
            heat.add(y, x, residual[0])
        view = SliceView(image=image, heat=heat.values())
        self._counter += 1
        item = (result.score, self._counter, (result.series_key, result.slice_index), view)
        if len(self._heap) < limit:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def kept_views(self) -> dict[tuple[str, int], SliceView]:
        return {key: view for _, _, key, view in self._heap}

    def finish_series(self, series: Series) -> None:
        """Settle the status of the series' files once all its slices were tried."""
        for path in {str(ref.path) for ref in series.slices}:
            record = self.records.get(path)
            if record is None or record.status != "pending":
                continue
            if path in self.errors:
                record.status, record.reason = "error", self.errors[path]
            elif self.slices_left.get(path, 0) == 0:
                record.status, record.reason = "scored", ""

    def mark_files(self, series: Series, status: str, reason: str) -> None:
        for path in {str(ref.path) for ref in series.slices}:
            record = self.records.get(path)
            if record is not None and record.status == "pending":
                record.status, record.reason = status, reason  # type: ignore[assignment]
