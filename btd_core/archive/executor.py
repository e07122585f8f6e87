"""What the driver asks of an executor (embedded processes or Ray actors), and what it hears.

An executor runs units on its workers, one unit per worker at a time, and reports
:class:`Event` s; it never touches OUT or the manifest (the driver does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from btd_core.archive.unit_scan import UnitOutcome, UnitTask
from btd_core.errors import BtdError


class ExecutorError(BtdError, RuntimeError):
    """The workers cannot run at all (model cannot be opened, Ray missing or unreachable)."""


@dataclass(frozen=True)
class Event:
    """Something that happened to a unit.

    ``kind``: ``started`` (handed to ``worker``, ``host:pid``), ``progress`` (``done`` of
    ``total`` slices), ``finished`` (``outcome`` holds the worker's result) or ``lost``
    (the worker died or was stopped before answering: ``reason``).
    """

    kind: str
    key: str
    worker: str = ""
    done: int = 0
    total: int = 0
    outcome: UnitOutcome | None = None
    reason: str = ""


class Executor(Protocol):
    """Workers that scan units (see :mod:`btd_core.archive.local` and ``ray_exec``)."""

    description: str
    """How the units run, in words (for archive.json and the terminal)."""

    def start(self) -> None:
        """Start the workers; raises :class:`ExecutorError` when they cannot run."""

    def idle(self) -> int:
        """How many workers could take a unit now."""

    def submit(self, task: UnitTask) -> Event:
        """Hand ``task`` to an idle worker; returns its ``started`` event."""

    def poll(self, timeout: float) -> list[Event]:
        """Events since the last poll, waiting up to ``timeout`` seconds for one."""

    def busy(self) -> int:
        """Units in flight."""

    def stop_units(self) -> list[Event]:
        """Ask the units in flight to stop (Ctrl-C); returns ``lost`` events for those
        that were given up at once (their workers are gone)."""

    def close(self) -> None:
        """Stop the workers (and, when this executor started it, the Ray runtime)."""
