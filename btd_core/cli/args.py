"""Argument types shared by the ``btd`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    """An integer of at least 1, for counts and pixel strides; argparse reports anything else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The onnxruntime engine options (:class:`btd_core.engine.scorer.EngineOptions`) as flags."""
    group = parser.add_argument_group(
        "engine", "how onnxruntime runs; the arithmetic's precision is the model file's own"
    )
    group.add_argument(
        "--batch-size",
        type=positive_int,
        help="patches per onnxruntime call (default: 8 on the CPU, 256 on CUDA)",
    )
    group.add_argument(
        "--threads", type=positive_int, help="CPU threads per call (default: one per core)"
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        help="threads that read and decode slices ahead of scoring (default: cores, at most 8)",
    )
    group.add_argument(
        "--optimization",
        choices=("all", "extended", "basic", "disable"),
        default="all",
        help="onnxruntime graph optimisation level (default: all)",
    )
    group.add_argument(
        "--cudnn-search",
        choices=("exhaustive", "heuristic", "default"),
        help="CUDA only: cuDNN convolution algorithm search (default: onnxruntime's, exhaustive)",
    )
    group.add_argument(
        "--cuda-graph",
        action="store_true",
        help="CUDA only: capture the model as one CUDA graph and replay it for each batch",
    )
    group.add_argument(
        "--nhwc",
        action="store_true",
        help="CUDA only: run convolutions in channels-last layout",
    )


def engine_options(args: argparse.Namespace):
    """The :class:`btd_core.engine.scorer.EngineOptions` asked for by :func:`add_engine_arguments`."""
    from btd_core.engine.options import EngineOptions

    return EngineOptions(
        batch_size=args.batch_size,
        threads=args.threads,
        optimization=args.optimization,
        cudnn_search=args.cudnn_search,
        cuda_graph=args.cuda_graph,
        nhwc=args.nhwc,
    )


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """How slices are scored: the tile mode (the paper's) or the local window modes."""
    parser.add_argument(
        "--score",
        choices=("auto", "calibrated", "local", "tile"),
        default="auto",
        help="slice score: calibrated = highest surprise of a small window against genuine "
        "tissue of its kind (needs btd calibrate); local = highest mean r^2 in small windows; "
        "tile = highest whole-tile mean r^2 (the paper's patch score); auto (default) = "
        "calibrated when the model has a calibration, else local",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=24,
        help="local window side in pixels (default 24)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="calibration file for --score calibrated/auto (default: MODEL.onnx.calibration.json)",
    )
