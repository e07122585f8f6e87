"""``btd audit``: the interactive terminal audit of one study folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from btd_core.cli.args import (
    add_engine_arguments,
    add_score_arguments,
    engine_options,
    positive_int,
)

EXIT_OK = 0
EXIT_CANNOT_RUN = 2


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd audit`` on the main parser's subcommands."""
    parser = commands.add_parser(
        "audit",
        help="audit a study folder interactively in the terminal (ranked slices, previews)",
        description="Open the terminal audit of STUDY_DIR: the studies and series found, "
        "scoring in the background with progress, the ranked suspicious slices, a preview of "
        "the selected slice with its heat map and worst tile, and the same CSV/JSON/PNG report "
        "as btd scan on a key (e). Without --model, the model comes from the BTD_MODEL "
        'environment variable or model = "..." in $XDG_CONFIG_HOME/btd/config.toml. '
        "Nothing is written into STUDY_DIR.",
    )
    parser.add_argument("study", type=Path, metavar="STUDY_DIR")
    parser.add_argument("--model", type=Path, help="ONNX scorer from btd-export")
    parser.add_argument(
        "--provider",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="auto: CUDA if it really works, else CPU; cuda: an error unless CUDA is active",
    )
    parser.add_argument(
        "--ascii", action="store_true", help="preview with an ASCII ramp (no colour blocks)"
    )
    parser.add_argument(
        "--stride",
        type=positive_int,
        help="pixels between tiles (default: S / 2)",
    )
    parser.add_argument(
        "--no-autostart",
        dest="autostart",
        action="store_false",
        help="do not start scoring at once (press s)",
    )
    add_score_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd audit``; returns the exit status."""
    from btd_tui.config import ConfigError, resolve_model

    if not args.study.is_dir():
        console.print(Text(f"btd audit: {args.study} is not a folder", style="red"), soft_wrap=True)
        return EXIT_CANNOT_RUN
    try:
        model = resolve_model(args.model)
    except ConfigError as err:
        console.print(Text(f"btd audit: {err}", style="red"), soft_wrap=True)
        return EXIT_CANNOT_RUN
    if not model.is_file():
        console.print(Text(f"btd audit: no such model file: {model}", style="red"), soft_wrap=True)
        return EXIT_CANNOT_RUN
    from btd_tui.factory import create_app

    app = create_app(
        args.study,
        model,
        provider=args.provider,
        ascii=args.ascii,
        autostart=args.autostart,
        stride=args.stride,
        command_line=sys.argv,
        engine=engine_options(args),
        workers=args.workers,
        score_mode=args.score,
        window=args.window,
        calibration_path=args.calibration,
    )
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)
