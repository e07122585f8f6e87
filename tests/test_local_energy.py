"""Local windows of residual energy, the median-filter baseline, and tissue calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from btd_core.evaluation.metrics import auroc
from btd_core.scoring.calibration import (
    MIN_WINDOWS,
    Calibration,
    CalibrationError,
    fit_calibration,
    sidecar_path,
)
from btd_core.scoring.windows import box_means, local_windows, median_residual
from btd_core.slices.body import body_region


@pytest.mark.parametrize(
    ("shape", "window", "stride"),
    [((40, 50), 8, 4), ((40, 50), 7, 3), ((10, 12), 24, 12), ((33, 33), 33, 5)],
)
def test_box_means_equal_brute_force(shape, window, stride):
    values = np.random.default_rng(1).normal(size=shape)
    means, ys, xs = box_means(values, window, stride)
    assert means.shape == (len(ys), len(xs))
    wy, wx = min(window, shape[0]), min(window, shape[1])
    assert ys[-1] + wy == shape[0] and xs[-1] + wx == shape[1]  # flush with the edge
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            assert means[i, j] == pytest.approx(values[y : y + wy, x : x + wx].mean(), abs=1e-9)


def test_the_worst_window_sits_on_the_hot_spot_and_unscored_pixels_do_not_count():
    image = np.full((128, 128), 0.3, np.float32)
    image[:, :40] = 0.0  # air on the left
    energy = np.full((128, 128), 1e-4, np.float32)
    energy[60:76, 80:96] = 5e-3  # a 16 px hot spot
    energy[:, :40] = 0.0  # air
    covered = np.ones((128, 128), bool)
    covered[100:, 100:] = False
    energy[110:, 110:] = 1.0  # nor pixels no tile measured
    body = body_region(image)
    assert body[:, 40:].all() and not body[:, :40].any()
    windows = local_windows(image, energy, covered, window=24, stride=8, body=body)
    score, x, y = windows.worst(windows.energy)
    assert x <= 80 and x + 24 >= 96 and y <= 60 and y + 24 >= 76
    assert score == pytest.approx((16 * 16 * 5e-3 + (24 * 24 - 256) * 1e-4) / (24 * 24))
    air = [j for j, x in enumerate(windows.xs) if x < 40]
    assert air and not windows.valid[:, air].any()  # windows reaching into air do not count
    near_edge = [i for i, y in enumerate(windows.ys) if y < 16 or y + 24 > 128 - 16]
    assert near_edge and not windows.valid[near_edge].any()  # nor do the image's edges
    unscored = [i for i, y in enumerate(windows.ys) if y + 24 > 100]
    assert not windows.valid[
        np.ix_(unscored, [j for j, x in enumerate(windows.xs) if x + 24 > 100])
    ].any()


def test_no_valid_window_gives_no_worst():
    image = np.zeros((64, 64), np.float32)
    windows = local_windows(
        image, np.ones_like(image), np.ones((64, 64), bool), body=body_region(image)
    )
    assert windows.worst(windows.energy) is None


def test_median_residual_is_zero_on_smooth_images_and_finds_a_spike():
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    assert np.abs(median_residual(ramp)).max() < 1e-6
    spiky = ramp.copy()
    spiky[10, 10] += 0.5
    residual = median_residual(spiky)
    assert residual[10, 10] == pytest.approx(0.5, abs=0.05)
    assert np.unravel_index(np.argmax(np.abs(residual)), residual.shape) == (10, 10)


def genuine_windows(count: int, seed: int):
    """Synthetic genuine tissue: soft tissue (0.3) leaves 10x the energy of lung (0.05)."""
    rng = np.random.default_rng(seed)
    lung = rng.random(count) < 0.5
    intensity = np.where(lung, 0.05, 0.3) + rng.normal(0, 0.01, count)
    texture = rng.uniform(0.01, 0.1, count)
    energy = np.where(lung, 1e-4, 1e-3) * np.exp(rng.normal(0, 0.3, count))
    return energy, intensity, texture, lung


def test_calibration_makes_tissue_types_comparable_and_tampering_stand_out():
    energy, intensity, texture, _ = genuine_windows(4000, seed=0)
    calibration = fit_calibration(
        energy, intensity, texture, model_sha256="a" * 64, window=24, stride=12, slices=10
    )
    test_energy, test_intensity, test_texture, test_lung = genuine_windows(2000, seed=1)
    z = calibration.surprise(test_energy, test_intensity, test_texture)
    # raw energy ranks soft tissue above lung; the calibrated surprise does not
    assert auroc(~test_lung, test_energy) > 0.99
    assert 0.4 < auroc(~test_lung, z) < 0.6
    assert abs(np.median(z)) < 0.15 and 0.8 < np.std(z) < 1.3
    # a lung window with 5x its tissue's typical energy beats every genuine soft-tissue window
    tampered = calibration.surprise(np.array([5e-4]), np.array([0.05]), np.array([0.05]))
    assert tampered[0] > np.quantile(z[~test_lung], 0.99)


def test_calibration_round_trips_and_belongs_to_one_model(tmp_path: Path):
    energy, intensity, texture, _ = genuine_windows(500, seed=2)
    calibration = fit_calibration(
        energy, intensity, texture, model_sha256="b" * 64, window=24, stride=12, slices=3,
        source={"folder": "genuine"},
    )  # fmt: skip
    path = sidecar_path(tmp_path / "ct.onnx")
    assert path.name == "ct.onnx.calibration.json"
    calibration.save(path)
    loaded = Calibration.load(path, model_sha256="b" * 64)
    assert loaded == calibration
    assert np.array_equal(
        loaded.surprise(energy, intensity, texture),
        calibration.surprise(energy, intensity, texture),
    )
    with pytest.raises(CalibrationError, match="another model"):
        Calibration.load(path, model_sha256="c" * 64)


@pytest.mark.parametrize(
    "content", ["", "{", "[1, 2]", json.dumps({"format_name": "other"}), "\x00\xff"]
)
def test_unusable_calibration_files_are_refused_clearly(tmp_path: Path, content: str):
    path = tmp_path / "x.calibration.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(CalibrationError):
        Calibration.load(path)


def test_too_few_genuine_windows_is_an_error():
    energy, intensity, texture, _ = genuine_windows(MIN_WINDOWS - 1, seed=3)
    with pytest.raises(CalibrationError, match="at least"):
        fit_calibration(
            energy, intensity, texture, model_sha256="d" * 64, window=24, stride=12, slices=1
        )
