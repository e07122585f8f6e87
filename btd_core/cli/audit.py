"""``btd audit``: the interactive terminal audit of one study folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from btd_core.cli.args import (
    add_engine_arguments,
    add_limit_arguments,
    add_model_argument,
    add_provider_argument,
    add_score_arguments,
    add_stride_argument,
    scan_config,
)
from btd_core.cli.failures import cannot_run
from btd_core.errors import BtdError


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
        "Nothing is written into STUDY_DIR. Given a report folder of btd scan (or the output "
        "folder of btd archive) instead, it browses that report's ranked slices (an archive's "
        "ranked studies, Enter opens one) with previews read from the study, without a model "
        "and without rescoring.",
    )
    parser.add_argument(
        "study",
        type=Path,
        metavar="STUDY_DIR",
        help="a study folder to scan; or a report folder written by btd scan, or the output "
        "folder of btd archive, to browse without rescoring (no model needed)",
    )
    parser.add_argument(
        "--study",
        dest="study_at",
        type=Path,
        metavar="FOLDER",
        help="with a report folder: where its study lies now, for the previews (default: "
        "where the report says it was scanned)",
    )
    add_model_argument(parser, required=False)
    add_provider_argument(parser)
    from btd_tui.preview_mode import ENV_VAR, PREVIEW_MODES

    parser.add_argument(
        "--preview",
        choices=PREVIEW_MODES,
        default="auto",
        help="how the slice preview is drawn: auto (default) uses $BTD_PREVIEW when set, "
        "half-blocks inside tmux, screen or zellij (image passthrough is unreliable there), "
        "else asks the terminal: sixel (WezTerm, foot, Konsole, Windows Terminal, iTerm2, "
        "xterm -ti vt340), kitty graphics (kitty, Ghostty), or half-blocks when it answers "
        "neither; kitty or sixel forces a protocol (also inside tmux), halfblock or ascii "
        f"forces text cells. ${ENV_VAR} takes the same values",
    )
    parser.add_argument(
        "--ascii",
        dest="preview",
        action="store_const",
        const="ascii",
        help="the same as --preview ascii (an ASCII ramp, no colour blocks)",
    )
    add_stride_argument(parser)
    parser.add_argument(
        "--no-autostart",
        dest="autostart",
        action="store_false",
        help="do not start scoring at once (press s)",
    )
    add_score_arguments(parser)
    add_limit_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd audit``; returns the exit status."""
    from btd_tui.config import resolve_model
    from btd_tui.preview_mode import choose_preview

    if not args.study.is_dir():
        return cannot_run(console, "btd audit", f"{args.study} is not a folder")
    if is_report_or_archive(args.study):
        return browse_report(args, console)
    if args.study_at is not None:
        return cannot_run(
            console, "btd audit", "--study goes with a report folder, not a study folder"
        )
    try:
        model = resolve_model(args.model)
    except BtdError as err:
        return cannot_run(console, "btd audit", err)
    if not model.is_file():
        return cannot_run(console, "btd audit", f"no such model file: {model}")
    try:  # asks the terminal (auto) now: once the app runs, Textual owns stdin
        preview = choose_preview(args.preview)
    except ValueError as err:
        return cannot_run(console, "btd audit", err)
    from btd_tui.factory import create_app

    app = create_app(
        args.study,
        model,
        scan_config(args),
        preview=preview.mode,
        autostart=args.autostart,
        command_line=sys.argv,
    )
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)


def is_report_or_archive(folder: Path) -> bool:
    """Whether ``folder`` holds a ``btd scan`` report or a ``btd archive`` output."""
    from btd_core.archive.index import is_archive
    from btd_core.findings.saved_report import is_report_folder

    return is_report_folder(folder) or is_archive(folder)


def browse_report(args: argparse.Namespace, console: Console) -> int:
    """``btd audit REPORT_FOLDER`` (or an archive's output): browse it, no rescoring."""
    from btd_tui.preview_mode import choose_preview
    from btd_tui.report_app import ReportApp

    if args.study_at is not None and not args.study_at.is_dir():
        return cannot_run(console, "btd audit", f"--study {args.study_at} is not a folder")
    try:
        preview = choose_preview(args.preview)
    except ValueError as err:
        return cannot_run(console, "btd audit", err)
    app = ReportApp(args.study, args.study_at, preview=preview.mode)
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)
