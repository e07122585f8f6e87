"""Bookkeeping of an audit's scan across runs (start, cancel, resume), on the app's thread.

:func:`btd_core.audit.pipeline.scan` returns one :class:`~btd_core.audit.pipeline.ScanOutcome` per run.  The
app may cancel a run and resume it later (``skip=`` the slices already tried), so this
module keeps what the runs produced together: the results, which slices were tried,
counters, the kept views, speed and time left; and it builds the merged outcome that
the report export needs.  It holds no widgets and starts no threads (the app's
``@work(thread=True)`` method calls ``scan``); every method is called on the app's
thread with the messages the worker posted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from btd_core.slices.windowing import modality_mismatch

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanOutcome, ScanProgress
    from btd_core.engine.model_card import ModelCard
    from btd_core.scoring.tiles import SliceView
    from btd_core.study.records import Discovery, Series, SliceResult

CANCELLED_REASON = "not scored: the scan was cancelled"
"""What :func:`btd_core.audit.pipeline.scan` writes into pending file records when cancelled."""

SliceKey = tuple[str, int]


def mismatch(series: Series, card: ModelCard) -> str:
    """Why the scan leaves ``series`` out for this model (its modality), or ``""``."""
    return modality_mismatch(series, card.profile)


@dataclass
class ScanBook:
    """Everything the scan runs of one audit produced, merged.

    ``order`` is the order in which :func:`~btd_core.audit.pipeline.scan` visits slices (series that
    fit the model, slices in order), so the n-th progress report is ``order[n - 1]``.
    """

    discovery: Discovery
    card: ModelCard
    keep_views: int = 10
    order: list[SliceKey] = field(default_factory=list)
    results: list[SliceResult] = field(default_factory=list)
    views: dict[SliceKey, SliceView] = field(default_factory=dict)
    tried: int = 0
    failed_positions: set[int] = field(default_factory=set)
    background_slices: int = 0
    tiles_scored: int = 0
    tiles_skipped: int = 0
    cancelled: bool = False
    runs: int = 0
    started_utc: datetime | None = None
    series_tried: dict[str, int] = field(default_factory=dict)
    _run_clock: float = 0.0
    _run_base: int | None = None
    _run_failed: int = 0
    _rate: float = 0.0

    def __post_init__(self) -> None:
        if not self.order:
            self.order = [
                (series.key, index)
                for series in self.discovery.series
                if not mismatch(series, self.card)
                for index in range(len(series.slices))
            ]

    @property
    def total(self) -> int:
        """Slices the scan will try (those of series that fit the model)."""
        return len(self.order)

    @property
    def complete(self) -> bool:
        """Every slice was tried and the last run was not cancelled."""
        return self.runs > 0 and not self.cancelled and self.tried >= self.total

    def begin_run(self, started_utc: datetime) -> set[SliceKey]:
        """Prepare a run; return the ``skip`` set for :func:`~btd_core.audit.pipeline.scan`.

        Slices tried by earlier runs are skipped, except those where a file failed (so
        that the new run records the failure again).  File records that a cancelled run
        left as "skipped: cancelled" become pending again, so that the new run settles them.
        """
        if self.started_utc is None:
            self.started_utc = started_utc
        if self.runs:
            for record in self.discovery.files:
                if record.status == "skipped" and record.reason == CANCELLED_REASON:
                    record.status, record.reason = "pending", ""
        self.runs += 1
        self.cancelled = False
        self._run_clock, self._run_base, self._run_failed = time.monotonic(), None, 0
        return {
            key for i, key in enumerate(self.order[: self.tried]) if i not in self.failed_positions
        }

    def record(self, progress: ScanProgress) -> SliceKey | None:
        """Take one progress report; return the slice it was about (``None`` if unknown)."""
        position = progress.slices_done - 1
        if self._run_base is None:
            self._run_base = position
        if progress.files_failed > self._run_failed:
            self.failed_positions.add(position)
        else:
            self.failed_positions.discard(position)
        self._run_failed = progress.files_failed
        new = position >= self.tried
        self.tried = max(self.tried, progress.slices_done)
        if progress.result is not None:
            self.results.append(progress.result)
        elapsed = time.monotonic() - self._run_clock
        scored = progress.slices_done - self._run_base
        self._rate = scored / elapsed if elapsed > 0 else 0.0
        if not 0 <= position < len(self.order):
            return None
        key = self.order[position]
        if new:
            self.series_tried[key[0]] = self.series_tried.get(key[0], 0) + 1
        return key

    def finish(self, outcome: ScanOutcome) -> None:
        """Take a run's outcome: counters, cancellation, kept views (best ``keep_views``)."""
        self.cancelled = outcome.cancelled
        self.background_slices += outcome.background_slices
        self.tiles_scored += outcome.tiles_scored
        self.tiles_skipped += outcome.tiles_skipped
        self.views.update(outcome.views)
        if len(self.views) > self.keep_views:
            score = {(r.series_key, r.slice_index): r.score for r in self.results}
            best = sorted(self.views, key=lambda k: score.get(k, 0.0), reverse=True)
            self.views = {k: self.views[k] for k in best[: self.keep_views]}

    def rate(self) -> float:
        """Slices per second in the current (or last) run."""
        return self._rate

    def seconds_left(self) -> float | None:
        """Estimated seconds to the end, or ``None`` before the speed is known."""
        if self._rate <= 0:
            return None
        return (self.total - self.tried) / self._rate

    def merged_outcome(self) -> ScanOutcome:
        """One :class:`~btd_core.audit.pipeline.ScanOutcome` for all runs so far (for the report)."""
        from btd_core.audit.pipeline import ScanOutcome

        return ScanOutcome(
            results=list(self.results),
            views=dict(self.views),
            slices_total=self.total,
            slices_done=self.tried,
            background_slices=self.background_slices,
            tiles_scored=self.tiles_scored,
            tiles_skipped=self.tiles_skipped,
            cancelled=self.cancelled or self.tried < self.total,
        )

    def result_for(self, key: SliceKey) -> SliceResult | None:
        """The scan's result for one slice, if it was scored."""
        for result in self.results:
            if (result.series_key, result.slice_index) == key:
                return result
        return None


def format_duration(seconds: float | None) -> str:
    """``"1:02:03"``, ``"2:03"`` or ``"?"``."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
