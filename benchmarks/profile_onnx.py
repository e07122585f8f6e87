"""Where the ONNX scorer's time goes: onnxruntime's own profiler, summed by operator type.

Runs a scorer file (any precision) for a few batches with profiling on and prints, per
operator type, the kernel time, its share, and the node count, with the estimated
activation bytes each type moves per patch (from the graph's shapes) beside it: a
memory-bound operator shows a large share of time for few FLOPs.  Use it on the GPU to
decide which fusion to try next; it runs on the CPU too.

    python benchmarks/profile_onnx.py model.onnx --provider cuda --batch 256
    python benchmarks/profile_onnx.py model.onnx --batch 1 --shape 464x512   # a body pass
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def activation_bytes(model_path: Path) -> dict[str, float]:
    """Bytes of non-weight tensors read and written per patch, by operator type."""
    import onnx
    from onnx import TensorProto, shape_inference

    model = onnx.load(str(model_path))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        width = 2 if value.type.tensor_type.elem_type == TensorProto.FLOAT16 else 4
        shapes[value.name] = int(np.prod(dims)) * width if dims and all(dims) else 0
    weights = {init.name for init in model.graph.initializer}
    moved: Counter[str] = Counter()
    for node in model.graph.node:
        names = [n for n in [*node.input, *node.output] if n and n not in weights]
        moved[node.op_type] += sum(shapes.get(n, 0) for n in names)
    return dict(moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the summary as JSON here")
    parser.add_argument(
        "--shape",
        help="ROWSxCOLUMNS of each input (a body pass, for a graph with free sides); "
        "default: the card's patch size",
    )
    args = parser.parse_args()

    import onnxruntime as ort

    from btd_core.engine.scorer import EngineOptions, _cuda_provider, _preload_cuda_libraries

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.enable_mem_pattern = False
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "btd")
        providers: list = ["CPUExecutionProvider"]
        if args.provider == "cuda":
            _preload_cuda_libraries()
            providers = [_cuda_provider(EngineOptions()), "CPUExecutionProvider"]
        session = ort.InferenceSession(str(args.model), options, providers=providers)
        meta = session.get_modelmeta().custom_metadata_map
        size = int(meta.get("btd.patch_size", "96"))
        rows, columns = (int(v) for v in args.shape.split("x")) if args.shape else (size, size)
        x = np.random.default_rng(0).uniform(0.2, 0.8, (args.batch, 1, rows, columns))
        x = x.astype(np.float32)
        for _ in range(args.runs):
            session.run(["score"], {"x": x})
        trace = json.loads(Path(session.end_profiling()).read_text())
    kernel_us: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            kernel_us[op] += event.get("dur", 0)
            nodes[op] += 1
    total = sum(kernel_us.values()) or 1
    moved = activation_bytes(args.model)
    per_run = args.runs * args.batch
    print(
        f"{args.model.name}, {session.get_providers()[0]}, batch {args.batch} of "
        f"{rows} x {columns} px, {args.runs} runs"
    )
    print("| operator | nodes | kernel ms per input | share | activation MB per patch |")
    print("|---|---|---|---|---|")
    rows = []
    for op, us in kernel_us.most_common():
        row = {
            "op": op,
            "nodes": nodes[op] // args.runs,
            "ms_per_patch": us / 1000 / per_run,
            "share": us / total,
            "mb_per_patch": moved.get(op, 0) / 1e6,
        }
        rows.append(row)
        print(
            f"| {op} | {row['nodes']} | {row['ms_per_patch']:.3f} | {100 * row['share']:.1f} % "
            f"| {row['mb_per_patch']:.1f} |"
        )
    print(f"total kernel time per input: {total / 1000 / per_run:.3f} ms")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
