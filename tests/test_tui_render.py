"""The TUI's parts that need no scorer: the slice renderer, the model config, the scan
bookkeeping, the ranked table's in-place updates, the phase."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from btd_core.audit.pipeline import ScanOutcome, ScanProgress
from btd_core.findings.ranking import rank
from btd_core.study.discovery import discover
from btd_core.study.records import Discovery, SliceResult
from btd_tui.config import ConfigError, config_path, resolve_model
from btd_tui.formatting import format_duration, plural
from btd_tui.render import (
    ASCII_RAMP,
    HALF_BLOCK,
    RenderRequest,
    fit,
    render,
    resample,
    strips_text,
    zoom_region,
)
from btd_tui.scan_book import CANCELLED_REASON, ScanBook
from btd_tui.state import ScanPhase
from btd_tui.widgets import findings_table
from btd_tui.widgets.findings_table import FindingsTable, split_row_key
from tests.support.cards import tiny_card
from tests.support.fixed_study import write_fixed_series
from tests.support.pilot import run_app


def gradient(height: int = 128, width: int = 128) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, width), (height, 1))


def hot_spot(shape: tuple[int, int], box: tuple[int, int, int]) -> np.ndarray:
    heat = np.zeros(shape)
    x, y, size = box
    heat[y : y + size, x : x + size] = 1.0
    return heat


def styles_of(strips) -> set:
    return {seg.style for strip in strips for seg in strip if seg.text.strip()}


def test_resample_area_mean_max_and_nearest():
    values = np.arange(16.0).reshape(4, 4)
    assert resample(values, 2, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert resample(values, 2, 2, how="max").tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert resample(np.array([[1.0, 2.0]]), 2, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]
    with pytest.raises(ValueError):
        resample(np.zeros(3), 1, 1)


@pytest.mark.parametrize(
    ("shape", "cells", "ascii", "expected"),
    [
        ((512, 512), (40, 20), False, (40, 40)),  # square pixels: 40 cells wide, 20 rows x 2
        ((512, 512), (40, 20), True, (20, 40)),  # ASCII: one cell is two square units high
        ((512, 512), (80, 20), False, (40, 40)),  # height-bound
        ((256, 512), (40, 40), False, (20, 40)),  # wide slice keeps 2:1
        ((10, 10), (0, 5), False, (0, 0)),
    ],
)
def test_fit_keeps_the_aspect_ratio(shape, cells, ascii, expected):
    assert fit(shape[0], shape[1], cells[0], cells[1], ascii) == expected


def test_half_blocks_fill_the_box_and_centre():
    strips = render(RenderRequest(gradient()), 50, 10)
    lines = strips_text(strips)
    assert len(lines) == 10 and all(len(line) == 50 for line in lines)
    assert all(strip.cell_length == 50 for strip in strips)
    assert all(line.strip() == HALF_BLOCK * 20 for line in lines)  # 20 x 20 pixels, centred
    assert lines[0].index(HALF_BLOCK) == 15


def test_half_block_colours_are_upper_and_lower_pixels():
    image = np.zeros((2, 1))
    image[1, 0] = 1.0  # black above, white below
    strips = render(RenderRequest(image, show_heat=False), 1, 1)
    segment = next(iter(strips[0]))
    assert segment.text == HALF_BLOCK
    assert segment.style.color.triplet == (0, 0, 0)
    assert segment.style.bgcolor.triplet == (255, 255, 255)


def test_ascii_mode_uses_the_ramp_only():
    strips = render(RenderRequest(gradient(), ascii=True), 40, 20)
    text = "".join(strips_text(strips))
    assert HALF_BLOCK not in text
    assert set(text) <= set(ASCII_RAMP)
    first = strips_text(strips)[0].strip()
    assert first[0] == " " or first[0] == ASCII_RAMP[0] or first.startswith(".")
    assert strips_text(strips)[5].rstrip()[-1] == "@"  # bright right edge


def test_heat_overlay_changes_colours_and_can_be_turned_off():
    box = (32, 32, 32)
    image = np.full((128, 128), 0.5)
    heat = hot_spot(image.shape, box)
    with_heat = render(RenderRequest(image, heat, show_heat=True), 32, 16)
    without = render(RenderRequest(image, heat, show_heat=False), 32, 16)
    assert strips_text(with_heat) == strips_text(without)
    assert styles_of(with_heat) != styles_of(without)
    assert len(styles_of(without)) == 1  # uniform gray
    reds = [s for s in styles_of(with_heat) if s.color.triplet[0] > s.color.triplet[2] + 50]
    assert reds, "the hot spot is drawn in red/yellow"


def test_ascii_heat_and_box():
    box = (32, 32, 64)
    image = np.full((128, 128), 0.5)
    strips = render(RenderRequest(image, hot_spot(image.shape, box), box=box, ascii=True), 64, 32)
    lines = strips_text(strips)
    assert sum(line.count("+") for line in lines) >= 4  # corners (the ramp has + too)
    assert any("|" in line for line in lines)
    colours = {s.color.name for s in styles_of(strips) if s.color is not None}
    assert {"red", "cyan"} <= colours or {"yellow", "cyan"} <= colours


def test_box_outline_is_cyan_in_half_block_mode():
    box = (32, 32, 64)
    strips = render(RenderRequest(np.zeros((128, 128)), box=box), 64, 32)
    cyan = [
        s
        for s in styles_of(strips)
        if (s.color and s.color.triplet == (0, 255, 255))
        or (s.bgcolor and s.bgcolor.triplet == (0, 255, 255))
    ]
    assert cyan


def test_zoom_crops_the_worst_tile_with_a_margin():
    assert zoom_region((512, 512), (200, 100, 96)) == (76, 220, 176, 320)
    assert zoom_region((128, 128), (0, 0, 96)) == (0, 120, 0, 120)
    image = np.zeros((512, 512))
    image[100:196, 200:296] = 1.0  # the tile is bright, the rest dark
    whole = strips_text(render(RenderRequest(image, box=(200, 100, 96), ascii=True), 60, 30))
    zoomed = strips_text(
        render(RenderRequest(image, box=(200, 100, 96), ascii=True, zoom=True), 60, 30)
    )
    bright = sum(line.count("@") for line in zoomed)
    assert bright > 10 * max(sum(line.count("@") for line in whole), 1)


def test_render_rejects_mismatched_heat():
    with pytest.raises(ValueError, match="heat shape"):
        render(RenderRequest(np.zeros((4, 4)), np.zeros((3, 3))), 10, 5)


def test_tiny_areas_render_blank_lines():
    assert strips_text(render(RenderRequest(gradient()), 0, 2)) == ["", ""]


def test_model_from_argument_env_and_config(tmp_path: Path):
    given = tmp_path / "given.onnx"
    assert resolve_model(given, {}) == given
    assert resolve_model(None, {"BTD_MODEL": "~/m.onnx"}) == Path("~/m.onnx").expanduser()
    config = tmp_path / "cfg" / "btd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('model = "models/ct.onnx"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert config_path(env) == config
    assert resolve_model(None, env) == config.parent / "models" / "ct.onnx"
    config.write_text('model = "/abs/ct.onnx"\n')
    assert resolve_model(None, env) == Path("/abs/ct.onnx")


def test_no_model_anywhere_is_a_clear_error(tmp_path: Path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="BTD_MODEL") as caught:
        resolve_model(None, env)
    assert "--model" in str(caught.value) and "config.toml" in str(caught.value)
    bad = tmp_path / "btd" / "config.toml"
    bad.parent.mkdir()
    bad.write_text("model = [1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_model(None, env)
    bad.write_text("model = 3\n")
    with pytest.raises(ConfigError, match="non-empty string"):
        resolve_model(None, env)


def test_durations():
    assert format_duration(None) == "?"
    assert format_duration(62.4) == "1:02"
    assert format_duration(3723) == "1:02:03"
    assert plural(1, "file") == "1 file" and plural(2, "file") == "2 files"


def test_phases_say_what_they_allow():
    assert ScanPhase("done") is ScanPhase.DONE and ScanPhase.DONE == "done"
    assert [p.value for p in ScanPhase if p.running] == ["scanning", "cancelling"]
    assert not ScanPhase.LOADING.usable and not ScanPhase.ERROR.usable
    assert ScanPhase.CANCELLED.usable and ScanPhase.ERROR.style == "bold red"


@pytest.fixture(scope="module")
def two_series(tmp_path_factory: pytest.TempPathFactory) -> Discovery:
    """A study of two CT series: 11 slices and 3 slices."""
    root = tmp_path_factory.mktemp("book") / "study"
    write_fixed_series(root / "a", 11, series_number=1, description="A")
    write_fixed_series(root / "b", 3, series_number=2, description="B")
    return discover(root)


def result(key: str, index: int, score: float) -> SliceResult:
    return SliceResult(key, index, score, 0, 0, 96, 1, 0)


def progress(done: int, key: tuple[str, int], score: float | None, failed: int = 0):
    scored = result(*key, score) if score is not None else None
    return ScanProgress(done, 14, 1, 0, failed, "x.dcm", result=scored, key=key)


def test_scan_book_follows_slices_by_their_key_across_runs(two_series: Discovery):
    a, b = (s.key for s in two_series.series)
    book = ScanBook(two_series, tiny_card(), overlays=2)
    assert book.total == 14 and len(book.fitting_series) == 2 and book.tried == 0
    assert book.begin_run(datetime(2026, 1, 1, tzinfo=timezone.utc)) == set()
    assert book.record(progress(1, (a, 0), 0.5)) == (a, 0)
    assert book.record(progress(2, (a, 1), None, failed=1)) == (a, 1)  # its file failed
    assert book.record(progress(3, (b, 2), 0.9, failed=1)) == (b, 2)
    assert book.tried == 3 and book.series_tried == {a: 2, b: 1}
    assert book.rate() > 0 and book.seconds_left() is not None
    assert book.result_for((b, 2)).score == 0.9 and book.result_for((a, 1)) is None
    assert book.worst_in(a).slice_index == 0 and book.worst_in("nothing") is None
    for record in two_series.files[:2]:
        record.status, record.reason = "skipped", CANCELLED_REASON
    book.finish(ScanOutcome(cancelled=True, background_slices=1))
    assert book.cancelled and not book.complete and book.background_slices == 1

    skip = book.begin_run(datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert skip == {(a, 0), (b, 2)}  # the failed slice is tried again
    assert all(r.status == "pending" for r in two_series.files[:2])
    assert book.started_utc == datetime(2026, 1, 1, tzinfo=timezone.utc)
    # the resumed run reports the failed slice first, whatever its place in the study
    assert book.record(progress(3, (a, 1), 0.2)) == (a, 1)
    assert book.tried == 3 and book.series_tried == {a: 2, b: 1} and not book.failed_keys
    merged = book.merged_outcome()
    assert merged.slices_total == 14 and merged.slices_done == 3 and merged.cancelled
    assert len(merged.results) == 3


def test_scan_book_keeps_the_best_views(two_series: Discovery):
    a = two_series.series[0].key
    book = ScanBook(two_series, tiny_card(), overlays=2)
    book.begin_run(datetime(2026, 1, 1, tzinfo=timezone.utc))
    for index, score in enumerate((0.1, 0.7, 0.4)):
        book.record(progress(index + 1, (a, index), score))
    views = {(a, index): object() for index in range(3)}
    book.finish(ScanOutcome(views=views))  # type: ignore[arg-type]
    assert set(book.views) == {(a, 1), (a, 2)}


class TableApp(App[None]):
    """One ranked table (and a second one, filled once, to compare with)."""

    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[tuple[str, int]] = []

    def compose(self) -> ComposeResult:
        yield FindingsTable(id="findings")
        yield FindingsTable(id="fresh")

    def on_findings_table_slice_highlighted(self, message: FindingsTable.SliceHighlighted):
        if message.table.id == "findings":
            self.highlighted.append(message.slice_key)


def test_findings_table_updates_rows_in_place(two_series: Discovery, monkeypatch):
    a, b = (s.key for s in two_series.series)
    app = TableApp()
    calls = {"add_row": 0, "update_cell": 0}
    for name in calls:
        original = getattr(FindingsTable, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if self.id == "findings":
                calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FindingsTable, name, counted)

    def cleared(self, *args, **kwargs):
        raise AssertionError("the table was cleared")

    async def test(pilot):
        table = app.query_one("#findings", FindingsTable)
        fresh = app.query_one("#fresh", FindingsTable)
        monkeypatch.setattr(FindingsTable, "clear", cleared)

        async def same_as_fresh() -> None:
            with monkeypatch.context() as m:
                m.setattr(FindingsTable, "clear", DataTable.clear)
                fresh.clear()
                fresh._ranks.clear()
                fresh.sort_column, fresh.sort_reverse = table.sort_column, table.sort_reverse
                fresh.show(table.findings)
            await pilot.pause()
            assert table.rows_text() == fresh.rows_text()
            assert [r.key.value for r in table.ordered_rows] == table.shown_keys
            widths = [c.content_width for c in table.ordered_columns]
            assert widths == [c.content_width for c in fresh.ordered_columns]
            assert table.border_title == fresh.border_title

        results = [result(a, 0, 0.5), result(a, 1, 0.2)]
        table.show(rank(results, two_series))
        await pilot.pause()
        await same_as_fresh()
        assert calls == {"add_row": 2, "update_cell": 0}
        assert app.highlighted[-1] == (a, 0)

        results.append(result(b, 2, 0.9))  # a new top: the cursor on row 0 follows it
        table.show(rank(results, two_series))
        await pilot.pause()
        await same_as_fresh()
        assert calls == {"add_row": 3, "update_cell": 2}  # two ranks moved down
        assert table.cursor_row == 0 and app.highlighted[-1] == (b, 2)

        table.move_cursor(row=2)  # the user picks (a, 1): it stays under the cursor
        await pilot.pause()
        assert app.highlighted[-1] == (a, 1)
        results += [result(a, i, 0.01 * i) for i in range(2, 11)]
        table.show(rank(results, two_series))
        await pilot.pause()
        await same_as_fresh()  # ranks grew to two digits: the column widened
        assert split_row_key(table.current_key()) == (a, 1)
        assert app.highlighted[-1] == (a, 1) and table.cursor_row == 2

        table.next_sort()  # by score, highest first
        await pilot.pause()
        await same_as_fresh()
        assert table.sort_column == "score" and split_row_key(table.current_key()) == (a, 1)
        table.sort_by("score")  # again: lowest first
        await pilot.pause()
        await same_as_fresh()
        assert table.rows_text()[0][1] == "0.02"
        table.sort_by("rank")

        monkeypatch.setattr(findings_table, "MAX_ROWS", 4)
        results.append(result(b, 0, 0.95))
        table.show(rank(results, two_series))
        await pilot.pause()
        await same_as_fresh()
        assert len(table.rows_text()) == 4 and "top 4 shown" in str(table.border_title)
        assert split_row_key(table.current_key()) == (a, 1)  # rank 4 now: still shown
        results.append(result(b, 1, 0.97))
        table.show(rank(results, two_series))
        await pilot.pause()
        await same_as_fresh()  # (a, 1) dropped out: the cursor goes to the top
        assert table.cursor_row == 0 and app.highlighted[-1] == (b, 1)

    run_app(app, test, size=(100, 30))
