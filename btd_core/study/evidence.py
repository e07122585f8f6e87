"""Evidence is read-only: outputs never go inside an input folder."""

from __future__ import annotations

from pathlib import Path

from btd_core.errors import BtdError


class OutputInsideEvidence(BtdError, ValueError):
    """An output path lies inside (or is) an input folder."""


def check_output_outside(
    out: Path, *inputs: Path | None, what: str = "output folder", inputs_are: str = "input folder"
) -> None:
    """Refuse ``out`` when it is one of ``inputs`` (folders; ``None`` ignored) or inside one.

    ``what`` and ``inputs_are`` name the two in the message ("report folder", "study").

    Paths are compared resolved (symlinks followed, ``..`` removed), so a link or a
    relative path into the evidence is refused too.

    Raises
    ------
    OutputInsideEvidence
        Naming the output and the input folder.
    """
    resolved = Path(out).expanduser().resolve()
    for folder in inputs:
        if folder is None:
            continue
        root = Path(folder).expanduser().resolve()
        if resolved == root or root in resolved.parents:
            raise OutputInsideEvidence(
                f"the {what} {out} is inside the {inputs_are} {folder}; evidence folders are "
                "never written into: choose a folder outside it"
            )
