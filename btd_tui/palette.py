"""The command palette's audit commands (ctrl+p), made from the app's own bindings.

Each command's name is its binding's tooltip ("Start the scan ...", "Toggle the heat map
overlay", ...) and its help line names the key, so palette, footer and help agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

PALETTE_ACTIONS = (
    "start_scan",
    "cancel_scan",
    "resume_scan",
    "export",
    "toggle_heat",
    "toggle_ascii",
    "zoom",
    "next_slice",
    "previous_slice",
    "sort",
    "help",
)
"""Actions offered in the palette, in this order."""


class AuditCommands(Provider):
    """Start / cancel / resume the scan, export, toggles, zoom, help: each with its key."""

    def _commands(self) -> Iterator[tuple[str, str, str]]:
        """``(name, help, action)`` for each palette action bound in the app."""
        bindings = {}
        for item in self.app.BINDINGS:
            binding = item if isinstance(item, Binding) else Binding(*item)
            bindings.setdefault(binding.action, binding)
        for action in PALETTE_ACTIONS:
            binding = bindings.get(action)
            if binding is None:
                continue
            key = self.app.get_key_display(Binding(binding.key.split(",")[0], action))
            text = binding.tooltip or binding.description or action
            yield text[:1].upper() + text[1:], f"key {key}", action

    async def discover(self) -> Hits:
        """Every audit command, when nothing is typed yet."""
        for name, help_text, action in self._commands():
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        """Audit commands matching ``query`` (fuzzy)."""
        matcher = self.matcher(query)
        for name, help_text, action in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.app.run_action, action),
                    text=name,
                    help=help_text,
                )
