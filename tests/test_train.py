"""btd train: a tiny real run lowers the loss, exports, and resumes exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("accelerate")
pytestmark = pytest.mark.torch

from btd_core.model.train_config import TrainConfig  # noqa: E402
from tests.study_builder import write_series  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genuine")
    write_series(root / "head", "693_UNCI.dcm", 2)
    write_series(root / "chest", "CT_small.dcm", 2)
    (root / "readme.txt").write_text("not a scan")
    return root


def tiny(data_dir: Path, out: Path, **changes) -> TrainConfig:
    values = dict(
        modality="ct",
        data_dir=str(data_dir),
        out_dir=str(out),
        steps=30,
        batch_size=8,
        grad_accumulation=1,
        learning_rate=1e-3,
        patch_size=32,
        save_every=10,
    )
    values.update(changes)
    return TrainConfig(**values).validate()


def test_config_round_trips_through_toml(tmp_path: Path):
    config = tiny(tmp_path, tmp_path / "run")
    path = config.save(tmp_path / "config.toml")
    assert TrainConfig.load(path) == config
    defaults = TrainConfig()
    assert (defaults.batch_size, defaults.grad_accumulation, defaults.learning_rate) == (
        64,
        2,
        8e-6,
    )
    assert (defaults.ema_decay, defaults.adam_betas, defaults.max_grad_norm) == (
        0.995,
        [0.9, 0.99],
        1.0,
    )
    assert (
        defaults.crop_size == 96 and dataclasses.replace(defaults, modality="mri").crop_size == 128
    )
    with pytest.raises(ValueError, match="unknown training settings: lr"):
        TrainConfig.from_dict({"lr": 1})
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(patch_size=30).validate()


@pytest.mark.slow  # 30 real training steps, then a full btd-export
def test_tiny_run_lowers_the_loss_and_exports(data_dir: Path, tmp_path: Path, capsys):
    from btd_core.model.checkpoint import load_checkpoint
    from btd_core.model.train import train
    from export.cli import main as export_main

    result = train(tiny(data_dir, tmp_path / "run"))
    assert result.step == 30 and result.slices == 4
    assert any("readme.txt" in line for line in result.left_out)
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["config.toml", "model-1.pt", "model-2.pt", "model-3.pt", "model-last.pt"]
    raw = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert {"step", "model", "opt", "ema", "scaler", "version"} <= set(raw)
    assert raw["btd"]["modality"] == "ct" and raw["btd"]["image_size"] == 32
    assert load_checkpoint(result.checkpoint).step == 30
    out = tmp_path / "model.onnx"
    assert export_main([str(result.checkpoint), "-o", str(out)]) == 0
    assert "trained on 32 px crops" in capsys.readouterr().out


def test_resume_keeps_step_and_optimiser_state(data_dir: Path, tmp_path: Path):
    from ema_pytorch import EMA

    from btd_core.model.diffusion import build_diffusion
    from btd_core.model.train import _resume, train

    out = tmp_path / "run"
    first = train(tiny(data_dir, out, steps=10))
    saved = torch.load(first.checkpoint, map_location="cpu", weights_only=True)
    assert saved["step"] == 10

    diffusion = build_diffusion(32)
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=1e-3, betas=(0.9, 0.99))
    ema = EMA(diffusion, beta=0.995, update_every=10)
    assert _resume(first.checkpoint, diffusion, optimiser, ema) == 10
    restored = optimiser.state_dict()
    for key, state in saved["opt"]["state"].items():
        for name, value in state.items():
            assert torch.equal(restored["state"][key][name], value), (key, name)
    for key, value in saved["model"].items():
        assert torch.equal(diffusion.state_dict()[key], value), key

    second = train(tiny(data_dir, out, steps=14))
    assert (second.start_step, second.step, len(second.losses)) == (10, 14, 4)
    final = torch.load(second.checkpoint, map_location="cpu", weights_only=True)
    assert final["step"] == 14
    assert int(final["opt"]["state"][0]["step"]) == 14


def test_low_noise_training_draws_t_below_the_limit_and_saves_plain_weights(
    data_dir: Path, tmp_path: Path
):
    from btd_core.model.checkpoint import load_checkpoint
    from btd_core.model.diffusion import build_diffusion
    from btd_core.model.train import LowNoiseObjective, train

    objective = LowNoiseObjective(build_diffusion(32), max_timestep=50)
    drawn = []
    real = objective.diffusion.p_losses

    def recording(x_start, t, *args, **kwargs):
        drawn.extend(t.tolist())
        return real(x_start, t, *args, **kwargs)

    objective.diffusion.p_losses = recording
    for _ in range(20):
        objective(torch.rand(8, 1, 32, 32))
    assert max(drawn) < 50 and min(drawn) >= 0 and len(set(drawn)) > 20
    result = train(tiny(data_dir, tmp_path / "run", steps=3, max_timestep=100))
    raw = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert set(raw["model"]) == set(build_diffusion(32).state_dict())  # no wrapper prefix
    assert raw["btd"]["config"]["max_timestep"] == 100
    assert load_checkpoint(result.checkpoint).step == 3
    with pytest.raises(ValueError, match="max_timestep"):
        tiny(data_dir, tmp_path / "bad", max_timestep=1001)
