"""Int8 weights stay int8: products over a dequantized constant become `MatMulNBits`, inside
subgraphs too, and compute what the float graph computed."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from onnx import TensorProto, helper, numpy_helper

from media_edge.onnx_int8 import int8_matmuls, int8_weights

RNG = np.random.default_rng(7)
Q = RNG.integers(-100, 100, size=(64, 32), dtype=np.int8)
SCALE, ZERO = 0.01, 3
ODD = RNG.integers(-100, 100, size=(40, 32), dtype=np.int8)
"""A weight whose 40 rows are no whole number of 32-column blocks: left a float product."""


def dequantized(name: str, q: np.ndarray[Any, Any]) -> tuple[list[onnx.NodeProto], list[Any]]:
    """`name` = (float(q) * SCALE) + ZERO * SCALE, as Moonshine's graphs write their weights."""
    nodes = [
        helper.make_node("Cast", [f"{name}.q"], [f"{name}.f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}.f", f"{name}.s"], [f"{name}.m"]),
        helper.make_node("Add", [f"{name}.m", f"{name}.o"], [name]),
    ]
    constants = [
        numpy_helper.from_array(q, f"{name}.q"),
        numpy_helper.from_array(np.array([SCALE], np.float32), f"{name}.s"),
        numpy_helper.from_array(np.array([ZERO * SCALE], np.float32), f"{name}.o"),
    ]
    return nodes, constants


def model() -> onnx.ModelProto:
    w_nodes, w_constants = dequantized("w", Q)
    odd_nodes, odd_constants = dequantized("odd", ODD)
    branch = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y_branch"])],
        "branch",
        [],
        [helper.make_tensor_value_info("y_branch", TensorProto.FLOAT, [1, 32])],
    )
    nodes = [
        *w_nodes,
        *odd_nodes,
        helper.make_node("MatMul", ["a", "w"], ["y"]),
        helper.make_node("Transpose", ["w"], ["w_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["b", "w_t"], ["y_t"]),
        helper.make_node("Gather", ["w", "ids"], ["rows"], axis=0),
        helper.make_node("MatMul", ["c", "odd"], ["y_odd"]),
        helper.make_node("If", ["flag"], ["y_if"], then_branch=branch, else_branch=branch),
    ]
    graph = helper.make_graph(
        nodes,
        "test",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 32]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 40]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
            for name in ("y", "y_t", "rows", "y_odd", "y_if")
        ],
        initializer=w_constants + odd_constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(proto: onnx.ModelProto, inputs: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, inputs))


def ops(proto: onnx.ModelProto) -> list[str]:
    found = [node.op_type for node in proto.graph.node]
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += [n.op_type for n in attribute.g.node]
    return found


def test_the_dequantized_constants_are_found_with_their_integer_zero() -> None:
    weights = int8_weights(model().graph)
    assert set(weights) == {"w", "odd"}
    assert weights["w"].zero == ZERO
    assert weights["w"].scale == pytest.approx(SCALE)
    np.testing.assert_allclose(weights["w"].floats(), (Q + ZERO) * np.float32(SCALE), rtol=1e-6)


def test_products_read_int8_and_compute_what_the_float_graph_did() -> None:
    inputs = {
        "a": RNG.standard_normal((1, 64)).astype(np.float32),
        "b": RNG.standard_normal((1, 32)).astype(np.float32),
        "c": RNG.standard_normal((1, 40)).astype(np.float32),
        "ids": np.array([3, 60]),
        "flag": np.array(True),
    }
    float_graph = model()
    expected = run(float_graph, inputs)
    rewritten = model()
    assert int8_matmuls(rewritten) == 4  # y, y_t and the two branches; not the odd one
    assert sorted(ops(rewritten)) == sorted(
        ["MatMulNBits", "MatMulNBits", "Gather", "MatMul", "If", "MatMulNBits", "MatMulNBits"]
    )
    assert {t.name for t in rewritten.graph.initializer} >= {"w", "odd"}
    assert not {"w.q", "odd.q"} & {t.name for t in rewritten.graph.initializer}
    got = run(rewritten, inputs)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=0.05 * float(np.abs(want).max()))
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-5)  # rows gathered as floats
