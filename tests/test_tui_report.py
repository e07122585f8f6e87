"""The app opens a report folder written by ``btd scan`` (no rescoring): ranked rows equal to
the report's, previews boxed where the scan found its worst region, a moved study found
with ``--study``, and a changed report or evidence file said on screen (issue 15, item 6)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from btd_core.cli.main import main as btd_main
from btd_core.findings.saved_report import ReportReadError, read_report
from btd_core.findings.score_text import score_text
from btd_tui.report_app import ReportApp, ReportScreen
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.slice_preview import SlicePreview
from tests.study_builder import tree_fingerprint
from tests.support.fixed_study import write_fixed_series
from tests.support.pilot import run_app, screen_text, wait_for


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, ct_onnx: Path) -> tuple[Path, Path]:
    """A 6-slice CT series with a noise block in slice 3, scanned by ``btd scan``."""
    base = tmp_path_factory.mktemp("scanned")
    study = base / "study"
    write_fixed_series(study / "chest", 6, description="CHEST", planted_index=2)
    report = base / "report"
    code = btd_main(
        ["scan", str(study), "--model", str(ct_onnx), "--out", str(report), "--stride", "64"]
    )
    assert code == 0
    return study, report


def report_rows(report: Path) -> list[dict[str, str]]:
    with (report / "findings.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def copy_report(report: Path, where: Path) -> Path:
    shutil.copytree(report, where)
    return where


async def opened(pilot) -> ReportScreen:
    """The report screen once its rows are in the table."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ReportScreen), 30, "the report screen")
    screen = app.screen
    await wait_for(pilot, lambda: screen.report is not None, 60, "the report")
    await pilot.pause(0.2)
    return screen


def test_a_report_is_browsed_as_the_scan_ranked_it(scanned, tmp_path: Path):
    study, report = scanned
    before = tree_fingerprint(report), tree_fingerprint(study)
    rows = report_rows(report)
    app = ReportApp(report, preview="halfblock")

    async def test(pilot):
        screen = await opened(pilot)
        table = screen.query_one(FindingsTable)
        shown = table.rows_by_column()
        assert [r["rank"] for r in shown] == [r["rank"] for r in rows]
        assert [r["score"] for r in shown] == [score_text(float(r["score"])) for r in rows]
        assert shown[0]["slice"] == f"{rows[0]['slice_number']}/6" == "3/6"
        assert shown[0]["file"] == rows[0]["file"]
        preview = screen.query_one(SlicePreview)
        await wait_for(pilot, lambda: preview.view is not None, 30, "the top slice's pixels")
        assert preview.shown.index == 2 and preview.result is not None
        assert preview.result.tile_x == int(rows[0]["tile_x"])
        assert (preview.view.heat == 0).all()  # no heat map: no rescoring
        text = screen_text(app)
        assert "no rescoring" in text and "CHEST" in text and "provider" in text
        await pilot.press("n")
        await wait_for(pilot, lambda: preview.shown.index == 3 and preview.view is not None, 30)

    run_app(app, test)
    assert (tree_fingerprint(report), tree_fingerprint(study)) == before  # read only


def test_a_moved_study_is_found_with_study_and_said_when_missing(scanned, tmp_path: Path):
    study, report = scanned
    moved = tmp_path / "elsewhere"
    shutil.copytree(study, moved)
    copy = copy_report(report, tmp_path / "copy")
    # the report as if the scan ran on another machine: its study root is not here
    sidecar = (copy / "report.json").read_text().replace(str(study), "/gpu-box/cases/17")
    (copy / "report.json").write_text(sidecar)

    app = ReportApp(copy, preview="halfblock")

    async def missing(pilot):
        screen = await opened(pilot)
        assert len(screen.query_one(FindingsTable).rows_by_column()) == 6
        text = screen_text(app)
        assert "/gpu-box/cases/17 not found" in text
        log = "\n".join(screen.query_one(LogPanel).entries)
        assert "give --study FOLDER" in log
        preview = screen.query_one(SlicePreview)
        await wait_for(pilot, lambda: "cannot" in preview.message or "not" in preview.message, 30)

    run_app(app, missing)

    app = ReportApp(copy, study=moved, preview="halfblock")

    async def found(pilot):
        screen = await opened(pilot)
        preview = screen.query_one(SlicePreview)
        await wait_for(pilot, lambda: preview.view is not None, 30, "the pixels from --study")
        assert preview.result is not None

    run_app(app, found)


def test_changed_evidence_and_an_altered_report_are_named(scanned, tmp_path: Path):
    study, report = scanned
    changed = tmp_path / "study"
    shutil.copytree(study, changed)
    top = report_rows(report)[0]["file"]
    data = bytearray((changed / top).read_bytes())
    data[-1] ^= 0xFF  # one pixel byte of the top slice
    (changed / top).write_bytes(bytes(data))
    copy = copy_report(report, tmp_path / "copy")
    lines = (copy / "findings.csv").read_text().splitlines(keepends=True)
    (copy / "findings.csv").write_text(lines[0] + "".join(lines[2:]) + lines[1])  # reordered
    assert read_report(copy).altered == ["findings.csv"]

    app = ReportApp(copy, study=changed, preview="halfblock")

    async def test(pilot):
        screen = await opened(pilot)
        assert "ALTERED: findings.csv" in screen_text(app)
        log = "\n".join(screen.query_one(LogPanel).entries)
        assert "report was changed after it was written" in log
        assert f"changed since the scan (SHA-256 differs): {top}" in log
        assert screen.query_one(FindingsTable).rows_by_column()[0]["rank"] == "1"

    run_app(app, test)


def test_not_a_report_gives_a_clear_message(tmp_path: Path):
    with pytest.raises(ReportReadError, match="not a btd report folder"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text('{"tool": {"name": "other"}}')
    (tmp_path / "findings.csv").write_text("rank,score\n")
    with pytest.raises(ReportReadError, match="not written by btd"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text('{"tool": {"name": "btd"}}')
    with pytest.raises(ReportReadError, match="lacks the columns"):
        read_report(tmp_path)
    (tmp_path / "findings.csv").write_text(
        "rank,score,file,slice_index,tile_x,tile_y,tile_size\n1,nan,a.dcm,0,0,0,96\n"
    )
    with pytest.raises(ReportReadError, match="not finite"):
        read_report(tmp_path)
    app = ReportApp(tmp_path, preview="halfblock")

    async def test(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, ReportScreen), 30)
        await wait_for(pilot, lambda: "cannot open the report" in screen_text(app), 30)

    run_app(app, test)


def test_an_archive_is_browsed_study_by_study(tmp_path: Path):
    """``btd audit OUT`` of a ``btd archive`` output: its studies ranked, failed ones with
    their reason; Enter opens a study's report (a study split over two export folders
    too, its pixels read from both), Escape comes back."""
    from btd_tui.archive_screen import ArchiveScreen
    from tests.onnx_scorer import build_scorer
    from tests.support.archive_tree import build_archive, run_embedded

    model = build_scorer(tmp_path / "ct32.onnx", patch_size=32)
    root, out = tmp_path / "root", tmp_path / "out"
    built = build_archive(root)
    run_embedded(root, out, model)
    from btd_core.archive.index import read_archive

    unscored = next(s for s in read_archive(out).studies if s.status != "scored")
    shutil.rmtree(unscored.report_dir)  # as if its report were lost: nothing to open
    app = ReportApp(out, preview="halfblock")

    async def test(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, ArchiveScreen), 30, "the studies")
        screen = app.screen
        await pilot.pause(0.2)
        index = screen.index
        assert index is not None and screen.table.row_count == len(index.studies) >= 7
        failed = [n for n, s in enumerate(index.studies) if s.report_dir is None]
        assert failed and "could not decode the pixels" in screen_text(app)  # the reason
        top = index.studies[0]
        assert top.rank == 1 and top.report_dir is not None
        await pilot.press("enter")
        report = await opened(pilot)
        assert report.folder == top.report_dir
        preview = report.query_one(SlicePreview)
        await wait_for(pilot, lambda: preview.view is not None, 30, "the top slice's pixels")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 10, "back to the studies")

        split = next(n for n, s in enumerate(index.studies) if built["split_uid"] in s.key)
        screen.table.move_cursor(row=split)
        await pilot.press("enter")
        report = await opened(pilot)
        assert not report.query_one(LogPanel).entries[-1].startswith("the study folder")
        preview = report.query_one(SlicePreview)
        await wait_for(pilot, lambda: preview.view is not None, 30, "the split study's pixels")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 10, "back to the studies")

        screen.table.move_cursor(row=failed[0])
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen is screen  # no report to open: a notice, not a crash

    run_app(app, test, size=(140, 40))


def test_btd_audit_tells_a_report_from_a_study(scanned, tmp_path: Path, capsys):
    """The CLI sends a report folder to the report browser (no model asked for) and
    refuses --study with a study folder or a missing folder, before any app starts."""
    from btd_core.cli.audit import is_report_or_archive

    study, report = scanned
    assert is_report_or_archive(report) and not is_report_or_archive(study)
    code = btd_main(["audit", str(study), "--study", str(study), "--model", "x.onnx"])
    assert code != 0 and "--study goes with a report folder" in capsys.readouterr().out
    code = btd_main(["audit", str(report), "--study", str(tmp_path / "gone")])
    assert code != 0 and "is not a folder" in capsys.readouterr().out
