"""Model cards for tests: a complete CT card with any field changed, and a fixed one."""

from __future__ import annotations

from btd_core.engine.model_card import ModelCard


def make_card(**changes: object) -> ModelCard:
    """A complete CT model card (96 px patches, window [-700, 2000] HU) with ``changes``."""
    values: dict[str, object] = dict(
        modality="ct",
        patch_size=96,
        window_low=-700.0,
        window_high=2000.0,
        window_unit="HU",
        reduction="mean_sq",
        weights="model",
        beta_schedule="sigmoid",
        timesteps=1000,
        beta_0=0.00030027920729480684,
        sqrt_recip_alphas_cumprod_0=1.000150203704834,
        sqrt_recipm1_alphas_cumprod_0=0.017331168055534363,
        posterior_mean_coef1_0=1.0,
        posterior_mean_coef2_0=0.0,
        source_name="CT_model.pt",
        source_sha256="ab" * 32,
        source_step=700000,
        source_library_version="1.8.3",
        exporter_version="0.1.0",
        torch_version="2.14.1",
        diffusion_library_version="1.8.3",
        opset=18,
        exported_at="2026-11-28T00:00:00+00:00",
    )
    values.update(changes)
    return ModelCard(**values)  # type: ignore[arg-type]


def tiny_card(patch_size: int = 96) -> ModelCard:
    """A fixed CT model card (no timestamps or hashes that change between runs)."""
    return make_card(
        patch_size=patch_size,
        beta_0=0.0003,
        sqrt_recip_alphas_cumprod_0=1.00015,
        sqrt_recipm1_alphas_cumprod_0=0.017331,
        source_name="tiny.pt",
        source_sha256="5e" * 32,
        source_step=1,
        torch_version="none",
        exported_at="2026-01-01T00:00:00+00:00",
    )
