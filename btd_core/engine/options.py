"""How the onnxruntime session runs: the engine options (no onnxruntime import here).

The arithmetic's precision is not among them: it is a property of the ONNX file
(``btd-export --precision``), recorded in its model card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

OPTIMIZATIONS = ("all", "extended", "basic", "disable")
"""onnxruntime graph optimisation levels, by name."""
CUDNN_SEARCHES = ("exhaustive", "heuristic", "default")
"""cuDNN convolution algorithm search: onnxruntime's ``cudnn_conv_algo_search`` values."""
DEFAULT_CUDNN_SEARCH = "heuristic"
"""Measured on an H200 (96 px, fp16, batch 512): the same patches/s as onnxruntime's
exhaustive default (3,910 vs 3,912) with the session ready in 1.1 s instead of 2.5 s."""


ProviderChoice = Literal["auto", "cuda", "cpu"]
"""Where to run: ``auto`` (CUDA if it really works, else the CPU), ``cuda`` (an error
unless CUDA is active) or ``cpu``."""
PROVIDER_CHOICES: tuple[ProviderChoice, ...] = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class EngineOptions:
    """How the onnxruntime session runs (not what it computes).

    Attributes
    ----------
    batch_size:
        Patches per onnxruntime call (>= 1); default by provider
        (:data:`btd_core.engine.scorer.DEFAULT_BATCH`).
    threads:
        CPU threads for one call (onnxruntime's intra-op threads); default:
        :func:`environment_threads` (``OMP_NUM_THREADS``), else onnxruntime's (one per
        physical core).
    optimization:
        Graph optimisation level, one of :data:`OPTIMIZATIONS` (default ``"all"``).
    cudnn_search:
        CUDA only: cuDNN convolution algorithm search, one of :data:`CUDNN_SEARCHES`;
        ``None`` = :data:`DEFAULT_CUDNN_SEARCH`.
    cuda_graph:
        CUDA only: capture the whole model as one CUDA graph and replay it per batch.
    nhwc:
        CUDA only: let onnxruntime run convolutions in channels-last layout.
    """

    batch_size: int | None = None
    threads: int | None = None
    optimization: str = "all"
    cudnn_search: str | None = None
    cuda_graph: bool = False
    nhwc: bool = False

    def cpu_threads(self) -> int | None:
        """The intra-op threads to ask onnxruntime for: ``threads``, else
        :func:`environment_threads`; ``None``: onnxruntime's default."""
        return self.threads or environment_threads()

    def cuda_only_requests(self) -> list[str]:
        """The CUDA-only options asked for, as command-line flags."""
        asked = []
        if self.cudnn_search is not None:
            asked.append(f"--cudnn-search {self.cudnn_search}")
        if self.cuda_graph:
            asked.append("--cuda-graph")
        if self.nhwc:
            asked.append("--nhwc")
        return asked

    def validate(self) -> None:
        """Raise ``ValueError`` for values out of range."""
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.optimization not in OPTIMIZATIONS:
            raise ValueError(
                f"optimization must be one of {', '.join(OPTIMIZATIONS)}, not {self.optimization!r}"
            )
        if self.cudnn_search is not None and self.cudnn_search not in CUDNN_SEARCHES:
            raise ValueError(
                f"cudnn_search must be one of {', '.join(CUDNN_SEARCHES)}, "
                f"not {self.cudnn_search!r}"
            )


def environment_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a thread count (a positive integer), else ``None``.

    onnxruntime's own thread pool ignores that variable, but it is how a server's users and
    job schedulers cap a process's CPU threads (NumPy's BLAS and PyTorch honour it), so a
    scan without ``--threads`` honours it too: several scans, or test workers, sharing a
    machine then do not each start a thread per core and thrash."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
