"""Memory plan: will the exported nets fit a small GPU, and at which batch?

All figures come from the ONNX graphs (no GPU needed):

- weights: bytes of every initializer and Constant (FP16: every float32 tensor counted at 2 bytes).
- activations: the peak of live tensors along the graph's own topological order. A tensor is live
  from the node that makes it until its last consumer has run; while a node runs, its inputs and its
  outputs are live together. Graph inputs and outputs count (the runtime holds those buffers too).
  Shapes come from ONNX shape inference with the batch axis set to the batch being planned.
  TensorRT fuses layers and reuses memory more cleverly than this schedule, so this is an upper
  bound of what an execution context asks for.
- workspace: the TensorRT tactic scratch limit (`--workspace`), counted as fully used.
- CUDA context: a fixed allowance, `CUDA_CONTEXT_BYTES` = 300 MiB, what a CUDA 11/12 context plus
  cuDNN/cuBLAS handles take on a desktop GPU (a GTX 1050 shows ~250-300 MiB used before the first
  allocation). On Jetson the GPU shares system RAM with the OS; give `--vram` as what is free.

Both nets are resident together (the runtime keeps one execution context per net), so the need at
batch B is  context + workspace + sum(weights) + sum(peak activations at B). The largest B whose need
fits `--vram` is computed for FP32 and FP16 and caps the TensorRT optimisation profile's max batch.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Sequence

from recon.runtime.errors import InputError, ModelError, first_line

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CUDA_CONTEXT_BYTES = 300 * MiB
MAX_BATCH_SEARCH = 4096  # the largest batch the plan looks for

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": KiB, "mib": MiB, "gib": GiB, "tib": 1 << 40, "k": KiB, "m": MiB, "g": GiB}

# ONNX TensorProto element type -> bytes per element (strings and unknowns are not planned).
_ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
                  17: 1, 18: 1, 19: 1, 20: 1}
FLOAT, FLOAT16 = 1, 10


def parse_size(text: str | int, what: str = "--vram") -> int:
    """'4GiB', '3500MiB', '1.5GB', '512M' -> bytes. A unit is required (a bare 4096 is ambiguous)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise InputError(f"{what} {text}: must be a positive number of bytes")
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]+)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise InputError(f"{what} {text!r}: give a size with a unit, e.g. 4GiB, 3500MiB, 1.5GB "
                         f"(units: B, KB, MB, GB, KiB, MiB, GiB)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise InputError(f"{what} {text!r}: must be positive")
    return int(value)


def human(n: int | float) -> str:
    """Bytes as a short binary-unit string: 1536 -> '1.5 KiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _elem_bytes(elem_type: int, half: bool) -> int:
    if half and elem_type == FLOAT:
        return 2
    if elem_type not in _ELEMENT_BYTES:
        raise ModelError(f"memory plan: tensor element type {elem_type} has no fixed size")
    return _ELEMENT_BYTES[elem_type]


def _numel(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def weights_bytes(model, half: bool = False) -> int:
    """Bytes of every initializer and Constant node value (FP16 plan: float32 counted as 2 bytes)."""
    total = sum(_numel(t.dims) * _elem_bytes(t.data_type, half) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    total += _numel(attr.t.dims) * _elem_bytes(attr.t.data_type, half)
    return total


def _inference_probe(model, batch: int):
    """A weightless copy of `model` (initializers become typed graph inputs, so shape inference
    sees their shapes without copying their bytes) with every symbolic dim set to `batch` (height
    and width to the metadata's image size)."""
    import onnx

    probe = onnx.ModelProto()
    probe.ir_version = model.ir_version
    probe.opset_import.extend(model.opset_import)
    graph = model.graph
    small = [t for t in graph.initializer if t.data_type != FLOAT or _numel(t.dims) <= 64]  # shape data
    large = [t for t in graph.initializer if not (t.data_type != FLOAT or _numel(t.dims) <= 64)]
    probe.graph.CopyFrom(onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input), list(graph.output),
                                                initializer=small))
    named = {value.name for value in graph.input}
    probe.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in large if t.name not in named)
    # A sketch graph with dynamic height and width (edge2) is planned at its largest side, the main pass's.
    side = next((int(p.value) for p in model.metadata_props if p.key == "recon.image_size"), None)
    for value in list(probe.graph.input) + list(probe.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                spatial = dim.dim_param in ("height", "width") and side is not None
                dim.Clear()
                dim.dim_value = side if spatial else batch
    return probe


def _shapes(model, batch: int) -> Dict[str, tuple[int, list[int]]]:
    """name -> (elem_type, dims) of every non-weight value at `batch`."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_inference_probe(model, batch), strict_mode=True, data_prop=True)
    except Exception as error:  # onnx raises InferenceError / ValidationError with long messages
        raise ModelError(f"memory plan: shape inference failed ({first_line(error)})") from None
    shapes = {}
    initializers = {t.name for t in model.graph.initializer}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = []
        for dim in tensor.shape.dim:
            if not dim.HasField("dim_value"):
                raise ModelError(f"memory plan: shape of {value.name!r} is not known at batch {batch}")
            dims.append(dim.dim_value)
        shapes[value.name] = (tensor.elem_type, dims)
    return shapes


class GraphMemory:
    """Liveness schedule of one graph; shapes inferred once at batch 1 and 2, each dim affine in batch."""

    def __init__(self, model):
        graph = model.graph
        self.model = model
        one, two = _shapes(model, 1), _shapes(model, 2)
        self.table = {name: (elem_type, dims, two[name][1]) for name, (elem_type, dims) in one.items() if name in two}
        self.weights = {t.name for t in graph.initializer}
        self.weights |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
        self.nodes = [node for node in graph.node if node.op_type != "Constant"]
        self.last_use: Dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for name in node.input:
                if name:
                    self.last_use[name] = index
        for value in graph.output:
            self.last_use[value.name] = len(self.nodes)
        self.inputs = [value.name for value in graph.input if value.name not in self.weights]

    def size(self, name: str, batch: int, half: bool) -> int:
        if not name or name in self.weights:
            return 0
        if name not in self.table:
            raise ModelError(f"memory plan: shape of {name!r} is unknown")
        elem_type, one, two = self.table[name]
        dims = [a + (b - a) * (batch - 1) for a, b in zip(one, two)]
        return _numel(dims) * _elem_bytes(elem_type, half)

    def peak(self, batch: int = 1, half: bool = False) -> dict:
        live = {name: self.size(name, batch, half) for name in self.inputs}
        peak, peak_node, peak_op = sum(live.values()), "(inputs)", ""
        for index, node in enumerate(self.nodes):
            made = {name: self.size(name, batch, half) for name in node.output if name}
            running = sum(live.values()) + sum(made.values())
            if running > peak:
                peak, peak_node, peak_op = running, node.name or node.output[0], node.op_type
            live.update(made)
            for name in list(live):
                if self.last_use.get(name, index) <= index:
                    del live[name]
        return {"bytes": peak, "node": peak_node, "op": peak_op}


def activation_peak(model, batch: int = 1, half: bool = False) -> dict:
    """Peak bytes of live tensors along the graph's node order at `batch` (see the module docstring).

    Returns {"bytes", "node" (where the peak happens), "op"}.
    """
    return GraphMemory(model).peak(batch, half)


def _memories(models: Mapping[str, object]) -> Dict[str, GraphMemory]:
    return {name: m if isinstance(m, GraphMemory) else GraphMemory(m) for name, m in models.items()}


def need_bytes(models: Mapping[str, object], batch: int, half: bool, workspace: int,
               context: int = CUDA_CONTEXT_BYTES) -> int:
    """Bytes the nets need together at `batch` (models: onnx.ModelProto or GraphMemory)."""
    memories = _memories(models)
    return context + workspace + sum(weights_bytes(m.model, half) + m.peak(batch, half)["bytes"]
                                     for m in memories.values())


def max_batch(models: Mapping[str, object], vram: int, half: bool, workspace: int,
              context: int = CUDA_CONTEXT_BYTES, limit: int = MAX_BATCH_SEARCH) -> int:
    """Largest batch in [0, limit] whose need fits `vram` (0: not even batch 1). Need grows with batch."""
    models = _memories(models)
    if need_bytes(models, 1, half, workspace, context) > vram:
        return 0
    low, high = 1, limit  # need(low) fits; find the largest fitting
    if need_bytes(models, high, half, workspace, context) <= vram:
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if need_bytes(models, middle, half, workspace, context) <= vram:
            low = middle
        else:
            high = middle
    return low


def check_batch(batch: Iterable[int] | str) -> tuple[int, int, int]:
    """(min, opt, max) with 1 <= min <= opt <= max, else InputError; also reads the CLI's "1,1,8"."""
    try:
        values = tuple(int(b) for b in (batch.split(",") if isinstance(batch, str) else batch))
    except (TypeError, ValueError):
        raise InputError(f"--batch {batch!r}: give three integers min,opt,max such as 1,1,8") from None
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise InputError(f"--batch {','.join(map(str, values))}: need three integers 1 <= min <= opt <= max, "
                         "e.g. 1,1,8")
    return values  # type: ignore[return-value]


def memory_plan(models: Mapping[str, object], vram: int, workspace: int, batch: Sequence[int] = (1, 1, 8),
                context: int = CUDA_CONTEXT_BYTES) -> dict:
    """The plan for nets {name: onnx.ModelProto} on a GPU of `vram` bytes; InputError if batch 1 does not fit.

    `profile[precision]` is the TensorRT (min, opt, max) batch: the requested one with max (and opt,
    min) lowered to what fits.
    """
    wanted = check_batch(batch)
    models = _memories(models)
    nets = {}
    for name, memory in models.items():
        peak32, peak16 = memory.peak(1, False), memory.peak(1, True)
        nets[name] = {
            "weights_bytes": {"fp32": weights_bytes(memory.model, False), "fp16": weights_bytes(memory.model, True)},
            "activation_bytes_per_sample": {"fp32": peak32["bytes"], "fp16": peak16["bytes"]},
            "peak_at": {"node": peak32["node"], "op": peak32["op"]},
        }
    plan = {
        "vram_bytes": vram,
        "workspace_bytes": workspace,
        "cuda_context_bytes": context,
        "batch_requested": list(wanted),
        "nets": nets,
        "need_bytes_batch1": {},
        "max_batch": {},
        "profile": {},
        "method": "context + workspace + sum(weights) + sum(peak live activations at batch B) <= vram",
    }
    for precision, half in (("fp32", False), ("fp16", True)):
        plan["need_bytes_batch1"][precision] = need_bytes(models, 1, half, workspace, context)
        fits = max_batch(models, vram, half, workspace, context)
        plan["max_batch"][precision] = fits
        top = min(wanted[2], fits)
        plan["profile"][precision] = [min(wanted[0], top), min(wanted[1], top), top] if fits else None
    if plan["max_batch"]["fp16"] == 0 and plan["max_batch"]["fp32"] == 0:
        need = plan["need_bytes_batch1"]
        raise InputError(f"--vram {human(vram)} is smaller than batch 1 needs: {human(need['fp32'])} FP32, "
                         f"{human(need['fp16'])} FP16 (CUDA context {human(context)} + workspace "
                         f"{human(workspace)} + weights + activations); lower --workspace or use a bigger GPU")
    if plan["max_batch"]["fp32"] == 0:
        plan["profile"]["fp32"] = None  # only an FP16 engine fits
    return plan


def format_plan(plan: dict) -> str:
    lines = [f"memory plan for --vram {human(plan['vram_bytes'])} (CUDA context {human(plan['cuda_context_bytes'])},"
             f" workspace {human(plan['workspace_bytes'])}):"]
    for name, net in plan["nets"].items():
        lines.append(f"  {name:7s} weights {human(net['weights_bytes']['fp32'])} FP32 / "
                     f"{human(net['weights_bytes']['fp16'])} FP16, activations per sample "
                     f"{human(net['activation_bytes_per_sample']['fp32'])} FP32 / "
                     f"{human(net['activation_bytes_per_sample']['fp16'])} FP16 (peak at {net['peak_at']['op']})")
    for precision in ("fp32", "fp16"):
        profile = plan["profile"][precision]
        lines.append(f"  {precision.upper()}: batch 1 needs {human(plan['need_bytes_batch1'][precision])}, "
                     f"largest batch that fits {plan['max_batch'][precision]}, TensorRT profile "
                     f"{'min/opt/max ' + '/'.join(map(str, profile)) if profile else 'none (does not fit)'}")
    return "\n".join(lines)
