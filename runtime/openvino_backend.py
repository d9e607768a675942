"""OpenVINO backend: one more loader + runner pair beside ONNX Runtime and TensorRT (backends.py).

    runner = OpenVINORunner(CompiledFromOnnx("MODEL/sketch.onnx", precision="auto"))
    with runner:                                   # activate() ... deactivate()
        outputs = runner.infer({"image": batch})   # name -> numpy array

OpenVINO reads the exported ONNX files as they are (no IR files in the model folder) and compiles
them for the CPU. Its floating-point precision is a compile option: FP32, or BF16 on CPUs that have
it (AVX512_BF16 or AMX, as OpenVINO's OPTIMIZATION_CAPABILITIES reports; never assumed). QDQ INT8
twins (`recon-cli export --int8`) run their quantised layers in INT8 whatever that option says.

BF16 changes the numbers, so the runtime's choice (`model_precision`) takes it only where the CPU
has it and the model's export measured it within the accuracy gate (model.json "openvino"); else
FP32, with a note saying why. The runner's `provider` names what runs: "OpenVINO CPU BF16".
openvino is an optional extra (pip install 'recon[openvino]'), imported only when used.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from recon.runtime.backends import BaseRunner, TensorSpec
from recon.runtime.errors import InputError, ModelError, first_line

__all__ = ["INFERENCE_PRECISIONS", "CompiledFromOnnx", "OpenVINORunner", "openvino_preferred",
           "cpu_capabilities", "model_precision", "openvino_summary"]

INSTALL = "OpenVINO is not installed: pip install 'recon[openvino]' (or use --device cpu)"
DEVICE = "CPU"
# Our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
GATE_KEY = "openvino"  # model.json: {"bf16": gate figures with "passed"}, written by recon-cli export


def import_openvino():
    """The openvino module, or InputError (one line) saying how to install it."""
    try:
        import openvino
    except Exception:  # ImportError, or a broken install raising OSError on its libraries
        raise InputError(INSTALL) from None
    return openvino


def openvino_preferred() -> bool:
    """Whether `--device auto` runs OpenVINO: installed, and ONNX Runtime has no GPU provider."""
    if importlib.util.find_spec("openvino") is None:
        return False
    import onnxruntime

    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    return not gpu & set(onnxruntime.get_available_providers())


@functools.lru_cache(maxsize=None)
def _core():
    return import_openvino().Core()


@functools.lru_cache(maxsize=None)
def cpu_capabilities() -> dict:
    """{"name", "capabilities", "version"} of OpenVINO's CPU device: what it can compute in (e.g.
    ["BF16", "FP32", "INT8", ...]), read from the device, not assumed. Looked up once per process."""
    openvino = import_openvino()
    core = _core()
    return {"name": str(core.get_property(DEVICE, "FULL_DEVICE_NAME")),
            "capabilities": [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")],
            "version": openvino.__version__.split("-")[0]}


def model_precision(manifest: dict, capabilities=None) -> tuple[str, str]:
    """(precision, note) for the FP32 files of a model folder: "bf16" where the CPU has BF16 and the
    model's export measured BF16 within the gate, else "fp32" (the note says why, when BF16 exists)."""
    capabilities = cpu_capabilities()["capabilities"] if capabilities is None else capabilities
    if "BF16" not in capabilities:
        return "fp32", ""
    gate = (manifest.get(GATE_KEY) or {}).get("bf16")
    if not isinstance(gate, dict):
        return "fp32", ("FP32: BF16 was not measured for this model (export it again with openvino installed "
                        "to gate BF16)")
    if not gate.get("passed"):
        return "fp32", f"FP32: BF16 failed this model's accuracy gate at export ({gate.get('summary', 'see model.json')})"
    return "bf16", ""


class CompiledFromOnnx:
    """Loader: an OpenVINO CompiledModel of an ONNX file for the CPU.

    precision: "auto" (BF16 where the CPU has it, else FP32), "fp32" or "bf16" (InputError where the
    CPU lacks it); `label` overrides what `precision` reports (e.g. "int8" for a QDQ twin).
    After loading, `precision` is what was compiled ("fp32"/"bf16", or the label).
    """

    def __init__(self, path, precision: str = "auto", threads: int | None = None, label: str | None = None):
        self.path = Path(path)
        if precision not in ("auto", *INFERENCE_PRECISIONS):
            raise InputError(f"OpenVINO precision {precision!r}: choose auto, {', '.join(INFERENCE_PRECISIONS)}")
        if threads is not None and int(threads) < 1:
            raise InputError(f"threads: must be >= 1, got {threads}")
        self.requested, self.threads, self.label = precision, threads, label
        self.precision = ""
        self.note = ""
        self.output_names: list[str] = []  # the ONNX graph's output names, in the compiled model's order

    def chosen_precision(self) -> str:
        capabilities = cpu_capabilities()["capabilities"]
        if self.requested == "auto":
            return "bf16" if "BF16" in capabilities else "fp32"
        if self.requested == "bf16" and "BF16" not in capabilities:
            raise InputError(f"OpenVINO precision bf16: this CPU has no BF16 (it offers {', '.join(capabilities)})")
        return self.requested

    def __call__(self):
        precision = self.chosen_precision()
        config = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            model = _core().read_model(str(self.path))
            # Read before compiling: compiled ports also carry internal tensor names (any of which
            # get_any_name may return), the read model only the graph's own.
            self.output_names = [port.get_any_name() for port in model.outputs]
            compiled = _core().compile_model(model, DEVICE, config)
        except Exception as error:
            raise ModelError(f"{self.path}: OpenVINO cannot compile it ({first_line(error)})") from None
        self.precision = self.label or precision
        return compiled


class OpenVINORunner(BaseRunner):
    """Runs an OpenVINO CompiledModel with one synchronous infer request (outputs copied out)."""

    name = "openvino"

    def __init__(self, loader, name: str | None = None):
        super().__init__()
        self.loader = loader
        self.name = name or getattr(loader, "path", Path("openvino")).name
        self.compiled = self.request = None

    def activate_impl(self) -> None:
        self.compiled = self.loader() if callable(self.loader) else self.loader
        precision = getattr(self.loader, "precision", "") or "fp32"
        self.provider = f"OpenVINO {DEVICE} {precision.upper()}"
        self.note = getattr(self.loader, "note", "")
        self.inputs = {}
        for port in self.compiled.inputs:
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            self.inputs[port.get_any_name()] = TensorSpec(port.get_element_type().to_dtype(), shape)
        first = [spec.shape[0] for spec in self.inputs.values()]
        self.max_batch = first[0] if first and first[0] is not None else None
        names = getattr(self.loader, "output_names", None) or [port.get_any_name() for port in self.compiled.outputs]
        self.outputs = list(zip(self.compiled.outputs, names))
        self.request = self.compiled.create_infer_request()

    def infer_impl(self, feed: dict) -> dict:
        # share_inputs: the arrays are contiguous and the call is synchronous; outputs are copies.
        results = self.request.infer(feed, share_inputs=True, share_outputs=False)
        return {name: results[port] for port, name in self.outputs}

    def deactivate_impl(self) -> None:
        self.request = self.compiled = None


def openvino_summary() -> str | None:
    """One line for `recon-cli doctor`: version, CPU and its precisions (None without openvino)."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        info = cpu_capabilities()
    except Exception as error:  # a broken install: say so rather than fail the doctor
        return f"not usable ({first_line(error)})"
    floats = "BF16 where the model's export gated it, else FP32" if "BF16" in info["capabilities"] else "FP32"
    return f"{info['version']} on {info['name']}: {', '.join(info['capabilities'])}; runs {floats}; INT8 twins in INT8"
