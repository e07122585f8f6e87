"""A btd ONNX scorer built without torch: a fixed 3 x 3 high-pass, for the runtime's tests.

The graph honours the contract that ``btd-export`` writes and ``btd_core.engine`` reads:
input ``x`` float32 [B, 1, S, S] in [0, 1] with a dynamic batch axis; outputs
``residual`` float32 [B, 1, S, S] and ``score`` float32 [B]; a complete ``btd.*`` model card
in ``metadata_props``.  Inside, ``n = 2x - 1`` (the model space [-1, 1]) and

    residual = n - mean3x3(n)        (edge-aware mean: only pixels inside the patch count)
    score    = the card's reduction of the residual over the patch (mean of r^2 by default)

so a flat patch scores exactly 0, smooth anatomy scores little and a block of uniform noise
(what ``tests/study_builder.py`` plants) scores high: it ranks planted noise first by
construction, the way a trained BTD model ranks synthetic texture first.  It has learnt
nothing, and its card says so.  Only ``onnx`` (the ``test`` extra) is needed; building one
takes milliseconds and gives the same bytes on every run.
"""

from __future__ import annotations

from pathlib import Path

from btd_core.engine.model_card import REDUCTIONS, ModelCard
from btd_core.slices.profiles import profile_for

OPSET = 18
IR_VERSION = 10  # read by every onnxruntime >= 1.20

TEST_SCORER_NOTE = (
    "TEST SCORER, not a detector: a fixed 3x3 high-pass built with onnx.helper by "
    "tests/onnx_scorer.py (no U-Net, no trained weights); it ranks noise-like texture first"
)


def scorer_card(
    modality: str = "ct",
    patch_size: int | None = None,
    reduction: str = "mean_sq",
    side_multiple: int = 0,
) -> ModelCard:
    """The model card of the test scorer: every field btd-export writes, marked honestly.

    No diffusion model stands behind it: the schedule and t = 0 constants are the identity
    (``beta_0`` 0, no clamp), the versions say ``none`` and the source hash is zeros.
    Nothing depends on time, so the file's bytes are the same on every run.
    ``side_multiple`` > 0: the graph takes any sides that are multiples of it (body
    coverage), as btd-export's graphs do.
    """
    profile = profile_for(modality)
    return ModelCard(
        modality=profile.name,
        patch_size=patch_size or profile.patch_size,
        window_low=profile.window_low,
        window_high=profile.window_high,
        window_unit=profile.unit,
        intensity=profile.intensity,
        reduction=reduction,
        weights="none",
        beta_schedule="none (test high-pass scorer)",
        timesteps=1,
        beta_0=0.0,
        sqrt_recip_alphas_cumprod_0=1.0,
        sqrt_recipm1_alphas_cumprod_0=0.0,
        posterior_mean_coef1_0=1.0,
        posterior_mean_coef2_0=0.0,
        source_name="test-highpass",
        source_sha256="0" * 64,
        source_step=0,
        source_library_version="none",
        exporter_version="tests/onnx_scorer.py",
        torch_version="none",
        diffusion_library_version="none",
        opset=OPSET,
        exported_at="2026-01-01T00:00:00+00:00",
        clamp="none: no x0 estimate in a test high-pass scorer",
        residual_space="model space [-1, 1]: residual = x_norm - 3x3 mean of x_norm",
        description=TEST_SCORER_NOTE,
        side_multiple=side_multiple,
    )


def build_scorer(
    path: str | Path,
    *,
    modality: str = "ct",
    patch_size: int | None = None,
    reduction: str = "mean_sq",
    card: ModelCard | None = None,
    normalise: bool = True,
    side_multiple: int = 0,
) -> Path:
    """Write the test high-pass scorer to ``path`` and return the path.

    Parameters
    ----------
    modality:
        ``"ct"`` or ``"mri"``: the card's window and unit come from that profile.
    patch_size:
        Side S of the patch; the modality profile's (96 CT, 128 MRI) when ``None``.
    reduction:
        The score reduction, one of :data:`btd_core.engine.model_card.REDUCTIONS`.
    card:
        A card to write instead of :func:`scorer_card` (its patch size and reduction win).
    normalise:
        Map ``x`` to ``2x - 1`` first (the contract's model space); ``False`` filters
        ``x`` itself, which halves the residual (kept for the TUI snapshots' scorer).
    side_multiple:
        > 0: free height and width (multiples of it), as btd-export writes for body
        coverage; 0: only S x S patches.
    """
    import onnx
    from onnx import TensorProto, helper

    card = card or scorer_card(modality, patch_size, reduction, side_multiple)
    if card.reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {card.reduction!r}")
    size = card.patch_size
    rows, columns = ("H", "W") if card.side_multiple else (size, size)
    nodes = []
    source = "x"
    initializers = [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])]
    if normalise:
        initializers += [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ]
        nodes += [
            helper.make_node("Mul", ["x", "two"], ["x2"]),
            helper.make_node("Sub", ["x2", "one"], ["x_norm"]),
        ]
        source = "x_norm"
    nodes += [
        helper.make_node(
            "AveragePool",
            [source],
            ["blur"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=0,
        ),
        helper.make_node("Sub", [source, "blur"], ["residual"]),
    ]
    if card.reduction == "mean_abs":
        nodes += [
            helper.make_node("Abs", ["residual"], ["energy"]),
            helper.make_node("ReduceMean", ["energy", "axes"], ["score"], keepdims=0),
        ]
    else:
        reduce = "ReduceMax" if card.reduction == "max_sq" else "ReduceMean"
        nodes += [
            helper.make_node("Mul", ["residual", "residual"], ["energy"]),
            helper.make_node(reduce, ["energy", "axes"], ["score"], keepdims=0),
        ]
    graph = helper.make_graph(
        nodes,
        "btd_test_highpass",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 1, rows, columns])],
        [
            helper.make_tensor_value_info("residual", TensorProto.FLOAT, ["B", 1, rows, columns]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["B"]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="btd tests (onnx.helper)",
        doc_string="BTD test scorer: x [B,1,S,S] in [0,1] -> residual [B,1,S,S], score [B]. "
        "A fixed 3x3 high-pass, not a trained model. See metadata btd.*",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, card.to_metadata())
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path
