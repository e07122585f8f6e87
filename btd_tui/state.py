"""The audit's shared types: what the app, its views and its workers all speak.

Nothing here imports a view or the app, so every module of :mod:`btd_tui` may import
this one (the app owns the state; views get what they need passed in, typed by these).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from textual.notifications import SeverityLevel

from btd_tui.serial_scorer import SerialScorer

if TYPE_CHECKING:
    from btd_core.audit.scan_config import ScanConfig
    from btd_core.scoring.strategy import SliceScore
    from btd_core.scoring.tiles import ScanSettings
    from btd_core.study.records import Discovery

SliceKey = tuple[str, int]
"""``(series key, slice index)``: one slice of the study."""


class ScanPhase(str, Enum):
    """Where the audit is: loading -> ready -> scanning -> (cancelling -> cancelled ->) done;
    or error (the study or the model cannot be used: nothing is scored)."""

    LOADING = "loading"
    READY = "ready"
    SCANNING = "scanning"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "stopped on an error"
    DONE = "done"
    ERROR = "error"

    @property
    def running(self) -> bool:
        """A scan run is under way (scanning, or cancelling after the current slice)."""
        return self in (ScanPhase.SCANNING, ScanPhase.CANCELLING)

    @property
    def usable(self) -> bool:
        """The study and the model are loaded (not loading, no error)."""
        return self not in (ScanPhase.LOADING, ScanPhase.ERROR)

    @property
    def resumable(self) -> bool:
        """A run ended early (cancelled, or stopped on an error): r resumes it."""
        return self in (ScanPhase.CANCELLED, ScanPhase.FAILED)

    @property
    def style(self) -> str:
        """How the progress line writes this phase."""
        return _STYLES.get(self, "bold")


_STYLES = {
    ScanPhase.ERROR: "bold red",
    ScanPhase.DONE: "bold green",
    ScanPhase.CANCELLED: "bold yellow",
    ScanPhase.FAILED: "bold red",
}


@dataclass(frozen=True)
class PlantedEdit:
    """A tampering known to be in the study (``btd demo``'s planted slices, a test set's
    truth table): the app marks its row and says where it ranked.

    Attributes
    ----------
    relpath:
        The tampered file, relative to the study folder.
    description:
        What was done and where, e.g. ``copy-move injection at x=120, y=300``.
    """

    relpath: str
    description: str


@dataclass(frozen=True)
class AuditRequest:
    """What ``btd audit`` was asked to do (see :func:`btd_tui.app.create_app`).

    ``config``: the scan configuration (:class:`btd_core.audit.scan_config.ScanConfig`);
    ``None``: its defaults, made when first needed (:meth:`scan_config`, in a worker
    thread: the engine's imports stay out of the first draw).
    """

    study_dir: Path
    model_path: Path
    config: ScanConfig | None = None
    ascii: bool = False
    preview: str = "auto"
    autostart: bool = True
    command_line: Sequence[str] = field(default_factory=tuple)
    planted: Sequence[PlantedEdit] = ()

    @property
    def provider(self) -> str:
        """Where onnxruntime was asked to run (``auto``, ``cuda`` or ``cpu``)."""
        return self.config.provider if self.config is not None else "auto"

    def scan_config(self) -> ScanConfig:
        """The scan configuration asked for (its defaults when none was given)."""
        if self.config is not None:
            return self.config
        from btd_core.audit.scan_config import ScanConfig

        return ScanConfig()


@dataclass(frozen=True)
class AuditSession:
    """Everything a scan, a preview or an export needs, once the study and model are loaded.

    ``verdicts`` keeps the own verdicts of the last previewed slices and their neighbours
    (series context needs them), so browsing slice by slice scores each slice once.
    """

    discovery: Discovery
    scorer: SerialScorer
    settings: ScanSettings
    slice_score: SliceScore
    verdicts: VerdictCache = field(default_factory=lambda: VerdictCache(), compare=False)


class VerdictCache:
    """A small thread-safe LRU of slice verdicts, keyed by (series key, slice index)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> tuple[bool, object]:
        """(found, the verdict or ``None``)."""
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key: tuple[str, int], verdict: object) -> None:
        """Keep ``verdict`` (``None``: the slice had nothing to score), dropping the oldest."""
        with self._lock:
            self._items[key] = verdict
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class AuditHost(Protocol):
    """What the views need of the app (:class:`btd_tui.app.BtdApp`): the phase it owns
    (a reactive attribute: setting it redraws the progress line) and notifications."""

    phase: ScanPhase

    def say(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information"
    ) -> None:
        """A notification whose text is shown literally."""
        ...
