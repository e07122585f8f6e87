"""``--help`` says what the code does: every default a help text names is the real one.

Every subcommand's parser (``btd_core.cli.main.COMMANDS``) is walked; each option whose
help names a default as one literal word, ``(default: 10)``, ``(default: heuristic)``,
``(default: 16384x16384)`` or ``auto (default)``, must name the parser's default (read
with the option's own type, so ``16384x16384`` is the pixel count the parser keeps).  An
option whose parser default is ``None`` gets its default later in the code: it must be
listed in :data:`RESOLVED_DEFAULTS`, with the code's own constant.  Wordy defaults
("S / 2", "one per core", "the calibration's, else 24") are explanations, not values.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from btd_core.cli.main import COMMANDS, build_parser
from btd_core.engine.options import DEFAULT_CUDNN_SEARCH
from btd_core.model.train_config import TrainConfig
from btd_core.scoring.calibration import sidecar_path

DEFAULT_IN_HELP = re.compile(
    r"\(default:? (?P<inside>[^(),;]+)[),;]|(?P<choice>[\w.+/-]+) \(default\)", re.IGNORECASE
)
LITERAL = re.compile(r"[\w.+/'-]+")
"""One word: a number, a name, a path, ``16384x16384`` (up to a comma: "(default:
heuristic, as fast as ...)" names ``heuristic``)."""

RESOLVED_DEFAULTS: dict[tuple[str, str], object] = {
    ("scan", "--cudnn-search"): DEFAULT_CUDNN_SEARCH,
    ("audit", "--cudnn-search"): DEFAULT_CUDNN_SEARCH,
    ("eval", "--cudnn-search"): DEFAULT_CUDNN_SEARCH,
    ("calibrate", "--cudnn-search"): DEFAULT_CUDNN_SEARCH,
    ("archive", "--cudnn-search"): DEFAULT_CUDNN_SEARCH,
    ("scan", "--calibration"): sidecar_path(Path("MODEL.onnx")).name,
    ("audit", "--calibration"): sidecar_path(Path("MODEL.onnx")).name,
    ("eval", "--calibration"): sidecar_path(Path("MODEL.onnx")).name,
    ("archive", "--calibration"): sidecar_path(Path("MODEL.onnx")).name,
    ("train", "--modality"): TrainConfig().modality,
    ("train", "--out"): TrainConfig().out_dir,
    ("train", "--max-t"): TrainConfig().max_timestep,
}
"""Options that the parser leaves ``None`` (so that the code can tell "not given"), with
the value the code then uses."""


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def stated_defaults() -> list[tuple[str, argparse.Action, str]]:
    """(command, option, the literal default its help names) for every such option."""
    found = []
    for command, parser in subcommands().items():
        for action in parser._actions:
            for match in DEFAULT_IN_HELP.finditer(action.help or ""):
                value = (match["inside"] or match["choice"]).strip()
                if LITERAL.fullmatch(value):
                    found.append((command, action, value))
    return found


def test_every_subcommand_is_walked() -> None:
    assert len(subcommands()) == len(COMMANDS)


def test_the_walk_finds_the_defaults_it_should() -> None:
    named = {(command, action.option_strings[0]) for command, action, _ in stated_defaults()}
    for expected in [("scan", "--top"), ("scan", "--cudnn-search"), ("calibrate", "--window")]:
        assert expected in named
    assert ("scan", "--max-pixels") in named and ("tamper", "--depth") in named
    assert ("scan", "--score") in named  # "auto (default) = ..."


@pytest.mark.parametrize(
    ("command", "action", "value"),
    stated_defaults(),
    ids=lambda v: v.option_strings[0] if isinstance(v, argparse.Action) else str(v),
)
def test_a_default_named_in_help_is_the_real_one(command, action, value) -> None:
    option = action.option_strings[0]
    if action.default is None:
        assert (command, option) in RESOLVED_DEFAULTS, (
            f"btd {command} {option}: help says default {value!r} but the parser's is None; "
            "list it in RESOLVED_DEFAULTS with the code's constant"
        )
        assert value == str(RESOLVED_DEFAULTS[command, option]), (command, option)
        return
    parsed = action.type(value) if callable(action.type) else value
    assert parsed == action.default, f"btd {command} {option}: help {value!r}, {action.default!r}"


def test_cudnn_search_help_names_the_engines_default() -> None:
    text = " ".join(subcommands()["scan"].format_help().split())
    assert f"(default: {DEFAULT_CUDNN_SEARCH}," in text and DEFAULT_CUDNN_SEARCH == "heuristic"
