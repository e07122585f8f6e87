"""Which slice the preview shows, and getting its picture (cache, or a thread worker).

The table's cursor chooses a slice (debounced, so scrolling through rows does not start
a computation per row); ``n``/``p`` step through the series; a series node in the tree
shows that series' worst slice.  Pictures come from the scan's kept views, a small
cache, or :func:`btd_core.scoring.tiles.view_slice` in the app's preview worker.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from textual.timer import Timer

from btd_tui.messages import PreviewFailed, PreviewReady
from btd_tui.widgets.findings_table import FindingsTable, split_row_key
from btd_tui.widgets.slice_preview import Shown, SlicePreview

if TYPE_CHECKING:
    from btd_tui.app import BtdApp

CURSOR_DELAY_S = 0.25
"""The preview follows the table's cursor once it rests this long."""

CACHE_SIZE = 8
"""Recently computed slice pictures kept (each is two float32 H x W arrays)."""


class PreviewControl:
    """Chooses the previewed slice and fetches its picture."""

    def __init__(self, app: BtdApp) -> None:
        self.app = app
        self.cache: OrderedDict[tuple[str, int], tuple[Any, Any]] = OrderedDict()
        self.pending: tuple[str, int] | None = None
        self._timer: Timer | None = None

    @property
    def widget(self) -> SlicePreview:
        """The preview widget."""
        return self.app.query_one(SlicePreview)

    def cursor_moved(self) -> None:
        """The table's cursor moved: show its slice once it rests."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.app.set_timer(CURSOR_DELAY_S, self._follow_cursor)

    def _follow_cursor(self) -> None:
        key = self.app.query_one(FindingsTable).current_key()
        if key is not None:
            self.show(*split_row_key(key))

    def show_series(self, series_key: str) -> None:
        """Show a series' worst slice (its first when none was scored yet)."""
        book = self.app.scan_view.book
        results = [r for r in (book.results if book else []) if r.series_key == series_key]
        best = max(results, key=lambda r: r.score).slice_index if results else 0
        self.show(series_key, best)

    def step(self, delta: int) -> None:
        """Show the slice ``delta`` places away in the same series (clamped)."""
        shown = self.widget.shown
        if shown is None:
            self.app.say("no slice shown yet: pick a ranked slice", severity="warning")
            return
        index = min(max(shown.index + delta, 0), shown.count - 1)
        if index != shown.index:
            self.show(shown.series_key, index)

    def show(self, series_key: str, index: int) -> None:
        """Show slice ``index`` of a series: at once when its picture is known, else compute."""
        series = self.app.scan_view.series_by_key.get(series_key)
        if series is None or self.app.scorer is None or not 0 <= index < len(series.slices):
            return
        target = Shown(series_key, index, len(series.slices), self.app.scan_view.label(series_key))
        widget = self.widget
        if widget.shown == target and (
            widget.view is not None or self.pending == (series_key, index)
        ):
            return
        known = self._known(series_key, index)
        if known is not None:
            self.pending = None
            widget.set_view(target, *known)
            return
        self.pending = (series_key, index)
        widget.set_computing(target)
        self.app.compute_preview(series, index)

    def _known(self, series_key: str, index: int) -> tuple[Any, Any] | None:
        key = (series_key, index)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        book = self.app.scan_view.book
        if book is not None and key in book.views:
            return book.views[key], book.result_for(key)
        return None

    def ready(self, message: PreviewReady) -> None:
        """A picture was computed: cache it; show it if it is still the one wanted."""
        key = (message.series_key, message.index)
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
        if shown is not None and (shown.series_key, shown.index) == (
            message.series_key,
            message.index,
        ):
            self.pending = None
            self.widget.set_error(shown, message.error)
        self.app.scan_view.log.warning(
            f"preview of slice {message.index + 1} failed: {message.error}"
        )
