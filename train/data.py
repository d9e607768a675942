"""Training data: render + voxelize objects into a dataset folder (see docs/design.md).

Sources are synthetic objects (`recon.train.shapes`) or the user's mesh files; both go through
the same job: voxelize once, render V random views, write each file atomically, the voxel file
last so its presence marks a finished object and a re-run skips it. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from recon.runtime.camera import Camera
from recon.runtime.errors import InputError, ReconError, first_line
from recon.runtime.fileio import check_output_dir, remove_stale_temps, save_npz_atomic, write_json_atomic
from recon.runtime.meshio import MESH_FORMATS, load_mesh, normalize_to_unit_cube
from recon.runtime.render import render_view
from recon.runtime.voxels import voxelize_solid

FORMAT_VERSION = 1
TEST_FRACTION = 0.2  # the paper's 80/20 split, by object


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


def check_object_id(object_id) -> str:
    """An object id names files inside the dataset folder: a plain name, never a path (`../x`)."""
    if (not isinstance(object_id, str) or object_id in ("", ".", "..") or object_id.startswith(".")
            or any(c in object_id for c in "/\\\0") or Path(object_id).name != object_id):
        raise InputError(f"object id {object_id!r}: not a plain file name (the manifest may be damaged or "
                         "hand-edited); ids name files inside the dataset folder")
    return object_id


def view_path(root: Path, object_id: str, view: int) -> Path:
    return root / "views" / f"{check_object_id(object_id)}_{view:02d}.npz"


def object_path(root: Path, object_id: str) -> Path:
    return root / "objects" / f"{check_object_id(object_id)}.npz"


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


# ---------------------------------------------------------------- the whole dataset


def splits(count: int, seed: int, category: str) -> list[str]:
    """'test' or 'train' for each of a category's `count` objects: a fixed TEST_FRACTION chosen by seed."""
    order = np.random.default_rng([seed, sum(map(ord, category))]).permutation(count)
    n_test = max(1, round(TEST_FRACTION * count)) if count > 1 else 0
    labels = ["train"] * count
    for index in order[:n_test]:
        labels[index] = "test"
    return labels


def prepare_output(out: Path, settings: RenderSettings | None = None, seed: int | None = None) -> Path:
    """Create the folder; refuse to resume into one made with other settings (mixed data)."""
    out = Path(out)
    previous = out / "manifest.json"
    if settings is not None and previous.is_file():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{previous}: unreadable ({first_line(error)}); choose a new --out") from None
        if old.get("settings") != json.loads(json.dumps(dataclasses.asdict(settings))) or old.get("seed") != seed:
            raise InputError(f"{out}: holds a dataset made with other settings or seed; choose a new --out")
    for folder in (out, out / "views", out / "objects"):  # stale temporary files removed too
        check_output_dir(folder, "")
    return out


def fingerprint(manifest: dict) -> str:
    """A short hash of what defines the data (settings and objects), recorded with trained models."""
    content = {key: manifest[key] for key in ("format_version", "settings", "seed", "objects")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_jobs(jobs: list[ObjectJob], settings: RenderSettings, out: Path, workers: int,
             progress=None) -> tuple[list[dict], list[dict]]:
    """Produce every job across `workers` processes; returns (entries in job order, failures)."""
    tasks = [(job, settings, out) for job in jobs]
    results = {}
    failures = []
    if workers <= 1:
        iterator = map(_run_job, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_setup, initargs=(os.getpid(),))
        iterator = pool.imap_unordered(_run_job, tasks)
    try:
        for job, entry, error in iterator:
            if error is None:
                results[job.object_id] = entry
            else:
                failures.append({"id": job.object_id, "source": job.mesh_path, "error": error})
            if progress is not None:
                progress(job, error)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
            for folder in ("views", "objects"):  # what workers stopped mid-write left behind
                remove_stale_temps(out / folder)
    entries = [results[job.object_id] for job in jobs if job.object_id in results]
    return entries, failures


def _worker_setup(parent: int) -> None:
    """In each worker process: Ctrl-C is the parent's to handle (it stops the pool; no traceback per
    worker), and the worker dies with its parent even when that is killed outright (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when the parent's pool is torn down
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def write_manifest(out: Path, kind: str, settings: RenderSettings, seed: int, categories: list[str],
                   entries: list[dict], failures: list[dict], extra: dict | None = None,
                   complete: bool = True) -> dict:
    """Written once before the jobs (complete: false, so a resume can check its settings) and after."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "settings": dataclasses.asdict(settings),
        "seed": seed,
        "image_size": settings.image_size,
        "voxel_res": settings.voxel_res,
        "views": settings.views,
        "categories": categories,
        "split": {"by": "object", "test_fraction": TEST_FRACTION},
        "complete": complete,
        **(extra or {}),
        "objects": entries,
        "failed": failures,
    }
    manifest["fingerprint"] = fingerprint(manifest)
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def synth_jobs(objects: int, categories: Iterable[str], seed: int) -> list[ObjectJob]:
    from recon.train.shapes import CATEGORIES

    jobs = []
    for category in categories:
        if category not in CATEGORIES:
            raise InputError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
        for index, split in enumerate(splits(objects, seed, category)):
            jobs.append(ObjectJob(object_id=f"{category}_{index:05d}", category=category, split=split,
                                  seed=seed * 1_000_003 + index))
    return jobs


def synth(out: Path, objects: int, categories: list[str], seed: int, settings: RenderSettings,
          workers: int = 1, progress=None) -> dict:
    """`recon-cli data synth`: N procedural objects per category."""
    settings.validate()
    if objects <= 0:
        raise InputError(f"--objects must be positive, got {objects}")
    jobs = synth_jobs(objects, categories, seed)
    out = prepare_output(out, settings, seed)
    write_manifest(out, "synth", settings, seed, list(categories), [], [], complete=False)
    entries, failures = run_jobs(jobs, settings, out, workers, progress)
    return write_manifest(out, "synth", settings, seed, list(categories), entries, failures)


def find_meshes(meshes: Path) -> list[tuple[str, Path]]:
    """(category, path) for every `<category>/<name>.<mesh suffix>` under `meshes`."""
    meshes = Path(meshes)
    if not meshes.is_dir():
        raise InputError(f"{meshes}: meshes folder does not exist")
    found = sorted((path.parent.name, path) for path in meshes.glob("*/*")
                   if path.suffix.lower().lstrip(".") in MESH_FORMATS and path.is_file())
    if not found:
        raise InputError(f"{meshes}: no meshes found (expected <category>/<name>.{{{','.join(MESH_FORMATS)}}})")
    by_id: dict[str, list[Path]] = {}
    for category, path in found:  # object ids are <category>_<stem>: two files of one stem would be one object
        by_id.setdefault(f"{category}_{path.stem}", []).append(path)
    clashes = [paths for paths in by_id.values() if len(paths) > 1]
    if clashes:
        names = "; ".join(" and ".join(str(p) for p in paths) for paths in clashes[:3])
        raise InputError(f"{meshes}: {len(clashes)} name(s) used by two mesh files ({names}); each mesh becomes "
                         "the object <category>_<file name without suffix>: rename one of each pair")
    return found


def build_jobs(found: list[tuple[str, Path]], seed: int, up: str, auto_orient: bool = False,
               overrides: dict[str, int | None] | None = None) -> list[ObjectJob]:
    """One job per mesh, except meshes an override excludes (value None). The split is drawn over all
    meshes first, so excluding one never moves another between train and test."""
    overrides = overrides or {}
    by_category: dict[str, list[Path]] = {}
    for category, path in found:
        by_category.setdefault(category, []).append(path)
    jobs = []
    for category, paths in by_category.items():
        for index, (path, split) in enumerate(zip(paths, splits(len(paths), seed, category))):
            if path.name in overrides and overrides[path.name] is None:
                continue
            jobs.append(ObjectJob(object_id=f"{category}_{path.stem}", category=category, split=split,
                                  seed=seed * 1_000_003 + index, mesh_path=str(path), up=up,
                                  auto_orient=auto_orient, rotation=overrides.get(path.name)))
    return jobs


LOW_CONFIDENCE = 0.3  # auto-orientations below this are listed in the manifest for a person to check


def build(meshes: Path, out: Path, seed: int, settings: RenderSettings, up: str = "y",
          workers: int = 1, progress=None, auto_orient: bool = False, overrides: Path | None = None) -> dict:
    """`recon-cli data build`: the user's own meshes, normalised to the canonical frame; with
    auto_orient also turned into their category's canonical pose (overrides: name -> rotation file)."""
    settings.validate()
    if up not in ("y", "z"):
        raise InputError(f"--up must be 'y' or 'z', got {up!r}")
    found = find_meshes(meshes)
    chosen = None
    if auto_orient:
        from recon.train.orient import load_overrides
        from recon.train.shapes import CATEGORIES

        unknown = sorted({category for category, _ in found} - set(CATEGORIES))
        if unknown:
            raise InputError(f"--auto-orient knows {', '.join(CATEGORIES)}; {meshes} has {', '.join(unknown)}")
        chosen = load_overrides(overrides) if overrides else {}
    elif overrides:
        raise InputError("--overrides needs --auto-orient")
    jobs = build_jobs(found, seed, up, auto_orient, chosen)
    out = prepare_output(out, settings, seed)
    categories = sorted({job.category for job in jobs})
    extra = {"source": str(Path(meshes).resolve()), "up": up, "auto_orient": auto_orient,
             "excluded": sorted(name for name, rotation in (chosen or {}).items() if rotation is None)}
    write_manifest(out, "build", settings, seed, categories, [], [], extra, complete=False)
    entries, failures = run_jobs(jobs, settings, out, workers, progress)
    if auto_orient:
        extra["low_confidence"] = [{"id": e["id"], "source": e["source"], **e["orientation"]} for e in entries
                                   if e["orientation"]["confidence"] < LOW_CONFIDENCE]
    return write_manifest(out, "build", settings, seed, categories, entries, failures, extra)


# ---------------------------------------------------------------- reading it back


def load_manifest(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{root}: not a dataset folder (no manifest.json; make one with `recon-cli data synth`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable manifest ({error})") from None
    if not manifest.get("complete", False):
        raise InputError(f"{root}: dataset is incomplete (generation was interrupted); re-run the same command to finish it")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: dataset format {manifest.get('format_version')!r}, "
                         f"this recon reads format {FORMAT_VERSION}")
    return manifest


VIEW_KEYS = ("rgb", "normals", "depth", "mask", "camera")


def _read_npz(path: Path, keys) -> dict[str, np.ndarray]:
    """The arrays `keys` of a dataset file; InputError naming the file when it is missing or damaged."""
    hint = "re-run the `recon-cli data` command that made the dataset, or remove the object from manifest.json"
    if not path.is_file():
        raise InputError(f"{path}: missing from the dataset ({hint})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys}
    except KeyError as error:
        raise InputError(f"{path}: damaged (no {error} array; {hint})") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: damaged ({first_line(error, 120)}; {hint})") from None


def load_view(root: Path, object_id: str, view: int) -> dict[str, np.ndarray]:
    return _read_npz(view_path(Path(root), object_id, view), VIEW_KEYS)


def load_voxels(root: Path, object_id: str) -> np.ndarray:
    return _read_npz(object_path(Path(root), object_id), ("voxels",))["voxels"]


def preview(root: Path, out: Path, samples: int = 6, seed: int = 0) -> tuple[Path, list[str]]:
    """`recon-cli data preview`: RGB | normals | depth | mask | voxels for a few objects per category.
    Returns (the sheet, one line per object left out: missing or damaged files, unknown category)."""
    from recon.runtime.pictures import contact_sheet, depth_image, mask_image, normals_image, save_png
    from recon.runtime.render import render_voxels

    if samples <= 0:
        raise InputError(f"--samples must be positive, got {samples}")
    from recon.train.views import usable_objects

    manifest = load_manifest(root)
    entries, skipped = usable_objects(Path(root), manifest, manifest["objects"])
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[dict]] = {}
    for entry in entries:
        by_category.setdefault(entry["category"], []).append(entry)
    per_category = max(1, samples // max(1, len(by_category)))
    rows, labels = [], []
    for category, entries in by_category.items():
        for index in rng.permutation(len(entries))[:per_category]:
            entry = entries[index]
            try:
                view = load_view(root, entry["id"], int(rng.integers(entry["views"])))
                voxels = load_voxels(root, entry["id"])
            except InputError as error:  # one damaged object: the sheet shows the others
                skipped.append(str(error))
                continue
            mask = view["mask"]
            rows.append([view["rgb"], normals_image(view["normals"], mask),
                         depth_image(view["depth"], mask), mask_image(mask), render_voxels(voxels)])
            labels.append(entry["id"])
    if not rows:
        raise InputError(f"{root}: the dataset holds no usable objects" + (f" ({skipped[0]})" if skipped else ""))
    sheet = contact_sheet(rows, labels, ["rgb", "normals", "depth", "mask", "voxels"])
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    save_png(out, sheet)
    return out, skipped


def orientation_sheets(root: Path, out: Path, per_page: int = 10) -> tuple[list[Path], list[str]]:
    """`recon-cli data preview --orientations`: every low-confidence mesh of an --auto-orient build,
    as loaded, as built, and its chosen pose then the best pose for each other up direction, each
    labelled with its rotation index: what a person reads to write an overrides file
    (mesh file name <TAB> index). Returns (pages written, one line per mesh that could not be drawn)."""
    from recon.runtime.pictures import caption, contact_sheet, save_png
    from recon.runtime.render import render_voxels
    from recon.train.orient import orient, rotate_grid

    if per_page <= 0:
        raise InputError(f"per-page must be positive, got {per_page}")
    manifest = load_manifest(root)
    if not manifest.get("auto_orient"):
        raise InputError(f"{root}: not built with --auto-orient, so it has no orientations to check")
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    categories = {entry["id"]: entry["category"] for entry in manifest["objects"]}
    rows, labels, failures = [], [], []
    for low in manifest["low_confidence"]:
        source = Path(low["source"])  # as given at build time: maybe relative to another folder
        try:
            mesh = normalize_to_unit_cube(load_mesh(Path(manifest["source"]) / source.parent.name / source.name),
                                          up=manifest["up"])
        except ReconError as error:
            failures.append(f"{source.name}: {first_line(error)}")
            continue
        grid = voxelize_solid(mesh, 32)
        chosen = low["rotation_index"]
        others = [i for i in orient(mesh, categories[low["id"]]).up_choices if i != chosen]
        poses = [caption(render_voxels(rotate_grid(grid, i)), str(i)) for i in [chosen] + others]
        rows.append([render_voxels(grid), load_view(root, low["id"], 0)["rgb"]] + poses)
        labels.append(f"{source.stem[-14:]}\nconf {low['confidence']:.2f}")  # names end distinctly
    columns = ["as loaded", "as built (view 0)", "chosen"] + ["other up"] * 5
    pages = [range(start, min(start + per_page, len(rows))) for start in range(0, len(rows), per_page)]
    written = []
    for number, page in enumerate(pages, 1):
        path = out if len(pages) == 1 else out.with_name(f"{out.stem}-{number:02d}{out.suffix}")
        save_png(path, contact_sheet([rows[i] for i in page], [labels[i] for i in page], columns, cell=112))
        written.append(path)
    return written, failures
