"""`recon-cli`: thin commands that parse, call one library function and print.

Heavy modules (torch, the renderer) are imported inside the commands so `--help` starts at once.
Every error a user can cause is a ReconError: printed as one line, exit code 2, no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional
import typer
from recon.cli.export_cmd import export  # the command modules import only typer at load time
from recon.cli.infer_cmd import infer
from recon.cli.profile_cmd import profile
from recon.cli.serve_cmd import serve
from recon.cli.stream_cmd import stream
from recon.cli.train_cmd import train_app
from recon.cli import console as ui  # out: results on stdout; err: progress and diagnostics on stderr
from recon.cli import options  # shared option types: checked while the command line is parsed
from recon.runtime.errors import ReconError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="recon: one photo of an object -> 2.5D sketch -> voxels -> mesh.")
data_app = typer.Typer(no_args_is_help=True, help="Make and inspect training datasets.")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

DEFAULT_WORKERS = os.cpu_count() or 1


def csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def object_progress(total: int, description: str):
    """A progress bar (stderr) and the callback that advances it once per finished object."""
    bar = ui.progress(total, description)

    def advance(job, error):
        if error:
            bar.print(f"[yellow]skipped[/] {ui.esc(error)}")
        bar.advance()

    return bar, advance


def report_dataset(manifest: dict, folder: Path) -> None:
    objects = manifest["objects"]
    views = sum(entry["views"] for entry in objects)
    tests = sum(entry["split"] == "test" for entry in objects)
    ui.out.print(f"wrote {ui.esc(folder)}: {len(objects)} objects ({tests} test), {views} views, "
              f"{manifest['image_size']} px, {manifest['voxel_res']}^3 voxels, fingerprint {manifest['fingerprint']}")
    if manifest["failed"]:
        ui.err.print(f"[yellow]{len(manifest['failed'])} failed[/]: "
                  + ui.esc("; ".join(f["error"] for f in manifest["failed"][:5])))


@data_app.command("synth")
def data_synth(
    out: Path = options.output_dir(..., "Dataset folder to write (resumable)."),
    objects: int = options.int_at_least(300, 1, "Objects per category."),
    views: int = options.int_at_least(20, 1, "Rendered views per object."),
    image_size: int = options.int_at_least(256, 16, "Render size in pixels (square)."),
    voxel_res: int = options.int_at_least(128, 2, "Occupancy grid resolution."),
    seed: int = typer.Option(0, help="Seed: same seed, same bytes."),
    categories: str = options.name_list("chair,car,airplane", "Comma-separated categories."),
    workers: int = options.int_at_least(DEFAULT_WORKERS, 1, "Parallel processes."),
):
    """Generate procedural chairs, cars and airplanes, render views and voxelize them."""
    from recon.train.data import RenderSettings, synth

    settings = RenderSettings(views=views, image_size=image_size, voxel_res=voxel_res)
    names = csv_list(categories)
    bar, advance = object_progress(objects * len(names), "synth")
    with bar:
        manifest = synth(out, objects, names, seed, settings, workers, advance)
    report_dataset(manifest, out)


@data_app.command("build")
def data_build(
    meshes: Path = typer.Option(..., help="Folder of <category>/<name>.{obj,off,ply,stl,glb}."),
    out: Path = options.output_dir(..., "Dataset folder to write (resumable)."),
    up: str = typer.Option("y", help="Up axis of the meshes: y or z."),
    auto_orient: bool = typer.Option(False, help="Turn each mesh into its category's canonical pose "
                                     "(chair, car, airplane); low-confidence ones are listed."),
    overrides: Optional[Path] = typer.Option(None, help="With --auto-orient: file of <mesh file name> <TAB> "
                                             "<rotation 0-23 | exclude> (or JSON) fixing chosen poses."),
    views: int = options.int_at_least(20, 1, "Rendered views per object."),
    image_size: int = options.int_at_least(256, 16, "Render size in pixels (square)."),
    voxel_res: int = options.int_at_least(128, 2, "Occupancy grid resolution."),
    seed: int = typer.Option(0, help="Seed of views and split."),
    workers: int = options.int_at_least(DEFAULT_WORKERS, 1, "Parallel processes."),
):
    """Render and voxelize your own meshes, normalised to the canonical frame."""
    from recon.train.data import RenderSettings, build, find_meshes

    settings = RenderSettings(views=views, image_size=image_size, voxel_res=voxel_res)
    bar, advance = object_progress(len(find_meshes(meshes)), "build")
    with bar:
        manifest = build(meshes, out, seed, settings, up, workers, advance, auto_orient, overrides)
    report_dataset(manifest, out)
    for entry in manifest.get("low_confidence", []):
        ui.out.print(f"[yellow]check orientation[/] {ui.esc(entry['source'])}: rotation {entry['rotation_index']}, "
                  f"confidence {entry['confidence']}")
    if manifest["failed"]:
        raise typer.Exit(1)


@data_app.command("r2n2")
def data_r2n2(
    renderings: Path = typer.Option(..., help="ShapeNetRendering folder."),
    voxels: Path = typer.Option(..., help="ShapeNetVox32 folder."),
    out: Path = options.output_dir(..., "Dataset folder to write."),
    image_size: int = options.int_at_least(128, 16, "Resize renderings to this size."),
    seed: int = typer.Option(0, help="Seed of the train/test split."),
    categories: str = options.name_list("chair,car,airplane", "Comma-separated categories."),
):
    """Convert the 3D-R2N2 ShapeNet release into a recon dataset folder."""
    from recon.train.r2n2 import convert

    manifest = convert(renderings, voxels, out, image_size, seed, csv_list(categories))
    report_dataset(manifest, out)


@data_app.command("clutter")
def data_clutter(
    data: Path = typer.Option(..., help="Dataset folder whose objects go into the scenes."),
    out: Path = options.output_dir(..., "Benchmark folder to write."),
    split: str = typer.Option("test", help="Which split's objects: test or train."),
    views_per_object: int = options.int_at_least(2, 1, "Cluttered pictures per object (each from another view)."),
    seed: int = typer.Option(0, help="Seed: same seed, same pictures."),
    size: int = options.int_at_least(256, 32, "Picture size in pixels (square)."),
):
    """Clutter benchmark: objects in cluttered rooms, with true box, mask, voxels and the plain view."""
    from recon.train.clutter_bench import make_bench
    from recon.train.data import load_manifest

    total = sum(entry["split"] == split for entry in load_manifest(data)["objects"])
    bar, advance = object_progress(total, "clutter")
    with bar:
        bench = make_bench(data, out, split, views_per_object, seed, size, progress=lambda: advance(None, None))
    ui.out.print(f"wrote {ui.esc(out)}: {len(bench['entries'])} pictures of {total} {split} objects "
                 "(manifest.json, pictures/, plain/, masks/, voxels/, boxes.csv)")


@data_app.command("preview")
def data_preview(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    out: Optional[Path] = options.output_file(None, "Contact sheet to write (PNG; default: runs/preview/sheet.png, "
                                              "then runs/preview2/...; with --orientations, poses.png pages)."),
    samples: int = options.int_at_least(6, 1, "Objects to show."),
    seed: int = typer.Option(0, help="Which objects to pick."),
    orientations: bool = typer.Option(False, help="Instead: the low-confidence meshes of an --auto-orient "
                                      "build: as loaded, as built, the chosen pose and the best pose per other "
                                      "up direction, with rotation indices, for an overrides file."),
):
    """Write a contact sheet: RGB | normals | depth | mask | voxels."""
    from recon.cli.outputs import next_run_dir
    from recon.train.data import orientation_sheets, preview

    if out is None:
        out = next_run_dir("preview") / ("poses.png" if orientations else "sheet.png")
        out.parent.mkdir(parents=True)
    if orientations:
        written, failures = orientation_sheets(dataset, out)
        ui.out.print(f"wrote {len(written)} page(s): " + ui.esc(", ".join(map(str, written))) if written
                  else f"{ui.esc(dataset)}: no low-confidence orientations to draw")
        for failure in failures:
            ui.err.print(f"[red]error:[/] {ui.esc(failure)}")
        if failures:
            raise typer.Exit(1)
        return
    sheet, skipped = preview(dataset, out, samples, seed)
    ui.out.print(f"wrote {ui.esc(sheet)}")
    ui.report_skipped(dataset, skipped)


app.command("export")(export)
app.command("infer")(infer)
app.command("profile")(profile)
app.command("stream")(stream)
app.command("serve")(serve)


@app.command("eval")
def evaluate_command(
    data: Path = typer.Option(..., help="Dataset folder; its test split is evaluated."),
    model: Path = typer.Option(..., help="Run folder (PyTorch checkpoints) or model folder (ONNX, from export)."),
    variant: str = typer.Option("full", help="full (sketch + GAN-refined voxels), no-refine, direct."),
    trials: int = options.int_at_least(3, 1, "Trials: each picks another random view of every test object."),
    batch: int = options.int_at_least(16, 1, "Batch size."),
    seed: int = typer.Option(0, help="Seed of the views picked."),
    max_objects: Optional[int] = options.int_at_least(None, 1, "Evaluate only the first N test objects of each "
                                                      "category."),
    threshold: Optional[float] = options.probability(None, "Iso level of the tables (default: the model's; 0.4 "
                                                     "for run folders)."),
    split: str = typer.Option("test", help="test, or train to choose a model's threshold without touching the test split."),
    json_out: Optional[Path] = options.output_file(None, "Write the full result as JSON.", "--json"),
):
    """Voxel IoU per category (Table 1 layout), threshold sweep, 32^3 IoU and 2.5D errors."""
    from recon.runtime.fileio import write_json_atomic
    from recon.train.evaluate import evaluate, load_predictor, table1

    predict, image_size, voxel_res, model_threshold = load_predictor(model, variant)
    with ui.progress(None, f"eval {variant}") as advance:
        result = evaluate(predict, data, image_size, voxel_res, trials, batch, seed, max_objects, split=split,
                          threshold=model_threshold if threshold is None else threshold,
                          progress=lambda done, total: advance(done, total=total))
    result["variant"], result["model"] = variant, str(model)
    ui.report_skipped(data, result["skipped"])
    lines = [f"{variant}: voxel IoU at threshold {result['threshold']} ({result['resolution']}^3, "
             f"{result['objects']} {split} objects)", table1(result),
             "IoU at 32^3: " + ", ".join(f"{k} {v:.3f}" for k, v in result["iou_32"].items()),
             f"best threshold on the {split} split: {result['best_threshold']} "
             f"(mean IoU {result['iou_at_best']['mean']:.3f})"]
    if result["sketch"]:
        lines.append("2.5D: " + ", ".join(f"{k} {v}" for k, v in result["sketch"].items()))
    ui.out.print("\n".join(lines), markup=False)
    if json_out:
        write_json_atomic(json_out, result)


@app.command()
def doctor():
    """Versions, ONNX Runtime providers, CUDA GPUs, TensorRT and CPU count."""
    from rich.table import Table

    from recon.runtime.system import system_report

    report = system_report()
    table = Table(title="recon doctor", show_header=False)
    table.add_row("python", ui.esc(f"{report['python']} ({report['platform']})"))
    table.add_row("cpu cores", str(report["cpu_count"]))
    for name, version in report["packages"].items():
        table.add_row(name, ui.esc(version) if version else "[dim]not installed[/]")
    table.add_row("onnxruntime providers", ui.esc(", ".join(report["onnxruntime_providers"])))
    gpus = report["cuda_gpus"]
    table.add_row("CUDA GPUs", ui.esc("; ".join(f"{g['name']} ({g['memory_mib']} MiB, sm {g['compute_capability']})"
                                               for g in gpus) or "none usable"))
    table.add_row("TensorRT", ui.esc(report["tensorrt"] or "not usable (install it with the GPU's JetPack/CUDA stack)"))
    from recon.runtime.openvino_backend import openvino_summary

    table.add_row("OpenVINO", ui.esc(openvino_summary() or "not installed (pip install 'recon[openvino]')"))
    ui.out.print(table)
    if report["packages"]["onnxruntime"] and report["packages"]["onnxruntime-gpu"]:
        # both wheels install the same `onnxruntime` module; whichever was installed last wins
        ui.err.print("[yellow]warning:[/] onnxruntime and onnxruntime-gpu are both installed; keep one: "
                     "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, help="Print recon's version and exit.",
                                          callback=lambda given: given and _print_version())):
    """recon: one photo of an object -> 2.5D sketch -> voxels -> mesh."""


def _print_version() -> None:
    import recon

    print(f"recon {recon.__version__}")
    raise typer.Exit()


def main() -> None:
    """Every failure a user can cause ends as one `error:` line: recon's own errors (exit 2) and
    command-line usage errors (exit 2, as click's), never a boxed panel or a traceback."""
    from recon.cli import failures, typer_adjustments

    click = typer_adjustments.click_exceptions()
    ui.quiet_third_party()
    failures.interrupt_on_sigterm()
    command = typer.main.get_command(app)
    typer_adjustments.plain_metavars(command)
    try:
        code = command.main(prog_name="recon-cli", standalone_mode=False)
    except click.NoArgsIsHelpError as error:  # typer's rich help has printed itself already
        if error.format_message().strip():
            error.show()
        code = error.exit_code
    except click.UsageError as error:
        where = f"; see {error.ctx.command_path} --help" if error.ctx is not None else ""
        ui.err.print(f"[red]error:[/] {ui.esc(error.format_message().rstrip('.') + where)}")
        code = error.exit_code
    except click.ClickException as error:  # e.g. a file option that cannot be opened
        ui.err.print(f"[red]error:[/] {ui.esc(error.format_message())}")
        code = error.exit_code
    except typer.Abort:
        code = 130  # printed below
    except ReconError as error:
        ui.err.print(f"[red]error:[/] {ui.esc(failures.user_message(error))}")
        code = 2
    except ModuleNotFoundError as error:  # a runtime-only install running a command of an extra
        ui.err.print(f"[red]error:[/] {ui.esc(failures.missing_extra(error, (sys.argv[1:2] or [''])[0]))}")
        code = 2
    except OSError as error:  # e.g. the disk filled up after the destination checks passed
        ui.err.print(f"[red]error:[/] {ui.esc(failures.os_error_line(error))}")
        code = 1
    if code == 130:  # typer turns Ctrl-C into exit code 130
        ui.err.print("interrupted")
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
