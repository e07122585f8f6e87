import dataclasses

import pytest

from btd_core.engine.model_card import FORMAT_VERSION, ModelCard, ModelCardError


def make_card(**changes) -> ModelCard:
    values = dict(
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
    return ModelCard(**values)


def test_round_trip_keeps_every_field_and_type():
    card = make_card()
    metadata = card.to_metadata()
    assert all(isinstance(v, str) and k.startswith("btd.") for k, v in metadata.items())
    back = ModelCard.from_metadata(metadata)
    assert back == card
    for field in dataclasses.fields(card):
        assert type(getattr(back, field.name)) is type(getattr(card, field.name))


def test_floats_survive_exactly():
    card = make_card(beta_0=1 / 3)
    assert ModelCard.from_metadata(card.to_metadata()).beta_0 == 1 / 3


def test_profile_rebuilt_from_card():
    profile = make_card().profile
    assert (profile.name, profile.patch_size, profile.window_low, profile.unit) == (
        "ct",
        96,
        -700.0,
        "HU",
    )


def test_not_a_btd_file():
    with pytest.raises(ModelCardError, match="not a btd scorer"):
        ModelCard.from_metadata({"producer": "someone"})


def test_newer_format_is_refused_with_advice():
    metadata = make_card().to_metadata()
    metadata["btd.format_version"] = str(FORMAT_VERSION + 1)
    with pytest.raises(ModelCardError, match="upgrade btd"):
        ModelCard.from_metadata(metadata)


def test_missing_field_is_named():
    metadata = make_card().to_metadata()
    del metadata["btd.patch_size"]
    with pytest.raises(ModelCardError, match="patch_size"):
        ModelCard.from_metadata(metadata)


def test_bad_number_and_bad_reduction():
    metadata = make_card().to_metadata()
    metadata["btd.patch_size"] = "ninety-six"
    with pytest.raises(ModelCardError, match="not a valid int"):
        ModelCard.from_metadata(metadata)
    with pytest.raises(ModelCardError, match="reduction"):
        ModelCard.from_metadata(make_card(reduction="median").to_metadata())
