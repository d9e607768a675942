"""Fault injection, data side: damaged datasets (lost and corrupt files, unknown categories, ids that
are paths), clashing mesh names, argument gaps, a runtime-only install, resuming on other data. Checked
as in tests/test_faults.py: exit code, one `error:` line or a counted skip, no traceback, nothing left."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cli_runner import run_cli
from fault_tools import cutout, killed_writer, one_error, run_all, temp_files
from recon.runtime.errors import InputError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """3 chairs and 3 cars (2 views, 64 px, 32^3): 2 training objects of each category."""
    from recon.train.data import RenderSettings, synth

    out = tmp_path_factory.mktemp("fault_data") / "data"
    synth(out, objects=3, categories=["chair", "car"], seed=3, settings=RenderSettings(views=2, image_size=64,
                                                                                         voxel_res=32))
    return out


def test_damaged_dataset_skips_lost_objects_and_stops_cleanly_on_a_damaged_file(dataset, model_dir, tmp_path):
    from recon.train.data import object_path, view_path

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    train = [entry for entry in manifest["objects"] if entry["split"] == "train"]
    view_path(data, train[0]["id"], 1).unlink()  # a view deleted
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(view_path(data, train[1]["id"], 0), outside / "x_00.npz")  # readable, were ids paths
    manifest["objects"] += [{"id": "boat_00000", "category": "boat", "split": "train", "views": 2},
                            {"id": "../../outside/x", "category": "chair", "split": "train", "views": 1}]
    (data / "manifest.json").write_text(json.dumps(manifest))
    common = ("--model", model_dir, "--split", "train", "--trials", "1")
    done = run_cli("eval", "--data", data, *common, "--json", tmp_path / "e.json", timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "skipped 3 object(s)" in " ".join(done.stderr.split()) and "not a plain file name" in done.stderr
    assert json.loads((tmp_path / "e.json").read_text())["objects"] == len(train) - 1

    damaged = object_path(data, train[2]["id"])
    damaged.write_bytes(damaged.read_bytes()[:100])  # a voxel file cut short
    evaluated, trained, previewed = run_all(
        ("eval", "--data", data, *common, "--json", tmp_path / "e2.json"),
        ("train", "sketch", "--data", data, "--out", tmp_path / "run", "--preset", "edge", "--epochs", "1",
         "--batch", "2", "--workers", "1"),
        ("data", "preview", data, "--out", tmp_path / "sheet.png"))
    for done in (evaluated, trained):  # trained: the error came through a DataLoader worker
        one_error(done, str(damaged), "damaged")
    assert not (tmp_path / "e2.json").exists()
    assert previewed.returncode == 0 and (tmp_path / "sheet.png").is_file(), previewed.stderr
    assert "skipped 4 object(s)" in " ".join(previewed.stderr.split())


def test_data_build_refuses_two_meshes_of_one_name(tmp_path):
    import trimesh

    chairs = tmp_path / "meshes" / "chair"
    chairs.mkdir(parents=True)
    for suffix in ("obj", "ply"):
        trimesh.creation.box().export(chairs / f"x.{suffix}")
    done = run_cli("data", "build", "--meshes", tmp_path / "meshes", "--out", tmp_path / "out", timeout=120)
    one_error(done, "x.obj and", "x.ply", "rename one")
    assert not (tmp_path / "out").exists()


def test_argument_gaps_are_refused_before_any_work(dataset, model_dir, tmp_path):
    run, picture = tmp_path / "run", cutout(tmp_path / "p.png")
    train = ("train", "sketch", "--data", dataset, "--out", run)
    evaluate = ("eval", "--data", dataset, "--model", model_dir)
    cases = [
        (train + ("--lr=-1",), "--lr -1.0: must be a finite number > 0"),
        (train + ("--workers=-1",), "--workers -1"),
        (("train", "gan", "--data", dataset, "--out", run, "--critic-steps", "0"), "--critic-steps 0"),
        (train + ("--max-objects", "0"), "--max-objects 0"),
        (evaluate + ("--batch", "0"), "--batch 0"),
        (evaluate + ("--threshold", "2"), "--threshold 2.0"),
        (evaluate + ("--max-objects", "0"), "--max-objects 0"),
        (("data", "synth", "--out", tmp_path / "synth", "--categories", ","), "--categories"),
        (("infer", picture, "--model", model_dir, "--out", tmp_path / "out", "--height-m", "inf"), "--height-m inf"),
    ]
    for done, (args, fragment) in zip(run_all(*(args for args, _ in cases)), cases):
        one_error(done, fragment)
    assert not run.exists() and not (tmp_path / "synth").exists() and not (tmp_path / "out").exists()


def test_runtime_only_install_names_the_extra_and_evaluates_a_model_folder(dataset, model_dir, tmp_path):
    shadow = tmp_path / "no-torch" / "torch"
    shadow.mkdir(parents=True)  # what `pip install .` gives: no torch importable
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "run").mkdir()
    trained, exported, evaluated = run_all(
        ("train", "sketch", "--data", dataset, "--out", tmp_path / "r"),
        ("export", "--weights", tmp_path / "run", "--out", tmp_path / "model"),
        ("eval", "--data", dataset, "--model", model_dir, "--trials", "1", "--split", "train"), env=env)
    one_error(trained, "pip install 'recon[train]'")
    one_error(exported, "pip install 'recon[export]'")
    assert evaluated.returncode == 0 and "voxel IoU" in evaluated.stdout + evaluated.stderr, evaluated.stderr


def test_resume_with_other_data_is_refused_unless_asked_and_keeps_the_history(dataset, tmp_path):
    from recon.train.checkpoint import load_checkpoint
    from recon.train.data import RenderSettings, synth
    from recon.train.loop import TrainConfig, train

    other = tmp_path / "other"
    synth(other, objects=2, categories=["chair"], seed=9, settings=RenderSettings(views=2, image_size=64, voxel_res=32))
    run = tmp_path / "run"
    base = dict(stage="sketch", out=str(run), preset="edge", batch=2, max_objects=1)
    train(TrainConfig(data=str(dataset), epochs=1, **base))
    first = load_checkpoint(run / "sketch.pt")["data_fingerprint"]
    killed_writer(run, "sketch.pt")  # a checkpoint write killed halfway: 100 kB left behind
    done = run_cli("train", "sketch", "--data", other, "--out", run, "--preset", "edge", "--epochs", "2",
                   "--batch", "2", "--max-objects", "1", "--resume", timeout=300)
    one_error(done, "data (fingerprint", "--allow-new-data")
    assert temp_files(run) == []  # the refused run still cleaned its run folder first
    with pytest.raises(InputError, match="--batch"):
        train(TrainConfig(data=str(dataset), epochs=2, **{**base, "batch": 3}, resume=True))
    train(TrainConfig(data=str(other), epochs=2, **base, resume=True, allow_new_data=True))
    state = load_checkpoint(run / "sketch.pt")
    assert state["epoch"] == 1 and state["data_fingerprint"] != first
    assert state["history"][0]["data_fingerprint"] == first and state["history"][0]["until_epoch"] == 1
