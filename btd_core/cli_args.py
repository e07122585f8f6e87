"""Argument types shared by the ``btd`` subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of at least 1, for counts and pixel strides; argparse reports anything else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
