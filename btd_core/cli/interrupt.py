"""Ctrl-C on a long command: the first asks the work to stop and keep what it has (a
partial report marked cancelled), the second ends the process at once."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

from rich.console import Console
from rich.text import Text

from btd_core.exit_status import ExitStatus


class StopOnInterrupt:
    """A context manager that turns SIGINT into a stop request (:meth:`requested`).

    Only the main thread can take signals; elsewhere (a test's worker thread) it does
    nothing and Ctrl-C keeps Python's default behaviour.
    """

    def __init__(self, console: Console, what: str = "the scan") -> None:
        self._console = console
        self._what = what
        self._event = threading.Event()
        self._previous: object = None
        self._installed = False

    def requested(self) -> bool:
        """Whether Ctrl-C was pressed (the work should stop at its next check)."""
        return self._event.is_set()

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _on_interrupt(self, number: int, frame: FrameType | None) -> None:
        if self._event.is_set():
            self._console.print(Text("interrupted again: quitting now", style="red"))
            os._exit(ExitStatus.CANCELLED)
        self._event.set()
        self._console.print(
            Text(
                f"stopping {self._what}: the report will hold what is done "
                "(Ctrl-C again to quit at once)",
                style="yellow",
            )
        )
