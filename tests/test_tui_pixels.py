"""Previews with real pixels: the picture (btd_tui.pixels), the mode choice
(btd_tui.preview_mode), and the kitty graphics and sixel output of a real slice."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from textual.app import App, ComposeResult

from btd_core.findings.overlay import BOX_WIDTH, HEAT_THRESHOLD
from btd_core.scoring.tiles import SliceView
from btd_core.study.records import SliceResult
from btd_tui.pixels import fit_cells, picture_size, slice_image
from btd_tui.preview_mode import PREVIEW_MODES, cell_pixels, choose_preview
from btd_tui.render import BOX_RGB, ZOOM_MARGIN, RenderRequest, render, strips_text, zoom_region
from btd_tui.widgets.slice_preview import Shown, SlicePreview
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer
from tests.support.pilot import run_app, screen_text

CYAN = np.array(BOX_RGB, np.uint8)
PLACEHOLDER = chr(0x10EEEE)
"""The kitty graphics protocol's Unicode placeholder (one per cell of the picture)."""


def gradient(height: int = 64, width: int = 64) -> np.ndarray:
    return np.tile(np.linspace(0.1, 0.9, width), (height, 1))


def pixels(image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def cyan_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb == CYAN).all(axis=2)


def test_native_picture_has_the_slice_pixels_and_the_box_inside_its_edge():
    image = gradient()
    box = (10, 20, 16)  # x, y, size
    rgb = pixels(slice_image(RenderRequest(image, box=box, show_heat=False)))
    assert rgb.shape == (64, 64, 3)
    cyan = cyan_mask(rgb)
    ys, xs = np.nonzero(cyan)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 25, 20, 35)
    ring = np.zeros((64, 64), bool)
    ring[20:36, 10:26] = True
    ring[20 + BOX_WIDTH : 36 - BOX_WIDTH, 10 + BOX_WIDTH : 26 - BOX_WIDTH] = False
    assert (cyan == ring).all()
    gray = np.round(image * 255).astype(np.uint8)
    assert (rgb[~cyan] == np.repeat(gray[..., None], 3, 2)[~cyan]).all()


def test_box_is_scaled_with_the_picture():
    request = RenderRequest(gradient(), box=(10, 20, 16), show_heat=False)
    rgb = pixels(slice_image(request, 128, 128))
    ys, xs = np.nonzero(cyan_mask(rgb))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 51, 40, 71)
    assert not cyan_mask(rgb)[45:66, 25:46].any()  # the region's inside stays clear


def test_heat_is_blended_only_where_it_is_hot():
    image = np.full((32, 32), 0.5)
    heat = np.zeros((32, 32))
    heat[8:12, 8:12] = 1.0
    heat[20, 20] = 0.1 * HEAT_THRESHOLD  # below the threshold after normalising
    rgb = pixels(slice_image(RenderRequest(image, heat=heat))).astype(int)
    hot = np.zeros((32, 32), bool)
    hot[8:12, 8:12] = True
    assert (rgb[~hot] == 128).all()
    red, green, blue = rgb[hot].T
    assert (red > 128).all() and (red >= green).all() and (green > blue + 50).all()  # yellow
    off = pixels(slice_image(RenderRequest(image, heat=heat, show_heat=False)))
    assert (off == 128).all()


def test_zoom_crops_the_worst_region_with_its_margin_at_native_resolution():
    image = np.random.default_rng(0).uniform(size=(128, 128))
    box = (40, 50, 24)
    request = RenderRequest(image, box=box, zoom=True, show_heat=False)
    margin = round(24 * ZOOM_MARGIN)
    assert zoom_region(image.shape, box) == (50 - margin, 74 + margin, 40 - margin, 64 + margin)
    assert picture_size(request) == (24 + 2 * margin, 24 + 2 * margin)
    native = pixels(slice_image(request))
    crop = np.round(image[50 - margin : 74 + margin, 40 - margin : 64 + margin] * 255)
    cyan = cyan_mask(native)
    assert (native[..., 0][~cyan] == crop[~cyan]).all()
    ys, xs = np.nonzero(cyan)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (margin, margin, margin + 23, margin + 23)
    # clipped at the slice's edge
    edge = RenderRequest(image, box=(0, 0, 24), zoom=True)
    assert picture_size(edge) == (24 + margin, 24 + margin)


def test_zoom_is_enlarged_by_nearest_neighbour():
    image = np.random.default_rng(1).uniform(size=(64, 64))
    request = RenderRequest(image, box=(16, 16, 16), zoom=True, show_heat=False)
    side = picture_size(request)[0]  # 24 slice pixels
    big = pixels(slice_image(request, side * 5, side * 5))
    native = pixels(slice_image(request))
    # every slice pixel is a 5 x 5 block of one colour (away from the box's outline)
    assert (big[2::5, 2::5][:4, :4] == native[:4, :4]).all()
    block = big[:5, :5].reshape(-1, 3)
    assert (block == block[0]).all()


def test_picture_is_letterboxed_to_the_size_asked():
    image = gradient(32, 64)  # twice as wide as high
    rgb = pixels(slice_image(RenderRequest(image, show_heat=False), 64, 48))
    assert rgb.shape == (48, 64, 3)
    assert (rgb[:8] == 0).all() and (rgb[40:] == 0).all()  # black bands above and below
    assert rgb[8:40].min() > 0


def test_small_hot_spot_survives_shrinking():
    image = np.full((200, 200), 0.5)
    heat = np.zeros((200, 200))
    heat[101, 101] = 1.0
    rgb = pixels(slice_image(RenderRequest(image, heat=heat), 50, 50)).astype(int)
    assert (rgb[..., 0] > rgb[..., 2] + 40).sum() == 1


def test_bad_requests_are_refused():
    with pytest.raises(ValueError):
        slice_image(RenderRequest(np.zeros((4, 4)), heat=np.zeros((3, 3))))
    with pytest.raises(ValueError):
        slice_image(RenderRequest(np.zeros((4, 4))), 0, 10)


def test_fit_cells_keeps_the_aspect_ratio_in_screen_pixels():
    # 512 x 512 into 40 x 20 cells of 10 x 20 px: 400 x 400 px -> 40 x 20 cells
    assert fit_cells(512, 512, 40, 20, (10, 20)) == (40, 20)
    # 60 x 20 cells: limited by the height (400 px): 40 columns
    assert fit_cells(512, 512, 60, 20, (10, 20)) == (40, 20)
    # a wide picture in a tall box: limited by the width
    assert fit_cells(200, 100, 20, 30, (10, 20)) == (20, 5)
    assert fit_cells(0, 10, 20, 30, (10, 20)) == (0, 0)
    assert fit_cells(10, 10, 0, 30, (10, 20)) == (0, 0)


@pytest.mark.parametrize("mode", ["halfblock", "ascii"])
def test_forced_text_modes_are_used_as_asked(mode):
    choice = choose_preview(mode, {"TERM": "xterm-kitty"})
    assert choice.mode == mode and not choice.graphics


@pytest.mark.parametrize(
    "environ",
    [
        {"TERM": "tmux-256color"},
        {"TERM": "screen-256color"},
        {"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1000/default,1,0"},
        {"TERM": "xterm-256color", "STY": "1234.pts-0.host"},
        {"TERM": "xterm-256color", "ZELLIJ": "0"},
    ],
)
def test_auto_is_half_blocks_inside_a_multiplexer(environ):
    choice = choose_preview("auto", environ)
    assert choice.mode == "halfblock" and "inside" in choice.reason


def test_auto_without_a_terminal_is_half_blocks():
    # pytest's stdin/stdout are not terminals: nothing to ask, half-blocks
    choice = choose_preview("auto", {"TERM": "xterm-kitty"})
    assert choice.mode == "halfblock" and "not a terminal" in choice.reason


def test_auto_follows_btd_preview():
    assert choose_preview("auto", {"BTD_PREVIEW": "ascii", "TMUX": "x"}).mode == "ascii"
    assert choose_preview("auto", {"BTD_PREVIEW": "sixel", "TMUX": "x"}).mode == "sixel"
    assert choose_preview("auto", {"BTD_PREVIEW": "auto", "TMUX": "x"}).mode == "halfblock"
    assert choose_preview("halfblock", {"BTD_PREVIEW": "kitty"}).mode == "halfblock"
    with pytest.raises(ValueError, match="BTD_PREVIEW"):
        choose_preview("auto", {"BTD_PREVIEW": "pixels"})
    lenient = choose_preview("auto", {"BTD_PREVIEW": "pixels", "TMUX": "x"}, strict=False)
    assert lenient.mode == "halfblock" and "ignored" in lenient.reason
    with pytest.raises(ValueError):
        choose_preview("iterm", {})


def test_forced_graphics_modes_are_used_even_in_tmux():
    for mode in ("kitty", "sixel"):
        choice = choose_preview(mode, {"TMUX": "x", "TERM": "tmux-256color"})
        assert choice.mode == mode and choice.graphics
    assert set(PREVIEW_MODES) == {"auto", "kitty", "sixel", "halfblock", "ascii"}


# --- the widget on a real slice: kitty graphics and sixel output, text fallbacks -------------

APC = re.compile(r"\x1b_G([^;\x1b]*)(?:;([A-Za-z0-9+/=]*))?\x1b\\")
"""A kitty graphics command: ``ESC _ G keys ; payload ESC \\``."""
SHOWN = Shown("series", 0, 1, "CT_small")


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory) -> tuple[SliceView, SliceResult]:
    """A real CT slice (pydicom's CT_small with a planted noise block), read, windowed and
    scored by the tiny deterministic scorer: its picture, heat map and worst region."""
    from btd_core.engine.scorer import Scorer
    from btd_core.scoring.strategy import LocalScore
    from btd_core.scoring.tiles import ScanSettings, view_slice
    from btd_core.study.discovery import discover

    root = tmp_path_factory.mktemp("pixels")
    write_fixed_series(root / "study", 1, planted_index=0)
    scorer = Scorer(write_tiny_scorer(root / "tiny.onnx"), provider="cpu")
    series = discover(root / "study").series[0]
    view, scores = view_slice(series, 0, scorer, ScanSettings(stride=32))
    verdict = LocalScore().judge(series.key, 0, view.image, scores)
    assert verdict is not None and view.heat.max() > 0
    return view, verdict.result


class PreviewApp(App[None]):
    """The preview alone, 40 x 20 cells inside a border."""

    CSS = "SlicePreview { width: 42; height: 22; border: round white; }"

    def __init__(self, preview: str) -> None:
        super().__init__()
        self.preview_mode = preview

    def compose(self) -> ComposeResult:
        yield SlicePreview(preview=self.preview_mode)


def request_for(preview: SlicePreview, **changes) -> RenderRequest:
    view, result = preview.view, preview.result
    assert view is not None
    fields = dict(image=view.image, heat=view.heat, box=result.region if result else None)
    return RenderRequest(**{**fields, **changes})


def kitty_messages(out: str) -> list[tuple[dict[str, str], str]]:
    """The kitty graphics commands written: (keys, base64 payload)."""
    found = []
    for keys, payload in APC.findall(out):
        found.append((dict(item.split("=", 1) for item in keys.split(",")), payload))
    return found


def transmitted(messages: list[tuple[dict[str, str], str]]) -> dict[str, Image.Image]:
    """The images sent (direct transmission, PNG, in chunks), by image id."""
    chunks: dict[str, list[str]] = {}
    for keys, payload in messages:
        if keys.get("f") == "100":
            assert keys["q"] == "2" and keys.get("a", "t") == "t"
            chunks.setdefault(keys["i"], []).append((keys["m"], payload))
    images = {}
    for image_id, parts in chunks.items():
        assert [m for m, _ in parts] == ["1"] * (len(parts) - 1) + ["0"]  # more, ..., last
        data = base64.b64decode("".join(p for _, p in parts))
        assert data.startswith(b"\x89PNG")
        images[image_id] = Image.open(io.BytesIO(data)).convert("RGB")
    return images


def test_kitty_preview_sends_the_slice_with_heat_and_box_as_png(real_slice, capfd):
    """The kitty graphics protocol as textual-image writes it: the picture transmitted as
    PNG (``f=100``, base64 in chunks of ``m=1 ... m=0``), a virtual placement over
    ``c`` x ``r`` cells (``a=p``, ``U=1``), and the cells filled with U+10EEEE placeholders
    whose colour names the image; the image is deleted (``a=d``) when it is replaced."""
    view, result = real_slice
    app = PreviewApp("kitty")
    capfd.readouterr()

    async def flow(pilot):
        preview = pilot.app.query_one(SlicePreview)
        preview.set_view(SHOWN, view, result)
        await pilot.pause(0.3)
        pixels_widget = preview.query_one(".slice-pixels")
        first = (pixels_widget.region, preview.content_region, screen_text(pilot.app))
        preview.toggle_zoom()
        await pilot.pause(0.3)
        zoomed = (pixels_widget.region, request_for(preview, zoom=True))
        return first, zoomed, request_for(preview), str(preview.border_subtitle)

    (region, content, text), (zoom_region_, zoom_request), request, subtitle = run_app(
        app, flow, size=(60, 26)
    )
    messages = kitty_messages(capfd.readouterr().out)
    images = transmitted(messages)
    placements = [keys for keys, _ in messages if keys.get("a") == "p"]
    assert len(images) == 2 and len(placements) == 2
    cell = cell_pixels()
    for place, shown_region, shown_request in (
        (placements[0], region, request),
        (placements[1], zoom_region_, zoom_request),
    ):
        assert place["U"] == "1" and place["i"] in images
        columns, rows = int(place["c"]), int(place["r"])
        assert (columns, rows) == (shown_region.width, shown_region.height)
        sent = images[place["i"]]
        assert sent.size == (columns * cell[0], rows * cell[1])
        expected = slice_image(shown_request, *sent.size)
        assert np.array_equal(np.asarray(sent), np.asarray(expected))  # heat, box, zoom
        assert cyan_mask(np.asarray(sent)).any()
    first_id = placements[0]["i"]
    assert {"a": "d", "I": first_id} in [keys for keys, _ in messages]  # replaced: freed
    # the whole slice is square: it takes the full 40 x 20 cells of 10 x 20 px, centred
    assert region.width * cell[0] == pytest.approx(region.height * cell[1], abs=cell[0])
    assert region.x - content.x == content.right - region.right
    lines = text.splitlines()[region.y : region.bottom]
    assert all(line.count(PLACEHOLDER) == region.width for line in lines)
    assert subtitle == "kitty · heat on · zoom"


def test_sixel_preview_draws_the_slice_at_the_widget(real_slice):
    """Sixel as textual-image writes it into Textual's output: the cursor moved to the
    picture's cell, then DCS ``ESC P 0;0;0 q``, the raster size in pixels, the colour
    registers (the cyan box and heat colours among them) and ``ESC \\``."""
    view, result = real_slice

    async def flow(pilot):
        preview = pilot.app.query_one(SlicePreview)
        preview.set_view(SHOWN, view, result)
        await pilot.pause(0.3)
        update = pilot.app.screen._compositor.render_update(full=True)
        region = preview.query_one(".slice-pixels").region
        return update.render_segments(pilot.app.console), region, str(preview.border_subtitle)

    out, region, subtitle = run_app(PreviewApp("sixel"), flow, size=(60, 26))
    cell = cell_pixels()
    found = re.search(r"\x1b\[(\d+);(\d+)H\x1bP0;0;0q\"1;1;(\d+);(\d+)([^\x1b]*)\x1b\\", out)
    assert found is not None and out.count("\x1bP") == 1
    row, column, width, height = (int(v) for v in found.groups()[:4])
    assert (column - 1, row - 1) == (region.x, region.y)
    assert (width, height) == (region.width * cell[0], region.height * cell[1])
    registers = {
        tuple(int(v) for v in rgb)
        for rgb in re.findall(r"#\d+;2;(\d+);(\d+);(\d+)", found.group(5))
    }
    assert any(r <= 10 and g >= 90 and b >= 90 for r, g, b in registers)  # the box
    assert any(r - b >= 30 for r, g, b in registers)  # heat: red to yellow over gray
    assert subtitle == "sixel · heat on"


def test_pixel_mode_keeps_the_status_lines_and_toggles_to_ascii(real_slice, capfd):
    view, _ = real_slice

    async def flow(pilot):
        preview = pilot.app.query_one(SlicePreview)
        image_widget = preview.query_one(".slice-pixels")
        seen = {"start": (image_widget.display, preview.text_lines())}
        preview.set_computing(SHOWN)
        await pilot.pause(0.1)
        seen["computing"] = (image_widget.display, preview.text_lines())
        preview.set_view(SHOWN, view, None)  # no body tiles: picture and a status line
        await pilot.pause(0.2)
        seen["no result"] = (image_widget.display, preview.text_lines(), image_widget.region)
        preview.toggle_ascii()
        await pilot.pause(0.2)
        width, height = preview.content_size
        expected = strips_text(render(request_for(preview, ascii=True), width, height - 1))
        seen["ascii"] = (image_widget.display, preview.text_lines(), expected)
        seen["ascii subtitle"] = str(preview.border_subtitle)
        preview.set_error(SHOWN, "unreadable")
        await pilot.pause(0.1)
        seen["error"] = (image_widget.display, preview.text_lines())
        return seen

    seen = run_app(PreviewApp("kitty"), flow, size=(60, 26))
    assert seen["start"][0] is False and "no slice selected" in "".join(seen["start"][1])
    assert seen["computing"][0] is False and "computing…" in "".join(seen["computing"][1])
    shown, lines, region = seen["no result"]
    assert shown is True and lines[-1].startswith("no body tiles on this slice")
    assert all(not line.strip() for line in lines[:-1])  # the image widget draws these
    assert region.bottom <= 1 + 19  # above the status line (border row + 19 picture rows)
    shown, lines, expected = seen["ascii"]
    assert shown is False and lines[:-1] == expected
    assert seen["ascii subtitle"] == "ascii · heat on"
    assert seen["error"][0] is False and "cannot show this slice" in "".join(seen["error"][1])
    capfd.readouterr()


@pytest.mark.parametrize("mode", ["halfblock", "ascii"])
def test_forced_text_preview_draws_cells_not_pixels(real_slice, mode):
    view, result = real_slice

    async def flow(pilot):
        preview = pilot.app.query_one(SlicePreview)
        preview.set_view(SHOWN, view, result)
        await pilot.pause(0.2)
        width, height = preview.content_size
        expected = strips_text(render(request_for(preview, ascii=mode == "ascii"), width, height))
        return preview.choice.mode, preview.query(".slice-pixels"), preview.text_lines(), expected

    choice, image_widgets, lines, expected = run_app(PreviewApp(mode), flow, size=(60, 26))
    assert choice == mode and not image_widgets and lines == expected


def test_auto_preview_without_a_terminal_is_the_half_block_fallback(tmp_path):
    from btd_core.audit.scan_config import ScanConfig
    from btd_tui.factory import create_app

    app = create_app(tmp_path, tmp_path / "m.onnx", ScanConfig("cpu"), autostart=False)
    assert app.slice_preview.choice.mode == "halfblock" and not app.slice_preview.ascii
    forced = create_app(tmp_path, tmp_path / "m.onnx", preview="ascii", autostart=False)
    assert forced.slice_preview.ascii and forced.slice_preview.colour_mode == "halfblock"


@pytest.mark.parametrize("mode", ["halfblock", "ascii"])
def test_fallback_snapshot(snap_compare, real_slice, mode):
    """The text fallbacks of a real slice with its heat map and worst region."""
    view, result = real_slice

    async def show(pilot):
        pilot.app.query_one(SlicePreview).set_view(SHOWN, view, result)
        await pilot.pause(0.3)

    assert snap_compare(PreviewApp(mode), terminal_size=(44, 24), run_before=show)


# --- btd audit --preview ---------------------------------------------------------------------


def test_audit_preview_flag_parses():
    from btd_core.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["audit", "s"]).preview == "auto"
    assert parser.parse_args(["audit", "s", "--preview", "sixel"]).preview == "sixel"
    assert parser.parse_args(["audit", "s", "--ascii"]).preview == "ascii"
    assert parser.parse_args(["audit", "s", "--preview", "halfblock"]).preview == "halfblock"
    with pytest.raises(SystemExit):
        parser.parse_args(["audit", "s", "--preview", "pixels"])


def test_audit_refuses_a_bad_btd_preview(tmp_path, monkeypatch, capsys):
    from btd_core.cli.main import main

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read")
    monkeypatch.setenv("BTD_PREVIEW", "pixels")
    assert main(["audit", str(tmp_path), "--model", str(model)]) == 2
    assert "BTD_PREVIEW" in capsys.readouterr().out


# --- auto asks a real terminal device (a pseudo-terminal, answered as a terminal would) -------

CHOOSE = (
    "import sys; from btd_tui.preview_mode import choose_preview; "
    "c = choose_preview('auto', {'TERM': sys.argv[1]}); print('CHOSE', c.mode, '|', c.reason)"
)


def ask_terminal(
    da1_answer: bytes, kitty: bool, term: str = "xterm-256color", size: tuple[int, int] = (24, 80)
) -> tuple[str, bytes]:
    """Run ``choose_preview("auto")`` in a child whose stdin/stdout is a pseudo-terminal of
    ``size`` (rows, columns) and answer its queries as a terminal would: Device Attributes
    (``ESC [ c``) with ``da1_answer``, the kitty graphics query with OK when ``kitty``.
    Returns the child's output line and everything it wrote to the terminal."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time
    from pathlib import Path

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", CHOOSE, term],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=Path(__file__).resolve().parents[1],
    )
    os.close(slave)
    written = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            written += data
            if b"\x1b[c" in data:
                os.write(master, da1_answer)
            if b"a=q" in data and kitty:
                os.write(master, b"\x1b_Gi=31;OK\x1b\\")
    finally:
        child.wait(30)
        os.close(master)
    text = written.decode(errors="replace")
    line = text[text.find("CHOSE") :].splitlines()[0] if "CHOSE" in text else ""
    return line, written


pty_only = pytest.mark.skipif(
    not hasattr(__import__("os"), "openpty"), reason="needs POSIX pseudo-terminals"
)


@pty_only
@pytest.mark.parametrize(
    ("da1_answer", "kitty", "mode"),
    [
        (b"\x1b[?62;4;22c", False, "sixel"),  # 4 in the attributes: sixel
        (b"\x1b[?62;22c", True, "kitty"),  # no sixel, answers the kitty graphics query
        (b"\x1b[?62;22c", False, "halfblock"),  # neither
    ],
)
def test_auto_asks_the_terminal(da1_answer, kitty, mode):
    line, written = ask_terminal(da1_answer, kitty)
    assert line.startswith(f"CHOSE {mode} |"), written[-500:]
    assert b"\x1b[c" in written  # the sixel query (Device Attributes) was sent
    if mode != "sixel":
        assert b"\x1b_G" in written and b"a=q" in written  # then the kitty graphics query


@pty_only
def test_auto_in_tmux_does_not_query_and_a_broken_terminal_does_not_crash():
    line, written = ask_terminal(b"\x1b[?62;4c", True, term="tmux-256color")
    assert line.startswith("CHOSE halfblock | half-blocks: inside tmux")
    assert b"\x1b[c" not in written and b"\x1b_G" not in written
    line, written = ask_terminal(b"\x1b[?62;4c", False, size=(0, 0))  # a 0 x 0 terminal
    assert line.startswith("CHOSE halfblock |") and "could not read the terminal" in line


def test_pixels_and_half_blocks_draw_the_same_colours():
    """Heat and box colours agree between the pixel and the half-block previews."""
    image = np.full((32, 32), 0.5)
    heat = np.zeros((32, 32))
    heat[0:16, 0:16] = 1.0
    heat[16:32, 0:16] = 0.6
    request = RenderRequest(image, heat=heat, box=(16, 16, 16))
    rgb = pixels(slice_image(request))
    strips = render(request, 32, 16)  # 32 x 32 slice pixels: one per half-cell, no scaling
    cells = {}
    for row, strip in enumerate(strips):
        column = 0
        for segment in strip:
            for _ in segment.text:
                style = segment.style
                cells[(2 * row, column)] = style.color.get_truecolor()
                cells[(2 * row + 1, column)] = style.bgcolor.get_truecolor()
                column += 1
    for y, x in [(4, 4), (20, 4), (28, 28), (16, 20), (4, 28)]:  # hot, warm, gray, box, gray
        assert tuple(cells[(y, x)]) == tuple(rgb[y, x]), (y, x)
