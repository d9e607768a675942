"""`recon-cli`: thin commands that parse, call one library function and print.

Heavy modules (torch, the renderer) are imported inside the commands so `--help` starts at once.
Every error a user can cause is a ReconError: printed as one line, exit code 2, no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
import typer
from rich.console import Console

from recon.runtime.errors import ReconError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="recon: one photo of an object -> 2.5D sketch -> voxels -> mesh.")
data_app = typer.Typer(no_args_is_help=True, help="Make and inspect training datasets.")
app.add_typer(data_app, name="data")

console = Console(stderr=True)
DEFAULT_WORKERS = os.cpu_count() or 1


def csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def object_progress(total: int, description: str):
    """A rich progress bar and the callback that advances it once per finished object."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    task = bar.add_task(description, total=total)

    def advance(job, error):
        if error:
            bar.console.print(f"[yellow]skipped[/] {error}")
        bar.advance(task)

    return bar, advance


def report_dataset(manifest: dict, out: Path) -> None:
    objects = manifest["objects"]
    views = sum(entry["views"] for entry in objects)
    tests = sum(entry["split"] == "test" for entry in objects)
    console.print(f"wrote {out}: {len(objects)} objects ({tests} test), {views} views, "
                  f"{manifest['image_size']} px, {manifest['voxel_res']}^3 voxels, "
                  f"fingerprint {manifest['fingerprint']}")
    if manifest["failed"]:
        console.print(f"[yellow]{len(manifest['failed'])} failed[/]: "
                      + "; ".join(f["error"] for f in manifest["failed"][:5]))


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., help="Dataset folder to write (resumable)."),
    objects: int = typer.Option(300, help="Objects per category."),
    views: int = typer.Option(20, help="Rendered views per object."),
    image_size: int = typer.Option(256, help="Render size in pixels (square)."),
    voxel_res: int = typer.Option(128, help="Occupancy grid resolution."),
    seed: int = typer.Option(0, help="Seed: same seed, same bytes."),
    categories: str = typer.Option("chair,car,airplane", help="Comma-separated categories."),
    workers: int = typer.Option(DEFAULT_WORKERS, help="Parallel processes."),
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
    out: Path = typer.Option(..., help="Dataset folder to write (resumable)."),
    up: str = typer.Option("y", help="Up axis of the meshes: y or z."),
    views: int = typer.Option(20, help="Rendered views per object."),
    image_size: int = typer.Option(256, help="Render size in pixels (square)."),
    voxel_res: int = typer.Option(128, help="Occupancy grid resolution."),
    seed: int = typer.Option(0, help="Seed of views and split."),
    workers: int = typer.Option(DEFAULT_WORKERS, help="Parallel processes."),
):
    """Render and voxelize your own meshes, normalised to the canonical frame."""
    from recon.train.data import RenderSettings, build, find_meshes

    settings = RenderSettings(views=views, image_size=image_size, voxel_res=voxel_res)
    bar, advance = object_progress(len(find_meshes(meshes)), "build")
    with bar:
        manifest = build(meshes, out, seed, settings, up, workers, advance)
    report_dataset(manifest, out)
    if manifest["failed"]:
        raise typer.Exit(1)


@data_app.command("r2n2")
def data_r2n2(
    renderings: Path = typer.Option(..., help="ShapeNetRendering folder."),
    voxels: Path = typer.Option(..., help="ShapeNetVox32 folder."),
    out: Path = typer.Option(..., help="Dataset folder to write."),
    image_size: int = typer.Option(128, help="Resize renderings to this size."),
    seed: int = typer.Option(0, help="Seed of the train/test split."),
    categories: str = typer.Option("chair,car,airplane", help="Comma-separated categories."),
):
    """Convert the 3D-R2N2 ShapeNet release into a recon dataset folder."""
    from recon.train.r2n2 import convert

    manifest = convert(renderings, voxels, out, image_size, seed, csv_list(categories))
    report_dataset(manifest, out)


@data_app.command("preview")
def data_preview(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(Path("preview.png"), help="Contact sheet to write (PNG)."),
    samples: int = typer.Option(6, help="Objects to show."),
    seed: int = typer.Option(0, help="Which objects to pick."),
):
    """Write a contact sheet: RGB | normals | depth | mask | voxels."""
    from recon.train.data import preview

    console.print(f"wrote {preview(dataset, out, samples, seed)}")


@app.command()
def doctor():
    """Versions, ONNX Runtime providers, CUDA GPUs, TensorRT and CPU count."""
    from rich.table import Table

    from recon.runtime.system import system_report

    report = system_report()
    table = Table(title="recon doctor", show_header=False)
    table.add_row("python", f"{report['python']} ({report['platform']})")
    table.add_row("cpu cores", str(report["cpu_count"]))
    for name, version in report["packages"].items():
        table.add_row(name, version or "[dim]not installed[/]")
    table.add_row("onnxruntime providers", ", ".join(report["onnxruntime_providers"]))
    gpus = report["cuda_gpus"]
    table.add_row("CUDA GPUs", "; ".join(f"{g['name']} ({g['memory_mib']} MiB, sm {g['compute_capability']})"
                                        for g in gpus) or "none usable")
    table.add_row("TensorRT", report["tensorrt"] or "not usable (install it with the GPU's JetPack/CUDA stack)")
    Console().print(table)


def main() -> None:
    try:
        app()
    except ReconError as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
