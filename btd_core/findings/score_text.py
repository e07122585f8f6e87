"""A slice score as people read it: what the app, ``btd scan``'s table and ``report.html`` show.

The CSV files keep every score exactly (``repr``); on screen and on paper a score has three
significant digits in plain positional notation, so that an uncalibrated scan's residual
energy reads ``0.0000624`` rather than ``6.2367e-05``: the same value as the CSV's, rounded.
"""

from __future__ import annotations

import math

import numpy as np

SIGNIFICANT = 3
"""Significant digits shown."""


def score_text(score: float) -> str:
    """``score`` with :data:`SIGNIFICANT` digits: ``0.0000624``, ``0.814``, ``12.3``, ``2.5``;
    whole numbers from 1000 (``4568``); scientific below 1e-6 (``1.23e-07``); ``nan``,
    ``inf`` as such."""
    value = float(score)
    if not math.isfinite(value) or value == 0.0:
        return "0" if value == 0.0 else str(value)
    if abs(value) >= 1000.0:
        return f"{value:.0f}"
    if abs(value) < 1e-6:
        return f"{value:.{SIGNIFICANT}g}"
    return np.format_float_positional(
        value, precision=SIGNIFICANT, unique=False, fractional=False, trim="-"
    )
