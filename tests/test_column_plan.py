"""One planner fits both findings tables (btd scan's summary and the app's) into a width."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btd_core.cli.scan import SUMMARY_TABLE
from btd_core.findings.column_plan import FILE_FLOOR, SERIES_CAP, ColumnPlan, plan_columns
from btd_tui.widgets.findings_table import TABLE_SHAPE

SUMMARY_NATURAL = {
    "rank": 4, "score": 7, "rarity": 10, "signal": 8, "series": 30, "slice": 5, "pos mm": 6,
    "where x,y size": 14, "file": 40,
}  # fmt: skip


def _width(natural: dict[str, int], plan: ColumnPlan) -> int:
    widths = dict(natural)
    if plan.series_width is not None:
        widths["series"] = min(widths["series"], plan.series_width)
    if plan.file_width is not None:
        widths["file"] = min(widths["file"], plan.file_width)
    return 1 + sum(widths[name] + 3 for name in plan.shown)


def test_the_summary_drops_position_then_region_then_cuts_labels():
    whole = _width(SUMMARY_NATURAL, ColumnPlan(tuple(SUMMARY_TABLE.columns)))
    assert plan_columns(SUMMARY_TABLE, whole, SUMMARY_NATURAL).shown == tuple(SUMMARY_TABLE.columns)
    one_short = plan_columns(SUMMARY_TABLE, whole - 1, SUMMARY_NATURAL)
    assert "pos mm" not in one_short.shown and "where x,y size" in one_short.shown
    assert one_short.series_width is None  # dropping the position was enough
    narrow = plan_columns(SUMMARY_TABLE, 70, SUMMARY_NATURAL)
    assert narrow.shown == ("rank", "score", "series", "slice", "file")
    assert narrow.series_width == SERIES_CAP and _width(SUMMARY_NATURAL, narrow) <= 70
    tiny = plan_columns(SUMMARY_TABLE, 30, SUMMARY_NATURAL)
    assert tiny.file_width == FILE_FLOOR and tiny.series_width == SERIES_CAP  # never below


def test_the_summary_keeps_the_signal_longest_and_drops_rarity_without_genuine_scores():
    from btd_core.cli.scan import summary_shape

    whole = _width(SUMMARY_NATURAL, ColumnPlan(tuple(SUMMARY_TABLE.columns)))
    columns = set(SUMMARY_TABLE.columns)
    # pos mm (6 + 3 cells), rarity (10 + 3), the region (14 + 3), then the signal give way
    for short, gone in ((1, {"pos mm"}), (10, {"pos mm", "rarity"})):
        plan = plan_columns(SUMMARY_TABLE, whole - short, SUMMARY_NATURAL)
        assert columns - set(plan.shown) == gone
    plan = plan_columns(SUMMARY_TABLE, whole - 9 - 13 - 1, SUMMARY_NATURAL)
    assert columns - set(plan.shown) == {"pos mm", "rarity", "where x,y size"}
    assert "rarity" not in summary_shape(False).columns
    assert "signal" in summary_shape(False).columns


def test_the_app_table_may_cut_labels_further_for_a_file_name():
    natural = {"rank": 4, "score": 10, "series": 24, "slice": 5, "pos": 6, "file": 47}
    assert plan_columns(TABLE_SHAPE, 20, natural).series_width == TABLE_SHAPE.series_floor
    assert plan_columns(SUMMARY_TABLE, 20, SUMMARY_NATURAL).series_width == SERIES_CAP


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_btd_scan_prints_one_line_per_slice_at_any_width(
    ct_onnx: Path, tmp_path: Path, columns: int
):
    study = tmp_path / "a study folder with a long name" / "series number one of many"
    study.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(study / "a_rather_long_volume_file_name_0001.npy", rng.normal(0, 300, (3, 128, 128)))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "btd_core.cli", "scan", str(tmp_path / "a study folder with a "
         "long name"), "--model", str(ct_onnx), "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "most suspicious slices" in line)
    table = [line for line in lines[start:] if line.strip().startswith(("┃", "│", "|"))]
    assert len(table) >= 4  # the header and three slices, one line each
    assert all(len(line) <= columns for line in table)
