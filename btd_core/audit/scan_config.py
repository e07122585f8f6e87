"""One scan's configuration, frozen: what ``btd scan``, ``btd audit``, ``btd eval`` and
``btd archive`` were asked, built once from the command line
(:func:`btd_core.cli.args.scan_config`) and passed whole.

:class:`ScanConfig` composes the small frozen types that already say one thing each:
where and how onnxruntime runs (``provider``, :class:`~btd_core.engine.options.EngineOptions`),
the slice score asked for (:class:`~btd_core.scoring.strategy.ScoreRequest`), how slices
are covered (:class:`~btd_core.scoring.tiles.ScanSettings`: stride, the paper's patch,
body mask, overlays, read threads), what a study's headers may claim
(:class:`~btd_core.study.limits.StudyLimits`) and what the report holds besides the
findings (:class:`ReportOutputs`).

:meth:`ScanConfig.report_identity` is every field that changes a report, decided field
by field: a field is in it unless :data:`NOT_IN_REPORT_IDENTITY` says why not, so a field
added later counts until someone decides otherwise.  The archive resumes only with the
same identity (plus the model's and the calibration's content and the btd version:
:mod:`btd_core.archive.driver`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from btd_core.engine.options import EngineOptions, ProviderChoice
from btd_core.scoring.strategy import ScoreRequest
from btd_core.scoring.tiles import ScanSettings
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits


@dataclass(frozen=True)
class ReportOutputs:
    """What a report holds besides its findings (how many overlays is the scan's
    :attr:`~btd_core.scoring.tiles.ScanSettings.overlays`: their images are kept then).

    Attributes
    ----------
    include_phi:
        Patient identifiers (name, ID, study date) in the report (``--no-phi``: false).
    dicom_top:
        When given (``btd scan --dicom``), each DICOM series' top ``dicom_top`` slices (>= 1)
        are also written as DICOM SR and SEG into ``OUT/dicom``; ``None``: no DICOM.
    """

    include_phi: bool = True
    dicom_top: int | None = None


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan was asked, besides its inputs (study, model) and where it writes.

    Attributes
    ----------
    provider:
        Where onnxruntime runs: ``auto``, ``cuda`` or ``cpu``.
    engine:
        How onnxruntime runs (batch size, threads, graph optimisation, CUDA options).
    score:
        The slice score asked for, resolved against the model once it is open.
    settings:
        How slices are covered and how many keep their image for an overlay; read threads.
    limits:
        What a study's headers may claim before a file is refused.
    outputs:
        What the report holds besides its findings.
    """

    provider: ProviderChoice = "auto"
    engine: EngineOptions = field(default_factory=EngineOptions)
    score: ScoreRequest = field(default_factory=ScoreRequest)
    settings: ScanSettings = field(default_factory=ScanSettings)
    limits: StudyLimits = DEFAULT_LIMITS
    outputs: ReportOutputs = field(default_factory=ReportOutputs)

    def report_identity(self) -> dict[str, object]:
        """Every field that changes a report, as plain JSON values, nested as here
        (``{"score": {"mode": ..., ...}, "settings": {...}, "limits": {...},
        "outputs": {...}}``); the fields of :data:`NOT_IN_REPORT_IDENTITY` are left out."""
        identity = _identity_of(self, "")
        assert isinstance(identity, dict)
        return identity


NOT_IN_REPORT_IDENTITY: dict[str, str] = {
    "provider": "CUDA or the CPU computes the same scores (a cluster may run both at once); "
    "the report records the provider each study ran on",
    "engine": "batch size, threads, graph optimisation and the CUDA options change how fast "
    "onnxruntime runs, not what it computes",
    "settings.workers": "read threads change how fast slices are read, not what is scored",
    "score.calibration_path": "a calibration is named by its content: the archive's identity "
    "holds the SHA-256 of the calibration file the score resolved to, wherever it lies",
}
"""The fields of :class:`ScanConfig` (dotted paths) that do not change a report, each with
the reason.  Every other field is part of :meth:`ScanConfig.report_identity`."""


def _identity_of(value: object, path: str) -> object:
    """``value`` as JSON values, without the fields of :data:`NOT_IN_REPORT_IDENTITY`."""
    if is_dataclass(value) and not isinstance(value, type):
        record = {}
        for item in fields(value):
            name = f"{path}.{item.name}" if path else item.name
            if name not in NOT_IN_REPORT_IDENTITY:
                record[item.name] = _identity_of(getattr(value, item.name), name)
        return record
    if isinstance(value, tuple | list):
        return [_identity_of(item, path) for item in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{path}: {type(value).__name__} has no JSON form for the report identity")
