"""recon: one photo of an object -> 2.5D sketch -> voxels -> mesh, fast on small GPUs and CPUs."""

__version__ = "0.1.0"
