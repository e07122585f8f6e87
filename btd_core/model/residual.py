"""The one-step reverse residual of BTD, in PyTorch: the reference (torch world).

For an input x in [-1, 1] and the model's noise prediction eps = unet(x, t=0):

    x0_hat = clamp(sqrt_recip_alphas_cumprod[0] * x - sqrt_recipm1_alphas_cumprod[0] * eps, -1, 1)
    x_{-1} = posterior_mean_coef1[0] * x0_hat + posterior_mean_coef2[0] * x   (no noise at t = 0)
    r      = x - x_{-1}

Every constant is read from the model's buffers, i.e. from the checkpoint.
:class:`OneStepResidual` is the graph ``btd-export`` writes to ONNX;
:func:`p_sample_residual` computes the same through the library's own
``GaussianDiffusion.p_sample(x, 0)``, the way upstream does.
"""

from __future__ import annotations

import torch
from torch import nn

from btd_core.model.diffusion import GaussianDiffusion

REDUCTION_NAMES = ("mean_sq", "mean_abs", "max_sq")


def reduce_residual(residual: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-patch score [B] of residuals [B, 1, S, S] (``btd_core.engine.model_card.REDUCTIONS``)."""
    if reduction == "mean_sq":
        return residual.square().mean(dim=(1, 2, 3))
    if reduction == "mean_abs":
        return residual.abs().mean(dim=(1, 2, 3))
    if reduction == "max_sq":
        return residual.square().amax(dim=(1, 2, 3))
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTION_NAMES}")


def t0_constants(diffusion: GaussianDiffusion) -> dict[str, float]:
    """The schedule constants at t = 0, read from the model's (checkpoint's) buffers."""
    return {
        "beta_0": float(diffusion.betas[0]),
        "sqrt_recip_alphas_cumprod_0": float(diffusion.sqrt_recip_alphas_cumprod[0]),
        "sqrt_recipm1_alphas_cumprod_0": float(diffusion.sqrt_recipm1_alphas_cumprod[0]),
        "posterior_mean_coef1_0": float(diffusion.posterior_mean_coef1[0]),
        "posterior_mean_coef2_0": float(diffusion.posterior_mean_coef2[0]),
    }


class OneStepResidual(nn.Module):
    """Scorer graph: x [B, 1, S, S] in [0, 1] -> (residual [B, 1, S, S], score [B]).

    The normalisation ``2x - 1``, the U-Net at t = 0, the clamped one-step
    reverse and the reduction are all inside, so that an exported graph needs
    nothing around it but windowing to [0, 1].
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        reduction: str = "mean_sq",
        unet: nn.Module | None = None,
    ) -> None:
        """``unet`` replaces ``diffusion.model`` when given (export passes an equivalent copy)."""
        super().__init__()
        if diffusion.objective != "pred_noise":
            raise ValueError("BTD's residual needs a pred_noise model")
        if reduction not in REDUCTION_NAMES:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTION_NAMES}")
        self.unet = unet if unet is not None else diffusion.model
        self.reduction = reduction
        constants = t0_constants(diffusion)
        self.coef_x = constants["sqrt_recip_alphas_cumprod_0"]
        self.coef_eps = constants["sqrt_recipm1_alphas_cumprod_0"]
        self.coef_start = constants["posterior_mean_coef1_0"]
        self.coef_input = constants["posterior_mean_coef2_0"]

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x01 * 2.0 - 1.0
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        eps = self.unet(x, t)
        x_start = (self.coef_x * x - self.coef_eps * eps).clamp(-1.0, 1.0)
        x_prev = self.coef_start * x_start + self.coef_input * x
        residual = x - x_prev
        return residual, reduce_residual(residual, self.reduction)


@torch.inference_mode()
def p_sample_residual(diffusion: GaussianDiffusion, x01: torch.Tensor) -> torch.Tensor:
    """Residual ``x - p_sample(x, 0)`` through the library itself; x01 in [0, 1], [B, 1, S, S].

    This is the upstream way (eager PyTorch); the result is in model space [-1, 1].
    """
    x = x01 * 2.0 - 1.0
    x_prev, _ = diffusion.p_sample(x, 0)
    return x - x_prev
