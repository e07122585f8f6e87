"""btd-export end to end: released-layout checkpoint -> ONNX that scores like the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra")
onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.torch

from btd_core.engine.model_card import ModelCard  # noqa: E402
from btd_core.engine.scorer import Scorer  # noqa: E402
from btd_core.model.residual import p_sample_residual  # noqa: E402
from btd_core.slices.profiles import CT, MRI  # noqa: E402
from export.cli import main as export_main  # noqa: E402
from export.onnx_export import ExportError, resolve_modality  # noqa: E402
from export.sample_patches import parity_patches  # noqa: E402


def _ct_like_batch(batch: int, seed: int) -> np.ndarray:
    """Real CT patches with a bright blob and Gaussian noise: not the export's own check input."""
    rng = np.random.default_rng(seed)
    base = parity_patches(CT)
    picks = base[rng.integers(0, len(base), batch)].copy()
    yy, xx = np.mgrid[:96, :96]
    for patch in picks:
        cy, cx = rng.integers(20, 76, 2)
        patch[0] += 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
        patch[0] += rng.normal(0, 0.01, (96, 96))
    return np.clip(picks, 0, 1).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_onnx_matches_library_p_sample(exported_ct_onnx: Path, loaded_checkpoint, batch: int):
    x = _ct_like_batch(batch, seed=batch)
    scorer = Scorer(exported_ct_onnx, provider="cpu", batch_size=8)
    result = scorer.score(x, with_residuals=True)
    reference = p_sample_residual(loaded_checkpoint.diffusion, torch.from_numpy(x)).numpy()
    assert result.residuals is not None and result.residuals.shape == (batch, 1, 96, 96)
    np.testing.assert_allclose(result.residuals, reference, atol=1e-5, rtol=0)
    ref_scores = (reference.astype(np.float64) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(result.scores, ref_scores, rtol=1e-4)


def test_graph_shape_is_the_contract(exported_ct_onnx: Path):
    model = onnx.load(str(exported_ct_onnx))
    (x,) = model.graph.input
    assert x.name == "x"
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    # batch, channel, and free height and width in multiples of the U-Net's 8
    assert dims[1] == 1 and all(isinstance(d, str) for d in (dims[0], *dims[2:]))
    assert [o.name for o in model.graph.output] == ["residual", "score"]
    scorer = Scorer(exported_ct_onnx, provider="cpu")
    assert scorer.card.side_multiple == 8
    assert scorer.accepts(96, 96) and scorer.accepts(160, 224) and not scorer.accepts(100, 96)
    region = np.random.default_rng(0).random((1, 160, 224), dtype=np.float32)
    assert scorer.score(region, with_residuals=True).residuals.shape == (1, 1, 160, 224)


def test_the_torch_free_test_scorer_has_the_exported_files_interface(
    exported_ct_onnx: Path, tmp_path: Path
):
    """tests/onnx_scorer.py mimics btd-export: the same inputs, outputs and card keys
    (with free sides, as btd-export writes them)."""
    from tests.onnx_scorer import build_scorer

    free = build_scorer(tmp_path / "free.onnx", side_multiple=8)

    def interface(path: Path):
        model = onnx.load(str(path))
        shapes = [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [bool(d.dim_param) or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in [*model.graph.input, *model.graph.output]
        ]
        return shapes, sorted(p.key for p in model.metadata_props)

    assert interface(free) == interface(exported_ct_onnx)


def test_model_card_round_trips_through_the_file(exported_ct_onnx: Path, upstream_checkpoint: Path):
    import hashlib

    card = Scorer(exported_ct_onnx, provider="cpu").card
    assert card.modality == "ct" and card.patch_size == 96
    assert (card.window_low, card.window_high, card.window_unit) == (-700.0, 2000.0, "HU")
    assert card.reduction == "mean_sq" and card.weights == "model"
    assert card.source_sha256 == hashlib.sha256(upstream_checkpoint.read_bytes()).hexdigest()
    assert card.source_name == "CT_model.pt" and card.source_step == 1
    assert card.beta_schedule == "sigmoid" and card.timesteps == 1000
    assert card.posterior_mean_coef1_0 == 1.0 and card.posterior_mean_coef2_0 == 0.0
    metadata = {p.key: p.value for p in onnx.load(str(exported_ct_onnx)).metadata_props}
    assert ModelCard.from_metadata(metadata) == card
    assert card.profile == CT


def test_ema_mri_export(upstream_checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "mri_ema.onnx"
    assert (
        export_main(
            [
                str(upstream_checkpoint),
                "-o",
                str(out),
                "--ema",
                "--modality",
                "mri",
                "--reduction",
                "mean_abs",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "PASS" in printed and "wrote" in printed
    scorer = Scorer(out, provider="cpu")
    assert (scorer.card.weights, scorer.card.modality, scorer.card.patch_size) == (
        "ema",
        "mri",
        128,
    )
    assert scorer.card.reduction == "mean_abs"
    assert scorer.card.profile == MRI
    assert scorer.score(parity_patches(MRI)).scores.shape == (6,)


def test_export_of_a_bad_checkpoint_writes_nothing(tmp_path: Path, capsys):
    bad = tmp_path / "CT_model.pt"
    bad.write_bytes(b"\x80\x02not really")
    out = tmp_path / "out.onnx"
    assert export_main([str(bad), "-o", str(out)]) == 2  # could not run
    assert "btd-export:" in capsys.readouterr().out
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CT_model.pt"]


class _Named:
    def __init__(self, name: str, extra: dict | None = None) -> None:
        self.name = name
        self.extra = extra or {}


@pytest.mark.parametrize(
    "name, extra, flag, expected",
    [
        ("CT_model.pt", None, None, "ct"),
        ("MRI_model.pt", None, None, "mri"),
        ("weights.pt", {"modality": "mri"}, None, "mri"),
        ("CT_model.pt", None, "mri", "mri"),
    ],
)
def test_modality_resolution(name, extra, flag, expected):
    profile, _ = resolve_modality(flag, _Named(name, extra))
    assert profile.name == expected


def test_unknown_modality_asks_for_the_flag():
    with pytest.raises(ExportError, match="--modality"):
        resolve_modality(None, _Named("model-12.pt"))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_each_exporter_writes_a_graph_that_scores_like_the_library(
    exported_ct_onnx: Path, tmp_path: Path, exporter: str
):
    """Both torch.onnx exporters (the TorchScript one first, dynamo where a torch has lost
    it) give a graph with free batch, height and width that equals ``p_sample(x, 0)``; a
    small U-Net of the library's class keeps the dynamo trace short."""
    import dataclasses

    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    from btd_core.model.residual import OneStepResidual
    from export.attention import with_matmul_attention
    from export.onnx_export import write_graph

    torch.manual_seed(0)
    unet = Unet(dim=8, dim_mults=(1, 2), channels=1, full_attn=(False, True))
    diffusion = GaussianDiffusion(
        unet, image_size=32, timesteps=1000, objective="pred_noise", beta_schedule="sigmoid"
    ).eval()
    graph = OneStepResidual(diffusion, "mean_sq", unet=with_matmul_attention(unet)).eval()
    card = dataclasses.replace(
        Scorer(exported_ct_onnx, provider="cpu").card, patch_size=32, side_multiple=2
    )
    path = tmp_path / f"{exporter}.onnx"
    assert write_graph(graph, 32, path, card, exporters=(exporter,)) == exporter
    scorer = Scorer(path, provider="cpu")
    assert scorer.card == card
    x = np.random.default_rng(1).random((3, 1, 48, 80), dtype=np.float32)
    result = scorer.score(x, with_residuals=True)
    reference = p_sample_residual(diffusion, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.residuals, reference, atol=1e-6, rtol=0)


def test_no_exporter_that_works_means_an_error_and_no_file(exported_ct_onnx: Path, tmp_path: Path):
    from export.onnx_export import write_graph

    card = Scorer(exported_ct_onnx, provider="cpu").card
    path = tmp_path / "none.onnx"
    with pytest.raises(ExportError, match=r"could not export.*unknown exporter 'tflite'"):
        write_graph(torch.nn.Identity(), 96, path, card, exporters=("tflite",))
    assert not path.exists()
