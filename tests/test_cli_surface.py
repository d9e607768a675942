"""What every command shares, as a user sees it: usage errors as one `error:` line, `--version`, help
without type labels, results on stdout and progress on stderr, user text printed literally (square
brackets included), other libraries' warnings kept out, default outputs numbered under runs/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cli_runner import assert_one_line_error, run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def only_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not set("╭╰│") & set(result.stderr), result.stderr  # no boxed panel
    return lines[0]


def test_version():
    import recon

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"recon {recon.__version__}", result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["infer", "--bogus"], "No such option: --bogus"),
    (["infer"], "Missing argument 'IMAGES'"),
    (["infer", "x.png", "--batch", "abc"], "'--batch'"),
    (["train", "sketch", "--data", "d", "--out", "r", "--alpha", "1"], "No such option: --alpha"),
    (["export", "--weights", "w"], "Missing option '--out'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2
    line = only_error_line(result)
    assert fragment in line and "--help" in line, line


def _commands(command, path=()):
    """(path, click command) of every command and group of the app."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_has_value_names_not_type_labels():
    import typer

    from recon.cli.main import app

    paths = [path for path, _ in _commands(typer.main.get_command(app))]
    assert ("train", "gan") in paths and ("data", "preview") in paths
    for path in paths:
        result = run_cli(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        labels = re.findall(r"<(?:bool|int|float|str|text|path|list\[[^\]]*\])>", result.stdout, re.I)
        assert not labels, (path, labels)  # (<stem> in a help sentence is fine)


def test_each_train_stage_lists_only_its_own_options():
    def options(stage):
        return set(re.findall(r"--[a-z][a-z-]+", run_cli("train", stage, "--help").stdout))

    sketch, voxel, gan, joint = (options(stage) for stage in ("sketch", "voxel", "gan", "joint"))
    assert {"--data", "--out", "--epochs", "--resume"} <= sketch & voxel & gan & joint
    assert "--critic-steps" in gan and not {"--alpha", "--sketch-mix"} & gan
    assert {"--alpha", "--sketch-mix"} <= joint and "--critic-steps" not in joint
    assert "--sketch-mix" in voxel and not {"--alpha", "--critic-steps", "--sketch-mix"} & sketch


def test_results_on_stdout_progress_on_stderr_brackets_kept(tmp_path):
    pictures = tmp_path / "in[1]"
    pictures.mkdir()
    for name in ("good[red].png", "b.png", "c.gif"):  # a GIF in a folder counts, as one named does
        from PIL import Image

        Image.open(EXAMPLES / "car_test.png").convert("RGB").save(pictures / name)
    out = tmp_path / "out[2]"
    result = run_cli("infer", pictures, "--out", out, "--no-preview")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "good[red].png ->" in line)
    assert line.startswith("ok") and line.endswith(")") and f"{pictures / 'good[red].png'} -> {out / 'good[red].obj'}" in line
    assert f"3 of 3 reconstructed; summary: {out / 'summary.json'}" in result.stdout
    assert "ok " not in result.stderr and "model " in result.stderr
    # off a terminal, progress is whole lines (no bar drawn, nothing cut off at 80 columns)
    assert [line for line in result.stderr.splitlines() if line.startswith("infer ")] == \
        ["infer 1/3", "infer 2/3", "infer 3/3"]
    assert "━" not in result.stderr and "\r" not in result.stderr


def test_default_outputs_are_numbered_under_runs(tmp_path):
    shutil.copy(EXAMPLES / "car_test.png", tmp_path / "car.png")
    for _ in range(2):
        assert run_cli("infer", "car.png", "--no-preview", cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs" / "infer" / "car.obj").is_file() and (tmp_path / "runs" / "infer2" / "car.obj").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car.png", "runs"]


def test_other_libraries_do_not_print_above_our_error(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV (the `video` extra) is not installed")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)  # FFmpeg would say `moov atom not found`
    assert "broken.mp4: cannot open" in only_error_line(run_cli("stream", broken))
    camera = run_cli("stream", "9")  # no camera 9: OpenCV would print `[ WARN:0@...] can't open camera`
    assert "camera 9" in only_error_line(camera)


def test_error_messages_keep_square_brackets(tmp_path):
    result = run_cli("data", "preview", tmp_path / "set[1]")
    assert_one_line_error(result, "set[1]")
