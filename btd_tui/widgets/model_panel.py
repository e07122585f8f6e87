"""The model card and the onnxruntime provider in use, always on screen (top bar)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Static

from btd_core.safe_text import printable
from btd_tui.serial_scorer import SerialScorer

if TYPE_CHECKING:
    from btd_core.engine.model_card import ModelCard

PROVIDER_NAMES = {"CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}


def card_line(card: ModelCard) -> Text:
    """One line: modality, patch size, window, reduction, weights, source checkpoint hash."""
    line = Text()
    fields = (
        ("", printable(card.modality).upper()),
        ("S ", f"{card.patch_size} px"),
        ("", f"[{card.window_low:g}, {card.window_high:g}] {printable(card.window_unit)}"),
        ("", printable(card.reduction)),
        ("weights ", printable(card.weights)),
        ("source ", printable(card.source_sha256[:12])),
    )
    for number, (label, value) in enumerate(fields):
        if number:
            line.append(" · ", style="dim")
        if label:
            line.append(label, style="dim")
        line.append(value)
    return line


def provider_line(model_name: str, provider_in_use: str) -> Text:
    """One line: the model file and the provider in use (CUDA or CPU)."""
    name = PROVIDER_NAMES.get(provider_in_use, provider_in_use)
    line = Text("model ", style="dim")
    line.append(printable(model_name), style="bold")
    line.append(" · provider ", style="dim")
    line.append(name, style="bold green" if name == "CUDA" else "bold yellow")
    line.append(f" ({printable(provider_in_use)})", style="dim")
    return line


class ModelPanel(Static):
    """The top lines: model file and provider in use; the model card; a fallback note."""

    def __init__(self, model_name: str, provider: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.requested = provider
        self.text = Text()

    def on_mount(self) -> None:
        """Show the loading state until the scorer is open."""
        self.show_loading()

    def show_loading(self) -> None:
        """The model is being opened."""
        line = Text("model ", style="dim")
        line.append(printable(self.model_name), style="bold")
        line.append(f" · opening (provider {self.requested})…", style="dim")
        self._set(line, 2)

    def show_scorer(self, scorer: SerialScorer) -> None:
        """The card and provider of the open scorer."""
        text = provider_line(self.model_name, scorer.provider_in_use)
        text.append("\n")
        text.append_text(card_line(scorer.card))
        if scorer.provider_note:  # why it fell back to the CPU (also in the log)
            text.append("\n" + printable(scorer.provider_note), style="yellow")
        self._set(text, 3 if scorer.provider_note else 2)

    def show_error(self, title: str, message: str) -> None:
        """The model could not be opened as asked: the reason, in red, for good."""
        text = Text("model ", style="dim")
        text.append(printable(self.model_name), style="bold")
        text.append(f" · {title}\n", style="bold red")
        text.append(printable(message), style="red")
        self._set(text, 3)

    def _set(self, text: Text, lines: int) -> None:
        """Show ``text`` in a panel ``lines`` high (a fixed height: the layout never waits
        for the text to be measured)."""
        self.text = text
        self.styles.height = lines
        self.update(text)
