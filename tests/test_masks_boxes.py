"""Masks and boxes from other tools (recon.runtime.framing): the API, the boxes-file formats and `recon-cli infer`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_runner import assert_one_line_error, run_cli
from recon.runtime.errors import InputError
from recon.runtime.framing import ObjectBox, load_mask, read_boxes
from recon.runtime.pipeline import Reconstructor

OBJECT = (40, 70, 150, 190)  # top, left, bottom, right of the object in a 200 x 260 picture


def scene(seed=0, height=200, width=260):
    """(rgb on a textured background, the object's mask): an object that is not the whole picture."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), bool)
    top, left, bottom, right = OBJECT
    mask[top:bottom, left:right] = True
    mask[top:top + 30, left:left + 40] = False  # not a rectangle: the mask's own shape must be used
    rgb[mask] = rng.integers(60, 120, (int(mask.sum()), 3))
    return rgb, mask


def with_alpha(rgb, mask):
    return np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])


def xyxy(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


@pytest.fixture(scope="module")
def reconstruct(model_dir):
    with Reconstructor(model_dir, device="cpu", threads=2, batch=2) as reconstructor:
        yield reconstructor


def assert_same(a, b):
    assert a.ok and b.ok, (a.error, b.error)
    assert a.box == pytest.approx(b.box)
    assert np.array_equal(a.image, b.image)
    for key in ("normals", "depth", "silhouette"):
        np.testing.assert_allclose(a.sketch[key], b.sketch[key], atol=1e-5)
    np.testing.assert_allclose(a.voxels, b.voxels, atol=1e-5)


@pytest.mark.parametrize("form", ["array", "png", "npy", "folder"])
def test_a_mask_gives_what_the_same_alpha_gives(reconstruct, tmp_path, form):
    rgb, mask = scene()
    alpha = reconstruct(with_alpha(rgb, mask))
    if form == "array":
        given = mask
    elif form == "png":
        given = tmp_path / "m.png"
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(given)
    elif form == "npy":
        given = tmp_path / "m.npy"
        np.save(given, mask)
    else:  # a folder: matched by the picture's stem, <stem>_mask.png too
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp_path / "photo_mask.png")
        given = tmp_path
    masked = reconstruct.batch([rgb], names=["shots/photo.jpg"], mask=given)[0]
    assert masked.framing == "mask" and alpha.framing == "alpha"
    assert_same(masked, alpha)


def test_a_box_frames_as_the_same_alpha_does(reconstruct):
    rgb, mask = scene(seed=3)
    white = np.where(mask[..., None], rgb, 255).astype(np.uint8)
    alpha = reconstruct(with_alpha(rgb, mask))
    boxed = reconstruct(white, box=xyxy(mask))
    assert boxed.framing == "box" and boxed.box == pytest.approx(alpha.box)
    assert np.array_equal(boxed.image, alpha.image)  # same crop: the same sketch-net input
    np.testing.assert_allclose(boxed.sketch["normals"], alpha.sketch["normals"], atol=1e-5)
    # the box gives no silhouette: the sketch net's own is used, not a rectangle
    assert not np.array_equal(boxed.sketch["silhouette"], alpha.sketch["silhouette"])
    same = reconstruct(white, box="%d,%d,%d,%d" % xyxy(mask))  # the CLI's string form
    assert same.box == pytest.approx(alpha.box)


def test_one_bad_mask_or_box_fails_alone(reconstruct, tmp_path):
    rgb, mask = scene(seed=1)
    np.save(tmp_path / "good.npy", mask)
    np.save(tmp_path / "small.npy", mask[:100])
    results = reconstruct.batch([rgb, rgb, rgb], names=["a/good.png", "b/small.png", "c/nomask.png"], mask=tmp_path)
    assert [r.status for r in results] == ["ok", "failed", "failed"]
    assert results[1].error == "b/small.png: the mask is 260x100 pixels, the picture 260x200"
    assert "c/nomask.png: no mask for this picture in" in results[2].error and "'nomask'" in results[2].error

    boxes = {"in": (10, 10, 100, 90), "out": (300, 10, 400, 90), "empty": (50, 50, 50, 90)}
    with pytest.raises(InputError, match="box for empty: box 50,50,50,90 is empty"):
        reconstruct.batch([rgb], names=["empty"], box=boxes)
    del boxes["empty"]
    results = reconstruct.batch([rgb, rgb], names=["in", "out"], box=boxes)
    assert results[0].ok and results[0].framing == "box"
    assert results[1].status == "failed"
    assert results[1].error == "out: box 300,10,400,90 lies outside the 260x200 picture"


def test_mask_and_box_arguments_are_checked_for_the_whole_call(reconstruct):
    rgb, mask = scene()
    with pytest.raises(InputError, match="give one of them"):
        reconstruct(rgb, mask=mask, box=(1, 2, 3, 4))
    with pytest.raises(InputError, match="mask: 1 entries for 2 pictures"):
        reconstruct.batch([rgb, rgb], mask=[mask])
    with pytest.raises(InputError, match="no such boxes file"):
        reconstruct(rgb, box="detections.csv")
    results = reconstruct.batch([rgb, rgb], mask=[mask, None])  # None: that picture frames itself
    assert [r.framing for r in results] == ["mask", "auto"]


def test_stream_frames_share_one_box(reconstruct):
    rgb, mask = scene(seed=2)
    with reconstruct.stream([rgb, rgb], box=xyxy(mask)) as stream:
        frames = list(stream)
    assert len(frames) == 2 and all(f.result.framing == "box" and f.ok for f in frames)
    assert frames[0].result.box == pytest.approx(reconstruct(rgb, box=xyxy(mask)).box)


# ---------------------------------------------------------------- boxes files


def test_boxes_file_formats(tmp_path):
    # ultralytics: pandas Results.to_csv() (index column, box as a dict repr) with an image column added
    (tmp_path / "pandas.csv").write_text(
        ",image,name,class,confidence,box\n"
        "0,a.jpg,chair,56,0.61,\"{'x1': 1.5, 'y1': 2.0, 'x2': 30.0, 'y2': 40.0}\"\n"
        "1,a.jpg,chair,56,0.93,\"{'x1': 5.0, 'y1': 6.0, 'x2': 50.0, 'y2': 60.0}\"\n"
        "2,b.jpg,car,2,0.5,\"{'x1': 0.0, 'y1': 0.0, 'x2': 9.0, 'y2': 9.0}\"\n")
    (tmp_path / "corners.csv").write_text("file,xmin,ymin,xmax,ymax\na.jpg,5,6,50,60\nb.jpg,0,0,9,9\n")
    summary = [{"name": "chair", "class": 56, "confidence": 0.93, "box": {"x1": 5, "y1": 6, "x2": 50, "y2": 60}}]
    (tmp_path / "summary.json").write_text(json.dumps({"a.jpg": summary, "b": [0, 0, 9, 9]}))
    (tmp_path / "records.jsonl").write_text(
        json.dumps({"image": "a.jpg", "xyxy": [5, 6, 50, 60], "confidence": 0.9}) + "\n"
        + json.dumps({"image": "b.jpg", "x1": 0, "y1": 0, "x2": 9, "y2": 9}) + "\n")
    for name in ("pandas.csv", "corners.csv", "summary.json", "records.jsonl"):
        boxes = read_boxes(tmp_path / name)
        assert tuple(boxes["a.jpg"][:4]) == (5, 6, 50, 60), name  # the most confident of a.jpg's two
        assert tuple(next(v for k, v in boxes.items() if k.startswith("b"))[:4]) == (0, 0, 9, 9), name

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("56 0.5 0.25 0.2 0.1 0.4\n56 0.5 0.5 0.5 0.5 0.8\n")
    box = read_boxes(labels)["a"]
    assert box.normalized and tuple(box.in_pixels(200, 100)[:4]) == pytest.approx((25, 50, 75, 150))


@pytest.mark.parametrize("text, message", [
    ("image,x1,y1,x2,y2\na.jpg,1,2,zz,4\n", "line 2: expected a box x0,y0,x1,y1"),
    ("image,x1,y1,x2,y2\na.jpg,10,2,3,4\n", "line 2: box 10,2,3,4 is empty"),
    ("name,x1,y1,x2,y2\nchair,1,2,3,4\n", "names no picture column"),
    ("image,width\na.jpg,3\n", "line 2: no box"),
    ("{\"a.jpg\": [1, 2, 3", "not JSON or JSON Lines"),
    ("image,x1,y1,x2,y2\n", "no boxes in this file"),
    ("", "the boxes file is empty"),
])
def test_bad_boxes_files(tmp_path, text, message):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_boxes(path)


def test_mask_files_and_arrays(tmp_path):
    gray = np.zeros((20, 30), np.uint8)
    gray[5:15, 10:20] = 200
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray((gray > 0).astype(np.uint8)).save(tmp_path / "ones.png")  # 0/1 masks, as some tools save
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:15, 10:20, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    for name in ("gray.png", "ones.png", "alpha.png"):
        assert np.array_equal(load_mask(tmp_path / name, "x"), gray > 0), name
    assert np.array_equal(load_mask(gray / 255.0, "x"), gray > 0)
    (tmp_path / "junk.png").write_text("not a picture")
    with pytest.raises(InputError, match="junk.png: not a picture"):
        load_mask(tmp_path / "junk.png", "photo.jpg")
    with pytest.raises(InputError, match="expected an \\(H, W\\) mask"):
        load_mask(np.zeros((4, 4, 3)), "photo.jpg")
    assert ObjectBox(1, 2, 3, 4).in_pixels(10, 10) == ObjectBox(1, 2, 3, 4)


# ---------------------------------------------------------------- recon-cli infer


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    masks = folder / "masks"
    masks.mkdir()
    for index, name in enumerate(("one", "two", "three")):
        rgb, mask = scene(seed=index)
        Image.fromarray(rgb).save(folder / f"{name}.png")
        if name != "three":
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(masks / f"{name}.png")
    return folder


def infer(model_dir, out, *args):
    return run_cli("infer", *args, "--model", model_dir, "--out", out, "--device", "cpu", "--threads", "2",
                   "--no-preview")


def test_cli_mask_folder_with_a_missing_mask(model_dir, photos, tmp_path):
    done = infer(model_dir, tmp_path, photos / "one.png", photos / "two.png", photos / "three.png",
                 "--mask", photos / "masks")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    entries = {e["input"].rsplit("/", 1)[-1]: e for e in json.loads((tmp_path / "summary.json").read_text())["results"]}
    assert entries["one.png"]["framing"] == entries["two.png"]["framing"] == "mask"
    assert (tmp_path / "one.obj").is_file() and (tmp_path / "two.obj").is_file()
    assert entries["three.png"]["status"] == "failed" and "no mask for this picture" in entries["three.png"]["error"]
    assert "no mask for this picture" in done.stdout + done.stderr  # one line per result


def test_cli_box_and_boxes(model_dir, photos, tmp_path):
    box = "%d,%d,%d,%d" % xyxy(scene(seed=0)[1])
    done = infer(model_dir, tmp_path / "one", photos / "one.png", "--box", box)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["results"][0]["framing"] == "box"

    table = tmp_path / "boxes.csv"
    table.write_text(f"image,x1,y1,x2,y2\none.png,{box}\ntwo.png,300,10,400,90\n")
    done = infer(model_dir, tmp_path / "many", photos / "one.png", photos / "two.png", photos / "three.png",
                 "--boxes", table)
    assert done.returncode == 1, done.stderr
    statuses = [e["status"] for e in json.loads((tmp_path / "many" / "summary.json").read_text())["results"]]
    assert statuses == ["ok", "failed", "failed"]
    lines = done.stdout + done.stderr
    assert "lies outside the 260x200 picture" in lines and "three.png: no box for this picture" in lines


@pytest.mark.parametrize("args, fragments", [
    (("--box", "1,2,3"), ("--box: expected x0,y0,x1,y1",)),
    (("--boxes", "BAD"), ("line 2: expected a box",)),
    (("--mask", "missing"), ("--mask", "no such file or folder")),
    (("--mask", "MASKS", "--box", "1,2,3,4"), ("--mask and --box: give one of them",)),
])
def test_cli_usage_errors(model_dir, photos, tmp_path, args, fragments):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x1,y1,x2,y2\none.png,1,2,three,4\n")
    args = [str(bad) if a == "BAD" else str(photos / "masks") if a == "MASKS" else a for a in args]
    done = infer(model_dir, tmp_path / "out", photos / "one.png", *args)
    assert done.returncode == 2
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "out" / "summary.json").exists()
