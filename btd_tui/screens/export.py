"""Ask where to write the report (a folder outside the study), then close with it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from btd_core.safe_text import printable


def default_report_folder(now_utc_compact: str) -> str:
    """``./btd-report-<UTC timestamp>`` (e.g. ``./btd-report-20260101T120000Z``)."""
    return f"./btd-report-{now_utc_compact}"


class ExportScreen(ModalScreen[Path | None]):
    """A small dialog: one Input for the report folder; enter checks it and closes.

    A folder inside the study is refused here, with the reason shown, and the dialog
    stays open; escape cancels.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel_export", "cancel", show=False)
    ]

    def __init__(self, study_dir: Path, default: str) -> None:
        super().__init__()
        self.study_dir = study_dir
        self.default = default

    def compose(self) -> ComposeResult:
        """Title, the Input with the default folder, and a line for errors."""
        with Vertical(id="export-panel") as panel:
            panel.border_title = "export the report (CSV, JSON, PNG, DICOM SR + SEG)"
            yield Static(Text("report folder (outside the study):"))
            yield Input(value=self.default, id="export-folder")
            yield Static(Text("enter writes · escape cancels", style="dim"), id="export-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Check the folder; close with it, or show why it is refused."""
        from btd_core.study.evidence import OutputInsideEvidence, check_output_outside

        event.stop()
        value = event.value.strip()
        error = self.query_one("#export-error", Static)
        if not value:
            error.update(Text("type a folder name", style="red"))
            return
        folder = Path(value).expanduser()
        try:
            check_output_outside(folder, self.study_dir, what="report folder", inputs_are="study")
        except OutputInsideEvidence as err:
            error.update(Text(printable(str(err)), style="red"))
            return
        if folder.exists() and not folder.is_dir():
            error.update(Text(f"{printable(value)} exists and is not a folder", style="red"))
            return
        self.dismiss(folder)

    def action_cancel_export(self) -> None:
        """Close without exporting."""
        self.dismiss(None)
