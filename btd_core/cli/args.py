"""The arguments shared by the ``btd`` subcommands: declared once, read back once.

:func:`scan_config` reads them back as one :class:`btd_core.audit.scan_config.ScanConfig`,
what ``btd scan``, ``btd audit``, ``btd eval`` and ``btd archive`` pass on whole.
Nothing here imports torch, so ``btd --help`` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from btd_core.audit.scan_config import ReportOutputs, ScanConfig
from btd_core.engine.options import DEFAULT_CUDNN_SEARCH, PROVIDER_CHOICES, EngineOptions
from btd_core.scoring.strategy import SCORE_CHOICES, ScoreRequest
from btd_core.scoring.tiles import COVERAGES, DEFAULT_OVERLAYS, ScanSettings
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits, parse_pixels


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
        "--threads",
        type=positive_int,
        help="CPU threads per call (default: $OMP_NUM_THREADS when set, else one per core)",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        help="threads that read and decode slices ahead of scoring "
        "(default: one per core, at most 8)",
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
        help=f"CUDA only: cuDNN convolution algorithm search (default: {DEFAULT_CUDNN_SEARCH}, "
        "as fast as onnxruntime's own exhaustive search once running, and ready sooner)",
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


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options asked for by :func:`add_engine_arguments`."""
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
        choices=SCORE_CHOICES,
        default="auto",
        help="slice score: calibrated = highest surprise of a small window against genuine "
        "tissue of its kind (needs btd calibrate); local = highest mean r^2 in small windows; "
        "tile = highest whole-tile mean r^2 (the paper's patch score); auto (default) = "
        "calibrated when the model has a calibration, else local",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        help="local window side in pixels (default: the calibration's, else 24)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="calibration file for --score calibrated/auto (default: MODEL.onnx.calibration.json)",
    )
    parser.add_argument(
        "--no-context",
        dest="context",
        action="store_false",
        help="calibrated score: judge each slice alone, not also against the same windows in "
        "its neighbouring slices (series context, on by default with a calibration that has it)",
    )


def score_request(args: argparse.Namespace) -> ScoreRequest:
    """The slice score asked for by :func:`add_score_arguments`."""
    return ScoreRequest(
        mode=args.score,
        window=args.window,
        calibration_path=args.calibration,
        context=getattr(args, "context", True),
    )


def add_model_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--model``: the ONNX scorer."""
    parser.add_argument(
        "--model", type=Path, required=required, help="ONNX scorer made by btd-export"
    )


def add_provider_argument(parser: argparse.ArgumentParser) -> None:
    """``--provider``: where onnxruntime runs the model."""
    parser.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="auto: CUDA if it really works, else the CPU; cuda: an error unless CUDA is "
        "active; cpu: the CPU",
    )


def add_stride_argument(parser: argparse.ArgumentParser) -> None:
    """``--stride``: pixels between tiles; ``--tiles``: how tiles go through the model."""
    parser.add_argument("--stride", type=positive_int, help="pixels between tiles (default: S / 2)")
    parser.add_argument(
        "--tiles",
        choices=COVERAGES,
        default="auto",
        help="body: the body's tiles through the model in one pass per slice (fast); "
        "patch: each tile on its own (the method's patch, as before body coverage); "
        "auto (default): the calibration's, else body when the model file allows it",
    )


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: write into an output folder that already holds files."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that already holds files (files of the same "
        "name are replaced; without it such a folder is refused before any work)",
    )


def _pixels_argument(text: str) -> int:
    """``--max-pixels``: ``SIDE`` or ``COLUMNSxROWS`` as a pixel count; argparse reports errors."""
    try:
        return parse_pixels(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """What a study's headers may claim (:class:`btd_core.study.limits.StudyLimits`) as flags;
    a file over a limit is an error row that names the flag."""
    group = parser.add_argument_group(
        "limits", "checked from each file's header before anything is allocated"
    )
    group.add_argument(
        "--max-pixels",
        type=_pixels_argument,
        default=DEFAULT_LIMITS.max_pixels,
        metavar="SIDE|COLSxROWS",
        help=f"pixels per frame (default: {DEFAULT_LIMITS.pixels_label().replace(' ', '')})",
    )
    group.add_argument(
        "--max-frames",
        type=positive_int,
        default=DEFAULT_LIMITS.max_frames,
        help=f"frames per file: multi-frame DICOM, TIFF pages, 3-D .npy (default: "
        f"{DEFAULT_LIMITS.max_frames})",
    )
    group.add_argument(
        "--max-slices",
        type=positive_int,
        default=DEFAULT_LIMITS.max_slices,
        help=f"slices per study (default: {DEFAULT_LIMITS.max_slices})",
    )
    group.add_argument(
        "--max-member-mb",
        type=positive_int,
        default=DEFAULT_LIMITS.max_member_bytes >> 20,
        help=f"MiB one .zip member or deflated DICOM may hold uncompressed (default: "
        f"{DEFAULT_LIMITS.max_member_bytes >> 20})",
    )


def study_limits(args: argparse.Namespace) -> StudyLimits:
    """The limits asked for by :func:`add_limit_arguments`."""
    return StudyLimits(
        max_pixels=args.max_pixels,
        max_frames=args.max_frames,
        max_slices=args.max_slices,
        max_member_bytes=args.max_member_mb << 20,
    )


def add_overlays_argument(
    parser: argparse.ArgumentParser, what: str = "PNG overlays of the top slices"
) -> None:
    """``--overlays``: how many of the top slices get a PNG overlay (``what``: its help)."""
    parser.add_argument(
        "--overlays",
        type=int,
        default=DEFAULT_OVERLAYS,
        help=f"{what} (default: {DEFAULT_OVERLAYS})",
    )


def scan_config(args: argparse.Namespace) -> ScanConfig:
    """The one scan configuration the command line asks for.

    Reads the flags of :func:`add_provider_argument`, :func:`add_engine_arguments`,
    :func:`add_score_arguments`, :func:`add_stride_argument`, :func:`add_limit_arguments`
    and :func:`add_overlays_argument`, and ``--patch-at``, ``--no-phi``, ``--dicom`` /
    ``--top``; a flag the command does not declare (``btd eval`` has no limits, only
    ``btd scan`` has ``--patch-at`` and ``--dicom``) takes its default.
    """
    patch_at = getattr(args, "patch_at", None)
    settings = ScanSettings(
        stride=args.stride,
        tiles=getattr(args, "tiles", "auto"),
        overlays=getattr(args, "overlays", DEFAULT_OVERLAYS),
        patch_at=(int(patch_at[0]), int(patch_at[1])) if patch_at else None,
        workers=args.workers,
    )
    outputs = ReportOutputs(
        include_phi=not getattr(args, "no_phi", False),
        dicom_top=args.top if getattr(args, "dicom", False) else None,
    )
    return ScanConfig(
        provider=args.provider,
        engine=engine_options(args),
        score=score_request(args),
        settings=settings,
        limits=study_limits(args) if hasattr(args, "max_pixels") else DEFAULT_LIMITS,
        outputs=outputs,
    )
