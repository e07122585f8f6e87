"""The audit's log: discovery, unreadable files with their reasons, scan and export events."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from btd_core.safe_text import printable


class LogPanel(RichLog):
    """A scrolling log that never interprets markup (file names and reasons are data).

    Lines wrap at the panel's width, and are wrapped again when it changes (so what it
    shows never depends on when a line was written).  ``entries`` keeps every line as
    plain text (for tests and for copying).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, highlight=False, wrap=True, min_width=1, **kwargs)
        self.entries: list[str] = []
        self._texts: list[Text] = []
        self._wrapped_at = 0

    def entry(self, message: str, style: str = "") -> None:
        """Add one line; ``message`` is shown literally (control characters escaped)."""
        text = Text(printable(message), style=style)
        self.entries.append(text.plain)
        self._texts.append(text)
        if self._wrapped_at:
            self.write(text, width=self._wrapped_at)

    def error(self, message: str) -> None:
        """An error line (red)."""
        self.entry(message, style="red")

    def warning(self, message: str) -> None:
        """A warning line (yellow)."""
        self.entry(message, style="yellow")

    def on_resize(self, event: events.Resize) -> None:
        """Wrap every line again at the new width, once the layout has settled."""
        self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._wrapped_at:
            return
        self._wrapped_at = width
        self.clear()
        for text in self._texts:
            self.write(text, width=width)
