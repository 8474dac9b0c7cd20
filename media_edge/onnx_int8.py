"""Keep an ONNX model's int8 weights int8: matrix products over them become `MatMulNBits`.

Moonshine's graphs store each weight as int8 and rebuild it in float inside the graph
(`Add(Mul(Cast(q), scale), offset)`, one scale and offset per tensor). Folded to float, the
decoder holds ~4x the memory and every decoding step reads all of it. Here each `MatMul` (or
`MatMul` of its `Transpose`, the tied output projection) whose weight is such a constant becomes
onnxruntime's `MatMulNBits` with 8 bits over the same integers: the same weights,
`scale * (q + offset / scale)`, the offset an integer number of steps in these files, read as
bytes and multiplied in int8 (`accuracy_level` 4). Weights read otherwise (the embedding table's
`Gather`) are folded to float here, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

BLOCK = 32
"""Columns of a weight sharing one scale in `MatMulNBits` (all share the tensor's here)."""
INT8_COMPUTE = 4
"""`MatMulNBits` accuracy level: int8 products (the float path is ~20x slower at 8 bits)."""


@dataclass(frozen=True)
class Int8Weight:
    """A float constant computed as `scale * (q + zero)` from int8 `q`."""

    q: npt.NDArray[np.int8]
    scale: float
    zero: int

    def floats(self) -> npt.NDArray[np.float32]:
        return (self.q.astype(np.float32) + self.zero) * np.float32(self.scale)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)


def _scalar(tensor: onnx.TensorProto) -> float | None:
    value = numpy_helper.to_array(tensor)
    return float(value.reshape(-1)[0]) if value.size == 1 else None


def int8_weights(graph: onnx.GraphProto) -> dict[str, Int8Weight]:
    """The graph's dequantized constants, by the name of the float value they produce."""
    constants = {t.name: t for t in graph.initializer}
    made_by = {output: node for node in graph.node for output in node.output}
    found = {}
    for add in graph.node:
        mul = made_by.get(add.input[0]) if add.op_type == "Add" else None
        cast = made_by.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        if mul is None or cast is None or cast.op_type != "Cast" or cast.input[0] not in constants:
            continue
        q = numpy_helper.to_array(constants[cast.input[0]])
        scale = _scalar(constants[mul.input[1]]) if mul.input[1] in constants else None
        offset = _scalar(constants[add.input[1]]) if add.input[1] in constants else None
        if q.dtype != np.int8 or q.ndim != 2 or not scale or offset is None:
            continue
        zero = round(offset / scale)
        if abs(offset / scale - zero) < 1e-3 and 0 <= 128 - zero <= 255:
            found[add.output[0]] = Int8Weight(q, scale, zero)
    return found


def _packed(name: str, weight: Int8Weight, by_rows: bool) -> list[onnx.TensorProto]:
    """`MatMulNBits` inputs: the weight as (N, K) bytes in blocks, scales and zero points."""
    columns = weight.q if by_rows else weight.q.T
    n, k = columns.shape
    data = (columns.astype(np.int16) + 128).astype(np.uint8).reshape(n, k // BLOCK, BLOCK)
    blocks = n * (k // BLOCK)
    return [
        numpy_helper.from_array(np.ascontiguousarray(data), name),
        numpy_helper.from_array(np.full(blocks, weight.scale, np.float32), f"{name}.scale"),
        numpy_helper.from_array(np.full(blocks, 128 - weight.zero, np.uint8), f"{name}.zero"),
    ]


def _remove_unread(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers whose values nothing reads any more."""
    while True:
        read: set[str] = set()
        for graph in _graphs(model.graph):
            read.update(o.name for o in graph.output)
            read.update(name for node in graph.node for name in node.input)
        removed = 0
        for graph in _graphs(model.graph):
            kept = [n for n in graph.node if any(o in read for o in n.output)]
            removed += len(graph.node) - len(kept)
            del graph.node[:]
            graph.node.extend(kept)
        if not removed:
            break
    constants = [t for t in model.graph.initializer if t.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(constants)


def int8_matmuls(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place; returns how many products now read int8 weights."""
    weights = int8_weights(model.graph)
    packed: dict[str, list[onnx.TensorProto]] = {}
    rewritten = 0
    for graph in _graphs(model.graph):
        made_by = {output: node for node in graph.node for output in node.output}
        nodes = []
        for node in graph.node:
            source, by_rows = (node.input[1], False) if node.op_type == "MatMul" else ("", False)
            transpose = made_by.get(source)
            if source not in weights and transpose is not None and transpose.op_type == "Transpose":
                perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"]
                if perm in ([], [[1, 0]]):
                    source, by_rows = transpose.input[0], True
            weight = weights.get(source)
            if weight is None or weight.q.shape[0 if not by_rows else 1] % BLOCK:
                nodes.append(node)
                continue
            name = f"{source}.int8{'.rows' if by_rows else ''}"
            if name not in packed:
                packed[name] = _packed(name, weight, by_rows)
            n, k = packed[name][0].dims[:2]
            nodes.append(
                helper.make_node(
                    "MatMulNBits",
                    [node.input[0], name, f"{name}.scale", f"{name}.zero"],
                    list(node.output),
                    name=f"{node.name or node.output[0]}.int8",
                    domain="com.microsoft",
                    K=k * BLOCK,
                    N=n,
                    bits=8,
                    block_size=BLOCK,
                    accuracy_level=INT8_COMPUTE,
                )
            )
            rewritten += 1
        del graph.node[:]
        graph.node.extend(nodes)
    model.graph.initializer.extend(t for tensors in packed.values() for t in tensors)
    _remove_unread(model)
    _fold_float_reads(model, weights)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return rewritten


def _fold_float_reads(model: onnx.ModelProto, weights: dict[str, Int8Weight]) -> None:
    """Weights still read as floats become float initializers (computed once, here)."""
    graph = model.graph
    wanted = {name for node in graph.node for name in node.input} | {
        name for sub in _graphs(graph) for node in sub.node for name in node.input
    }
    folded = [name for name in weights if name in wanted]
    graph.initializer.extend(numpy_helper.from_array(weights[n].floats(), n) for n in folded)
    kept = [node for node in graph.node if not set(node.output) & set(folded)]
    del graph.node[:]
    graph.node.extend(kept)
    _remove_unread(model)
