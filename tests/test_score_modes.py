"""Score modes: the paper's whole-tile mean, local windows, and windows calibrated on
genuine tissue; ``btd calibrate`` and ``btd scan --score``."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btd_core.audit.pipeline import scan
from btd_core.engine.scorer import PatchScores, Scorer
from btd_core.findings.ranking import rank
from btd_core.scoring.calibration import Calibration, sidecar_path
from btd_core.scoring.strategy import (
    CalibratedScore,
    LocalScore,
    ScoreModeError,
    ScoreRequest,
    TileScore,
    resolve_slice_score,
)
from btd_core.scoring.tiles import ScanSettings
from btd_core.study.discovery import discover
from tests.study_builder import tree_fingerprint, write_series
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer

SMALL_BLOCK = (236, 300, 12)
"""(x, y, size): a 12 px block of noise inside the brain of the head slice."""


@pytest.fixture(scope="module")
def mixed_study(tmp_path_factory: pytest.TempPathFactory):
    """Abdomen slices (genuine) and head slices, one with a small planted block."""
    root = tmp_path_factory.mktemp("modes") / "study"
    write_series(root / "abdomen", "explicit_VR-UN.dcm", 2, seed=1)
    head = write_series(
        root / "head", "693_UNCI.dcm", 2, planted_index=1, planted_box=SMALL_BLOCK, seed=2
    )
    return root, head.files[1]


class RememberingScorer:
    """The real scorer, remembering each batch it scored: a second scan of the same study
    (another score mode over the same tiles) costs no second pass of the U-Net."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self._seen: dict[tuple[str, bool], PatchScores] = {}
        self.calls = self.misses = 0

    def __getattr__(self, name: str):
        return getattr(self._scorer, name)

    def score(self, patches: np.ndarray, with_residuals: bool = False) -> PatchScores:
        self.calls += 1
        key = (hashlib.sha256(np.ascontiguousarray(patches).tobytes()).hexdigest(), with_residuals)
        if key not in self._seen:
            self.misses += 1
            self._seen[key] = self._scorer.score(patches, with_residuals=with_residuals)
        done = self._seen[key]
        residuals = None if done.residuals is None else done.residuals.copy()
        return PatchScores(scores=done.scores.copy(), residuals=residuals)


@pytest.mark.torch
@pytest.mark.slow  # a high-pass finds the block in either mode: this needs a learned model
def test_small_anomaly_ranks_first_locally_where_the_whole_tile_mean_misses_it(
    mixed_study, trained_ct_onnx: Path
):
    root, planted = mixed_study
    discovery = discover(root)
    scorer = RememberingScorer(Scorer(trained_ct_onnx, provider="cpu"))
    tops = {}
    for mode in (TileScore(), LocalScore()):
        outcome = scan(discovery, scorer, ScanSettings(), slice_score=mode)
        mode = mode.mode
        tops[mode] = rank(outcome.results, discovery)[0]
    assert scorer.misses < scorer.calls  # the second mode scored the same tiles again
    assert tops["tile"].file.path != planted  # tissue, not the block, wins the tile mode
    local = tops["local"]
    assert local.file.path == planted
    x, y, size = SMALL_BLOCK
    wx, wy, wsize = local.result.region
    assert wsize == 24 and wx < x + size and x < wx + wsize and wy < y + size and y < wy + wsize


def test_calibrate_then_scan_calibrated_end_to_end(tmp_path: Path):
    model = write_tiny_scorer(tmp_path / "models" / "tiny.onnx")
    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 6, series_number=1)
    before = tree_fingerprint(genuine)
    btd = [sys.executable, "-m", "btd_core.cli.main"]
    study = tmp_path / "study"
    write_fixed_series(study / "ct", 3, series_number=2, planted_index=1)
    scan_default = [*btd, "scan", str(study), "--model", str(model), "--stride", "16"]
    scan_default += ["--provider", "cpu", "--out"]

    # by default (--score auto), a model without a calibration is scored locally
    uncalibrated = tmp_path / "report-before"
    done = subprocess.run(
        [*scan_default, str(uncalibrated)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "slice score: local" in done.stdout
    assert "btd calibrate --model" in " ".join(done.stdout.split())
    rows = list(csv.DictReader((uncalibrated / "findings.csv").open()))
    assert {row["score_mode"] for row in rows} == {"local"}
    settings = json.loads((uncalibrated / "report.json").read_text())["settings"]
    assert settings["score_mode"] == "local" and settings["calibration"] is None

    done = subprocess.run(
        [*btd, "calibrate", str(genuine), "--model", str(model), "--stride", "16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert tree_fingerprint(genuine) == before  # evidence untouched
    calibration = Calibration.load(sidecar_path(model), Scorer(model, provider="cpu").model_sha256)
    assert calibration.slices == 6 and calibration.windows > 30
    assert calibration.source["modality"] == "ct"

    # once the sidecar is there, the same command runs the calibrated score
    out = tmp_path / "report"
    done = subprocess.run([*scan_default, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "slice score: calibrated (calibration tiny.onnx.calibration.json)" in done.stdout
    rows = list(csv.DictReader((out / "findings.csv").open()))
    assert {row["score_mode"] for row in rows} == {"calibrated"}
    assert all(row["window_size"] == "24" for row in rows)
    assert rows[0]["file"].endswith("s2_002.dcm")  # the planted slice
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["score_mode"] == "calibrated"
    assert settings["calibration"]["file"] == str(sidecar_path(model).resolve())


def test_a_calibration_of_another_model_is_refused(tmp_path: Path):
    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    other = write_tiny_scorer(tmp_path / "other.onnx", patch_size=64)
    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 3)
    from btd_core.audit.calibrate import calibrate_model

    calibrate_model(genuine, other, sidecar_path(model), provider="cpu")
    out = tmp_path / "report"
    command = [sys.executable, "-m", "btd_core.cli.main", "scan", str(genuine)]
    command += ["--model", str(model), "--out", str(out), "--score", "calibrated"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "made for another model" in " ".join(done.stdout.split())
    assert not out.exists()


def test_calibration_output_inside_the_genuine_folder_is_refused(tmp_path: Path):
    from btd_core.audit.calibrate import calibrate_model
    from btd_core.study.evidence import OutputInsideEvidence

    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 2)
    with pytest.raises(OutputInsideEvidence, match="never written into"):
        calibrate_model(genuine, model, genuine / "cal.json", provider="cpu")
    assert not (genuine / "cal.json").exists()


def test_calibrating_a_folder_with_nothing_readable_names_the_files(tmp_path: Path, capsys):
    """A genuine folder of corrupt files (or none) is refused with what was wrong with each,
    not with a count of tissue windows; nothing is written."""
    from btd_core.cli.main import main

    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    genuine = tmp_path / "genuine"
    genuine.mkdir()
    (genuine / "a.dcm").write_bytes(b"DICM garbage")
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(genuine), "--model", str(model), "--out", str(out)]) == 2
    said = " ".join(" ".join(capsys.readouterr()).split())  # rich wraps long lines
    assert "no genuine slice could be scored" in said and "a.dcm: not a valid DICOM file" in said
    (genuine / "a.dcm").unlink()
    assert main(["calibrate", str(genuine), "--model", str(model), "--out", str(out)]) == 2
    assert "(0 files)" in " ".join(" ".join(capsys.readouterr()).split())
    assert not out.exists()


def test_tile_mode_rows_have_no_window(tmp_path: Path):
    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    study = tmp_path / "study"
    write_fixed_series(study / "ct", 2)
    discovery = discover(study)
    scorer = Scorer(model, provider="cpu")
    outcome = scan(discovery, scorer, ScanSettings(stride=32), slice_score=TileScore())
    assert all(r.window_size is None and r.score_mode == "tile" for r in outcome.results)
    assert all(r.region == (r.tile_x, r.tile_y, r.tile_size) for r in outcome.results)
    with pytest.raises(ScoreModeError, match="btd calibrate"):
        resolve_slice_score("calibrated", model_path=model)
    # the library's default is auto: local for a model without a calibration
    outcome = scan(discovery, scorer, ScanSettings(stride=32))
    assert {r.score_mode for r in outcome.results} == {"local"}


@pytest.mark.parametrize("command", ["scan", "calibrate"])
def test_a_missing_model_is_named_before_the_study_is_walked(tmp_path: Path, command: str):
    study = tmp_path / "study"
    write_fixed_series(study / "ct", 1)
    args = [sys.executable, "-m", "btd_core.cli.main", command, str(study)]
    args += ["--model", str(tmp_path / "absent.onnx")]
    args += ["--out", str(tmp_path / "out")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no such model file" in " ".join(done.stdout.split())
    assert not (tmp_path / "out").exists()


def test_auto_mode_refuses_a_sidecar_of_another_model(tmp_path: Path):
    """``auto`` never steps down to ``local`` past a calibration that is there but foreign."""
    from btd_core.audit.calibrate import calibrate_model

    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    other = write_tiny_scorer(tmp_path / "other.onnx", patch_size=64)
    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 3)
    sha = Scorer(model, provider="cpu").model_sha256
    auto = ScoreRequest()
    settled = auto.resolve(model, sha)
    assert settled == LocalScore() and settled.record()["calibration"] is None
    with pytest.raises(ScoreModeError, match="btd calibrate"):  # a named file must exist
        ScoreRequest(calibration_path=tmp_path / "missing.json").resolve(model, sha)
    calibrate_model(genuine, other, sidecar_path(model), provider="cpu")
    with pytest.raises(ScoreModeError, match="made for another model"):
        auto.resolve(model, sha)
    calibrate_model(genuine, model, provider="cpu")
    settled = auto.resolve(model, sha)
    assert isinstance(settled, CalibratedScore) and settled.mode == "calibrated"
    assert settled.calibration_path == sidecar_path(model)
    recorded = settled.record()["calibration"]  # the bytes it read, hashed once
    assert recorded["sha256"] == hashlib.sha256(sidecar_path(model).read_bytes()).hexdigest()
    assert ScoreRequest("tile").resolve(model, sha) == TileScore()


def test_a_calibration_made_for_another_window_is_refused(tmp_path: Path):
    """A calibration records its window and step; a scan with other windows refuses it,
    and without --window the scan takes the calibration's own."""
    from btd_core.audit.calibrate import calibrate_model

    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 3)
    sha = Scorer(model, provider="cpu").model_sha256
    calibrate_model(genuine, model, provider="cpu", window=16)
    settled = ScoreRequest().resolve(model, sha)
    assert (settled.mode, settled.window, settled.window_stride) == ("calibrated", 16, 8)
    with pytest.raises(ScoreModeError, match="--window 16"):
        ScoreRequest(window=24).resolve(model, sha)
    with pytest.raises(ScoreModeError, match="16 px windows every 8 px"):
        ScoreRequest("calibrated", window=16, window_stride=4).resolve(model, sha)
    study = tmp_path / "study"
    write_fixed_series(study / "ct", 1, series_number=2)
    out = tmp_path / "report"
    command = [sys.executable, "-m", "btd_core.cli.main", "scan", str(study), "--model"]
    command += [str(model), "--out", str(out), "--window", "32", "--provider", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "btd calibrate --window 32" in " ".join(done.stdout.split())
    assert not out.exists()
