"""How rare a score is among genuine slices: a score a person can read.

``btd calibrate`` records the default score of every genuine slice it was fitted on
(:attr:`btd_core.scoring.calibration.Calibration.genuine_scores`).  A finding's score
``s`` is then put against them: its **genuine tail**

    ``tail = (1 + #{genuine scores >= s}) / (n + 1)``

is the empirical probability that a genuine slice scores at least as high (a conservative
p-value: never 0, at least ``1 / (n + 1)``, so 48 genuine slices can never claim more
than "higher than all 48").  In words: "1 in K genuine slices score this high", ``K`` the
rounded ``1 / tail``, or, when no genuine slice reaches it, "higher than all N genuine
slices of the calibration (p <= 1/(N+1))".

The false-discovery view of a study (:func:`chance_leads`): if all of the study's
``slices`` were genuine, about ``slices x tail`` of them would score as high as a lead by
chance alone; a lead well above that number of slices at its level is what stands out.
Neither is a probability of tampering: genuine slices of the calibration may differ from
the study's (scanner, anatomy, protocol), and real lesions score high too.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

GENUINE_TAIL_MEANING = (
    "genuine_tail: (1 + genuine slices of the calibration scoring at least as high) / "
    "(genuine slices + 1), how rare the score is among genuine slices (never 0); "
    "chance_leads: the study's slices x genuine_tail, how many would score as high by "
    "chance if all were genuine; neither is a probability of tampering"
)
"""What the report's rarity fields mean (``report.json``, ``settings.genuine_tail_meaning``)."""


@dataclass(frozen=True)
class GenuineScores:
    """Scores of a calibration's genuine slices, ascending (at least one)."""

    scores: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.scores:
            raise ValueError("genuine scores need at least one slice")
        if any(a > b for a, b in zip(self.scores, self.scores[1:], strict=False)):
            object.__setattr__(self, "scores", tuple(sorted(self.scores)))

    @classmethod
    def of(cls, scores: Sequence[float] | None) -> GenuineScores | None:
        """``scores`` as :class:`GenuineScores`; ``None`` for none or an empty list."""
        return cls(tuple(float(s) for s in scores)) if scores else None

    @property
    def count(self) -> int:
        """How many genuine slices, ``n``."""
        return len(self.scores)

    def at_or_above(self, score: float) -> int:
        """How many genuine slices score ``score`` or higher."""
        return self.count - bisect.bisect_left(self.scores, float(score))

    def tail(self, score: float) -> float:
        """``(1 + #{genuine >= score}) / (n + 1)``, in [1/(n+1), 1]."""
        return (1 + self.at_or_above(score)) / (self.count + 1)


def rarity_text(tail: float, genuine_slices: int) -> str:
    """The tail in words: ``1 in 2,000 genuine slices score this high``; at the floor
    (no genuine slice reaches the score), ``higher than all 48 genuine slices of the
    calibration (p <= 1/49)``; ``most genuine slices score this high`` when ``1 / tail``
    rounds to 1."""
    if _at_floor(tail, genuine_slices):
        return (
            f"higher than all {genuine_slices:,} genuine slices of the calibration "
            f"(p <= 1/{genuine_slices + 1:,})"
        )
    if round(1.0 / tail) <= 1:
        return "most genuine slices score this high"
    return f"1 in {round(1.0 / tail):,} genuine slices score this high"


def rarity_short(tail: float | None, genuine_slices: int | None) -> str:
    """The tail for a table cell: ``1 in 2,000``, ``> all 48``, ``common`` (``1 / tail``
    rounds to 1), or ``""`` without one."""
    if tail is None or not genuine_slices:
        return ""
    if _at_floor(tail, genuine_slices):
        return f"> all {genuine_slices:,}"
    if round(1.0 / tail) <= 1:
        return "common"
    return f"1 in {round(1.0 / tail):,}"


def chance_leads(tail: float, slices: int) -> float:
    """Genuine slices expected at or above a lead's level among ``slices`` if all were
    genuine: ``slices x tail`` (>= 0)."""
    return float(slices) * float(tail)


def chance_text(tail: float, genuine_slices: int, slices: int) -> str:
    """The study's false-discovery line for its top lead: ``at the top lead's level,
    about 0.15 of this study's 300 slices would score as high by chance if all were
    genuine``; at the floor, an upper bound (``at most about``)."""
    expected = chance_leads(tail, slices)
    about = "at most about" if _at_floor(tail, genuine_slices) else "about"
    return (
        f"at the top lead's level, {about} {_amount(expected)} of this study's {slices:,} "
        f"slices would score as high by chance if all were genuine"
    )


def _amount(value: float) -> str:
    """A count people read: 2 significant digits below 10, whole numbers above."""
    if value >= 10:
        return f"{round(value):,}"
    return f"{value:.2g}"


def _at_floor(tail: float, genuine_slices: int) -> bool:
    """Whether ``tail`` is the least it can be, ``1 / (n + 1)``: no genuine slice reaches it."""
    return tail * (genuine_slices + 1) <= 1.0 + 1e-9
