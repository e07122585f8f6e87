"""The scan's state line: what is happening, a progress bar, speed and time left."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from btd_tui.formatting import format_duration
from btd_tui.state import ScanPhase


class ScanStatus(Horizontal):
    """``state  [=====     ] 40%  12/30 slices · 0.8 slices/s · 0:22 left · 1 file failed``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state_text = ""
        self.detail_text = ""

    def compose(self) -> ComposeResult:
        """A state label, the bar (no built-in clock: speed and time left are ours)."""
        yield Label(id="scan-state")
        yield ProgressBar(total=None, show_eta=False, id="scan-bar")
        yield Label(id="scan-detail")

    def show_phase(self, phase: ScanPhase) -> None:
        """The first label: ``loading``, ``scanning``, ``cancelled``, ``done``, ...; in the
        error phase the detail says that nothing is scored."""
        self.state_text = phase.value
        self.query_one("#scan-state", Label).update(Text(phase.value, style=phase.style))
        if phase is ScanPhase.ERROR:
            self.set_detail("no scoring: see the error above")

    def set_detail(self, text: str) -> None:
        """The label after the bar (plain text, never markup)."""
        self.detail_text = text
        self.query_one("#scan-detail", Label).update(Text(text))

    def show_progress(
        self,
        done: int,
        total: int,
        rate: float | None = None,
        seconds_left: float | None = None,
        failed: int = 0,
    ) -> None:
        """Move the bar and write ``done/total slices``, speed and time left."""
        bar = self.query_one("#scan-bar", ProgressBar)
        bar.update(total=max(total, 1), progress=done)
        parts = [f"{done}/{total} slices"]
        if rate:
            parts.append(f"{rate:.2f} slices/s")
        if seconds_left is not None and done < total:
            parts.append(f"{format_duration(seconds_left)} left")
        if failed:
            parts.append(f"{failed} file{'s' if failed != 1 else ''} failed")
        self.set_detail(" · ".join(parts))
