"""Shared fixtures: a checkpoint written by denoising-diffusion-pytorch 1.8.3, and its export.

The checkpoint is made the upstream way: the library's own ``Trainer`` takes one
training step on a few images and ``Trainer.save`` writes the file, so its
layout (``step``, ``model``, ``opt``, ``ema``, ``scaler``, ``version``) is the
released checkpoints' layout.  Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest


def _require_train_extra() -> None:
    pytest.importorskip("torch", reason="needs the train extra (pip install '.[train]')")
    pytest.importorskip("denoising_diffusion_pytorch")
    pytest.importorskip("onnx")


def write_upstream_checkpoint(folder: Path, image_size: int, seed: int = 0) -> Path:
    """One step of the library's Trainer, saved by ``Trainer.save``; returns the file."""
    import torch

    from btd_core.diffusion import build_diffusion

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
def ct_onnx(upstream_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture checkpoint exported by the real ``btd-export`` command function."""
    from export.cli import main

    out = tmp_path_factory.mktemp("onnx") / "ct.onnx"
    assert main([str(upstream_checkpoint), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def loaded_checkpoint(upstream_checkpoint: Path):
    from btd_core.checkpoint import load_checkpoint

    return load_checkpoint(upstream_checkpoint)
