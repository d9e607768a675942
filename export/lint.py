"""TensorRT compatibility lint: will `trt.OnnxParser` (TensorRT 8.6) take this graph? No GPU needed.

The tables follow onnx-tensorrt's `docs/operators.md` for the 8.5/8.6 releases ("supports operators up
to Opset 17"; 8.6 adds LayerNormalization) and the parser's importers (`builtin_op_importers.cpp`),
e.g. ConvTranspose: `output_padding` is folded into the deconvolution's post-padding when the end
pads are at least as large, otherwise the parser appends a fill-Slice and a separate bias add;
`output_shape` that implies negative pre-padding is refused. TensorRT 8.6 has no FLOAT64 or INT64
tensors: INT64 initializers (shape constants) are cast down silently and DOUBLE ones with a warning,
but a graph input/output or a Cast to those types does not build. Findings are errors (the engine
would not build) or warnings (it builds, perhaps slower or with casts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, List

from recon.runtime.errors import ModelError

TRT_VERSION = "8.6"
OPSET_RANGE = (7, 17)  # default-domain opsets the 8.6 parser reads
IR_VERSION_MAX = 8  # IR version of the onnx the 8.6 parser is built with (newer: a parser warning)

# Operators the TensorRT 8.6 ONNX parser imports (operators.md "Y" rows, release 8.5/8.6).
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish
Identity If ImageScaler InstanceNormalization IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# ONNX TensorProto element types.
FLOAT, UINT8, INT8, INT32, INT64, BOOL, FLOAT16, DOUBLE, BFLOAT16 = 1, 2, 3, 6, 7, 9, 10, 11, 16
TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
              8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
              15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
              20: "FLOAT8E5M2FNUZ"}
IO_TYPES = {FLOAT, FLOAT16, INT32, INT8, BOOL, UINT8}  # network input/output types in 8.6
TENSOR_TYPES = {FLOAT, FLOAT16, INT32, INT8, BOOL, UINT8}  # types TensorRT 8.6 computes in
CAST_DOWN = {INT64: "INT32", DOUBLE: "FLOAT"}  # weights the parser casts down (with a warning)
CAST_TARGETS = {FLOAT, FLOAT16, INT32, INT8, BOOL, UINT8}

POOL_OPS = {"MaxPool", "AveragePool", "LpPool"}
CONV_OPS = {"Conv", "ConvTranspose"}
# Inputs the parser needs as initializers/constants: op -> (input index, what)
CONSTANT_INPUTS = {"Slice": [(3, "axes")], "Squeeze": [(1, "axes")], "Unsqueeze": [(1, "axes")],
                   "CumSum": [(1, "axis")], "TopK": [(1, "K")]}
RESIZE_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": the engine would not build; "warning": it builds, maybe slower / with casts
    node: str  # node name ("(graph)" for graph-level findings, or the tensor name)
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.node} [{self.op}] {self.message}"


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _name(node, index: int) -> str:
    return node.name or (node.output[0] if node.output else f"node{index}")


def _constant_names(graph) -> set:
    names = {t.name for t in graph.initializer}
    names |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return names


def lint_model(model, trt_version: str = TRT_VERSION) -> List[Finding]:
    """Every finding for `model` (an onnx.ModelProto) against the TensorRT 8.6 ONNX parser."""
    findings: List[Finding] = []
    graph = model.graph

    def add(severity, node, op, message):
        findings.append(Finding(severity, node, op, message))

    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not OPSET_RANGE[0] <= opset.version <= OPSET_RANGE[1]:
            add("error", "(graph)", "opset", f"opset {opset.version} is outside TensorRT {trt_version}'s "
                f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}; export with --opset 17")
    if model.ir_version > IR_VERSION_MAX:
        add("warning", "(graph)", "ir_version", f"IR version {model.ir_version} is newer than the parser's "
            f"{IR_VERSION_MAX} (it warns, then usually parses)")
    for tensor in graph.initializer:
        if tensor.data_location == 1:  # EXTERNAL
            add("warning", tensor.name, "initializer", "stored as external data: keep the data file beside it")
        if tensor.data_type in CAST_DOWN:
            if tensor.data_type == DOUBLE:
                add("warning", tensor.name, "initializer",
                    f"DOUBLE weights are cast down to {CAST_DOWN[tensor.data_type]} by the parser (precision loss)")
        elif tensor.data_type not in TENSOR_TYPES:
            add("error", tensor.name, "initializer", f"{TYPE_NAMES.get(tensor.data_type, tensor.data_type)} "
                f"weights are not supported by TensorRT {trt_version}")
    for kind, values in (("input", graph.input), ("output", graph.output)):
        initializers = {t.name for t in graph.initializer}
        for value in values:
            if value.name in initializers:
                continue
            elem = value.type.tensor_type.elem_type
            if elem not in IO_TYPES:
                add("error", value.name, f"graph {kind}", f"{TYPE_NAMES.get(elem, elem)} network {kind}s are not "
                    f"supported by TensorRT {trt_version} (FLOAT, FLOAT16, INT32, INT8, BOOL, UINT8 only)")
    for value in graph.value_info:
        elem = value.type.tensor_type.elem_type
        if elem in (DOUBLE, BFLOAT16) or elem >= 17 or elem in (8, 14, 15):
            add("error", value.name, "tensor", f"{TYPE_NAMES.get(elem, elem)} tensors are not supported by "
                f"TensorRT {trt_version}")

    constants = _constant_names(graph)
    for index, node in enumerate(graph.node):
        name, op = _name(node, index), node.op_type
        if node.domain not in ("", "ai.onnx"):
            add("error", name, f"{node.domain}::{op}", "custom-domain operator: the parser needs a TensorRT "
                "plugin registered under this name, which recon does not ship")
            continue
        if op not in SUPPORTED_OPS:
            add("error", name, op, f"operator {op} is not supported by the TensorRT {trt_version} ONNX parser")
            continue
        attrs = _attrs(node)
        if op == "Cast" and attrs.get("to") not in CAST_TARGETS:
            add("error", name, op, f"Cast to {TYPE_NAMES.get(attrs.get('to'), attrs.get('to'))} is not supported "
                f"by TensorRT {trt_version}")
        if op == "ConstantOfShape" or op == "Constant":
            tensor = attrs.get("value")
            if tensor is not None and getattr(tensor, "data_type", FLOAT) in (DOUBLE,):
                add("warning", name, op, "DOUBLE constant is cast down to FLOAT")
        if op in CONV_OPS | POOL_OPS:
            auto_pad = attrs.get("auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if auto_pad not in ("NOTSET", ""):
                add("error", name, op, f"auto_pad={auto_pad}: recon requires explicit pads (TensorRT's SAME "
                    "padding with dynamic shapes and deconvolutions differs from ONNX Runtime's)")
            pads = list(attrs.get("pads", []))
            if any(p < 0 for p in pads):
                add("error", name, op, f"negative pads {pads} are not supported")
            elif pads and pads[: len(pads) // 2] != pads[len(pads) // 2:]:
                add("warning", name, op, f"asymmetric pads {pads} (TensorRT pre/post padding; slower tactics)")
            if op in CONV_OPS and len(node.input) > 1:
                if node.input[1] not in constants and op == "Conv":
                    add("warning", name, op, "weights are a runtime tensor, not an initializer (refit/fusions lost)")
                rank = _rank_of(graph, node.input[1])
                if rank is not None and not 3 <= rank <= 5:
                    add("error", name, op, f"{rank - 2}D convolution: TensorRT supports 1D, 2D and 3D only")
            if op in POOL_OPS and attrs.get("ceil_mode", 0) and attrs.get("dilations"):
                add("warning", name, op, "ceil_mode with dilations")
            if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
                add("error", name, op, "the Indices output of MaxPool is not supported")
        if op == "ConvTranspose":
            _lint_conv_transpose(node, name, attrs, add, graph)
        if op == "Resize":
            mode = attrs.get("coordinate_transformation_mode", b"half_pixel")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode not in RESIZE_MODES:
                add("error", name, op, f"coordinate_transformation_mode={mode} is not supported "
                    f"(supported: {', '.join(sorted(RESIZE_MODES))})")
            interp = attrs.get("mode", b"nearest")
            interp = interp.decode() if isinstance(interp, bytes) else interp
            if interp not in ("nearest", "linear"):
                add("error", name, op, f"mode={interp} is not supported (nearest, linear)")
        for position, what in CONSTANT_INPUTS.get(op, []):
            if len(node.input) > position and node.input[position] and node.input[position] not in constants:
                add("error", name, op, f"`{what}` must be an initializer or Constant for TensorRT {trt_version}")
        if op == "Dropout" and len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
            add("error", name, op, "training_mode must be an initializer")
    return findings


def _rank_of(graph, name: str):
    for tensor in graph.initializer:
        if tensor.name == name:
            return len(tensor.dims)
    for value in list(graph.value_info) + list(graph.input):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def _lint_conv_transpose(node, name, attrs, add, graph) -> None:
    """output_padding / output_shape the way the 8.6 importer handles them."""
    pads = list(attrs.get("pads", []))
    output_padding = list(attrs.get("output_padding", []))
    if "output_shape" in attrs:
        kernel = list(attrs.get("kernel_shape", []))
        strides = list(attrs.get("strides", [1] * len(kernel)))
        add("warning", name, "ConvTranspose", f"output_shape {list(attrs['output_shape'])} (kernel {kernel}, "
            f"strides {strides}): TensorRT derives the pads; negative pre-padding would be refused")
    if attrs.get("group", 1) != 1 and output_padding and any(output_padding):
        add("warning", name, "ConvTranspose", "grouped deconvolution with output_padding")
    if output_padding and any(output_padding):
        half = len(pads) // 2 if pads else len(output_padding)
        ends = pads[half:] if pads else [0] * len(output_padding)
        if all(end >= extra for end, extra in zip(ends, output_padding)):
            return  # folded into post-padding: pads_end - output_padding, a plain deconvolution
        add("warning", name, "ConvTranspose", f"output_padding {output_padding} exceeds end pads {ends}: "
            "TensorRT adds a fill-Slice and a separate bias add (slower); prefer pads >= output_padding")


def errors(findings: Iterable[Finding]) -> List[Finding]:
    return [f for f in findings if f.severity == "error"]


def check_lint(findings: Iterable[Finding], what: str) -> List[Finding]:
    """Raise ModelError naming every node that would not build; return the warnings."""
    findings = list(findings)
    bad = errors(findings)
    if bad:
        shown = "; ".join(f"{f.node} [{f.op}]: {f.message}" for f in bad[:5])
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ModelError(f"{what}: would not build with TensorRT {TRT_VERSION}: {shown}{more}")
    return [f for f in findings if f.severity != "error"]


def as_dicts(findings: Iterable[Finding]) -> list:
    return [asdict(f) for f in findings]
