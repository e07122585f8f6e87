#!/usr/bin/env bash
# issue 27 lever: two slices at once on the CPU (--calls-at-once 2, the new default) against one (the old behaviour), same code, same run
set -euo pipefail
cd /work/main
M=/tmp/w/b300/models
export OMP_NUM_THREADS=2
echo "== git $(git log --oneline | head -1)"
echo "== btd scan, 300 slices $(date) load $(cat /proc/loadavg)"
.venv/bin/python benchmarks/bench_scan.py --study-npy /tmp/w/b300/study/lung1_x300.npy --model $M/ts/ref.onnx --modes default --no-growth --slices 300 --extra="--calls-at-once 1"
echo "== btd calibrate, 48 lung1 slices, default (2 calls at once) $(date) load $(cat /proc/loadavg)"
/usr/bin/time -f "calls at once 2 (default): btd calibrate %e s, peak RSS %M KiB" .venv/bin/python -m btd_core.cli.main calibrate $M/genuine --model $M/cc/a.onnx --provider cpu | tail -2
echo "== btd calibrate, 48 lung1 slices, --calls-at-once 1 $(date) load $(cat /proc/loadavg)"
/usr/bin/time -f "calls at once 1 (before): btd calibrate %e s, peak RSS %M KiB" .venv/bin/python -m btd_core.cli.main calibrate $M/genuine --model $M/cc/b.onnx --provider cpu --calls-at-once 1 | tail -2
python3 - <<'PY'
import json
a = json.load(open("/tmp/w/b300/models/cc/a.onnx.calibration.json")); b = json.load(open("/tmp/w/b300/models/cc/b.onnx.calibration.json"))
skip = {"created_utc", "model_file", "model", "created"}
diff = [k for k in a if k not in skip and a[k] != b.get(k)]
print("calibrations differ in:", diff or "nothing (besides times/names)")
PY
echo "== done $(date) load $(cat /proc/loadavg)"
