"""Weights of an exported model folder back into the torch nets, to fine-tune a model that ships as
ONNX only (the shipped default has no checkpoint in the package).

The export folds every BatchNorm into the layer before it, so the import puts the folded weights
into that layer and makes each BatchNorm an identity in eval mode (scale 1, shift the folded bias,
statistics 0 / 1 - eps): the torch net then computes what the ONNX graph does. Training such a net
keeps BatchNorm frozen (`freeze_batchnorm`, detectron's FrozenBN practice for fine-tuning): batch
statistics would not match the folded weights.

Layers are matched by the order the torch net calls them and the ONNX graph runs them, and checked
by every weight's shape; `start_from_model` then compares the torch net's outputs with ONNX Runtime's
on the same input (`check_against_graph`) and refuses a net that does not compute what the graph does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.runtime.errors import InputError, ModelError

WEIGHTED = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm")


def call_order(net: nn.Module, example: torch.Tensor) -> tuple[list[nn.Module], dict[nn.Module, nn.BatchNorm2d]]:
    """The weighted layers in the order `net` calls them on `example`, and the BatchNorm that reads
    each one's output directly (the pairs the export folds)."""
    order, produced_by, follows = [], {}, {}

    def weighted_hook(module, _inputs, output):
        order.append(module)
        produced_by[id(output)] = (module, output)  # holding the tensor: no later tensor can reuse its id

    def batchnorm_hook(module, inputs, _output):
        source = produced_by.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            follows[source[0]] = module

    hooks = [m.register_forward_hook(weighted_hook) for m in net.modules() if isinstance(m, WEIGHTED)]
    hooks += [m.register_forward_hook(batchnorm_hook) for m in net.modules() if isinstance(m, BATCHNORMS)]
    try:
        with torch.no_grad():
            net.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    if len(set(order)) != len(order):
        raise ModelError("a layer is called twice; the import matches layers by call order")
    return order, follows


def graph_weights(model, onnx_path: str | Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(node name, weight, bias or None) of every Conv, ConvTranspose and Gemm of the onnx.ModelProto
    `model` (read from `onnx_path`), in graph order; Gemm weights as torch's Linear holds them (out, in)."""
    import onnx
    from onnx import numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        if node.input[1] not in tensors:
            raise ModelError(f"{onnx_path}: {node.name} takes a computed weight; not an exported recon model")
        weight = tensors[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and not attrs.get("transB", 0):
            weight = weight.T
        bias = tensors.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        layers.append((node.name or node.output[0], weight, bias))
    return layers


@torch.no_grad()
def load_graph_weights(net: nn.Module, model, onnx_path: str | Path, example: torch.Tensor) -> None:
    """Put the weights of the onnx.ModelProto `model` (read from `onnx_path`) into `net` (see the module
    docstring)."""
    order, follows = call_order(net, example)
    layers = graph_weights(model, onnx_path)
    if len(layers) != len(order):
        raise ModelError(f"{onnx_path}: {len(layers)} weighted layers, the preset's net has {len(order)}; "
                         "exported from another preset?")
    for module in net.modules():
        if isinstance(module, BATCHNORMS):  # identity in eval mode; a folded bias is set below
            module.weight.fill_(1.0)
            module.bias.zero_()
            module.running_mean.zero_()
            module.running_var.fill_(1.0 - module.eps)
    for module, (name, weight, bias) in zip(order, layers):
        if tuple(module.weight.shape) != weight.shape:
            raise ModelError(f"{onnx_path}: {name} has weight {weight.shape}, the net's layer "
                             f"{tuple(module.weight.shape)}; exported from another preset?")
        module.weight.copy_(torch.tensor(weight))
        if bias is None:
            continue
        if module.bias is not None:
            module.bias.copy_(torch.tensor(bias))
        elif module in follows:  # the folded BatchNorm's shift
            follows[module].bias.copy_(torch.tensor(bias))
        else:
            raise ModelError(f"{onnx_path}: {name} has a bias the net's layer has no place for")


def start_from_model(nets: dict[str, nn.Module], folder: str | Path, preset) -> None:
    """Load the sketch or voxel net of `nets` from model folder `folder` (recon-cli export's output)."""
    import onnx

    from recon.export.onnx_graphs import SKETCH_FILE, VOXEL_FILE

    inputs = {"sketch": (SKETCH_FILE, 3), "voxel": (VOXEL_FILE, 5)}
    for name, net in nets.items():
        if name not in inputs:
            raise InputError(f"--init-from starts the sketch and voxel stages only, not the {name} net")
        file, channels = inputs[name]
        path = Path(folder) / file
        if not path.is_file():
            raise InputError(f"--init-from {folder}: no {file} (a folder recon-cli export wrote?)")
        model = onnx.load(str(path))
        metadata = {p.key: p.value for p in model.metadata_props}
        if metadata.get("recon.preset") != preset.name:
            raise InputError(f"--init-from {path}: a model of preset {metadata.get('recon.preset')!r}, "
                             f"this run trains {preset.name!r} (pass --preset {metadata.get('recon.preset')})")
        example = torch.rand(2, channels, preset.image_size, preset.image_size)
        load_graph_weights(net, model, path, example)
        check_against_graph(name, net.eval(), path, example)


GRAPH_TOLERANCE = 1e-3  # on probabilities, depth and unit normals: a wrong layer is off by far more


@torch.no_grad()
def graph_difference(name: str, net: nn.Module, path: str | Path, example: torch.Tensor) -> float:
    """Largest absolute difference between `net` (in the mode it is in, ending as the export does) and
    ONNX Runtime running the graph at `path`, over every output on `example`."""
    import onnxruntime as ort

    from recon.export.onnx_graphs import _wrappers

    sketch_export, voxel_export = _wrappers()
    ours = (sketch_export if name == "sketch" else voxel_export)(net)(example)
    ours = ours if isinstance(ours, tuple) else (ours,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    return max(float(np.abs(a.numpy() - b).max()) for a, b in zip(ours, theirs))


def check_against_graph(name: str, net: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """ModelError unless `net` gives ONNX Runtime's outputs of the graph at `path` on `example`."""
    difference = graph_difference(name, net, path, example)
    if difference > GRAPH_TOLERANCE:
        raise ModelError(f"{path}: the imported {name} net differs from the graph by {difference:.3g} "
                         f"(tolerance {GRAPH_TOLERANCE}); not an export of this preset's net?")


def freeze_batchnorm(net: nn.Module) -> nn.Module:
    """BatchNorm layers in eval mode (statistics fixed), the rest as it was; affine parameters still train."""
    for module in net.modules():
        if isinstance(module, BATCHNORMS):
            module.eval()
    return net
