"""One DICOM file's header as a small record of plain values (runtime world: pydicom only).

:func:`read_header` parses the file (:mod:`btd_core.study.dicom_framing`), reads the
image size once and checks what the header claims about its pixels
(:mod:`btd_core.study.pixel_claims`), and gives back a :class:`DicomHeader`: plain
strings and numbers (:mod:`btd_core.study.dicom_values`) and one
:class:`~btd_core.study.frame_geometry.FrameGeometry` per frame, so that discovery never
keeps a pydicom dataset alive.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import IO, Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from btd_core.study.dicom_framing import PixelElement, read_framed
from btd_core.study.dicom_values import optional_int, text
from btd_core.study.file_access import StopCheck
from btd_core.study.frame_geometry import FrameGeometry, frame_geometries
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits
from btd_core.study.pixel_claims import PixelClaims, check_pixel_claims, image_size

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: the SOP class of a DICOMDIR."""


@dataclass(frozen=True)
class DicomHeader:
    """What discovery needs from one DICOM file (no pixels, no pydicom objects).

    Attributes
    ----------
    sop_class_uid, sop_instance_uid:
        (0008,0016) / (0008,0018); the class falls back to (0002,0002) Media Storage
        SOP Class UID.  ``""`` when absent.
    study_uid, series_uid:
        (0020,000D) Study Instance UID / (0020,000E) Series Instance UID, ``""`` when absent.
    modality, series_description, patient_id, patient_name, study_date:
        (0008,0060), (0008,103E), (0010,0020), (0010,0010), (0008,0020) as plain text.
    rows, columns:
        (0028,0010) / (0028,0011), ``None`` when absent.
    samples_per_pixel:
        (0028,0002), 1 when absent.
    number_of_frames:
        (0028,0008) Number of Frames, 1 when absent.
    instance_number:
        (0020,0013), ``None`` when absent or not a number.
    has_pixel_data:
        Whether (7FE0,0010), (7FE0,0008) or (7FE0,0009) is present at the top level.
    is_dicomdir:
        A DICOMDIR: (0004,1220) Directory Record Sequence present, or SOP class
        1.2.840.10008.1.3.10.
    frames:
        One :class:`~btd_core.study.frame_geometry.FrameGeometry` per frame; empty when
        there are no rows/columns.
    sop_class_name:
        The SOP class's name, e.g. ``"RT Plan Storage"``, or its UID when not in the
        standard; ``""`` when the UID is missing or malformed (not digits and dots).
    is_image_class:
        Whether the SOP class is an image storage class (``... Image Storage``).
    claims:
        The pixel claims checked against the limits (when read by :func:`read_header`
        with pixel data, rows and columns), else ``None``.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    modality: str
    series_description: str
    patient_id: str
    patient_name: str
    study_date: str
    rows: int | None
    columns: int | None
    samples_per_pixel: int
    number_of_frames: int
    instance_number: int | None
    has_pixel_data: bool
    is_dicomdir: bool
    frames: tuple[FrameGeometry, ...]
    sop_class_name: str = ""
    is_image_class: bool = False
    claims: PixelClaims | None = None


def header_from_dataset(
    ds: Dataset,
    has_pixel_data: bool,
    limits: StudyLimits | None = None,
    should_stop: StopCheck | None = None,
    pixel: PixelElement | None = None,
    fp: Any = None,
    file_size: int | None = None,
) -> DicomHeader:
    """Build a :class:`DicomHeader` from a parsed dataset (see its attributes for the tags).

    Before one record per frame is made, the frame size and count are checked against
    ``limits`` (default :data:`~btd_core.study.limits.DEFAULT_LIMITS`), and with the
    ``pixel`` element (its header, in ``fp`` of ``file_size`` bytes) what the pixels
    claim (:func:`~btd_core.study.pixel_claims.check_pixel_claims`).

    Raises :class:`~btd_core.study.dicom_values.DicomReadError` when Rows, Columns,
    Number of Frames, Samples per Pixel or a rescale value is present but unusable,
    :class:`~btd_core.study.limits.LimitExceeded` when a claim is refused,
    :class:`~btd_core.study.file_access.Cancelled` when ``should_stop`` says so.
    """
    limits = limits or DEFAULT_LIMITS
    meta = getattr(ds, "file_meta", None)
    sop_class = text(ds, "SOPClassUID") or (
        text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    )
    class_name = str(UID(sop_class).name) if sop_class and UID(sop_class).is_valid else ""
    try:
        is_dicomdir = sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds
    except Exception:
        is_dicomdir = sop_class == DICOMDIR_SOP_CLASS
    size = image_size(ds, limits, check=not is_dicomdir)
    is_image = size.has_image and not is_dicomdir
    claims = None
    if is_image and pixel is not None:
        claims = check_pixel_claims(ds, pixel, size, limits, fp, file_size, should_stop)
    frames = frame_geometries(ds, size.frames, should_stop) if is_image else ()
    return DicomHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=text(ds, "SOPInstanceUID"),
        study_uid=text(ds, "StudyInstanceUID"),
        series_uid=text(ds, "SeriesInstanceUID"),
        modality=text(ds, "Modality"),
        series_description=text(ds, "SeriesDescription"),
        patient_id=text(ds, "PatientID"),
        patient_name=text(ds, "PatientName"),
        study_date=text(ds, "StudyDate"),
        rows=size.rows,
        columns=size.columns,
        samples_per_pixel=size.samples,
        number_of_frames=size.frames,
        instance_number=optional_int(ds, "InstanceNumber"),
        has_pixel_data=has_pixel_data,
        is_dicomdir=is_dicomdir,
        frames=frames,
        sop_class_name=class_name,
        is_image_class="Image Storage" in class_name,
        claims=claims,
    )


def read_header(
    fp: IO[bytes], limits: StudyLimits | None = None, should_stop: StopCheck | None = None
) -> DicomHeader:
    """Read the header of the DICOM file open in ``fp`` (pixels are not read).

    Raises :class:`~btd_core.study.dicom_values.DicomReadError` (not DICOM, or an
    unusable required value), :class:`~btd_core.study.limits.LimitExceeded` (a claim
    over ``limits``), :class:`~btd_core.study.file_access.Cancelled`, or any exception
    pydicom raises on a damaged file; callers catch ``Exception``.
    """
    limits = limits or DEFAULT_LIMITS
    with warnings.catch_warnings():  # pydicom warns on every odd value, lazily
        warnings.simplefilter("ignore")
        framed = read_framed(fp, stop_before_pixels=True, limits=limits)
        file_size = fp.seek(0, 2)
        return header_from_dataset(
            framed.dataset,
            framed.pixel is not None,
            limits,
            should_stop,
            framed.pixel,
            fp,
            file_size,
        )
