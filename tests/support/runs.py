"""A scan's run record for report tests: fixed times, host and model, any field changed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from btd_core.findings.report import RunInfo
from tests.support.cards import make_card

STARTED = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def make_run(root: Path, **changes: object) -> RunInfo:
    """A complete :class:`RunInfo` of ``btd scan root`` (3 minutes from :data:`STARTED`, the
    CPU provider, a fixed model) with ``changes``."""
    values: dict[str, object] = dict(
        tool_version="0.1.0",
        command_line=["btd", "scan", str(root)],
        host="forensics-1",
        started_utc=STARTED,
        ended_utc=STARTED + timedelta(minutes=3),
        study_root=root,
        model_path=Path("/models/ct.onnx"),
        model_sha256="cd" * 32,
        model_card=make_card(),
        provider="CPUExecutionProvider",
        provider_note="",
        settings={"stride": 48, "body_threshold": -500.0, "batch_size": 64},
        library_versions={"python": "3.11.7", "numpy": "2.0"},
    )
    values.update(changes)
    return RunInfo(**values)  # type: ignore[arg-type]
