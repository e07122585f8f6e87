"""``btd calibrate``: learn what residual energy genuine tissue produces, for one model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from btd_core.cli.args import add_engine_arguments, engine_options, positive_int

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_CANNOT_RUN = 2


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
    parser.add_argument("--model", type=Path, required=True, help="ONNX scorer from btd-export")
    parser.add_argument("--out", type=Path, help="calibration file to write")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--stride", type=positive_int, help="pixels between tiles (default S/2)")
    parser.add_argument(
        "--window", type=positive_int, default=24, help="local window side, px (default 24)"
    )
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd calibrate``; returns the exit status."""
    from btd_core.audit.study_audit import AuditError
    from btd_core.engine.model_card import ModelCardError
    from btd_core.engine.scorer import ProviderError, ScorerOutputError
    from btd_core.scoring.calibrate import calibrate_model
    from btd_core.scoring.calibration import CalibrationError
    from btd_core.scoring.tiles import ScanSettings

    progress = Progress(
        TextColumn("calibrating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slices"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("calibrate", total=None)
    settings = ScanSettings(stride=args.stride, window=args.window, workers=args.workers)
    try:
        with progress:
            done = calibrate_model(
                args.genuine,
                args.model,
                args.out,
                provider=args.provider,
                settings=settings,
                engine=engine_options(args),
                on_progress=lambda p: progress.update(
                    task, completed=p.slices_done, total=p.slices_total
                ),
            )
    except (
        AuditError,
        CalibrationError,
        ModelCardError,
        ProviderError,
        ScorerOutputError,
        FileNotFoundError,
        OSError,
    ) as err:
        console.print(Text(f"btd calibrate: {err}", style="red"), soft_wrap=True)
        return EXIT_CANNOT_RUN
    calibration = done.calibration
    filled = sum(count >= 30 for row in calibration.counts for count in row)
    cells = sum(len(row) for row in calibration.counts)
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
    return EXIT_FILES_FAILED if done.files_failed else EXIT_OK
