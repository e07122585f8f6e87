"""Ranking slices across a study: most suspicious first.

Scores of one model are comparable across series because every series is windowed
by the same model card and scored by the same graph and reduction.  Series (and so
studies) are ranked by their most suspicious slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from btd_core.scoring.rarity import GenuineScores
from btd_core.study.records import Discovery, Finding, SliceResult


def rank_key(result: SliceResult) -> tuple[float, str, int]:
    """The order of the ranking, total and deterministic: slice score, highest first;
    equal scores by series key, then slice index (ascending).  The scan keeps the
    views of the top slices by the same key, so every top-N overlay exists."""
    return (-result.score, result.series_key, result.slice_index)


def rank(
    results: Sequence[SliceResult],
    discovery: Discovery,
    genuine_scores: Sequence[float] | None = None,
) -> list[Finding]:
    """Findings ordered by :func:`rank_key` (rank 1: the highest slice score).

    ``genuine_scores``: the calibration's genuine slices' scores, when they are scores of
    the slice score that made ``results``
    (:attr:`btd_core.scoring.strategy.SliceScore.genuine_scores`): each finding then
    carries how rare its score is among them (:mod:`btd_core.scoring.rarity`).
    """
    genuine = GenuineScores.of(genuine_scores)
    series_by_key = {s.key: s for s in discovery.series}
    files_by_path = {str(f.path): f for f in discovery.files}
    ordered = sorted(results, key=rank_key)
    findings = []
    for position, result in enumerate(ordered, start=1):
        series = series_by_key[result.series_key]
        ref = series.slices[result.slice_index]
        findings.append(
            Finding(
                rank=position,
                result=result,
                series=series,
                slice=ref,
                file=files_by_path[str(ref.path)],
                genuine_tail=None if genuine is None else genuine.tail(result.score),
                genuine_slices=None if genuine is None else genuine.count,
            )
        )
    return findings


@dataclass(frozen=True)
class SeriesFinding:
    """One series ranked by its most suspicious slice.

    Attributes
    ----------
    rank:
        1 = the series whose top slice scores highest in the audit.
    top:
        That slice's finding (its ``rank`` is its place among all slices).
    slices_scored:
        Slices of the series that got a score.
    """

    rank: int
    top: Finding
    slices_scored: int


def rank_series(findings: Sequence[Finding]) -> list[SeriesFinding]:
    """Series ordered by their highest slice score (``findings`` ranked, highest first).

    In the calibrated score mode a slice score is a surprise against genuine tissue,
    comparable across series and studies, so this ranks what to look at first in an
    audit of many studies.
    """
    tops: dict[str, Finding] = {}
    counts: dict[str, int] = {}
    for finding in findings:
        key = finding.result.series_key
        tops.setdefault(key, finding)
        counts[key] = counts.get(key, 0) + 1
    return [
        SeriesFinding(rank=position, top=top, slices_scored=counts[key])
        for position, (key, top) in enumerate(tops.items(), start=1)
    ]
