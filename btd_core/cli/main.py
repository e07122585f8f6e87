"""``btd``: the main command line (runtime world: never imports torch).

Thin: each subcommand parses its arguments and calls library functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from btd_core import __version__
from btd_core.cli import archive, audit, calibrate, card, demo, eval, scan, tamper, train
from btd_core.exit_status import ExitStatus

COMMANDS = (card, scan, archive, audit, eval, calibrate, train, tamper, demo)
"""The subcommands, in the order ``btd --help`` lists them; each module has
``add_parser(subparsers)`` and a ``run(args, console) -> exit status``."""


def build_parser() -> argparse.ArgumentParser:
    """The ``btd`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="btd",
        description="Find tampered CT and MRI slices with Back-in-Time Diffusion (BTD). "
        "Models are ONNX scorers made by btd-export.",
    )
    parser.add_argument("--version", action="version", version=f"btd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    for command in COMMANDS:
        command.add_parser(commands)
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
