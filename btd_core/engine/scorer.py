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

Engine options (:class:`EngineOptions`) tune how the session runs: CPU threads and
graph optimisation level anywhere; on CUDA one fixed batch shape (the last batch is
padded, so cuDNN searches its algorithms once), inputs and outputs bound to GPU
buffers (IO binding), optionally a captured CUDA graph, the cuDNN algorithm search
and channels-last convolutions.  Asking for a CUDA-only option where the scoring
runs on the CPU is an :class:`EngineOptionError` with the reason, never a silent
fallback.  The precision of the arithmetic is a property of the ONNX file
(``btd-export --precision``), recorded in its model card.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from btd_core.engine.model_card import ModelCard, ModelCardError
from btd_core.engine.options import (
    DEFAULT_CUDNN_SEARCH,
    PROVIDER_CHOICES,
    EngineOptions,
    ProviderChoice,
)
from btd_core.errors import BtdError
from btd_core.hashing import bytes_sha256

__all__ = [
    "DEFAULT_BATCH",
    "EngineOptionError",
    "EngineOptions",
    "PatchScores",
    "ProviderError",
    "Scorer",
    "ScorerInputError",
    "ScorerOutputError",
    "cuda_batch_limit",
]


CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_BATCH = {CUDA: 256, CPU: 8}
"""Patches per onnxruntime call, by provider in use."""

CUDA_ELEMENT_LIMIT = 2**31 - 1
"""onnxruntime's CUDA kernels index tensors with 32-bit integers: no tensor may hold more
elements.  The U-Net's largest tensor is the attention's q, k, v at full resolution,
``3 * 128`` channels of S x S pixels per patch."""
WIDEST_CHANNELS = 3 * 128


def cuda_batch_limit(patch_size: int) -> int:
    """The largest batch the CUDA provider can run at ``patch_size`` px (606 at 96, 341 at 128)."""
    return max(CUDA_ELEMENT_LIMIT // (WIDEST_CHANNELS * patch_size * patch_size), 1)


OPTIMIZATION_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
"""onnxruntime graph optimisation levels by name."""


class ProviderError(BtdError, RuntimeError):
    """The requested execution provider is not active."""


class EngineOptionError(ProviderError):
    """A CUDA-only engine option or model precision was asked for where CUDA is not in use."""


class ScorerOutputError(BtdError, RuntimeError):
    """The model produced scores that are not finite numbers."""


class ScorerInputError(BtdError, ValueError):
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
    batch_size, threads:
        Shortcuts for the same :class:`EngineOptions` fields.
    engine:
        How the session runs (:class:`EngineOptions`).

    Raises
    ------
    ProviderError
        CUDA was required (``provider="cuda"``) but is not active.
    EngineOptionError
        A CUDA-only option or model precision, where the scoring runs on the CPU.
    btd_core.engine.model_card.ModelCardError
        The file is not a btd ONNX scorer.
    """

    def __init__(
        self,
        model_path: str | Path,
        provider: ProviderChoice = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        engine: EngineOptions | None = None,
    ) -> None:
        if provider not in PROVIDER_CHOICES:
            raise ValueError(
                f"provider must be one of {', '.join(PROVIDER_CHOICES)}, not {provider!r}"
            )
        engine = engine or EngineOptions()
        engine = replace(
            engine,
            batch_size=batch_size or engine.batch_size,
            threads=threads or engine.threads,
        )
        engine.validate()
        self.engine = engine
        self.model_path = Path(model_path)
        model_bytes = self.model_path.read_bytes()
        self.model_sha256 = bytes_sha256(model_bytes)
        try:
            self._session, self.provider_note = _open_session(model_bytes, provider, engine)
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
        if self.provider_in_use != CUDA and engine.cuda_only_requests():
            why = f" ({self.provider_note})" if self.provider_note else ""
            raise EngineOptionError(
                f"{', '.join(engine.cuda_only_requests())} only work with onnxruntime's CUDA "
                f"provider, and this run uses the CPU{why}"
            )
        self.batch_size = engine.batch_size or DEFAULT_BATCH.get(self.provider_in_use, 16)
        limit = cuda_batch_limit(self.card.patch_size)
        if self.provider_in_use == CUDA and self.batch_size > limit:
            if engine.batch_size:
                raise EngineOptionError(
                    f"a batch of {self.batch_size} patches of {self.card.patch_size} px is too "
                    f"large for onnxruntime's CUDA kernels (tensors over 2^31 elements); use "
                    f"--batch-size {limit} or less"
                )
            self.batch_size = limit
        self._bound: _BoundBuffers | None = None
        self._force_bound = False  # tests run the CUDA path's IO binding on CPU buffers

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``: where the scoring really runs."""
        return "cuda" if self.provider_in_use == CUDA else "cpu"

    @property
    def precision(self) -> str:
        """The model file's arithmetic precision (``fp32`` or ``fp16``)."""
        return self.card.precision

    def score(self, patches: np.ndarray, with_residuals: bool = False) -> PatchScores:
        """Score patches already windowed to [0, 1].

        Parameters
        ----------
        patches:
            [N, S, S] or [N, 1, S, S], values in [0, 1] (see
            :meth:`btd_core.slices.profiles.ModalityProfile.to_unit_range`),
            S = ``card.patch_size``; or, where the card has a ``side_multiple``,
            [N, H, W] / [N, 1, H, W] with H and W multiples of it.
        with_residuals:
            Also return the residual maps (N x S x S float32 more memory).
        """
        x = self._check(patches)
        scores = np.empty(len(x), dtype=np.float32)
        residuals = np.empty_like(x) if with_residuals else None
        size = self.card.patch_size
        patch_shaped = x.shape[2:] == (size, size)
        # larger inputs go in batches of about as many pixels as batch_size patches
        step = max(self.batch_size * size * size // (x.shape[2] * x.shape[3]), 1)
        for start in range(0, len(x), step):
            stop = min(start + step, len(x))
            if patch_shaped and (self.device == "cuda" or self._force_bound):
                batch_scores, batch_residuals = self._run_bound(x[start:stop], with_residuals)
            else:
                batch_scores, batch_residuals = self._run_plain(x[start:stop], with_residuals)
            if not np.isfinite(batch_scores).all():
                raise ScorerOutputError(
                    f"the model returned NaN or infinite scores ({self.card.precision} file "
                    f"{self.model_path.name}); "
                    + (
                        "float16 overflowed on these patches: use the fp32 export"
                        if self.card.precision != "fp32"
                        else "the model file is broken: export it again"
                    )
                )
            scores[start:stop] = batch_scores
            if residuals is not None:
                residuals[start:stop] = batch_residuals
        return PatchScores(scores=scores, residuals=residuals)

    def _run_plain(
        self, x: np.ndarray, with_residuals: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = ["score", "residual"] if with_residuals else ["score"]
        result = self._session.run(outputs, {"x": x})
        return result[0], (result[1] if with_residuals else None)

    def _run_bound(
        self, x: np.ndarray, with_residuals: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One batch on CUDA through fixed GPU buffers of ``batch_size`` patches.

        A short batch is zero-padded to the fixed shape (one shape: cuDNN's search
        runs once, and a captured CUDA graph can be replayed); only the real rows are
        copied back, and the residuals only when asked for.
        """
        if self._bound is None:
            self._bound = _BoundBuffers(
                self._session, self.batch_size, self.card.patch_size, self.device
            )
        n = len(x)
        if n < self.batch_size:
            padded = np.zeros((self.batch_size, *x.shape[1:]), dtype=np.float32)
            padded[:n] = x
            x = padded
        self._bound.run(x)
        scores = self._bound.score.numpy()[:n]
        residuals = self._bound.residual.numpy()[:n] if with_residuals else None
        return scores, residuals

    def accepts(self, height: int, width: int) -> bool:
        """Whether the model file takes inputs of ``height`` x ``width`` pixels: its patch
        size, or any multiples of the card's ``side_multiple`` when it has one."""
        size, multiple = self.card.patch_size, self.card.side_multiple
        if (height, width) == (size, size):
            return True
        return (
            multiple > 0 and height > 0 and width > 0 and not height % multiple + width % multiple
        )

    def _check(self, patches: np.ndarray) -> np.ndarray:
        size = self.card.patch_size
        x = np.asarray(patches)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1 or not self.accepts(x.shape[2], x.shape[3]):
            sides = (
                f" (or any sides that are multiples of {self.card.side_multiple})"
                if self.card.side_multiple
                else ""
            )
            raise ScorerInputError(
                f"patches must be [N, {size}, {size}] or [N, 1, {size}, {size}]{sides}, "
                f"got {x.shape}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size and not np.isfinite(x).all():
            raise ScorerInputError("patches contain NaN or infinite values")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ScorerInputError(
                f"patches must be windowed to [0, 1] first, got [{x.min():g}, {x.max():g}]"
            )
        return x


class _BoundBuffers:
    """Input and outputs of one fixed batch shape, kept on the GPU (IO binding).

    The same device addresses are used by every run, which a captured CUDA graph needs.
    """

    def __init__(
        self, session: ort.InferenceSession, batch: int, size: int, device: str = "cuda"
    ) -> None:
        self._session = session
        shape = [batch, 1, size, size]
        self.x = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, 0)
        self.residual = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, 0)
        self.score = ort.OrtValue.ortvalue_from_shape_and_type([batch], np.float32, device, 0)
        self._binding = session.io_binding()
        self._binding.bind_ortvalue_input("x", self.x)
        self._binding.bind_ortvalue_output("residual", self.residual)
        self._binding.bind_ortvalue_output("score", self.score)

    def run(self, x: np.ndarray) -> None:
        self.x.update_inplace(x)
        self._session.run_with_iobinding(self._binding)


def _session_options(engine: EngineOptions) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[engine.optimization]
    options.log_severity_level = 3  # errors only; the fallback is reported by us
    # Precomputed memory patterns do not help with a dynamic batch axis and doubled the
    # peak memory in measurements (96 px, batch 8: 1.4 GiB -> 0.8 GiB without), same speed.
    options.enable_mem_pattern = False
    threads = engine.cpu_threads()
    if threads:
        options.intra_op_num_threads = threads
    return options


def _cuda_provider(engine: EngineOptions) -> tuple[str, dict[str, str]]:
    """The CUDA provider entry with the engine's CUDA options."""
    settings = {"cudnn_conv_algo_search": (engine.cudnn_search or DEFAULT_CUDNN_SEARCH).upper()}
    if engine.cuda_graph:
        settings["enable_cuda_graph"] = "1"
    if engine.nhwc:
        settings["prefer_nhwc"] = "1"
    return CUDA, settings


def _open_session(
    model_bytes: bytes, provider: str, engine: EngineOptions
) -> tuple[ort.InferenceSession, str]:
    """Create the session for ``provider``; return it with a note on any fallback."""
    options = _session_options(engine)
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
    session = ort.InferenceSession(model_bytes, options, providers=[_cuda_provider(engine), CPU])
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
