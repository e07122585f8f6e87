"""Ranked suspicious slices: rank, score, series, slice, position, file; sortable.

Rows are rebuilt from :class:`btd_core.study.records.Finding` lists (the app re-ranks at most a
few times a second while results arrive).  Every cell that holds text from a file is
a :class:`rich.text.Text` of :func:`btd_core.safe_text.printable` text, never markup.
The cursor stays on the same slice across rebuilds (or on the top row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from btd_core.cli.scan import series_label
from btd_core.safe_text import printable
from btd_core.study.records import Finding

MAX_ROWS = 2000
"""Most rows shown (the highest ranked after sorting by rank); the title says so when cut."""

COLUMNS: tuple[tuple[str, str, Callable[[Finding], Any]], ...] = (
    ("rank", "rank", lambda f: f.rank),
    ("score", "score", lambda f: -f.result.score),
    ("series", "series", lambda f: (series_label(f.series), f.rank)),
    ("slice", "slice", lambda f: (f.series.key, f.result.slice_index)),
    ("pos", "pos mm", lambda f: (f.slice.location is None, f.slice.location or 0.0, f.rank)),
    ("file", "file", lambda f: (f.file.relpath, f.slice.frame or 0)),
)
"""(key, header, sort key) per column."""


def row_key(series_key: str, index: int) -> str:
    """The table's row key of one slice."""
    return f"{index}@{series_key}"


def split_row_key(key: str) -> tuple[str, int]:
    """Back from :func:`row_key` to ``(series key, slice index)``."""
    index, series_key = key.split("@", 1)
    return series_key, int(index)


def finding_cells(finding: Finding) -> tuple[Any, ...]:
    """The six cells of one finding."""
    location = finding.slice.location
    file_text = printable(finding.file.relpath)
    if finding.slice.frame is not None:
        file_text += f" [frame {finding.slice.frame}]"
    return (
        Text(str(finding.rank), justify="right"),
        Text(f"{finding.result.score:.5g}", justify="right"),
        Text(printable(series_label(finding.series))),
        Text(f"{finding.result.slice_index + 1}/{len(finding.series.slices)}", justify="right"),
        Text("" if location is None else f"{location:.1f}", justify="right"),
        Text(file_text),
    )


class FindingsTable(DataTable):
    """The ranked slices; ``o`` or a click on a header sorts by that column."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column = "rank"
        self.sort_reverse = False
        self.findings: list[Finding] = []
        self.shown_keys: list[str] = []

    def on_mount(self) -> None:
        """Add the columns."""
        for key, header, _ in COLUMNS:
            self.add_column(header, key=key)
        self.refresh_title()

    def show(self, findings: Sequence[Finding]) -> None:
        """Replace the rows by ``findings`` in the current sort order.

        A cursor on the first row stays on the first row (it follows the most suspicious
        slice while results arrive); elsewhere it stays on the same slice.
        """
        self.findings = list(findings)
        current = self.current_key() if self.cursor_row > 0 else None
        sort_key = dict((k, f) for k, _, f in COLUMNS)[self.sort_column]
        rows = sorted(self.findings[:MAX_ROWS], key=sort_key, reverse=self.sort_reverse)
        self.clear()
        self.shown_keys = []
        for finding in rows:
            key = row_key(finding.result.series_key, finding.result.slice_index)
            self.add_row(*finding_cells(finding), key=key)
            self.shown_keys.append(key)
        if current in self.shown_keys:
            self.move_cursor(row=self.shown_keys.index(current), animate=False, scroll=False)
        self.refresh_title()

    def refresh_title(self) -> None:
        """``ranked slices (n)``, the sort order, and a note when rows were cut."""
        arrow = "desc" if self.sort_reverse else "asc"
        title = f"ranked slices ({len(self.findings)}) · sort {self.sort_column} {arrow}"
        if len(self.findings) > MAX_ROWS:
            title += f" · top {MAX_ROWS} shown"
        self.border_title = Text(title)

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
        self.show(self.findings)

    def next_sort(self) -> None:
        """Sort by the next column (rank -> score -> series -> ... -> rank)."""
        keys = [k for k, _, _ in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_reverse = False
        self.show(self.findings)

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
