"""One error base: every exception class btd defines derives from ``BtdError``, and the
commands catch that base (exit status 2, one red line) without a list kept by hand."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from btd_core.cli.main import main
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus
from tests.support.lanes import torch_installed

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("btd_core", "btd_tui", "export")

_WALK = """
import importlib, json, pkgutil, sys
found, skipped = [], []
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    names = [package] + [
        m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
        if not m.name.endswith("__main__")
    ]
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # an optional extra (torch, ray, ...) is missing
            if (err.name or "").split(".")[0] in sys.argv[1:]:
                raise
            skipped.append(name)
            continue
        from btd_core.errors import BtdError
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found.append([f"{name}.{value.__qualname__}", issubclass(value, BtdError)])
print(json.dumps({"found": found, "skipped": skipped}))
"""


def _exception_classes() -> tuple[dict[str, bool], list[str]]:
    """Every exception class defined in btd's packages (imported in a fresh interpreter,
    so that this process's modules stay as they are), with whether it is a BtdError; and
    the modules left out because an optional extra is not installed."""
    out = subprocess.run(
        [sys.executable, "-c", _WALK, *PACKAGES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    walked = json.loads(out.stdout.strip().splitlines()[-1])
    return dict(walked["found"]), walked["skipped"]


@torch_installed
def test_every_exception_class_of_btd_derives_from_btd_error():
    classes, skipped = _exception_classes()
    outside = sorted(name for name, is_btd in classes.items() if not is_btd)
    assert outside == [], f"not a BtdError: {outside}"
    # the walk did find them (not an empty pass): the runtime's errors at least
    for name in (
        "btd_core.scoring.calibration.CalibrationError",
        "btd_core.study.archives.ZipReadError",
        "btd_core.archive.driver.ArchiveError",
        "btd_core.file_lock.LockBusy",
        "btd_tui.config.ConfigError",
    ):
        assert name in classes
    if "export.onnx_export" not in skipped:  # the train extra is installed: torch world too
        assert "export.onnx_export.ExportError" in classes
        assert "btd_core.model.checkpoint.CheckpointError" in classes


def test_errors_keep_their_builtin_base():
    from btd_core.archive.driver import ArchiveError
    from btd_core.cli.demo_build import DemoLockTimeout
    from btd_core.engine.opening import ModelOpenError
    from btd_core.study.file_access import NotRegularFileError

    assert issubclass(ArchiveError, ValueError)
    assert issubclass(ModelOpenError, RuntimeError)
    assert issubclass(NotRegularFileError, OSError)
    assert issubclass(DemoLockTimeout, TimeoutError)
    error = NotRegularFileError(2, "not a regular file", "x")
    assert (error.errno, error.filename) == (2, "x")


def test_a_command_says_any_btd_error_in_one_line_and_exits_2(tmp_path: Path, capsys):
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"not an onnx file")
    assert main(["card", str(not_a_model)]) == ExitStatus.CANNOT_RUN
    printed = capsys.readouterr().out
    assert printed.startswith("btd card: ")


def test_cannot_run_prints_the_btd_error_message():
    from btd_core.cli.failures import cannot_run

    out = io.StringIO()
    status = cannot_run(Console(file=out, width=200), "btd scan", BtdError("no model"))
    assert status == ExitStatus.CANNOT_RUN
    assert out.getvalue() == "btd scan: no model\n"
