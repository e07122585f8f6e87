"""How the slice preview is drawn: real pixels through a graphics protocol, or text cells.

Modes (``btd audit --preview MODE``; ``--ascii`` is ``--preview ascii``):

``auto`` (default)
    ``$BTD_PREVIEW`` when it names another mode; else half-blocks inside a terminal
    multiplexer (``$TMUX``, ``$STY``, ``$ZELLIJ``, or ``TERM`` ``screen*``/``tmux*``: image
    passthrough there is unreliable) and when stdin or stdout is not a terminal; else
    the terminal is asked, once and before the app starts, through textual-image
    (a sixel query: Device Attributes, ``ESC [ c``, answer containing 4; then a kitty
    graphics query), each answer waited for at most 0.1 s: ``sixel`` when it answers the
    first, ``kitty`` when it answers the second, half-blocks when it answers neither.
``kitty``
    The kitty graphics protocol with Unicode placeholders (kitty 0.28+; Ghostty).
``sixel``
    Sixel graphics (WezTerm, foot, Konsole, Windows Terminal 1.22+, iTerm2, VS
    Code's terminal with ``terminal.integrated.enableImages``, ``xterm -ti vt340``, mlterm).
``halfblock``
    Two pixels per cell as ``▀`` in true colour: any terminal, tmux and screen.
``ascii``
    A character ramp: any terminal, even without colour.

A forced ``kitty`` or ``sixel`` is used as asked, multiplexer or not.  textual-image
(https://github.com/lnqs/textual-image) writes the protocols; it has no iTerm2 inline
image protocol, which is why iTerm2 gets sixel (forced with ``sixel`` if it does not
answer the query).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

PREVIEW_MODES = ("auto", "kitty", "sixel", "halfblock", "ascii")
"""What ``--preview`` accepts."""

GRAPHICS_MODES = ("kitty", "sixel")
"""Modes that draw real pixels (textual-image's TGP and sixel widgets)."""

ENV_VAR = "BTD_PREVIEW"
"""The environment variable ``auto`` follows when it names another mode."""

MULTIPLEXER_VARIABLES = ("TMUX", "STY", "ZELLIJ")
"""Set inside tmux, GNU screen and Zellij."""


@dataclass(frozen=True)
class PreviewChoice:
    """The mode the preview uses (``kitty``, ``sixel``, ``halfblock`` or ``ascii``) and
    why, in words (for the log and for tests)."""

    mode: str
    reason: str

    @property
    def graphics(self) -> bool:
        """Real pixels through a graphics protocol."""
        return self.mode in GRAPHICS_MODES


def choose_preview(
    requested: str = "auto", environ: Mapping[str, str] | None = None, *, strict: bool = True
) -> PreviewChoice:
    """The preview mode for ``requested`` (one of :data:`PREVIEW_MODES`).

    ``environ`` defaults to ``os.environ``.  Call it before the Textual app runs: once
    Textual reads stdin, the terminal's answers would be lost (and a forced graphics
    mode needs the terminal's cell size, read here too).  The terminal is asked at
    most once per process.

    Raises
    ------
    ValueError
        When ``requested`` or ``$BTD_PREVIEW`` is not a mode (with ``strict=False``, a
        bad ``$BTD_PREVIEW`` is ignored and said in the reason instead).
    """
    env = os.environ if environ is None else environ
    if requested not in PREVIEW_MODES:
        raise ValueError(f"unknown preview mode {requested!r}: one of {', '.join(PREVIEW_MODES)}")
    note = ""
    if requested == "auto":
        from_env = env.get(ENV_VAR, "").strip().lower()
        if from_env and from_env not in PREVIEW_MODES:
            message = f"${ENV_VAR}={from_env!r} is not a preview mode: {', '.join(PREVIEW_MODES)}"
            if strict:
                raise ValueError(message)
            note = f" ({message}; ignored)"
        elif from_env and from_env != "auto":
            requested = from_env
            note = f" (from ${ENV_VAR})"
    if requested != "auto":
        failure = _load_graphics() if requested in GRAPHICS_MODES else ""
        if failure:
            reason = f"half-blocks: {requested} asked for, but {failure}{note}"
            return PreviewChoice("halfblock", reason)
        return PreviewChoice(requested, f"{requested}: asked for{note}")
    multiplexer = _multiplexer(env)
    if multiplexer:
        return PreviewChoice(
            "halfblock",
            f"half-blocks: inside {multiplexer}, where image passthrough is unreliable "
            f"(--preview kitty or sixel forces one){note}",
        )
    if not _interactive():
        return PreviewChoice("halfblock", f"half-blocks: not a terminal{note}")
    if _app_running() and not _detected.cache_info().currsize:
        return PreviewChoice("halfblock", f"half-blocks: the terminal was not asked in time{note}")
    found, failure = _detected()
    if failure:
        return PreviewChoice("halfblock", f"half-blocks: {failure}{note}")
    if found is None:
        return PreviewChoice(
            "halfblock",
            f"half-blocks: the terminal answered neither the sixel nor the kitty graphics "
            f"query{note}",
        )
    return PreviewChoice(found, f"{found}: the terminal answered the {found} query{note}")


def _multiplexer(env: Mapping[str, str]) -> str:
    """The terminal multiplexer we run in (``"tmux"``, ``"screen"``, ``"zellij"``), or ``""``."""
    term = env.get("TERM", "")
    if env.get("TMUX") or term.startswith("tmux"):
        return "tmux"
    if env.get("STY") or term.startswith("screen"):
        return "screen"
    if env.get("ZELLIJ") is not None:
        return "zellij"
    return ""


def _interactive() -> bool:
    """stdin and stdout are both terminals (the protocol queries need both)."""
    streams = (sys.__stdin__, sys.__stdout__)
    try:
        return all(stream is not None and stream.isatty() for stream in streams)
    except ValueError:  # a closed stream
        return False


def _app_running() -> bool:
    """A Textual app runs in this context (it owns stdin: too late to ask the terminal)."""
    from textual._context import active_app

    return active_app.get(None) is not None


@cache
def _detected() -> tuple[str | None, str]:
    """Ask the terminal (once): ``("sixel" | "kitty" | None, "")``, or ``(None, why not)``
    when textual-image could not talk to it."""
    failure = _load_graphics()
    if failure:
        return None, failure
    from textual_image import renderable

    if renderable.Image is renderable.SixelImage:
        return "sixel", ""
    if renderable.Image is renderable.TGPImage:
        return "kitty", ""
    return None, ""


def _load_graphics() -> str:
    """Import textual-image's widgets now (its renderables ask the terminal for sixel and
    kitty graphics support, its widgets for the cell size in pixels: neither can be asked
    once Textual runs); ``""``, or why it failed (a terminal of 0 columns, a closed stream)."""
    try:
        import textual_image.widget  # noqa: F401
    except Exception as err:  # any failure there means: no pixels, never a crash
        return f"textual-image could not read the terminal ({type(err).__name__}: {err})"
    return ""


def cell_pixels() -> tuple[int, int]:
    """``(width, height)`` of one terminal cell in screen pixels, as textual-image knows it
    (ioctl, else the terminal's answer, else ``$TEXTUAL_CELL_WIDTH``/``HEIGHT``, else 10 x 20)."""
    from textual_image._terminal import get_cell_size

    size = get_cell_size()
    return int(size.width), int(size.height)
