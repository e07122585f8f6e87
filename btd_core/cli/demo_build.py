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

Both are kept in the cache folder and reused.  Building takes a lock on the cache
folder (:func:`demo_lock`), so that two ``btd demo`` runs at once do not train into the
same files: the second waits, says so, and then reuses what the first built.  The model
is trained on some of the very slices the study is made of: the demo shows the tool
working, not how well the method detects tampering on unseen scans (``btd eval``
measures that).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from btd_core.errors import BtdError
from btd_core.file_lock import POLL_S, LockBusy, hold_lock

DEMO_STEPS = 75
"""Training steps of the demo model: with 300, 150 (before) and 75 the planted slices rank 1, 2
and 3 with nearly the same scores (`tests/test_demo.py`; the pixel comparison with neighbouring
slices finds them); 75 takes the first `btd demo` from 197 s to 129 s on one CPU thread."""
DEMO_DESCRIPTION = (
    "btd demo model: the method's U-Net trained for {steps} steps (batch 16, lr 1e-3, 32 px "
    "crops, t in [0, 100): the low-noise end the score uses) on 3 genuine CT slices shipped "
    "in pydicom-data (693_UNCI head CT, explicit_VR-UN abdominal CT, CT_small chest CT). "
    "A demonstration of the tool only: far too little training to detect real tampering; "
    "not for casework."
)
SOURCES = {"abdomen": ("explicit_VR-UN.dcm", 6), "head": ("693_UNCI.dcm", 4)}
PLAN = {
    "abdomen": [(1, "copy-move", "injection"), (4, "diffusion", "injection")],
    "head": [(2, "copy-move", "removal")],
}
LOCK_NAME = ".btd-demo.lock"
"""The lock file in the demo folder; held (``flock``) while the demo files are checked or built."""
LOCK_TIMEOUT_S = 3600.0
"""How long a second ``btd demo`` waits for the first to finish building, in seconds."""
LOCK_POLL_S = POLL_S
"""How often a waiting run tries the lock again, in seconds."""


class DemoLockTimeout(BtdError, TimeoutError):
    """Another ``btd demo`` held the demo folder's lock for longer than the timeout."""


def waiting_message(folder: Path) -> str:
    """What a second run says while it waits for the first."""
    return f"another btd demo is building the demo files in {folder}; waiting ..."


@contextlib.contextmanager
def demo_lock(
    folder: Path,
    timeout_s: float | None = LOCK_TIMEOUT_S,
    on_wait: Callable[[str], None] | None = None,
    poll_s: float = LOCK_POLL_S,
) -> Iterator[None]:
    """Hold the exclusive lock of the demo ``folder`` (created if absent) for the block.

    When another process holds it, ``on_wait`` is called once with
    :func:`waiting_message` and the lock is tried again every ``poll_s`` seconds, for at
    most ``timeout_s`` seconds (``None``: no limit).

    Raises
    ------
    DemoLockTimeout
        The lock was still held by another process after ``timeout_s`` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    waiting = None if on_wait is None else (lambda: on_wait(waiting_message(folder)))
    try:
        lock = hold_lock(folder / LOCK_NAME, wait_s=timeout_s, on_wait=waiting, poll_s=poll_s)
    except LockBusy:
        raise DemoLockTimeout(
            f"another btd demo has been building the demo files in {folder} for more than "
            f"{timeout_s:g} s; gave up waiting. Run btd demo again when it has finished."
        ) from None
    with lock:
        yield


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


def _demo_files(root: Path) -> DemoFiles:
    """Where the demo's files are (or will be) under the demo folder ``root``."""
    return DemoFiles(
        model=root / "demo_ct.onnx",
        checkpoint=root / "run" / "model-last.pt",
        study=root / "study",
        truth=[root / f"{name}_truth.csv" for name in PLAN],
    )


def demo_is_built(files: DemoFiles) -> bool:
    """True when the demo's model, its calibration and the truth tables all exist."""
    from btd_core.scoring.calibration import sidecar_path

    needed = [files.model, sidecar_path(files.model), *files.truth]
    return all(p.exists() for p in needed)


def calibration_is_current(files: DemoFiles) -> bool:
    """True when the demo model's calibration is of this btd's format (an older one lacks
    what the default score now uses, e.g. image context)."""
    from btd_core.scoring.calibration import (
        FORMAT_VERSION,
        Calibration,
        CalibrationError,
        sidecar_path,
    )

    try:
        return Calibration.load(sidecar_path(files.model)).format_version >= FORMAT_VERSION
    except CalibrationError:
        return False


PHASE_CACHED = "found in the cache"
PHASE_RECALIBRATION = (
    "calibrating the cached demo model again (its calibration is from an older btd)"
)
PHASE_TRAINING = "training the demo model"
PHASE_EXPORT = "exporting the demo model to ONNX (btd-export, with its parity check)"
PHASE_CALIBRATION = "calibrating the demo model on its genuine slices (btd calibrate)"
PHASE_STUDY = "building the demo study (btd tamper plants 3 tamperings)"
"""What ``ensure_demo`` tells ``on_phase``, in order (``PHASE_CACHED`` when reused, then
``PHASE_RECALIBRATION`` when its calibration is of an older format)."""


def ensure_demo(
    fresh: bool = False,
    on_step=None,
    on_wait: Callable[[str], None] | None = None,
    lock_timeout_s: float | None = LOCK_TIMEOUT_S,
    on_phase: Callable[[str], None] | None = None,
) -> DemoFiles:
    """Make (or reuse) the demo model and study in :func:`cache_dir`; return their paths.

    Holds :func:`demo_lock` on the demo folder meanwhile: a run that finds another
    building waits (``on_wait`` gets the message), then reuses what it built unless
    ``fresh``.  ``on_phase`` gets each phase as it starts (the ``PHASE_*`` texts), so a
    user sees what happens after training; ``on_step`` gets training's progress.

    Raises
    ------
    DemoLockTimeout
        Another run kept building for longer than ``lock_timeout_s`` seconds.
    """
    root = cache_dir() / "demo"
    with demo_lock(root, timeout_s=lock_timeout_s, on_wait=on_wait):
        files = _demo_files(root)
        say = on_phase or (lambda phase: None)
        if not fresh and demo_is_built(files):
            say(PHASE_CACHED)
            if not calibration_is_current(files) and (root / "genuine").is_dir():
                say(PHASE_RECALIBRATION)
                from btd_core.audit.calibrate import calibrate_model
                from btd_core.scoring.calibration import sidecar_path

                calibrate_model(root / "genuine", files.model, sidecar_path(files.model))
            return files
        _build_demo(root, files, fresh, on_step, say)
        return files


def _build_demo(
    root: Path, files: DemoFiles, fresh: bool, on_step, say: Callable[[str], None]
) -> None:
    """Train, export and calibrate the demo model, then tamper the demo study (minutes)."""
    from btd_core.audit.calibrate import calibrate_model
    from btd_core.cli.tamper import tamperers_for
    from btd_core.model.train import train
    from btd_core.model.train_config import TrainConfig
    from btd_core.scoring.calibration import sidecar_path
    from btd_core.slices.profiles import CT
    from btd_core.study.discovery import discover
    from btd_core.tamper.labelled_set import tamper_study
    from export.onnx_export import export_scorer

    calibration = sidecar_path(files.model)
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
        max_timestep=100,
    )
    say(PHASE_TRAINING)
    train(config, resume=not fresh, on_progress=on_step)
    say(PHASE_EXPORT)
    export_scorer(files.checkpoint, files.model, modality="ct")
    say(PHASE_CALIBRATION)
    calibrate_model(genuine, files.model, calibration)
    say(PHASE_STUDY)
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
