"""``report.html``: one self-contained page per report folder, read back with the standard
library's HTML parser.

A study whose file names and tags are HTML, script and formulas (tests/support/hostile_study.py)
is scanned by the real ``btd scan``: the page holds the ranked slices, the series, the files
that failed and why, thumbnails of the top slices (boxed, and with the heat map), and the
run's and model's identity; every hostile text reads literally and nothing in the page runs
or fetches.  The size of a 300-slice study's page with the default 10 overlays is measured
on a report made in memory from a real 512 x 512 CT slice (a scan of 300 slices would take
minutes here).  The page in a real browser: ``tests/test_html_browser.py``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from btd_core.cli.main import main as btd_main
from btd_core.exit_status import ExitStatus
from btd_core.findings.html_page import CONTENT_SECURITY_POLICY
from btd_core.findings.html_report import TABLE_ROWS, TopSlice, scan_page
from btd_core.findings.overlay import BOX_COLOUR
from btd_core.findings.score_text import score_text
from btd_core.findings.thumbnails import slice_thumbnails
from btd_core.study.records import (
    Discovery,
    FileRecord,
    Finding,
    Series,
    SliceRef,
    SliceResult,
)
from tests.support.hostile_study import (
    DESCRIPTION,
    FAILED_FILE,
    HOSTILE_TEXTS,
    IMG_FILE,
    PATIENT,
    SCRIPT_FILE,
    SKIPPED_FILE,
    write_hostile_study,
)
from tests.support.html_page import read_page, unsafe_markup
from tests.support.real_ct import real_ct_slice
from tests.support.runs import STARTED, make_run

OVERLAYS = 3


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, ct_onnx: Path) -> dict:
    """``btd scan`` of the hostile study: the report folder, its page, parsed, and its rows."""
    root = tmp_path_factory.mktemp("html")
    study = write_hostile_study(root / "study")
    out = root / "report"
    args = ["scan", str(study.root), "--model", str(ct_onnx), "--out", str(out)]
    status = btd_main([*args, "--provider", "cpu", "--overlays", str(OVERLAYS)])
    html = (out / "report.html").read_text(encoding="utf-8")
    with (out / "findings.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {"status": status, "out": out, "html": html, "page": read_page(html), "rows": rows}


def test_every_report_folder_has_report_html_and_report_json_hashes_it(scanned):
    assert scanned["status"] == ExitStatus.SOME_FAILED  # the broken file
    out = scanned["out"]
    sidecar = json.loads((out / "report.json").read_text())
    digest = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    assert sidecar["report_files"]["report.html"] == digest


def test_hostile_names_and_tags_read_literally_and_nothing_runs(scanned):
    page = scanned["page"]
    assert unsafe_markup(page) == []
    for text in HOSTILE_TEXTS:
        assert text in page.text, text
    html = scanned["html"]
    assert "<script" not in html.lower() and "<img src=x" not in html  # only ever escaped
    assert SCRIPT_FILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_page_says_it_fetches_nothing(scanned):
    (policy,) = [
        e.attrs["content"]
        for e in scanned["page"].find("meta")
        if e.attrs.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "img-src data:" in policy
    assert not [e for e in scanned["page"].elements if "src" in e.attrs and e.tag != "img"]


def test_the_ranked_table_is_findings_csv_in_rank_order(scanned):
    table = scanned["page"].tables["ranked-slices"]
    header, body = table[0], table[1:]
    assert header[:4] == ["rank", "score", "signal", "series"]  # no rarity: no calibration
    rows = scanned["rows"]
    assert len(body) == len(rows) == 4
    for shown, row in zip(body, rows, strict=True):
        assert shown[0] == row["rank"]
        assert shown[1] == score_text(float(row["score"]))
        assert shown[2] == row["signal"] == "energy"
        assert shown[3] == DESCRIPTION
        assert shown[4] == f"{row['slice_number']}/5"  # 4 slices and the broken file's
        assert shown[-1] == row["file"]
    assert body[0][-1] == SCRIPT_FILE  # the planted slice ranks first


def test_series_and_the_files_that_failed_or_were_skipped_and_why(scanned):
    tables = scanned["page"].tables
    (series,) = tables["series-table"][1:]
    assert series[2] == DESCRIPTION and any(cell.startswith(PATIENT) for cell in series)
    (failed,) = tables["failed-files"][1:]
    assert failed[0] == FAILED_FILE and "could not decode the pixels" in failed[2]
    (skipped,) = tables["skipped-files"][1:]
    assert skipped[0] == SKIPPED_FILE and "not a DICOM" in skipped[2]


def test_each_top_slice_has_its_thumbnails_with_the_worst_region_boxed(scanned):
    page, rows = scanned["page"], scanned["rows"]
    cards = [e for e in page.find("article") if e.attrs.get("class") == "card"]
    assert [c.attrs["id"] for c in cards] == [f"rank{n}" for n in range(1, OVERLAYS + 1)]
    pictures = page.images()
    assert len(pictures) == 2 * OVERLAYS  # the slice boxed, and with its heat map
    for index, row in enumerate(rows[:OVERLAYS]):
        boxed, heat = pictures[2 * index], pictures[2 * index + 1]
        assert boxed.size == heat.size == (128, 128)  # CT_small.dcm: kept at its size
        x, y, size = (int(row[k]) for k in ("window_x", "window_y", "window_size"))
        pixels = np.asarray(boxed.convert("RGB"))
        assert tuple(pixels[y, x]) == BOX_COLOUR
        assert tuple(pixels[y + size - 1, x + size - 1]) == BOX_COLOUR
        assert tuple(pixels[y + size // 2, x + size // 2]) != BOX_COLOUR
        colour = np.asarray(heat.convert("RGB")).astype(int)
        assert (colour[..., 0] - colour[..., 2] > 40).any()  # the hot map's reds


def test_the_page_names_the_study_the_model_and_the_run(scanned):
    text = " ".join(scanned["page"].text.split())
    sidecar = json.loads((scanned["out"] / "report.json").read_text())
    assert sidecar["model"]["sha256"] in text
    assert sidecar["study_root"] in text
    for key in ("tool", "started_utc"):
        value = sidecar[key]["version"] if key == "tool" else sidecar[key][:19].replace("T", " ")
        assert value in text
    assert sidecar["library_versions"]["onnxruntime"] in text
    assert "a lead to examine, not proof of tampering" in text
    assert "not calibrated" in text
    assert IMG_FILE in text


def many_slice_report(slices: int, top: int, noise: bool = False) -> tuple[str, list[Finding]]:
    """The page of a study of ``slices`` slices, ranked, the ``top`` ones with pictures of a
    real 512 x 512 CT slice (each shifted, a noise block planted, its high-pass heat map), or
    with ``noise`` of pure noise, image and heat map: the worst case for PNG."""
    root = Path("/evidence/case-7/study")
    series = Series(
        key="1.2.3.4", kind="dicom", study_uid="1.2.3", series_uid="1.2.3.4", modality="CT"
    )
    files, results = [], []
    rng = np.random.default_rng(0)
    for index in range(slices):
        relpath = f"CT/IM{index:05d}.dcm"
        series.slices.append(SliceRef(path=root / relpath, sop_instance_uid=f"1.2.3.4.{index}"))
        sha = f"{index:064x}"
        files.append(FileRecord(root / relpath, relpath, 526_000, sha, "dicom", "scored"))
        x, y = (int(v) for v in rng.integers(0, 448, 2))
        score = float(rng.gamma(2.0, 1e-4))
        results.append(
            SliceResult("1.2.3.4", index, score, x, y, 96, 30, 6, x, y, 24, score_mode="local")
        )
    ordered = sorted(results, key=lambda r: -r.score)
    findings = [
        Finding(rank, result, series, series.slices[result.slice_index], files[result.slice_index])
        for rank, result in enumerate(ordered, start=1)
    ]
    base = real_ct_slice()
    tops = []
    for finding in findings[:top]:
        image = np.roll(base, finding.rank * 7, axis=1).copy()
        x, y, size = finding.result.region
        image[y : y + size, x : x + size] = rng.uniform(0.1, 0.9, (size, size))
        heat = (image - ndimage.uniform_filter(image, 5)) ** 2
        if noise:
            image, heat = rng.random((512, 512)), rng.random((512, 512))
        tops.append(TopSlice(finding, image, heat))
    run = make_run(
        root,
        ended_utc=STARTED + timedelta(minutes=12),
        settings={"score_mode": "local", "overlays": top},
    )
    discovery = Discovery(root=root, series=[series], files=files)
    return scan_page(run, discovery, findings, tops), findings


@pytest.mark.unit
@pytest.mark.parametrize(("noise", "limit_mib"), [(False, 1.5), (True, 5.0)])
def test_a_300_slice_studys_page_with_10_overlays_stays_under_5_mb(noise, limit_mib):
    """Real CT: about 0.5 MiB; even slices and heat maps of pure noise stay under 5 MB."""
    html, _ = many_slice_report(300, 10, noise=noise)
    size = len(html.encode("utf-8"))
    page = read_page(html)
    assert len(page.tables["ranked-slices"]) == 1 + TABLE_ROWS  # the rest: findings.csv
    assert "100 more slices" in page.text
    pictures = page.images()
    assert len(pictures) == 20 and {p.size for p in pictures} == {(256, 256)}
    what = "pure noise" if noise else "real CT"
    print(f"report.html, 300 slices, 10 overlays of 512 x 512 {what}: {size / 1024**2:.2f} MiB")
    assert size < limit_mib * 1024 * 1024 and size < 5_000_000, f"{size / 1024**2:.2f} MiB"


def test_with_no_phi_the_page_names_no_patient(ct_onnx, tmp_path):
    study = write_hostile_study(tmp_path / "study")
    out = tmp_path / "report"
    args = ["scan", str(study.root), "--model", str(ct_onnx), "--out", str(out), "--no-phi"]
    assert btd_main([*args, "--provider", "cpu"]) == ExitStatus.SOME_FAILED
    page = read_page((out / "report.html").read_text(encoding="utf-8"))
    assert PATIENT not in page.text and "patient" not in " ".join(page.tables["series-table"][0])
    assert DESCRIPTION in page.text  # the rest is there


@pytest.mark.unit
def test_a_large_slice_is_reduced_and_its_box_drawn_sharp_at_the_reduced_scale():
    image = real_ct_slice()  # 512 x 512
    pictures = slice_thumbnails(image, None, (100, 200, 48))
    assert pictures.scale == 0.5 and pictures.heat is None
    assert pictures.boxed.mode == "P" and pictures.boxed.size == (256, 256)
    pixels = np.asarray(pictures.boxed.convert("RGB"))
    cyan = np.all(pixels == BOX_COLOUR, axis=2)
    rows, columns = np.nonzero(cyan)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (100, 123, 50, 73)
    assert cyan.sum() == 4 * 23  # a one-pixel outline of a 24 px square
    flat = slice_thumbnails(image, np.zeros_like(image), (0, 0, 8))
    assert flat.heat is None  # an all-zero heat map draws no heat picture
