"""``report.html`` and the archive's ``index.html`` opened in a real browser: headless Chromium.

What a person on the case would see, checked in the rendered page rather than in its source:
the ranked table, every picture decoded, no console message, no request beyond the file
itself, no script run (hostile names and tags read as text; no dialog opens), and the
Content-Security-Policy refusing a fetch.  The reports are made by the real ``btd scan``,
``btd eval`` and ``btd archive`` on real CT slices.  Skipped, with the reason, where
Playwright or Chromium is missing (``tests/support/browser.py``).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from btd_core.cli.main import main as btd_main
from btd_core.findings.score_text import score_text
from tests.onnx_scorer import build_scorer
from tests.study_builder import write_series
from tests.support.archive_tree import run_embedded
from tests.support.browser import REFUSED_FETCH, headless_chromium, visit
from tests.support.hostile_study import HOSTILE_TEXTS, SCRIPT_FILE, write_hostile_study
from tests.support.real_ct import real_ct_slice


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as launched:
        yield launched


def quiet(seen) -> None:
    """Nothing went wrong while the page was open, and it fetched nothing but itself."""
    assert seen.console == [] and seen.errors == [] and seen.dialogs == []
    assert seen.requests == [seen.page.url]
    assert seen.page.evaluate("() => document.scripts.length") == 0
    images = seen.images()
    assert images and all(i["complete"] and i["width"] > 0 for i in images), images


def test_a_scan_report_renders_its_ranked_slices_and_pictures(browser, ct_onnx, tmp_path):
    study = write_hostile_study(tmp_path / "study")
    out = tmp_path / "report"
    argv = ["scan", str(study.root), "--model", str(ct_onnx), "--out", str(out)]
    assert btd_main([*argv, "--provider", "cpu"]) == 1  # one file cannot be decoded
    with (out / "findings.csv").open(newline="", encoding="utf-8") as handle:
        findings = list(csv.DictReader(handle))
    seen = visit(browser, out / "report.html")
    quiet(seen)
    rows = seen.rows("ranked-slices")
    assert [(r[0], r[1]) for r in rows] == [
        (f["rank"], score_text(float(f["score"]))) for f in findings
    ]
    assert rows[0][-1] == SCRIPT_FILE  # the planted slice, under its hostile name
    assert len(seen.images()) == 2 * len(findings)  # each top slice: boxed, and its heat map
    text = seen.page.inner_text("body")
    for hostile in HOSTILE_TEXTS:
        assert hostile in text, hostile
    assert seen.page.evaluate(REFUSED_FETCH) == "img-src"
    seen.page.close()


def test_an_eval_report_renders_its_roc_plot_and_metrics(browser, ct_onnx, tmp_path):
    genuine, tampered = tmp_path / "genuine", tmp_path / "tampered"
    genuine.mkdir()
    tampered.mkdir()
    hu = np.round(real_ct_slice() * 2700 - 700).astype(np.int16)
    rng = np.random.default_rng(5)
    for i in range(3):
        crop = hu[150 + 20 * i : 278 + 20 * i, 150:278].copy()
        np.save(genuine / f"g{i}.npy", crop)
        crop[40:80, 40:80] = rng.integers(-700, 2000, (40, 40))
        np.save(tampered / f"t{i}.npy", crop)
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), "--genuine", str(genuine)]
    assert btd_main([*argv, "--tampered", str(tampered), "--out", str(out)]) == 0
    seen = visit(browser, out / "report.html")
    quiet(seen)
    assert [i["width"] for i in seen.images()] == [640]  # the ROC plot
    metrics = seen.rows("metrics-table")
    assert metrics[0][:3] == ["folders", "3", "3"]
    seen.page.close()


def test_the_archive_index_links_each_study_report(browser, tmp_path):
    model = build_scorer(tmp_path / "ct32.onnx", patch_size=32)
    root, out = tmp_path / "root", tmp_path / "out"
    for name, seed in (("case_a", 1), ("case_b", 2)):
        write_series(root / name, "CT_small.dcm", 2, seed=seed)
    run_embedded(root, out, model)
    seen = visit(browser, out / "index.html")
    assert seen.console == [] and seen.errors == [] and seen.requests == [seen.page.url]
    assert [row[2] for row in seen.rows("studies-table")] == ["scored", "scored"]
    links = seen.page.locator("#studies-table a")
    assert links.count() == 2
    links.first.click()
    seen.page.wait_for_load_state("load")
    assert seen.page.url.endswith("/report.html") and "/studies/" in seen.page.url
    assert seen.page.locator("#ranked-slices tbody tr").count() == 2
    assert seen.console == [] and seen.errors == []
    seen.page.close()
