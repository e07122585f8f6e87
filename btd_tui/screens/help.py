"""The key bindings, listed from the app's own ``BINDINGS`` (so the list cannot drift)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def binding_rows(app: App, bindings: Iterable[BindingType]) -> list[tuple[str, str, str]]:
    """``(keys, name, what it does)`` per binding, keys as the footer shows them."""
    rows = []
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)
        keys = ", ".join(
            app.get_key_display(Binding(key.strip(), binding.action))
            for key in binding.key.split(",")
        )
        rows.append((keys, binding.description or binding.action, binding.tooltip))
    return rows


def help_table(app: App, bindings: Iterable[BindingType]) -> Table:
    """A table: key(s), short name, what they do; plus the command palette's key."""
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what it does")
    for keys, name, tooltip in binding_rows(app, bindings):
        table.add_row(Text(keys), Text(name), Text(tooltip))
    palette = app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "command_palette"))
    table.add_row(Text(palette), Text("palette"), Text("command palette: every action by name"))
    return table


class HelpScreen(ModalScreen[None]):
    """Every key binding with its description; any of escape, q, ? or F1 closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss_help", "close help", show=False),
    ]

    def __init__(self, bindings: Iterable[BindingType]) -> None:
        super().__init__()
        self.app_bindings = list(bindings)

    def compose(self) -> ComposeResult:
        """A titled, scrollable panel holding the table."""
        with VerticalScroll(id="help-panel") as panel:
            panel.border_title = "btd audit: keys"
            panel.border_subtitle = "escape closes"
            yield Static(help_table(self.app, self.app_bindings), id="help-table")

    def action_dismiss_help(self) -> None:
        """Close the help screen."""
        self.dismiss(None)
