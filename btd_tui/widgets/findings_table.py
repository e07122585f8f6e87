"""Ranked suspicious slices: rank, score, rarity, series, slice, position, file; sortable.

The rarity column (how rare the score is among the calibration's genuine slices: ``1 in
2,000``, or ``> all 48`` above every one of them, :mod:`btd_core.scoring.rarity`) is there
only when the findings have one (a calibration that recorded its genuine slices' scores).

The columns fit the table's width (:func:`btd_core.findings.column_plan.plan_columns`,
:data:`TABLE_SHAPE`): when whole labels and names do not fit, the position column gives
way first, then series labels are cut to 16 characters (down to :data:`SERIES_FLOOR`) and
file names are shortened, keeping the file name whole where it fits
(``export/ch…/IM07523``); rank, score, series, slice and file always stay.

Rows come from :class:`btd_core.study.records.Finding` lists (the app re-ranks at most a
few times a second while results arrive) and are updated in place, by row key: new
slices are added, dropped ones removed, and of the others only the rank cell changes
(a slice's score, series, position and file never do); the rows are then put in the
sort order, which the bottom border says in words ("by score, highest first").  Every
cell that holds text from a file is a :class:`rich.text.Text` of
:func:`btd_core.safe_text.printable` text, never markup.  The cursor stays on the same
slice across updates (or on the top row), and :class:`FindingsTable.SliceHighlighted`
says which slice is under it whenever that changes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from btd_core.findings.column_plan import (
    ColumnPlan,
    TableShape,
    plan_columns,
)
from btd_core.findings.score_text import score_text
from btd_core.safe_text import middle_ellipsis, path_ellipsis, printable
from btd_core.scoring.rarity import rarity_short
from btd_core.study.records import Finding, series_label
from btd_tui.state import SliceKey

SCROLLBAR_ROOM = 1
"""Cells kept free for the vertical scrollbar (``scrollbar-size-vertical: 1``)."""

MAX_ROWS = 2000
"""Most rows shown (the highest ranked after sorting by rank); the title says so when cut."""

COLUMNS: tuple[tuple[str, str, Callable[[Finding], Any]], ...] = (
    ("rank", "rank", lambda f: f.rank),
    ("score", "score", lambda f: -f.result.score),
    ("rarity", "rarity", lambda f: (f.genuine_tail is None, f.genuine_tail or 0.0, f.rank)),
    ("series", "series", lambda f: (series_label(f.series), f.rank)),
    ("slice", "slice", lambda f: (f.series.key, f.result.slice_index)),
    ("pos", "pos mm", lambda f: (f.slice.location is None, f.slice.location or 0.0, f.rank)),
    ("file", "file", lambda f: (f.file.relpath, f.slice.frame or 0)),
)
"""(key, header, sort key) per column."""

SORT_ORDERS: dict[str, tuple[str, str]] = {
    "rank": ("by rank, most suspicious first", "by rank, least suspicious first"),
    "score": ("by score, highest first", "by score, lowest first"),
    "rarity": ("by rarity, rarest first", "by rarity, commonest first"),
    "series": ("by series, A to Z", "by series, Z to A"),
    "slice": ("by slice, first to last", "by slice, last to first"),
    "pos": ("by position, lowest mm first", "by position, highest mm first"),
    "file": ("by file, A to Z", "by file, Z to A"),
}
"""The order the rows are in, in words, per column: (the column's own order, reversed).
Shown on the table's bottom border, so that nobody has to guess what "asc" means for a
score; short enough for the table's width in an 80-column terminal."""


def sort_label(column: str, reverse: bool) -> str:
    """``by score, highest first``: the order the rows are in (``reverse``: reversed)."""
    return SORT_ORDERS[column][reverse]


def row_key(series_key: str, index: int) -> str:
    """The table's row key of one slice."""
    return f"{index}@{series_key}"


def split_row_key(key: str) -> tuple[str, int]:
    """Back from :func:`row_key` to ``(series key, slice index)``."""
    index, series_key = key.split("@", 1)
    return series_key, int(index)


ALL_COLUMN_KEYS = tuple(key for key, _, _ in COLUMNS)
COLUMN_KEYS = tuple(key for key in ALL_COLUMN_KEYS if key != "rarity")
"""The columns of a table whose findings have no rarity among genuine slices."""

SERIES_FLOOR = 8
"""Series labels may be cut this short (from 16) to give a file name its 12 characters."""

CELL_PADDING = 2
"""Cells a column takes besides its content (one blank each side, DataTable's default)."""

TABLE_SHAPE = TableShape(
    columns=COLUMN_KEYS,
    yielding=("pos",),
    cell_padding=CELL_PADDING,
    series_floor=SERIES_FLOOR,
)
"""The app's table for :func:`plan_columns` when no finding has a rarity among genuine
slices: the position gives way first."""

RARITY_TABLE_SHAPE = TableShape(
    columns=ALL_COLUMN_KEYS,
    yielding=("pos", "rarity"),
    cell_padding=CELL_PADDING,
    series_floor=SERIES_FLOOR,
)
"""The app's table when findings have a rarity: the position, then the rarity give way
(the preview's title keeps the shown slice's)."""


def table_shape(findings: Sequence[Finding]) -> TableShape:
    """:data:`RARITY_TABLE_SHAPE` when a finding has a rarity, else :data:`TABLE_SHAPE`."""
    if any(f.genuine_tail is not None for f in findings):
        return RARITY_TABLE_SHAPE
    return TABLE_SHAPE


def file_text(finding: Finding) -> str:
    """The file column's text: the relative path, and the frame of a multi-frame file."""
    text = printable(finding.file.relpath)
    if finding.slice.frame is not None:
        text += f" [frame {finding.slice.frame}]"
    return text


def natural_widths(findings: Sequence[Finding], planted: Collection[str] = ()) -> dict[str, int]:
    """Each column's width (cells) with whole contents and its header."""
    widths = {key: len(header) for key, header, _ in COLUMNS}
    if not findings:
        return widths
    widths["rank"] = max(widths["rank"], len(str(max(f.rank for f in findings))))
    for finding in findings:
        location = finding.slice.location
        cells = {
            "score": score_text(finding.result.score),
            "rarity": rarity_short(finding.genuine_tail, finding.genuine_slices),
            "series": printable(series_label(finding.series)),
            "slice": f"{finding.result.slice_index + 1}/{len(finding.series.slices)}",
            "pos": "" if location is None else f"{location:.1f}",
            "file": ("PLANTED " if finding.file.relpath in planted else "") + file_text(finding),
        }
        for key, text in cells.items():
            widths[key] = max(widths[key], len(text))
    return widths


def rank_cell(rank: int) -> Text:
    """The rank column's cell."""
    return Text(str(rank), justify="right")


PLANTED_STYLE = "bold magenta"
"""How a known tampering's file cell is marked."""


def finding_cells(
    finding: Finding, planted: Collection[str] = (), plan: ColumnPlan | None = None
) -> tuple[Text, ...]:
    """The shown cells of one finding (the six of :data:`COLUMN_KEYS` without a ``plan``),
    series labels and file
    names cut to the plan's widths; a file in ``planted`` (relative paths of known
    tamperings) is marked ``PLANTED``."""
    plan = plan or ColumnPlan(COLUMN_KEYS)
    location = finding.slice.location
    marked = finding.file.relpath in planted
    name = file_text(finding)
    if plan.file_width is not None:
        name = path_ellipsis(name, plan.file_width - (len("PLANTED ") if marked else 0))
    file_cell = Text(name)
    if marked:
        file_cell = Text.assemble(("PLANTED ", PLANTED_STYLE), file_cell)
    series = printable(series_label(finding.series))
    if plan.series_width is not None:
        series = middle_ellipsis(series, plan.series_width)
    cells = {
        "rank": rank_cell(finding.rank),
        "score": Text(score_text(finding.result.score), justify="right"),
        "rarity": Text(rarity_short(finding.genuine_tail, finding.genuine_slices)),
        "series": Text(series),
        "slice": Text(
            f"{finding.result.slice_index + 1}/{len(finding.series.slices)}", justify="right"
        ),
        "pos": Text("" if location is None else f"{location:.1f}", justify="right"),
        "file": file_cell,
    }
    return tuple(cells[key] for key in plan.shown)


class FindingsTable(DataTable):
    """The ranked slices; ``o`` or a click on a header sorts by that column."""

    class SliceHighlighted(Message):
        """The slice under the cursor changed (after an update, or the user moved it)."""

        def __init__(self, table: FindingsTable, slice_key: SliceKey) -> None:
            super().__init__()
            self.table = table
            self.slice_key = slice_key

        @property
        def control(self) -> FindingsTable:
            """The table (for ``@on(..., selector)``)."""
            return self.table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column = "rank"
        self.sort_reverse = False
        self.findings: list[Finding] = []
        self.shown_keys: list[str] = []
        """Row keys in the order shown."""
        self._ranks: dict[str, int] = {}
        self._announced: str | None = None
        self.planted: frozenset[str] = frozenset()
        """Relative paths of known tamperings (marked in the file column)."""
        self.plan = ColumnPlan(COLUMN_KEYS)
        """The columns shown and how much of a series label and a file name fit."""

    def on_mount(self) -> None:
        """Add the columns."""
        self._add_columns()
        self.refresh_title()

    def _add_columns(self) -> None:
        headers = {key: header for key, header, _ in COLUMNS}
        for key in self.plan.shown:
            self.add_column(headers[key], key=key)

    def on_resize(self) -> None:
        """Fit the columns to the new width."""
        self._update_rows()

    def _fit_columns(self, rows: Sequence[Finding]) -> None:
        """Re-plan the columns for the table's width; rebuild them when the plan changed."""
        space = self.content_region.width - SCROLLBAR_ROOM
        if space <= 0:
            return
        plan = plan_columns(table_shape(rows), space, natural_widths(rows, self.planted))
        if plan != self.plan:
            self.plan = plan
            self.clear(columns=True)
            self._ranks.clear()
            self._add_columns()

    def show(self, findings: Sequence[Finding]) -> None:
        """Show ``findings`` (in rank order) in the current sort order, updating in place.

        A cursor on the first row stays on the first row (it follows the most suspicious
        slice while results arrive); elsewhere it stays on the same slice.
        """
        self.findings = list(findings)
        self._update_rows()

    def _update_rows(self) -> None:
        current = self.current_key() if self.cursor_row > 0 else None
        sort_key = dict((k, f) for k, _, f in COLUMNS)[self.sort_column]
        rows = sorted(self.findings[:MAX_ROWS], key=sort_key, reverse=self.sort_reverse)
        self._fit_columns(rows)
        wanted = {row_key(f.result.series_key, f.result.slice_index): f for f in rows}
        for key in [key for key in self._ranks if key not in wanted]:
            self.remove_row(key)
            del self._ranks[key]
        for key, finding in wanted.items():
            rank = self._ranks.get(key)
            if rank is None:
                self.add_row(*finding_cells(finding, self.planted, self.plan), key=key)
            elif rank != finding.rank:
                before, after = rank_cell(rank), rank_cell(finding.rank)
                self.update_cell(key, "rank", after, update_width=after.cell_len != before.cell_len)
            self._ranks[key] = finding.rank
        order = list(wanted)
        if [row.key.value for row in self.ordered_rows] != order:
            # DataTable sorts on cell values: the rank cell names the finding
            position = {str(f.rank): i for i, f in enumerate(rows)}
            self.sort("rank", key=lambda cell: position[cell.plain])
        self.shown_keys = order
        if current is not None:
            row = order.index(current) if current in order else 0
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False, scroll=False)
        self.refresh_title()
        self._announce()

    def _announce(self, again: bool = False) -> None:
        """Post :class:`SliceHighlighted` when the slice under the cursor changed
        (``again``: even when it did not)."""
        key = self.current_key()
        if key is not None and (again or key != self._announced):
            self._announced = key
            self.post_message(self.SliceHighlighted(self, split_row_key(key)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The cursor moved to a row (keys, mouse, or an update)."""
        self._announce(again=True)

    def refresh_title(self) -> None:
        """``ranked slices (n)`` and a note when rows were cut on the top border; the sort
        order in words (:func:`sort_label`) on the bottom one."""
        title = f"ranked slices ({len(self.findings)})"
        if len(self.findings) > MAX_ROWS:
            title += f" · top {MAX_ROWS} shown"
        self.border_title = Text(title)
        self.border_subtitle = Text(sort_label(self.sort_column, self.sort_reverse))

    def current_key(self) -> str | None:
        """The row key under the cursor, or ``None`` when the table is empty."""
        if not self.shown_keys or not 0 <= self.cursor_row < len(self.shown_keys):
            return None
        return self.shown_keys[self.cursor_row]

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; the same column again reverses the order."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._update_rows()

    def next_sort(self) -> None:
        """Sort by the next column of the table (rank -> score -> series -> ... -> rank)."""
        keys = list(table_shape(self.findings).columns)
        at = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.sort_column = keys[(at + 1) % len(keys)]
        self.sort_reverse = False
        self._update_rows()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column header sorts by it."""
        event.stop()
        self.sort_by(str(event.column_key.value))

    def rows_text(self) -> list[list[str]]:
        """The shown rows as plain text, in order (for tests)."""
        return [
            [Text.assemble(cell).plain if isinstance(cell, Text) else str(cell) for cell in row]
            for row in (self.get_row(key) for key in self.shown_keys)
        ]

    def rows_by_column(self) -> list[dict[str, str]]:
        """The shown rows as ``{column key: plain text}``, in order (for tests)."""
        return [dict(zip(self.plan.shown, row, strict=True)) for row in self.rows_text()]
