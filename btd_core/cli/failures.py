"""How a command that cannot run says so: one line in red, exit status 2.

The commands catch :class:`~btd_core.errors.BtdError` (every error btd raises on purpose
derives from it) around their work and hand it to :func:`cannot_run`.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from btd_core.exit_status import ExitStatus


def cannot_run(console: Console, command: str, error: BaseException | str) -> int:
    """Print ``btd COMMAND: message`` in red; returns :attr:`ExitStatus.CANNOT_RUN`."""
    console.print(Text(f"{command}: {error}", style="red"), soft_wrap=True)
    return ExitStatus.CANNOT_RUN
