"""The selected slice drawn in the terminal: real pixels, half-blocks or ASCII, with the
heat map, the worst region and zoom.

In a graphics mode (``kitty`` or ``sixel``, see :mod:`btd_tui.preview_mode`) the picture is
an RGB image from :func:`btd_tui.pixels.slice_image`, sized to the cells it takes at the
terminal's cell size in pixels and shown by a textual-image widget placed over this one
(centred in the picture area).  In the text modes it comes from
:func:`btd_tui.render.render` (a pure function) as lines of cells.  This widget keeps
what to show, recomputes the picture when its size or the options change, and shows a
one-line status (``computing…``, an error, or nothing selected) instead of the picture
when there is none (the same lines in every mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from btd_core.findings.score_text import score_text
from btd_core.safe_text import middle_ellipsis, printable
from btd_tui.preview_mode import PreviewChoice, cell_pixels, choose_preview
from btd_tui.render import RenderRequest, render, strips_text

if TYPE_CHECKING:
    from textual_image.widget import SixelImage, TGPImage

    from btd_core.scoring.tiles import SliceView
    from btd_core.study.records import SliceResult


TITLE_FRAME = 6
"""Cells of the border line a title cannot use (corners, the rules and blanks around it)."""

LABEL_FLOOR = 6
"""Fewest characters of a series label worth showing in the title (else it is left out)."""


def preview_title(
    label: str, index: int, count: int, score: float | None, room: int, signal: str = ""
) -> str:
    """``LABEL · slice N/M · score S (SIGNAL)`` in at most ``room`` cells: the slice number
    stays (numbered from 1), then the score, then the series label (cut in the middle, or
    left out), then which signal gave the score
    (:attr:`btd_core.study.records.SliceResult.signal`): a narrow preview at 80 columns
    still says which slice it shows."""
    where = f"slice {index + 1}/{count}"
    scored = where if score is None else f"{where} · score {score_text(score)}"
    signalled = f"{scored} ({signal})" if signal and score is not None else scored
    whole = f"{label} · {signalled}"
    if room <= 0 or len(whole) <= room:
        return whole
    tails = [signalled] if signalled != scored else []
    tails.append(scored if len(scored) <= room else where)
    for tail in tails:
        label_room = room - len(tail) - 3
        if label_room >= LABEL_FLOOR:
            return f"{middle_ellipsis(label, label_room)} · {tail}"
    return tails[-1]


@dataclass(frozen=True)
class Shown:
    """The slice on screen: which one, and its label for the title."""

    series_key: str
    index: int
    count: int
    label: str


@dataclass(frozen=True, eq=False)
class Picture:
    """What the preview shows: a slice (or none), its picture once computed, its result
    (the box; ``None`` when nothing of it was scored), and a one-line status message.
    Compared by identity: every change is a new :class:`Picture`."""

    shown: Shown | None = None
    view: SliceView | None = None
    result: SliceResult | None = None
    message: str = "no slice selected: pick a ranked slice"


class SlicePreview(Widget):
    """A slice with its heat map and worst tile; toggles: heat, ASCII, zoom.

    ``picture`` and the three toggles are reactive: setting one redraws the preview
    (and its titles) through its watcher.  ``preview`` is the mode asked for (one of
    :data:`btd_tui.preview_mode.PREVIEW_MODES`; ``auto`` asks the terminal, so build the
    widget before the app runs); ``ascii`` starts in ASCII.  ASCII toggles with the
    colour mode: the graphics protocol chosen, or half-blocks.
    """

    DEFAULT_CSS = """
    SlicePreview > .slice-pixels {
        width: auto;
        height: auto;
        display: none;
    }
    """

    picture: reactive[Picture] = reactive(Picture, init=False)
    show_heat: reactive[bool] = reactive(True, init=False)
    ascii: reactive[bool] = reactive(False, init=False)
    zoom: reactive[bool] = reactive(False, init=False)

    def __init__(self, ascii: bool = False, preview: str = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choice: PreviewChoice = choose_preview(preview, strict=False)
        """The preview mode in use and why."""
        self.colour_mode = "halfblock" if self.choice.mode == "ascii" else self.choice.mode
        """What ASCII toggles with: ``kitty``, ``sixel`` or ``halfblock``."""
        self.set_reactive(SlicePreview.ascii, ascii or self.choice.mode == "ascii")
        self._lines: list[Strip] = []
        self._cache_key: tuple[object, ...] | None = None
        self._pixels: TGPImage | SixelImage | None = None
        self._pixels_key: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        """In a graphics mode, the textual-image widget that shows the pixels."""
        if self.colour_mode == "kitty":
            from textual_image.widget import TGPImage

            self._pixels = TGPImage(classes="slice-pixels")
        elif self.colour_mode == "sixel":
            from textual_image.widget import SixelImage

            self._pixels = SixelImage(classes="slice-pixels")
        if self._pixels is not None:
            yield self._pixels

    @property
    def pixel_mode(self) -> bool:
        """Real pixels are drawn now (a graphics mode, not toggled to ASCII)."""
        return self._pixels is not None and not self.ascii

    @property
    def shown(self) -> Shown | None:
        """The slice on screen (or being computed), if any."""
        return self.picture.shown

    @property
    def view(self) -> SliceView | None:
        """Its image and heat map, once known."""
        return self.picture.view

    @property
    def result(self) -> SliceResult | None:
        """Its score and worst region, when it was scored."""
        return self.picture.result

    @property
    def message(self) -> str:
        """The status line (``computing…``, an error, ...), ``""`` when none."""
        return self.picture.message

    def on_mount(self) -> None:
        """Titles before anything is shown."""
        self._titles()

    def on_resize(self) -> None:
        """A new size: the pixels are fitted again, the title shortened to fit."""
        self._titles()
        self._place_pixels()

    def on_unmount(self) -> None:
        """Free the picture held by the terminal (kitty keeps transmitted images)."""
        if self._pixels is not None:
            self._pixels.image = None

    def set_computing(self, shown: Shown) -> None:
        """A slice was chosen; its picture is being computed."""
        self.picture = Picture(shown, message="computing…")

    def set_view(self, shown: Shown, view: SliceView, result: SliceResult | None) -> None:
        """Show a computed slice (``result`` gives the worst tile, ``None`` for no body)."""
        message = "" if result else "no body tiles on this slice (nothing scored)"
        self.picture = Picture(shown, view, result, message)

    def set_error(self, shown: Shown | None, message: str) -> None:
        """The slice could not be read or scored."""
        self.picture = Picture(shown, message="cannot show this slice: " + printable(message))

    def toggle_heat(self) -> None:
        """Heat map overlay on / off."""
        self.show_heat = not self.show_heat

    def toggle_ascii(self) -> None:
        """ASCII ramp / half-block colour."""
        self.ascii = not self.ascii

    def toggle_zoom(self) -> None:
        """Whole slice / the worst tile enlarged."""
        self.zoom = not self.zoom

    def watch_picture(self) -> None:
        """A new slice, picture, or status: redraw."""
        self._changed()

    def watch_show_heat(self) -> None:
        """Heat toggled: redraw."""
        self._changed()

    def watch_ascii(self) -> None:
        """ASCII toggled: redraw."""
        self._changed()

    def watch_zoom(self) -> None:
        """Zoom toggled: redraw."""
        self._changed()

    def _changed(self) -> None:
        self._cache_key = None
        self._titles()
        self._place_pixels()
        self.refresh()

    def _titles(self) -> None:
        if self.shown is None:
            self.border_title = Text("slice preview")
        else:
            self.border_title = Text(
                preview_title(
                    printable(self.shown.label),
                    self.shown.index,
                    self.shown.count,
                    None if self.result is None else self.result.score,
                    self.size.width - TITLE_FRAME,
                    "" if self.result is None else self.result.signal,
                )
            )
        colour = "colour" if self.colour_mode == "halfblock" else self.colour_mode
        modes = ["ascii" if self.ascii else colour, "heat on" if self.show_heat else "heat off"]
        if self.zoom:
            modes.append("zoom")
        self.border_subtitle = Text(" · ".join(modes))

    def lines(self) -> list[Strip]:
        """The content's lines at the current size (computed on demand, cached)."""
        width, height = self.content_size.width, self.content_size.height
        key = (
            width,
            height,
            id(self.picture),
            self.pixel_mode,
            self.ascii,
            self.show_heat,
            self.zoom,
        )
        if key != self._cache_key:
            self._lines = self._compute(width, height)
            self._cache_key = key
        return self._lines

    def _request(self) -> RenderRequest | None:
        """What to draw of the slice shown, ``None`` before its picture is known."""
        if self.view is None:
            return None
        box = self.result.region if self.result else None
        return RenderRequest(
            image=self.view.image,
            heat=self.view.heat,
            box=box,
            ascii=self.ascii,
            show_heat=self.show_heat,
            zoom=self.zoom and box is not None,
        )

    def _picture_rows(self, height: int) -> int:
        """Rows for the picture: all but the status line's, when there is one."""
        return height - 1 if self.message and self.view is not None else height

    def _place_pixels(self) -> None:
        """In a graphics mode, give the image widget the picture fitted to the content
        area (centred above the status line), or hide it when there is none to show."""
        image_widget = self._pixels
        if image_widget is None or not self.is_mounted:
            return
        from btd_tui.pixels import fit_cells, picture_size, slice_image  # PIL: graphics only

        request = self._request() if self.pixel_mode else None
        width, height = self.content_size.width, self.content_size.height
        rows_free = self._picture_rows(height)
        cell = cell_pixels()
        columns, rows = (0, 0)
        if request is not None:
            columns, rows = fit_cells(*picture_size(request), width, rows_free, cell)
        key = (self.picture, self.show_heat, self.zoom, columns, rows, rows_free, cell)
        if columns == 0 or rows == 0:
            if image_widget.display:
                image_widget.display = False
                image_widget.image = None
            self._pixels_key = None
            return
        if key == self._pixels_key:
            return
        self._pixels_key = key
        assert request is not None
        image_widget.styles.width = columns
        image_widget.styles.height = rows
        image_widget.styles.margin = ((rows_free - rows) // 2, 0, 0, (width - columns) // 2)
        image_widget.image = slice_image(request, columns * cell[0], rows * cell[1])
        image_widget.display = True

    def _compute(self, width: int, height: int) -> list[Strip]:
        if width <= 0 or height <= 0:
            return []
        picture_rows = self._picture_rows(height)
        request = self._request()
        if request is None:
            text = Text(self.message, style="italic dim")
            body = [Strip.blank(width)] * (height // 2)
            segments = list(text.render(self.app.console))
            line = Strip(segments).crop_extend(0, width, Style.null())
            return [*body, line, *[Strip.blank(width)] * (height - len(body) - 1)]
        if self.pixel_mode:  # the image widget draws the picture over these blank lines
            lines = [Strip.blank(width)] * picture_rows
        else:
            lines = render(request, width, picture_rows)
        if picture_rows < height:
            note = Strip([Segment(self.message[:width], Style(italic=True, dim=True))])
            lines.append(note.crop_extend(0, width, Style.null()))
        return lines

    def render_line(self, y: int) -> Strip:
        """One line of the picture (or of the status message)."""
        lines = self.lines()
        if 0 <= y < len(lines):
            return lines[y].apply_style(self.rich_style)
        return Strip.blank(self.content_size.width, self.rich_style)

    def text_lines(self) -> list[str]:
        """The shown lines as plain text (for tests)."""
        return strips_text(self.lines())
