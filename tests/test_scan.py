"""btd scan end to end on real DICOM studies: ranking, hostile files, evidence untouched."""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btd_core.audit.pipeline import ScanSettings
from btd_core.audit.scan_config import ScanConfig
from btd_core.audit.study_audit import audit_study
from btd_core.cli.main import main as btd_main
from btd_core.study.evidence import OutputInsideEvidence
from tests.study_builder import tree_fingerprint, write_series


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def planted_study(tmp_path_factory: pytest.TempPathFactory):
    """Two real CT series (head and abdomen, 512 x 512); one abdomen slice has a noise block."""
    root = tmp_path_factory.mktemp("study")
    head = write_series(root / "head", "693_UNCI.dcm", 3, seed=1)
    abdomen = write_series(
        root / "abdomen", "explicit_VR-UN.dcm", 4, planted_index=2, planted_box=(220, 280, 40)
    )
    return root, head, abdomen


LEARNED = pytest.param("trained_ct_onnx", marks=[pytest.mark.slow, pytest.mark.torch])
"""The briefly trained U-Net, exported by btd-export: the same ranking from a learned model."""
CPU = ScanConfig(provider="cpu")
"""The scan configuration of these tests: btd scan's defaults on the CPU."""


@pytest.mark.parametrize("model", ["ct_onnx", LEARNED])
def test_planted_anomaly_ranks_first(planted_study, model: str, request, tmp_path: Path):
    root, _, abdomen = planted_study
    before = tree_fingerprint(root)
    model_path = request.getfixturevalue(model)
    result = audit_study(root, model_path, tmp_path / "report", CPU)
    assert tree_fingerprint(root) == before
    assert len(result.findings) == 7 and result.files_failed == 0
    top = result.findings[0]
    assert top.series.series_uid == abdomen.series_uid
    assert top.result.slice_index == abdomen.planted_index
    assert top.file.path == abdomen.files[abdomen.planted_index]
    x, y, size = abdomen.planted_box
    tile = top.result
    assert tile.tile_x <= x and x + size <= tile.tile_x + tile.tile_size
    assert tile.tile_y <= y and y + size <= tile.tile_y + tile.tile_size
    # slices come back in position order although files and InstanceNumbers are shuffled
    for series, built in ((top.series, abdomen),):
        assert [ref.path for ref in series.slices] == built.files
        assert series.ordering == "slice normal"
    rows = read_csv(result.report.findings_csv)
    assert rows[0]["rank"] == "1" and rows[0]["series_uid"] == abdomen.series_uid
    assert rows[0]["file"] == str(top.file.relpath)
    assert float(rows[0]["score"]) == pytest.approx(top.result.score)
    sidecar = json.loads(result.report.sidecar_json.read_text())
    assert sidecar["provider"]["in_use"] == "CPUExecutionProvider"
    assert sidecar["settings"]["stride_px"] == 48
    assert "overlays/rank001.png" in sidecar["report_files"]
    assert (tmp_path / "report" / "overlays" / "rank001.png").stat().st_size > 1000


def test_papers_mode_scores_one_patch_per_slice(planted_study, ct_onnx, tmp_path):
    root, _, abdomen = planted_study
    x, y, size = abdomen.planted_box
    settings = ScanSettings(patch_at=(x + size // 2, y + size // 2))
    result = audit_study(root, ct_onnx, tmp_path / "r", ScanConfig("cpu", settings=settings))
    assert all(f.result.tiles_scored == 1 for f in result.findings)
    assert result.findings[0].file.path == abdomen.files[abdomen.planted_index]
    assert result.outcome.tiles_skipped == 0


def test_report_inside_the_study_is_refused(planted_study, ct_onnx, capsys):
    root, _, _ = planted_study
    before = tree_fingerprint(root)
    with pytest.raises(OutputInsideEvidence, match="inside the study"):
        audit_study(root, ct_onnx, root / "head" / "report")
    code = btd_main(["scan", str(root), "--model", str(ct_onnx), "--out", str(root / "r")])
    assert code == 2 and "inside the study" in capsys.readouterr().out
    assert tree_fingerprint(root) == before


def test_modality_that_does_not_fit_is_reported_not_scored(tmp_path, ct_onnx):
    study = tmp_path / "study"
    write_series(study / "ct", "CT_small.dcm", 2)
    mr = write_series(study / "mr", "CT_small.dcm", 2, modality="MR")
    result = audit_study(study, ct_onnx, tmp_path / "out", CPU)
    assert len(result.findings) == 2
    by_path = {f.path: f for f in result.discovery.files}
    for path in mr.files:
        assert by_path[path].status == "skipped"
        assert "modality MR does not fit the CT model" in by_path[path].reason


def test_hostile_study(tmp_path: Path, ct_onnx: Path, capsys):
    study = tmp_path / "study"
    good = write_series(study / "good", "CT_small.dcm", 3)
    bad = study / "bad"
    bad.mkdir()
    source = good.files[0].read_bytes()
    (bad / "truncated.dcm").write_bytes(source[: len(source) - 5000])
    (bad / "notes.dcm").write_text("this is not DICOM\n")
    (bad / "noise.dcm").write_bytes(random.Random(0).randbytes(3000))
    (bad / "empty.dcm").write_bytes(b"")
    import pydicom

    no_pixels = pydicom.dcmread(good.files[1])
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = no_pixels.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    no_pixels.save_as(bad / "no_pixels.dcm")
    os.symlink("loop_b", bad / "loop_a")
    os.symlink("loop_a", bad / "loop_b")
    (bad / "name [bold red]=cmd|' '!A1.dcm").write_bytes(b"DICM")
    before = tree_fingerprint(study)

    out = tmp_path / "report"
    code = btd_main(["scan", str(study), "--model", str(ct_onnx), "--out", str(out), "--no-phi"])
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert tree_fingerprint(study) == before
    files = {row["file"]: row for row in read_csv(out / "files.csv")}
    for path in good.files:
        assert files[str(path.relative_to(study))]["status"] == "scored"
    broken = [name for name in files if name.startswith("bad/")]
    assert len(broken) == 8
    for name in broken:
        assert files[name]["status"] in {"error", "skipped"}, name
        assert files[name]["reason"], name
    for name in ("truncated.dcm", "notes.dcm", "noise.dcm", "empty.dcm", "no_pixels.dcm"):
        assert files[f"bad/{name}"]["status"] == "error", files[f"bad/{name}"]
    assert "loop" in files["bad/loop_a"]["reason"]
    findings = read_csv(out / "findings.csv")
    assert len(findings) == 3
    assert "patient_name" not in findings[0]
    hostile = next(name for name in files if "bold" in name)
    assert hostile.startswith("bad/name [bold red]")  # kept literally, not a formula at the start
    assert "error: bad/truncated.dcm" in printed


def test_cancel_stops_early_and_says_so(tmp_path: Path, ct_onnx: Path):
    study = tmp_path / "study"
    write_series(study, "CT_small.dcm", 5)
    done = []  # should_stop is asked during discovery too: stop after two scored slices
    result = audit_study(
        study,
        ct_onnx,
        tmp_path / "out",
        CPU,
        on_progress=done.append,
        should_stop=lambda: len(done) >= 2,
    )
    assert result.outcome.cancelled
    assert len(result.findings) == 2
    statuses = sorted(f.status for f in result.discovery.files)
    assert statuses == ["scored", "scored", "skipped", "skipped", "skipped"]
    sidecar = json.loads(result.report.sidecar_json.read_text())
    assert sidecar["settings"]["cancelled"] is True


@pytest.fixture(scope="module")
def ct_scorer(ct_onnx: Path):
    from btd_core.engine.scorer import Scorer

    return Scorer(ct_onnx, provider="cpu")


_MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=16),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_fuzzed_dicom_never_escapes_discovery_and_scoring(ct_scorer, mutations):
    """Mutated real DICOM bytes: the file is scored or an error/skip row; nothing escapes."""
    from pydicom.data import get_testdata_file

    from btd_core.audit.pipeline import scan
    from btd_core.study.discovery import discover

    data = bytearray(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    for kind, where, payload in mutations:
        at = int(where * len(data))
        if kind == "flip":
            data[at : at + len(payload)] = bytes(b ^ 0xFF for b in payload)[: len(data) - at]
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "delete":
            del data[at : at + len(payload)]
        else:
            del data[at:]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mutated.dcm").write_bytes(bytes(data))
        discovery = discover(root)
        outcome = scan(discovery, ct_scorer, ScanSettings(stride=96, overlays=1))
        (record,) = discovery.files
        assert record.status in {"scored", "error", "skipped"}
        if record.status == "scored":
            assert len(outcome.results) + outcome.background_slices >= 1
        else:
            assert record.reason


def test_npy_png_and_enhanced_multiframe_series(tmp_path: Path, ct_onnx: Path):
    """A .npy volume (HU), a PNG stack and an enhanced CT file are series like any other."""
    import shutil

    import numpy as np
    from PIL import Image
    from pydicom.data import get_testdata_file

    from tests.support.real_ct import real_ct_slice

    study = tmp_path / "study"
    (study / "png").mkdir(parents=True)
    image = real_ct_slice("693_UNCI.dcm")[200:328, 200:328]
    for i in range(2):
        Image.fromarray((image * 255).astype(np.uint8)).save(study / "png" / f"slice{i + 9}.png")
    hu = image[None].repeat(3, axis=0) * 2700 - 700
    np.save(study / "volume.npy", hu.astype(np.int16))
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm"), study / "enhanced.dcm")
    out = tmp_path / "out"
    result = audit_study(study, ct_onnx, out, ScanConfig("cpu", settings=ScanSettings(stride=96)))
    assert result.files_failed == 0
    kinds = {s.kind: len(s.slices) for s in result.discovery.series}
    assert kinds == {"image": 2, "npy": 3, "dicom": 2}
    assert len(result.findings) + result.outcome.background_slices == 7
    rows = read_csv(result.report.findings_csv)
    frames = sorted(r["frame"] for r in rows if r["file"] == "enhanced.dcm")
    assert frames == ["0", "1"]
    assert {r["file"] for r in rows} >= {"png/slice9.png", "png/slice10.png", "volume.npy"}


def test_resume_scores_only_what_is_left_and_previews_match(tmp_path: Path, ct_scorer):
    from btd_core.audit.pipeline import scan
    from btd_core.scoring.strategy import LocalScore
    from btd_core.scoring.tiles import view_slice
    from btd_core.study.discovery import discover

    study = tmp_path / "study"
    write_series(study, "CT_small.dcm", 4)
    settings = ScanSettings(stride=96)
    seen = []
    first = scan(
        discover(study),
        ct_scorer,
        settings,
        on_progress=lambda p: seen.append(p.result),
        should_stop=lambda: len(seen) >= 2,
    )
    assert first.cancelled and [r.slice_index for r in seen] == [0, 1]
    done = {(r.series_key, r.slice_index) for r in first.results}
    discovery = discover(study)
    second = scan(discovery, ct_scorer, settings, skip=done)
    assert not second.cancelled and second.slices_done == 4
    assert sorted(r.slice_index for r in second.results) == [2, 3]
    assert all(f.status == "scored" for f in discovery.files)
    series = discovery.series[0]
    view, scores = view_slice(series, 2, ct_scorer, settings)
    verdict = LocalScore().judge(series.key, 2, view.image, scores)  # the default: auto
    assert verdict is not None
    assert verdict.result == next(r for r in second.results if r.slice_index == 2)
    assert view.heat.shape == view.image.shape == (128, 128) and view.heat.max() > 0


def test_printable_escapes_terminal_control_text():
    from btd_core.safe_text import printable

    assert printable("Doe^John") == "Doe^John"
    assert printable("[bold red]x[/]") == "[bold red]x[/]"
    hostile = "A\x1b[2J\x1b]0;pwned\x07B\rC\x9bD"
    shown = printable(hostile)
    assert shown.isprintable() and "\x1b" not in shown and "\\x1b[2J" in shown


def test_relative_report_folder(tmp_path: Path, ct_onnx: Path, monkeypatch):
    """``btd scan --out report`` from the current folder, as a user types it."""
    study = tmp_path / "study"
    write_series(study, "CT_small.dcm", 2)
    monkeypatch.chdir(tmp_path)
    args = ["scan", "study", "--model", str(ct_onnx), "--out", "report", "--stride", "96"]
    assert btd_main(args) == 0
    sidecar = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "overlays/rank001.png" in sidecar["report_files"]
    assert (tmp_path / "report" / "overlays" / "rank001.png").exists()


def test_wrong_model_and_empty_folder_give_clear_messages(tmp_path: Path, ct_onnx: Path, capsys):
    (tmp_path / "empty").mkdir()
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("x")
    code = btd_main(
        ["scan", str(tmp_path / "empty"), "--model", str(bogus), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "not a readable ONNX model" in capsys.readouterr().out
    code = btd_main(
        ["scan", str(tmp_path / "empty"), "--model", str(ct_onnx), "--out", str(tmp_path / "r")]
    )
    assert code == 1 and "no files" in capsys.readouterr().out
