"""Turn DICOM element values into plain Python values (runtime world: pydicom only).

Each reader takes a parsed :class:`~pydicom.dataset.Dataset` (or ``None``) and an element
keyword and gives back ``str``, ``int`` or ``float`` values.  Two kinds: *tolerant*
readers (text, instance number, positions) give ``""`` or ``None`` for a missing or
unusable value; *strict* readers (image sizes, rescale) raise :class:`DicomReadError`
when a value is present but unusable, because reading on would give wrong pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from btd_core.errors import BtdError
from btd_core.study.file_access import short_message


class DicomReadError(BtdError):
    """The file is not a DICOM dataset, or a header value it needs is unusable."""


def text(ds: Dataset, keyword: str) -> str:
    """A text-like element as plain ``str``; multiple values joined by ``\\``; ``""`` if absent."""
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, (list, tuple, MultiValue)):
            return "\\".join(str(v) for v in value).strip(" \x00")
        return str(value).strip(" \x00")
    except Exception:
        return ""


def element_values(ds: Dataset | None, keyword: str) -> list[Any] | None:
    """The element's values as a list, ``None`` when absent or empty (may raise what
    pydicom raises while converting a damaged value)."""
    if ds is None or keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None or value == "":
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def positive_count(ds: Dataset, keyword: str, label: str, default: int | None) -> int | None:
    """A positive integer element (Rows, Columns, Number of Frames...), strict: ``default``
    when absent.  ``label`` names the element in messages, e.g. ``"Rows (0028,0010)"``.

    Raises :class:`DicomReadError` when present but not a positive integer.
    """
    try:
        values = element_values(ds, keyword)
    except Exception as exc:
        raise DicomReadError(f"unreadable {label}: {short_message(exc)}") from exc
    if values is None:
        return default
    try:
        number = int(values[0])
    except (TypeError, ValueError) as exc:
        raise DicomReadError(f"invalid {label}: {values[0]!r}") from exc
    if number <= 0:
        raise DicomReadError(f"invalid {label}: {number}")
    return number


def optional_int(ds: Dataset, keyword: str) -> int | None:
    """An integer element such as (0020,0013) Instance Number, tolerant: ``None`` if unusable."""
    try:
        values = element_values(ds, keyword)
        return None if values is None else int(values[0])
    except Exception:
        return None


def finite_floats(ds: Dataset | None, keyword: str, count: int) -> tuple[float, ...] | None:
    """The first ``count`` numbers of a DS/FD element when all are finite, tolerant:
    ``None`` if absent, shorter than ``count`` or unusable."""
    try:
        values = element_values(ds, keyword)
        if values is None or len(values) < count:
            return None
        numbers = tuple(float(v) for v in values[:count])
    except Exception:
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def strict_float(ds: Dataset, keyword: str, label: str) -> float | None:
    """A number that changes pixel values (rescale), strict: ``None`` when absent.

    Raises :class:`DicomReadError` when present but not a finite number.
    """
    try:
        values = element_values(ds, keyword)
        if values is None:
            return None
        number = float(values[0])
    except Exception as exc:
        raise DicomReadError(f"invalid {label}") from exc
    if not math.isfinite(number):
        raise DicomReadError(f"invalid {label}: {number}")
    return number
