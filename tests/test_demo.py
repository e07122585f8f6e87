"""btd demo --headless: builds its model and study offline and writes its report."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btd_core.scoring.calibration import FORMAT_VERSION

pytest.importorskip("torch", reason="the demo trains its model: needs the train extra")
pytestmark = pytest.mark.torch


@pytest.mark.slow  # trains the demo model and exports it (minutes on a CPU)
def test_demo_headless_without_network(tmp_path: Path):
    command = [sys.executable, "-m", "btd_core.cli.main", "demo", "--headless", "--out", "report"]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        command = ["unshare", "-n", *command]  # a network namespace with no way out
    env = {**os.environ, "BTD_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = tmp_path / "report"
    findings = list(csv.DictReader((report / "findings.csv").open()))
    assert len(findings) == 10
    sidecar = json.loads((report / "report.json").read_text())
    assert "btd demo model" in sidecar["model"]["card"]["btd.description"]
    assert done.stdout.count("planted ") == 3
    # issue 13 item 7: under the default score the three planted tamperings are the top 3
    ranks = sorted(int(rank) for rank in re.findall(r": rank (\d+) of 10", done.stdout))
    assert ranks == [1, 2, 3], done.stdout
    assert (tmp_path / "cache" / "demo" / "demo_ct.onnx").exists()
    # the demo model is calibrated, so the demo runs the default score: calibrated
    assert sidecar["settings"]["score_mode"] == "calibrated"
    assert sidecar["settings"]["calibration"]["file"].endswith("demo_ct.onnx.calibration.json")
    assert {row["score_mode"] for row in findings} == {"calibrated"}
    # each phase after training is named, so the first run never looks frozen
    for phase in ("exporting the demo model", "calibrating the demo model", "building the demo"):
        assert phase in done.stdout
    # a cache from an older btd: its calibration (format 2) lacks image context
    calibration = tmp_path / "cache" / "demo" / "demo_ct.onnx.calibration.json"
    data = json.loads(calibration.read_text())
    assert data["format_version"] == FORMAT_VERSION and data["image_context_centre"] is not None
    assert data["tiles"] == "body"  # the demo model is exported with free sides
    old = {k: v for k, v in data.items() if not k.startswith(("image_context", "context_slice"))}
    calibration.write_text(json.dumps({**old, "format_version": 2}))
    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "found in the cache" in again.stdout
    assert "training the demo model" not in again.stdout  # no training bar for a cached model
    assert "calibrating the cached demo model again" in again.stdout
    assert json.loads(calibration.read_text())["format_version"] == FORMAT_VERSION
    assert again.stdout.count("planted ") == 3
    ranks = sorted(int(rank) for rank in re.findall(r": rank (\d+) of 10", again.stdout))
    assert ranks == [1, 2, 3], again.stdout
