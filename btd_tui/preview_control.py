"""Which slice the preview shows, and getting its picture (cache, or a thread worker).

The table's cursor chooses a slice (the table's ``SliceHighlighted`` message, debounced,
so scrolling through rows does not start a computation per row); ``n``/``p`` step
through the series; a series node in the tree shows that series' worst slice.
Pictures come from the scan's kept views, a small cache, or
:func:`btd_core.scoring.tiles.view_slice` in the app's preview worker.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from textual.timer import Timer

from btd_tui.jobs import AuditWorkers
from btd_tui.messages import PreviewFailed, PreviewReady
from btd_tui.scan_view import ScanView
from btd_tui.state import AuditHost, SliceKey
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.slice_preview import Shown, SlicePreview

if TYPE_CHECKING:
    from btd_core.scoring.tiles import SliceView
    from btd_core.study.records import SliceResult

CURSOR_DELAY_S = 0.25
"""The preview follows the table's cursor once it rests this long."""

CACHE_SIZE = 8
"""Recently computed slice pictures kept (each is two float32 H x W arrays)."""


class PreviewControl:
    """Chooses the previewed slice and fetches its picture.

    ``scan`` gives the series, the session and the scan's kept views; ``preview`` is the
    widget it draws into; failures are also written to ``log``.
    """

    def __init__(
        self,
        host: AuditHost,
        jobs: AuditWorkers,
        scan: ScanView,
        *,
        preview: SlicePreview,
        log: LogPanel,
    ) -> None:
        self.host = host
        self.jobs = jobs
        self.scan = scan
        self.widget = preview
        self.log = log
        self.cache: OrderedDict[SliceKey, tuple[SliceView, SliceResult | None]] = OrderedDict()
        self.pending: SliceKey | None = None
        self._timer: Timer | None = None

    def cursor_moved(self, key: SliceKey) -> None:
        """The table's cursor moved to slice ``key``: show it once the cursor rests."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.widget.set_timer(CURSOR_DELAY_S, lambda: self.show(*key))

    def show_series(self, series_key: str) -> None:
        """Show a series' worst slice (its first when none was scored yet)."""
        book = self.scan.book
        worst = book.worst_in(series_key) if book is not None else None
        self.show(series_key, worst.slice_index if worst is not None else 0)

    def step(self, delta: int) -> None:
        """Show the slice ``delta`` places away in the same series (clamped)."""
        shown = self.widget.shown
        if shown is None:
            self.host.say("no slice shown yet: pick a ranked slice", severity="warning")
            return
        index = min(max(shown.index + delta, 0), shown.count - 1)
        if index != shown.index:
            self.show(shown.series_key, index)

    def show(self, series_key: str, index: int) -> None:
        """Show slice ``index`` of a series: at once when its picture is known, else compute."""
        series = self.scan.series_by_key.get(series_key)
        session = self.scan.session
        if series is None or session is None or not 0 <= index < len(series.slices):
            return
        target = Shown(series_key, index, len(series.slices), self.scan.label(series_key))
        widget = self.widget
        if widget.shown == target and (
            widget.view is not None or self.pending == (series_key, index)
        ):
            return
        known = self._known((series_key, index))
        if known is not None:
            self.pending = None
            widget.set_view(target, *known)
            return
        self.pending = (series_key, index)
        widget.set_computing(target)
        self.jobs.compute_preview(series, index, session)

    def _known(self, key: SliceKey) -> tuple[SliceView, SliceResult | None] | None:
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        book = self.scan.book
        if book is not None and key in book.views:
            return book.views[key], book.result_for(key)
        return None

    def ready(self, message: PreviewReady) -> None:
        """A picture was computed: cache it; show it if it is still the one wanted."""
        key = message.key
        self.cache[key] = (message.view, message.result)
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        shown = self.widget.shown
        if shown is not None and (shown.series_key, shown.index) == key:
            self.pending = None
            self.widget.set_view(shown, message.view, message.result)

    def failed(self, message: PreviewFailed) -> None:
        """The slice could not be read: say so in the preview (and the log)."""
        shown = self.widget.shown
        if shown is not None and (shown.series_key, shown.index) == message.key:
            self.pending = None
            self.widget.set_error(shown, message.error)
        self.log.warning(f"preview of slice {message.index + 1} failed: {message.error}")
