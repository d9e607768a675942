"""`recon-cli infer`: pictures in, meshes + previews + summary.json out (registered by recon.cli.main).

Only typer, pathlib and typing are imported here at load time, so `recon-cli --help` stays instant;
the runtime (onnxruntime, trimesh) is imported when the command runs.
"""

from pathlib import Path
from typing import List, Optional

import typer

from recon.cli import options


def infer(
    images: List[str] = typer.Argument(..., help="Pictures, folders of pictures, or glob patterns (quote them)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder from `recon-cli export` "
                                         "(default: the model installed with recon)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (created when missing; default: "
                                       "runs/infer, then runs/infer2, ...)."),
    format: str = typer.Option("obj", "--format", help="Comma-separated outputs: obj, ply, stl, glb (meshes), "
                               "npy (voxel probabilities), binvox (voxels at the threshold)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Pictures per network run."),
    threshold: Optional[float] = options.probability(None, "Voxel probability iso level "
                                                     "(default: the model's recon.threshold).", "--threshold"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N (GPU N), tensorrt or openvino."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads per network "
                                          "(default: all cores)."),
    fp16: bool = typer.Option(False, "--fp16", help="Run the model's FP16 twins (`recon-cli export --fp16` makes them)."),
    int8: bool = typer.Option(False, "--int8", help="Run the model's INT8 twins (`recon-cli export --int8` makes "
                              "them)."),
    smooth: int = typer.Option(0, "--smooth", min=0, help="Laplacian smoothing passes over the mesh (0: none)."),
    largest_only: bool = typer.Option(False, "--largest-only", help="Keep only the largest connected piece of the mesh."),
    color: bool = typer.Option(True, "--color/--no-color", help="Vertex colours from the picture (in obj, ply, "
                               "glb and the 3D view of OUT/index.html)."),
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Write <stem>.preview.png: input, "
                                 "normals, depth, silhouette and the mesh from three sides."),
    height_m: Optional[float] = options.positive_float(None, "Real height of the object in metres: "
                                                       "report metric sizes and volume.", "--height-m"),
    width_m: Optional[float] = options.positive_float(None, "Real width (left-right) in metres, "
                                                      "instead of --height-m.", "--width-m"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="The object's mask from another tool: a file for "
                                        "one picture, or a folder of masks matched by picture stem (<stem>.png, "
                                        "<stem>_mask.png, .npy); white / >= 128 is the object. Acts as alpha."),
    box: Optional[str] = typer.Option(None, "--box", help="The object's box x0,y0,x1,y1 in pixels (one picture)."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="Boxes per picture: CSV or JSON with an image "
                                         "column and xyxy corners (ultralytics' to_csv/to_json/summary plus the "
                                         "image), or a YOLO labels folder (save_txt). See the README."),
):
    """Reconstruct a 3D mesh from each picture: OUT/<stem>.<format>, OUT/<stem>.preview.png, OUT/summary.json,
    and OUT/index.html (a gallery with a 3D view of each mesh that works opened from disk, offline).

    Each result has a confidence in [0, 1] and a status: ok, low_confidence (mesh written, flagged), no_object
    (only the preview written) or failed.

    Exit code 0: every picture gave a mesh; 1: some failed or showed no object (the others are still written; summary.json says why); 2: a usage problem (bad model folder, output folder not writable, no pictures, a bad boxes file).
    """
    from recon.cli import console as ui
    from recon.cli.outputs import next_run_dir
    from recon.runtime.confidence import MESH_STATUSES
    from recon.runtime.errors import InputError
    from recon.runtime.pipeline import Reconstructor, check_formats
    from recon.runtime.viewer import MAX_EMBEDDED_MESHES, gallery_entry, write_gallery

    formats = check_formats([f for f in format.split(",") if f.strip()] or ["obj"])
    if height_m is not None and width_m is not None:
        raise InputError("--height-m and --width-m: give one of them, not both")
    inputs = expand_inputs(images)
    framing = framing_options(mask, box, boxes, inputs)
    out = prepare_output(out if out is not None else next_run_dir("infer"), create=False)
    stems = unique_stems(inputs)
    err = ui.err  # progress and notes; result lines go to ui.out (stdout), printed above the bar

    reconstructor = Reconstructor(model, device=device, threads=threads, batch=batch, threshold=threshold,
                                  smooth=smooth, largest_only=largest_only, precision=options.precision(fp16, int8),
                                  color=color)
    with reconstructor:
        prepare_output(out)  # created once the model has loaded: a bad model folder leaves no empty folder
        providers = sorted(set(reconstructor.providers.values()))
        err.print(f"model {ui.esc(reconstructor.model.path)} on {', '.join(providers)}")
        for net, note in reconstructor.notes.items():
            err.print(f"[yellow]note[/] {net}: {ui.esc(note)}")
        if reconstructor.calibration is None:
            err.print("[yellow]note[/] this model has no confidence calibration: every picture is reported ok "
                      f"(run scripts/calibrate_confidence.py {ui.esc(reconstructor.model.path)})", soft_wrap=True)
        summary = {"model": str(reconstructor.model.path), "providers": reconstructor.providers,
                   "threshold": reconstructor.threshold, "formats": list(formats), "results": []}
        gallery = []  # OUT/index.html: the offline 3D viewer of every result so far
        try:
            with progress_bar(err, len(inputs)) as advance:
                for start in range(0, len(inputs), batch):
                    chunk = inputs[start:start + batch]
                    results = reconstructor.batch(chunk, names=chunk, height_m=height_m, width_m=width_m, **framing)
                    for source, stem, result in zip(chunk, stems[start:start + batch], results):
                        entry = save_result(result, source, out, stem, formats, preview)
                        summary["results"].append(entry)
                        gallery.append(gallery_entry(result, entry["outputs"],
                                                     embed_mesh=len(gallery) < MAX_EMBEDDED_MESHES))
                        report(ui.out, entry)
                        advance()
                    write_summary(out, summary)
                    write_gallery(out, gallery)
        except KeyboardInterrupt:  # summary.json lists exactly the pictures whose files are on disk
            summary["interrupted"] = True
            write_summary(out, summary)
            raise
    failed = sum(entry["status"] not in MESH_STATUSES for entry in summary["results"])
    ui.out.print(f"{len(inputs) - failed} of {len(inputs)} reconstructed; summary: {ui.esc(out / 'summary.json')}")
    if failed:
        raise typer.Exit(1)


def expand_inputs(arguments: List[str]) -> List[str]:
    """Files as given (a missing one fails on its own later), folders -> their pictures, globs -> matches.

    InputError for a folder without pictures or a pattern that matches nothing: nothing to do is a usage error.
    """
    import glob

    from recon.runtime.errors import InputError
    from recon.runtime.images import IMAGE_SUFFIXES

    found: List[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            pictures = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not pictures:
                raise InputError(f"{path}: no pictures in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            found += pictures
        elif not path.exists() and any(c in argument for c in "*?["):
            matches = sorted(m for m in glob.glob(argument) if Path(m).is_file())
            if not matches:
                raise InputError(f"{argument}: the pattern matches no files")
            found += matches
        else:
            found.append(argument)
    return list(dict.fromkeys(found))  # each picture once, in the order given


def prepare_output(out: Path, create: bool = True) -> Path:
    """Create the output folder and prove it writable now (InputError otherwise); temporary files an
    earlier, killed run left there are removed. create=False: only prove it can be made (before any
    work), so a command that fails before it writes anything leaves no empty folder behind."""
    from recon.runtime.fileio import check_output_dir

    return check_output_dir(out, "--out", create=create)


def unique_stems(inputs: List[str]) -> List[str]:
    """Output names: the picture's stem, with _2, _3... when two pictures share one (a/x.png, b/x.jpg)."""
    stems, used = [], set()
    for source in inputs:
        stem = Path(source).stem or "picture"
        candidate, n = stem, 1
        while candidate.lower() in used or candidate.lower() == "summary":
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate.lower())
        stems.append(candidate)
    return stems


def save_result(result, source: str, out: Path, stem: str, formats, preview: bool) -> dict:
    """Write one result's files; the summary.json entry (a failed write makes the entry failed)."""
    entry = {"input": source, **result.summary(), "outputs": {}}
    del entry["name"]
    if result.mesh is not None:  # ok and low_confidence: the mesh; no_object: only the preview (Result.save)
        try:
            entry["outputs"] = {kind: str(path) for kind, path in result.save(out, stem, formats, preview).items()}
        except OSError as error:
            entry["status"], entry["error"] = "failed", f"{source}: cannot write outputs ({error.strerror or error})"
    return entry


def report(console, entry: dict) -> None:
    from recon.cli.console import esc

    confidence = "" if entry["confidence"] is None else f" (confidence {entry['confidence']:.2f})"
    files = ", ".join(entry["outputs"].values())
    if entry["status"] in ("ok", "low_confidence"):
        size = f"volume {entry['volume']:.4g}" + (f" ({entry['volume_m3']:.4g} m^3)" if entry["volume_m3"] else "")
        label = "ok" if entry["status"] == "ok" else "[yellow]low_confidence[/]"
        console.print(f"{label}{confidence} {esc(entry['input'])} -> {esc(files)} ({entry['faces']} faces, {size})",
                      soft_wrap=True)
    elif entry["status"] == "no_object":
        console.print(f"[red]no_object[/]{confidence} {esc(entry['input'])}: no mesh written (preview: {esc(files)})",
                      soft_wrap=True)
    else:
        console.print(f"[yellow]failed[/] {esc(entry['error'])}", soft_wrap=True)


def framing_options(mask: Optional[Path], box: Optional[str], boxes: Optional[Path], inputs: List[str]) -> dict:
    """Reconstructor.batch's mask= / box= from --mask, --box and --boxes (read once, now: a bad file is a usage error)."""
    from recon.runtime.errors import InputError
    from recon.runtime.framing import parse_box, read_boxes

    given = [name for name, value in (("--mask", mask), ("--box", box), ("--boxes", boxes)) if value is not None]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)}: give one of them")
    if mask is not None:
        if not mask.exists():
            raise InputError(f"--mask {mask}: no such file or folder")
        if mask.is_file() and len(inputs) > 1:
            raise InputError(f"--mask {mask}: one mask file for {len(inputs)} pictures; give a folder of masks "
                             "named like the pictures")
        return {"mask": str(mask)}
    if box is not None:
        if len(inputs) > 1:
            raise InputError(f"--box: one box for {len(inputs)} pictures; use --boxes FILE")
        return {"box": parse_box(box)}
    return {"box": read_boxes(boxes)} if boxes is not None else {}


def write_summary(out: Path, summary: dict) -> None:
    from recon.runtime.fileio import write_json_atomic

    write_json_atomic(out / "summary.json", summary)


def progress_bar(console, total: int):
    """The shared progress bar (recon.cli.console.progress) when there is more than one picture."""
    from recon.cli.console import progress

    return progress(total, "infer", quiet_below=1, console=console)

