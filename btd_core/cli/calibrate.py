"""``btd calibrate``: learn what residual energy genuine tissue produces, for one model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from btd_core.cli.args import (
    add_engine_arguments,
    add_limit_arguments,
    add_model_argument,
    add_provider_argument,
    add_stride_argument,
    engine_options,
    positive_int,
    study_limits,
)
from btd_core.cli.failures import cannot_run
from btd_core.cli.progress import slice_progress
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd calibrate`` on the main parser's subcommands."""
    parser = commands.add_parser(
        "calibrate",
        help="calibrate a model on genuine scans (btd scan and btd audit then run the "
        "calibrated score by default)",
        description="Score every slice under GENUINE_DIR (scans known to be untouched, "
        "ideally from the scanners and protocols you audit) window by window, and store "
        "what residual energy genuine tissue of each intensity and texture produces, tied "
        "to the model's SHA-256. Default output: MODEL.onnx.calibration.json beside the "
        "model. Nothing is written into GENUINE_DIR.",
    )
    parser.add_argument("genuine", type=Path, metavar="GENUINE_DIR")
    add_model_argument(parser)
    parser.add_argument("--out", type=Path, help="calibration file to write")
    add_provider_argument(parser)
    add_stride_argument(parser)
    parser.add_argument(
        "--window",
        type=positive_int,
        default=24,
        help="local window side, px (default: 24); scans then use the same window",
    )
    add_engine_arguments(parser)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd calibrate``; returns the exit status."""
    from btd_core.audit.calibrate import calibrate_model
    from btd_core.scoring.tiles import ScanSettings

    progress, on_progress = slice_progress(console, "calibrating")
    settings = ScanSettings(stride=args.stride, tiles=args.tiles, workers=args.workers)
    try:
        with progress:
            done = calibrate_model(
                args.genuine,
                args.model,
                args.out,
                provider=args.provider,
                settings=settings,
                window=args.window,
                engine=engine_options(args),
                limits=study_limits(args),
                on_progress=on_progress,
            )
    except (BtdError, OSError) as err:
        return cannot_run(console, "btd calibrate", err)
    calibration = done.calibration
    filled = sum(count >= 30 for row in calibration.tissue.counts for count in row)
    cells = sum(len(row) for row in calibration.tissue.counts)
    console.print(
        Text(
            f"calibrated on {calibration.windows} windows of {done.slices} genuine slices; "
            f"{filled} of {cells} intensity x texture cells have their own statistics; "
            f"wrote {done.path}"
        ),
        soft_wrap=True,
    )
    for path, reason in done.files_failed:
        console.print(Text(f"not read: {path}: {reason}", style="yellow"), soft_wrap=True)
    return ExitStatus.SOME_FAILED if done.files_failed else ExitStatus.OK
