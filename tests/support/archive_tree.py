"""A built archive for the ``btd archive`` tests (embedded and Ray) and the app's archive
view: every layout an archive holds, and one embedded run of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from btd_core.archive.driver import run_archive
from btd_core.archive.local import LocalExecutor
from btd_core.archive.unit_scan import WorkerConfig
from btd_core.audit.scan_config import ScanConfig
from btd_core.scoring.tiles import ScanSettings
from tests.study_builder import read_source, write_series

HOSTILE_FOLDER = '=HYPERLINK("http-evil")\x1b[2J'
HOSTILE_NAME = "=cmd|' /C calc'!A0\r\nX"


def real_hu_slices(count: int, size: int = 96) -> list[np.ndarray]:
    """``count`` real CT slices in HU (pydicom's CT_small.dcm, shifted crops)."""
    dataset = read_source("CT_small.dcm")
    hu = dataset.pixel_array.astype(np.float32) * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept
    )
    return [hu[i : i + size, i : i + size].copy() for i in range(count)]


def build_archive(root: Path, slices: int = 3) -> dict[str, object]:
    """An archive of every layout: folder-per-study DICOM (one planted), a study split over
    two export folders that also hold another study, .npy and PNG folders, a corrupt
    study, and a hostile folder and PatientName.  Returns what was built."""
    built: dict[str, object] = {}
    built["planted"] = write_series(
        root / "case_a", "CT_small.dcm", slices, planted_index=1, planted_box=(40, 40, 32), seed=1
    )
    write_series(root / "case_b", "CT_small.dcm", slices, seed=2)
    split = write_series(root / "export1" / "s1", "CT_small.dcm", slices + 1, seed=3)
    (root / "export2").mkdir()
    for path in split.files[:2]:  # half of that study lies in another export
        shutil.move(path, root / "export2" / path.name)
    built["split_uid"] = str(read_source(str(split.files[-1])).StudyInstanceUID)
    other = write_series(root / "export1" / "s2", "CT_small.dcm", slices, seed=4)
    built["other_uid"] = str(read_source(str(other.files[0])).StudyInstanceUID)
    for i, hu in enumerate(real_hu_slices(slices)):
        (root / "npy_case").mkdir(exist_ok=True)
        np.save(root / "npy_case" / f"slice{i:02d}.npy", hu)
        unit = np.clip((hu + 700) / 2700 * 255, 0, 255).astype(np.uint8)
        (root / "png_case").mkdir(exist_ok=True)
        Image.fromarray(unit).save(root / "png_case" / f"slice{i:02d}.png")
    corrupt = root / "corrupt"
    broken = write_series(corrupt, "CT_small.dcm", 2, seed=5)
    for path in broken.files:  # truncated pixel data: every file an error row
        path.write_bytes(path.read_bytes()[:-4000])
    hostile = write_series(root / HOSTILE_FOLDER, "CT_small.dcm", slices, seed=6)
    for path in hostile.files:
        dataset = read_source(str(path))
        dataset.PatientName = HOSTILE_NAME
        dataset.save_as(path, enforce_file_format=True)
    return built


def config_for(model: Path, **fields: object) -> WorkerConfig:
    """The worker settings of these tests (btd scan's defaults, 3 overlays, 1 read thread;
    ``fields``: other :class:`ScanConfig` fields)."""
    settings = ScanSettings(overlays=3, workers=1)
    scan = ScanConfig(provider="cpu", settings=settings, **fields)  # type: ignore[arg-type]
    return WorkerConfig(model=str(model), scan=scan)


def run_embedded(root: Path, out: Path, model: Path, jobs: int = 1, **kwargs: object):
    """One embedded run (``kwargs`` to :func:`run_archive`)."""
    return run_archive(
        root,
        out,
        config_for(model),
        lambda config: LocalExecutor(config, jobs),
        **kwargs,  # type: ignore[arg-type]
    )


def report_csvs(out: Path) -> dict[str, bytes]:
    """Every study report's CSV files (relative name -> bytes): what two runs must share."""
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for path in sorted((out / "studies").glob("*/*.csv"))
    }
