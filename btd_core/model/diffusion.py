"""The method's model, built exactly as upstream BTD builds it (torch world).

``Unet(dim=32, dim_mults=(1, 2, 4, 8), channels=1)`` inside
``GaussianDiffusion(unet, image_size=S, objective="pred_noise", timesteps=1000,
sampling_timesteps=250)`` of denoising-diffusion-pytorch 1.8.3, with the library's
default (sigmoid) beta schedule.  9,190,977 parameters.
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():
    # 1.8.3 uses torch.cuda.amp.autocast, deprecated in current torch: noise for our users.
    warnings.simplefilter("ignore", FutureWarning)
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from denoising_diffusion_pytorch import denoising_diffusion_pytorch as ddp

__all__ = ["GaussianDiffusion", "Unet", "build_diffusion", "identify_beta_schedule"]

UNET_DIM = 32
UNET_DIM_MULTS = (1, 2, 4, 8)
TIMESTEPS = 1000
SAMPLING_TIMESTEPS = 250
OBJECTIVE = "pred_noise"
PARAMETER_COUNT = 9_190_977

_SCHEDULES = {
    "sigmoid": ddp.sigmoid_beta_schedule,
    "cosine": ddp.cosine_beta_schedule,
    "linear": ddp.linear_beta_schedule,
}


def build_diffusion(image_size: int) -> GaussianDiffusion:
    """A fresh (randomly initialised) model of the method for S x S patches.

    ``image_size`` is S in pixels: 96 for CT, 128 for MRI; a multiple of 8.
    """
    if image_size % 8:
        raise ValueError(f"patch size must be a multiple of 8, got {image_size}")
    unet = Unet(dim=UNET_DIM, dim_mults=UNET_DIM_MULTS, channels=1)
    return GaussianDiffusion(
        unet,
        image_size=image_size,
        objective=OBJECTIVE,
        timesteps=TIMESTEPS,
        sampling_timesteps=SAMPLING_TIMESTEPS,
    )


def library_version() -> str:
    """Version of the installed denoising-diffusion-pytorch."""
    return ddp.__version__


def identify_beta_schedule(betas: torch.Tensor) -> str:
    """Name the library schedule (sigmoid, cosine, linear) that ``betas`` came from.

    Returns ``"custom"`` when none of the library's defaults matches within 1e-6.
    The constants used for scoring always come from the checkpoint's buffers;
    this name is only recorded for the reader of the model card.
    """
    for name, schedule in _SCHEDULES.items():
        expected = schedule(len(betas)).to(torch.float32)
        if torch.allclose(betas.float().cpu(), expected, atol=1e-6, rtol=0):
            return name
    return "custom"
