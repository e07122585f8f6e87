"""Shared fixtures: torch-free ONNX scorers for the runtime's tests, and the torch world's.

The runtime's tests (discovery, scan, report, scorer, engine options, score modes, eval,
TUI) score with ``ct_onnx`` / ``mri_onnx``: fixed high-pass scorers built with
``onnx.helper`` (``tests/onnx_scorer.py``), so they run with ``pip install -e '.[test]'``
alone.  The torch world's fixtures skip cleanly without the train extra:
``upstream_checkpoint`` is made the upstream way (the library's own ``Trainer`` takes one
step and ``Trainer.save`` writes the released layout: ``step``, ``model``, ``opt``,
``ema``, ``scaler``, ``version``), ``exported_ct_onnx`` is its export by the real
``btd-export``, and ``trained_ct_onnx`` a briefly but honestly trained model (the tests
that need it are marked ``slow``).  Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_scorer import build_scorer
from tests.support.lanes import assign_lanes
from tests.support.real_ct import real_ct_slice

TORCH_FIXTURES = frozenset(
    {"upstream_checkpoint", "loaded_checkpoint", "exported_ct_onnx", "trained_ct_onnx"}
)
"""Fixtures of the torch world: a test that uses one is marked ``torch``."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``torch`` every test that needs a torch fixture, so ``-m "not torch"`` is the
    runtime alone (what ``pip install -e '.[test]'`` runs without skips), and put every test
    in its lane: ``unit``, ``integration`` or ``slow`` (``tests/support/lanes.py``)."""
    for item in items:
        if TORCH_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.torch)
            # one xdist worker (--dist loadgroup) builds the session's checkpoint and export
            item.add_marker(pytest.mark.xdist_group("torch"))
    assign_lanes(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test skipped for want of an extra must carry that extra's mark (``torch``, ``ray``):
    CI runs the marked tests where the extras are installed and the others in the torch-free
    venv (``.ci/run``), so an unmarked one would be skipped there and never run anywhere."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or call.excinfo is None:
        return
    missing = getattr(call.excinfo.value, "msg", "") or ""
    needs = {"torch": r"\btorch\b|train extra", "ray": r"\bray\b|archive extra"}
    for mark, words in needs.items():  # whole words: ".venv-notorch" names no package
        if re.search(words, missing) and item.get_closest_marker(mark) is None:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} skipped ({missing}) but is not marked {mark}: no CI lane "
                f"would run it (mark it @pytest.mark.{mark}; tests/support/lanes.py)"
            )


def _require_train_extra() -> None:
    pytest.importorskip("torch", reason="needs the train extra (pip install '.[train]')")
    pytest.importorskip("denoising_diffusion_pytorch")
    pytest.importorskip("onnx")


def write_upstream_checkpoint(folder: Path, image_size: int, seed: int = 0) -> Path:
    """One step of the library's Trainer, saved by ``Trainer.save``; returns the file."""
    import torch

    from btd_core.model.diffusion import build_diffusion

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from denoising_diffusion_pytorch import Trainer

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    from PIL import Image

    for i in range(4):
        pixels = (rng.random((image_size, image_size)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    torch.manual_seed(seed)
    trainer = Trainer(
        build_diffusion(image_size),
        str(images),
        train_batch_size=2,
        train_num_steps=1,
        save_and_sample_every=10**9,
        calculate_fid=False,
        results_folder=str(folder / "results"),
        convert_image_to="L",
    )
    trainer.train()
    trainer.save("1")
    return folder / "results" / "model-1.pt"


@pytest.fixture(scope="session")
def upstream_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96-px CT checkpoint in the released layout, named like the released one."""
    _require_train_extra()
    folder = tmp_path_factory.mktemp("upstream")
    written = write_upstream_checkpoint(folder, image_size=96)
    released_name = folder / "CT_model.pt"
    shutil.copyfile(written, released_name)
    return released_name


@pytest.fixture(scope="session")
def ct_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CT scorer without torch: a fixed high-pass (tests/onnx_scorer.py), 96 px patches.

    It honours the ONNX contract and carries a complete model card; planted noise blocks
    rank first by construction.  For every runtime test that needs a scorer file.
    """
    return build_scorer(tmp_path_factory.mktemp("ct_onnx") / "ct.onnx", modality="ct")


@pytest.fixture(scope="session")
def mri_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MRI twin of ``ct_onnx``: window [0, 1] (unit), 128 px patches, no torch."""
    return build_scorer(tmp_path_factory.mktemp("mri_onnx") / "mri.onnx", modality="mri")


@pytest.fixture(scope="session")
def exported_ct_onnx(upstream_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``upstream_checkpoint`` exported by the real ``btd-export`` (needs the train extra).

    For the tests about export, checkpoints and parity with PyTorch; runtime tests use
    ``ct_onnx``.
    """
    from export.cli import main

    out = tmp_path_factory.mktemp("onnx") / "ct.onnx"
    assert main([str(upstream_checkpoint), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def loaded_checkpoint(upstream_checkpoint: Path):
    from btd_core.model.checkpoint import load_checkpoint

    return load_checkpoint(upstream_checkpoint)


@pytest.fixture(scope="session")
def trained_ct_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CT scorer whose residual responds to synthetic texture: honestly trained, briefly
    (training and one export: about 40 s on two CPU cores, once per session; the tests
    that use it are marked ``slow``).

    The method's U-Net (dim 32, 1-2-4-8, sigmoid schedule) is trained with the library's
    own ``p_losses`` for 60 Adam steps (lr 1e-3, batch 16) on random 32 x 32 crops of one
    real CT slice (pydicom-data's 693_UNCI.dcm, head CT), with t drawn from [0, 100): the
    low-noise end that the t = 0 score uses.  The U-Net is fully convolutional, so the
    weights then score 96 x 96 tiles.  Such a model has learnt what real CT texture looks
    like at low noise, so pixels unlike it (uniform noise) leave a larger residual.  It is
    no detector of real tampering.  It is saved in this project's checkpoint layout and
    exported by the real btd-export.
    """
    _require_train_extra()
    from btd_core.model.texture_fit import fit_texture, save_fitted
    from export.cli import main

    diffusion = fit_texture([real_ct_slice("693_UNCI.dcm")], steps=60, crop=32, seed=0)
    folder = tmp_path_factory.mktemp("trained")
    checkpoint = save_fitted(
        diffusion,
        folder / "ct_texture.pt",
        steps=60,
        btd={"modality": "ct", "image_size": 96, "note": "test fixture"},
    )
    out = folder / "ct_texture.onnx"
    assert main([str(checkpoint), "-o", str(out)]) == 0
    return out


LUNG1_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "btd" / "pyradiomics"
"""Where ``benchmarks/fetch_lung1.py`` keeps pyradiomics' lung1 chest CT (CI fetches it)."""


@pytest.fixture(scope="session")
def lung1() -> tuple[np.ndarray, np.ndarray]:
    """pyradiomics' lung1: a real chest CT, HU [48, 512, 512] float32, and its nodule
    label (bool, same shape); skipped (with how to get it) when it was not fetched."""
    image = LUNG1_DIR / "lung1_image.nrrd"
    if not image.is_file():
        pytest.skip("lung1 is not fetched: python benchmarks/fetch_lung1.py (CI fetches it)")
    nrrd = pytest.importorskip("nrrd", reason="reading lung1 needs pynrrd (the test extra)")
    volume, _ = nrrd.read(str(image))
    label, _ = nrrd.read(str(LUNG1_DIR / "lung1_label.nrrd"))
    return (
        np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32),
        np.ascontiguousarray(label.transpose(2, 1, 0) > 0),
    )
