import dataclasses

import pytest

from btd_core.engine.model_card import FORMAT_VERSION, ModelCard, ModelCardError
from tests.support.cards import make_card


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
