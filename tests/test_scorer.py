"""The runtime scorer: onnxruntime only, provider choice told truthfully, inputs checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btd_core.engine.model_card import ModelCardError
from btd_core.engine.scorer import ProviderError, Scorer, ScorerInputError
from tests.onnx_scorer import build_scorer, scorer_card
from tests.support.lanes import torch_installed


@torch_installed
def test_scoring_from_the_onnx_file_alone_does_not_import_torch(ct_onnx: Path):
    code = (
        "import sys, numpy as np; from btd_core.engine.scorer import Scorer; "
        f"s = Scorer({str(ct_onnx)!r}, provider='cpu'); "
        "r = s.score(np.full((2, 96, 96), 0.3, np.float32)); "
        "print(r.scores.shape, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2,) False"


def test_cpu_provider(ct_onnx: Path):
    scorer = Scorer(ct_onnx, provider="cpu")
    assert scorer.provider_in_use == "CPUExecutionProvider" and scorer.device == "cpu"
    assert scorer.provider_note == ""


def test_auto_reports_what_it_really_uses(ct_onnx: Path):
    scorer = Scorer(ct_onnx, provider="auto")
    assert scorer.provider_in_use == scorer._session.get_providers()[0]
    if scorer.device == "cpu":
        assert scorer.provider_note, "a CPU fallback must say why"


def test_cuda_fails_loudly_where_cuda_is_not_active(ct_onnx: Path):
    try:
        scorer = Scorer(ct_onnx, provider="cuda")
    except ProviderError as err:
        assert "CUDA was requested" in str(err)
    else:  # on a machine with a working GPU, CUDA must really be in use
        assert scorer.provider_in_use == "CUDAExecutionProvider"


def test_batching_does_not_change_scores(ct_onnx: Path):
    rng = np.random.default_rng(1)
    patches = rng.random((11, 96, 96)).astype(np.float32)
    one = Scorer(ct_onnx, provider="cpu", batch_size=1).score(patches).scores
    many = Scorer(ct_onnx, provider="cpu", batch_size=16).score(patches).scores
    np.testing.assert_allclose(one, many, rtol=1e-5)
    assert one.dtype == np.float32 and np.all(one > 0)


def test_accepts_channel_axis_and_empty_input(ct_onnx: Path):
    scorer = Scorer(ct_onnx, provider="cpu")
    x = np.full((2, 1, 96, 96), 0.5, np.float32)
    assert scorer.score(x).scores.shape == (2,)
    empty = scorer.score(np.zeros((0, 96, 96), np.float32), with_residuals=True)
    assert empty.scores.shape == (0,) and empty.residuals.shape == (0, 1, 96, 96)


@pytest.mark.parametrize(
    "patches, message",
    [
        (np.zeros((2, 128, 128), np.float32), r"\[N, 96, 96\]"),
        (np.zeros((96, 96), np.float32), r"\[N, 96, 96\]"),
        (np.full((1, 96, 96), 1500.0, np.float32), "windowed to"),
        (np.full((1, 96, 96), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input_is_refused(ct_onnx: Path, patches, message):
    with pytest.raises(ScorerInputError, match=message):
        Scorer(ct_onnx, provider="cpu").score(patches)


def test_unknown_provider(ct_onnx: Path):
    with pytest.raises(ValueError, match="auto, cuda, cpu"):
        Scorer(ct_onnx, provider="tpu")


def test_an_onnx_file_that_is_not_a_btd_scorer(tmp_path: Path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(path))
    with pytest.raises(ModelCardError, match="not a btd scorer"):
        Scorer(path, provider="cpu")


def test_a_file_that_is_not_onnx_gets_a_clear_error(tmp_path: Path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelCardError, match="not a readable ONNX model"):
        Scorer(path, provider="cpu")


def test_the_test_scorer_honours_the_onnx_contract(ct_onnx: Path, mri_onnx: Path, tmp_path: Path):
    """tests/onnx_scorer.py: the graph btd-export writes, without torch, in milliseconds."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(ct_onnx))
    (x,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert x.name == "x" and dims[1:] == [1, 96, 96] and isinstance(dims[0], str)
    assert [o.name for o in model.graph.output] == ["residual", "score"]
    assert {p.key for p in model.metadata_props} == set(scorer_card().to_metadata())
    scorer = Scorer(ct_onnx, provider="cpu")
    assert scorer.card == scorer_card("ct") and scorer.card.profile.name == "ct"
    assert "TEST SCORER" in scorer.card.description and scorer.card.weights == "none"
    rng = np.random.default_rng(0)
    flat = np.full((1, 96, 96), 0.4, np.float32)
    ramp = np.tile(np.linspace(0.2, 0.6, 96, dtype=np.float32), (1, 96, 1))
    noise = rng.uniform(0.1, 0.9, (1, 96, 96)).astype(np.float32)
    result = scorer.score(np.concatenate([flat, ramp, noise]), with_residuals=True)
    assert result.residuals is not None and result.residuals.shape == (3, 1, 96, 96)
    np.testing.assert_allclose(
        result.scores, (result.residuals.astype(np.float64) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5
    )
    assert result.scores[0] == 0.0 and result.scores[1] < 1e-4 < 0.1 < result.scores[2]
    mri = Scorer(mri_onnx, provider="cpu")
    assert (mri.card.modality, mri.card.patch_size, mri.card.window_unit) == ("mri", 128, "unit")
    assert mri.score(np.zeros((2, 128, 128), np.float32)).scores.shape == (2,)
    again = build_scorer(tmp_path / "again.onnx")
    assert again.read_bytes() == ct_onnx.read_bytes()  # deterministic: same bytes every run


@pytest.mark.parametrize("reduction", ["mean_abs", "max_sq"])
def test_the_test_scorer_reduces_as_its_card_says(tmp_path: Path, reduction: str):
    path = build_scorer(tmp_path / f"{reduction}.onnx", reduction=reduction, patch_size=32)
    scorer = Scorer(path, provider="cpu")
    assert (scorer.card.reduction, scorer.card.patch_size) == (reduction, 32)
    patches = np.random.default_rng(1).random((4, 32, 32)).astype(np.float32)
    result = scorer.score(patches, with_residuals=True)
    r = result.residuals.astype(np.float64)
    expected = np.abs(r).mean(axis=(1, 2, 3)) if reduction == "mean_abs" else (r**2).max((1, 2, 3))
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("environment", "threads", "expected"),
    [("1", None, 1), ("3", None, 3), ("3", 2, 2), ("", None, 0), ("many", None, 0), ("0", None, 0)],
)
def test_threads_default_to_omp_num_threads(
    ct_onnx: Path, monkeypatch: pytest.MonkeyPatch, environment: str, threads, expected: int
):
    """--threads, else OMP_NUM_THREADS (a positive integer), else onnxruntime's default (0)."""
    from btd_core.engine.options import EngineOptions

    monkeypatch.setenv("OMP_NUM_THREADS", environment)
    scorer = Scorer(ct_onnx, provider="cpu", engine=EngineOptions(threads=threads))
    assert scorer._session.get_session_options().intra_op_num_threads == expected
