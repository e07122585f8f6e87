"""The scan engine: every slice of a discovered study, tiled, scored, summarised.

A pipeline: worker threads read, decode, window and tile the next slices while the
scorer runs (:class:`_Prefetch`); the tiles of consecutive slices are packed into full
batches of the scorer's size (:class:`_TileBatcher`), so a GPU gets batches of hundreds
of patches whatever the slice's size.  Slices are finished in study order.  Only
small per-slice results are kept, plus the image and heat map of the ``overlays``
highest-scoring slices (for overlays and previews); at most a few batches of slices
are in flight, so memory does not grow with the number of slices.

A slice that cannot be read makes its file an error row; the scan goes on.

Series context: with a slice score that judges slices with their neighbours, the
slices pass through a :class:`btd_core.scoring.series_context.SeriesStream`: a slice is
finished once the two slices after it in its series have been judged (or the series
ended), so its progress report and result come two slices later; two slices' images
wait at a time.  The same holds when a callback wants each verdict with its neighbours'
(calibration).
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from btd_core.engine.scorer import Scorer
from btd_core.findings.ranking import rank_key
from btd_core.scoring.series_context import Finished, SeriesStream
from btd_core.scoring.strategy import (
    Neighbours,
    SliceScore,
    SliceVerdict,
    WindowVerdict,
    resolve_slice_score,
)
from btd_core.scoring.tiles import (
    ImageScores,
    ScanSettings,
    SliceView,
    TileSet,
    score_tiles,
    select_tiles,
)
from btd_core.slices.windowing import modality_mismatch, to_model_range
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Discovery, FileRecord, Series, SliceRef, SliceResult

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
    key: tuple[str, int] | None = None


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
VerdictCallback = Callable[[WindowVerdict, Neighbours], None]
"""Receives a judged slice's own verdict and those of its neighbours in the series."""
StopCheck = Callable[[], bool]


def scan(
    discovery: Discovery,
    scorer: Scorer,
    settings: ScanSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    skip: Collection[tuple[str, int]] = (),
    slice_score: SliceScore | None = None,
    on_verdict: VerdictCallback | None = None,
) -> ScanOutcome:
    """Score every slice of every series that fits the model.

    Series whose modality does not fit the model are not scored: their files are
    marked skipped with the reason.  ``should_stop`` is checked before each slice;
    when it returns true the scan ends early with ``cancelled`` set.  ``skip`` lists
    ``(series key, slice index)`` pairs already scored (to resume a cancelled scan):
    they are counted as done and not scored again.

    ``slice_score`` turns each slice's scored tiles into its score
    (:class:`btd_core.scoring.strategy.SliceScore`); by default ``auto`` for the scorer's
    model (calibrated when its sidecar calibration exists, else local).  In the local
    modes ``on_verdict`` receives every scored slice's
    :class:`btd_core.scoring.strategy.SliceVerdict` with its neighbours' (chosen as for
    series context, :mod:`btd_core.scoring.series_context`), in study order
    (calibration collects their windows and compares them with their neighbours).

    Raises
    ------
    btd_core.scoring.strategy.ScoreModeError
        Only when ``slice_score`` is not given and the model's sidecar is unusable.
    btd_core.scoring.tiles.CoverageError
        When the settings' coverage does not fit the model file or the calibration.
    """
    if slice_score is None:
        slice_score = resolve_slice_score(
            model_path=scorer.model_path, model_sha256=scorer.model_sha256
        )
    settings = (settings or ScanSettings()).resolved(scorer.card, slice_score.calibrated_with)
    run = _Run(discovery, scorer, settings, slice_score, on_progress, on_verdict)
    skip = set(skip)
    for series in discovery.series:
        reason = modality_mismatch(series, scorer.card.profile)
        if reason:
            run.mark_files(series, "skipped", reason)
    fitting = [s for s in discovery.series if not modality_mismatch(s, scorer.card.profile)]
    run.outcome.slices_total = sum(len(s.slices) for s in fitting)
    jobs = []
    for series in fitting:
        for index, ref in enumerate(series.slices):
            if (series.key, index) in skip:
                run.count_skipped(ref)
            else:
                jobs.append((series, index, ref))
    size = scorer.card.patch_size
    batcher = _TileBatcher(scorer, run.finish_slice)
    with _Prefetch(jobs, scorer, settings, _workers(settings), batcher.depth(size)) as ahead:
        for prepared in ahead:
            if should_stop is not None and should_stop():
                run.outcome.cancelled = True
                break
            if prepared.error is not None:
                batcher.flush()  # keep the study order of progress messages
                run.finish_slice(prepared, None)
            else:
                batcher.add(prepared)
        batcher.flush()
    run.flush_context()
    for series in fitting:
        run.finish_series(series)
    if run.outcome.cancelled:
        for record in discovery.files:
            if record.status == "pending":
                record.status, record.reason = "skipped", "not scored: the scan was cancelled"
    run.outcome.views = run.kept_views()
    return run.outcome


def _workers(settings: ScanSettings) -> int:
    return settings.workers or min(os.cpu_count() or 1, 8)


@dataclass
class _Prepared:
    """One slice read, windowed and tiled by a worker, or why it could not be."""

    series: Series
    index: int
    ref: SliceRef
    image: np.ndarray | None = None
    tiles: TileSet | None = None
    error: str | None = None


def _prepare(
    series: Series, index: int, ref: SliceRef, scorer: Scorer, settings: ScanSettings
) -> _Prepared:
    """Read, decode, window and tile one slice (runs in a worker thread)."""
    try:
        pixels = read_slice(series, ref)
    except SliceReadError as err:
        where = f"frame {ref.frame}: " if ref.frame is not None else ""
        return _Prepared(series, index, ref, error=f"{where}{err}")
    image = to_model_range(pixels, series, ref, scorer.card.profile)
    del pixels
    card = scorer.card
    tiles = select_tiles(image, card.patch_size, settings, card.side_multiple)
    return _Prepared(series, index, ref, image=image, tiles=tiles)


class _Prefetch:
    """Prepared slices in study order, made by a thread pool at most ``depth`` ahead."""

    def __init__(
        self,
        jobs: list[tuple[Series, int, SliceRef]],
        scorer: Scorer,
        settings: ScanSettings,
        workers: int,
        depth: int,
    ) -> None:
        self._jobs = iter(jobs)
        self._scorer = scorer
        self._settings = settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="btd-read")
        self._depth = max(depth, workers)
        self._queue: deque[Future[_Prepared]] = deque()

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self) -> Iterator[_Prepared]:
        self._top_up()
        while self._queue:
            prepared = self._queue.popleft().result()
            self._top_up()
            yield prepared

    def _top_up(self) -> None:
        while len(self._queue) < self._depth:
            job = next(self._jobs, None)
            if job is None:
                return
            self._queue.append(self._pool.submit(_prepare, *job, self._scorer, self._settings))


class _TileBatcher:
    """Packs the tiles of consecutive slices into full scorer batches.

    A slice may be split over two batches; it is finished (``done(prepared, scores)``)
    once all its tiles are scored, in the order slices were added.  A slice in body
    coverage is scored in its own passes (:func:`btd_core.scoring.tiles.score_tiles`).
    """

    def __init__(self, scorer: Scorer, done: Callable[[_Prepared, ImageScores | None], None]):
        self._scorer = scorer
        self._done = done
        self._pending: deque[_Pending] = deque()
        self._unscored = 0

    def depth(self, size: int) -> int:
        """Slices to prepare ahead: enough for two full batches of 512 x 512 slices."""
        tiles_per_slice = max((512 // max(size // 2, 1)) ** 2 // 2, 1)
        return max(2 * self._scorer.batch_size // tiles_per_slice + 2, 4)

    def add(self, prepared: _Prepared) -> None:
        assert prepared.tiles is not None
        if prepared.tiles.passes is not None:
            # body coverage: the slice's own passes, after the slices before it
            self.flush()
            self._done(prepared, score_tiles(prepared.tiles, self._scorer))
            return
        self._pending.append(_Pending(prepared))
        self._unscored += len(prepared.tiles.origins)
        while self._unscored >= self._scorer.batch_size:
            self._score(self._scorer.batch_size)

    def flush(self) -> None:
        """Score whatever is left and finish every pending slice."""
        if self._unscored:
            self._score(self._unscored)
        self._finish_ready()

    def _score(self, count: int) -> None:
        pieces = []
        taken = 0
        for item in self._pending:
            if taken == count:
                break
            take = min(item.left, count - taken)
            if take:
                pieces.append((item, item.filled, item.filled + take))
                taken += take
        tiles = np.concatenate([item.tiles[a:b] for item, a, b in pieces])
        scored = self._scorer.score(tiles, with_residuals=True)
        assert scored.residuals is not None
        offset = 0
        for item, a, b in pieces:
            item.scores[a:b] = scored.scores[offset : offset + b - a]
            item.residuals[a:b] = scored.residuals[offset : offset + b - a]
            item.filled = b
            offset += b - a
        self._unscored -= count
        self._finish_ready()

    def _finish_ready(self) -> None:
        while self._pending and self._pending[0].left == 0:
            item = self._pending.popleft()
            tile_set = item.prepared.tiles
            assert tile_set is not None
            self._done(item.prepared, ImageScores.of(tile_set, item.scores, item.residuals))


class _Pending:
    """A slice whose tiles are (partly) waiting for the scorer."""

    def __init__(self, prepared: _Prepared) -> None:
        assert prepared.tiles is not None
        self.prepared = prepared
        self.tiles = prepared.tiles.tiles
        n, size = len(self.tiles), prepared.tiles.tile_size
        self.scores = np.zeros(n, np.float32)
        self.residuals = np.zeros((n, 1, size, size), np.float32)
        self.filled = 0

    @property
    def left(self) -> int:
        return len(self.tiles) - self.filled


@dataclass(frozen=True)
class _Kept:
    """A kept view, ordered so that the heap's first item is the lowest-ranked one."""

    key: tuple[float, str, int]
    view: SliceView | None

    def __lt__(self, other: _Kept) -> bool:
        return self.key > other.key

    def __gt__(self, other: _Kept) -> bool:
        return self.key < other.key


@dataclass
class _Judged:
    """A slice judged on its own, waiting for series context: its image while it has a
    verdict (``None``: unreadable or nothing to score)."""

    prepared: _Prepared
    image: np.ndarray | None = None


class _Run:
    """State of one scan: per-file errors, kept views, counters."""

    def __init__(
        self,
        discovery: Discovery,
        scorer: Scorer,
        settings: ScanSettings,
        slice_score: SliceScore,
        on_progress: ProgressCallback | None,
        on_verdict: VerdictCallback | None = None,
    ) -> None:
        self.scorer = scorer
        self.slice_score = slice_score
        self.on_verdict = on_verdict
        self.settings = settings
        self.on_progress = on_progress
        self.records: dict[str, FileRecord] = {str(r.path): r for r in discovery.files}
        self.errors: dict[str, str] = {}
        self.slices_left: dict[str, int] = {}
        for series in discovery.series:
            for ref in series.slices:
                self.slices_left[str(ref.path)] = self.slices_left.get(str(ref.path), 0) + 1
        self.outcome = ScanOutcome()
        self._heap: list[_Kept] = []  # the kept views, the lowest-ranked first
        self._stream: SeriesStream[_Judged] = SeriesStream(
            slice_score, self._finish, with_neighbours=on_verdict is not None
        )

    def finish_slice(self, prepared: _Prepared, scores: ImageScores | None) -> None:
        """Judge one slice (scored, background only, or unreadable) and hand it to the
        series context, which finishes it once its neighbours are known."""
        judged = _Judged(prepared)
        verdict = None
        if prepared.error is not None:
            self.errors.setdefault(str(prepared.ref.path), prepared.error)
        elif scores is not None:
            assert prepared.image is not None
            verdict = self._judge(prepared.series, prepared.index, prepared.image, scores)
            judged.image = prepared.image if verdict is not None else None
        prepared.image = prepared.tiles = None  # only the verdict and image wait
        self._stream.push(prepared.series, prepared.index, verdict, judged)

    def flush_context(self) -> None:
        """Finish every slice still waiting for neighbours (the series or the scan ended)."""
        self._stream.flush()

    def _finish(self, finished: Finished[_Judged]) -> None:
        """Record one slice judged in its series context and post progress."""
        judged = finished.payload
        prepared = judged.prepared
        ref = prepared.ref
        result = None
        if finished.own is not None and finished.judged is not None:
            assert judged.image is not None
            if isinstance(finished.own, WindowVerdict) and self.on_verdict is not None:
                self.on_verdict(finished.own, finished.neighbours)
            result = self._record(finished.judged, judged.image)
        judged.image = None
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
                    key=(prepared.series.key, prepared.index),
                )
            )

    def count_skipped(self, ref: SliceRef) -> None:
        """A slice scored by an earlier run: done, not scored again."""
        self.outcome.slices_done += 1
        self.slices_left[str(ref.path)] -= 1

    def _judge(
        self, series: Series, index: int, image: np.ndarray, scores: ImageScores
    ) -> SliceVerdict | None:
        self.outcome.tiles_skipped += scores.tiles_skipped
        if not scores.origins:
            self.outcome.background_slices += 1
            return None
        self.outcome.tiles_scored += len(scores.origins)
        verdict = self.slice_score.judge(series.key, index, image, scores)
        if verdict is None:
            self.outcome.background_slices += 1
        return verdict

    def _record(self, verdict: SliceVerdict, image: np.ndarray) -> SliceResult:
        self.outcome.results.append(verdict.result)
        self._keep_view(verdict.result, image, verdict.heat)
        return verdict.result

    def _keep_view(
        self, result: SliceResult, image: np.ndarray, heat: Callable[[], np.ndarray]
    ) -> None:
        """Keep the slice's image and heat map if it is among the top; the heat map is
        made only then."""
        limit = self.settings.overlays
        key = rank_key(result)
        if limit <= 0 or (len(self._heap) >= limit and not _Kept(key, None) > self._heap[0]):
            return
        item = _Kept(key, SliceView(image=image, heat=heat()))
        if len(self._heap) < limit:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def kept_views(self) -> dict[tuple[str, int], SliceView]:
        return {(kept.key[1], kept.key[2]): kept.view for kept in self._heap if kept.view}

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
