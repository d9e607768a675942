"""The runner every backend fills in (polygraphy's shape): activate / infer / deactivate, with the
input checks done once, in `BaseRunner.infer`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.runtime.errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape of an input; None in the shape is a free (dynamic) dimension."""

    dtype: np.dtype
    shape: tuple


class BaseRunner:
    """activate() -> infer(feed) ... -> deactivate(); usable as a context manager.

    `inputs` maps input names to TensorSpec; `max_batch` is the largest first dimension the
    backend accepts (None: no limit); `provider` says what actually runs (e.g. "CUDAExecutionProvider").
    """

    name = "runner"

    def __init__(self):
        self.is_active = False
        self.inputs: dict[str, TensorSpec] = {}
        self.max_batch: int | None = None
        self.provider = ""  # what actually runs the model
        self.note = ""  # why that is not the first choice, when it is not

    def activate(self) -> "BaseRunner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def infer(self, feed: dict) -> dict:
        """{input name: array} -> {output name: array}; the inputs are checked here, once for all backends."""
        if not self.is_active:
            raise RuntimeError(f"{self.name}: activate() the runner (or use `with runner:`) before infer()")
        self.check_inputs(feed)
        return self.infer_impl({name: np.ascontiguousarray(value) for name, value in feed.items()})

    def check_inputs(self, feed: dict) -> None:
        missing = sorted(set(self.inputs) - set(feed))
        unexpected = sorted(set(feed) - set(self.inputs))
        if missing or unexpected:
            raise InputError(f"{self.name}: inputs {sorted(feed)} given, expected {sorted(self.inputs)}"
                             + (f" (missing {missing})" if missing else "")
                             + (f" (unexpected {unexpected})" if unexpected else ""))
        for name, spec in self.inputs.items():
            value = feed[name]
            if not isinstance(value, np.ndarray):
                raise InputError(f"{self.name}: input {name!r} is a {type(value).__name__}, expected a numpy array")
            if value.dtype != spec.dtype:
                raise InputError(f"{self.name}: input {name!r} has dtype {value.dtype}, expected {spec.dtype}")
            shown = tuple("B" if d is None else d for d in spec.shape)
            if value.ndim != len(spec.shape) or any(d is not None and d != v for d, v in zip(spec.shape, value.shape)):
                raise InputError(f"{self.name}: input {name!r} has shape {value.shape}, expected {shown}")
            if value.shape[0] < 1 or (self.max_batch is not None and value.shape[0] > self.max_batch):
                raise InputError(f"{self.name}: input {name!r} has batch {value.shape[0]}, expected 1 to {self.max_batch}")

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict) -> dict:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError
