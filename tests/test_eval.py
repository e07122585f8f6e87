"""``btd eval`` end to end: real CT slices in the public test-set layout, a real ONNX scorer."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btd_core.cli.main import main
from btd_core.engine.scorer import Scorer
from btd_core.evaluation.metrics import auroc
from btd_core.evaluation.roc_plot import write_roc_png
from btd_core.evaluation.testset import TestSetError, parse_label_options
from btd_core.findings.html_page import png_bytes_uri
from btd_core.scoring.strategy import Neighbours
from btd_core.scoring.tiles import ScanSettings, score_image
from btd_core.slices.tiling import centred_patch_origin, crop_patch
from tests.support.html_page import read_page, unsafe_markup
from tests.support.real_ct import real_ct_slice

LABELS = ["--label", "tampered=FAKE,fake", "--label", "genuine=REAL"]
# (label, CTGAN-CT-injection flag, SD-CT-injection flag): rows 8 and 9 are flagged for
# neither set and so belong to the CSV's own set, CT-injection.
INJECTION_ROWS = [
    ("REAL", 1, 0),
    ("FAKE", 1, 0),
    ("REAL", 1, 1),
    ("fake", 1, 1),
    ("REAL", 0, 1),
    ("FAKE", 0, 1),
    ("REAL", 1, 0),
    ("FAKE", 0, 1),
    ("REAL", 0, 0),
    ("FAKE", 0, 0),
]


def hu_crop(index: int, tampered: bool, size: int = 128) -> np.ndarray:
    """A size x size crop of a real CT slice in HU (int16), a bright blob added if tampered."""
    image = real_ct_slice()
    y0, x0 = 96 + 23 * index % 256, 64 + 37 * index % 288
    hu = image[y0 : y0 + size, x0 : x0 + size].astype(np.float64) * 2700 - 700
    if tampered:
        yy, xx = np.mgrid[:size, :size]
        hu += 600 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * 8**2))
    return np.round(hu).astype(np.int16)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def build_public_ct_set(root: Path) -> Path:
    """CT/injection and CT/removal exactly as the public test sets lay them out."""
    injection = root / "CT" / "injection"
    injection.mkdir(parents=True)
    rows = []
    for i, (label, ctgan, sd) in enumerate(INJECTION_ROWS):
        np.save(injection / f"slice_{i}.npy", hu_crop(i, tampered=label.lower() == "fake"))
        rows.append([f"slice_{i}.npy", 64, 64, label, ctgan, sd, "ignored"])
    header = ["path", "x", "y", "type", "CTGAN-CT-injection", "SD-CT-injection", "note"]
    write_csv(injection / "CT_injection.csv", header, rows)
    # Removal rows point at the same files relative to the test-set root; (10, 120) is a
    # patch clipped at the top and zero-padded at the bottom.
    removal_rows = [
        ["CT/injection/slice_0.npy", 10, 120, "REAL", 1, 0],
        ["CT/injection/slice_1.npy", 100, 30, "FAKE", 1, 0],
        ["CT/injection/slice_2.npy", 50, 60, "REAL", 0, 1],
        ["CT/injection/slice_3.npy", 70, 80, "FAKE", 0, 1],
    ]
    header = ["path", "x", "y", "type", "CTGAN-CT-removal", "SD-CT-removal"]
    write_csv(root / "CT" / "removal" / "CT_removal.csv", header, removal_rows)
    # An MRI set beside them: a CT model reads only the CT CSVs (its label is not mapped).
    Image.fromarray(np.full((128, 128), 90, np.uint8)).save(root / "mri.png")
    header = ["path", "x", "y", "type"]
    write_csv(root / "MRI" / "MRI_injection.csv", header, [["../mri.png", 64, 64, "MRI-only"]])
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_public_layout_end_to_end(ct_onnx: Path, tmp_path: Path):
    root = build_public_ct_set(tmp_path / "testset")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), str(root), "--out", str(out), "--provider", "cpu"]
    argv += ["--score", "tile"]  # the paper's whole-patch score, checked by hand below
    assert main([*argv, *LABELS]) == 0

    scores = read_rows(out / "scores.csv")
    metrics = {row["set"]: row for row in read_rows(out / "metrics.csv")}
    assert list(metrics) == [
        *("CTGAN-CT-injection", "SD-CT-injection", "CT-injection"),
        *("CTGAN-CT-removal", "SD-CT-removal", "all"),
    ]
    counts = {name: (int(m["n_genuine"]), int(m["n_tampered"])) for name, m in metrics.items()}
    assert counts["CTGAN-CT-injection"] == (3, 2)
    assert counts["SD-CT-injection"] == (2, 3)
    assert counts["CT-injection"] == (1, 1)
    assert counts["CTGAN-CT-removal"] == counts["SD-CT-removal"] == (1, 1)
    assert counts["all"] == (7, 7)  # 14 distinct patches; rows in two sets count once
    assert len(scores) == 16 and {row["status"] for row in scores} == {"ok"}

    for name, row in metrics.items():
        mine = [r for r in scores if name in ("all", r["set"])]
        if name == "all":  # every (file, patch, label) once
            mine = list({(r["csv_row"], r["csv_file"]): r for r in mine}.values())
        labels = [int(r["label"]) for r in mine]
        by_hand = auroc(labels, [float(r["score"]) for r in mine])
        assert float(row["auroc"]) == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
        assert 0.0 <= float(row["average_precision"]) <= 1.0
        assert 0.0 <= float(row["tpr_at_1pct_fpr"]) <= float(row["tpr_at_5pct_fpr"]) <= 1.0

    # The clipped, zero-padded patch is cut exactly like centred_patch_origin + crop_patch.
    edge = next(r for r in scores if r["x"] == "10" and r["y"] == "120")
    scorer = Scorer(ct_onnx, provider="cpu")
    image = scorer.card.profile.to_unit_range(np.load(root / "CT/injection/slice_0.npy"))
    oy, ox = centred_patch_origin(120, 10, 96)
    assert (oy, ox) == (72, 0)
    direct = scorer.score(crop_patch(image, oy, ox, 96)[None]).scores[0]
    assert float(edge["score"]) == pytest.approx(float(direct), rel=1e-5)
    assert edge["label"] == "0" and edge["raw_label"] == "REAL"

    with Image.open(out / "roc.png") as png:
        assert png.format == "PNG" and png.size == (640, 640)
    sidecar = json.loads((out / "eval.json").read_text())
    for name in ("scores.csv", "metrics.csv", "roc.png", "report.html"):
        assert (
            sidecar["output_files"][name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        )
    assert sidecar["model"]["sha256"] == hashlib.sha256(ct_onnx.read_bytes()).hexdigest()
    assert sidecar["model"]["card"]["btd.modality"] == "ct"
    assert sidecar["label_mapping"] == {"tampered": ["FAKE", "fake"], "genuine": ["REAL"]}
    assert sidecar["provider"]["in_use"] == "CPUExecutionProvider"
    assert len(sidecar["inputs"]["csv_files"]) == 2
    assert sidecar["counts"] == {"ok": 16, "error": 0, "skipped": 0}
    assert [m["set"] for m in sidecar["metrics"]] == list(metrics)
    assert sidecar["started_utc"] <= sidecar["ended_utc"]
    check_report_html(out, metrics, sidecar)


def check_report_html(out: Path, metrics: dict[str, dict[str, str]], sidecar: dict) -> None:
    """``report.html``: the metrics of metrics.csv, the ROC plot of roc.png, the run."""
    page = read_page((out / "report.html").read_text(encoding="utf-8"))
    assert unsafe_markup(page) == []
    shown = page.tables["metrics-table"][1:]
    assert [row[0] for row in shown] == list(metrics)
    for row in shown:
        expected = metrics[row[0]]
        assert row[1:3] == [expected["n_genuine"], expected["n_tampered"]]
        assert row[3] == f"{float(expected['auroc']):.3f}"
    (plot,) = page.find("img")
    assert plot.attrs["src"] == png_bytes_uri((out / "roc.png").read_bytes())
    text = " ".join(page.text.split())
    assert sidecar["model"]["sha256"] in text and sidecar["started_utc"] in text
    assert "None: every item was scored." in text


def test_unmapped_labels_stop_with_every_value_listed(ct_onnx: Path, tmp_path: Path, capsys):
    root = build_public_ct_set(tmp_path / "testset")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), str(root), "--out", str(out)]
    assert main([*argv, "--label", "tampered=FAKE"]) == 2
    printed = capsys.readouterr().out
    assert "'REAL': 7 rows" in printed  # 5 injection rows + 2 removal rows
    assert "'FAKE': 6 rows (mapped to tampered)" in printed
    assert "'fake': 1 row" in printed
    assert "not mapped: 'REAL', 'fake'" in printed
    assert not out.exists()


def test_missing_file_and_bad_rows_become_error_rows(ct_onnx: Path, tmp_path: Path, capsys):
    root = tmp_path / "testset"
    folder = root / "CT" / "injection"
    folder.mkdir(parents=True)
    np.save(folder / "good_0.npy", hu_crop(0, tampered=False))
    np.save(folder / "good_1.npy", hu_crop(1, tampered=True))
    np.save(folder / "volume.npy", np.stack([hu_crop(2, tampered=False)] * 2))
    rows = [
        ["good_0.npy", 64, 64, "REAL", 1, 0],
        ["good_1.npy", 64, 64, "FAKE", 1, 0],
        ["missing_slice.npy", 64, 64, "FAKE", 1, 0],
        ["volume.npy", 64, 64, "REAL", 1, 0],
        ["good_0.npy", 400, 64, "REAL", 1, 0],
    ]
    header = ["path", "x", "y", "type", "CTGAN-CT-injection", "SD-CT-injection"]
    write_csv(folder / "CT_injection.csv", header, rows)
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), str(root), "--out", str(out), *LABELS]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "missing_slice.npy" in printed and "file not found" in printed

    scores = {row["path"] + row["x"]: row for row in read_rows(out / "scores.csv")}
    missing = scores["missing_slice.npy64"]
    assert missing["status"] == "error" and missing["score"] == ""
    assert "file not found: missing_slice.npy" in missing["reason"]
    assert str(folder) in missing["reason"] and missing["csv_row"] == "4"
    assert "3-D array" in scores["volume.npy64"]["reason"]
    assert "outside the 128x128 slice" in scores["good_0.npy400"]["reason"]
    assert scores["good_0.npy64"]["status"] == scores["good_1.npy64"]["status"] == "ok"
    metrics = read_rows(out / "metrics.csv")[0]
    assert (metrics["n_genuine"], metrics["n_tampered"]) == ("1", "1")
    assert json.loads((out / "eval.json").read_text())["counts"]["error"] == 3
    failed = read_page((out / "report.html").read_text(encoding="utf-8")).tables["failed-items"]
    assert [row[1] for row in failed[1:]] == ["missing_slice.npy", "volume.npy", "good_0.npy"]
    assert "file not found" in failed[1][4] and "3-D array" in failed[2][4]


def test_csv_mode_is_tolerant_of_column_names_and_reads_3d_slices(ct_onnx: Path, tmp_path: Path):
    data = tmp_path / "made"
    data.mkdir()
    np.save(data / "volume.npy", np.stack([hu_crop(i, tampered=i % 2 == 1) for i in range(3)]))
    header = [" Path ", "X", " y", "TYPE", "Method", "Slice", "anything else"]
    rows = [
        ["volume.npy", "64.0", 64, "REAL", "copy-move", 0, "x"],
        ["volume.npy", 64, 64, "FAKE", "copy-move", 1, ""],
        ["volume.npy", 64, 64, "REAL", "copy-move", 2, ""],
        ["volume.npy", 64, 64, "REAL", "splice", 0, ""],
    ]
    table = write_csv(data / "tampered.csv", header, rows)
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), "--csv", str(table), "--out", str(out), *LABELS]
    assert main(argv) == 0
    metrics = {row["set"]: row for row in read_rows(out / "metrics.csv")}
    assert list(metrics) == ["copy-move", "splice", "all"]
    assert (metrics["copy-move"]["n_genuine"], metrics["copy-move"]["n_tampered"]) == ("2", "1")
    assert metrics["splice"]["auroc"] == ""  # genuine images only: no metric, no crash
    scores = read_rows(out / "scores.csv")
    assert [r["frame"] for r in scores] == ["0", "1", "2", "0"]
    assert scores[0]["score"] == scores[3]["score"]  # the same patch, read once


@pytest.mark.parametrize("mode", ["auto", "tile", "local", "calibrated"])
def test_folder_pair_scores_whole_slices(ct_onnx: Path, tmp_path: Path, mode: str):
    """Each --score mode scores whole slices as the scan's slice score does."""
    from btd_core.audit.calibrate import calibrate_model
    from btd_core.scoring.strategy import ScoreRequest

    genuine, tampered = tmp_path / "genuine", tmp_path / "tampered"
    genuine.mkdir()
    tampered.mkdir()
    for i in range(2):  # 96 x 128 slices inside the head: two 96-px tiles each
        np.save(genuine / f"g{i}.npy", hu_crop(i + 4, tampered=False)[16:112])
        np.save(tampered / f"t{i}.npy", hu_crop(i + 2, tampered=True)[16:112])
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), "--genuine", str(genuine), "--tampered"]
    argv += [str(tampered), "--out", str(out), "--score", mode]
    calibration = None
    if mode == "calibrated":
        calibration = tmp_path / "calibration.json"
        calibrate_model(genuine, ct_onnx, calibration, provider="cpu")
        argv += ["--calibration", str(calibration)]
    assert main(argv) == 0
    metrics = {row["set"]: row for row in read_rows(out / "metrics.csv")}
    assert (metrics["folders"]["n_genuine"], metrics["folders"]["n_tampered"]) == ("2", "2")
    scores = read_rows(out / "scores.csv")
    assert [r["path"] for r in scores] == [
        *("genuine/g0.npy", "genuine/g1.npy", "tampered/t0.npy", "tampered/t1.npy")
    ]
    assert all(
        r["x"] == "" and r["label"] == ("1" if "tampered" in r["path"] else "0") for r in scores
    )
    scorer = Scorer(ct_onnx, provider="cpu")
    image = scorer.card.profile.to_unit_range(np.load(genuine / "g1.npy"))
    whole = score_image(image, scorer, ScanSettings())
    request = ScoreRequest(mode, calibration_path=calibration)
    slice_score = request.resolve(ct_onnx, scorer.model_sha256)
    assert slice_score.mode == ("local" if mode == "auto" else mode)
    verdict = slice_score.judge("", 1, image, whole)
    assert verdict is not None
    if slice_score.uses_context:  # the folder is one series: g1 is judged with g0, as a scan
        first = scorer.card.profile.to_unit_range(np.load(genuine / "g0.npy"))
        before = slice_score.judge("", 0, first, score_image(first, scorer, ScanSettings()))
        alone = verdict.result.score
        verdict = slice_score.in_context(verdict, Neighbours((before,)))
        assert verdict.result.score != pytest.approx(alone)
    assert mode != "calibrated" or slice_score.uses_context
    assert float(scores[1]["score"]) == pytest.approx(verdict.result.score, rel=1e-5)
    if mode == "tile":
        assert verdict.result.score == pytest.approx(float(whole.scores.max()))
    sidecar = json.loads((out / "eval.json").read_text())
    assert sidecar["slice_score"]["score_mode"] == slice_score.mode
    assert float(metrics["folders"]["auroc"]) == pytest.approx(
        auroc([0, 0, 1, 1], [float(r["score"]) for r in scores])
    )


def test_mri_images_with_a_ct_model_stop(ct_onnx: Path, tmp_path: Path, capsys):
    folder = tmp_path / "MRI"
    folder.mkdir()
    Image.fromarray(np.full((128, 128), 90, np.uint8)).save(folder / "a.png")
    table = write_csv(
        folder / "MRI_injection.csv", ["path", "x", "y", "type"], [["a.png", 5, 5, "1"]]
    )
    argv = ["eval", "--model", str(ct_onnx), "--csv", str(table), "--out", str(tmp_path / "eval")]
    assert main([*argv, "--label", "tampered=1"]) == 2
    printed = capsys.readouterr().out
    assert "1 of 1 rows point at a PNG/JPEG/TIFF image" in printed and "CT scorer" in printed
    # A TESTSET_DIR holding MRI sets only has nothing for a CT model.
    argv = ["eval", "--model", str(ct_onnx), str(tmp_path), "--out", str(tmp_path.parent / "o")]
    assert main([*argv, "--label", "tampered=1"]) == 2
    assert "no CT test-set CSV" in capsys.readouterr().out


def test_label_options_and_argument_errors(ct_onnx: Path, tmp_path: Path, capsys):
    assert parse_label_options(["tampered= a ,b", "GENUINE=c"]) == {"a": 1, "b": 1, "c": 0}
    for bad in (["fake=a"], ["tampered"], ["tampered=a,"], ["tampered=a", "genuine=a"]):
        with pytest.raises(TestSetError):
            parse_label_options(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["eval", "--model", str(ct_onnx), "--out", str(tmp_path / "out")]
    assert main([*base, "--genuine", str(empty)]) == 2
    assert "--genuine and --tampered go together" in capsys.readouterr().out
    assert main([*base, str(tmp_path / "nowhere")]) == 2
    assert "test-set folder not found" in capsys.readouterr().out
    assert main([*base, str(empty)]) == 2
    assert "no CT test-set CSV" in capsys.readouterr().out
    assert main([*base, "--csv", str(tmp_path / "absent.csv"), *LABELS]) == 2
    assert "cannot read" in capsys.readouterr().out
    inside = ["eval", "--model", str(ct_onnx), str(empty), "--out", str(empty / "out")]
    assert main(inside) == 2
    assert "is inside the input folder" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:  # refused by the argument parser
        main([*base, str(empty), "--batch-size", "0"])
    assert stopped.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_roc_png_draws_each_curve(tmp_path: Path):
    curves = {
        "CTGAN-CT-injection": (np.array([0, 0, 1.0]), np.array([0, 1, 1.0]), 1.0),
        "SD-CT-injection \x1b[31m": (np.array([0, 0.5, 1]), np.array([0, 0.5, 1]), 0.5),
    }
    path = write_roc_png(tmp_path / "roc.png", curves)
    with Image.open(path) as png:
        assert png.size == (640, 640)
        colours = {colour for _, colour in png.convert("RGB").getcolors(640 * 640)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours
    assert not list(tmp_path.glob(".*.tmp"))
