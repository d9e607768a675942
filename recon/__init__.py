"""recon: one photo of an object -> 2.5D sketch -> voxels -> mesh, fast on small GPUs and CPUs."""

__version__ = "0.1.0"

__all__ = ["Reconstructor", "Result", "__version__"]


def __getattr__(name):
    # Lazy, so `import recon` stays light (no onnxruntime/trimesh until the runtime is used).
    if name in ("Reconstructor", "Result"):
        from recon.runtime import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'recon' has no attribute {name!r}")
