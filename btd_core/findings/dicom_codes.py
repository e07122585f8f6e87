"""The coded concepts btd's DICOM findings use (Structured Report and Segmentation).

No standard code says "this image region may be synthetic (GAN/diffusion-edited)", so
the finding, the score's name, the assessment and the procedure are private codes of the
coding scheme ``99BTD`` (``99`` + name: a private scheme, DICOM PS3.16 section 8.2),
declared in each object's Coding Scheme Identification Sequence (0008,0110).  Where a
standard code fits it is used: DCM 121007 "Device" is the observer type, SCT 49755003
"Morphologically abnormal structure" the segment's category, DCM 123110 "Artificial
Intelligence" the segmentation algorithm's family, and the score's unit is UCUM
``{score}`` (an annotation of the unity: a dimensionless number).
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

SCHEME = "99BTD"
"""The private coding scheme's designator."""

SCHEME_ITEM = CodingSchemeIdentificationItem(
    designator=SCHEME,
    name="btd private codes for synthetic content detection",
    responsible_organization="btd project",
)
"""What each object's Coding Scheme Identification Sequence says about :data:`SCHEME`."""

SUSPECTED_SYNTHETIC = CodedConcept("BTD001", SCHEME, "Suspected synthetic content")
"""The finding: a region whose texture the diffusion model flags as possibly synthetic."""

TAMPER_SCORE = CodedConcept("BTD002", SCHEME, "Synthetic content score")
"""The slice score's name (higher is more suspicious; its mode is in the algorithm's
parameters: ``tile``/``local`` mean r^2 of the residual, ``calibrated`` surprise z)."""

DETECTION_PROCEDURE = CodedConcept("BTD003", SCHEME, "Synthetic content detection")
"""The procedure reported by the measurement report (TID 1500)."""

SCORE_UNIT = CodedConcept("{score}", "UCUM", "score")
"""UCUM unit of the slice score: dimensionless."""

AUTHENTICITY = CodedConcept("BTD004", SCHEME, "Image authenticity assessment")
"""The concept name of the qualitative evaluation whose value is :data:`SUSPECTED_SYNTHETIC`
(DCM 121071 "Finding" is already the ROI group's finding type, and TID 1410 allows one)."""

ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure
"""SCT 49755003: the segmented property category of the flagged regions."""

ARTIFICIAL_INTELLIGENCE = codes.cid7162.ArtificialIntelligence
"""DCM 123110 "Artificial Intelligence": the segmentation algorithm's family (CID 7162)."""

DEVICE = codes.DCM.Device
"""DCM 121007 "Device": the SR's observer type."""
