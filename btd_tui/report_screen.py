"""One report folder written by ``btd scan`` (or an archive's study), browsed without rescoring.

``btd audit REPORT_FOLDER`` opens this instead of a scan: the report's provenance on top,
its ranked slices in the same table as a live audit, and a preview of the slice under the
cursor, read from the study where it lies now (``--study`` when it moved) and boxed where
the scan found its worst region.  There is no heat map: that would need the model.  The
study is read again only for the files the scan examined, and each file's SHA-256 is
compared with the report's, so a file changed since the scan is named in the log and on
the preview.  Reading and previews run in thread workers, so the first screen draws at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from btd_core.findings.saved_report import (
    AttachedReport,
    SavedReport,
    attach_to_study,
    examined_entries,
    read_report,
)
from btd_core.safe_text import printable
from btd_core.study.records import Finding, Series, series_label
from btd_tui.widgets.findings_table import FindingsTable, row_key
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.slice_preview import Shown, SlicePreview

CURSOR_DELAY_S = 0.25
"""The preview follows the table's cursor once it rests this long (seconds)."""

REPORT_KEYS: list[BindingType] = [
    Binding("z", "zoom", "zoom", tooltip="zoom on the worst region, or back to the slice"),
    Binding("a", "toggle_ascii", "ascii", show=False, tooltip="toggle ASCII / colour blocks"),
    Binding("n", "next_slice", "next", tooltip="show the next slice of the series"),
    Binding("p", "previous_slice", "prev", tooltip="show the previous slice of the series"),
    Binding("o", "sort", "sort", show=False, tooltip="sort the table by the next column"),
    Binding("escape", "back", "back", tooltip="back to the archive's studies (from one study)"),
    Binding("q", "quit", "quit", tooltip="quit"),
]


class ReportLoaded(Message):
    """The report was read and put on the study's slices."""

    def __init__(self, report: SavedReport, attached: AttachedReport, study: Path | None) -> None:
        super().__init__()
        self.report = report
        self.attached = attached
        self.study = study


class ReportFailed(Message):
    """The report could not be read (the reason)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SlicePixels(Message):
    """A previewed slice's pixels, read (``image`` ``None``: ``error`` says why not)."""

    def __init__(self, key: tuple[str, int], image: np.ndarray | None, error: str = "") -> None:
        super().__init__()
        self.key = key
        self.image = image
        self.error = error


def load_report(folder: Path, study: Path | None, post: Callable[[Message], object]) -> None:
    """Read the report, read again the study files it examined (if the study is there),
    and post :class:`ReportLoaded` or :class:`ReportFailed` (runs in a thread)."""
    try:
        from btd_core.study.discovery import discover

        report = read_report(folder)
        root = study if study is not None else report.study_root
        discovery = None
        if root.is_dir():
            discovery = discover(root, files=examined_entries(report))
        post(ReportLoaded(report, attach_to_study(report, discovery), root if discovery else None))
    except Exception as err:  # a broken report: said on screen, never a crash
        post(ReportFailed(f"{type(err).__name__}: {err}"))


def read_pixels(
    series: Series, index: int, report: SavedReport, post: Callable[[Message], object]
) -> None:
    """Read and window one slice as the scan did (the report's model card)."""
    try:
        from btd_core.slices.windowing import to_model_range
        from btd_core.study.pixels import read_slice

        if report.card is None:
            raise ValueError("the report's model card cannot be read: no window to show")
        ref = series.slices[index]
        image = to_model_range(read_slice(series, ref), series, ref, report.card.profile)
        post(SlicePixels((series.key, index), image))
    except Exception as err:  # unreadable slice: said in the preview
        post(SlicePixels((series.key, index), None, str(err)))


class ReportScreen(Screen[None]):
    """One report: provenance, ranked slices, preview with the scan's box (no heat)."""

    BINDINGS: ClassVar[list[BindingType]] = REPORT_KEYS

    def __init__(self, folder: Path, study: Path | None = None, preview: str = "auto") -> None:
        super().__init__()
        self.folder = folder
        self.study = study
        self.report: SavedReport | None = None
        self.panel = Static(Text(f"report {printable(folder)} · reading…"), id="model-panel")
        self.findings = FindingsTable(id="findings")
        self.slice_preview = SlicePreview(preview=preview, id="preview")
        self.log_panel = LogPanel(id="log")
        self.series_by_key: dict[str, Series] = {}
        self.results: dict[tuple[str, int], Finding] = {}
        self.changed: set[str] = set()
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        """Report line; table | preview; log; footer."""
        yield self.panel
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.findings
            yield self.slice_preview
        yield self.log_panel
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Read the report in a thread; the screen draws at once."""
        self.log_panel.border_title = "log"
        self.log_panel.entry(f"report folder: {printable(self.folder)}")
        self.slice_preview.show_heat = False
        self.findings.focus()
        self._load()

    @work(thread=True, exclusive=True, group="report")
    def _load(self) -> None:
        load_report(self.folder, self.study, self.post_message)

    def on_report_failed(self, message: ReportFailed) -> None:
        """Say why, in red, for good."""
        self.panel.update(Text(f"cannot open the report: {printable(message.error)}", "red"))
        self.log_panel.error(f"cannot open the report: {message.error}")
        self.slice_preview.set_error(None, "no report")

    def on_report_loaded(self, message: ReportLoaded) -> None:
        """Show the ranked rows; say what changed in the study since the scan."""
        report, attached = message.report, message.attached
        self.report = report
        self.series_by_key = {series.key: series for series in attached.series}
        self.results = {(f.result.series_key, f.result.slice_index): f for f in attached.findings}
        self.changed = set(attached.changed)
        line = Text(printable(report.summary()), no_wrap=True, overflow="ellipsis")
        line.append("\n")
        if report.altered:
            line.append(f"ALTERED: {', '.join(report.altered)} · ", style="bold red")
        if message.study is not None:
            line.append(f"study {printable(message.study)}", style="dim")
        else:
            line.append(f"study {printable(report.study_root)} not found", style="yellow")
        line.append(f" · {len(attached.findings)} slices ranked · no rescoring", style="dim")
        self.panel.update(line)
        self.findings.show(attached.findings)
        log = self.log_panel
        log.entry(printable(report.summary()))
        if report.altered:
            log.error(
                f"{', '.join(report.altered)} differs from the SHA-256 report.json recorded: "
                "the report was changed after it was written"
            )
        if message.study is None:
            log.warning(
                f"the study folder {report.study_root} is not here: the table is the report's, "
                "without pixels; give --study FOLDER where the study lies now"
            )
        elif attached.missing:
            log.warning(f"{len(set(attached.missing))} file(s) of the report are not in the study")
        for name in attached.changed:
            log.warning(f"changed since the scan (SHA-256 differs): {name}")

    def on_findings_table_slice_highlighted(self, message: FindingsTable.SliceHighlighted) -> None:
        """Preview the slice under the cursor once it rests."""
        if self._timer is not None:
            self._timer.stop()
        key = message.slice_key
        self._timer = self.set_timer(CURSOR_DELAY_S, lambda: self.show(*key))

    def _label(self, series: Series) -> str:
        return printable(series_label(series))

    def show(self, series_key: str, index: int) -> None:
        """Preview slice ``index`` of a series (its pixels are read in a thread)."""
        series = self.series_by_key.get(series_key)
        if series is None or self.report is None or not 0 <= index < len(series.slices):
            return
        shown = Shown(series_key, index, len(series.slices), self._label(series))
        finding = self.results.get((series_key, index))
        if finding is not None and finding.file.relpath in self.changed:
            self.log_panel.warning(
                f"{finding.file.relpath} changed since the scan: the box is the scan's, "
                "the pixels are the file's now"
            )
        self.slice_preview.set_computing(shown)
        self._read(series, index, self.report)

    @work(thread=True, exclusive=True, group="pixels")
    def _read(self, series: Series, index: int, report: SavedReport) -> None:
        read_pixels(series, index, report, self.post_message)

    def on_slice_pixels(self, message: SlicePixels) -> None:
        """Draw the slice with the scan's box, if it is still the one wanted."""
        from btd_core.scoring.tiles import SliceView

        shown = self.slice_preview.shown
        if shown is None or (shown.series_key, shown.index) != message.key:
            return
        if message.image is None:
            self.slice_preview.set_error(shown, message.error)
            self.log_panel.warning(f"preview of slice {shown.index + 1} failed: {message.error}")
            return
        finding = self.results.get(message.key)
        view = SliceView(image=message.image, heat=np.zeros_like(message.image))
        self.slice_preview.set_view(shown, view, finding.result if finding else None)

    def action_zoom(self) -> None:
        """Zoom on the worst region, or back."""
        self.slice_preview.toggle_zoom()

    def action_toggle_ascii(self) -> None:
        """ASCII or colour blocks."""
        self.slice_preview.toggle_ascii()

    def _step(self, delta: int) -> None:
        shown = self.slice_preview.shown
        if shown is not None:
            index = min(max(shown.index + delta, 0), shown.count - 1)
            if index != shown.index:
                self.show(shown.series_key, index)

    def action_next_slice(self) -> None:
        """The next slice of the previewed series."""
        self._step(+1)

    def action_previous_slice(self) -> None:
        """The previous slice of the previewed series."""
        self._step(-1)

    def action_sort(self) -> None:
        """Sort by the next column."""
        self.findings.next_sort()

    def action_back(self) -> None:
        """Back to the archive's studies, when opened from one."""
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def shown_key(self) -> str | None:
        """The table row key of the previewed slice (for tests)."""
        shown = self.slice_preview.shown
        return None if shown is None else row_key(shown.series_key, shown.index)
