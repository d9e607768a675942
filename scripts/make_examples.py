"""Example inputs shipped in examples/: held-out test renders of each category (procedural
`<category>_test.png`, real CAD meshes `<category>_real.png`), photograph-like pictures of
objects no dataset of ours contains, and held-out test renders pasted into cluttered scenes
(`<category>_clutter.jpg`, recon.train.clutter). Each comes with its ground-truth voxels (`<name>.voxels.npz`,
32^3, the shipped model's resolution) for the shipped-model test.

    python scripts/make_examples.py --data data/synth-v1 --real data/corpus-v1 --out examples
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from recon.runtime.camera import Camera
from recon.runtime.fileio import save_npz_atomic, write_bytes_atomic
from recon.runtime.pictures import save_png
from recon.runtime.render import render_view
from recon.runtime.voxels import downsample, voxelize_solid
from recon.train.data import load_manifest, load_view, load_voxels, part_colors
from recon.train.shapes import make_shape

EXAMPLE_RES = 32
UNSEEN_SEED = 987_654_321  # synth seeds are seed * 1_000_003 + index: this one is in no dataset of ours


def held_out_renders(data: Path, out: Path, suffix: str) -> None:
    """The first test object of each category, on its first view with a plain background."""
    manifest = load_manifest(data)
    for category in manifest["categories"]:
        for entry in (e for e in manifest["objects"] if e["category"] == category and e["split"] == "test"):
            plain = [v for v in range(entry["views"]) if flat_background(load_view(data, entry["id"], v))]
            if plain:
                view = load_view(data, entry["id"], plain[0])
                save_png(out / f"{category}_{suffix}.png", view["rgb"])
                save_npz_atomic(out / f"{category}_{suffix}.voxels.npz",
                                voxels=downsample(load_voxels(data, entry["id"]), EXAMPLE_RES))
                print(f"{category}_{suffix}.png <- {entry['id']} view {plain[0]}")
                break


def cluttered_renders(data: Path, out: Path, seed: int = 3) -> None:
    """The second test object of each category, pasted into a cluttered room beside another one."""
    from recon.train.clutter import compose_scene

    manifest = load_manifest(data)
    rng = np.random.default_rng(seed)
    for category in manifest["categories"]:
        tests = [e for e in manifest["objects"] if e["category"] == category and e["split"] == "test"]
        entry, other = tests[1], tests[2]
        view = load_view(data, entry["id"], 1)
        scene = compose_scene(view["rgb"], view["mask"], rng, size=320, fill_range=(0.45, 0.6),
                              others=[load_view(data, other["id"], 0)])
        buffer = io.BytesIO()
        Image.fromarray(scene["rgb"]).save(buffer, format="JPEG", quality=90)
        write_bytes_atomic(out / f"{category}_clutter.jpg", buffer.getvalue())
        save_npz_atomic(out / f"{category}_clutter.voxels.npz", voxels=downsample(load_voxels(data, entry["id"]),
                                                                                  EXAMPLE_RES))
        print(f"{category}_clutter.jpg <- {entry['id']} view 1 in a cluttered scene")


def flat_background(view: dict) -> bool:
    background = view["rgb"][~view["mask"]]
    return background.std(axis=0).max() < 1


def studio_photo(category: str, seed: int, size: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A photograph-like picture: soft studio sweep, warm key light, lens blur and sensor noise."""
    rng = np.random.default_rng(seed)
    shape = make_shape(category, seed)
    rows = np.linspace(0, 1, size)[:, None, None]
    sweep = (np.array([0.93, 0.92, 0.9]) - 0.25 * rows ** 2 * np.array([1.0, 1.0, 0.95])) * np.ones((size, size, 3))
    background = (sweep * 255).astype(np.uint8)
    colors = part_colors(rng, int(shape.part_ids.max()) + 1)[shape.part_ids]
    camera = Camera(azimuth=215.0, elevation=18.0)
    light = np.array([0.5, 0.8, -0.3]) / np.linalg.norm([0.5, 0.8, -0.3])
    rendered = render_view(shape.mesh, camera, size, face_colors=colors, light_dir=light, ambient=0.3,
                           background=background)
    image = Image.fromarray(rendered["rgb"]).filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 3.0, (size, size, 3))
    voxels = downsample(voxelize_solid(shape.mesh, 64), EXAMPLE_RES)
    return noisy.clip(0, 255).astype(np.uint8), voxels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synth-v1"))
    parser.add_argument("--real", type=Path, default=Path("data/corpus-v1"))
    parser.add_argument("--out", type=Path, default=Path("examples"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    held_out_renders(args.data, args.out, "test")
    held_out_renders(args.real, args.out, "real")
    cluttered_renders(args.data, args.out)
    for category in ("chair", "car"):
        photo, voxels = studio_photo(category, UNSEEN_SEED)
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG", quality=88)
        write_bytes_atomic(args.out / f"{category}_photo.jpg", buffer.getvalue())
        save_npz_atomic(args.out / f"{category}_photo.voxels.npz", voxels=voxels)
        print(f"{category}_photo.jpg <- unseen seed {UNSEEN_SEED}")


if __name__ == "__main__":
    main()
