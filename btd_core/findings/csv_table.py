"""CSV files a forensics team can open in a spreadsheet safely (every report's tables).

Text from files and tags is data: its control and other non-printable characters (ESC,
CR, LF, NUL, DEL, C1 codes, bidirectional overrides, ...) are written as visible escapes
(``\\x1b``, ``\\n``, ...), so ``cat findings.csv`` cannot clear a screen or hide a line,
and a cell that a spreadsheet would run as a formula is neutralised
(:func:`neutralise_cell`); numbers the writer formats itself are written exactly (floats by
``repr``).  Rows end in CRLF (RFC 4180), text is UTF-8, and lone surrogates from
undecodable tags are written as ``\\udcXX`` escapes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence

from btd_core.safe_text import printable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet treat a cell as a formula."""


def neutralise_cell(text: str) -> str:
    """Make one CSV cell of untrusted text safe to show and to open in a spreadsheet.

    Every non-printable character becomes its visible escape
    (:func:`btd_core.safe_text.printable`: ``\\x1b``, ``\\t``, ``\\n``, ``\\x00``, ...);
    then, if the text begins with ``=``, ``+``, ``-`` or ``@``, a single quote ``'`` is
    put in front so the spreadsheet shows it as text instead of running it.  Printable
    text that does not start like a formula is unchanged.
    """
    text = printable(text)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_cell(value: object, numeric: bool) -> str:
    """One cell: ``""`` for ``None``; a number column's value exact (floats by ``repr``);
    anything else as neutralised text."""
    if value is None:
        return ""
    if numeric:
        return repr(value) if isinstance(value, float) else str(value)
    return neutralise_cell(str(value))


def csv_bytes(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    numeric_columns: Collection[str],
) -> bytes:
    """The CSV file of ``rows`` (each a mapping with every column), header first, as
    UTF-8 bytes; only ``numeric_columns`` hold numbers the writer formats itself."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(csv_cell(row[c], c in numeric_columns) for c in columns)
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")
