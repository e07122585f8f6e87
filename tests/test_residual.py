"""The PyTorch reference: the scorer graph is the library's p_sample(x, 0)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("denoising_diffusion_pytorch")
pytestmark = pytest.mark.torch

from btd_core.model.residual import (  # noqa: E402
    OneStepResidual,
    p_sample_residual,
    reduce_residual,
    t0_constants,
)
from btd_core.slices.profiles import CT  # noqa: E402
from export.sample_patches import parity_patches  # noqa: E402


@pytest.fixture(scope="module")
def patches():
    return torch.from_numpy(parity_patches(CT))


def test_graph_equals_library_p_sample(loaded_checkpoint, patches):
    graph = OneStepResidual(loaded_checkpoint.diffusion).eval()
    with torch.inference_mode():
        residual, score = graph(patches)
    reference = p_sample_residual(loaded_checkpoint.diffusion, patches)
    torch.testing.assert_close(residual, reference, atol=1e-7, rtol=0)
    torch.testing.assert_close(score, reference.square().mean(dim=(1, 2, 3)), rtol=1e-6, atol=0)


def test_constants_come_from_the_checkpoint_buffers(loaded_checkpoint):
    diffusion = loaded_checkpoint.diffusion
    constants = t0_constants(diffusion)
    assert constants["beta_0"] == pytest.approx(3.0028e-4, rel=1e-4)  # sigmoid schedule
    assert constants["posterior_mean_coef1_0"] == 1.0
    assert constants["posterior_mean_coef2_0"] == 0.0
    diffusion_copy = type(diffusion)(
        diffusion.model, image_size=96, objective="pred_noise", timesteps=1000
    )
    diffusion_copy.load_state_dict(diffusion.state_dict())
    diffusion_copy.sqrt_recipm1_alphas_cumprod[0] = 0.5  # a different "checkpoint"
    assert OneStepResidual(diffusion_copy).coef_eps == 0.5


def test_clamp_is_kept_where_pixels_sit_at_the_window_edge(loaded_checkpoint):
    """Air (x = -1): the unclamped formula and the clamped step differ; the graph clamps."""
    diffusion = loaded_checkpoint.diffusion
    air = torch.zeros(1, 1, 96, 96)
    graph = OneStepResidual(diffusion).eval()
    with torch.inference_mode():
        residual, _ = graph(air)
        x = air * 2 - 1
        eps = diffusion.model(x, torch.zeros(1, dtype=torch.long))
    c = t0_constants(diffusion)
    unclamped = x - (
        c["sqrt_recip_alphas_cumprod_0"] * x - c["sqrt_recipm1_alphas_cumprod_0"] * eps
    )
    clamped = x - (
        c["sqrt_recip_alphas_cumprod_0"] * x - c["sqrt_recipm1_alphas_cumprod_0"] * eps
    ).clamp(-1, 1)
    assert not torch.allclose(unclamped, clamped)
    torch.testing.assert_close(residual, clamped, atol=1e-7, rtol=0)


def test_deterministic(loaded_checkpoint, patches):
    first = p_sample_residual(loaded_checkpoint.diffusion, patches)
    second = p_sample_residual(loaded_checkpoint.diffusion, patches)
    assert torch.equal(first, second)


def test_reductions():
    r = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]])
    assert reduce_residual(r, "mean_sq").item() == pytest.approx(14 / 4)
    assert reduce_residual(r, "mean_abs").item() == pytest.approx(6 / 4)
    assert reduce_residual(r, "max_sq").item() == 9.0
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_residual(r, "median")


def test_matmul_attention_twin_computes_the_same_and_leaves_the_library_alone(
    loaded_checkpoint, patches
):
    from export.attention import with_matmul_attention

    diffusion = loaded_checkpoint.diffusion
    twin = with_matmul_attention(diffusion.model)
    assert twin is not diffusion.model
    assert all("forward" not in vars(m) for m in diffusion.model.modules())
    assert sum("forward" in vars(m) for m in twin.modules()) == 9  # 8 linear + 1 full attention
    x = patches * 2 - 1
    t = torch.zeros(len(x), dtype=torch.long)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x, t), diffusion.model(x, t), atol=1e-5, rtol=0)
