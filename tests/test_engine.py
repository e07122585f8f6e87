"""Precisions and engine options: every one the runtime offers scores within its stated
tolerance of the fp32 reference on the CPU; the CUDA-only ones fail with a clear message."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btd_core.engine.model_card import ModelCard, ModelCardError
from btd_core.engine.scorer import (
    EngineOptionError,
    EngineOptions,
    ProviderError,
    Scorer,
    ScorerOutputError,
    cuda_batch_limit,
)
from btd_core.scoring.tiles import ScanSettings, select_tiles
from tests.support.cards import tiny_card
from tests.support.fixed_study import write_tiny_scorer
from tests.support.real_ct import real_ct_slice


def real_tiles(count: int = 24) -> np.ndarray:
    """Tiles of two real CT slices (head, abdomen) as btd scan cuts them."""
    tiles = []
    for name in ("693_UNCI.dcm", "explicit_VR-UN.dcm"):
        tile_set = select_tiles(real_ct_slice(name), 96, ScanSettings(stride=96))
        tiles.append(tile_set.tiles)
    all_tiles = np.concatenate(tiles)
    pick = np.linspace(0, len(all_tiles) - 1, count).astype(int)
    return all_tiles[pick]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def fp16_onnx(upstream_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture checkpoint exported by btd-export with --precision fp16."""
    from export.cli import main

    out = tmp_path_factory.mktemp("fp16") / "ct_fp16.onnx"
    assert main([str(upstream_checkpoint), "-o", str(out), "--precision", "fp16"]) == 0
    return out


@pytest.fixture(scope="module")
def trained_fp16_onnx(trained_ct_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained fixture's fp32 file turned fp16 the way ``btd-export --precision fp16``
    does it (``apply_precision`` on the exported graph, the card says fp16), without a
    second torch export: that command is run end to end by ``fp16_onnx``."""
    import onnx

    from export.precision import apply_precision

    half = apply_precision(onnx.load(str(trained_ct_onnx)), "fp16")
    (entry,) = [e for e in half.metadata_props if e.key == "btd.precision"]
    entry.value = "fp16"
    out = tmp_path_factory.mktemp("fp16") / "ct_texture_fp16.onnx"
    onnx.save_model(half, str(out))
    return out


@pytest.mark.torch
def test_fp16_file_records_its_precision_and_scores_within_tolerance(
    exported_ct_onnx: Path, fp16_onnx: Path
):
    from export.onnx_export import TOLERANCES

    reference = Scorer(exported_ct_onnx, provider="cpu")
    half = Scorer(fp16_onnx, provider="cpu")
    assert reference.precision == "fp32" and half.precision == "fp16"
    assert fp16_onnx.stat().st_size < 0.6 * exported_ct_onnx.stat().st_size  # float16 weights
    tiles = real_tiles()
    ref = reference.score(tiles, with_residuals=True)
    got = half.score(tiles, with_residuals=True)
    atol, rtol = TOLERANCES["fp16"]
    assert np.abs(got.residuals - ref.residuals).max() <= atol
    assert (np.abs(got.scores - ref.scores) / ref.scores).max() <= rtol
    assert spearman(got.scores, ref.scores) >= 0.999


@pytest.mark.torch
def test_fp16_graph_keeps_the_residual_arithmetic_in_float32(exported_ct_onnx: Path):
    import onnx
    from onnx import TensorProto

    from export.precision import apply_precision, unet_node_range

    model = onnx.load(str(exported_ct_onnx))
    half = apply_precision(model, "fp16")
    assert not any(  # the input model is untouched by the conversion
        init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer
    )
    graph = half.graph
    _, last = unet_node_range(graph)
    tail = [node for node in list(graph.node)[last + 1 :] if not node.name.endswith("__to_fp32")]
    assert tail and not any("__fp16" in name for node in tail for name in node.input)
    assert {value.type.tensor_type.elem_type for value in graph.input} == {TensorProto.FLOAT}
    assert {value.type.tensor_type.elem_type for value in graph.output} == {TensorProto.FLOAT}
    conv_weights = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    kinds = {init.name: init.data_type for init in graph.initializer}
    assert {kinds[name] for name in conv_weights} == {TensorProto.FLOAT16}
    reductions = [node for node in graph.node if node.op_type == "ReduceL2"]
    assert reductions and not any("__fp16" in node.input[0] for node in reductions)


@pytest.mark.torch
@pytest.mark.slow
def test_planted_block_still_ranks_first_with_the_fp16_file(
    trained_fp16_onnx: Path, tmp_path: Path
):
    from btd_core.audit.pipeline import scan
    from btd_core.findings.ranking import rank
    from btd_core.study.discovery import discover
    from tests.study_builder import write_series

    built = write_series(tmp_path / "study", "explicit_VR-UN.dcm", 4, planted_index=2)
    discovery = discover(tmp_path / "study")
    outcome = scan(discovery, Scorer(trained_fp16_onnx, provider="cpu"), ScanSettings(stride=64))
    top = rank(outcome.results, discovery)[0]
    assert top.file.path == built.files[built.planted_index]
    x, y, size = built.planted_box
    assert top.result.tile_x <= x + size and x <= top.result.tile_x + 96
    assert top.result.tile_y <= y + size and y <= top.result.tile_y + 96


@pytest.mark.parametrize(
    "engine",
    [
        EngineOptions(threads=1),
        EngineOptions(optimization="disable"),
        EngineOptions(optimization="basic"),
        EngineOptions(optimization="extended"),
        EngineOptions(batch_size=3),
    ],
    ids=["1-thread", "opt-disable", "opt-basic", "opt-extended", "batch-3"],
)
def test_every_cpu_engine_option_scores_like_the_default(ct_onnx: Path, engine: EngineOptions):
    tiles = real_tiles(10)
    reference = Scorer(ct_onnx, provider="cpu").score(tiles, with_residuals=True)
    scored = Scorer(ct_onnx, provider="cpu", engine=engine).score(tiles, with_residuals=True)
    assert np.allclose(scored.scores, reference.scores, rtol=1e-4, atol=0)
    assert np.abs(scored.residuals - reference.residuals).max() <= 1e-5


def test_fixed_shape_bound_path_pads_and_scores_like_plain_runs(ct_onnx: Path):
    """The CUDA path (IO binding, one padded batch shape), run on CPU buffers."""
    tiles = real_tiles(7)
    scorer = Scorer(ct_onnx, provider="cpu", batch_size=4)
    plain = scorer.score(tiles, with_residuals=True)
    scorer._force_bound = True
    bound = scorer.score(tiles, with_residuals=True)
    only_scores = scorer.score(tiles)
    assert np.array_equal(bound.scores, plain.scores)
    assert np.array_equal(bound.residuals, plain.residuals)
    assert np.array_equal(only_scores.scores, plain.scores) and only_scores.residuals is None


@pytest.mark.parametrize(
    ("engine", "flag"),
    [
        (EngineOptions(cuda_graph=True), "--cuda-graph"),
        (EngineOptions(nhwc=True), "--nhwc"),
        (EngineOptions(cudnn_search="exhaustive"), "--cudnn-search exhaustive"),
    ],
)
@pytest.mark.parametrize("provider", ["cpu", "auto"])
def test_cuda_only_options_fail_clearly_on_the_cpu(
    ct_onnx: Path, engine: EngineOptions, flag: str, provider: str
):
    with pytest.raises(EngineOptionError) as caught:
        Scorer(ct_onnx, provider=provider, engine=engine)
    message = str(caught.value)
    assert flag in message and "CUDA provider" in message and "CPU" in message
    if provider == "auto":  # says why the CPU is in use
        assert "libcuda" in message or "no CUDA provider" in message


def test_cuda_only_option_on_the_command_line_exits_2_with_the_reason(
    ct_onnx: Path, tmp_path: Path
):
    from tests.support.fixed_study import write_fixed_series

    write_fixed_series(tmp_path / "study" / "ct", 2)
    command = [sys.executable, "-m", "btd_core.cli.main", "scan", str(tmp_path / "study")]
    command += ["--model", str(ct_onnx), "--out", str(tmp_path / "report"), "--cuda-graph"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--cuda-graph only work with onnxruntime's CUDA" in " ".join(done.stdout.split())
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "report").exists()


def test_cuda_requested_with_engine_options_is_still_a_provider_error(ct_onnx: Path):
    with pytest.raises(ProviderError, match="CUDA was requested"):
        Scorer(ct_onnx, provider="cuda", engine=EngineOptions(cuda_graph=True))


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        (EngineOptions(batch_size=0), "batch_size"),
        (EngineOptions(threads=0), "threads"),
        (EngineOptions(optimization="fast"), "optimization"),
        (EngineOptions(cudnn_search="quick"), "cudnn_search"),
    ],
)
def test_engine_values_out_of_range_are_refused(ct_onnx: Path, engine, message):
    with pytest.raises(ValueError, match=message):
        Scorer(ct_onnx, provider="cpu", engine=engine)


def test_cuda_batch_limit_keeps_tensors_under_two_to_the_31():
    assert cuda_batch_limit(96) == 606
    assert cuda_batch_limit(128) == 341
    for size in (64, 96, 128, 256):
        assert cuda_batch_limit(size) * 384 * size * size < 2**31
        assert (cuda_batch_limit(size) + 1) * 384 * size * size >= 2**31 or size >= 256


def test_non_finite_scores_are_an_error_not_a_ranking(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    path = write_tiny_scorer(tmp_path / "tiny.onnx")
    model = onnx.load(str(path))
    for node in model.graph.node:
        if "score" in node.output:
            node.output[0] = "raw_score"
    model.graph.initializer.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    model.graph.node.append(helper.make_node("Div", ["raw_score", "zero"], ["score"]))
    onnx.save(model, str(path))
    with pytest.raises(ScorerOutputError, match="NaN or infinite"):
        Scorer(path, provider="cpu").score(real_tiles(2))


def test_precision_round_trips_and_old_cards_read_as_fp32():
    card = dataclasses.replace(tiny_card(96), precision="fp16")
    assert ModelCard.from_metadata(card.to_metadata()).precision == "fp16"
    old = {k: v for k, v in tiny_card(96).to_metadata().items() if k != "btd.precision"}
    assert ModelCard.from_metadata(old).precision == "fp32"
    with pytest.raises(ModelCardError, match="precision"):
        ModelCard.from_metadata({**card.to_metadata(), "btd.precision": "int4"})
