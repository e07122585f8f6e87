"""Diffusion inpainting with the method's own model: the second tampering method (torch world).

Inside a round, feathered mask the S x S patch around (x, y) is first given its new
content (injection: soft-tissue density rising towards the centre; removal: the mean
of the surrounding ring), noised to ``t_start`` and denoised with DDIM steps (eta 0)
of the trained ``GaussianDiffusion``; at every step the pixels outside the mask are
replaced by the original noised to the same level (RePaint without resampling).  So
the new content is what the generative model makes of it, as in a real attack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from btd_core.model.diffusion import GaussianDiffusion
from btd_core.slices.profiles import ModalityProfile
from btd_core.tamper.copy_move import KINDS, Tampering, round_mask
from btd_core.tamper.labelled_set import Tamperer

SOFT_TISSUE_UNIT = (40.0 + 700.0) / 2700.0
"""A soft-tissue mass (+40 HU) on the CT window, in [0, 1]."""


def _initial(x0: torch.Tensor, mask: torch.Tensor, kind: str, radius: int) -> torch.Tensor:
    if kind == "injection":
        target = SOFT_TISSUE_UNIT * 2 - 1
        return x0 + mask * (torch.clamp(x0, min=target) - x0)
    ring = (mask == 0) & (
        torch.nn.functional.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius) > 0
    )
    fill = x0[ring].mean() if ring.any() else x0.mean()
    return x0 * (1 - mask) + fill * mask


@torch.inference_mode()
def diffusion_inpaint(
    values: np.ndarray,
    kind: str,
    x: int,
    y: int,
    radius: int,
    diffusion: GaussianDiffusion,
    profile: ModalityProfile,
    rng: np.random.Generator,
    t_start: int = 250,
    steps: int = 25,
) -> Tampering:
    """Inpaint a round region of ``radius`` px at column x, row y (values in HU for CT)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    size = profile.patch_size
    height, width = values.shape
    if height < size or width < size:
        raise ValueError(f"the slice is smaller than the model's {size} px patch")
    oy = int(np.clip(y - size // 2, 0, height - size))
    ox = int(np.clip(x - size // 2, 0, width - size))
    original = values[oy : oy + size, ox : ox + size].astype(np.float32)
    x0 = torch.from_numpy(profile.to_unit_range(original) * 2 - 1)[None, None]
    local = round_mask((size, size), x - ox, y - oy, radius, feather=max(radius / 3, 2.0))
    mask = torch.from_numpy(local)[None, None]
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    image = _initial(x0, mask, kind, radius)
    times = np.linspace(t_start, 0, steps).round().astype(int)
    noise = torch.randn(x0.shape, generator=generator)
    xt = diffusion.q_sample(image, torch.tensor([int(times[0])]), noise)
    for i, t in enumerate(times):
        t_batch = torch.tensor([int(t)])
        eps = diffusion.model(xt, t_batch)
        start = diffusion.predict_start_from_noise(xt, t_batch, eps).clamp(-1, 1)
        if i + 1 == len(times):
            xt = start
            known = x0
        else:
            prev = torch.tensor([int(times[i + 1])])
            alpha_prev = diffusion.alphas_cumprod[prev].view(1, 1, 1, 1)
            xt = alpha_prev.sqrt() * start + (1 - alpha_prev).sqrt() * eps
            known = diffusion.q_sample(x0, prev, torch.randn(x0.shape, generator=generator))
        xt = mask * xt + (1 - mask) * known
    unit = ((xt[0, 0].numpy() + 1) / 2).clip(0, 1)
    new_values = profile.window_low + unit * (profile.window_high - profile.window_low)
    tampered = values.astype(np.float32).copy()
    region = tampered[oy : oy + size, ox : ox + size]
    tampered[oy : oy + size, ox : ox + size] = region * (1 - local) + new_values * local
    full_mask = np.zeros(values.shape, np.float32)
    full_mask[oy : oy + size, ox : ox + size] = local
    return Tampering(tampered, full_mask, x, y, radius, kind, "diffusion")


def diffusion_tamperer(checkpoint: Path, profile: ModalityProfile) -> Tamperer:
    """The ``diffusion`` method of :mod:`btd_core.tamper.labelled_set`: inpainting with
    the model of ``checkpoint`` (loaded once, weights only)."""
    from btd_core.model.checkpoint import load_checkpoint

    diffusion = load_checkpoint(checkpoint).diffusion

    def inpaint(values, kind, x, y, radius, rng):
        return diffusion_inpaint(values, kind, x, y, radius, diffusion, profile, rng)

    return inpaint
