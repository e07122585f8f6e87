"""Model cards and providers as rich renderables (runtime world, no torch).

Every value comes from a file (ONNX metadata) and is shown as plain text,
never interpreted as rich markup.
"""

from __future__ import annotations

import dataclasses

from rich.table import Table
from rich.text import Text

from btd_core.engine.model_card import REDUCTIONS, ModelCard
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
