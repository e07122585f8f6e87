"""An error that stops the audit (e.g. CUDA requested but not active): it stays on screen."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from btd_core.safe_text import printable


class ErrorScreen(ModalScreen[None]):
    """A red panel with a title and the message; escape/enter hides it (the model panel
    keeps showing the error, and no scoring starts), q quits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss_error", "hide", show=False),
        Binding("q", "app.quit", "quit", show=False),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        """The title, the message and what to do."""
        with Vertical(id="error-panel") as panel:
            panel.border_title = Text(printable(self.title_text))
            yield Static(Text(printable(self.message)), id="error-message")
            yield Static(
                Text("No slices are scored. escape hides this panel, q quits.", style="dim"),
                id="error-hint",
            )

    def action_dismiss_error(self) -> None:
        """Hide the panel (the error stays in the model panel and the log)."""
        self.dismiss(None)
