"""``btd card``: an exported scorer's model card and the provider that runs it.

Every value comes from a file (ONNX metadata) and is shown as plain text, never
interpreted as rich markup.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from btd_core.cli.args import add_provider_argument
from btd_core.cli.failures import cannot_run
from btd_core.engine.model_card import REDUCTIONS, ModelCard
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus
from btd_core.safe_text import printable


def card_table(card: ModelCard, title: str = "model card") -> Table:
    """A two-column table of every field of ``card``."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in dataclasses.fields(card):
        value = str(getattr(card, field.name))
        if field.name == "reduction":
            value = f"{value}: {REDUCTIONS.get(value, '?')}"
        table.add_row(Text(field.name), Text(printable(value)))
    return table


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd card``."""
    parser = commands.add_parser(
        "card",
        help="show an ONNX scorer's model card and the onnxruntime provider it runs on",
        description="Show what an exported scorer says about itself (modality, patch size, "
        "window, score reduction, source checkpoint hash) and which provider runs it.",
    )
    parser.add_argument("model", type=Path, help="the .onnx file written by btd-export")
    add_provider_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd card``; returns the exit status."""
    from btd_core.engine.opening import open_scorer

    try:
        scorer = open_scorer(args.model, provider=args.provider)
    except BtdError as err:
        return cannot_run(console, "btd card", err)
    console.print(card_table(scorer.card, title=f"{args.model}"))
    console.print(Text(f"ONNX file SHA-256: {scorer.model_sha256}"))
    line = f"provider in use: {scorer.provider_in_use} (batch {scorer.batch_size})"
    console.print(Text(line, style="bold"))
    if scorer.provider_note:
        console.print(Text(f"note: {scorer.provider_note}", style="yellow"))
    return ExitStatus.OK
