"""The runtime scorer: an exported BTD ONNX file, run with onnxruntime.

This is the one place that creates onnxruntime sessions.  It needs numpy and
onnxruntime only, never torch: importing it leaves ``torch`` out of
``sys.modules``.

Provider choice (``provider=``):

``"auto"``
    CUDA when it is really active, else the CPU (the reason is kept in
    :attr:`Scorer.provider_note`).
``"cuda"``
    CUDA or a :class:`ProviderError`.  onnxruntime-gpu lists CUDA as available
    even where its libraries cannot load, then silently runs on the CPU; the
    provider in use is therefore read from ``session.get_providers()``.
``"cpu"``
    The CPU only.
"""

from __future__ import annotations

import ctypes
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from .model_card import ModelCard, ModelCardError

ProviderChoice = Literal["auto", "cuda", "cpu"]
PROVIDER_CHOICES: tuple[str, ...] = ("auto", "cuda", "cpu")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_BATCH = {CUDA: 256, CPU: 8}
"""Patches per onnxruntime call, by provider in use."""


class ProviderError(RuntimeError):
    """The requested execution provider is not active."""


class ScorerInputError(ValueError):
    """Patches of the wrong shape, type or range were given to :meth:`Scorer.score`."""


@dataclass(frozen=True)
class PatchScores:
    """Scores of N patches, and optionally their residuals.

    Attributes
    ----------
    scores:
        float32 [N]: the model card's reduction of each patch's residual
        (for ``mean_sq``: mean of r^2, r in model space [-1, 1]; typically 1e-5 .. 1e-2).
    residuals:
        float32 [N, 1, S, S] residuals ``x - x_{-1}`` in model space, or ``None``
        when not asked for.
    """

    scores: np.ndarray
    residuals: np.ndarray | None


class Scorer:
    """Score S x S patches with an exported BTD ONNX scorer.

    Parameters
    ----------
    model_path:
        The ``.onnx`` file written by ``btd-export``.
    provider:
        ``"auto"``, ``"cuda"`` or ``"cpu"`` (see the module docstring).
    batch_size:
        Patches per onnxruntime call; default by provider (:data:`DEFAULT_BATCH`).
    threads:
        CPU threads for one call (onnxruntime's intra-op threads); default: onnxruntime's.
    """

    def __init__(
        self,
        model_path: str | Path,
        provider: ProviderChoice = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        if provider not in PROVIDER_CHOICES:
            raise ValueError(
                f"provider must be one of {', '.join(PROVIDER_CHOICES)}, not {provider!r}"
            )
        self.model_path = Path(model_path)
        model_bytes = self.model_path.read_bytes()
        self.model_sha256 = hashlib.sha256(model_bytes).hexdigest()
        try:
            self._session, self.provider_note = _open_session(model_bytes, provider, threads)
        except ProviderError:
            raise
        except Exception as err:  # onnxruntime's own errors for bytes that are not ONNX
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ModelCardError(
                f"{self.model_path} is not a readable ONNX model ({first_line}); "
                "make one with btd-export"
            ) from None
        self.card = ModelCard.from_metadata(self._session.get_modelmeta().custom_metadata_map)
        self.provider_in_use: str = self._session.get_providers()[0]
        self.batch_size = batch_size or DEFAULT_BATCH.get(self.provider_in_use, 16)
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``: where the scoring really runs."""
        return "cuda" if self.provider_in_use == CUDA else "cpu"

    def score(self, patches: np.ndarray, with_residuals: bool = False) -> PatchScores:
        """Score patches already windowed to [0, 1].

        Parameters
        ----------
        patches:
            [N, S, S] or [N, 1, S, S], values in [0, 1] (see
            :meth:`btd_core.profiles.ModalityProfile.to_unit_range`), S = ``card.patch_size``.
        with_residuals:
            Also return the residual maps (N x S x S float32 more memory).
        """
        x = self._check(patches)
        scores = np.empty(len(x), dtype=np.float32)
        residuals = np.empty_like(x) if with_residuals else None
        outputs = ["score", "residual"] if with_residuals else ["score"]
        for start in range(0, len(x), self.batch_size):
            stop = min(start + self.batch_size, len(x))
            result = self._session.run(outputs, {"x": x[start:stop]})
            scores[start:stop] = result[0]
            if residuals is not None:
                residuals[start:stop] = result[1]
        return PatchScores(scores=scores, residuals=residuals)

    def _check(self, patches: np.ndarray) -> np.ndarray:
        size = self.card.patch_size
        x = np.asarray(patches)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, size, size):
            raise ScorerInputError(
                f"patches must be [N, {size}, {size}] or [N, 1, {size}, {size}], got {x.shape}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size and not np.isfinite(x).all():
            raise ScorerInputError("patches contain NaN or infinite values")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ScorerInputError(
                f"patches must be windowed to [0, 1] first, got [{x.min():g}, {x.max():g}]"
            )
        return x


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; the fallback is reported by us
    # Precomputed memory patterns do not help with a dynamic batch axis and doubled the
    # peak memory in measurements (96 px, batch 8: 1.4 GiB -> 0.8 GiB without), same speed.
    options.enable_mem_pattern = False
    if threads:
        options.intra_op_num_threads = threads
    return options


def _open_session(
    model_bytes: bytes, provider: str, threads: int | None
) -> tuple[ort.InferenceSession, str]:
    """Create the session for ``provider``; return it with a note on any fallback."""
    options = _session_options(threads)
    if provider == "cpu":
        return ort.InferenceSession(model_bytes, options, providers=[CPU]), ""
    if CUDA not in ort.get_available_providers():
        reason = (
            f"this onnxruntime ({ort.__version__}) has no CUDA provider; "
            "install onnxruntime-gpu for CUDA"
        )
        if provider == "cuda":
            raise ProviderError(f"CUDA was requested but {reason}")
        return ort.InferenceSession(model_bytes, options, providers=[CPU]), reason
    driver_error = _cuda_driver_error()
    if driver_error:
        reason = f"onnxruntime lists CUDA, but {driver_error}"
        if provider == "cuda":
            raise ProviderError(f"CUDA was requested but cannot start: {reason}")
        return ort.InferenceSession(model_bytes, options, providers=[CPU]), reason
    preload_error = _preload_cuda_libraries()
    session = ort.InferenceSession(model_bytes, options, providers=[CUDA, CPU])
    if session.get_providers()[0] == CUDA:
        return session, ""
    reason = (
        "onnxruntime lists CUDA but could not start it (no GPU, or CUDA 12/13 and cuDNN 9 "
        "libraries not loadable)" + (f": {preload_error}" if preload_error else "")
    )
    if provider == "cuda":
        raise ProviderError(f"CUDA was requested but is not active: {reason}")
    return session, reason


def _cuda_driver_error() -> str:
    """Why the NVIDIA driver library cannot load (Linux), or ``""`` when it loads.

    Checked before asking onnxruntime for CUDA, so that a machine without a GPU
    gets one clear reason instead of onnxruntime's ERROR and WARNING log lines.
    """
    if not sys.platform.startswith("linux"):
        return ""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver is installed here (libcuda.so.1 cannot be loaded)"
    return ""


def _preload_cuda_libraries() -> str:
    """Call ``onnxruntime.preload_dlls()`` where it exists; return an error text or ``""``."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return ""
    try:
        preload()
    except Exception as err:  # onnxruntime raises OSError/RuntimeError variants here
        return f"preload_dlls failed: {err}"
    return ""
