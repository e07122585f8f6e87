"""Checkpoint -> self-describing ONNX scorer, with a parity check against PyTorch.

The written graph takes ``x`` float32 [B, 1, H, W] in [0, 1] (free B; H and W free in
multiples of the card's ``side_multiple``, S x S where it is 0) and returns ``residual``
[B, 1, H, W] and ``score`` [B] (see
:class:`btd_core.model.residual.OneStepResidual`); its ``metadata_props`` hold the
:class:`btd_core.engine.model_card.ModelCard`.  The file is moved into place only
after onnxruntime's output matched the library's own ``p_sample(x, 0)``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from btd_core import __version__
from btd_core.engine.model_card import PRECISIONS, REDUCTIONS, ModelCard
from btd_core.engine.scorer import Scorer
from btd_core.errors import BtdError
from btd_core.model.checkpoint import LoadedCheckpoint, load_checkpoint
from btd_core.model.diffusion import library_version
from btd_core.model.residual import OneStepResidual, p_sample_residual, reduce_residual
from btd_core.slices.profiles import ModalityProfile, profile_for

from .attention import with_matmul_attention
from .precision import apply_precision
from .sample_patches import parity_patches

OPSET = 18
RESIDUAL_ATOL = 1e-5
"""Largest accepted |residual difference| between fp32 ONNX and ``p_sample``, model space."""
SCORE_RTOL = 1e-4
"""Largest accepted relative score difference between fp32 ONNX and ``p_sample``."""
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (RESIDUAL_ATOL, SCORE_RTOL),
    "fp16": (1e-3, 3e-2),
}
"""(residual atol, score rtol) accepted per precision, against fp32 ``p_sample(x, 0)``.
float16 keeps ~3 significant digits.  Measured for fp16: 5e-5 / 2e-3 on the parity
patches with onnxruntime's CPU provider (which computes several float16 operators in
float32), and on an H200 with the CUDA provider a largest relative tile-score error of
1.5e-2 (median 9e-4) over 2,907 tiles of 40 real CT slices, slice-score rank correlation
1.00000 (``benchmarks/bench_gpu.py``)."""


class ExportError(BtdError, RuntimeError):
    """The export could not be made or did not match PyTorch; nothing was written."""


@dataclass(frozen=True)
class ParityReport:
    """How closely the exported graph, run by onnxruntime on the CPU, matches PyTorch.

    Differences are against ``GaussianDiffusion.p_sample(x, 0)`` of the library itself.
    """

    patches: int
    max_abs_residual: float
    max_rel_score: float
    precision: str = "fp32"
    provider: str = "CPUExecutionProvider"
    regions: int = 0

    @property
    def limits(self) -> tuple[float, float]:
        """(residual atol, score rtol) for this precision."""
        return TOLERANCES[self.precision]

    @property
    def passed(self) -> bool:
        atol, rtol = self.limits
        return self.max_abs_residual <= atol and self.max_rel_score <= rtol

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        atol, rtol = self.limits
        return (
            f"parity of the {self.precision} file ({self.provider}) vs PyTorch fp32 "
            f"p_sample(x, 0) on {self.patches} real-looking patches"
            + (f" and {self.regions} region of 2 x 3 patches: " if self.regions else ": ")
            + f"max |residual diff| {self.max_abs_residual:.2e} (limit {atol:.0e}), "
            f"max relative score diff {self.max_rel_score:.2e} (limit {rtol:.0e}): {verdict}"
        )


@dataclass(frozen=True)
class ExportResult:
    """What one export produced."""

    path: Path
    card: ModelCard
    parity: ParityReport
    seconds: float
    size_bytes: int
    modality_source: str
    notes: list[str]
    weights_source: str = ""


def resolve_modality(
    requested: str | None, checkpoint: LoadedCheckpoint
) -> tuple[ModalityProfile, str]:
    """The modality profile to export with, and where that choice came from.

    Order: the ``--modality`` flag; the checkpoint's own ``btd`` metadata; the
    released files' names (``CT_model.pt``, ``MRI_model.pt``).
    """
    if requested:
        return profile_for(requested), "the --modality option"
    if checkpoint.extra.get("modality"):
        return profile_for(str(checkpoint.extra["modality"])), "the checkpoint's btd metadata"
    match = re.match(r"(ct|mri?)[_\-.]", checkpoint.name.lower())
    if match:
        return profile_for(match.group(1)), f"the file name {checkpoint.name!r}"
    raise ExportError(
        f"cannot tell whether {checkpoint.name} is a CT or an MRI model: pass --modality ct|mri"
    )


def build_card(
    checkpoint: LoadedCheckpoint,
    profile: ModalityProfile,
    reduction: str,
    opset: int,
    precision: str = "fp32",
) -> ModelCard:
    """The model card for ``checkpoint`` exported with ``profile`` and ``reduction``.

    The schedule's name and the t = 0 constants are the loader's: identified from the
    buffers and recomputed in float64, never read from reduced-precision buffers.
    """
    diffusion = checkpoint.diffusion
    return ModelCard(
        modality=profile.name,
        patch_size=profile.patch_size,
        window_low=profile.window_low,
        window_high=profile.window_high,
        window_unit=profile.unit,
        intensity=profile.intensity,
        reduction=reduction,
        weights=checkpoint.weights,
        beta_schedule=checkpoint.beta_schedule,
        timesteps=int(diffusion.num_timesteps),
        source_name=checkpoint.name,
        source_sha256=checkpoint.sha256,
        source_step=checkpoint.step,
        source_library_version=checkpoint.library_version,
        exporter_version=__version__,
        torch_version=torch.__version__,
        diffusion_library_version=library_version(),
        opset=opset,
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        description=str(checkpoint.extra.get("description", "")),
        precision=precision,
        side_multiple=downsampling(diffusion.model),
        **checkpoint.t0,
    )


def downsampling(unet: torch.nn.Module) -> int:
    """The U-Net's downsampling factor: every level but the last halves the image
    (``2 ** (len(downs) - 1)``, 8 for the released layouts); an input's height and width
    must be multiples of it."""
    return 2 ** (len(unet.downs) - 1)


EXPORTERS = ("torchscript", "dynamo")
"""torch.onnx's two exporters, in the order :func:`write_graph` tries them.

The TorchScript exporter traces this graph in about 3 s and writes 855 nodes; the
``torch.export`` one (dynamo) takes about 100 s for free height and width (symbolic shape
reasoning over every attention reshape) and writes 3,212 nodes that run about 8 % slower in
onnxruntime, with the same outputs (max |residual| difference 6e-8, both measured on this
project's CT U-Net, ``benchmarks/results/cpu-2026-12-07c/exporters.txt``).  torch deprecates
the TorchScript exporter; where a torch no longer has it, the dynamo one is used and the
export says so.  Either way the file is kept only after :func:`check_parity`."""


def write_graph(
    graph: OneStepResidual,
    size: int,
    path: Path,
    card: ModelCard,
    exporters: tuple[str, ...] = EXPORTERS,
) -> str:
    """Export ``graph`` to ONNX at ``path`` (one file) with ``card`` as metadata.

    ``exporters`` are tried in order (names from :data:`EXPORTERS`); returns the name of
    the one that wrote the graph.  Raises :class:`ExportError` when none could.
    """
    failures: list[str] = []
    for exporter in exporters:
        try:
            model = _trace(graph, size, card, exporter)
        except Exception as exc:  # each exporter's failure is reported below
            failures.append(f"{exporter}: {type(exc).__name__}: {exc}")
            continue
        break
    else:
        raise ExportError("torch.onnx could not export the graph: " + "; ".join(failures))
    model.doc_string = (
        "BTD scorer: x [B,1,H,W] in [0,1] -> residual [B,1,H,W] (model space), score [B]; "
        "H = W = btd.patch_size, or any multiples of btd.side_multiple when it is > 0. "
        "See metadata btd.*"
    )
    model.producer_name = "btd-export"
    model.producer_version = __version__
    del model.metadata_props[:]
    for key, value in card.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    if card.precision != "fp32":
        model = apply_precision(model, card.precision)
    onnx.save_model(model, str(path))
    return exporter


def _trace(graph: OneStepResidual, size: int, card: ModelCard, exporter: str) -> onnx.ModelProto:
    """One torch.onnx export of ``graph`` (batch free; height and width free in multiples
    of ``card.side_multiple`` when it is > 0), as an ONNX model in memory."""
    example = torch.rand(2, 1, size, size)
    free_sides = bool(card.side_multiple)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            sides = {2: "rows", 3: "columns"} if free_sides else {}
            buffer = io.BytesIO()
            torch.onnx.export(
                graph,
                (example,),
                buffer,
                input_names=["x"],
                output_names=["residual", "score"],
                dynamic_axes={
                    "x": {0: "batch", **sides},
                    "residual": {0: "batch", **sides},
                    "score": {0: "batch"},
                },
                opset_version=card.opset,
                dynamo=False,
            )
            return onnx.load_from_string(buffer.getvalue())
        if exporter != "dynamo":
            raise ValueError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
        dims: dict[int, object] = {0: torch.export.Dim("batch", min=1)}
        if free_sides:
            multiple, largest = card.side_multiple, 4096 // card.side_multiple
            dims[2] = multiple * torch.export.Dim("rows", min=1, max=largest)
            dims[3] = multiple * torch.export.Dim("columns", min=1, max=largest)
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=["x"],
            output_names=["residual", "score"],
            dynamic_shapes={"x01": dims},
            opset_version=card.opset,
            dynamo=True,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    return program.model_proto


def check_parity(
    checkpoint: LoadedCheckpoint, onnx_path: Path, precision: str = "fp32"
) -> ParityReport:
    """Run the exported file with onnxruntime's CPU provider; compare with fp32 ``p_sample``."""
    scorer = Scorer(onnx_path, provider="cpu")
    patches = parity_patches(scorer.card.profile)
    inputs = [patches]
    if scorer.card.side_multiple:
        # a region of 2 x 3 patches, as body coverage passes it
        size = scorer.card.patch_size
        mosaic = patches[:6, 0].reshape(2, 3, size, size).transpose(0, 2, 1, 3)
        inputs.append(np.ascontiguousarray(mosaic.reshape(1, 1, 2 * size, 3 * size)))
    abs_diff = rel_diff = 0.0
    for x in inputs:
        result = scorer.score(x, with_residuals=True)
        reference = p_sample_residual(checkpoint.diffusion, torch.from_numpy(x))
        ref_scores = reduce_residual(reference, scorer.card.reduction).numpy()
        assert result.residuals is not None
        abs_diff = max(abs_diff, float(np.abs(result.residuals - reference.numpy()).max()))
        rel = np.abs(result.scores - ref_scores) / np.maximum(np.abs(ref_scores), 1e-30)
        rel_diff = max(rel_diff, float(rel.max()))
    return ParityReport(
        patches=len(patches),
        regions=len(inputs) - 1,
        max_abs_residual=abs_diff,
        max_rel_score=rel_diff,
        precision=scorer.precision,
        provider=scorer.provider_in_use,
    )


def export_scorer(
    checkpoint_path: str | Path,
    output: str | Path,
    *,
    modality: str | None = None,
    weights: str | None = None,
    reduction: str = "mean_sq",
    opset: int = OPSET,
    precision: str = "fp32",
) -> ExportResult:
    """Export a checkpoint to a self-describing ONNX scorer at ``output``.

    Parameters
    ----------
    checkpoint_path:
        Upstream ``CT_model.pt`` / ``MRI_model.pt`` or this project's checkpoint.
    output:
        The ``.onnx`` file to write (replaced if present, only after parity passed).
    modality:
        ``"ct"`` or ``"mri"``; default from the checkpoint or its file name.
    weights:
        ``"model"`` (raw) or ``"ema"``; ``None``: the raw weights of a trainer checkpoint
        (upstream's choice); a bare state dict needs it stated (it cannot tell).
    reduction:
        Score reduction, one of :data:`btd_core.engine.model_card.REDUCTIONS`.
    precision:
        Arithmetic precision, one of :data:`btd_core.engine.model_card.PRECISIONS`.

    Raises
    ------
    btd_core.model.checkpoint.CheckpointError
        The checkpoint cannot be loaded.
    ExportError
        The modality is unknown, or ONNX does not match PyTorch; nothing is written.
    """
    if reduction not in REDUCTIONS:
        raise ExportError(f"unknown reduction {reduction!r}; choose from {', '.join(REDUCTIONS)}")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    started = time.perf_counter()
    output = Path(output)
    checkpoint = load_checkpoint(checkpoint_path, weights=weights)
    profile, modality_source = resolve_modality(modality, checkpoint)
    notes = list(checkpoint.notes)
    trained = checkpoint.extra.get("image_size", profile.patch_size)
    if trained != profile.patch_size:
        notes.append(
            f"the model was trained on {trained} px crops; it scores {profile.name} patches of "
            f"{profile.patch_size} px (the U-Net is convolutional; upstream trained on S px)"
        )
    card = build_card(checkpoint, profile, reduction, opset, precision)
    unet = with_matmul_attention(checkpoint.diffusion.model)
    graph = OneStepResidual(checkpoint.diffusion, reduction, unet=unet).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        exporter = write_graph(graph, profile.patch_size, partial, card)
        if exporter != EXPORTERS[0]:
            notes.append(f"written by torch.onnx's {exporter} exporter ({EXPORTERS[0]}'s failed)")
        parity = check_parity(checkpoint, partial, precision)
        if not parity.passed:
            raise ExportError(f"the ONNX scorer does not match PyTorch: {parity.describe()}")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(
        path=output,
        card=card,
        parity=parity,
        seconds=time.perf_counter() - started,
        size_bytes=output.stat().st_size,
        modality_source=modality_source,
        notes=notes,
        weights_source=checkpoint.weights_source,
    )
