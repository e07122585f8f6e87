"""Helpers for the TUI tests (a tiny deterministic scorer, fixed studies, screen text),
and the tests that check the helpers themselves are deterministic."""

from __future__ import annotations

import asyncio
import copy
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from btd_core.engine.model_card import ModelCard
from btd_core.hashing import file_sha256
from tests.onnx_scorer import build_scorer
from tests.study_builder import read_source
from tests.test_model_card import make_card

UID_ROOT = "1.2.826.0.1.3680043.10.999"
"""Fixed UIDs for deterministic studies (snapshots)."""


def tiny_card(patch_size: int = 96) -> ModelCard:
    """A fixed CT model card (no timestamps or hashes that change between runs)."""
    return make_card(
        patch_size=patch_size,
        beta_0=0.0003,
        sqrt_recip_alphas_cumprod_0=1.00015,
        sqrt_recipm1_alphas_cumprod_0=0.017331,
        source_name="tiny.pt",
        source_sha256="5e" * 32,
        source_step=1,
        torch_version="none",
        exported_at="2026-01-01T00:00:00+00:00",
    )


def write_tiny_scorer(path: Path, patch_size: int = 96) -> Path:
    """The TUI snapshots' scorer: the test high-pass of ``tests/onnx_scorer.py`` on ``x``
    itself (residual = x - 3x3 mean of x, score = mean of residual^2) with the fixed
    :func:`tiny_card`. Same bytes and the same scores on every run."""
    pytest.importorskip("onnx")
    return build_scorer(path, card=tiny_card(patch_size), normalise=False)


def write_fixed_series(
    folder: Path,
    count: int,
    *,
    series_number: int = 1,
    source: str = "CT_small.dcm",
    description: str | None = None,
    patient_name: str | None = None,
    planted_index: int | None = None,
    planted_box: tuple[int, int, int] = (40, 40, 24),
) -> list[Path]:
    """``count`` slices of ``source`` with fixed UIDs and names ``s<series>_<n>.dcm``; one slice
    may get a block of uniform noise (HU 0..1000). Same bytes on every run."""
    folder.mkdir(parents=True, exist_ok=True)
    base = read_source(source)
    study_uid = f"{UID_ROOT}.1"
    series_uid = f"{UID_ROOT}.1.{series_number}"
    origin = [float(v) for v in getattr(base, "ImagePositionPatient", [0, 0, 0])]
    files = []
    for index in range(count):
        dataset = copy.deepcopy(base)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = f"{series_uid}.{index + 1}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [origin[0], origin[1], origin[2] + index * 5.0]
        dataset.InstanceNumber = index + 1
        if description is not None:
            dataset.SeriesDescription = description
        if patient_name is not None:
            dataset.PatientName = patient_name
        if index == planted_index:
            x, y, size = planted_box
            pixels = dataset.pixel_array.copy()
            rng = np.random.default_rng(index)
            hu = rng.uniform(0, 1000, (size, size))
            slope = float(getattr(dataset, "RescaleSlope", 1))
            intercept = float(getattr(dataset, "RescaleIntercept", 0))
            stored = np.round((hu - intercept) / slope).astype(pixels.dtype)
            pixels[y : y + size, x : x + size] = stored
            dataset.PixelData = pixels.tobytes()
        path = folder / f"s{series_number}_{index + 1:03d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def fresh_folder(path: Path) -> Path:
    """``path`` emptied (recreated)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_app(app, test: Callable, size: tuple[int, int] = (120, 40)):
    """Run ``await test(pilot)`` inside ``app.run_test`` (no pytest-asyncio needed)."""

    async def main():
        async with app.run_test(size=size) as pilot:
            return await test(pilot)

    return asyncio.run(main())


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 120.0, what: str = ""):
    """Pause the pilot until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def test_tiny_scorer_is_a_deterministic_btd_scorer(tmp_path: Path):
    from btd_core.engine.scorer import Scorer

    first = write_tiny_scorer(tmp_path / "a.onnx")
    second = write_tiny_scorer(tmp_path / "b.onnx")
    assert file_sha256(first) == file_sha256(second)
    scorer = Scorer(first, provider="cpu")
    assert scorer.card == tiny_card()
    flat = np.full((2, 96, 96), 0.5, np.float32)
    noisy = np.random.default_rng(0).random((1, 96, 96)).astype(np.float32)
    scores = scorer.score(np.concatenate([flat, noisy]), with_residuals=True)
    assert scores.scores[0] == pytest.approx(0.0, abs=1e-9) and scores.scores[2] > 0.01


def test_fixed_series_is_byte_identical(tmp_path: Path):
    first = write_fixed_series(tmp_path / "a", 2, description="x", planted_index=1)
    second = write_fixed_series(tmp_path / "b", 2, description="x", planted_index=1)
    assert [file_sha256(p) for p in first] == [file_sha256(p) for p in second]
