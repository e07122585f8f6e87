"""Messages that workers (threads) post to the app: small dataclasses, nothing else.

Workers never touch widgets; they post one of these with ``App.post_message`` (thread
safe) and the app updates its state and widgets on its own thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from btd_tui.serial_scorer import SerialScorer
from btd_tui.state import SliceKey

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanOutcome, ScanProgress
    from btd_core.scoring.tiles import SliceView
    from btd_core.study.records import Discovery, SliceResult


@dataclass
class DiscoveryReady(Message):
    """The study folder was walked."""

    discovery: Discovery


@dataclass
class DiscoveryFailed(Message):
    """The study folder could not be walked."""

    error: str


@dataclass
class ScorerReady(Message):
    """The ONNX scorer is open (shared by the scan and the previews, one call at a time)."""

    scorer: SerialScorer


@dataclass
class ScorerFailed(Message):
    """The ONNX scorer could not be opened as asked (bad file, CUDA not active, ...)."""

    title: str
    error: str


@dataclass
class ScanProgressed(Message):
    """One slice was tried; ``run_id`` tells runs apart (a late message of a cancelled
    run is ignored once a fresh scan started)."""

    run_id: int
    progress: ScanProgress

    @property
    def key(self) -> SliceKey | None:
        """The slice that was tried: ``(series key, slice index)``."""
        return self.progress.key


@dataclass
class ScanFinished(Message):
    """A scan run ended: finished, or cancelled (``outcome.cancelled``)."""

    run_id: int
    outcome: ScanOutcome


@dataclass
class ScanFailed(Message):
    """A scan run stopped on an unexpected error."""

    run_id: int
    error: str


@dataclass
class PreviewReady(Message):
    """A slice's image and heat map were computed for the preview."""

    series_key: str
    index: int
    view: SliceView
    result: SliceResult | None

    @property
    def key(self) -> SliceKey:
        """The slice: ``(series key, slice index)``."""
        return (self.series_key, self.index)


@dataclass
class PreviewFailed(Message):
    """A slice could not be read or scored for the preview."""

    series_key: str
    index: int
    error: str

    @property
    def key(self) -> SliceKey:
        """The slice: ``(series key, slice index)``."""
        return (self.series_key, self.index)


@dataclass
class ExportDone(Message):
    """The report was written into ``folder`` (``files`` names what was written)."""

    folder: str
    files: list[str]


@dataclass
class ExportFailed(Message):
    """The report could not be written."""

    folder: str
    error: str
