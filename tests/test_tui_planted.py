"""The app marks known tamperings (btd demo's planted slices) and says where they ranked."""

from __future__ import annotations

from pathlib import Path

from btd_core.audit.pipeline import ScanSettings
from btd_core.audit.scan_config import ScanConfig
from btd_tui.factory import create_app
from btd_tui.state import PlantedEdit, ScanPhase
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from tests.study_builder import write_series
from tests.support.pilot import run_app, wait_for


def test_planted_slices_are_marked_and_their_ranks_logged(ct_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    built = write_series(
        root / "abdomen", "explicit_VR-UN.dcm", 3, planted_index=1, planted_box=(220, 280, 40)
    )
    planted = str(built.files[1].relative_to(root))
    edit = PlantedEdit(planted, "noise block at x=240, y=300")
    config = ScanConfig("cpu", settings=ScanSettings(stride=64))
    app = create_app(root, ct_onnx, config, planted=[edit])

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 900, "the scan")
        await pilot.pause(0.7)  # the table is re-ranked at most every 0.5 s
        rows = app.query_one(FindingsTable).rows_by_column()
        marked = [row for row in rows if row["file"].startswith("PLANTED ")]
        assert len(marked) == 1 and marked[0]["file"] == f"PLANTED {planted}"
        assert marked[0]["rank"] == "1"
        others = [row["file"] for row in rows if row is not marked[0]]
        assert all(not name.startswith("PLANTED") for name in others)
        log = "\n".join(app.query_one(LogPanel).entries)
        assert f"planted noise block at x=240, y=300 in {planted}: rank 1 of 3" in log

    run_app(app, test)
