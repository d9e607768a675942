"""Devices and machine facts the backends share: the --device table, the GPU we run on, the ONNX
Runtime provider chain for a device, and where TensorRT caches go. cuda-python and onnxruntime are
imported only inside the functions that use them."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from recon.runtime.errors import InputError

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"

# --device -> ONNX Runtime providers in order of preference; the CPU stays last so nodes a GPU
# provider cannot take still run. auto drops what this onnxruntime build lacks; cuda and tensorrt
# insist on their first provider. openvino runs the nets with OpenVINO (openvino_backend.py; auto
# too, where it is installed and no GPU provider is), so ONNX Runtime tools asked for it use the CPU.
DEVICES: dict[str, tuple[str, ...]] = {
    "auto": (TRT, CUDA, CPU),
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TRT, CUDA, CPU),
    "openvino": (CPU,),
}

# GPUs with fast FP16 arithmetic: compute capability 7.0 and up (Jetson Xavier 7.2, Orin 8.7 included),
# plus the Jetsons before Volta (TX1 5.3, TX2 6.2) and the P100 (6.0). Elsewhere (e.g. Pascal GP10x such
# as the GTX 1050: 6.1) FP16 only saves memory, at a speed cost.
_FAST_FP16_BEFORE_VOLTA = {(5, 3), (6, 0), (6, 2)}
GiB = 1 << 30


# ---------------------------------------------------------------- machine facts


@functools.lru_cache(maxsize=None)
def gpu_info() -> dict | None:
    """{"name", "memory_bytes", "capability": (major, minor)} of GPU 0, or None without a usable one.

    cuda-python first (works on Jetsons, which have no nvidia-smi), then nvidia-smi. Looked up once
    per process (it may start nvidia-smi, and every runner and engine check asks); do not modify.
    """
    try:
        cudart = _cudart()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return {"name": name.strip("\x00 "), "memory_bytes": int(props.totalGlobalMem),
                    "capability": (int(props.major), int(props.minor))}
    except Exception:  # cuda-python missing, no driver, no device
        pass
    from recon.runtime.system import cuda_gpus

    gpus = cuda_gpus()
    if not gpus:
        return None
    major, _, minor = gpus[0]["compute_capability"].partition(".")
    return {"name": gpus[0]["name"], "memory_bytes": gpus[0]["memory_mib"] << 20,
            "capability": (int(major or 0), int(minor or 0))}


def fast_fp16(gpu: dict | None) -> bool:
    """Whether `gpu` (a `gpu_info` dict; only "capability" is read) has fast FP16 arithmetic."""
    return bool(gpu) and (tuple(gpu["capability"]) >= (7, 0) or tuple(gpu["capability"]) in _FAST_FP16_BEFORE_VOLTA)


def workspace_bytes(gpu: dict | None) -> int:
    """TensorRT's tactic workspace: small on small cards so the engine and buffers still fit."""
    memory = gpu["memory_bytes"] if gpu else 0
    if memory <= int(4.5 * GiB):  # 4 GB cards and Jetson Nano: 1 GiB
        return GiB
    return 2 * GiB if memory <= int(8.5 * GiB) else 4 * GiB


def cache_root() -> Path:
    """Where TensorRT engine and timing caches go: $RECON_CACHE_DIR or ~/.cache/recon."""
    if os.environ.get("RECON_CACHE_DIR"):
        return Path(os.environ["RECON_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recon"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


def trt_cache_dir(model_sha256: str, gpu: dict | None) -> Path:
    """One cache folder per GPU model, TensorRT and ONNX Runtime version and model file: an engine
    built for one of them is useless (or unsafe) with another."""
    import onnxruntime

    from recon.runtime.system import package_version

    trt_version = next((v for v in (package_version(p) for p in ("tensorrt", "tensorrt-cu12", "tensorrt-libs")) if v),
                       "trt-unknown")
    key = f"{gpu['name'] if gpu else 'gpu'}-trt{trt_version}-ort{onnxruntime.__version__}-{model_sha256[:16]}"
    return cache_root() / "tensorrt" / _slug(key)


def parse_device(device: str) -> tuple[str, int]:
    """A --device value -> (kind of DEVICES, GPU index): "cuda:1" -> ("cuda", 1), "cpu" -> ("cpu", 0).
    InputError for an unknown kind, or an index on anything but cuda/tensorrt."""
    kind, colon, index = str(device).partition(":")
    if kind not in DEVICES or (colon and (kind not in ("cuda", "tensorrt") or not index.isdigit())):
        raise InputError(f"device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N, tensorrt:N for GPU N)")
    return kind, int(index or 0)


def provider_chain(device: str, model_sha256: str = "", available=None) -> list[tuple[str, dict]]:
    """[(provider, options)] for `device` on this machine, most preferred first (cuda:N / tensorrt:N: on GPU N).

    InputError for an unknown device, or for cuda/tensorrt when this onnxruntime build lacks them.
    """
    import onnxruntime

    device, device_id = parse_device(device)
    available = list(onnxruntime.get_available_providers() if available is None else available)
    wanted = DEVICES[device]
    if device in ("cuda", "tensorrt") and wanted[0] not in available:
        raise InputError(f"device {device!r}: this onnxruntime has no {wanted[0]} (it has {', '.join(available)}); "
                         "install the GPU runtime (pip install onnxruntime-gpu) or use --device cpu")
    gpu = gpu_info() if any(p in available for p in (TRT, CUDA)) and device != "cpu" else None
    chain = []
    for provider in wanted:
        if provider not in available:
            continue
        if provider == TRT:
            cache = trt_cache_dir(model_sha256 or "nohash", gpu)
            chain.append((TRT, {
                "device_id": device_id,
                "trt_fp16_enable": fast_fp16(gpu),
                "trt_max_workspace_size": workspace_bytes(gpu),
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache),
            }))
        elif provider == CUDA:
            # kSameAsRequested: grow the memory arena by what is asked, not by doubling (small cards).
            chain.append((CUDA, {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}))
        else:
            chain.append((CPU, {}))
    return chain



def _cudart():
    """cuda-python's runtime module (its import path moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart
