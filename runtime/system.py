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


# ---------------------------------------------------------------- memory


MEMORY_SHARE = 0.8  # of the memory available now, what one batch may take (the rest: the OS, other programs)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux MemAvailable), else physical memory."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def picture_bytes(model) -> int:
    """Host memory one picture of a batch takes (recon.runtime.model.ModelInfo): both networks' peak live
    activations from the memory plan (an upper bound; 16 x the inputs without a plan), the network inputs
    and outputs (each twice: the per-picture arrays and the stacked batch) and the voxel grid."""
    side, res = model.image_size, model.voxel_res
    tensors = 4 * (3 * side * side + 5 * side * side + res ** 3)  # float32 inputs + outputs of both nets
    nets = (model.manifest.get("plan") or {}).get("nets") or {}
    planned = [entry.get("activation_bytes_per_sample", {}).get("fp32") for entry in nets.values()
               if isinstance(entry, dict)]
    activations = sum(planned) if planned and all(isinstance(v, int) for v in planned) else 16 * tensors
    return int(activations + 2 * tensors)


def check_batch_memory(model, batch: int, label: str = "batch") -> None:
    """InputError before anything is allocated when `batch` pictures at once cannot fit this machine."""
    from recon.runtime.errors import InputError

    available = available_memory()
    per_picture = picture_bytes(model)
    if available is None or batch * per_picture <= MEMORY_SHARE * available:
        return
    most = max(1, int(MEMORY_SHARE * available // per_picture))
    raise InputError(f"{label} {batch}: needs about {batch * per_picture / 2**30:.1f} GiB "
                     f"({per_picture / 2**20:.1f} MiB per picture, from the model's memory plan) but "
                     f"{available / 2**30:.1f} GiB is available; use a batch of at most {most}")
