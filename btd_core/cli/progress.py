"""The progress bar of the commands that scan slices (``btd scan``, ``btd calibrate``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanProgress


def slice_progress(console: Console, label: str) -> tuple[Progress, Callable[[ScanProgress], None]]:
    """A bar of slices done / total with time spent and left, and failed files as a note;
    returns it (use it as a context manager) and the scan's progress callback."""
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slices"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task(label, total=None, note="")

    def on_progress(update: ScanProgress) -> None:
        note = f"{update.files_failed} failed" if update.files_failed else ""
        progress.update(task, completed=update.slices_done, total=update.slices_total, note=note)

    return progress, on_progress
