"""What an audit examines and what it finds: files, series, slices, results (runtime world).

Plain records, no behaviour: discovery fills :class:`FileRecord` and
:class:`Series`; the scan engine produces :class:`SliceResult`; ranking turns
them into :class:`Finding`; reports and the TUI read all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits

FileStatus = Literal["pending", "scored", "skipped", "error"]
"""``pending``: part of a series, not scored yet; ``scored``: every slice of it was
scored; ``skipped``: deliberately not scored (``reason`` says why); ``error``: could
not be read or decoded (``reason`` holds the message)."""

FileKind = Literal["dicom", "dicomdir", "image", "npy", "nifti", "archive", "unknown"]
SeriesKind = Literal["dicom", "image", "npy", "nifti"]

SIGNALS = ("residual", "pixels", "tissue", "energy", "tile")
"""What can give a slice's reported window its value (:attr:`SliceResult.signal`)."""


@dataclass
class FileRecord:
    """One file met while walking a study directory (every one becomes a report row).

    Attributes
    ----------
    path:
        Absolute path as found under the study root (symlinks not resolved); for a member
        of a ``.zip`` study, the zip's path followed by ``!/`` and the member's name (a
        name, not a file on disk).
    relpath:
        Path relative to the study root, with ``/`` separators; ``archive.zip!/dir/x.dcm``
        for a member of ``archive.zip``.
    size_bytes:
        Size in bytes, or ``None`` when it could not be read.
    sha256:
        SHA-256 of the content, hex, or ``None`` when the file could not be read.
    kind:
        What the content is (by content, not by extension); ``archive`` for a ``.zip``
        (read in place, its members are rows of their own) or a compressed file.
    status, reason:
        See :data:`FileStatus`; ``reason`` is ``""`` for scored files.
    link_target:
        ``""`` unless the entry is a symlink: then where it points, resolved (relative to
        the study root when inside it, else absolute; the literal link text when broken
        or looping).  Raw text from the file system: make it printable to show it.
    """

    path: Path
    relpath: str
    size_bytes: int | None
    sha256: str | None
    kind: FileKind
    status: FileStatus
    reason: str = ""
    link_target: str = ""


@dataclass(frozen=True)
class SliceRef:
    """One 2-D slice: a single-frame file, or one frame of a multi-frame DICOM, a 3-D
    ``.npy`` or a NIfTI volume.

    Attributes
    ----------
    path:
        The file holding the pixels.
    frame:
        0-based frame index inside a multi-frame file, ``None`` for a single-frame file;
        for NIfTI, ``volume x slices + slice`` along the slice axis
        (:mod:`btd_core.study.nifti`).
    sop_instance_uid:
        (0008,0018) SOP Instance UID; ``""`` for images and ``.npy``.
    instance_number:
        (0020,0013) Instance Number, or ``None``.
    position:
        (0020,0032) Image Position (Patient), mm, x/y/z of the first pixel's centre
        (per frame for enhanced multi-frame), or ``None``; for NIfTI the same point
        from the header's affine, in the same patient coordinates (LPS).
    location:
        Position projected on the slice normal (row cosines x column cosines), mm:
        the sort key along the series; ``None`` when position or orientation is missing.
    rescale_slope, rescale_intercept:
        (0028,1053) / (0028,1052), per frame for enhanced multi-frame; 1 and 0 when absent.
    window:
        (0028,1050) Window Center and (0028,1051) Window Width of the slice, or ``None``.
    orientation:
        Where the stored image's axes point, as patient directions: for NIfTI the volume's
        nibabel ``aff2axcodes`` (``"RAS"``: its voxel axes run towards the patient's right,
        anterior, superior); for DICOM the slice's columns, rows and normal from (0020,0037)
        (:func:`btd_core.study.frame_geometry.axis_codes`: ``"LPS"`` for a plain axial
        slice); ``""`` for images, ``.npy`` and DICOM without an orientation.
    source:
        The regular file to open when it is not ``path``: a symlink's target (resolved at
        discovery and inside the study), or the ``.zip`` that holds ``member``.
    member:
        The member's name inside the ``.zip`` at ``source``, or ``None``.
    """

    path: Path
    frame: int | None = None
    sop_instance_uid: str = ""
    instance_number: int | None = None
    position: tuple[float, float, float] | None = None
    location: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window: tuple[float, float] | None = None
    orientation: str = ""
    source: Path | None = None
    member: str | None = None


@dataclass
class Series:
    """Slices that belong together, in anatomical order (list index = slice index).

    Attributes
    ----------
    key:
        Unique within one discovery: the Series Instance UID for DICOM (suffixed with
        ``#2``, ... if one UID holds slices of different sizes), ``image:<relative dir>``
        for a folder of images, ``npy:<relative path>`` for a 3-D ``.npy`` volume,
        ``npy:<relative dir>`` for a folder of 2-D ``.npy`` slices, ``nifti:<relative
        path>`` for a NIfTI volume (``nifti:<relative path>:volume<N>`` for volume N of
        a 4-D file, from 1).
    kind:
        ``"dicom"``, ``"image"``, ``"npy"`` or ``"nifti"``.
    study_uid, series_uid:
        (0020,000D) / (0020,000E); ``""`` for images and ``.npy``.
    modality:
        (0008,0060) Modality, e.g. ``"CT"``, ``"MR"``; ``""`` when unknown.
    description:
        (0008,103E) Series Description, or the folder / file name.
    patient_id, patient_name, study_date:
        (0010,0020), (0010,0010), (0008,0020) as text; ``""`` when absent. Data, never markup.
    rows, columns:
        Slice size in pixels.
    ordering:
        How the slices were ordered: ``"slice normal"`` (DICOM, NIfTI), ``"instance
        number"``, ``"frame"`` or ``"file name"``.
    slices:
        The slices in order.
    limits:
        The limits the series was found under; reading a slice checks its file against
        them again before decoding (the file may have changed since).
    intensity_ranges:
        MR intensity ranges measured on the series, by method (filled by
        :func:`btd_core.slices.windowing.series_mr_range`, once per series).
    """

    key: str
    kind: SeriesKind
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    description: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    rows: int = 0
    columns: int = 0
    ordering: str = "file name"
    slices: list[SliceRef] = field(default_factory=list)
    limits: StudyLimits = DEFAULT_LIMITS
    intensity_ranges: dict[str, object] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Discovery:
    """Everything found under one study root.

    ``files`` lists every file examined (sorted by ``relpath``), including those that
    are part of a series (status ``pending`` until scored).  ``cancelled``: the walk was
    stopped before its end (``files`` and ``series`` hold what was found until then);
    ``limits``: the limits the study was examined under.
    """

    root: Path
    series: list[Series]
    files: list[FileRecord]
    cancelled: bool = False
    limits: StudyLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class SliceResult:
    """One scored slice.

    Attributes
    ----------
    series_key, slice_index:
        Which slice (:attr:`Series.key`, index into :attr:`Series.slices`).
    score:
        Slice score: the maximum tile score over the slice (model card's reduction,
        residual in model space [-1, 1]); higher is more suspicious.
    tile_x, tile_y:
        Column and row (pixels) of the worst tile's top-left corner.
    tile_size:
        Side of the worst tile in pixels (the model's S).
    tiles_scored, tiles_skipped:
        Tiles sent to the model, and tiles the body mask skipped as air/background.
    window_x, window_y, window_size:
        In the local score modes: the worst local window's top-left corner and side,
        pixels (``None`` in the tile mode).
    score_mode:
        How ``score`` was computed: ``tile`` (max tile score), ``local`` (max window mean
        r^2) or ``calibrated`` (max window surprise z against genuine tissue).
    signal:
        What gave the reported window its value (:data:`SIGNALS`): ``residual`` (the
        model's residual against the same window in the neighbouring slices, series ends
        included), ``pixels`` (the window's pixels against the neighbours'), ``tissue``
        (the calibrated tissue surprise of a slice judged alone), ``energy`` (the local
        mode's mean r^2) or ``tile`` (the tile mode); ``""`` when unknown (a report
        written before btd recorded it).
    """

    series_key: str
    slice_index: int
    score: float
    tile_x: int
    tile_y: int
    tile_size: int
    tiles_scored: int
    tiles_skipped: int
    window_x: int | None = None
    window_y: int | None = None
    window_size: int | None = None
    score_mode: str = "tile"
    signal: str = ""

    @property
    def region(self) -> tuple[int, int, int]:
        """(x, y, size) of where the slice is most suspicious: the window, else the tile."""
        if self.window_size is not None and self.window_x is not None and self.window_y is not None:
            return self.window_x, self.window_y, self.window_size
        return self.tile_x, self.tile_y, self.tile_size


@dataclass(frozen=True)
class Finding:
    """A ranked slice with everything a report row needs (rank 1 = most suspicious).

    ``genuine_tail``: how rare its score is among the calibration's genuine slices, an
    empirical tail probability in (0, 1] (:mod:`btd_core.scoring.rarity`), and
    ``genuine_slices`` how many genuine slices that is; both ``None`` without a
    calibration that recorded its genuine slices' scores, or for another slice score.
    """

    rank: int
    result: SliceResult
    series: Series
    slice: SliceRef
    file: FileRecord
    genuine_tail: float | None = None
    genuine_slices: int | None = None


def series_label(series: Series) -> str:
    """A short, human name for a series: its description, else the tail of its key
    (at most 17 characters).  Raw text from the files: make it printable to show it."""
    if series.description:
        return series.description
    key = series.key
    return key if len(key) <= 20 else "…" + key[-16:]
