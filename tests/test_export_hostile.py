"""btd-export on checkpoints that mislead: reduced-precision buffers, unknown schedules,
bare state dicts that cannot say whether they hold EMA weights.

Every checkpoint here is made in the test from the library itself (``build_diffusion``
or ``GaussianDiffusion`` with another schedule), at 32 px (the weights do not depend on
the patch size), then cast to float16 / bfloat16 the way a model-only copy is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("denoising_diffusion_pytorch")
pytest.importorskip("onnx")
pytestmark = pytest.mark.torch

from btd_core.model.checkpoint import (  # noqa: E402
    SCHEDULE_BUFFERS,
    CheckpointError,
    load_checkpoint,
    schedule_buffers,
    t0_from_buffers,
)
from btd_core.model.diffusion import (  # noqa: E402
    OBJECTIVE,
    TIMESTEPS,
    UNET_DIM,
    UNET_DIM_MULTS,
    build_diffusion,
    ddp,
)
from btd_core.slices.profiles import CT  # noqa: E402
from export.cli import main as export_main  # noqa: E402
from export.onnx_export import build_card  # noqa: E402

SIGMOID_SQRT_RECIP_0 = 1.000150173420017
"""sqrt(1 / alphas_cumprod[0]) of 1.8.3's sigmoid schedule, T = 1000, in float64."""
SIGMOID_SQRT_RECIPM1_0 = 0.017331168226354974
SIGMOID_BETA_0 = 0.0003002791974102692


def _library_state(schedule: str = "sigmoid", **schedule_kwargs) -> dict[str, torch.Tensor]:
    """The state dict of a fresh model of the method made by the library with ``schedule``."""
    torch.manual_seed(0)
    if schedule == "sigmoid" and not schedule_kwargs:
        return build_diffusion(32).state_dict()
    unet = ddp.Unet(dim=UNET_DIM, dim_mults=UNET_DIM_MULTS, channels=1)
    diffusion = ddp.GaussianDiffusion(
        unet,
        image_size=32,
        objective=OBJECTIVE,
        timesteps=TIMESTEPS,
        beta_schedule=schedule,
        schedule_fn_kwargs=schedule_kwargs,
    )
    return diffusion.state_dict()


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def sigmoid_fp32() -> dict[str, torch.Tensor]:
    return _library_state()


@pytest.fixture()
def bare_fp16(sigmoid_fp32, tmp_path: Path) -> Path:
    """A bare fp16 ``GaussianDiffusion.state_dict()``, like a model-only EMA copy."""
    return _save(_cast(sigmoid_fp32, torch.float16), tmp_path / "ema_fp16.pt")


# --- EMA or raw: a bare state dict cannot say --------------------------------------------


def test_a_bare_state_dict_needs_to_be_told_ema_or_raw(bare_fp16: Path):
    with pytest.raises(CheckpointError, match=r"bare state dict.*--ema.*--raw"):
        load_checkpoint(bare_fp16)


@pytest.mark.parametrize("weights", ["ema", "model"])
def test_a_bare_state_dict_is_what_the_user_says(bare_fp16: Path, weights: str):
    loaded = load_checkpoint(bare_fp16, weights=weights)
    assert loaded.weights == weights
    assert "stated by the user" in loaded.weights_source


def test_a_trainer_checkpoint_keeps_its_default(upstream_checkpoint: Path, tmp_path: Path):
    """Upstream's layout says which is which: raw ``model`` by default, ``ema`` on request;
    that holds for a float16 copy of the whole file too."""
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    loaded = load_checkpoint(upstream_checkpoint)
    assert (loaded.weights, loaded.beta_schedule, loaded.notes) == ("model", "sigmoid", [])
    assert "default" in loaded.weights_source
    half = {**raw, "model": _cast(raw["model"], torch.float16)}
    half["ema"] = _cast(raw["ema"], torch.float16)
    path = _save(half, tmp_path / "CT_model_fp16.pt")
    assert load_checkpoint(path).weights == "model"
    ema = load_checkpoint(path, weights="ema")
    assert ema.weights == "ema" and ema.beta_schedule == "sigmoid"
    assert "weights stored as float16, cast to float32" in ema.notes
    assert ema.t0["sqrt_recip_alphas_cumprod_0"] == pytest.approx(SIGMOID_SQRT_RECIP_0, rel=1e-12)


# --- the schedule: identified from coarse buffers, constants recomputed in float64 ------


def test_fp16_buffers_do_not_supply_the_t0_constants(bare_fp16: Path, sigmoid_fp32):
    stored = torch.load(bare_fp16, weights_only=True)
    assert float(stored["sqrt_recip_alphas_cumprod"][0]) == 1.0  # what fp16 keeps of 1.00015
    loaded = load_checkpoint(bare_fp16, weights="ema")
    assert loaded.beta_schedule == "sigmoid"
    assert loaded.t0 == t0_from_buffers(schedule_buffers("sigmoid", TIMESTEPS))
    assert loaded.t0["sqrt_recip_alphas_cumprod_0"] == pytest.approx(SIGMOID_SQRT_RECIP_0, 1e-12)
    assert loaded.t0["sqrt_recipm1_alphas_cumprod_0"] == pytest.approx(
        SIGMOID_SQRT_RECIPM1_0, rel=1e-12
    )
    assert loaded.t0["beta_0"] == pytest.approx(SIGMOID_BETA_0, rel=1e-12)
    assert loaded.t0["posterior_mean_coef1_0"] == 1.0
    assert loaded.t0["posterior_mean_coef2_0"] == 0.0
    # the model's buffers are the library's own float32 ones, not the fp16 copy's
    for name in SCHEDULE_BUFFERS:
        assert torch.equal(getattr(loaded.diffusion, name), sigmoid_fp32[name]), name


def test_fp16_weights_are_cast_and_the_user_is_told(bare_fp16: Path):
    stored = torch.load(bare_fp16, weights_only=True)
    loaded = load_checkpoint(bare_fp16, weights="ema")
    weight = loaded.diffusion.model.init_conv.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, stored["model.init_conv.weight"].float())
    assert "weights stored as float16, cast to float32" in loaded.notes
    (schedule_note,) = [n for n in loaded.notes if "schedule" in n]
    assert "sigmoid" in schedule_note and "recomputed in float64" in schedule_note
    assert "sqrt_recip_alphas_cumprod[0] = 1.00015017 (stored 1)" in schedule_note


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_each_library_schedule_is_recognised_in_reduced_precision(
    schedule: str, dtype: torch.dtype, tmp_path: Path
):
    path = _save(_cast(_library_state(schedule), dtype), tmp_path / f"{schedule}.pt")
    loaded = load_checkpoint(path, weights="model")
    assert loaded.beta_schedule == schedule
    assert loaded.t0 == t0_from_buffers(schedule_buffers(schedule, TIMESTEPS))


def test_float64_copies_of_float32_buffers_are_recognised(sigmoid_fp32, tmp_path: Path):
    path = _save(_cast(sigmoid_fp32, torch.float64), tmp_path / "double.pt")
    loaded = load_checkpoint(path, weights="model")
    assert loaded.beta_schedule == "sigmoid"
    assert "weights stored as float64, cast to float32" in loaded.notes


def test_an_unknown_schedule_in_fp16_is_refused(tmp_path: Path):
    state = _cast(_library_state("sigmoid", start=-2), torch.float16)
    path = _save(state, tmp_path / "custom_fp16.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, weights="ema")
    message = str(caught.value)
    assert "refused" in message and "float16" in message
    assert "match none of the library's schedules" in message
    assert all(name in message for name in ("sigmoid:", "cosine:", "linear:"))


def test_an_unknown_schedule_in_fp32_is_used_as_stored_and_called_custom(tmp_path: Path):
    state = _library_state("sigmoid", start=-2)
    path = _save(state, tmp_path / "custom_fp32.pt")
    loaded = load_checkpoint(path, weights="model")
    assert loaded.beta_schedule == "custom"
    assert loaded.t0 == t0_from_buffers(state)
    assert any("custom" in note for note in loaded.notes)


@pytest.mark.parametrize(
    "buffer, index, value",
    [
        ("sqrt_recip_alphas_cumprod", 0, 1.5),  # the constant the residual uses, altered
        ("sqrt_recipm1_alphas_cumprod", 0, 0.02),
        ("posterior_mean_coef2", 0, 0.1),
        ("betas", 500, float("nan")),
        ("alphas_cumprod", 999, float("inf")),
    ],
)
def test_one_altered_fp16_buffer_is_refused(
    sigmoid_fp32, tmp_path: Path, buffer: str, index: int, value: float
):
    state = _cast(sigmoid_fp32, torch.float16)
    state[buffer] = state[buffer].clone()
    state[buffer][index] = value
    path = _save(state, tmp_path / "altered.pt")
    with pytest.raises(CheckpointError, match=rf"sigmoid: {buffer}\[{index}\]"):
        load_checkpoint(path, weights="ema")


def test_the_card_records_the_schedule_and_float64_constants(bare_fp16: Path):
    card = build_card(load_checkpoint(bare_fp16, weights="ema"), CT, "mean_sq", 18)
    assert (card.beta_schedule, card.weights) == ("sigmoid", "ema")
    assert card.sqrt_recip_alphas_cumprod_0 == pytest.approx(SIGMOID_SQRT_RECIP_0, rel=1e-12)
    assert card.beta_0 == pytest.approx(SIGMOID_BETA_0, rel=1e-12)


# --- the command --------------------------------------------------------------------------


def test_cli_refuses_a_bare_state_dict_without_ema_or_raw(bare_fp16: Path, capsys):
    out = bare_fp16.with_suffix(".onnx")
    assert export_main([str(bare_fp16), "--modality", "ct", "-o", str(out)]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "does not record whether it holds EMA or raw" in printed
    assert "--ema" in printed and "--raw" in printed
    assert not out.exists()


def test_cli_ema_and_raw_exclude_each_other(bare_fp16: Path):
    with pytest.raises(SystemExit) as caught:
        export_main([str(bare_fp16), "--ema", "--raw"])
    assert caught.value.code == 2


def test_cli_exports_a_bare_fp16_state_dict_truthfully(bare_fp16: Path, capsys):
    from btd_core.engine.scorer import Scorer

    out = bare_fp16.with_suffix(".onnx")
    assert export_main([str(bare_fp16), "--modality", "ct", "--ema", "-o", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "weights: ema (as stated by the user" in printed
    assert "note: weights stored as float16, cast to float32" in printed
    assert "identified as the sigmoid schedule" in printed
    assert "schedule sigmoid" in printed and "PASS" in printed
    card = Scorer(out, provider="cpu").card
    assert (card.beta_schedule, card.weights) == ("sigmoid", "ema")
    assert card.sqrt_recip_alphas_cumprod_0 == pytest.approx(SIGMOID_SQRT_RECIP_0, rel=1e-12)
