"""Where each frame of a DICOM image lies and how its stored values map to modality values.

:func:`frame_geometries` gives one :class:`FrameGeometry` per frame: position and
location along the slice normal (mm), rescale and window.  Enhanced multi-frame files
carry these in their functional groups ((5200,9229) Shared and (5200,9230) Per-Frame
Functional Groups Sequences); classic files at the top level.  Runtime world: pydicom only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydicom.dataset import Dataset

from btd_core.study.dicom_values import finite_floats, strict_float
from btd_core.study.file_access import StopCheck, check_stop

T = TypeVar("T")


@dataclass(frozen=True)
class FrameGeometry:
    """Where one frame lies and how its stored values map to modality values.

    Attributes
    ----------
    position:
        (0020,0032) Image Position (Patient), mm, or ``None``.
    location:
        ``position`` projected on the slice normal of (0020,0037), or ``None``.
    rescale_slope, rescale_intercept:
        (0028,1053) / (0028,1052); 1 and 0 when absent.
    window:
        (0028,1050) Window Center and (0028,1051) Window Width (first values), or ``None``.
    orientation:
        :func:`axis_codes` of (0020,0037): where the image's columns, rows and slices run
        (``"LPS"`` for a plain axial slice); ``""`` without a usable orientation.
    """

    position: tuple[float, float, float] | None
    location: float | None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window: tuple[float, float] | None = None
    orientation: str = ""


def slice_normal(orientation: Sequence[float] | None) -> tuple[float, float, float] | None:
    """Unit normal (row cosines x column cosines) of (0020,0037) Image Orientation (Patient)."""
    if orientation is None or len(orientation) < 6:
        return None
    r, c = orientation[0:3], orientation[3:6]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def axis_codes(orientation: Sequence[float] | None) -> str:
    """Where the image's axes point, one letter each, as nibabel's ``aff2axcodes`` names a
    NIfTI volume's: along a row (towards higher columns), down a column (towards higher
    rows) and along the slice normal, each the patient direction nearest to it (L/R, P/A,
    S/I; DICOM's patient axes run towards L, P and S).  ``"LPS"``: a plain axial slice;
    ``""`` without a usable (0020,0037) Image Orientation (Patient)."""
    normal = slice_normal(orientation)
    if orientation is None or normal is None:
        return ""
    letters = []
    for axis in (orientation[0:3], orientation[3:6], normal):
        nearest = max(range(3), key=lambda i: abs(axis[i]))
        letters.append(("LPS" if axis[nearest] > 0 else "RAI")[nearest])
    return "".join(letters)


def slice_location(
    position: Sequence[float] | None, orientation: Sequence[float] | None
) -> float | None:
    """(0020,0032) position projected on the slice normal of (0020,0037), mm, or ``None``."""
    normal = slice_normal(orientation)
    if position is None or normal is None:
        return None
    return float(sum(n * p for n, p in zip(normal, position, strict=False)))


def _rescale(item: Dataset | None) -> tuple[float, float] | None:
    """(0028,1053) Rescale Slope and (0028,1052) Rescale Intercept of ``item``, if any;
    a present but unusable value raises :class:`~btd_core.study.dicom_values.DicomReadError`."""
    if item is None:
        return None
    slope = strict_float(item, "RescaleSlope", "Rescale Slope (0028,1053)")
    intercept = strict_float(item, "RescaleIntercept", "Rescale Intercept (0028,1052)")
    if slope is None and intercept is None:
        return None
    return (1.0 if slope is None else slope, 0.0 if intercept is None else intercept)


def _window(item: Dataset | None) -> tuple[float, float] | None:
    """(0028,1050) Window Center and (0028,1051) Window Width, first values, tolerant."""
    center = finite_floats(item, "WindowCenter", 1)
    width = finite_floats(item, "WindowWidth", 1)
    if center is None or width is None:
        return None
    return (center[0], width[0])


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a sequence element, tolerant: ``None`` when absent or unreadable."""
    try:
        if ds is None or keyword not in ds:
            return None
        seq = ds[keyword].value
        return seq[0] if seq else None
    except Exception:
        return None


def _from_groups(
    per_frame: Dataset | None,
    shared: Dataset | None,
    keyword: str,
    read: Callable[[Dataset | None], T | None],
) -> T | None:
    """``read`` applied to the macro ``keyword`` of a frame: per-frame item, else shared."""
    found = read(_first_item(per_frame, keyword))
    return found if found is not None else read(_first_item(shared, keyword))


def _per_frame_items(ds: Dataset, n_frames: int) -> list[Dataset] | None:
    """(5200,9230) Per-Frame Functional Groups Sequence items, if there is one per frame."""
    try:
        if "PerFrameFunctionalGroupsSequence" not in ds:
            return None
        items = list(ds.PerFrameFunctionalGroupsSequence)
    except Exception:
        return None
    return items if len(items) == n_frames else None


def _frame_geometry(
    ds: Dataset, item: Dataset | None, shared: Dataset | None, single: bool
) -> FrameGeometry:
    """One frame's position, location, rescale and window (enhanced macros, then top level).

    Reads (0020,9113) Plane Position Sequence, (0020,9116) Plane Orientation Sequence,
    (0028,9145) Pixel Value Transformation Sequence and (0028,9132) Frame VOI LUT
    Sequence from the frame's functional groups, then the shared ones, then the
    top-level (0020,0032), (0020,0037), (0028,1052/1053) and (0028,1050/1051).
    Top-level (0020,0032) is used only for a single frame: for a classic multi-frame
    file it is the first frame's position, not every frame's.
    """
    position = _from_groups(
        item, shared, "PlanePositionSequence", lambda m: finite_floats(m, "ImagePositionPatient", 3)
    )
    if position is None and single:
        position = finite_floats(ds, "ImagePositionPatient", 3)
    orientation = _from_groups(
        item,
        shared,
        "PlaneOrientationSequence",
        lambda m: finite_floats(m, "ImageOrientationPatient", 6),
    ) or finite_floats(ds, "ImageOrientationPatient", 6)
    rescale = _from_groups(item, shared, "PixelValueTransformationSequence", _rescale)
    slope, intercept = rescale or _rescale(ds) or (1.0, 0.0)
    window = _from_groups(item, shared, "FrameVOILUTSequence", _window)
    pos3 = None if position is None else (position[0], position[1], position[2])
    return FrameGeometry(
        position=pos3,
        location=slice_location(pos3, orientation),
        rescale_slope=slope,
        rescale_intercept=intercept,
        window=window or _window(ds),
        orientation=axis_codes(orientation),
    )


def frame_geometries(
    ds: Dataset, n_frames: int, should_stop: StopCheck | None = None
) -> tuple[FrameGeometry, ...]:
    """A :class:`FrameGeometry` per frame, from (5200,9229) Shared and (5200,9230)
    Per-Frame Functional Groups Sequences when present, else from top-level elements.

    ``should_stop`` is asked every 64 frames (:class:`~btd_core.study.file_access.Cancelled`
    when it says so); callers check ``n_frames`` against the limits first.  Raises
    :class:`~btd_core.study.dicom_values.DicomReadError` for an unusable rescale value.
    """
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = _per_frame_items(ds, n_frames)
    frames = []
    for i in range(n_frames):
        if i % 64 == 63:
            check_stop(should_stop)
        frames.append(
            _frame_geometry(ds, per_frame[i] if per_frame else None, shared, n_frames == 1)
        )
    return tuple(frames)
