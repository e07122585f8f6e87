"""What every report's JSON sidecar records about the run: tool, command, host, times,
model and provider (``report.json`` of ``btd scan``, ``eval.json`` of ``btd eval``)."""

from __future__ import annotations

import json
import math
import platform
import socket
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from btd_core import __version__
from btd_core.engine.model_card import ModelCard
from btd_core.safe_text import printable

LIBRARIES = ("numpy", "onnxruntime", "pydicom", "pillow", "rich")


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def iso_utc(stamp: datetime) -> str:
    """``stamp`` as ISO 8601 in UTC.

    Raises
    ------
    ValueError
        When ``stamp`` has no time zone.
    """
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise ValueError(
            f"timestamp {stamp!r} has no time zone; use btd_core.findings.provenance.utc_now()"
        )
    return stamp.astimezone(timezone.utc).isoformat()


def library_versions() -> dict[str, str]:
    """Versions of Python and the runtime libraries; ``"not installed"`` for a missing one.

    ``onnxruntime`` is provided by either the ``onnxruntime`` or the ``onnxruntime-gpu``
    distribution; the GPU one is reported as ``"<version> (onnxruntime-gpu)"``.
    """
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        found[name] = _distribution_version(name)
    if found["onnxruntime"] == "not installed":
        gpu = _distribution_version("onnxruntime-gpu")
        if gpu != "not installed":
            found["onnxruntime"] = f"{gpu} (onnxruntime-gpu)"
    return found


def _distribution_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def host_name() -> str:
    """This machine's host name, as the sidecars record it."""
    return socket.gethostname()


def command_line(given: Sequence[str] | None = None) -> list[str]:
    """The command line to record: ``given``, else this process's ``sys.argv``."""
    return list(given if given is not None else sys.argv)


def model_record(path: Path | str, sha256: str, card: ModelCard) -> dict[str, object]:
    """The sidecar's ``model`` entry: the file, its SHA-256 and its whole model card."""
    return {"path": str(path), "sha256": sha256, "card": card.to_metadata()}


def tool_record(command: str | None = None) -> dict[str, str]:
    """The sidecar's ``tool`` entry: name, version (and the subcommand, when given)."""
    record = {"name": "btd"}
    if command is not None:
        record["command"] = command
    record["version"] = __version__
    return record


def json_safe(value: object) -> object:
    """``value`` ready for a JSON sidecar: every string (keys too) with its non-printable
    characters as visible escapes (:func:`btd_core.safe_text.printable`; JSON itself would
    let C1 codes and bidirectional overrides through raw), and non-finite floats as text
    (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (str, Path)):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_bytes(value: object) -> bytes:
    """A sidecar's file content: :func:`json_safe` ``value``, indented, UTF-8 (lone
    surrogates as ``\\udcXX``), with a final newline; other objects by ``str``."""
    text = json.dumps(json_safe(value), indent=2, ensure_ascii=False, allow_nan=False, default=str)
    return (text + "\n").encode("utf-8", errors="backslashreplace")
