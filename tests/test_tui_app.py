"""btd audit, driven by Textual's pilot on real DICOM studies."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from textual.widgets import Static
from textual.worker import WorkerState

from btd_core.audit.pipeline import ScanSettings
from btd_core.audit.scan_config import ScanConfig
from btd_core.scoring.strategy import ScoreRequest
from btd_tui.factory import create_app
from btd_tui.screens.error import ErrorScreen
from btd_tui.screens.export import ExportScreen
from btd_tui.state import ScanPhase
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.slice_preview import SlicePreview
from btd_tui.widgets.study_tree import StudyTree
from tests.study_builder import tree_fingerprint, write_series
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer
from tests.support.pilot import run_app, screen_text, wait_for

HALF = "▀"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic btd scorer without torch (a high-pass residual)."""
    return write_tiny_scorer(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def styles(preview: SlicePreview) -> list:
    return [segment.style for strip in preview.lines() for segment in strip]


async def shown_slice(pilot, app, index: int) -> None:
    preview = app.query_one(SlicePreview)
    await wait_for(
        pilot,
        lambda: preview.shown is not None and preview.shown.index == index and preview.view,
        120,
        f"slice {index} in the preview",
    )
    await pilot.pause()


async def type_text(pilot, text: str) -> None:
    await pilot.press(*list(text))


def test_planted_slice_ranks_first_preview_and_export(ct_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    built = write_series(
        root / "abdomen", "explicit_VR-UN.dcm", 3, planted_index=1, planted_box=(220, 280, 40)
    )
    before = tree_fingerprint(root)
    planted = str(built.files[1].relative_to(root))
    app = create_app(root, ct_onnx, ScanConfig("cpu", settings=ScanSettings(stride=64)))
    report = tmp_path / "report"

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 900, "the scan")
        await pilot.pause(0.7)  # the table is re-ranked at most every 0.5 s
        table = app.query_one(FindingsTable)
        rows = table.rows_by_column()
        assert [row["rank"] for row in rows] == ["1", "2", "3"]
        assert rows[0]["slice"] == "2/3" and rows[0]["file"] == planted
        table.focus()
        table.move_cursor(row=0)
        await shown_slice(pilot, app, 1)
        preview = app.query_one(SlicePreview)
        assert any(HALF in line for line in preview.text_lines())
        assert preview.result is not None and preview.result.tile_x <= 220
        assert "slice 2/3" in screen_text(app)

        await pilot.press("n")
        await shown_slice(pilot, app, 2)
        await pilot.press("n")  # clamped at the last slice
        await pilot.pause()
        assert preview.shown.index == 2
        await pilot.press("p", "p")
        await shown_slice(pilot, app, 0)
        await pilot.press("n")
        await shown_slice(pilot, app, 1)

        heat_on = styles(preview)
        await pilot.press("h")
        assert not preview.show_heat and styles(preview) != heat_on
        assert preview.text_lines() and any(HALF in line for line in preview.text_lines())
        await pilot.press("h")
        assert styles(preview) == heat_on

        colour_lines = preview.text_lines()
        await pilot.press("a")
        ascii_lines = preview.text_lines()
        assert ascii_lines != colour_lines and not any(HALF in line for line in ascii_lines)
        assert any(line.strip() for line in ascii_lines)
        await pilot.press("a", "z")
        assert preview.zoom and styles(preview) != heat_on
        assert "zoom" in preview.border_subtitle
        await pilot.press("z")
        assert preview.text_lines() == colour_lines and styles(preview) == heat_on

        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), 10, "export dialog")
        field = app.screen.query_one("#export-folder")
        assert field.value.startswith("./btd-report-")
        field.value = ""
        await type_text(pilot, str(root / "inside"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        error = app.screen.query_one("#export-error", Static)
        assert "inside the study" in str(error.content)
        # drawn too (where the dialog wraps the message depends on the tmp path's length)
        assert "evidence" in screen_text(app)
        field.value = ""
        await type_text(pilot, str(report))
        await pilot.press("enter")
        log = app.query_one(LogPanel)
        await wait_for(pilot, lambda: any("report written" in e for e in log.entries), 120)
        assert any("dicom/" in e for e in log.entries)  # the export names its DICOM objects

    run_app(app, test)
    assert tree_fingerprint(root) == before
    for name in ("findings.csv", "series.csv", "files.csv", "report.json"):
        assert (report / name).is_file()
    with (report / "findings.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["rank"] == "1" and rows[0]["file"] == planted
    sidecar = json.loads((report / "report.json").read_text())
    assert sidecar["settings"]["stride_px"] == 64 and not sidecar["settings"]["cancelled"]
    assert (report / "overlays" / "rank001.png").is_file()
    # the DICOM SR and SEG of the series, as btd scan --dicom writes them
    written = sidecar["settings"]["dicom"]["series"][0]["files"]
    assert len(written) == 2 and all((report / name).is_file() for name in written)


def test_cancel_stops_the_worker_and_resume_finishes(ct_onnx: Path, tmp_path: Path, monkeypatch):
    from btd_core.engine.scorer import EngineOptions, Scorer

    real_score = Scorer.score

    def slow_score(self, patches, with_residuals=False):
        time.sleep(0.3)  # the high-pass scores 8 slices in milliseconds; a U-Net does not
        return real_score(self, patches, with_residuals)

    monkeypatch.setattr(Scorer, "score", slow_score)
    root = tmp_path / "study"
    write_series(root / "ct", "CT_small.dcm", 8)
    config = ScanConfig(
        "cpu",
        settings=ScanSettings(stride=96),
        engine=EngineOptions(batch_size=4),  # several calls per scan, each slowed down
    )
    app = create_app(root, ct_onnx, config, autostart=False)

    async def test(pilot):
        view = app.scan_view
        await wait_for(pilot, lambda: app.phase is ScanPhase.READY, 60, "study and model")
        await pilot.pause(0.3)
        assert app.jobs.scan is None and view.book.tried == 0  # --no-autostart waits
        await pilot.press("s")
        await wait_for(pilot, lambda: view.book.results, 120, "the first result")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.phase is ScanPhase.CANCELLED, 120, "the cancel")
        worker = app.jobs.scan
        await wait_for(pilot, lambda: worker.is_finished, 30, "the worker to end")
        assert worker.state == WorkerState.SUCCESS
        tried = view.book.tried
        assert 1 <= tried < 8
        cancelled = [f for f in app.discovery.files if f.status == "skipped"]
        assert cancelled and all("cancelled" in f.reason for f in cancelled)
        assert any("cancelled at" in label for label in app.query_one(StudyTree).labels())
        assert f"{tried}/8 slices" in screen_text(app)

        await pilot.press("r")
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 300, "the resumed scan")
        assert app.jobs.scan is not worker and app.jobs.scan.is_finished
        keys = {(r.series_key, r.slice_index) for r in view.book.results}
        assert len(keys) == len(view.book.results) == 8
        assert {f.status for f in app.discovery.files} == {"scored"}
        outcome = view.book.merged_outcome()
        assert outcome.slices_done == 8 and not outcome.cancelled
        await pilot.pause(0.7)
        assert len(app.query_one(FindingsTable).rows_text()) == 8

    run_app(app, test)


def test_a_scan_that_breaks_is_labelled_as_an_error_not_as_cancelled(
    ct_onnx: Path, tmp_path: Path, monkeypatch
):
    from btd_core.engine.scorer import Scorer

    def out_of_memory(self, patches, with_residuals=False):
        raise MemoryError("Unable to allocate 5.9 GiB for an array")

    monkeypatch.setattr(Scorer, "score", out_of_memory)
    root = tmp_path / "study"
    write_series(root / "ct", "CT_small.dcm", 2)
    app = create_app(root, ct_onnx, ScanConfig("cpu", settings=ScanSettings(stride=96)))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.FAILED, 60, "the failure")
        await pilot.pause(0.3)
        log = app.query_one(LogPanel)
        assert any("the scan stopped on an error: MemoryError" in e for e in log.entries)
        labels = app.query_one(StudyTree).labels()
        assert any("stopped on an error at 0/2" in label for label in labels), labels
        assert not any("cancelled" in label for label in labels)

    run_app(app, test)


def test_corrupt_file_shows_in_log_and_tree(tiny_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    files = write_fixed_series(root / "ct", 4)
    (root / "bad.dcm").write_text("this is not DICOM\n")
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) - 20000])  # pixel data cut short
    app = create_app(root, tiny_onnx, ScanConfig("cpu", settings=ScanSettings(stride=32)))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
        await pilot.pause(0.7)
        log = app.query_one(LogPanel)
        errors = [e for e in log.entries if "bad.dcm" in e]
        assert errors and "not a valid DICOM file" in errors[0]
        rendered = "".join(strip.text for strip in log.lines)
        assert "bad.dcm" in rendered
        labels = app.query_one(StudyTree).labels()
        assert any(label.startswith("bad.dcm: not a valid DICOM file") for label in labels)
        truncated = [e for e in log.entries if "s1_004.dcm" in e]
        assert truncated and truncated[0].startswith("unreadable: ct/s1_004.dcm: ")
        assert "unreadable files (2)" in app.query_one(StudyTree).labels()
        assert len(app.query_one(FindingsTable).rows_text()) == 3  # the audit went on
        assert any("scored 3/4 · 1 file failed" in label for label in labels)
        # auto, and the model has no calibration: the local score, and a hint
        assert "slice score: local" in log.entries
        assert "no calibration for this model: btd calibrate makes one" in log.entries

    run_app(app, test)


def test_a_series_where_nothing_was_scored_says_so_in_the_tree(tiny_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    for path in write_fixed_series(root / "ct", 2):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 20000])  # every slice's pixel data cut short
    app = create_app(root, tiny_onnx, ScanConfig("cpu", settings=ScanSettings(stride=32)))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
        await pilot.pause(0.3)
        labels = app.query_one(StudyTree).labels()
        assert any("not scored · 2 files failed" in label for label in labels), labels
        assert not any("· scored" in label or label.endswith("scored") for label in labels)

    run_app(app, test)


def test_cuda_requested_but_inactive_is_an_error_on_screen(tiny_onnx: Path, tmp_path: Path):
    from btd_core.engine.scorer import ProviderError, Scorer

    try:
        Scorer(tiny_onnx, provider="cuda")
    except ProviderError:
        pass
    else:
        pytest.skip("CUDA is active on this machine")
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 2)
    app = create_app(root, tiny_onnx, ScanConfig("cuda"))

    async def test(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), 60, "the error")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "CUDA was requested" in text.replace("\n", " ")
        assert "provider cuda is not available" in text
        assert app.phase is ScanPhase.ERROR and app.jobs.scan is None
        await pilot.press("escape")  # hides the panel; the error stays in the model panel
        await pilot.press("s")
        await pilot.pause(0.3)
        assert app.jobs.scan is None and app.scan_view.book is None
        assert "CUDA was requested" in screen_text(app).replace("\n", " ")

    run_app(app, test)


def test_markup_and_escapes_in_dicom_text_show_literally(tiny_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 2, description="[bold red]x[/]", patient_name="Doe^\x1b[31mred")
    app = create_app(root, tiny_onnx, ScanConfig("cpu", settings=ScanSettings(stride=32)))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
        await pilot.pause(0.7)
        labels = app.query_one(StudyTree).labels()
        assert any("[bold red]x[/] · CT" in label for label in labels)
        assert any("Doe^\\x1b[31mred" in label for label in labels)
        assert not any("\x1b" in label for label in labels)
        rows = app.query_one(FindingsTable).rows_by_column()
        assert rows[0]["series"] == "[bold red]x[/]"
        text = screen_text(app)
        assert "[bold red]x[/]" in text and "Doe^\\x1b[31mred" in text and "\x1b" not in text

    run_app(app, test)


def test_help_lists_every_binding_and_the_palette_runs_actions(tiny_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 2)
    app = create_app(root, tiny_onnx, ScanConfig("cpu"), autostart=False)

    async def test(pilot):
        from btd_tui.palette import PALETTE_ACTIONS, AuditCommands
        from btd_tui.screens.help import HelpScreen

        await wait_for(pilot, lambda: app.phase is ScanPhase.READY, 60, "ready")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for binding in app.BINDINGS:
            assert binding.description in text and binding.tooltip in text
        assert "command palette" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert not isinstance(app.screen, HelpScreen)

        provider = AuditCommands(app.screen)
        hits = [hit async for hit in provider.discover()]
        assert len(hits) == len(PALETTE_ACTIONS)
        names = " | ".join(hit.text for hit in hits)
        for start in ("Start the scan", "Cancel the scan", "Resume a cancelled scan", "Export"):
            assert start in names
        for words in ("heat map", "ASCII", "Zoom", "Help"):
            assert words in names
        preview = app.query_one(SlicePreview)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await type_text(pilot, "heat")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not preview.show_heat, 10, "the palette's heat toggle")
        table = app.query_one(FindingsTable)
        await pilot.press("o")
        assert table.sort_column == "score"

    run_app(app, test)


def test_btd_audit_without_a_model_says_how_to_set_one(tmp_path: Path, monkeypatch, capsys):
    from btd_core.cli.main import main

    monkeypatch.delenv("BTD_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "study").mkdir()
    assert main(["audit", str(tmp_path / "study")]) == 2
    out = capsys.readouterr().out
    assert "BTD_MODEL" in out and "--model" in out
    assert main(["audit", str(tmp_path / "nothing"), "--model", "x.onnx"]) == 2
    assert "not a folder" in capsys.readouterr().out
    monkeypatch.setenv("BTD_MODEL", str(tmp_path / "missing.onnx"))
    assert main(["audit", str(tmp_path / "study")]) == 2
    assert "no such model file" in capsys.readouterr().out


def test_local_score_mode_boxes_the_worst_window(tiny_onnx: Path, tmp_path: Path):
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 4, planted_index=2)
    config = ScanConfig("cpu", settings=ScanSettings(stride=32), score=ScoreRequest("local"))
    app = create_app(root, tiny_onnx, config)

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
        await pilot.pause(0.7)
        rows = app.query_one(FindingsTable).rows_by_column()
        assert rows[0]["file"].endswith("s1_003.dcm")  # the planted slice
        table = app.query_one(FindingsTable)
        table.focus()
        table.move_cursor(row=0)
        await shown_slice(pilot, app, 2)
        preview = app.query_one(SlicePreview)
        assert preview.result is not None and preview.result.score_mode == "local"
        assert preview.result.region[2] == 24
        log = app.query_one(LogPanel).entries
        assert "slice score: local" in log and not any("btd calibrate" in e for e in log)

    run_app(app, test)


def test_calibrated_mode_without_a_calibration_is_an_error_on_screen(
    tiny_onnx: Path, tmp_path: Path
):
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 2)
    app = create_app(root, tiny_onnx, ScanConfig("cpu", score=ScoreRequest("calibrated")))

    async def test(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), 60, "the error")
        await pilot.pause(0.3)
        text = screen_text(app).replace("\n", " ")
        assert "the slice score (calibrated) cannot run" in text and "btd calibrate" in text
        assert app.phase is ScanPhase.ERROR and app.session is None
        assert app.jobs.scan is None

    run_app(app, test)


def test_calibrated_mode_scores_with_the_models_calibration(tiny_onnx: Path, tmp_path: Path):
    from btd_core.audit.calibrate import calibrate_model

    model = tmp_path / "models" / "tiny.onnx"
    model.parent.mkdir()
    model.write_bytes(tiny_onnx.read_bytes())
    write_fixed_series(tmp_path / "genuine" / "ct", 4, series_number=3)
    calibrate_model(tmp_path / "genuine", model, provider="cpu", settings=ScanSettings(stride=32))
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 4, planted_index=1)
    config = ScanConfig("cpu", score=ScoreRequest("calibrated"), settings=ScanSettings(stride=32))
    app = create_app(root, model, config)

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 120, "the scan")
        await pilot.pause(0.7)
        rows = app.query_one(FindingsTable).rows_by_column()
        assert rows[0]["file"].endswith("s1_002.dcm")
        assert app.slice_score is not None and app.slice_score.mode == "calibrated"
        assert app.slice_score.calibration_path == model.with_name("tiny.onnx.calibration.json")
        log = app.query_one(LogPanel).entries
        assert "slice score: calibrated (calibration tiny.onnx.calibration.json)" in log

    run_app(app, test)


def test_the_sort_label_says_what_the_order_is(tiny_onnx: Path, tmp_path: Path):
    """The table's bottom border names the order the rows are really in ("by score,
    highest first"), after ``o`` (next column) and a click on the same header (reversed),
    and fits an 80-column terminal."""
    from btd_tui.widgets.findings_table import ALL_COLUMN_KEYS, SORT_ORDERS

    assert tuple(SORT_ORDERS) == ALL_COLUMN_KEYS
    assert max(len(label) for pair in SORT_ORDERS.values() for label in pair) <= 32
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 4, planted_index=2)
    app = create_app(root, tiny_onnx, ScanConfig("cpu"))

    async def test(pilot):
        await wait_for(pilot, lambda: app.phase is ScanPhase.DONE, 300, "the scan")
        await pilot.pause(0.7)  # the table is re-ranked at most every 0.5 s
        table = app.query_one(FindingsTable)

        def column(key: str) -> list[str]:
            return [row[key] for row in table.rows_by_column()]

        def scores() -> list[float]:
            return [float(cell) for cell in column("score")]

        def shown(label: str) -> bool:  # on the table's bottom border, on screen
            return any(label in line and "╯" in line for line in screen_text(app).splitlines())

        assert shown("by rank, most suspicious first"), screen_text(app)
        assert column("rank") == ["1", "2", "3", "4"] and column("slice")[0] == "3/4"
        assert scores() == sorted(scores(), reverse=True)
        table.focus()
        await pilot.press("o")
        await pilot.pause()
        assert shown("by score, highest first")
        assert scores() == sorted(scores(), reverse=True) and column("slice")[0] == "3/4"
        score_header = table.ordered_columns[1]
        x = table.ordered_columns[0].get_render_width(table) + 2
        await pilot.click(FindingsTable, offset=(x, 1))  # the score header: reversed
        await pilot.pause()
        assert score_header.key.value == "score" and shown("by score, lowest first"), screen_text(
            app
        )
        assert scores() == sorted(scores()) and column("slice")[-1] == "3/4"
        await pilot.press("o", "o")  # series, then slice
        await pilot.pause()
        assert shown("by slice, first to last")
        assert column("slice") == ["1/4", "2/4", "3/4", "4/4"]

    run_app(app, test)
