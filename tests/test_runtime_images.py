"""Picture loading: formats, modes, EXIF orientation, alpha as mask, and one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import noise_bytes
from recon.runtime.errors import InputError
from recon.runtime.images import MAX_PIXELS, load_image, parse_color


def picture(height=40, width=60) -> np.ndarray:
    """An RGB test picture with a distinct colour in each quadrant (orientation shows)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = (255, 0, 0)
    rgb[: height // 2, width // 2:] = (0, 255, 0)
    rgb[height // 2:, : width // 2] = (0, 0, 255)
    rgb[height // 2:, width // 2:] = (255, 255, 0)
    return rgb


@pytest.mark.parametrize("suffix, lossless", [(".png", True), (".bmp", True), (".tif", True), (".jpg", False),
                                              (".webp", False)])
def test_formats(tmp_path, suffix, lossless):
    path = tmp_path / f"p{suffix}"
    Image.fromarray(picture()).save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (40, 60, 3) and loaded.rgb.dtype == np.uint8 and loaded.mask is None
    assert loaded.name == str(path)
    tolerance = 0 if lossless else 40
    assert np.abs(loaded.rgb[5:15, 5:25].astype(int) - (255, 0, 0)).max() <= tolerance


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise (a portrait phone photo)
    Image.fromarray(picture(40, 60)).save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.rgb.shape == (60, 40, 3)
    # Rotated clockwise: the stored bottom-left (blue) quadrant is now top-left.
    assert np.abs(loaded.rgb[5, 5].astype(int) - (0, 0, 255)).max() < 40


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "LA", "I;16", "I", "F"])
def test_modes_become_8_bit_rgb(tmp_path, mode):
    gray = np.tile(np.linspace(0, 255, 60).astype(np.uint8), (40, 1))
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)  # uint16 -> mode I;16
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(gray.astype(np.float32) / 255)
    else:
        image = Image.fromarray(picture()).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".tif" if mode in ("I", "F") else ".png"
    path = tmp_path / f"m{suffix}"
    image.save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (40, 60, 3) and loaded.rgb.dtype == np.uint8
    if mode in ("I;16", "I", "F"):  # scaled to 8 bits, not clipped at 255
        assert abs(int(loaded.rgb[0, -1, 0]) - 255) <= 1 and abs(int(loaded.rgb[0, 30, 0]) - int(gray[0, 30])) <= 1


def test_alpha_is_the_mask_and_composites_on_the_background(tmp_path):
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[5:20, 10:30, 3] = 255
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    loaded = load_image(path)
    assert loaded.mask.sum() == 15 * 20 and loaded.mask[5:20, 10:30].all()
    assert (loaded.rgb[0, 0] == 255).all() and (loaded.rgb[10, 15] == (10, 20, 30)).all()
    black = load_image(path, background="black")
    assert (black.rgb[0, 0] == 0).all()
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert load_image(opaque).mask is None  # a fully opaque alpha says nothing about the object


def test_palette_transparency_gives_a_mask(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15] = (200, 0, 0, 255)
    path = tmp_path / "palette.png"
    Image.fromarray(rgba).convert("P").save(path, transparency=0)
    loaded = load_image(path)
    assert loaded.mask is not None and loaded.mask[10, 10] and not loaded.mask[0, 0]


def test_arrays():
    rgb = picture()
    assert np.array_equal(load_image(rgb).rgb, rgb)
    assert np.array_equal(load_image(rgb[..., ::-1].copy(), bgr=True).rgb, rgb)
    gray = load_image(rgb[..., 0])
    assert gray.rgb.shape == (40, 60, 3) and np.array_equal(gray.rgb[..., 1], rgb[..., 0])
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255).rgb, rgb)
    bgra = np.dstack([rgb[..., ::-1], np.full((40, 60), 255, np.uint8)])
    bgra[:10, :, 3] = 0
    loaded = load_image(bgra, bgr=True)
    assert np.array_equal(loaded.rgb[10:], rgb[10:]) and loaded.mask[10:].all() and not loaded.mask[:10].any()
    assert load_image(rgb, name="frame 7").name == "frame 7"


@pytest.mark.parametrize("array, message", [
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.int32), "dtype|uint8"),
    (np.full((10, 10, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((4, 40, 3), np.uint8), "too small"),
])
def test_bad_arrays(array, message):
    with pytest.raises(InputError, match=message):
        load_image(array)


def test_unreadable_files_name_the_file(tmp_path):
    cases = {}
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty"
    (tmp_path / "text.png").write_text("this is not a picture")
    cases["text.png"] = "not a picture"
    png, jpeg = noise_bytes("PNG"), noise_bytes("JPEG")
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    cases["cut.png"] = "truncated"
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cases["cut.jpg"] = "truncated"
    (tmp_path / "header.png").write_bytes(png[:30])  # signature and part of the header only
    cases["header.png"] = "cannot|not a picture"
    cases["missing.png"] = "no such file"
    (tmp_path / "folder.png").mkdir()
    cases["folder.png"] = "folder"
    for name, reason in cases.items():
        with pytest.raises(InputError, match=reason) as error:
            load_image(tmp_path / name)
        assert str(error.value).startswith(str(tmp_path / name) + ":"), str(error.value)
        assert "\n" not in str(error.value)


def test_huge_pictures_are_refused_before_decoding(tmp_path):
    """A 1-bit PNG claiming 56 megapixels: a few kB on disk, refused from its header."""
    path = tmp_path / "bomb.png"
    Image.new("1", (8000, 7000)).save(path)
    assert path.stat().st_size < 100_000 and 8000 * 7000 > MAX_PIXELS
    with pytest.raises(InputError, match="megapixel") as error:
        load_image(path)
    assert str(error.value).startswith(str(path))
    with pytest.raises(InputError, match="megapixel"):
        load_image(np.zeros((8000, 7000), np.uint8))


def test_parse_color():
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("#102030") == (16, 32, 48)
    assert parse_color("[1, 2, 3]") == (1, 2, 3)
    assert parse_color((4, 5, 6)) == (4, 5, 6)
    for bad in ("mauve", "[1, 2]", (300, 0, 0)):
        with pytest.raises(InputError, match="background"):
            parse_color(bad)
