import numpy as np
import pytest
import trimesh

from recon.runtime.errors import InputError, MeshError, ReconError
from recon.runtime.meshio import MESH_FORMATS, MESH_WRITERS, load_mesh, normalize_to_unit_cube, save_mesh


def _mesh():
    box = trimesh.creation.box((0.4, 0.2, 0.3))
    sphere = trimesh.creation.icosphere(2, radius=0.1)
    sphere.apply_translation([0.3, 0.2, 0.0])
    return trimesh.util.concatenate([box, sphere])


@pytest.mark.parametrize("fmt", sorted(MESH_WRITERS))
def test_save_load_round_trip(tmp_path, fmt):
    mesh = _mesh()
    path = tmp_path / f"shape.{fmt}"
    save_mesh(mesh, path)
    assert path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporaries or side files
    back = load_mesh(path)
    assert isinstance(back, trimesh.Trimesh)
    assert len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.bounds, mesh.bounds, atol=1e-5)
    assert back.area == pytest.approx(mesh.area, rel=1e-5)
    assert back.volume == pytest.approx(mesh.volume, rel=1e-4)


def test_save_explicit_format_and_overwrite(tmp_path):
    path = tmp_path / "mesh.bin"
    save_mesh(_mesh(), path, fmt="ply")
    assert path.read_bytes().startswith(b"ply")
    save_mesh(trimesh.creation.box(), tmp_path / "b.obj")
    save_mesh(trimesh.creation.icosphere(1), tmp_path / "b.obj")  # replaces atomically
    assert len(load_mesh(tmp_path / "b.obj").faces) == 80


def test_save_errors(tmp_path):
    with pytest.raises(InputError, match=r"shape\.xyz.*obj, ply, stl, glb"):
        save_mesh(_mesh(), tmp_path / "shape.xyz")
    with pytest.raises(InputError, match="does not exist"):
        save_mesh(_mesh(), tmp_path / "missing" / "shape.obj")
    assert list(tmp_path.iterdir()) == []


def test_formats_table():
    assert {"obj", "off", "ply", "stl", "glb", "gltf"} <= set(MESH_FORMATS)
    assert set(MESH_WRITERS) == {"obj", "ply", "stl", "glb"}


def test_load_scene_is_concatenated(tmp_path):
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(1)])
    path = tmp_path / "scene.glb"
    path.write_bytes(scene.export(file_type="glb"))
    mesh = load_mesh(path)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == 12 + 80


def test_load_off(tmp_path):
    path = tmp_path / "tri.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    mesh = load_mesh(path)
    assert len(mesh.faces) == 1


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.obj", b"", "empty"),
        ("garbage.ply", b"\x00\x13not a ply at all" * 10, "cannot read PLY"),
        ("garbage.stl", bytes(range(50)), "cannot read STL|no faces"),
        ("garbage.glb", b"glTF" + bytes(100), "cannot read GLB"),
        ("points.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("nan.obj", b"v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 1\nf 1 2 3\nf 1 3 4\n", "NaN"),
        ("model.fbx", b"whatever", r"unknown mesh format '\.fbx'; valid: \.obj, \.off, \.ply, \.stl, \.glb"),
    ],
)
def test_load_errors_name_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MeshError, match=reason) as info:
        load_mesh(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert isinstance(info.value, ReconError)


def test_load_missing(tmp_path):
    with pytest.raises(MeshError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")


def test_normalize_to_unit_cube():
    mesh = trimesh.creation.box((2.0, 4.0, 1.0))
    mesh.apply_translation([5, -3, 2])
    unit = normalize_to_unit_cube(mesh)
    np.testing.assert_allclose(unit.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]])
    assert mesh.bounds[0][0] == pytest.approx(4.0)  # the input is left alone
    # z-up: the tall axis (z) becomes y; (x, y, z) -> (x, z, -y).
    zup = trimesh.creation.box((1.0, 2.0, 4.0))
    marker = trimesh.creation.box((0.1, 0.1, 0.1))
    marker.apply_translation([0, 1.5, 0])  # at +y in the z-up frame
    yup = normalize_to_unit_cube(trimesh.util.concatenate([zup, marker]), up="z")
    extents = yup.extents
    assert extents[1] == pytest.approx(1.0) and extents[1] > extents[2] > extents[0]
    assert yup.vertices[-8:, 2].min() == pytest.approx(yup.bounds[0][2])  # the marker at +y went to -z
    np.testing.assert_allclose((yup.bounds[0] + yup.bounds[1]) / 2, 0, atol=1e-12)
    with pytest.raises(InputError, match="up"):
        normalize_to_unit_cube(zup, up="x")
