"""Contact sheets of a dataset folder: `recon-cli data preview` and its --orientations pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError, ReconError, first_line
from recon.runtime.meshio import load_mesh, normalize_to_unit_cube
from recon.runtime.voxels import voxelize_solid
from recon.train.data_files import load_manifest, load_view, load_voxels


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
