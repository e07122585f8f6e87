"""A score a person can read: ``btd calibrate`` records its genuine slices' scores, and a
scan says how rare each finding's score is among them (``genuine_tail``), how many leads
the study would show at that level by chance, and which signal fired, with the real test
scorer, real calibration and real scans."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from btd_core.cli.main import main
from btd_core.scoring.calibration import FORMAT_VERSION
from btd_core.scoring.rarity import GenuineScores, chance_text, rarity_short, rarity_text
from btd_core.study.records import SIGNALS
from tests.support.real_ct import shifted_hu_series

PLANTED = 3
"""The slice of the study with noise planted in it (of six)."""


def _run(argv: list[str]) -> tuple[int, str]:
    """``btd ARGV``: its exit status and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return status, printed.getvalue()


def _rows(report: Path) -> list[dict[str, str]]:
    with (report / "findings.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def scanned(ct_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A calibration made on eight genuine shifted slices (with how long it took), the
    genuine folder scanned with it, and a six-slice study with noise planted in slice 3
    scanned with it and without a calibration."""
    root = tmp_path_factory.mktemp("rarity")
    genuine = root / "genuine"
    genuine.mkdir()
    np.save(genuine / "genuine.npy", shifted_hu_series(8))
    calibration = root / "ct.calibration.json"  # not the sidecar: scans without it are local
    started = time.perf_counter()
    argv = ["calibrate", str(genuine), "--model", str(ct_onnx), "--out", str(calibration)]
    status, _ = _run(argv)
    seconds = time.perf_counter() - started
    assert status == 0
    study = root / "study"
    study.mkdir()
    np.save(study / "series.npy", shifted_hu_series(6, planted=PLANTED))
    scan = ["scan", "--model", str(ct_onnx), "--calibration", str(calibration)]
    status, _ = _run([*scan[:1], str(genuine), *scan[1:], "--out", str(root / "genuine-report")])
    assert status == 0
    status, printed = _run([*scan[:1], str(study), *scan[1:], "--out", str(root / "report")])
    assert status == 0
    plain = ["scan", str(study), "--model", str(ct_onnx), "--out", str(root / "plain")]
    assert _run(plain)[0] == 0
    return {
        "root": root,
        "calibration": calibration,
        "calibrate_seconds": seconds,
        "printed": printed,
        "study": study,
    }


def test_the_calibration_records_what_a_scan_of_its_genuine_slices_reports(scanned):
    data = json.loads(Path(scanned["calibration"]).read_text())
    assert data["format_version"] == FORMAT_VERSION == 5
    recorded = data["genuine_scores"]
    assert len(recorded) == data["slices"] == 8 and recorded == sorted(recorded)
    rows = _rows(Path(scanned["root"]) / "genuine-report")
    scanned_scores = sorted(float(row["score"]) for row in rows)
    np.testing.assert_allclose(recorded, scanned_scores, rtol=1e-9, atol=0)
    # a genuine slice is as rare as it is among its own kind: in (0, 1], never 0
    tails = [float(row["genuine_tail"]) for row in rows]
    assert all(0.0 < tail <= 1.0 for tail in tails)
    assert {int(row["genuine_slices"]) for row in rows} == {8}
    top = rows[0]  # the genuine slice scoring highest reaches itself: 2 / 9
    assert float(top["genuine_tail"]) == pytest.approx(2 / 9)
    assert all(row["signal"] in SIGNALS for row in rows)


def test_a_planted_slice_is_higher_than_every_genuine_slice_and_says_so(scanned):
    root = Path(scanned["root"])
    rows = _rows(root / "report")
    top = rows[0]
    assert int(top["slice_index"]) == PLANTED
    assert float(top["genuine_tail"]) == pytest.approx(1 / 9) and top["genuine_slices"] == "8"
    assert top["signal"] in ("pixels", "residual")
    assert all(row["signal"] in SIGNALS and row["signal"] for row in rows)
    sidecar = json.loads((root / "report" / "report.json").read_text())
    first = sidecar["top_findings"][0]
    assert first["genuine_tail"] == pytest.approx(1 / 9) and first["signal"] == top["signal"]
    assert first["rarity"] == "higher than all 8 genuine slices of the calibration (p <= 1/9)"
    assert first["chance_leads"] == pytest.approx(6 / 9)
    chance = sidecar["chance_leads"]
    assert chance["study_slices"] == 6 and chance["expected"] == pytest.approx(6 / 9)
    assert chance["text"].startswith("at the top lead's level, at most about 0.67 of this")
    assert sidecar["settings"]["genuine_slices"] == 8
    printed = " ".join(str(scanned["printed"]).split())
    assert "higher than all 8 genuine slices of the calibration (p <= 1/9)" in printed
    assert chance["text"] in printed
    assert f"top lead: slice {PLANTED + 1}/6 of" in printed
    page = (root / "report" / "report.html").read_text()
    assert str(escape(chance["text"])) in page and "&gt; all 8" in page


def test_without_a_calibration_the_rarity_cells_are_empty(scanned):
    root = Path(scanned["root"])
    rows = _rows(root / "plain")
    assert rows and all(row["genuine_tail"] == row["genuine_slices"] == "" for row in rows)
    assert {row["signal"] for row in rows} == {"energy"}
    sidecar = json.loads((root / "plain" / "report.json").read_text())
    assert sidecar["chance_leads"] is None and sidecar["settings"]["genuine_slices"] is None
    assert sidecar["top_findings"][0]["rarity"] is None


def test_another_score_than_the_genuine_slices_had_gets_no_rarity(scanned, ct_onnx):
    """``--no-context`` judges each slice alone: genuine slices judged with their
    neighbours say nothing about how rare that score is."""
    root = Path(scanned["root"])
    out = root / "alone"
    argv = ["scan", str(scanned["study"]), "--model", str(ct_onnx), "--out", str(out)]
    assert _run([*argv, "--calibration", str(scanned["calibration"]), "--no-context"])[0] == 0
    rows = _rows(out)
    assert all(row["genuine_tail"] == "" for row in rows)
    assert {row["signal"] for row in rows} == {"tissue"}


def test_a_format_4_calibration_still_scans_without_rarity(scanned, ct_onnx):
    root = Path(scanned["root"])
    data = json.loads(Path(scanned["calibration"]).read_text())
    data["format_version"] = 4
    older = root / "format4.json"
    older.write_text(json.dumps(data))
    out = root / "format4"
    argv = ["scan", str(scanned["study"]), "--model", str(ct_onnx), "--out", str(out)]
    status, printed = _run([*argv, "--calibration", str(older)])
    assert status == 0
    rows = _rows(out)
    assert rows and all(row["genuine_tail"] == row["genuine_slices"] == "" for row in rows)
    assert all(row["signal"] in SIGNALS for row in rows)
    assert "btd calibrate again" in " ".join(printed.split())


def test_the_tail_is_conservative_and_its_words_honest():
    genuine = GenuineScores.of([3.0, 1.0, 2.0, 2.0])
    assert genuine is not None and genuine.scores == (1.0, 2.0, 2.0, 3.0)
    assert genuine.tail(10.0) == pytest.approx(1 / 5)  # never 0
    assert genuine.tail(2.0) == pytest.approx(4 / 5)  # ties count as reaching it
    assert genuine.tail(0.0) == 1.0
    assert GenuineScores.of([]) is None and GenuineScores.of(None) is None
    assert rarity_text(1 / 49, 48) == (
        "higher than all 48 genuine slices of the calibration (p <= 1/49)"
    )
    assert rarity_text(3 / 6001, 6000) == "1 in 2,000 genuine slices score this high"
    assert rarity_short(3 / 6001, 6000) == "1 in 2,000" and rarity_short(1 / 49, 48) == "> all 48"
    assert rarity_short(None, None) == "" and rarity_short(1.0, 8) == "common"
    assert rarity_text(0.9, 8) == "most genuine slices score this high"
    assert chance_text(3 / 6001, 6000, 300) == (
        "at the top lead's level, about 0.15 of this study's 300 slices would score as high "
        "by chance if all were genuine"
    )


def test_the_app_shows_the_rarity_of_a_report_read_back(scanned):
    """A report folder read back (``btd audit report/``) keeps each slice's signal and
    rarity, and the app's table then has its rarity column."""
    from btd_core.findings.saved_report import attach_to_study, read_report
    from btd_tui.widgets.findings_table import RARITY_TABLE_SHAPE, finding_cells, table_shape

    report = read_report(Path(scanned["root"]) / "report")
    findings = attach_to_study(report, None).findings
    top = findings[0]
    assert top.genuine_tail == pytest.approx(1 / 9) and top.genuine_slices == 8
    assert top.result.signal in ("pixels", "residual")
    assert table_shape(findings) is RARITY_TABLE_SHAPE
    cells = finding_cells(top, plan=None)
    assert "> all 8" not in [cell.plain for cell in cells]  # the default plan: six columns
    from btd_core.findings.column_plan import ColumnPlan

    shown = finding_cells(top, plan=ColumnPlan(RARITY_TABLE_SHAPE.columns))
    assert shown[2].plain == "> all 8"
    plain = attach_to_study(read_report(Path(scanned["root"]) / "plain"), None).findings
    assert table_shape(plain) is not RARITY_TABLE_SHAPE
