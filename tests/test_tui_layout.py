"""The app at 80x24: at least 8 ranked rows, rank/score/series/slice/file readable, the
provider on screen; the table's columns give way in the stated order (issue 15, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from btd_core.audit.scan_config import ScanConfig
from btd_core.findings.column_plan import FILE_FLOOR, SERIES_CAP, ColumnPlan
from btd_core.findings.column_plan import plan_columns as plan_table
from btd_core.safe_text import middle_ellipsis, path_ellipsis
from btd_tui.factory import create_app
from btd_tui.state import ScanPhase
from btd_tui.widgets.findings_table import (
    CELL_PADDING,
    COLUMN_KEYS,
    TABLE_SHAPE,
    FindingsTable,
)
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer
from tests.support.pilot import run_app, screen_text, wait_for


def plan_columns(space: int, natural: dict[str, int]) -> ColumnPlan:
    """The app table's plan for ``space`` cells."""
    return plan_table(TABLE_SHAPE, space, natural)


NATURAL = {"rank": 4, "score": 10, "series": 24, "slice": 5, "pos": 6, "file": 47}
"""A long series label and a long relative path: 108 cells with padding."""


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic btd scorer without torch (a high-pass residual)."""
    return write_tiny_scorer(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def width(plan: ColumnPlan, natural: dict[str, int]) -> int:
    """The table's width (cells) under ``plan``."""
    widths = dict(natural)
    if plan.series_width is not None:
        widths["series"] = min(widths["series"], plan.series_width)
    if plan.file_width is not None:
        widths["file"] = min(widths["file"], plan.file_width)
    return sum(widths[key] + CELL_PADDING for key in plan.shown)


def test_paths_keep_the_file_name_whole_where_it_fits():
    assert path_ellipsis("export/chest/IM07523", 20) == "export/chest/IM07523"
    assert path_ellipsis("export/chest/IM07523", 16) == "export/…/IM07523"
    assert path_ellipsis("export/chest/IM07523", 9) == "…/IM07523"
    assert path_ellipsis("export/chest/IM07523", 8) == middle_ellipsis("export/chest/IM07523", 8)
    assert path_ellipsis("IM07523_a_long_name.dcm", 10) == "IM0…me.dcm"
    for width in range(1, 25):
        assert len(path_ellipsis("export/chest/IM07523", width)) <= width


def test_whole_contents_when_they_fit():
    plan = plan_columns(width(ColumnPlan(COLUMN_KEYS), NATURAL), NATURAL)
    assert plan == ColumnPlan(COLUMN_KEYS, None, None)


def test_position_gives_way_first_then_labels_and_names_are_cut():
    whole = width(ColumnPlan(COLUMN_KEYS), NATURAL)
    plan = plan_columns(whole - 1, NATURAL)  # one cell short: only the position goes
    assert plan.shown == ("rank", "score", "series", "slice", "file")
    assert plan.series_width is None and plan.file_width is None
    for space in (80, 60, 52, 49):
        plan = plan_columns(space, NATURAL)
        assert plan.shown == ("rank", "score", "series", "slice", "file")
        assert plan.series_width is not None and plan.series_width <= SERIES_CAP
        assert plan.file_width is not None and plan.file_width >= FILE_FLOOR
        assert width(plan, NATURAL) <= space, space  # no sideways scrolling
    assert plan_columns(80, NATURAL).series_width == SERIES_CAP
    assert plan_columns(49, NATURAL).series_width < SERIES_CAP  # gave cells to the file


def test_room_left_by_whole_file_names_goes_back_to_the_series_label():
    natural = {**NATURAL, "file": 20}
    plan = plan_columns(width(ColumnPlan(COLUMN_KEYS), natural) - 3, natural)  # the position went
    assert plan == ColumnPlan(("rank", "score", "series", "slice", "file"), None, None)
    space = width(ColumnPlan(("rank", "score", "series", "slice", "file")), natural) - 4
    plan = plan_columns(space, natural)
    assert plan.series_width == natural["series"] - 4 and plan.file_width == 20
    assert width(plan, natural) == space


def test_a_table_too_narrow_keeps_the_floors_and_scrolls():
    plan = plan_columns(20, NATURAL)
    assert plan.file_width == FILE_FLOOR and plan.series_width == 8
    assert width(plan, NATURAL) > 20


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_small_terminals_show_eight_readable_rows(tiny_onnx: Path, tmp_path: Path, size):
    root = tmp_path / "study"
    write_fixed_series(
        root / "chest_with_a_rather_long_folder_name",
        12,
        description="CHEST 1.25mm LUNG KERNEL",
        planted_index=4,
    )
    app = create_app(root, tiny_onnx, ScanConfig("cpu"))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 300, "the scan")
        await pilot.pause(0.7)  # the table is re-ranked at most every 0.5 s
        text = screen_text(app)
        lines = text.splitlines()
        assert "provider CPU" in lines[0]
        header = next(line for line in lines if re.search(r"│ rank +score", line))
        for name in ("rank", "score", "series", "slice", "file"):
            assert name in header, header
        rows = [line for line in lines if re.match(r"│ +\d+ +\d", line)]
        assert len(rows) >= 8, text
        for number, line in enumerate(rows, start=1):  # one line each, nothing wraps
            assert re.match(rf"│ +{number} ", line), line
            assert re.search(r"_0\d\d\.dcm", line), line  # the distinguishing end of the name
        assert "─" * 3 not in lines[-1]  # no horizontal scrollbar above the footer
        table = app.query_one(FindingsTable)
        assert table.max_scroll_x == 0
        cells = table.rows_by_column()
        assert {"rank", "score", "series", "slice", "file"} <= set(cells[0])
        assert cells[0]["slice"] == "5/12" and cells[0]["file"].endswith("…/s1_005.dcm")

    run_app(app, test, size=size)


def test_the_preview_title_keeps_the_slice_number():
    from btd_tui.widgets.slice_preview import preview_title

    label = "CHEST 1.25mm LUNG KERNEL"
    assert preview_title(label, 4, 12, 0.00081378, 100) == (
        "CHEST 1.25mm LUNG KERNEL · slice 5/12 · score 0.000814"
    )
    assert preview_title(label, 4, 12, 0.00081378, 40) == "CHE…KERNEL · slice 5/12 · score 0.000814"
    assert preview_title(label, 4, 12, 0.00081378, 26) == "CHES…G KERNEL · slice 5/12"
    assert preview_title(label, 4, 12, 0.00081378, 14) == "slice 5/12"
    assert preview_title(label, 4, 12, None, 30) == "CHEST…LUNG KERNEL · slice 5/12"
    for room in range(10, 80):
        assert len(preview_title(label, 4, 12, 0.00081378, room)) <= room


def test_the_preview_title_says_which_signal_fired_where_there_is_room():
    from btd_tui.widgets.slice_preview import preview_title

    label = "CHEST 1.25mm LUNG KERNEL"
    assert preview_title(label, 4, 12, 3.2, 100, "pixels") == (
        "CHEST 1.25mm LUNG KERNEL · slice 5/12 · score 3.2 (pixels)"
    )
    assert (
        preview_title(label, 4, 12, 3.2, 40, "pixels") == "C…RNEL · slice 5/12 · score 3.2 (pixels)"
    )
    # the series label (at least 6 characters) and the score come before the signal
    assert preview_title(label, 4, 12, 3.2, 36, "pixels") == "CHE… KERNEL · slice 5/12 · score 3.2"
    assert preview_title(label, 4, 12, None, 30, "pixels") == "CHEST…LUNG KERNEL · slice 5/12"
    for room in range(10, 80):
        assert len(preview_title(label, 4, 12, 3.2, room, "residual")) <= room
