"""The model card: what an exported ONNX scorer says about itself.

``btd-export`` writes every field below into the ONNX file's ``metadata_props``
as ``btd.<field>`` string entries; the runtime reads them back, so a user never
repeats the modality, patch size or window by hand.  This module is pure
Python: no torch, no onnxruntime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from btd_core.errors import BtdError
from btd_core.slices.profiles import INTENSITY_METHODS, MR_LEGACY, ModalityProfile

FORMAT_NAME = "btd-scorer"
FORMAT_VERSION = 1
KEY_PREFIX = "btd."

REDUCTIONS: dict[str, str] = {
    "mean_sq": "mean of r^2 over the patch (default; the paper's whole-patch mean)",
    "mean_abs": "mean of |r| over the patch (L1)",
    "max_sq": "max of r^2 over the patch",
}
"""Score reductions of the residual r, by name, with what each computes."""

PRECISIONS: dict[str, str] = {
    "fp32": "float32 throughout (the reference)",
    "fp16": "U-Net activations and weights in float16; normalisation statistics, the RMS "
    "norm and the residual arithmetic in float32; for GPUs (runs on CPUs too, slower)",
}
"""Arithmetic precisions of an exported scorer (``btd-export --precision``)."""


class ModelCardError(BtdError, ValueError):
    """The ONNX file is not a BTD scorer, or its card is incomplete or from a newer format."""


@dataclass(frozen=True)
class ModelCard:
    """Everything the runtime needs to know about one exported scorer.

    The scorer's input is ``x`` float32 [B, 1, S, S] already windowed to [0, 1];
    inside the graph it is mapped to [-1, 1] (``2x - 1``), passed once through the
    U-Net at t = 0, and the clamped one-step reverse ``x_{-1}`` is subtracted:
    ``residual = x - x_{-1}`` in the model's [-1, 1] space, ``score`` = the
    ``reduction`` of the residual per patch.
    """

    modality: str
    patch_size: int
    window_low: float
    window_high: float
    window_unit: str
    reduction: str
    weights: str
    beta_schedule: str
    timesteps: int
    beta_0: float
    sqrt_recip_alphas_cumprod_0: float
    sqrt_recipm1_alphas_cumprod_0: float
    posterior_mean_coef1_0: float
    posterior_mean_coef2_0: float
    source_name: str
    source_sha256: str
    source_step: int
    source_library_version: str
    exporter_version: str
    torch_version: str
    diffusion_library_version: str
    opset: int
    exported_at: str
    normalisation: str = "x * 2 - 1 inside the graph; input x in [0, 1]"
    clamp: str = "x0_hat clamped to [-1, 1]"
    residual_space: str = "model space [-1, 1]: residual = x_norm - x_{-1}"
    description: str = ""
    precision: str = "fp32"
    intensity: str = ""
    """How raw values were normalised for training and are for scanning
    (:data:`~btd_core.slices.profiles.INTENSITY_METHODS`); ``""`` in files exported before
    it was recorded: the CT window, or for MRI
    :data:`~btd_core.slices.profiles.MR_LEGACY`."""
    side_multiple: int = 0
    """What the graph's input accepts: 0, only ``patch_size`` x ``patch_size`` tiles (files
    exported before body coverage existed); k > 0, any height and width (pixels) that
    are multiples of k, the U-Net's downsampling factor (8 for the released layouts), so
    a whole body region is scored in one pass (:mod:`btd_core.slices.regions`)."""
    format_name: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    @property
    def profile(self) -> ModalityProfile:
        """The modality profile this scorer was exported with, rebuilt from the card."""
        return ModalityProfile(
            name=self.modality,
            patch_size=self.patch_size,
            window_low=self.window_low,
            window_high=self.window_high,
            unit=self.window_unit,
            intensity=self.intensity or (MR_LEGACY if self.modality == "mri" else "window"),
        )

    def to_metadata(self) -> dict[str, str]:
        """The card as ONNX ``metadata_props``: ``{"btd.<field>": str(value)}``."""
        return {
            KEY_PREFIX + f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ModelCard:
        """Read a card back from ONNX ``metadata_props``.

        Raises
        ------
        ModelCardError
            When the metadata is not a BTD card, is from a newer format version,
            or misses a required field.
        """
        name = metadata.get(KEY_PREFIX + "format_name")
        if name != FORMAT_NAME:
            raise ModelCardError(
                "this ONNX file is not a btd scorer (no 'btd.format_name' metadata); "
                "make one with btd-export"
            )
        version = int(metadata.get(KEY_PREFIX + "format_version", "0"))
        if version > FORMAT_VERSION:
            raise ModelCardError(
                f"this scorer uses card format {version}, newer than this btd understands "
                f"({FORMAT_VERSION}); upgrade btd"
            )
        values: dict[str, Any] = {}
        missing = []
        for f in dataclasses.fields(cls):
            raw = metadata.get(KEY_PREFIX + f.name)
            if raw is None:
                if f.default is dataclasses.MISSING:
                    missing.append(f.name)
                continue
            values[f.name] = _decode(raw, f.type)
        if missing:
            raise ModelCardError(f"the scorer's model card lacks: {', '.join(missing)}")
        card = cls(**values)
        if card.reduction not in REDUCTIONS:
            raise ModelCardError(f"unknown score reduction {card.reduction!r} in the model card")
        if card.intensity and card.intensity not in INTENSITY_METHODS:
            raise ModelCardError(
                f"unknown intensity normalisation {card.intensity!r} in the model card; upgrade btd"
            )
        if card.precision not in PRECISIONS:
            raise ModelCardError(
                f"unknown precision {card.precision!r} in the model card; upgrade btd"
            )
        return card


def _encode(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _decode(raw: str, type_name: object) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as err:
        raise ModelCardError(f"model card value {raw!r} is not a valid {kind}") from err
    return raw
