"""The offline 3D viewer: `recon-cli infer` writes OUT/index.html, it needs no network, and in a real
headless Chromium opened from disk it draws the mesh in the photo's colours (grey with --no-color)."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from browser import browser, canvas_pixels, chromaticity, object_pixels, open_page  # noqa: F401 (fixture)
from cli_runner import run_cli
from recon.runtime.viewer import ASSETS, gallery_html

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PICTURES = ("chair_test.png", "car_photo.jpg")
GREY = np.full(3, 1 / 3)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("infer")
    done = run_cli("infer", *(EXAMPLES / name for name in PICTURES), "--out", out, "--format", "glb,ply")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def results():
    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(threads=1) as reconstruct:
        yield {color: reconstruct(str(EXAMPLES / PICTURES[0]), color=color) for color in (True, False)}


def page_data(page: str) -> dict:
    found = re.search(r'<script id="recon-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def glb_json(data: bytes) -> dict:
    assert data[:4] == b"glTF"
    length = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20:20 + length])


def test_vendored_library_is_pinned_with_its_licence():
    assert "three@0.187.0" in (ASSETS / "three.VERSION").read_text()
    assert "MIT License" in (ASSETS / "three.LICENSE").read_text()
    bundle = (ASSETS / "three.min.js").read_text()
    assert "var RECON3D=" in bundle and len(bundle) > 100_000  # the library itself, not a link to it


def test_infer_writes_a_gallery_of_every_picture(gallery):
    page = (gallery / "index.html").read_text()
    # Self-contained: no script, style or link fetched from anywhere.
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page)
    data = page_data(page)
    assert [item["name"] for item in data["items"]] == list(PICTURES)
    for item, name in zip(data["items"], PICTURES):
        stem = Path(name).stem
        assert item["status"] == "ok" and item["preview"] == f"{stem}.preview.png"
        assert item["files"] == {"glb": f"{stem}.glb", "ply": f"{stem}.ply"}
        assert (gallery / item["preview"]).is_file()
        embedded = base64.b64decode(item["glb"])
        assert embedded == (gallery / f"{stem}.glb").read_bytes()  # the same mesh as the file beside it
        assert "COLOR_0" in json.dumps(glb_json(embedded)["meshes"])


def test_no_color_gives_grey_meshes(results):
    data = page_data(gallery_html([results[False]]))
    assert "COLOR_0" not in json.dumps(glb_json(base64.b64decode(data["items"][0]["glb"]))["meshes"])
    assert data["items"][0]["view"] is None


def test_gallery_from_disk_draws_the_coloured_mesh(browser, gallery):  # noqa: F811
    page = open_page(browser, (gallery / "index.html").as_uri(), offline=True)
    pixels = canvas_pixels(page, "gallery")
    assert page.errors == [] and page.blocked == []
    drawn = object_pixels(pixels)
    assert len(drawn) > 0.02 * pixels.shape[0] * pixels.shape[1], "the canvas is blank"
    item = page_data((gallery / "index.html").read_text())["items"][0]
    from recon.runtime.meshio import load_mesh

    colors = np.asarray(load_mesh(gallery / item["files"]["glb"]).visual.vertex_colors)[:, :3]
    shown, painted = chromaticity(drawn), chromaticity(colors)
    # The canvas has the mesh's hue, not the grey of an uncoloured mesh.
    assert np.abs(shown - painted).sum() < np.abs(shown - GREY).sum(), (shown, painted)
    page.close()


def test_grey_mesh_draws_grey(browser, results, tmp_path):  # noqa: F811
    path = tmp_path / "grey.html"
    path.write_text(gallery_html([results[False]]))
    page = open_page(browser, path.as_uri(), offline=True)
    shown = chromaticity(object_pixels(canvas_pixels(page)))
    assert np.abs(shown - GREY).max() < 0.02, shown
    page.close()


def test_notebook_view_runs_in_its_iframe(browser, results):  # noqa: F811
    html = results[True]._repr_html_()
    assert html.startswith("<iframe srcdoc=")
    page = browser.new_page()
    page.set_content(html)
    frame = page.frame_locator("iframe")
    frame.locator("canvas.recon-canvas[data-loaded=true]").wait_for(timeout=60_000)
    page.close()
