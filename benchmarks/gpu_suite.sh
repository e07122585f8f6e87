#!/usr/bin/env bash
# The GPU measurements in one go, on a machine with an NVIDIA GPU and onnxruntime-gpu:
#   1. bench_gpu.py: patches/s of upstream's PyTorch eager p_sample vs the ONNX scorer in each
#      precision and engine option, and the fast paths' fidelity against PyTorch fp32;
#   2. profile_onnx.py: where the fp16 scorer's CUDA time goes, by operator type (what to fuse next);
#   3. bench_scan.py: a 300-slice 512 x 512 CT series through the real `btd scan` on CUDA,
#      wall time of the whole command (decoding, scoring, report), per model precision, in the
#      default slice score (auto: local windows, as the bench models have no calibration) and
#      in the paper's tile score.
# Usage: bash benchmarks/gpu_suite.sh [DATA_DIR] [RESULTS_DIR]
#   DATA_DIR holds 693_UNCI.dcm (and abdomen_hu.npy); default: pydicom-data's files.
set -u
data=${1:-}
results=${2:-${OUT:-gpu_results}}
work=${BTD_GPU_WORK:-/tmp/btd-gpu}
mkdir -p "$results" "$work"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$results/gpu.txt"
data_args=()
source_args=()
if [ -n "$data" ]; then
  data_args=(--data "$data")
  source_args=(--source "$data/693_UNCI.dcm")
fi
timeout "${BENCH_GPU_TIMEOUT:-300}" "$py" benchmarks/bench_gpu.py "${data_args[@]}" --out "$work" --batches 512 ${BENCH_GPU_ARGS:-} \
  --budget-s "${BENCH_GPU_BUDGET:-250}" 2>&1 | tee "$results/bench_gpu.log"
cp "$work/gpu.jsonl" "$results/" 2>/dev/null
models=()
for p in fp32 fp16; do
  [ -f "$work/bench_96_$p.onnx" ] && models+=("$work/bench_96_$p.onnx")
done
if [ -f "$work/bench_96_fp16.onnx" ]; then
  timeout "${BENCH_PROFILE_TIMEOUT:-60}" "$py" benchmarks/profile_onnx.py "$work/bench_96_fp16.onnx" \
    --provider cuda --batch 512 --runs 5 --out "$results/profile_fp16.json" 2>&1 | tee "$results/profile.log"
fi
timeout "${BENCH_SCAN_TIMEOUT:-200}" "$py" benchmarks/bench_scan.py --slices 300 --provider cuda \
  "${source_args[@]}" --model "${models[@]}" --modes default --no-growth \
  --extra="--cudnn-search heuristic" --extra="--batch-size 512" --extra="--cuda-graph" \
  --extra="--workers 1" --extra="--score tile" \
  --extra="--cudnn-search heuristic --batch-size 512 --cuda-graph" \
  2>&1 | tee "$results/bench_scan.log"
