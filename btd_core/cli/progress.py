"""Progress of the commands that score slices (``btd scan``, ``btd calibrate``, ``btd eval``).

On a terminal: rich's live bar (done / total, time spent and left, failed files).  Into a
log file, a pipe or a batch job's output, where a live bar would show nothing until the
end: one plain line at least every :data:`PLAIN_EVERY_S` seconds and one at the end, e.g.
``scoring: 120/480 slices, 3.2 slices/s, about 1 min 52 s left``.  The rate counts from
the first progress report (the first slice done), so the time spent finding files does
not dilute it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
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
from rich.text import Text

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanProgress

PLAIN_EVERY_S = 10.0
"""Seconds between two plain progress lines at most (while the work goes on)."""


def duration(seconds: float) -> str:
    """``45 s``, ``1 min 52 s``, ``2 h 5 min``: a time span as people say it."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class PlainProgress(AbstractContextManager):
    """Progress as plain lines, for a console that is not a terminal.

    :meth:`update` prints a line when :data:`PLAIN_EVERY_S` (``every``) seconds have passed
    since the last one; while the context is open, a timer thread also prints the latest
    state when no update came for that long (``tick=False``: no thread, for tests with
    an injected ``clock``).  Leaving the context prints the final line.
    """

    def __init__(
        self,
        console: Console,
        label: str,
        unit: str = "slices",
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: bool = True,
    ) -> None:
        self.console = console
        self.label = label
        self.unit = unit
        self.every = PLAIN_EVERY_S if every is None else every
        self.clock = clock
        self.tick = tick
        self.done = 0
        self.total: int | None = None
        self.note = ""
        self._started = clock()
        self._first: tuple[float, int] | None = None  # (time, done) at the first update
        self._last_line = self._started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        self._started = self._last_line = self.clock()
        if self.tick:
            self._thread = threading.Thread(target=self._ticker, name="btd-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is not None:
            return  # the work failed: no "done" line before its error message
        with self._lock:
            self._print(final=True)

    def update(self, done: int, total: int | None, note: str = "") -> None:
        """The work's state now; prints a line when one is due."""
        with self._lock:
            now = self.clock()
            if self._first is None:
                self._first = (now, done)
            self.done, self.total, self.note = done, total, note
            if now - self._last_line >= self.every:
                self._print()

    def _ticker(self) -> None:
        while not self._stop.wait(self.every if self.every > 0 else 1.0):
            with self._lock:
                if self.clock() - self._last_line >= self.every:
                    self._print()

    def line(self, final: bool = False) -> str:
        """``scoring: 120/480 slices, 3.2 slices/s, about 1 min 52 s left`` (the
        final line: ``..., done in 2 min 30 s``)."""
        now = self.clock()
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [f"{self.label}: {count} {self.unit}"]
        rate = None
        if self._first is not None:
            since, done_then = self._first
            if now > since and self.done > done_then:
                rate = (self.done - done_then) / (now - since)
        if rate is None and self.done and now > self._started:  # one update so far
            rate = self.done / (now - self._started)
        if rate is not None:
            parts.append(f"{rate:.3g} {self.unit}/s")
        if final:
            parts.append(f"done in {duration(now - self._started)}")
        elif self.total is None or self._first is None:
            parts.append("starting")
        elif rate is not None:
            parts.append(f"about {duration((self.total - self.done) / rate)} left")
        else:
            parts.append("time left not known yet")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def _print(self, final: bool = False) -> None:
        self._last_line = self.clock()
        self.console.print(Text(self.line(final)), soft_wrap=True, highlight=False)


def slice_progress(
    console: Console,
    label: str,
    unit: str = "slices",
    every: float | None = None,
) -> tuple[AbstractContextManager, Callable[[ScanProgress], None]]:
    """The progress display of a scan of slices and the scan's progress callback; use
    the display as a context manager around the scan.

    On a terminal, rich's bar of slices done / total with time spent and left and failed
    files as a note; elsewhere (a log file, a pipe) :class:`PlainProgress` lines, one at
    least every ``every`` seconds (default :data:`PLAIN_EVERY_S`) and one at the end.
    """
    display, update = progress_display(console, label, unit, every)

    def on_progress(state: ScanProgress) -> None:
        note = f"{state.files_failed} failed" if state.files_failed else ""
        update(state.slices_done, state.slices_total, note)

    return display, on_progress


def progress_display(
    console: Console,
    label: str,
    unit: str = "slices",
    every: float | None = None,
) -> tuple[AbstractContextManager, Callable[[int, int | None, str], None]]:
    """A progress display (rich's bar on a terminal, else plain lines) and its
    ``update(done, total, note)``."""
    if not console.is_terminal:
        plain = PlainProgress(console, label, unit, every)
        return plain, plain.update
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task(label, total=None, note="")

    def update(done: int, total: int | None, note: str = "") -> None:
        progress.update(task, completed=done, total=total, note=note)

    return progress, update
