"""`recon-cli export`: a run folder -> a deployable model folder (docs/design.md, "Model folder").

    export_model(RUN, MODEL) -> the model.json dict

Steps: load RUN/sketch.pt and RUN/joint.pt (else RUN/voxel.pt); wrap the nets so the graphs end in
the runtime's outputs (sigmoids in-graph); export with the legacy TorchScript exporter (opset 17,
dynamic batch axis, eval mode: BatchNorm folded), simplify with onnxslim, check (no BatchNormalization,
no auto_pad, symmetric explicit pads, `onnx.checker` full check, strict shape inference), stamp the
preprocessing metadata, lint for TensorRT 8.6, plan memory for `--vram`, compare ONNX Runtime with
PyTorch (always), optionally make FP16 twins (gated) and TensorRT engines, write model.json.
Everything is written to a temporary folder beside MODEL and renamed into place at the end, so a
failed export leaves no model folder behind (and an existing one untouched).
The pieces: run_folder.py (checkpoints -> nets), onnx_graphs.py (wrappers, export, contract check),
onnx_metadata.py (the recon.* metadata_props); parity, FP16, INT8, lint, plan and TensorRT have their own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from recon.export.onnx_graphs import (SKETCH_FILE, SKETCH_INPUT, SKETCH_OUTPUTS, VOXEL_FILE, VOXEL_INPUT, VOXEL_OUTPUTS,
                                      _to_onnx, _wrappers, check_graph, framing_size)
from recon.export.onnx_metadata import METADATA_KEYS, model_metadata, read_metadata, set_metadata
from recon.export.run_folder import build_nets, load_run
from recon.runtime.errors import InputError
from recon.runtime.fileio import remove_stale_temps, temp_prefix, write_bytes_atomic, write_json_atomic

# Also the names of onnx_graphs.py, onnx_metadata.py and run_folder.py that other modules import from here.
__all__ = ["export_model", "prepare_output", "fp16_mode", "check_opset", "parity_check", "OPSET_RANGE",
           "PARITY_BATCH", "FP16_MODES", "METADATA_KEYS", "SKETCH_FILE", "SKETCH_INPUT", "SKETCH_OUTPUTS",
           "VOXEL_FILE", "VOXEL_INPUT", "VOXEL_OUTPUTS", "build_nets", "load_run", "check_graph", "framing_size",
           "model_metadata", "read_metadata", "set_metadata"]

OPSET_RANGE = (13, 17)  # 13: Squeeze/Unsqueeze axes as inputs; 17: the newest TensorRT 8.6 parses
PARITY_BATCH = 2
FP16_MODES = ("off", "on", "auto")


def _log_default(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- arguments


def fp16_mode(fp16) -> str:
    """True/"on" -> "on", False/None/"off" -> "off", "auto" -> "auto"; else InputError."""
    if fp16 is True:
        return "on"
    if fp16 is False or fp16 is None:
        return "off"
    value = str(fp16).strip().lower()
    if value in FP16_MODES:
        return value
    raise InputError(f"--fp16 {fp16!r}: choose one of {', '.join(FP16_MODES)}")


def check_opset(opset) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise InputError(f"--opset {opset!r}: choose {OPSET_RANGE[0]}..{OPSET_RANGE[1]} "
                         f"(TensorRT 8.6 parses up to {OPSET_RANGE[1]})")
    return opset


def prepare_output(out: str | Path) -> Path:
    """The absolute MODEL path; InputError (before any work) when it cannot be written as a whole."""
    out = Path(out).expanduser().absolute()
    parent = out.parent
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise InputError(f"--out {out}: folder exists and is not a model folder (no model.json); "
                         "choose a new or empty folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out {out}: cannot create {parent} ({error.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {parent} is not writable")
    remove_stale_temps(parent)  # temporary model folders of an export that was killed
    return out


# ---------------------------------------------------------------- parity


def parity_check(sketch_module, voxel_module, folder: Path, image_size: int, threshold: float,
                 log: Callable[[str], None] | None, batch: int = PARITY_BATCH) -> dict:
    """ONNX Runtime (CPU) vs PyTorch on a fixed seeded batch; ModelError with the figures on failure."""
    import torch

    from recon.export.parity import (FP32_ATOL, IOU_AGREEMENT, compare_outputs, iou_agreement, ort_session,
                                     require_pass, run_session, synthetic_inputs)

    inputs = synthetic_inputs(image_size, batch=batch, seed=0)
    lengths = []  # the normals head's output length before F.normalize (how well-defined each direction is)
    net = sketch_module.net  # edge2's merged head has the normals as its first 3 channels
    head = net.normals_head if hasattr(net, "normals_head") else net.head
    hook = head.register_forward_hook(
        lambda module, args, output: lengths.append(output[:, :3].norm(dim=1, keepdim=True).numpy()))
    try:
        with torch.no_grad():
            ref_sketch = dict(zip(SKETCH_OUTPUTS,
                                  (t.numpy() for t in sketch_module(torch.from_numpy(inputs["image"])))))
            ref_voxel = {"occupancy": voxel_module(torch.from_numpy(inputs["sketch"])).numpy()}
    finally:
        hook.remove()
    got_sketch = run_session(ort_session(folder / SKETCH_FILE), {SKETCH_INPUT: inputs["image"]})
    got_voxel = run_session(ort_session(folder / VOXEL_FILE), {VOXEL_INPUT: inputs["sketch"]})
    # A unit normal's direction error is (error before normalising) / length: where the head's output is
    # short (background pixels the loss never constrains) a 1e-6 difference between conv kernels becomes
    # ~1e-4. Normals are gated on |difference| x min(1, length): the plain difference wherever length >= 1.
    label = "|diff| x min(1, pre-normalisation length)"
    weights = {"normals": (np.minimum(1.0, lengths[0]), label)} if lengths else {}
    details = []  # the comparator's per-output report: printed only when the check fails
    results = {**compare_outputs(ref_sketch, got_sketch, FP32_ATOL, "torch", "onnxrt", details.append, weights),
               **compare_outputs(ref_voxel, got_voxel, FP32_ATOL, "torch", "onnxrt", details.append)}
    agreement = {"voxel_iou_agreement": iou_agreement(ref_voxel["occupancy"], got_voxel["occupancy"], threshold),
                 "silhouette_iou_agreement": iou_agreement(ref_sketch["silhouette"][:, 0],
                                                           got_sketch["silhouette"][:, 0], 0.5)}
    passed = all(r["passed"] for r in results.values()) and agreement["voxel_iou_agreement"] >= IOU_AGREEMENT
    if log and passed:  # one line: a check that passed needs no per-output report
        worst = max(r.get("conditioned_max_abs", r["max_abs"]) for r in results.values())
        log(f"parity: ONNX Runtime (CPU) matches PyTorch on a seeded batch of {batch}: max abs diff {worst:.1e} "
            f"(tolerance {FP32_ATOL:g}), voxel IoU agreement {agreement['voxel_iou_agreement']:.6f}")
    elif log:
        log(f"parity: ONNX Runtime (CPU) vs PyTorch on a seeded batch of {batch}, abs tolerance {FP32_ATOL}")
        for line in details:
            log(line)
        log(f"[E] voxel IoU agreement at threshold {threshold}: {agreement['voxel_iou_agreement']:.6f} "
            f"(need >= {IOU_AGREEMENT}) | FAILED | All outputs did not match")
    require_pass(results, "ONNX Runtime vs PyTorch", {"voxel IoU agreement": agreement["voxel_iou_agreement"]},
                 {"voxel IoU agreement": IOU_AGREEMENT})
    summary = {name: {k: r[k] for k in ("max_abs", "max_rel", "mean_abs", "required_atol", "conditioned_max_abs",
                                        "passed") if k in r}
               for name, r in results.items()}
    return {"batch": batch, "atol": FP32_ATOL, "outputs": summary, **agreement, "passed": True}


# ---------------------------------------------------------------- the whole export


def _read_optional_json(path: Path) -> dict:
    from recon.runtime.model import read_json

    return read_json(path) if path.is_file() else {}


def _publish_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make 0700/0600; give the model folder the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished temporary folder onto `out` (replacing an older model folder)."""
    _publish_permissions(tmp)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(f"{out.name}.old"), suffix=".tmp", dir=out.parent))
        os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_model(run: str | Path, out: str | Path, *, fp16: bool | str = False, engine: bool = False,
                 vram: str = "4GiB", workspace: str = "1GiB", batch: tuple[int, int, int] | str = (1, 1, 8),
                 data: str | Path | None = None, force: bool = False, opset: int = 17, check: bool = True,
                 threshold: float | None = None, int8: bool = False,
                 log: Callable[[str], None] | None = _log_default) -> dict:
    """Export RUN (sketch.pt + joint.pt/voxel.pt) to the model folder OUT; return the model.json dict.

    fp16: False/"off", True/"on" (FP16 twins that must pass the accuracy gate unless `force`), "auto"
    (twins kept only when they pass; engines FP16 only where the GPU has fast FP16).
    engine: also build TensorRT engines (needs TensorRT and a GPU). vram/workspace: sizes such as
    "4GiB"; batch: the TensorRT profile's (min, opt, max), max lowered to what fits vram.
    data: a dataset folder for the FP16/INT8/BF16 gates. check: compare ONNX Runtime with PyTorch (on by
    default). int8: INT8 twins calibrated on data's training views, gated like FP16 (recon.export.int8).
    With openvino installed, OpenVINO is checked against ONNX Runtime and its BF16 gated (parity.openvino_checks).
    log: where progress and reports go (None: quiet).
    OUT is written as a whole: an existing model folder there is replaced, any other non-empty folder is
    refused (InputError); on any error nothing is left at OUT (an older model folder stays as it was).
    """
    from recon.export import fp16 as fp16_tools
    from recon.export.lint import as_dicts, check_lint, lint_model
    from recon.export.manifest import build_manifest
    from recon.export.plan import check_batch, format_plan, memory_plan, parse_size
    from recon.runtime.model import MANIFEST, verify_model_dir

    say = log or (lambda message: None)
    mode = fp16_mode(fp16)
    opset = check_opset(opset)
    vram_bytes, workspace_bytes = parse_size(vram, "--vram"), parse_size(workspace, "--workspace")
    wanted = check_batch(batch)
    if threshold is not None and not 0 < threshold < 1:
        raise InputError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if int8 and data is None:
        raise InputError("--int8 needs --data DATASET: calibration reads its training views (the gate its "
                         "test views)")
    if data is not None:
        from recon.train.data import load_manifest

        load_manifest(Path(data))  # InputError now rather than after the export
    if engine:
        from recon.export.tensorrt import import_tensorrt

        import_tensorrt()
    out = prepare_output(out)  # before reading the run: a bad destination is found at once
    loaded = load_run(run)
    sketch_net, voxel_net = build_nets(loaded)
    preset = loaded["preset"]
    metadata = model_metadata(loaded, threshold)
    threshold = float(metadata["recon.threshold"])
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise InputError(f"--out {out}: cannot write in {out.parent} ({error.strerror})") from None
    try:
        import torch

        SketchExport, VoxelExport = _wrappers()
        sketch_module, voxel_module = SketchExport(sketch_net).eval(), VoxelExport(voxel_net).eval()
        s = preset.image_size
        generator = torch.Generator().manual_seed(0)
        say(f"exporting {loaded['run']} ({preset.name}: {s}px -> {preset.voxel_res}^3, "
            f"{loaded['paths']['sketch'].name} + {loaded['paths']['voxel'].name}) to {out}")
        graphs = {
            "sketch": _to_onnx(sketch_module, torch.randn(1, 3, s, s, generator=generator), SKETCH_INPUT,
                               SKETCH_OUTPUTS, opset, spatial=framing_size(preset) is not None),
            "voxel": _to_onnx(voxel_module, torch.rand(1, 5, s, s, generator=generator), VOXEL_INPUT,
                              VOXEL_OUTPUTS, opset),
        }
        files = {"sketch": SKETCH_FILE, "voxel": VOXEL_FILE}
        warnings_found = {}
        for name, model in graphs.items():
            set_metadata(model, metadata, f"recon_{name}")
            check_graph(model, files[name])
            warnings_found[name] = as_dicts(check_lint(lint_model(model), files[name]))
            for finding in warnings_found[name]:
                say(f"lint {files[name]}: {finding['severity']}: {finding['node']} [{finding['op']}] "
                    f"{finding['message']}")
        plan = memory_plan(graphs, vram_bytes, workspace_bytes, wanted)
        say(format_plan(plan))
        for name, model in graphs.items():
            write_bytes_atomic(tmp / files[name], model.SerializeToString())
        parity = (parity_check(sketch_module, voxel_module, tmp, s, threshold, log, min(PARITY_BATCH, wanted[2]))
                  if check else None)
        fp16_figures = None
        if mode != "off":
            twins = {name: tmp / files[name].replace(".onnx", ".fp16.onnx") for name in graphs}
            for name, model in graphs.items():
                converted = fp16_tools.convert_fp16(model)
                check_graph(converted, twins[name].name)
                write_bytes_atomic(twins[name], converted.SerializeToString())
            fp16_figures = fp16_tools.fp16_gate({n: tmp / f for n, f in files.items()}, twins, image_size=s,
                                                voxel_res=preset.voxel_res, mean=json.loads(metadata["recon.mean"]),
                                                std=json.loads(metadata["recon.std"]), threshold=threshold,
                                                data=data, log=log)
            fp16_figures["kept"] = True
            if not fp16_figures["passed"]:
                if mode == "auto" and not force:
                    say(f"FP16 twins dropped (--fp16 auto): {fp16_tools.describe(fp16_figures)}")
                    for twin in twins.values():
                        twin.unlink()
                    fp16_figures["kept"] = False
                else:
                    fp16_tools.require_fp16(fp16_figures, force)
                    say(f"FP16 twins kept despite the failed gate (--force): {fp16_tools.describe(fp16_figures)}")
        gate_inputs = dict(image_size=s, voxel_res=preset.voxel_res, mean=json.loads(metadata["recon.mean"]),
                           std=json.loads(metadata["recon.std"]), threshold=threshold, log=log)
        int8_figures = None
        if int8:
            from recon.export.int8 import make_int8_twins

            int8_figures = make_int8_twins(tmp, data=data, force=force, **gate_inputs)
        from recon.export.parity import openvino_checks

        openvino_figures = openvino_checks(tmp, data=data, **gate_inputs)
        sidecars = {}
        if engine:
            from recon.export.tensorrt import build_engine

            if (out / "timing.cache").is_file():
                shutil.copyfile(out / "timing.cache", tmp / "timing.cache")
            # --fp16 auto whose twins failed the gate: the engines stay FP32 too.
            engine_mode = "off" if mode == "auto" and fp16_figures and not fp16_figures["passed"] else mode
            int8_engines = {}
            if int8_figures:  # INT8 engines from the calibration caches the twins came with
                from recon.export.int8 import engine_calibration

                int8_engines = engine_calibration(tmp, data=data, **gate_inputs)
            for name in graphs:
                sides = (framing_size(preset), s) if name == "sketch" and framing_size(preset) else None
                sidecars[name] = build_engine(tmp / files[name], tmp / f"{name}.engine", profile=plan["profile"],
                                              sides=sides,
                                              fp16=engine_mode, workspace=workspace_bytes,
                                              timing_cache=tmp / "timing.cache", log=log,
                                              **int8_engines.get(name, {}))
        write_json_atomic(tmp / "plan.json", plan)
        manifest = build_manifest(
            tmp, metadata, plan,
            iou=_read_optional_json(loaded["run"] / "eval.json"),
            recipe=_read_optional_json(loaded["run"] / "recipe.json"),
            parity=parity, fp16=fp16_figures, int8=int8_figures, openvino=openvino_figures, lint=warnings_found,
            engines=sidecars,
            export={"opset": opset, "fp16": mode, "int8": int8, "engine": engine, "vram": vram,
                    "workspace": workspace, "batch": list(wanted), "data": str(data) if data is not None else None,
                    "force": force},
        )
        write_json_atomic(tmp / MANIFEST, manifest)
        verify_model_dir(tmp)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sizes = ", ".join(f"{name} {entry['bytes'] / 2**20:.1f} MiB" for name, entry in manifest["files"].items())
    say(f"wrote {out}: {sizes}")
    return manifest
