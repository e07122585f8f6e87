"""Body coverage: the body's tiles through the model in one pass, cut into the same tiles.

The passes are checked exactly with a local operator: the test scorer is a 3 x 3
high-pass, whose residual inside a large pass equals each tile's own except on the
tiles' one-pixel borders, which the heat map leaves out.  So on real CT slices, body
coverage must give the patch coverage's heat map, windows and ranking (what a trained
U-Net changes inside a pass is measured by benchmarks/bench_detection.py, not here).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btd_core.engine.scorer import Scorer, ScorerInputError
from btd_core.scoring.calibration import FORMAT_VERSION
from btd_core.scoring.strategy import LocalScore
from btd_core.scoring.tiles import (
    CoverageError,
    ScanSettings,
    TileSet,
    cut_tiles,
    score_image,
    select_tiles,
)
from btd_core.slices.regions import plan_regions, region_inputs, stitch
from tests.onnx_scorer import build_scorer, scorer_card
from tests.support.fixed_study import write_fixed_series
from tests.support.real_ct import real_ct_slice

BTD = [sys.executable, "-m", "btd_core.cli.main"]


@pytest.fixture(scope="module")
def free_scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    """The test high-pass with free sides (multiples of 8), as btd-export writes them."""
    path = tmp_path_factory.mktemp("free") / "free.onnx"
    return Scorer(build_scorer(path, side_multiple=8), provider="cpu")


@pytest.mark.parametrize(
    ("box", "shape", "max_side"),
    [
        ((40, 470, 12, 500), (512, 512), 512),  # one pass, rounded up inside the image
        ((0, 96, 0, 96), (60, 70), 512),  # a slice smaller than a tile: zero-padded
        ((24, 500, 0, 512), (512, 512), 160),  # split: passes overlap by twice the margin
        ((0, 300, 10, 1000), (300, 1010), 256),
    ],
)
def test_passes_cover_the_box_and_stitch_back_exactly(box, shape, max_side):
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    plan = plan_regions(box, shape, multiple=8, margin=24, max_side=max_side)
    assert plan.height % 8 == 0 and plan.width % 8 == 0
    assert plan.height <= max(max_side, 96) and plan.width <= max(max_side, 96)
    inputs = region_inputs(image, plan)
    assert inputs.shape == (len(plan.origins), plan.height, plan.width)
    # a pass whose "residual" is its input stitches back to the image over the box
    field, (top, left) = stitch(plan, inputs)
    padded = np.zeros((box[1], box[3]), np.float32)
    padded[: min(shape[0], box[1]), : min(shape[1], box[3])] = image[: box[1], : box[3]]
    np.testing.assert_array_equal(field, padded[box[0] :, box[2] :])
    assert (top, left) == (box[0], box[2])


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "explicit_VR-UN.dcm"])
def test_body_coverage_equals_patch_coverage_for_a_local_operator(free_scorer, name):
    image = real_ct_slice(name)
    body = score_image(image, free_scorer, ScanSettings(tiles="body"))
    patch = score_image(image, free_scorer, ScanSettings(tiles="patch"))
    assert body.passes is not None and len(body.passes.origins) == 1
    assert patch.passes is None and body.origins == patch.origins
    np.testing.assert_allclose(
        body.heat_map(image.shape), patch.heat_map(image.shape), rtol=1e-5, atol=1e-9
    )
    local = LocalScore()
    a, b = local.judge("s", 0, image, body), local.judge("s", 0, image, patch)
    assert a is not None and b is not None
    assert (a.result.window_x, a.result.window_y) == (b.result.window_x, b.result.window_y)
    assert a.result.score == pytest.approx(b.result.score, rel=1e-5)


def test_a_split_slice_stitches_to_the_same_heat_map(free_scorer):
    """A slice larger than one pass allows: several passes, the same heat map."""
    image = real_ct_slice("693_UNCI.dcm")
    settings = ScanSettings(tiles="body")
    whole = score_image(image, free_scorer, settings)
    tile_set = select_tiles(image, 96, settings, side_multiple=8)
    assert tile_set.passes is not None
    plan = plan_regions(tile_set.passes.box, image.shape, 8, margin=24, max_side=160)
    assert len(plan.origins) > 4
    split = TileSet(
        tile_set.origins, region_inputs(image, plan), tile_set.tiles_skipped, 96, 48,
        tile_set.body, plan,
    )  # fmt: skip
    scored = free_scorer.score(split.tiles, with_residuals=True).residuals
    cut = cut_tiles(split, scored, "mean_sq")
    np.testing.assert_allclose(
        cut.heat_map(image.shape), whole.heat_map(image.shape), rtol=1e-5, atol=1e-9
    )


def test_a_fixed_size_model_takes_only_its_patches(tmp_path: Path):
    fixed = Scorer(build_scorer(tmp_path / "fixed.onnx"), provider="cpu")
    assert fixed.card.side_multiple == 0 and not fixed.accepts(160, 224)
    with pytest.raises(ScorerInputError, match=r"\[N, 96, 96\]"):
        fixed.score(np.zeros((1, 160, 224), np.float32))
    image = real_ct_slice()
    assert score_image(image, fixed, ScanSettings()).passes is None  # auto: patch
    with pytest.raises(CoverageError, match="body coverage needs"):
        score_image(image, fixed, ScanSettings(tiles="body"))
    free = scorer_card(side_multiple=8)
    assert ScanSettings().resolved(fixed.card, None).tiles == "patch"
    assert ScanSettings().resolved(free, None).tiles == "body"
    # auto follows the calibration; the paper's single patch is always patch
    assert ScanSettings().resolved(free, "patch").tiles == "patch"
    assert ScanSettings(tiles="body", patch_at=(9, 9)).resolved(fixed.card, None).tiles == "patch"
    with pytest.raises(CoverageError, match="export it again"):
        ScanSettings().resolved(fixed.card, "body")
    with pytest.raises(CoverageError, match="calibrate again"):
        ScanSettings(tiles="patch").resolved(free, "body")


def _scan(study: Path, model: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [*BTD, "scan", str(study), "--model", str(model), "--provider", "cpu"]
    return subprocess.run(
        [*command, "--out", str(out), *flags], capture_output=True, text=True, timeout=300
    )


def test_scan_records_its_coverage_and_a_calibration_keeps_its_own(tmp_path: Path):
    model = build_scorer(tmp_path / "models" / "free.onnx", side_multiple=8)
    study = tmp_path / "study"
    write_fixed_series(study / "ct", 3, planted_index=1)

    body, patch = tmp_path / "body", tmp_path / "patch"
    assert _scan(study, model, body).returncode == 0
    assert _scan(study, model, patch, "--tiles", "patch").returncode == 0
    for out, tiles in ((body, "body"), (patch, "patch")):
        settings = json.loads((out / "report.json").read_text())["settings"]
        assert settings["tiles"] == tiles and settings["model_side_multiple"] == 8
        assert settings["tiles_meaning"].startswith("the region" if tiles == "body" else "each")
    # the local operator finds the same planted slice and window both ways
    first = [(out / "findings.csv").read_text().splitlines()[1].split(",") for out in (body, patch)]
    assert first[0][9] == first[1][9] == "1"  # slice_index of rank 1

    genuine = tmp_path / "genuine"
    write_fixed_series(genuine / "ct", 4, series_number=3)
    done = subprocess.run(
        [*BTD, "calibrate", str(genuine), "--model", str(model), "--tiles", "patch"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    calibration = json.loads(model.with_name("free.onnx.calibration.json").read_text())
    assert calibration["tiles"] == "patch" and calibration["format_version"] == FORMAT_VERSION
    # auto follows the calibration; asking for another coverage is refused, and says why
    followed = tmp_path / "followed"
    assert _scan(study, model, followed).returncode == 0
    assert json.loads((followed / "report.json").read_text())["settings"]["tiles"] == "patch"
    refused = _scan(study, model, tmp_path / "refused", "--tiles", "body")
    assert refused.returncode == 2
    assert "calibration was made with --tiles patch" in " ".join(refused.stdout.split())
    assert not (tmp_path / "refused" / "findings.csv").exists()
