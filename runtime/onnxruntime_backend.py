"""ONNX Runtime backend: `SessionFromOnnx` (loader: a session for a device of DEVICES) and
`OnnxRuntimeRunner` (IO binding on CUDA/TensorRT).

ONNX Runtime silently falls back to the CPU when a provider cannot start, so after loading we read
`session.get_providers()` and report (or, for an explicitly requested device, refuse) what runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.runtime.devices import CUDA, DEVICES, TRT, parse_device, provider_chain
from recon.runtime.errors import InputError, ModelError, first_line
from recon.runtime.runner_base import BaseRunner, TensorSpec


class SessionFromOnnx:
    """Loader: an ONNX Runtime InferenceSession for `device` (see DEVICES) with `threads` CPU threads.

    After loading, `provider` is the provider that runs the model and `note` says why it is not
    the first choice (e.g. "TensorrtExecutionProvider failed: ..."). An explicitly requested
    cuda/tensorrt device that does not come up is an InputError.
    """

    def __init__(self, path, device: str = "auto", threads: int | None = None, model_sha256: str = ""):
        self.path = Path(path)
        self.device = device
        self.kind, self.device_id = parse_device(device)  # InputError now for a bad --device
        self.threads = threads
        self.model_sha256 = model_sha256
        self.provider = ""
        self.note = ""
        if threads is not None and int(threads) < 1:
            raise InputError(f"threads: must be >= 1, got {threads}")

    def options(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: fallbacks are reported through `note`
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1  # one branch at a time: the nets are single chains
        # Idle pool threads would otherwise spin between runs, taking the cores from our numpy
        # preprocessing and meshing (and other processes): on a 2-core CPU that halves the speed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def __call__(self):
        import onnxruntime

        chain = provider_chain(self.device, self.model_sha256)
        for provider, opts in chain:
            if provider == TRT:
                Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        errors = []
        # auto: when a provider fails to start (missing libnvinfer, out of memory), try without it.
        while chain:
            try:
                session = onnxruntime.InferenceSession(str(self.path), self.options(),
                                                       providers=[p for p, _ in chain],
                                                       provider_options=[_as_strings(o) for _, o in chain])
                break
            except Exception as error:
                message = first_line(error)
                if self.device != "auto" or len(chain) == 1:
                    raise ModelError(f"{self.path}: cannot load on {self.device} ({message})") from None
                errors.append(f"{chain[0][0]} failed: {message}")
                chain = chain[1:]
        running = session.get_providers()
        self.provider = running[0]
        wanted = DEVICES[self.kind][0]
        if self.kind in ("cuda", "tensorrt") and wanted not in running:
            raise InputError(f"device {self.device!r}: {wanted} did not start for {self.path.name} "
                             f"(running on {', '.join(running)}); check the CUDA/TensorRT install or use --device cpu")
        if self.provider != chain[0][0]:
            errors.append(f"{chain[0][0]} did not start")
        self.note = "; ".join(errors)
        return session


class OnnxRuntimeRunner(BaseRunner):
    """Runs an ONNX Runtime session.

    On CUDA/TensorRT it uses IO binding: per batch size, input and output tensors are allocated on
    the GPU once and reused (inputs refreshed in place), so a run does no device allocation and the
    outputs cross to the host once, when read. `binding_device` (None on the CPU) selects this.
    """

    name = "onnxruntime"

    def __init__(self, loader, name: str | None = None):
        super().__init__()
        self.loader = loader
        self.session = None
        self.name = name or getattr(loader, "path", Path("onnxruntime")).name
        self.binding_device = None
        self._bindings = {}  # batch size -> (binding, inputs, outputs)

    def activate_impl(self) -> None:
        self.session = self.loader() if callable(self.loader) else self.loader
        self.provider = getattr(self.loader, "provider", "") or self.session.get_providers()[0]
        self.note = getattr(self.loader, "note", "")
        self.inputs = {i.name: TensorSpec(_dtype(i.type), _shape(i.shape)) for i in self.session.get_inputs()}
        self.output_specs = {o.name: TensorSpec(_dtype(o.type), _shape(o.shape)) for o in self.session.get_outputs()}
        first = [spec.shape[0] for spec in self.inputs.values()]
        self.max_batch = first[0] if first and first[0] is not None else None
        self.binding_device = "cuda" if self.provider in (CUDA, TRT) else None
        self.device_id = getattr(self.loader, "device_id", 0)  # the GPU the session runs on (cuda:N)
        self._bindings = {}

    def infer_impl(self, feed: dict) -> dict:
        outputs = list(self.output_specs)
        if self.binding_device is None:
            return dict(zip(outputs, self.session.run(outputs, feed)))
        batch = next(iter(feed.values())).shape[0]
        if batch not in self._bindings:
            self._bindings[batch] = self._bind(batch, feed)
        binding, inputs, bound = self._bindings[batch]
        for name, value in feed.items():
            inputs[name].update_inplace(value)
        self.session.run_with_iobinding(binding)
        if bound is None:  # outputs of unknown shape: ONNX Runtime allocates them each run
            return dict(zip(outputs, binding.copy_outputs_to_cpu()))
        # Copies: the bound tensors are reused by the next run of this batch size.
        return {name: np.array(value.numpy()) for name, value in bound.items()}

    def _bind(self, batch: int, feed: dict):
        from onnxruntime import OrtValue

        device = self.binding_device
        binding = self.session.io_binding()
        # Allocated by ONNX Runtime, not wrapping the caller's array (on the CPU it would alias it).
        inputs = {name: OrtValue.ortvalue_from_shape_and_type(value.shape, value.dtype, device, self.device_id)
                  for name, value in feed.items()}
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        shapes = {name: (batch, *spec.shape[1:]) for name, spec in self.output_specs.items()}
        if all(None not in shape for shape in shapes.values()):
            bound = {name: OrtValue.ortvalue_from_shape_and_type(shapes[name], self.output_specs[name].dtype, device,
                                                                 self.device_id)
                     for name in shapes}
            for name, value in bound.items():
                binding.bind_ortvalue_output(name, value)
        else:
            bound = None
            for name in self.output_specs:
                binding.bind_output(name, device, self.device_id)
        return binding, inputs, bound

    def deactivate_impl(self) -> None:
        self.session = None
        self._bindings = {}


def _dtype(onnx_type: str) -> np.dtype:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
    return np.dtype(types.get(onnx_type, np.float32))


def _shape(dims) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in dims)


def _as_strings(options: dict) -> dict:
    """Provider options as ONNX Runtime parses them: strings, booleans as "true"/"false"."""
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in options.items()}
