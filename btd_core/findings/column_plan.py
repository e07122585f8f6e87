"""Fitting a table of ranked slices into a width: which columns stay, how long labels get.

One planner for both tables that list findings: the terminal summary of ``btd scan``
(rich) and the app's findings table (Textual).  Each table says what it is made of
(:class:`TableShape`); :func:`plan_columns` then decides, for a width in terminal cells,
which columns give way (the yielding ones, in order) and, when whole file names still do
not fit, how many characters a series label and a file name get.  Rank, score, series,
slice and file always stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SERIES_CAP = 16
"""Series labels are cut (in the middle) to this many characters when the table is too
narrow for whole labels and file names."""

FILE_FLOOR = 12
"""A file name keeps at least this many characters."""


@dataclass(frozen=True)
class TableShape:
    """What a findings table is made of.

    Attributes
    ----------
    columns:
        Every column's key, in display order (one must be ``series``, one ``file``).
    yielding:
        Columns that give way, in this order, when the table would be wider than its space.
    cell_padding:
        Cells a column takes besides its content (blanks, bars).
    border:
        Cells the table takes besides its columns.
    series_floor:
        How short a series label may be cut (<= :data:`SERIES_CAP`) to give a file name
        its :data:`FILE_FLOOR` characters.
    """

    columns: Sequence[str]
    yielding: Sequence[str]
    cell_padding: int
    border: int = 0
    series_floor: int = SERIES_CAP


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns are shown, and the most characters of a series label and a file
    name (``None``: whole)."""

    shown: tuple[str, ...]
    series_width: int | None = None
    file_width: int | None = None


def plan_columns(shape: TableShape, space: int, natural: dict[str, int]) -> ColumnPlan:
    """The columns of a ``shape`` table ``space`` cells wide whose columns' whole
    contents (header included) are ``natural[key]`` cells wide.

    The yielding columns go first; then series labels are cut to :data:`SERIES_CAP` and
    the file name gets the rest (at least :data:`FILE_FLOOR`, taken from the series label
    down to ``shape.series_floor``); room a whole file name leaves goes back to the
    series label.  A table too narrow even then is wider than ``space``.
    """
    shown = list(shape.columns)

    def cost(names: list[str], widths: dict[str, int]) -> int:
        return shape.border + sum(widths[name] + shape.cell_padding for name in names)

    for name in shape.yielding:
        if cost(shown, natural) > space:
            shown.remove(name)
    if cost(shown, natural) <= space:
        return ColumnPlan(tuple(shown))
    widths = dict(natural)
    widths["series"] = min(natural["series"], SERIES_CAP)
    rest = [name for name in shown if name != "file"]
    file_width = space - cost(rest, widths) - shape.cell_padding
    if file_width < FILE_FLOOR:
        give = min(widths["series"] - shape.series_floor, FILE_FLOOR - file_width)
        if give > 0:
            widths["series"] -= give
            file_width += give
    elif file_width > natural["file"]:  # whole names leave room: back to the label
        widths["series"] += min(file_width - natural["file"], natural["series"] - SERIES_CAP)
        file_width = natural["file"]
    return ColumnPlan(tuple(shown), widths["series"], max(file_width, FILE_FLOOR))
