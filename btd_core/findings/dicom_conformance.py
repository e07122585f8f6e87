"""What a source header may lack that btd's SR and SEG must carry (DICOM PS3.3 Type 1C).

Two gaps that real studies have and ``dciodvfy`` names as errors in the objects built
from them:

- **Slice Thickness (0018,0050)** of the SEG's Pixel Measures macro: highdicom copies it
  from the source, which may lack it or hold it empty (Type 2 in a CT image).
  :func:`with_slice_thickness` gives highdicom in-memory copies of the headers with a
  thickness filled in: the source's Spacing Between Slices (0018,0088) when it has one,
  else the spacing of the series' slices measured from their positions
  (:func:`series_slice_spacing`); a slice alone with neither gets no SEG (a note says
  why) rather than an invented number.  The study's files are never written.
- **De-identification Method (0012,0063)**: required when Patient Identity Removed
  (0012,0062) is ``YES`` and no De-identification Method Code Sequence (0012,0064) is
  present.  highdicom copies the flag from the source; where the source names no method,
  :func:`complete_deidentification` says so in the object (:data:`METHOD_UNKNOWN`).
"""

from __future__ import annotations

import copy
import itertools
import statistics
from collections.abc import Sequence

from pydicom import Dataset
from pydicom.valuerep import format_number_as_ds

from btd_core.study.records import Series

METHOD_UNKNOWN = "unknown: the source images record no method"
"""De-identification Method (LO, at most 64 characters) of an object whose source says
Patient Identity Removed ``YES`` without naming how."""


def series_slice_spacing(series: Series) -> float | None:
    """The spacing of ``series``' slices along their normal, mm: the median gap between
    neighbouring distinct slice locations; ``None`` with fewer than two located slices."""
    locations = sorted({ref.location for ref in series.slices if ref.location is not None})
    gaps = [b - a for a, b in itertools.pairwise(locations) if b - a > 1e-6]
    return float(statistics.median(gaps)) if gaps else None


def _has_value(dataset: Dataset, keyword: str) -> bool:
    """Whether ``keyword`` is present with a non-empty value."""
    value = dataset.get(keyword)
    return value is not None and value != ""


def _pixel_measures(dataset: Dataset) -> Dataset | None:
    """The item that holds an enhanced multi-frame header's shared pixel measures."""
    shared = dataset.get("SharedFunctionalGroupsSequence")
    measures = shared[0].get("PixelMeasuresSequence") if shared else None
    return measures[0] if measures else None


def with_slice_thickness(sources: Sequence[Dataset], spacing: float | None) -> list[Dataset]:
    """``sources`` where each lacks Slice Thickness, a copy with one filled in (the others
    as they are): the header's Spacing Between Slices, else ``spacing`` (mm, the series'
    slice spacing; ``None``: unknown).

    Raises
    ------
    ValueError
        When a header lacks a thickness and none can be measured (no SEG then).
    """
    completed = []
    for source in sources:
        holder = _pixel_measures(source) or source
        if _has_value(holder, "SliceThickness"):
            completed.append(source)
            continue
        given = holder.get("SpacingBetweenSlices") or source.get("SpacingBetweenSlices")
        thickness = float(given) if given not in (None, "") else spacing
        if thickness is None or thickness <= 0:
            raise ValueError(
                "the source has no Slice Thickness (0018,0050), and no spacing between "
                "slices to take it from (a slice alone in its series)"
            )
        filled = copy.deepcopy(source)
        (_pixel_measures(filled) or filled).SliceThickness = format_number_as_ds(thickness)
        completed.append(filled)
    return completed


def complete_deidentification(dataset: Dataset) -> Dataset:
    """Give ``dataset`` (an SR or SEG made by btd) the De-identification Method its
    Patient Identity Removed ``YES`` requires, when it has neither it nor the code
    sequence; returns ``dataset``."""
    removed = str(dataset.get("PatientIdentityRemoved", "")).strip().upper()
    if removed == "YES" and not (
        _has_value(dataset, "DeidentificationMethod")
        or dataset.get("DeidentificationMethodCodeSequence")
    ):
        dataset.DeidentificationMethod = METHOD_UNKNOWN
    return dataset
