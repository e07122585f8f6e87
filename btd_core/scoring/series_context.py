"""Series context: each slice of a series judged with its neighbouring slices.

A slice's own verdict (:meth:`btd_core.scoring.strategy.SliceScore.judge`) says how it
looks alone; with series context the slice score judges it again against the slices
next to it (:meth:`btd_core.scoring.strategy.SliceScore.in_context`).  Which slices those
are is decided here, and only here, for every caller: the scan pipeline, ``btd eval``,
``btd calibrate``, the app's previews and ``benchmarks/bench_detection.py``.

- :class:`SeriesContext`: random access.  Given how to get any slice's own verdict (by
  its index in series order), it gives a slice's neighbours and its verdict judged with
  them; own verdicts are asked for once each (the app's previews score neighbours on
  demand).
- :class:`SeriesStream`: the same judgement over slices that arrive one by one in series
  order (a scan, an evaluation): a slice comes out once the :data:`CONTEXT_REACH` slices
  after it have arrived (or its series ended), with its own verdict, its neighbours and
  its verdict in context; at most ``2 * CONTEXT_REACH + 1`` own verdicts are held.

Both give the same verdict for the same slice (``tests/test_series_context.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from btd_core.scoring.strategy import Neighbours, SliceScore, SliceVerdict

CONTEXT_REACH = 2
"""Series context looks at most this many slices away (:func:`neighbour_indices`)."""

Payload = TypeVar("Payload")


def neighbour_indices(index: int, scored: Callable[[int], bool]) -> list[int]:
    """The slices a slice is compared with for series context: the one before and the one
    after it when both were scored; else the two nearest on the side that has them (at a
    series' end, or next to a slice that could not be read), so that a slice next to an
    edited one still has a genuine slice to match; ``[]`` when it has no scored neighbour.
    ``scored(i)``: whether slice ``i`` of the series was scored (any ``i``, also outside
    the series: then false)."""
    before, after = scored(index - 1), scored(index + 1)
    if before and after:
        return [index - 1, index + 1]
    if after:
        return [i for i in (index + 1, index + 2) if scored(i)]
    if before:
        return [i for i in (index - 1, index - 2) if scored(i)]
    return []


class SeriesContext:
    """One series' slices judged with their neighbours, in any order.

    ``own(i)``: slice ``i``'s own verdict (series order, from 0), ``None`` when it does
    not exist, could not be read or had nothing to score; asked at most once per index.
    """

    def __init__(self, slice_score: SliceScore, own: Callable[[int], SliceVerdict | None]) -> None:
        self.slice_score = slice_score
        self._own = own
        self._known: dict[int, SliceVerdict | None] = {}

    def own(self, index: int) -> SliceVerdict | None:
        """Slice ``index``'s own verdict (judged alone), asked for once."""
        if index not in self._known:
            self._known[index] = self._own(index)
        return self._known[index]

    def neighbours(self, index: int) -> Neighbours:
        """The own verdicts slice ``index`` is compared with (:func:`neighbour_indices`),
        and whether they lie on one side of it."""
        chosen = neighbour_indices(index, lambda other: self.own(other) is not None)
        verdicts = tuple(verdict for i in chosen if (verdict := self.own(i)) is not None)
        one_sided = len(chosen) == 2 and (min(chosen) > index or max(chosen) < index)
        return Neighbours(verdicts, one_sided)

    def judged(self, index: int) -> SliceVerdict | None:
        """Slice ``index``'s verdict with series context (its own verdict when the slice
        score does not use context); ``None`` when it has no own verdict."""
        verdict = self.own(index)
        if verdict is None or not self.slice_score.uses_context:
            return verdict
        return self.slice_score.in_context(verdict, self.neighbours(index))


@dataclass(frozen=True)
class Finished(Generic[Payload]):
    """A slice that :class:`SeriesStream` let go: what was pushed with it, its own
    verdict, the neighbours it was compared with (none without series context unless
    asked for) and its verdict in context (``None`` with no own verdict)."""

    payload: Payload
    own: SliceVerdict | None
    neighbours: Neighbours
    judged: SliceVerdict | None


class SeriesStream(Generic[Payload]):
    """Slices pushed one by one in series order, each let go judged with its neighbours.

    ``on_finished`` receives every pushed slice once, in push order.  ``with_neighbours``:
    hold slices for their neighbours even when the slice score judges each alone (a
    caller that wants every verdict with its neighbours', as calibration does); without
    it and without series context each slice is let go at once.
    """

    def __init__(
        self,
        slice_score: SliceScore,
        on_finished: Callable[[Finished[Payload]], None],
        *,
        with_neighbours: bool = False,
    ) -> None:
        self.slice_score = slice_score
        self.on_finished = on_finished
        self.holds = slice_score.uses_context or with_neighbours
        self._series: object = None
        self._own: dict[int, SliceVerdict | None] = {}
        self._waiting: list[tuple[int, Payload]] = []

    def push(
        self, series: object, index: int, verdict: SliceVerdict | None, payload: Payload
    ) -> None:
        """Slice ``index`` (series order) of ``series`` (any key compared by identity or
        equality), with its own verdict (``None``: unreadable or nothing scored)."""
        if not self.holds:
            self.on_finished(Finished(payload, verdict, Neighbours(), verdict))
            return
        if series is not self._series or (self._waiting and index <= self._waiting[-1][0]):
            self.flush()
            self._series = series
        self._own[index] = verdict
        self._waiting.append((index, payload))
        while self._waiting and self._waiting[0][0] <= index - CONTEXT_REACH:
            self._finish(*self._waiting.pop(0))
        for old in [q for q in self._own if q < index - 2 * CONTEXT_REACH]:
            del self._own[old]

    def flush(self) -> None:
        """Let every waiting slice go (its series or the scan ended)."""
        while self._waiting:
            self._finish(*self._waiting.pop(0))
        self._own.clear()
        self._series = None

    def _finish(self, index: int, payload: Payload) -> None:
        own = self._own.get(index)
        if own is None:
            self.on_finished(Finished(payload, None, Neighbours(), None))
            return
        neighbours = SeriesContext(self.slice_score, self._own.get).neighbours(index)
        judged = self.slice_score.in_context(own, neighbours)  # unchanged without context
        self.on_finished(Finished(payload, own, neighbours, judged))
