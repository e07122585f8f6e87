"""Build study folders from real DICOM slices (pydicom / pydicom-data), for tests and benchmarks.

Each series gets new Study/Series/SOP Instance UIDs, positions along its slice normal
and shuffled file names, so that order must come from the headers.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


@dataclass(frozen=True)
class BuiltSeries:
    """What was written: files in slice order, the planted slice's index and block."""

    files: list[Path]
    series_uid: str
    planted_index: int | None
    planted_box: tuple[int, int, int] | None  # (x, y, size) of the planted block


def read_source(name: str) -> pydicom.Dataset:
    """A bundled DICOM (or a DICOM file's path), decompressed to Explicit VR Little Endian."""
    dataset = pydicom.dcmread(name if Path(name).is_file() else get_testdata_file(name))
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        dataset.decompress()
    return dataset


def plant_noise_block(dataset: pydicom.Dataset, x: int, y: int, size: int, seed: int) -> None:
    """Replace a size x size block at column x, row y with uniform noise of 0.1..0.9 windowed.

    The noise is written in stored values: HU = 2700 u - 700 for u in [0.1, 0.9].
    """
    pixels = dataset.pixel_array.copy()
    rng = np.random.default_rng(seed)
    hu = rng.uniform(0.1, 0.9, (size, size)) * 2700 - 700
    slope = float(getattr(dataset, "RescaleSlope", 1))
    intercept = float(getattr(dataset, "RescaleIntercept", 0))
    pixels[y : y + size, x : x + size] = np.round((hu - intercept) / slope).astype(pixels.dtype)
    dataset.PixelData = pixels.tobytes()


def write_series(
    folder: Path,
    source: str,
    count: int,
    *,
    spacing_mm: float = 5.0,
    planted_index: int | None = None,
    planted_box: tuple[int, int, int] = (220, 280, 40),
    modality: str | None = None,
    seed: int = 0,
) -> BuiltSeries:
    """Write ``count`` slices of ``source`` as one series into ``folder`` (shuffled names)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = read_source(source)
    study_uid, series_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    names = [f"IM{n:05d}" for n in rng.permutation(10_000)[:count]]
    origin = [float(v) for v in getattr(base, "ImagePositionPatient", [0, 0, 0])]
    files = []
    for index in range(count):
        dataset = copy.deepcopy(base)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [origin[0], origin[1], origin[2] + index * spacing_mm]
        dataset.InstanceNumber = count - index  # deliberately against the position order
        if modality:
            dataset.Modality = modality
        if index == planted_index:
            plant_noise_block(dataset, *planted_box, seed=seed)
        path = folder / names[index]
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return BuiltSeries(
        files=files,
        series_uid=series_uid,
        planted_index=planted_index,
        planted_box=planted_box if planted_index is not None else None,
    )


def write_hu_series(
    folder: Path,
    hu: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: Callable[[int], str],
    file_name: Callable[[int], str],
) -> None:
    """Write [N, H, W] HU as one CT series in a new ``folder``, 5 mm apart, on the header of
    pydicom-data's 693_UNCI.dcm (uint16, intercept -1024); slice ``i`` gets SOP Instance UID
    ``sop_uid(i)`` and file name ``file_name(i)``."""
    base = read_source("693_UNCI.dcm")
    folder.mkdir(parents=True)
    for index, plane in enumerate(hu):
        dataset = copy.deepcopy(base)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = sop_uid(index)
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [0.0, 0.0, 5.0 * index]
        dataset.InstanceNumber = index + 1
        dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
        dataset.PixelRepresentation = 0
        stored = np.clip(np.round(plane + 1024), 0, 65535).astype(np.uint16)
        dataset.Rows, dataset.Columns = stored.shape
        dataset.PixelData = stored.tobytes()
        dataset.save_as(folder / file_name(index), enforce_file_format=True)


def tree_fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    """relpath -> (sha256 or link target, size, mtime_ns) of every entry; links not followed."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = ("-> " + os.readlink(path), info.st_size, info.st_mtime_ns)
            elif path.is_file():
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
                state[rel] = (digest, info.st_size, info.st_mtime_ns)
            else:
                state[rel] = ("dir or special", 0, info.st_mtime_ns)
    return state
