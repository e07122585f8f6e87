"""Snapshots of btd audit (pytest-textual-snapshot): the scored main screen at 80x24, 100x30
and 160x48 (at least 8 ranked rows at 80x24), the first screen and help at 80x24.

The study is rebuilt byte for byte in a fixed folder with fixed UIDs and scored by a
tiny deterministic ONNX scorer, so nothing on screen depends on tmp paths, times,
speeds or thread timing.  Update with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
The folder is shown on screen, so it cannot be a tmp path: test runs on one machine take
turns with it (a file lock), so that one run does not rebuild it under another's app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Footer

from btd_core.audit.pipeline import ScanSettings
from btd_core.audit.scan_config import ScanConfig
from btd_core.scoring.strategy import ScoreRequest
from btd_tui.factory import create_app
from btd_tui.state import ScanPhase
from btd_tui.widgets.findings_table import FindingsTable, split_row_key
from btd_tui.widgets.slice_preview import SlicePreview
from tests.support.fixed_study import fresh_folder, write_fixed_series, write_tiny_scorer
from tests.support.pilot import wait_for

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None  # type: ignore[assignment]

STUDY = Path("/tmp/btd-snapshot-study")
MODEL = Path("/tmp/btd-snapshot-model/tiny.onnx")
LOCK = Path("/tmp/btd-snapshot.lock")


@pytest.fixture
def snapshot_study() -> Iterator[tuple[Path, Path]]:
    """Two CT series (12 slices in a long-named folder, one with a noise block; 2 slices),
    a corrupt file and a text file."""
    with LOCK.open("a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        root = fresh_folder(STUDY)
        write_fixed_series(
            root / "abdomen_portal_venous_phase",
            12,
            series_number=1,
            description="ABDOMEN PORTAL VENOUS 5mm",
            planted_index=4,
        )
        write_fixed_series(root / "head", 2, series_number=2, description="HEAD")
        (root / "bad.dcm").write_text("not DICOM\n")
        (root / "notes.txt").write_text("case notes\n")
        yield root, write_tiny_scorer(MODEL)


async def ready(pilot) -> None:
    """Study walked, model open, footer filled: the first screen settled."""
    app = pilot.app
    await wait_for(pilot, lambda: app.phase is ScanPhase.READY, 60, "ready")
    await wait_for(pilot, lambda: app.query_one(Footer).children, 10, "the footer")
    await pilot.pause(0.3)


async def scored(pilot) -> None:
    """Scan done, table ranked, the top slice drawn in the preview."""
    app = pilot.app
    await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
    table = app.query_one(FindingsTable)
    preview = app.query_one(SlicePreview)

    def top_shown() -> bool:
        key = table.current_key()
        shown = preview.shown
        return (
            key is not None
            and table.cursor_row == 0
            and shown is not None
            and (shown.series_key, shown.index) == split_row_key(key)
            and preview.view is not None
        )

    await wait_for(pilot, top_shown, 60, "the top slice in the preview")
    await wait_for(pilot, lambda: app.query_one(Footer).children, 10, "the footer")
    await pilot.pause(0.3)


def test_main_screen_80x24(snap_compare, snapshot_study):
    root, model = snapshot_study
    app = create_app(root, model, ScanConfig("cpu"), autostart=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


SIZES = [(80, 24), (100, 30), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda size: "x".join(map(str, size)))
def test_main_screen_scored(snap_compare, snapshot_study, size):
    root, model = snapshot_study
    config = ScanConfig("cpu", settings=ScanSettings(stride=32), score=ScoreRequest("tile"))
    app = create_app(root, model, config)
    assert snap_compare(app, terminal_size=size, run_before=scored)


def test_help_screen(snap_compare, snapshot_study):
    root, model = snapshot_study
    app = create_app(root, model, ScanConfig("cpu"), autostart=False)

    async def open_help(pilot) -> None:
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)
