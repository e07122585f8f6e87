"""How a command that cannot run says so: one line in red, exit status 2."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from btd_core.exit_status import ExitStatus


def cannot_run_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "this command could not run" (imported on demand, so that
    ``btd --help`` does not load onnxruntime)."""
    from btd_core.audit.study_audit import AuditError
    from btd_core.engine.opening import ModelOpenError
    from btd_core.engine.scorer import ProviderError, ScorerOutputError
    from btd_core.findings.output_folder import OutputFolderError
    from btd_core.scoring.calibration import CalibrationError
    from btd_core.scoring.strategy import ScoreModeError
    from btd_core.study.evidence import OutputInsideEvidence

    return (
        AuditError,
        ModelOpenError,
        ProviderError,
        ScorerOutputError,
        ScoreModeError,
        CalibrationError,
        OutputInsideEvidence,
        OutputFolderError,
    )


def cannot_run(console: Console, command: str, error: BaseException | str) -> int:
    """Print ``btd COMMAND: message`` in red; returns :attr:`ExitStatus.CANNOT_RUN`."""
    console.print(Text(f"{command}: {error}", style="red"), soft_wrap=True)
    return ExitStatus.CANNOT_RUN
