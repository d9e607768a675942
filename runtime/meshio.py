"""Reading, normalizing and writing meshes (trimesh), with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import trimesh
import trimesh.exchange.gltf
import trimesh.exchange.obj
import trimesh.exchange.ply
import trimesh.exchange.stl

from recon.runtime.errors import InputError, MeshError, first_line
from recon.runtime.fileio import atomic_path

__all__ = ["MESH_FORMATS", "MESH_ENCODERS", "MESH_WRITERS", "load_mesh", "normalize_to_unit_cube", "save_mesh"]

# Readable file suffixes (lower case, without the dot) -> trimesh file_type.
MESH_FORMATS: dict[str, str] = {
    "obj": "obj",
    "off": "off",
    "ply": "ply",
    "stl": "stl",
    "glb": "glb",
    "gltf": "gltf",
}


def _suffix(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def load_mesh(path) -> trimesh.Trimesh:
    """Load a mesh file as one Trimesh (scenes are concatenated).

    Raises MeshError("<path>: <reason>") for a missing or unreadable file, an unknown suffix, a file
    holding no faces, or non-finite vertices.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in MESH_FORMATS:
        valid = ", ".join(f".{s}" for s in MESH_FORMATS)
        raise MeshError(f"{path}: unknown mesh format {path.suffix or '(no suffix)'!r}; valid: {valid}")
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MeshError(f"{path}: file is empty")
    try:
        # process=False first, so NaN vertices are reported instead of silently dropped.
        mesh = trimesh.load(str(path), file_type=MESH_FORMATS[suffix], force="mesh", process=False)
    except ImportError:  # trimesh's fallbacks for undecodable files may need optional modules
        raise MeshError(f"{path}: cannot read {suffix.upper()} mesh (not a valid {suffix.upper()} file)") from None
    except Exception as exc:  # trimesh raises many types for malformed input
        raise MeshError(f"{path}: cannot read {suffix.upper()} mesh ({first_line(exc)})") from None
    if isinstance(mesh, trimesh.Scene):  # an empty scene is not concatenated into a mesh
        mesh = mesh.to_geometry() if len(mesh.geometry) else None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshError(f"{path}: holds no faces")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshError(f"{path}: vertices hold NaN or infinite values")
    mesh.process()  # merge duplicate vertices, drop degenerate data, as trimesh.load does by default
    if len(mesh.faces) == 0:
        raise MeshError(f"{path}: holds no faces")
    return mesh


def normalize_to_unit_cube(mesh, up="y") -> trimesh.Trimesh:
    """A copy of the mesh in the canonical frame's placement: bbox centred at the origin, largest extent 1.

    up="z" first rotates a z-up mesh to y-up by -90 degrees about x: (x, y, z) -> (x, z, -y), so a
    z-up mesh whose front faces +y ends up facing -z (docs/design.md). up="y" keeps the orientation.
    """
    if up not in ("y", "z"):
        raise InputError(f"up: must be 'y' or 'z', got {up!r}")
    mesh = mesh.copy()
    if len(mesh.vertices) == 0:
        raise MeshError("mesh: has no vertices to normalize")
    if up == "z":
        rotation = np.eye(4)
        rotation[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
        mesh.apply_transform(rotation)
    lo, hi = mesh.bounds
    extent = float(np.max(hi - lo))
    if not np.isfinite(extent) or extent <= 0:
        raise MeshError(f"mesh: cannot normalize, its bounding box has extent {extent}")
    mesh.apply_translation(-(lo + hi) / 2.0)
    mesh.apply_scale(1.0 / extent)
    return mesh


def _obj_bytes(mesh: trimesh.Trimesh) -> bytes:
    # No texture: a textured OBJ would reference .mtl/image files that are not written. Vertex colours
    # (recon.runtime.color) go on the `v` lines as x y z r g b, which MeshLab and Blender read.
    text = trimesh.exchange.obj.export_obj(mesh, include_texture=False, include_color=True)
    return text.encode()


def _writer(encode: Callable[[trimesh.Trimesh], bytes]) -> Callable[[trimesh.Trimesh, Path], None]:
    def write(mesh: trimesh.Trimesh, path: Path) -> None:
        Path(path).write_bytes(encode(mesh))

    return write


# Format -> the file's bytes. Vertex colours travel in obj, ply (red/green/blue/alpha) and glb (COLOR_0,
# the picture's sRGB values); STL has none.
MESH_ENCODERS: dict[str, Callable[[trimesh.Trimesh], bytes]] = {
    "obj": _obj_bytes,
    "ply": lambda m: trimesh.exchange.ply.export_ply(m, encoding="binary"),
    "stl": lambda m: trimesh.exchange.stl.export_stl(m),
    "glb": lambda m: trimesh.exchange.gltf.export_glb(trimesh.Scene(m)),
}
MESH_WRITERS: dict[str, Callable[[trimesh.Trimesh, Path], None]] = {
    fmt: _writer(encode) for fmt, encode in MESH_ENCODERS.items()}


def save_mesh(mesh, path, fmt=None) -> None:
    """Write a mesh atomically (temp file beside `path`, then rename); format from the suffix when fmt is None."""
    path = Path(path)
    fmt = (fmt or _suffix(path)).lower().lstrip(".")
    if fmt not in MESH_WRITERS:
        valid = ", ".join(MESH_WRITERS)
        raise InputError(f"{path}: cannot write mesh format {fmt or '(no suffix)'!r}; valid: {valid}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    with atomic_path(path) as tmp:
        MESH_WRITERS[fmt](mesh, tmp)
