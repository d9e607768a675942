"""The two ONNX graphs of a model folder: their names, the torch wrappers that end them in the
runtime's outputs, the export itself (legacy exporter, onnxslim) and the export contract's check."""

from __future__ import annotations

import io
import warnings

from recon.runtime.errors import ModelError, first_line

DYNAMIC_AXIS = "batch"
SPATIAL_AXES = {2: "height", 3: "width"}  # the sketch graph's, where the preset frames with a smaller pass
SKETCH_FILE, VOXEL_FILE = "sketch.onnx", "voxel.onnx"
SKETCH_INPUT, SKETCH_OUTPUTS = "image", ("normals", "depth", "silhouette", "features")
VOXEL_INPUT, VOXEL_OUTPUTS = "sketch", ("occupancy",)
PICTURES = (SKETCH_INPUT, *SKETCH_OUTPUTS[:3])  # the sketch graph's (B, C, H, W) tensors: their sides follow the input


def _wrappers():
    import torch
    from torch import nn

    class SketchExport(nn.Module):
        """image -> normals, depth, silhouette probability, pooled encoder features."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            out = self.net(image)
            return out["normals"], out["depth"], torch.sigmoid(out["silhouette_logits"]), out["features"]

    class VoxelExport(nn.Module):
        """sketch (normals, depth, silhouette) -> occupancy probability."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, sketch):
            return torch.sigmoid(self.net(sketch))

    return SketchExport, VoxelExport


def framing_size(preset) -> int | None:
    """Side of the whole-picture framing pass (recon.framing_size), for presets whose sketch graph
    takes any side (None: a fixed-side graph, framed at image_size). edge2 frames at its full side:
    at half the side the framing pass loses thin parts and objects in clutter (crop-box IoU against
    the true crop, median: plain 0.84 vs 0.96, cluttered 0.09 vs 0.77; docs/results/framing.md)."""
    return preset.image_size if preset.arch == "fast" else None


def _to_onnx(module, example, input_name: str, output_names, opset: int, spatial: bool = False):
    """torch module -> simplified onnx.ModelProto (legacy exporter, eval, dynamic batch; and dynamic
    height and width with `spatial`)."""
    import onnx
    import onnxslim
    import torch

    buffer = io.BytesIO()
    names = [input_name, *output_names]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, input_names=[input_name],
                          output_names=list(output_names), dynamic_axes={n: {0: DYNAMIC_AXIS, **(SPATIAL_AXES if spatial and n in PICTURES else {})}
                                                       for n in names},
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
    model = onnx.load_from_string(buffer.getvalue())
    try:
        slim = onnxslim.slim(model)
    except Exception as error:
        raise ModelError(f"onnxslim could not simplify the {input_name} graph: {first_line(error)}") from None
    model = slim if slim is not None else model
    _drop_repeated_value_info(model.graph)
    return model


def _drop_repeated_value_info(graph) -> None:
    """Keep each intermediate tensor's shape record once: onnxslim repeats the whole list once per Conv
    (54 copies in edge2's sketch graph, 2.5 MB of its 15.5), which only makes the file larger."""
    seen, kept = set(), []
    for value in graph.value_info:
        if value.name not in seen:
            seen.add(value.name)
            kept.append(value)
    del graph.value_info[:]
    graph.value_info.extend(kept)


def check_graph(model, what: str) -> None:
    """The export contract: BatchNorm folded, explicit symmetric pads, single file, checker + strict shapes."""
    import onnx

    leftovers = [n.name or n.output[0] for n in model.graph.node if n.op_type == "BatchNormalization"]
    if leftovers:
        raise ModelError(f"{what}: BatchNormalization not folded after simplification: {', '.join(leftovers[:5])}")
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", ""):
            raise ModelError(f"{what}: {node.name} uses auto_pad={auto_pad!r}; explicit pads are required")
        pads = list(attrs.get("pads", []))
        if pads[: len(pads) // 2] != pads[len(pads) // 2:]:
            raise ModelError(f"{what}: {node.name} has asymmetric pads {pads}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelError(f"{what}: has external data; a single file is required")
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as error:
        raise ModelError(f"{what}: fails the ONNX checker: {first_line(error, 240)}") from None
