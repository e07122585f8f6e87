"""``btd``: the main command line (runtime world: never imports torch).

Thin: each subcommand parses its arguments and calls library functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from btd_core import __version__
from btd_core.cli import calibrate as calibrate_command
from btd_core.cli import demo as demo_command
from btd_core.cli import eval as eval_command
from btd_core.cli import scan as scan_command
from btd_core.cli import tamper as tamper_command
from btd_core.cli import train as train_command
from btd_core.cli.args import add_provider_argument
from btd_core.cli.failures import cannot_run
from btd_core.exit_status import ExitStatus


def _card(args: argparse.Namespace, console: Console) -> int:
    from btd_core.cli.card_view import card_table
    from btd_core.engine.opening import ModelOpenError, open_scorer

    try:
        scorer = open_scorer(args.model, provider=args.provider)
    except ModelOpenError as err:
        return cannot_run(console, "btd", err)
    console.print(card_table(scorer.card, title=f"{args.model}"))
    console.print(Text(f"ONNX file SHA-256: {scorer.model_sha256}"))
    line = f"provider in use: {scorer.provider_in_use} (batch {scorer.batch_size})"
    console.print(Text(line, style="bold"))
    if scorer.provider_note:
        console.print(Text(f"note: {scorer.provider_note}", style="yellow"))
    return ExitStatus.OK


def build_parser() -> argparse.ArgumentParser:
    """The ``btd`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="btd",
        description="Find tampered CT and MRI slices with Back-in-Time Diffusion (BTD). "
        "Models are ONNX scorers made by btd-export.",
    )
    parser.add_argument("--version", action="version", version=f"btd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    card = commands.add_parser(
        "card",
        help="show an ONNX scorer's model card and the onnxruntime provider it runs on",
        description="Show what an exported scorer says about itself (modality, patch size, "
        "window, score reduction, source checkpoint hash) and which provider runs it.",
    )
    card.add_argument("model", help="the .onnx file written by btd-export")
    add_provider_argument(card)
    card.set_defaults(run=_card)
    scan_command.add_parser(commands)
    from btd_core.cli import audit as audit_command  # btd audit: the terminal app

    audit_command.add_parser(commands)
    eval_command.add_parser(commands)
    calibrate_command.add_parser(commands)
    train_command.add_parser(commands)
    tamper_command.add_parser(commands)
    demo_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``btd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return ExitStatus.OK
    return int(args.run(args, Console()))


if __name__ == "__main__":
    sys.exit(main())
