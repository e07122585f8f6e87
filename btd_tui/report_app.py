"""``btd audit`` of a report folder written by ``btd scan``, or of a ``btd archive`` output:
browsing without a model and without rescoring (:class:`~btd_tui.report_screen.ReportScreen`
for one report, :class:`~btd_tui.archive_screen.ArchiveScreen` for an archive's studies)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App

from btd_tui.archive_screen import ArchiveScreen
from btd_tui.report_screen import ReportScreen

__all__ = ["ArchiveScreen", "ReportApp", "ReportScreen"]


class ReportApp(App[int]):
    """``btd audit`` of a report folder, or of an archive's output."""

    CSS_PATH = "btd.tcss"
    TITLE = "btd audit (report)"
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar = [(0, "-short"), (36, "-tall")]

    def __init__(self, folder: Path, study: Path | None = None, preview: str = "auto") -> None:
        super().__init__()
        self.folder = folder
        self.study = study
        self.preview_mode = preview

    def on_mount(self) -> None:
        """Open the report (or the archive's list of studies)."""
        from btd_core.archive.index import is_archive

        if is_archive(self.folder):
            self.push_screen(ArchiveScreen(self.folder, preview=self.preview_mode))
        else:
            self.push_screen(ReportScreen(self.folder, self.study, self.preview_mode))
