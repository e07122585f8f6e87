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


def _card(args: argparse.Namespace, console: Console) -> int:
    from btd_core.cli.card_view import card_table
    from btd_core.engine.model_card import ModelCardError
    from btd_core.engine.scorer import ProviderError, Scorer

    try:
        scorer = Scorer(args.model, provider=args.provider)
    except FileNotFoundError:
        console.print(Text(f"btd: no such model file: {args.model}", style="red"))
        return 2
    except (ModelCardError, ProviderError) as err:
        console.print(Text(f"btd: {err}", style="red"))
        return 2
    except Exception as err:  # onnxruntime's own errors for a file that is not ONNX
        console.print(Text(f"btd: {args.model} is not a readable ONNX model: {err}", style="red"))
        return 2
    console.print(card_table(scorer.card, title=f"{args.model}"))
    console.print(Text(f"ONNX file SHA-256: {scorer.model_sha256}"))
    line = f"provider in use: {scorer.provider_in_use} (batch {scorer.batch_size})"
    console.print(Text(line, style="bold"))
    if scorer.provider_note:
        console.print(Text(f"note: {scorer.provider_note}", style="yellow"))
    return 0


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
    card.add_argument(
        "--provider",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="auto: CUDA if it really works, else CPU; cuda: fail unless CUDA is active",
    )
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
        return 0
    return int(args.run(args, Console()))


if __name__ == "__main__":
    sys.exit(main())
