"""A short, plain fit of the method's U-Net to the texture of a few slices (torch world).

What the ``trained_ct_onnx`` test fixture and ``benchmarks/bench_detection.py`` train:
no Accelerate, EMA, data loader or resume (``btd train`` has those).  The model of
:func:`btd_core.model.diffusion.build_diffusion` is fitted with the library's own
``p_losses`` by Adam (lr :data:`LEARNING_RATE`) on :data:`BATCH` random square crops
per step, cycling through the images in order, with t drawn from
[0, :data:`MAX_TIMESTEP`): the low-noise end that the t = 0 score uses.  The U-Net is
fully convolutional, so weights fitted on small crops score full-size tiles.  On the CPU
the same images, steps, crop and seed give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from btd_core.model.diffusion import GaussianDiffusion, build_diffusion

BATCH = 16
"""Crops per step."""
LEARNING_RATE = 1e-3
"""Adam's learning rate."""
MAX_TIMESTEP = 100
"""Diffusion steps t are drawn uniformly from ``[0, MAX_TIMESTEP)`` (of 1000)."""
UPSTREAM_VERSION = "1.8.3"
"""The ``version`` a saved checkpoint names: the denoising-diffusion-pytorch layout."""


def fit_texture(
    images: Sequence[np.ndarray],
    steps: int,
    crop: int,
    image_size: int = 96,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> GaussianDiffusion:
    """The method's model for ``image_size`` px tiles, fitted for ``steps`` steps.

    ``images``: square 2-D float32 slices in [0, 1] (a modality profile's unit range),
    each larger than ``crop`` px; step k takes its crops from ``images[k % len(images)]``.
    ``seed`` seeds torch (the weights' initialisation and t) and NumPy (the crop places).
    ``on_step(step, loss)`` is called after each step (step from 0, loss as a float).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    diffusion = build_diffusion(image_size)
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=LEARNING_RATE)
    for step in range(steps):
        image = images[step % len(images)]
        starts = rng.integers(0, image.shape[0] - crop, (BATCH, 2))
        crops = np.stack([image[y : y + crop, x : x + crop] for y, x in starts])[:, None]
        x0 = torch.from_numpy(crops) * 2 - 1
        loss = diffusion.p_losses(x0, torch.randint(0, MAX_TIMESTEP, (BATCH,)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if on_step is not None:
            on_step(step, loss.item())
    return diffusion


def save_fitted(diffusion: GaussianDiffusion, path: Path, steps: int, btd: dict[str, Any]) -> Path:
    """Save ``diffusion`` in this project's checkpoint layout (``model``, ``step``,
    ``version``, and the ``btd`` entry given: modality, description, ...); returns ``path``."""
    payload = {"model": diffusion.state_dict(), "step": steps, "version": UPSTREAM_VERSION}
    torch.save({**payload, "btd": btd}, path)
    return path
