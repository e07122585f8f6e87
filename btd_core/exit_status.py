"""Exit statuses of every ``btd`` command and ``btd-export`` (one place)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What a command's exit status means."""

    OK = 0
    """Everything asked for was done."""
    SOME_FAILED = 1
    """Done, but some inputs (files, rows, slices) failed: see the report's error rows."""
    CANNOT_RUN = 2
    """Nothing was done: bad arguments, a model that cannot be opened, an output inside
    the evidence, ... (the message says which)."""
    CANCELLED = 130
    """Stopped by Ctrl-C (128 + SIGINT, the shell's convention); a partial report, marked
    cancelled, is written where there is one."""
