"""Studies and a scorer that are the same bytes on every run (the TUI snapshots need them):
CT series with fixed UIDs, and the tiny high-pass scorer with a fixed card."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from btd_core.hashing import file_sha256
from tests.onnx_scorer import build_scorer
from tests.study_builder import read_source
from tests.support.cards import tiny_card

UID_ROOT = "1.2.826.0.1.3680043.10.999"
"""Fixed UIDs for deterministic studies (snapshots)."""


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


def digest(path: Path) -> str:
    """SHA-256 of a file (:func:`btd_core.hashing.file_sha256`)."""
    return file_sha256(path)
