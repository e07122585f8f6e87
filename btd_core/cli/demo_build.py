"""The demo: a small real CT study with planted tampering, and a demo model, both made offline.

Everything comes from real CT slices shipped in the pydicom-data package (installed
with the train extra); nothing is downloaded.  On first use (a few minutes on a CPU):

1. the demo model is trained by ``btd train`` on genuine slices (briefly: see
   :data:`DEMO_DESCRIPTION`, also written into its model card), exported by
   ``btd-export`` and calibrated by ``btd calibrate`` on the same genuine slices (so
   the demo audit runs the default, calibrated score);
2. a demo study is built: two DICOM series (abdominal and head CT) with new UIDs
   and positions, and ``btd tamper`` tampers three slices (copy-move injection,
   copy-move removal, diffusion-inpainting injection); ``study_truth.csv`` says
   which, next to (not inside) the study.

Both are kept in the cache folder and reused.  The model is trained on some of the
very slices the study is made of: the demo shows the tool working, not how well the
method detects tampering on unseen scans (``btd eval`` measures that).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_STEPS = 300
DEMO_DESCRIPTION = (
    "btd demo model: the method's U-Net trained for {steps} steps (batch 16, lr 1e-3, 32 px "
    "crops, t in all of [0, 1000)) on 3 genuine CT slices shipped in pydicom-data "
    "(693_UNCI head CT, explicit_VR-UN abdominal CT, CT_small chest CT). A demonstration "
    "of the tool only: far too little training to detect real tampering; not for casework."
)
SOURCES = {"abdomen": ("explicit_VR-UN.dcm", 6), "head": ("693_UNCI.dcm", 4)}
PLAN = {
    "abdomen": [(1, "copy-move", "injection"), (4, "diffusion", "injection")],
    "head": [(2, "copy-move", "removal")],
}


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo's model, study and truth table are."""

    model: Path
    checkpoint: Path
    study: Path
    truth: list[Path]


def cache_dir() -> Path:
    """``$BTD_CACHE`` or ``$XDG_CACHE_HOME/btd`` (default ``~/.cache/btd``)."""
    if os.environ.get("BTD_CACHE"):
        return Path(os.environ["BTD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "btd"


def write_genuine_series(folder: Path, source: str, count: int, seed: int) -> None:
    """``count`` slices of a pydicom-data file as one new series (new UIDs, 5 mm apart)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    base = pydicom.dcmread(get_testdata_file(source))
    if base.file_meta.TransferSyntaxUID.is_compressed:
        base.decompress()
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    origin = [float(v) for v in getattr(base, "ImagePositionPatient", [0, 0, 0])]
    for index in range(count):
        dataset = copy.deepcopy(base)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [origin[0], origin[1], origin[2] + 5.0 * index]
        dataset.InstanceNumber = index + 1
        dataset.save_as(folder / f"IM{rng.integers(10**6):06d}.dcm", enforce_file_format=True)


def ensure_demo(fresh: bool = False, on_step=None) -> DemoFiles:
    """Make (or reuse) the demo model and study in :func:`cache_dir`; return their paths."""
    from btd_core.audit.calibrate import calibrate_model
    from btd_core.cli.tamper import tamperers_for
    from btd_core.model.train import train
    from btd_core.model.train_config import TrainConfig
    from btd_core.scoring.calibration import sidecar_path
    from btd_core.slices.profiles import CT
    from btd_core.study.discovery import discover
    from btd_core.tamper.labelled_set import tamper_study
    from export.onnx_export import export_scorer

    root = cache_dir() / "demo"
    files = DemoFiles(
        model=root / "demo_ct.onnx",
        checkpoint=root / "run" / "model-last.pt",
        study=root / "study",
        truth=[root / f"{name}_truth.csv" for name in PLAN],
    )
    calibration = sidecar_path(files.model)
    if (
        not fresh
        and files.model.exists()
        and calibration.exists()
        and all(p.exists() for p in files.truth)
    ):
        return files
    genuine = root / "genuine"
    for name, (source, count) in SOURCES.items():
        write_genuine_series(genuine / name, source, count, seed=len(name))
    write_genuine_series(genuine / "chest", "CT_small.dcm", 2, seed=7)
    config = TrainConfig(
        modality="ct",
        data_dir=str(genuine),
        out_dir=str(root / "run"),
        steps=DEMO_STEPS,
        batch_size=16,
        grad_accumulation=1,
        learning_rate=1e-3,
        patch_size=32,
        save_every=DEMO_STEPS,
        description=DEMO_DESCRIPTION.format(steps=DEMO_STEPS),
    )
    train(config, resume=not fresh, on_progress=on_step)
    export_scorer(files.checkpoint, files.model, modality="ct")
    calibrate_model(genuine, files.model, calibration)
    tamperers = tamperers_for(("copy-move", "diffusion"), files.checkpoint, CT)
    for (name, plan), truth in zip(PLAN.items(), files.truth, strict=True):
        (series,) = discover(genuine / name).series
        tamper_study(
            series,
            genuine / name,
            files.study / name,
            plan,
            CT,
            tamperers=tamperers,
            radius=14,
            seed=11,
            truth_path=truth,
        )
    return files
