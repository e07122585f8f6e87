"""Ranking slices across a study: most suspicious first.

Scores of one model are comparable across series because every series is windowed
by the same model card and scored by the same graph and reduction.
"""

from __future__ import annotations

from collections.abc import Sequence

from .study import Discovery, Finding, SliceResult


def rank(results: Sequence[SliceResult], discovery: Discovery) -> list[Finding]:
    """Findings ordered by slice score, highest first (rank 1); ties by series and slice."""
    series_by_key = {s.key: s for s in discovery.series}
    files_by_path = {str(f.path): f for f in discovery.files}
    ordered = sorted(results, key=lambda r: (-r.score, r.series_key, r.slice_index))
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
            )
        )
    return findings
