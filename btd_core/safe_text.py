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


def middle_ellipsis(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells by replacing its middle with ``…``, keeping
    the start (the folder) and more of the end (a file name's distinguishing part).
    Widths under 2 give the first ``width`` characters."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    head = (width - 1) // 3
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def path_ellipsis(path: str, width: int) -> str:
    """A relative path cut to at most ``width`` cells, keeping its file name whole where
    it fits (``exp…/IM07523``: the part that tells slices apart), else
    :func:`middle_ellipsis` of the whole path."""
    if len(path) <= width:
        return path
    folder, slash, name = path.rpartition("/")
    room = width - len(name) - 2  # "…" and "/"
    if not slash or room < 0:
        return middle_ellipsis(path, width)
    return folder[:room] + "…/" + name
