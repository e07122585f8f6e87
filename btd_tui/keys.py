"""The audit app's key bindings: the one list that the footer, the help screen and the
command palette are all made from."""

from __future__ import annotations

from textual.binding import Binding, BindingType

KEYS: list[BindingType] = [
    Binding("s", "start_scan", "start", tooltip="start the scan (or resume a cancelled one)"),
    Binding("c", "cancel_scan", "cancel", tooltip="cancel the scan after the current slice"),
    Binding("r", "resume_scan", "resume", show=False, tooltip="resume a cancelled scan"),
    Binding("e", "export", "export", tooltip="export the report (CSV, JSON, PNG) to a folder"),
    Binding("h", "toggle_heat", "heat", tooltip="toggle the heat map overlay"),
    Binding("a", "toggle_ascii", "ascii", show=False, tooltip="toggle ASCII / colour blocks"),
    Binding("z", "zoom", "zoom", tooltip="zoom on the worst tile, or back to the slice"),
    Binding("n", "next_slice", "next", tooltip="show the next slice of the series"),
    Binding("p", "previous_slice", "prev", tooltip="show the previous slice of the series"),
    Binding("o", "sort", "sort", show=False, tooltip="sort the table by the next column"),
    Binding("question_mark,f1", "help", "help", tooltip="help: this list of keys"),
    Binding("q", "quit", "quit", tooltip="quit (a running scan stops after its slice)"),
]
"""Key, action, short name (footer), and what it does (``tooltip``: help and palette)."""
