"""Bookkeeping of an audit's scan across runs (start, cancel, resume), on the app's thread.

:func:`btd_core.audit.pipeline.scan` returns one :class:`~btd_core.audit.pipeline.ScanOutcome`
per run.  The app may cancel a run and resume it later (``skip=`` the slices already
tried), so this module keeps what the runs produced together: the results, which slices
were tried, counters, the kept views, speed and time left; and it builds the merged
outcome that the report export needs.  Every progress report names its slice
(``ScanProgress.key``), so the book never has to know the order the scan visits slices in.
It holds no widgets and starts no threads; every method is called on the app's thread
with what the scan worker posted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from btd_core.slices.windowing import modality_mismatch
from btd_tui.state import SliceKey

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanOutcome, ScanProgress
    from btd_core.engine.model_card import ModelCard
    from btd_core.scoring.tiles import SliceView
    from btd_core.study.records import Discovery, Series, SliceResult

CANCELLED_REASON = "not scored: the scan was cancelled"
"""What :func:`btd_core.audit.pipeline.scan` writes into pending file records when cancelled."""


def mismatch(series: Series, card: ModelCard) -> str:
    """Why the scan leaves ``series`` out for this model (its modality), or ``""``."""
    return modality_mismatch(series, card.profile)


@dataclass
class ScanBook:
    """Everything the scan runs of one audit produced, merged.

    Attributes
    ----------
    overlays:
        How many of the best slices keep their image and heat map (the scan settings'
        :attr:`~btd_core.scoring.tiles.ScanSettings.overlays`).
    tried_keys:
        Every slice some run tried (scored, without body, or unreadable).
    failed_keys:
        Tried slices where a file failed: the next run tries them again (so that it
        records the failure again).
    series_tried:
        Slices tried per series key.
    """

    discovery: Discovery
    card: ModelCard
    overlays: int
    results: list[SliceResult] = field(default_factory=list)
    views: dict[SliceKey, SliceView] = field(default_factory=dict)
    tried_keys: set[SliceKey] = field(default_factory=set)
    failed_keys: set[SliceKey] = field(default_factory=set)
    background_slices: int = 0
    tiles_scored: int = 0
    tiles_skipped: int = 0
    cancelled: bool = False
    runs: int = 0
    started_utc: datetime | None = None
    series_tried: dict[str, int] = field(default_factory=dict)
    _run_clock: float = 0.0
    _run_reports: int = 0
    _run_failed: int = 0
    _rate: float = 0.0
    _by_key: dict[SliceKey, SliceResult] = field(default_factory=dict)
    fitting_series: list[Series] = field(init=False)
    """The series the scan scores (those whose modality fits the model)."""
    total: int = field(init=False)
    """Slices the scan will try (those of the fitting series)."""

    def __post_init__(self) -> None:
        self.fitting_series = [s for s in self.discovery.series if not mismatch(s, self.card)]
        self.total = sum(len(s.slices) for s in self.fitting_series)

    @property
    def tried(self) -> int:
        """Slices tried so far, over all runs."""
        return len(self.tried_keys)

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
        self._run_clock, self._run_reports, self._run_failed = time.monotonic(), 0, 0
        return self.tried_keys - self.failed_keys

    def record(self, progress: ScanProgress) -> SliceKey | None:
        """Take one progress report; return the slice it was about (``None`` if unnamed)."""
        key = progress.key
        self._run_reports += 1
        elapsed = time.monotonic() - self._run_clock
        self._rate = self._run_reports / elapsed if elapsed > 0 else 0.0
        if progress.result is not None:
            self.results.append(progress.result)
            self._by_key[(progress.result.series_key, progress.result.slice_index)] = (
                progress.result
            )
        failed = progress.files_failed > self._run_failed
        self._run_failed = progress.files_failed
        if key is None:
            return None
        if failed:
            self.failed_keys.add(key)
        else:
            self.failed_keys.discard(key)
        if key not in self.tried_keys:
            self.tried_keys.add(key)
            self.series_tried[key[0]] = self.series_tried.get(key[0], 0) + 1
        return key

    def finish(self, outcome: ScanOutcome) -> None:
        """Take a run's outcome: counters, cancellation, kept views (best ``overlays``)."""
        self.cancelled = outcome.cancelled
        self.background_slices += outcome.background_slices
        self.tiles_scored += outcome.tiles_scored
        self.tiles_skipped += outcome.tiles_skipped
        self.views.update(outcome.views)
        if len(self.views) > self.overlays:
            score = {(r.series_key, r.slice_index): r.score for r in self.results}
            best = sorted(self.views, key=lambda k: score.get(k, 0.0), reverse=True)
            self.views = {k: self.views[k] for k in best[: self.overlays]}

    def rate(self) -> float:
        """Slices per second in the current (or last) run."""
        return self._rate

    def seconds_left(self) -> float | None:
        """Estimated seconds to the end, or ``None`` before the speed is known."""
        if self._rate <= 0:
            return None
        return (self.total - self.tried) / self._rate

    def merged_outcome(self) -> ScanOutcome:
        """One :class:`~btd_core.audit.pipeline.ScanOutcome` of all runs so far (the report's)."""
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
        return self._by_key.get(key)

    def worst_in(self, series_key: str) -> SliceResult | None:
        """The highest-scoring result of one series, if any slice of it was scored."""
        results = [r for r in self.results if r.series_key == series_key]
        return max(results, key=lambda r: r.score) if results else None
