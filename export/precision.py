"""Reduced-precision variants of an exported fp32 scorer graph (ONNX to ONNX, no torch).

``fp32``
    The graph as exported: the reference.
``fp16``
    Mixed precision that runs on every onnxruntime provider: the arithmetic-heavy
    operators (convolutions, matrix products) compute in float16 with float16
    weights; everything else stays float32: the group/layer normalisations, softmax,
    SiLU, the additions of the skip paths, and the one-step residual arithmetic after
    the U-Net (``x - x_{-1}`` would round ``1.00015 x`` to ``x`` in float16).
    Inputs and outputs stay float32.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

from btd_core.engine.model_card import PRECISIONS
from btd_core.errors import BtdError

__all__ = ["PRECISIONS", "PrecisionError", "apply_precision"]

HALF_OPS = frozenset(
    {
        *("Conv", "NhwcConv", "MatMul", "Gemm", "GroupNorm", "InstanceNormalization"),
        *("Mul", "Add", "Sub", "Sigmoid", "Softmax"),
        *("Reshape", "Transpose", "Split", "Concat", "Resize", "Expand", "Unsqueeze"),
    }
)
"""Operators whose activations flow in float16 inside the U-Net.  Normalisations read
float16 but keep their statistics in float32 inside onnxruntime's kernels; the RMS
norm's sum of squares (ReduceL2, Div, Clip), the time embedding and everything after
the last convolution stay float32."""

FLOAT_INPUT_SLOTS = {"Resize": (0,), "GroupNorm": (0,)}
"""Operators with float inputs that must stay float32 (Resize's scales, the fused GroupNorm's
gamma and beta): the slots to halve."""


class PrecisionError(BtdError, ValueError):
    """The requested precision is unknown or cannot be applied to this graph."""


def apply_precision(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """Return ``model`` (an fp32 BTD scorer graph) in ``precision``.

    The input model is not changed.  The metadata (model card) is copied as is;
    the caller records the precision in it.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}"
        )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    if precision == "fp32":
        return result
    return half_heavy_ops(result)


def unet_node_range(graph: onnx.GraphProto) -> tuple[int, int]:
    """Indices of the first and last convolution: the U-Net lies between them.

    Nodes before the first convolution map x to [-1, 1] and embed the time; nodes
    after the last one turn the predicted noise into ``x_{-1}``, the residual and the
    score.  Those stay float32 whatever the precision.
    """
    convs = [i for i, node in enumerate(graph.node) if node.op_type in ("Conv", "NhwcConv")]
    if not convs:
        raise PrecisionError("the graph has no convolution: not a BTD scorer")
    return convs[0], convs[-1]


def half_heavy_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the U-Net's :data:`HALF_OPS` nodes on float16 activations, in place; return ``model``.

    Float inputs of such a node are read as float16: weights are converted once, a
    tensor made by another float16 node is read directly, any other tensor through
    one shared ``Cast``.  A float16 result is cast back to float32 (under its original
    name) only where a float32 node or a graph output reads it.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    types = _tensor_types(model)
    first, last = unet_node_range(graph)
    halved = [
        first <= index <= last and node.op_type in HALF_OPS for index, node in enumerate(graph.node)
    ]
    float32_readers: set[str] = {output.name for output in graph.output}
    for node, half in zip(graph.node, halved, strict=True):
        for slot, name in enumerate(node.input):
            if not half or slot not in _float_slots(node):
                float32_readers.add(name)
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    new_nodes: list[onnx.NodeProto] = []
    half_names: dict[str, str] = {}
    for node, half in zip(graph.node, halved, strict=True):
        if not half:
            new_nodes.append(node)
            continue
        for slot, name in enumerate(node.input):
            if not name or slot not in _float_slots(node) or types.get(name) != TensorProto.FLOAT:
                continue
            if name not in half_names:
                half_names[name] = _half_input(name, initializers, users, new_nodes, graph)
            node.input[slot] = half_names[name]
        outputs = list(node.output)
        for slot, name in enumerate(outputs):
            if types.get(name) == TensorProto.FLOAT:
                node.output[slot] = f"{name}__fp16"
                half_names[name] = f"{name}__fp16"
        new_nodes.append(node)
        new_nodes.extend(
            helper.make_node(
                "Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT, name=f"{name}__to_fp32"
            )
            for name in outputs
            if name in float32_readers and types.get(name) == TensorProto.FLOAT
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]  # the exporter's float32 annotations no longer hold
    if not any(node.domain == "com.microsoft" for node in graph.node):
        onnx.checker.check_model(model)
    return model


def _float_slots(node: onnx.NodeProto) -> range | tuple[int, ...]:
    return FLOAT_INPUT_SLOTS.get(node.op_type, range(len(node.input)))


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, propagated forward from inputs and initializers."""
    graph = model.graph
    types = {value.name: value.type.tensor_type.elem_type for value in graph.input}
    types.update({init.name: init.data_type for init in graph.initializer})
    for node in graph.node:
        if node.op_type == "Cast":
            kind = next(a.i for a in node.attribute if a.name == "to")
        elif node.op_type in ("Shape", "Size"):
            kind = TensorProto.INT64
        elif node.op_type == "Constant":
            kind = next(a.t.data_type for a in node.attribute if a.name == "value")
        else:
            kind = next((types[n] for n in node.input if n in types), TensorProto.FLOAT)
        for name in node.output:
            types[name] = kind
    return types


def _half_input(
    name: str,
    initializers: dict[str, onnx.TensorProto],
    users: dict[str, int],
    new_nodes: list[onnx.NodeProto],
    graph: onnx.GraphProto,
) -> str:
    """The name of a float16 version of float32 tensor ``name`` (made on first use)."""
    half = f"{name}__in_fp16"
    init = initializers.get(name)
    if init is not None:
        values = numpy_helper.to_array(init).astype("float16")
        graph.initializer.append(numpy_helper.from_array(values, half))
        if users.get(name, 0) <= 1:
            graph.initializer.remove(init)
        return half
    new_nodes.append(
        helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16, name=f"{half}__cast")
    )
    return half
