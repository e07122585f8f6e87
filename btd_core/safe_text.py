"""Text from files (DICOM tags, file names) made safe to show in a terminal.

Such text is data: it is never interpreted as rich/Textual markup (callers wrap it
in ``rich.text.Text``), and its control characters (ESC, CR, BEL, C1 codes, ...) are
shown as visible escapes so that a hostile PatientName cannot move the cursor,
recolour the terminal or hide a line.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``str(text)`` with every non-printable character replaced by its ``\\xNN`` escape.

    Spaces stay; tabs and newlines are escaped too (one value, one line).
    """
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
