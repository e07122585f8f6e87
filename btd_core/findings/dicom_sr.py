"""One series' findings as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

The observer is a device: btd itself, its version in the model name and the ONNX model
file's SHA-256 (hex, 64 characters) as its serial number.  Each reported slice is one
planar ROI measurement group (TID 1410): the slice's worst region (the local score's
window, else the worst tile) as a closed rectangle in image pixel coordinates (column,
row; (0, 0) is the top-left corner of the top-left pixel, so the window of pixels
``x .. x+size-1`` runs from ``x`` to ``x+size``) on the source SOP instance (and frame):
SCOORD ``POLYLINE`` whose fifth point repeats the first (2-D SCOORD has no ``POLYGON``
type; a closed polyline is its polygon); the slice score as a numeric measurement (unit
UCUM ``{score}``), the qualitative evaluation "Suspected synthetic content" and the
algorithm's name and version.  Patient and study modules are copied from the source
images by highdicom, which also lists them as evidence; the SR gets new Series and SOP
Instance UIDs.

Codes: :mod:`btd_core.findings.dicom_codes`.  Text from DICOM tags is data: it is copied
into the new object's attributes, never interpreted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from btd_core.findings.dicom_codes import (
    AUTHENTICITY,
    DETECTION_PROCEDURE,
    DEVICE,
    SCHEME_ITEM,
    SCORE_UNIT,
    SUSPECTED_SYNTHETIC,
    TAMPER_SCORE,
)

SR_SERIES_NUMBER = 9901
"""Series Number (0020,0011) of the SR: high, so viewers list it after the images."""


@dataclass(frozen=True)
class FlaggedSlice:
    """One reported slice of a series, with its source image's header.

    Attributes
    ----------
    dataset:
        The source file's DICOM header (pixel data not needed).
    frame:
        0-based frame of a multi-frame source, ``None`` for a single-frame file.
    rank:
        The slice's rank in the whole report (1 = most suspicious).
    score:
        The slice score (see ``score_mode`` of :class:`Producer`); higher is more suspicious.
    region:
        ``(x, y, size)``: column and row of the worst region's top-left pixel and its side,
        pixels.
    """

    dataset: Dataset
    frame: int | None
    rank: int
    score: float
    region: tuple[int, int, int]


@dataclass(frozen=True)
class Producer:
    """What made the findings: btd's version, the model file's SHA-256 and the score mode."""

    tool_version: str
    model_sha256: str
    score_mode: str

    @property
    def device_uid(self) -> str:
        """A UID for the observer device, the same for the same btd version and model."""
        return generate_uid(prefix=None, entropy_srcs=["btd", self.tool_version, self.model_sha256])

    def algorithm(self) -> hd.sr.AlgorithmIdentification:
        """TID 4019 algorithm identification: btd, its version, the model and score mode."""
        return hd.sr.AlgorithmIdentification(
            name="btd",
            version=self.tool_version,
            parameters=[f"model sha256 {self.model_sha256}", f"score mode {self.score_mode}"],
        )


def window_polygon(region: tuple[int, int, int]) -> np.ndarray:
    """The closed rectangle around ``region`` = ``(x, y, size)`` pixels: [5, 2] (column, row),
    corners clockwise from the top-left, the first point repeated last."""
    x, y, size = region
    corners = [(x, y), (x + size, y), (x + size, y + size), (x, y + size), (x, y)]
    return np.array(corners, dtype=float)


def build_sr(
    flagged: Sequence[FlaggedSlice], producer: Producer, description: str = ""
) -> hd.sr.Comprehensive3DSR:
    """The SR of one series' reported slices (most suspicious first).

    Raises
    ------
    ValueError, TypeError, AttributeError
        When highdicom refuses the source headers (missing or odd attributes).
    """
    if not flagged:
        raise ValueError("no reported slice to put into the SR")
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=producer.device_uid,
        name="btd",
        manufacturer_name="btd",
        model_name=f"btd {producer.tool_version}",
        serial_number=producer.model_sha256[:64],
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=DEVICE,
            observer_identifying_attributes=device,
        )
    )
    groups = [_roi_group(item, producer) for item in flagged]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=DETECTION_PROCEDURE,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[item.dataset for item in _unique_sources(flagged)],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="btd",
        is_complete=True,
        series_description=(f"btd findings {description}".strip())[:64],
        coding_schemes=[SCHEME_ITEM],
    )


def _roi_group(
    item: FlaggedSlice, producer: Producer
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 for one slice: its worst region, score and evaluation."""
    source = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=item.dataset.SOPClassUID,
        referenced_sop_instance_uid=item.dataset.SOPInstanceUID,
        referenced_frame_numbers=None if item.frame is None else [item.frame + 1],
    )
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=window_polygon(item.region),
        source_image=source,
    )
    score = hd.sr.Measurement(
        name=TAMPER_SCORE,
        value=float(item.score),
        unit=SCORE_UNIT,
        algorithm_id=producer.algorithm(),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"btd rank {item.rank}"
        ),
        referenced_region=region,
        finding_type=SUSPECTED_SYNTHETIC,
        algorithm_id=producer.algorithm(),
        measurements=[score],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=AUTHENTICITY, value=SUSPECTED_SYNTHETIC)
        ],
    )


def _unique_sources(flagged: Sequence[FlaggedSlice]) -> list[FlaggedSlice]:
    """One item per source SOP instance (frames of one multi-frame file share it)."""
    seen: dict[str, FlaggedSlice] = {}
    for item in flagged:
        seen.setdefault(str(item.dataset.SOPInstanceUID), item)
    return list(seen.values())
