"""The scan engine: every slice of a discovered study, tiled, scored, summarised.

Streaming: one slice is decoded, windowed, tiled, scored and released before the
next; only small per-slice results are kept, plus the image and heat map of the
``keep_views`` highest-scoring slices (for overlays and previews).  Memory does not
grow with the number of slices.

A slice that cannot be read makes its file an error row; the scan goes on.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np

from .pixels import SliceReadError, read_slice
from .scorer import Scorer
from .slice_scoring import ImageScores, ScanSettings, SliceView, score_image
from .study import Discovery, FileRecord, Series, SliceRef, SliceResult
from .windowing import modality_mismatch, to_model_range

__all__ = ["ScanOutcome", "ScanProgress", "ScanSettings", "SliceView", "scan"]


@dataclass(frozen=True)
class ScanProgress:
    """Posted after every slice; ``result`` is that slice's result (``None`` when it had
    no body to score or could not be read)."""

    slices_done: int
    slices_total: int
    tiles_scored: int
    tiles_skipped: int
    files_failed: int
    current: str
    result: SliceResult | None = None


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
    skip: Collection[tuple[str, int]] = (),
) -> ScanOutcome:
    """Score every slice of every series that fits the model.

    Series whose modality does not fit the model are not scored: their files are
    marked skipped with the reason.  ``should_stop`` is checked before each slice;
    when it returns true the scan ends early with ``cancelled`` set.  ``skip`` lists
    ``(series key, slice index)`` pairs already scored (to resume a cancelled scan):
    they are counted as done and not scored again.
    """
    settings = settings or ScanSettings()
    run = _Run(discovery, scorer, settings, on_progress)
    skip = set(skip)
    for series in discovery.series:
        reason = modality_mismatch(series, scorer.card.profile)
        if reason:
            run.mark_files(series, "skipped", reason)
    fitting = [s for s in discovery.series if not modality_mismatch(s, scorer.card.profile)]
    run.outcome.slices_total = sum(len(s.slices) for s in fitting)
    for series in fitting:
        for index, ref in enumerate(series.slices):
            if should_stop is not None and should_stop():
                run.outcome.cancelled = True
                break
            if (series.key, index) in skip:
                run.count_skipped(ref)
                continue
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
        result = None
        try:
            pixels = read_slice(series, ref)
        except SliceReadError as err:
            where = f"frame {ref.frame}: " if ref.frame is not None else ""
            self.errors.setdefault(str(ref.path), f"{where}{err}")
        else:
            image = to_model_range(pixels, series, ref, self.scorer.card.profile)
            del pixels
            result = self._score_image(series, index, image)
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
                    result=result,
                )
            )

    def count_skipped(self, ref: SliceRef) -> None:
        """A slice scored by an earlier run: done, not scored again."""
        self.outcome.slices_done += 1
        self.slices_left[str(ref.path)] -= 1

    def _score_image(self, series: Series, index: int, image: np.ndarray) -> SliceResult | None:
        scores = score_image(image, self.scorer, self.settings)
        self.outcome.tiles_skipped += scores.tiles_skipped
        if not scores.origins:
            self.outcome.background_slices += 1
            return None
        self.outcome.tiles_scored += len(scores.origins)
        result = scores.slice_result(series.key, index)
        self.outcome.results.append(result)
        self._keep_view(result, image, scores)
        return result

    def _keep_view(self, result: SliceResult, image: np.ndarray, scores: ImageScores) -> None:
        limit = self.settings.keep_views
        if limit <= 0 or (len(self._heap) >= limit and result.score <= self._heap[0][0]):
            return
        view = SliceView(image=image, heat=scores.heat_map(image.shape))
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
