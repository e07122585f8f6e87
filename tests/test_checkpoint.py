"""Loading checkpoints: the released layout loads strictly; everything else is refused clearly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("denoising_diffusion_pytorch")
pytestmark = pytest.mark.torch

from btd_core.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint  # noqa: E402
from btd_core.model.diffusion import PARAMETER_COUNT, build_diffusion  # noqa: E402


def test_released_layout_loads_strictly(upstream_checkpoint: Path):
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    assert set(raw) == {"step", "model", "opt", "ema", "scaler", "version"}
    assert len(raw["model"]) == 287
    loaded = load_checkpoint(upstream_checkpoint)
    assert loaded.weights == "model"
    assert loaded.step == 1
    assert loaded.library_version == "1.8.3"
    assert loaded.name == "CT_model.pt"
    assert len(loaded.sha256) == 64
    assert sum(p.numel() for p in loaded.diffusion.parameters()) == PARAMETER_COUNT
    assert not loaded.diffusion.training
    for key, value in loaded.diffusion.state_dict().items():
        assert torch.equal(value, raw["model"][key].float()), key


def test_ema_weights_are_the_ema_model(upstream_checkpoint: Path):
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    loaded = load_checkpoint(upstream_checkpoint, weights="ema")
    assert loaded.weights == "ema"
    for key, value in loaded.diffusion.state_dict().items():
        assert torch.equal(value, raw["ema"]["ema_model." + key]), key


def test_bare_fp16_state_dict_loads(upstream_checkpoint: Path, tmp_path: Path):
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in raw["model"].items()}
    path = tmp_path / "model_fp16.pt"
    torch.save(half, path)
    with pytest.raises(CheckpointError, match=r"--ema.*--raw"):  # it cannot tell: say which
        load_checkpoint(path)
    loaded = load_checkpoint(path, weights="model")
    weight = loaded.diffusion.model.init_conv.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, half["model.init_conv.weight"].float())
    assert load_checkpoint(path, weights="ema").weights == "ema"


def test_2x_layout_is_refused(upstream_checkpoint: Path, tmp_path: Path):
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    state = {}
    for key, value in raw["model"].items():
        if key.endswith("block1.norm.weight") or key.endswith("block2.norm.weight"):
            state[key[: -len("weight")] + "g"] = value.view(1, -1, 1, 1)
        elif not (key.endswith("block1.norm.bias") or key.endswith("block2.norm.bias")):
            state[key] = value
    state["model.mid_attn.mem_kv"] = torch.zeros(2, 4, 4, 32)
    path = tmp_path / "v2.pt"
    torch.save({**raw, "model": state, "version": "2.0.18"}, path)
    with pytest.raises(CheckpointError, match=r"2\.0\.18.*RMSNorm.*1\.8\.3"):
        load_checkpoint(path)


def test_version_field_alone_flags_2x(upstream_checkpoint: Path, tmp_path: Path):
    raw = torch.load(upstream_checkpoint, map_location="cpu", weights_only=True)
    path = tmp_path / "v2.pt"
    torch.save({**raw, "version": "2.1.1"}, path)
    with pytest.raises(CheckpointError, match=r"2\.1\.1"):
        load_checkpoint(path)


def test_truncated_file(upstream_checkpoint: Path, tmp_path: Path):
    data = upstream_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"model weights, honest\n", "not a PyTorch checkpoint"),
        (os.urandom(4096), "not a PyTorch checkpoint"),
    ],
    ids=["empty", "text", "random-bytes"],  # the same names in every xdist worker
)
def test_not_a_checkpoint_at_all(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize(
    "payload, reason",
    [
        ([1, 2, 3], "holds a list"),
        ({"weights": torch.ones(3)}, "no 'model' entry"),
        ({"model": {"init_conv.weight": torch.ones(3)}}, "do not fit"),
    ],
)
def test_pickles_that_are_not_checkpoints(tmp_path: Path, payload, reason: str):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(path)


def test_other_architecture_is_refused(tmp_path: Path):
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    other = GaussianDiffusion(
        Unet(dim=16, dim_mults=(1, 2), channels=1, full_attn=(False, True)), image_size=32
    )
    path = tmp_path / "small.pt"
    torch.save({"model": other.state_dict(), "step": 3, "version": "1.8.3"}, path)
    with pytest.raises(CheckpointError, match="do not fit BTD's U-Net"):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this calls os.system: what a hostile .pt file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 5"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, writer: str):
    marker = tmp_path / "PWNED"
    path = tmp_path / "CT_model.pt"
    payload = {"step": 1, "model": _Exploit(marker), "version": "1.8.3"}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert not marker.exists(), "unpickling ran the payload"
    message = str(caught.value)
    if writer != "pickle protocol 5":
        assert "refused" in message and "system" in message and "nothing from it was run" in message
    else:  # protocol 5 framing is refused before the global is even read
        assert "not plain tensors" in message


def test_read_checkpoint_returns_the_top_level_dict(upstream_checkpoint: Path):
    assert read_checkpoint(upstream_checkpoint)["version"] == "1.8.3"


def test_patch_size_must_fit_the_unet():
    with pytest.raises(ValueError, match="multiple of 8"):
        build_diffusion(100)
