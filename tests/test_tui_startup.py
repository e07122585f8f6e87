"""btd audit starts, scores and previews without importing torch (a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.fixed_study import write_fixed_series, write_tiny_scorer
from tests.support.lanes import torch_installed

CHILD = """
import asyncio, json, sys, time
started = time.perf_counter()
from btd_tui.factory import create_app
from btd_core.audit.pipeline import ScanSettings
from btd_core.audit.scan_config import ScanConfig

app = create_app(sys.argv[1], sys.argv[2], ScanConfig("cpu", settings=ScanSettings(stride=32)))
timings = {}

async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        while app.first_draw is None:
            await pilot.pause(0.005)
        timings["first_draw_s"] = app.first_draw - started
        timings["torch_at_first_draw"] = "torch" in sys.modules
        deadline = time.monotonic() + 120
        while app.phase.value != "done" or app.query_one("SlicePreview").view is None:
            assert time.monotonic() < deadline, "scan or preview did not finish"
            await pilot.pause(0.05)

asyncio.run(main())
timings["torch_after_scan"] = "torch" in sys.modules
timings["onnxruntime_loaded"] = "onnxruntime" in sys.modules
print(json.dumps(timings))
"""


@torch_installed
def test_app_draws_scores_and_previews_without_torch(tmp_path: Path):
    root = tmp_path / "study"
    write_fixed_series(root / "ct", 3, planted_index=1)
    model = write_tiny_scorer(tmp_path / "tiny.onnx")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(model)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    timings = json.loads(out.stdout.strip().splitlines()[-1])
    assert timings["onnxruntime_loaded"]  # the scan really ran in this interpreter
    assert not timings["torch_at_first_draw"] and not timings["torch_after_scan"]
    assert timings["first_draw_s"] < 30


@torch_installed
def test_importing_the_tui_and_the_cli_leaves_torch_out():
    code = (
        "import sys, btd_core.cli.audit, btd_core.cli.main; "
        "from btd_tui.app import create_app; from btd_tui.factory import create_app as made; "
        "assert made is create_app; "
        "btd_core.cli.main.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "False"
