"""The console scripts as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", ["btd", "btd-export"])
def test_help_answers(script: str):
    exe = shutil.which(script, path=str(BIN)) or shutil.which(script)
    assert exe, f"{script} is not installed"
    out = run(exe, "--help")
    assert out.returncode == 0
    assert "usage:" in out.stdout


def test_btd_version():
    out = run(sys.executable, "-m", "btd_core.cli.main", "--version")
    assert out.returncode == 0 and out.stdout.startswith("btd ")


def test_card_shows_the_card_and_provider(ct_onnx: Path):
    out = run(sys.executable, "-m", "btd_core.cli.main", "card", str(ct_onnx), "--provider", "cpu")
    assert out.returncode == 0, out.stderr
    assert "CPUExecutionProvider" in out.stdout
    assert "test-highpass" in out.stdout and "btd-scorer" in out.stdout  # the card's own words


def test_card_of_a_file_that_is_not_onnx(tmp_path: Path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    out = run(sys.executable, "-m", "btd_core.cli.main", "card", str(bogus))
    assert out.returncode == 2
    assert "not a readable ONNX model" in out.stdout
    missing = run(sys.executable, "-m", "btd_core.cli.main", "card", str(tmp_path / "absent.onnx"))
    assert missing.returncode == 2 and "no such model file" in missing.stdout


@pytest.mark.torch
def test_export_refuses_a_malicious_checkpoint(tmp_path: Path):
    pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    evil = tmp_path / "CT_model.pt"
    script = (
        "import os, torch\n"
        "class E:\n"
        f"    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'model': E(), 'step': 1}}, {str(evil)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    out = run(sys.executable, "-m", "export.cli", str(evil), "-o", str(tmp_path / "x.onnx"))
    assert out.returncode == 2  # could not run
    assert "refused" in out.stdout and "system" in out.stdout
    assert not marker.exists()
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "study", "--model", "m.onnx", "--out", "r", "--stride", "0"],
        ["scan", "study", "--model", "m.onnx", "--out", "r", "--batch-size", "-3"],
        ["audit", "study", "--model", "m.onnx", "--stride", "x"],
        ["tamper", "data", "--out", "o", "--per-set", "0"],
        ["eval", "sets", "--model", "m.onnx", "--out", "o", "--threads", "0"],
        ["calibrate", "genuine", "--model", "m.onnx", "--window", "0"],
        ["audit", "study", "--model", "m.onnx", "--workers", "0"],
    ],
)
def test_counts_and_strides_below_one_are_refused_by_the_parser(args, capsys):
    from btd_core.cli.main import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "must be at least 1" in err or "not a whole number" in err
