"""What this machine offers recon: package versions, ONNX Runtime providers, GPU and TensorRT."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess


def package_version(name: str) -> str | None:
    """Installed version without importing the package (importing torch takes seconds)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def cuda_gpus() -> list[dict]:
    """GPUs the NVIDIA driver reports (name, memory in MiB, compute capability); [] without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=name,memory.total,compute_cap"
    try:
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, memory, capability = (field.strip() for field in line.split(","))
        gpus.append({"name": name, "memory_mib": int(float(memory)), "compute_capability": capability})
    return gpus


def tensorrt_version() -> str | None:
    """TensorRT's version when its Python bindings import, else None."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:  # a broken install (missing libnvinfer) imports with OSError/ImportError
        return None
    return tensorrt.__version__


def system_report() -> dict:
    packages = ["recon", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "torch", "trimesh",
                "embreex", "PyMCubes", "opencv-python-headless", "tensorrt", "cuda-python"]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: package_version(name) for name in packages},
        "onnxruntime_providers": onnxruntime_providers(),
        "cuda_gpus": cuda_gpus(),
        "tensorrt": tensorrt_version(),
    }
