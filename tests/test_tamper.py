"""btd tamper: labelled test sets and tampered studies from real genuine slices."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from btd_core.cli.main import main as btd_main
from btd_core.slices.profiles import CT
from btd_core.study.discovery import discover
from btd_core.study.pixels import read_slice
from btd_core.tamper.copy_move import copy_move, round_mask
from tests.study_builder import write_series


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genuine")
    write_series(root / "chest", "CT_small.dcm", 2)
    write_series(root / "abdomen", "explicit_VR-UN.dcm", 1)
    return root


def test_round_mask_is_feathered():
    mask = round_mask((21, 21), 10, 10, radius=4, feather=2)
    assert mask[10, 10] == 1 and mask[10, 14] == 1 and mask[10, 15] == 0.5 and mask[10, 17] == 0
    assert mask[0, 0] == 0


def test_copy_move_changes_only_the_masked_region(genuine: Path):
    series = discover(genuine).series[0]
    values = read_slice(series, series.slices[0])
    rng = np.random.default_rng(0)
    for kind in ("injection", "removal"):
        done = copy_move(values, kind, x=64, y=64, radius=10, rng=rng)
        changed = np.abs(done.values - values) > 1e-3
        assert changed.any(), kind
        assert not changed[done.mask == 0].any(), kind
        assert done.values.shape == values.shape


def test_test_set_layout_and_labels(genuine: Path, tmp_path: Path):
    out = tmp_path / "set"
    code = btd_main(["tamper", str(genuine), "--out", str(out), "--per-set", "2", "--seed", "3"])
    assert code == 0
    rows = list(csv.DictReader((out / "tamper.csv").open()))
    assert len(rows) == 8
    assert {r["set"] for r in rows} == {"copy-move-injection", "copy-move-removal"}
    for tampered, original in zip(rows[::2], rows[1::2], strict=True):
        assert (tampered["type"], original["type"]) == ("tampered", "genuine")
        assert (tampered["x"], tampered["y"]) == (original["x"], original["y"])
        a, b = np.load(out / tampered["path"]), np.load(out / original["path"])
        mask = np.load(out / "masks" / tampered["set"] / Path(tampered["path"]).name)
        changed = np.abs(a - b) > 1e-3
        assert changed.any() and mask[changed].all()
        x, y = int(tampered["x"]), int(tampered["y"])
        assert mask[y, x]


def test_diffusion_inpainting_uses_the_model(genuine: Path, tmp_path: Path, upstream_checkpoint):
    out = tmp_path / "set"
    code = btd_main(
        [
            "tamper",
            str(genuine),
            "--out",
            str(out),
            "--per-set",
            "1",
            "--methods",
            "diffusion",
            "--checkpoint",
            str(upstream_checkpoint),
            "--kinds",
            "injection",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader((out / "tamper.csv").open()))
    assert [r["set"] for r in rows] == ["diffusion-injection"] * 2
    a, b = np.load(out / rows[0]["path"]), np.load(out / rows[1]["path"])
    assert (np.abs(a - b) > 1).sum() > 50
    assert btd_main(["tamper", str(genuine), "--out", str(out), "--methods", "diffusion"]) == 2


def test_tampered_study_keeps_uids_and_says_where(genuine: Path, tmp_path: Path):
    import pydicom

    from btd_core.tamper.labelled_set import tamper_study

    series = next(s for s in discover(genuine).series if s.rows == 128)
    out = tmp_path / "study"
    truth = tamper_study(series, genuine, out, [(1, "copy-move", "injection")], CT, radius=10)
    rows = list(csv.DictReader(truth.open()))
    assert len(rows) == 1 and rows[0]["slice_index"] == "1"
    copied = discover(out).series[0]
    assert [r.sop_instance_uid for r in copied.slices] == [
        r.sop_instance_uid for r in series.slices
    ]
    before = read_slice(series, series.slices[1])
    after = read_slice(copied, copied.slices[1])
    assert np.abs(after - before).max() > 10
    np.testing.assert_array_equal(
        read_slice(copied, copied.slices[0]), read_slice(series, series.slices[0])
    )
    assert (
        pydicom.dcmread(copied.slices[1].path).SOPInstanceUID == series.slices[1].sop_instance_uid
    )


def test_tamper_output_round_trips_through_eval(genuine: Path, tmp_path: Path, ct_onnx: Path):
    """btd tamper's CSV is read by btd eval as it is: every row scored, one metric per set."""
    from btd_core.evaluation.metrics import auroc

    out = tmp_path / "set"
    assert btd_main(["tamper", str(genuine), "--out", str(out), "--per-set", "3"]) == 0
    report = tmp_path / "eval"
    code = btd_main(
        [
            "eval",
            "--model",
            str(ct_onnx),
            "--csv",
            str(out / "tamper.csv"),
            "--out",
            str(report),
            "--label",
            "tampered=tampered",
            "--label",
            "genuine=genuine",
            "--provider",
            "cpu",
        ]
    )
    assert code == 0
    scores = list(csv.DictReader((report / "scores.csv").open()))
    assert len(scores) == 12 and all(r["status"] == "ok" for r in scores)
    metrics = {r["set"]: r for r in csv.DictReader((report / "metrics.csv").open())}
    assert {"copy-move-injection", "copy-move-removal"} <= set(metrics)
    for name in ("copy-move-injection", "copy-move-removal"):
        rows = [r for r in scores if r["set"] == name]
        labels = [int(r["label"]) for r in rows]
        values = [float(r["score"]) for r in rows]
        assert float(metrics[name]["auroc"]) == pytest.approx(auroc(labels, values))
