"""One series' flagged regions as a fractional DICOM Segmentation (SEG, occupancy).

Why a SEG of the worst-region rectangles, not a Parametric Map of the heat map:
the scan keeps the heat map of the report's top overlay slices only (memory does not grow
with the study), so a map could not cover every reported slice; and SEG opens in more
viewers (OHIF, 3D Slicer, Weasis and Orthanc's viewers show SEG; Parametric Maps far
fewer).  The SEG is fractional, as the issue asks, of type OCCUPANCY (the share of each
pixel the flagged region covers), never PROBABILITY, which the slice score is not: 1.0
inside each reported slice's worst region (pixels ``x .. x+size-1``, ``y .. y+size-1``),
0 elsewhere.  One segment, "Suspected synthetic content"
(:data:`btd_core.findings.dicom_codes.SUSPECTED_SYNTHETIC`), registered to the source
frames (highdicom copies their geometry, patient and study modules); new UIDs.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np

from btd_core.findings.dicom_codes import (
    ABNORMAL_STRUCTURE,
    ARTIFICIAL_INTELLIGENCE,
    SCHEME_ITEM,
    SUSPECTED_SYNTHETIC,
)
from btd_core.findings.dicom_conformance import with_slice_thickness
from btd_core.findings.dicom_sr import FlaggedSlice, Producer

SEG_SERIES_NUMBER = 9902
"""Series Number (0020,0011) of the SEG: after the SR's."""


def build_seg(
    flagged: Sequence[FlaggedSlice],
    producer: Producer,
    description: str = "",
    slice_spacing: float | None = None,
) -> hd.seg.Segmentation:
    """The fractional (occupancy) SEG of one series' reported slices.

    Single-frame sources give one SEG frame each; the frames of one multi-frame source
    are marked in a mask of all its frames (empty frames are left out of the file).
    ``slice_spacing`` (mm, the series' slice spacing, ``None``: unknown) is the Slice
    Thickness of a source header that has none
    (:func:`btd_core.findings.dicom_conformance.with_slice_thickness`).

    Raises
    ------
    ValueError
        When the slices come from several multi-frame files, a source has no slice
        thickness and none can be measured, or highdicom refuses the source headers
        (also ``TypeError`` / ``AttributeError`` for odd attributes).
    """
    if not flagged:
        raise ValueError("no reported slice to segment")
    sources, mask = _sources_and_mask(flagged)
    sources = with_slice_thickness(sources, slice_spacing)
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Suspected synthetic content",
        segmented_property_category=ABNORMAL_STRUCTURE,
        segmented_property_type=SUSPECTED_SYNTHETIC,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="btd",
            family=ARTIFICIAL_INTELLIGENCE,
            version=producer.tool_version,
            parameters={"model sha256": producer.model_sha256, "score mode": producer.score_mode},
        ),
        tracking_uid=hd.UID(),
        tracking_id="btd worst regions",
    )
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(np.float32),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.OCCUPANCY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="btd",
        manufacturer_model_name=f"btd {producer.tool_version}",
        software_versions=producer.tool_version,
        device_serial_number=producer.model_sha256[:64],
        series_description=(f"btd flagged regions {description}".strip())[:64],
        content_label="BTD",
        content_description="worst regions of the reported slices",
        coding_schemes=[SCHEME_ITEM],
    )


def _sources_and_mask(flagged: Sequence[FlaggedSlice]) -> tuple[list, np.ndarray]:
    """The source datasets and the uint8 mask [frames, rows, columns] that goes with them."""
    multi = {str(item.dataset.SOPInstanceUID) for item in flagged if item.frame is not None}
    if multi and (len(multi) > 1 or any(item.frame is None for item in flagged)):
        raise ValueError("the reported slices span several multi-frame files: no SEG")
    first = flagged[0].dataset
    rows, columns = int(first.Rows), int(first.Columns)
    if multi:
        frames = int(getattr(first, "NumberOfFrames", 1))
        mask = np.zeros((frames, rows, columns), dtype=np.uint8)
        for item in flagged:
            _mark(mask[item.frame or 0], item.region)
        return [first], mask
    mask = np.zeros((len(flagged), rows, columns), dtype=np.uint8)
    for index, item in enumerate(flagged):
        _mark(mask[index], item.region)
    return [item.dataset for item in flagged], mask


def _mark(frame: np.ndarray, region: tuple[int, int, int]) -> None:
    """Set the ``(x, y, size)`` square of ``frame`` (clipped to it) to 1."""
    x, y, size = region
    frame[max(y, 0) : y + size, max(x, 0) : x + size] = 1
