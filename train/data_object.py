"""One object of a dataset: its render settings and job, its appearance, and making it.

A job voxelizes its mesh once and renders V random views, each file written atomically, the voxel
file last so its presence marks a finished object and a re-run skips it (recon.train.data runs the
jobs). Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from recon.runtime.camera import Camera
from recon.runtime.errors import InputError, ReconError
from recon.runtime.fileio import save_npz_atomic
from recon.runtime.meshio import load_mesh, normalize_to_unit_cube
from recon.runtime.render import render_view
from recon.runtime.voxels import voxelize_solid
from recon.train.data_files import object_path, view_path


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    views: int = 20  # views per object (the paper's 20)
    image_size: int = 256  # square renders, the paper's input size
    voxel_res: int = 128  # stored occupancy resolution; loaders max-pool to 64/32
    distance: float = 2.2  # camera distance from the origin
    fov: float = 49.13  # full field of view, degrees
    elevation_range: tuple[float, float] = (-10.0, 40.0)  # degrees; azimuth is uniform 0-360

    def validate(self) -> None:
        for name in ("views", "image_size", "voxel_res"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.image_size < 16:
            raise InputError(f"--image-size must be at least 16, got {self.image_size}")


@dataclasses.dataclass(frozen=True)
class ObjectJob:
    """One object to produce: where its mesh comes from and the seed of its views."""

    object_id: str
    category: str
    split: str
    seed: int
    mesh_path: str | None = None  # None: a synthetic object made from `seed`
    up: str = "y"
    auto_orient: bool = False  # turn the mesh into the category's canonical pose (recon.train.orient)
    rotation: int | None = None  # a person's override of the auto-orientation (index into ROTATIONS)


# ---------------------------------------------------------------- appearance


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """White, a flat colour or a smooth noise texture: the three kinds of background we train on."""
    kind = rng.integers(3)
    if kind == 0:
        return np.full((size, size, 3), 255, np.uint8)
    if kind == 1:
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (size, size, 3)).copy()
    cells = int(rng.integers(2, 9))  # value noise: a coarse random grid smoothly upsampled, plus grain
    coarse = (rng.uniform(0, 1, (cells, cells, 3)) * 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32) / 255
    tint, spread = rng.uniform(0.2, 0.8, 3), rng.uniform(0.1, 0.5)
    image = tint + spread * (smooth - 0.5) + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def part_colors(rng: np.random.Generator, n_parts: int) -> np.ndarray:
    """(n_parts, 3) colours: one base colour, parts varying around it, sometimes an accent colour."""
    base = rng.uniform(0.15, 0.95, 3)
    accent = rng.uniform(0.05, 0.9, 3)
    colors = base * rng.uniform(0.8, 1.15, (n_parts, 1)) + rng.normal(0, 0.04, (n_parts, 3))
    accented = rng.uniform(size=n_parts) < rng.uniform(0, 0.4)
    colors[accented] = accent
    return np.clip(colors, 0, 1)


def random_light(rng: np.random.Generator) -> np.ndarray:
    direction = rng.normal(size=3)
    direction[1] = abs(direction[1]) + 0.5  # light comes from above, as indoors and outdoors
    return direction / np.linalg.norm(direction)


# ---------------------------------------------------------------- one object


def object_mesh(job: ObjectJob):
    """(mesh in the canonical frame, per-face part ids, metadata) for a job."""
    if job.mesh_path is None:
        from recon.train.shapes import make_shape

        shape = make_shape(job.category, job.seed)
        meta = {"family": shape.family, "params": shape.params}
        return shape.mesh, shape.part_ids, meta
    import trimesh

    mesh = normalize_to_unit_cube(load_mesh(job.mesh_path), up=job.up)
    meta = {"source": str(job.mesh_path)}
    if job.auto_orient:
        from recon.train.orient import apply_orientation, orient

        found = orient(mesh, job.category) if job.rotation is None else None
        index = job.rotation if found is None else found.rotation_index
        mesh = apply_orientation(mesh, index)
        meta["orientation"] = {"rotation_index": index, "override": found is None,
                               "confidence": 1.0 if found is None else round(found.confidence, 3)}
    # Real meshes have no part labels: connected components colour differently instead.
    parts = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    return mesh, parts.astype(np.int32), meta


def _pose_unchanged(entry: dict, job: ObjectJob) -> bool:
    """Whether a stored object was built in the pose the job asks for now (overrides edited since)."""
    if not job.auto_orient:
        return True
    pose = entry.get("orientation", {})
    if job.rotation is None:
        return not pose.get("override", False)
    return bool(pose.get("override")) and pose.get("rotation_index") == job.rotation


def make_object(job: ObjectJob, settings: RenderSettings, root: Path) -> dict:
    """Render and voxelize one object; return its manifest entry (also stored in its voxel file)."""
    done = object_path(root, job.object_id)
    if done.exists():  # finished by an earlier run, unless an override has changed its pose since
        with np.load(done) as archive:
            entry = json.loads(str(archive["meta"]))
        if _pose_unchanged(entry, job):
            return entry
    mesh, part_ids, meta = object_mesh(job)
    rng = np.random.default_rng([job.seed, 7])  # views: independent of the shape's own stream
    colors = part_colors(rng, int(part_ids.max()) + 1)[part_ids]
    low, high = settings.elevation_range
    for view in range(settings.views):
        camera = Camera(azimuth=float(rng.uniform(0, 360)), elevation=float(rng.uniform(low, high)),
                        distance=settings.distance, fov=settings.fov)
        rendered = render_view(mesh, camera, settings.image_size, face_colors=colors,
                               light_dir=random_light(rng), ambient=float(rng.uniform(0.25, 0.45)),
                               background=random_background(rng, settings.image_size))
        save_npz_atomic(view_path(root, job.object_id, view), rgb=rendered["rgb"],
                        normals=rendered["normals"].astype(np.float16),
                        depth=rendered["depth"].astype(np.float16), mask=rendered["mask"],
                        camera=camera.to_array())
    voxels = voxelize_solid(mesh, settings.voxel_res)
    entry = {"id": job.object_id, "category": job.category, "split": job.split, "seed": job.seed,
             "views": settings.views, "faces": int(len(mesh.faces)),
             "occupancy": round(float(voxels.mean()), 6), **meta}
    save_npz_atomic(done, voxels=voxels, meta=np.array(json.dumps(entry)))
    return entry


def _run_job(args) -> tuple[ObjectJob, dict | None, str | None]:
    job, settings, root = args
    try:
        return job, make_object(job, settings, root), None
    except ReconError as error:
        return job, None, str(error)
    except Exception as error:  # a mesh that breaks the renderer must not stop the other objects
        name = job.mesh_path or job.object_id
        return job, None, f"{name}: {type(error).__name__}: {error}"
