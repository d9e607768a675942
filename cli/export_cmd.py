"""`recon-cli export`: a trained run folder -> a deployable model folder (ONNX, optional FP16/INT8/TensorRT).

Registered in cli/main.py as `app.command("export")(export)`. Only typer and pathlib at import time:
torch and the ONNX tooling load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recon.cli import options


def export(
    weights: Path = typer.Option(..., "--weights", help="Run folder with sketch.pt and joint.pt (or voxel.pt)."),
    out: Path = options.output_dir(..., "Model folder to write (replaced as a whole, never half-written).", "--out"),
    fp16: str = typer.Option("off", "--fp16", help="FP16 twins: off | on (must pass the accuracy gate) | auto "
                             "(kept only if they pass; engines FP16 only on GPUs with fast FP16)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 twins (QDQ, for ONNX Runtime and OpenVINO) and TensorRT "
                              "calibration caches, calibrated on --data's training views; refused unless they pass "
                              "the accuracy gate (layers fall back to FP32 step by step first)."),
    engine: bool = typer.Option(False, "--engine", help="Also build TensorRT engines for this GPU (needs TensorRT)."),
    vram: str = typer.Option("4GiB", "--vram", help="GPU memory to plan for, e.g. 4GiB, 2GiB (Jetson: what is free)."),
    workspace: str = typer.Option("1GiB", "--workspace", help="TensorRT builder workspace limit."),
    batch: str = typer.Option("1,1,8", "--batch",
                              help="TensorRT profile batch min,opt,max (max lowered to fit --vram)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder for the FP16/INT8/BF16 accuracy gates "
                                        "(test split; train if it has none) and INT8 calibration (train split)."),
    force: bool = typer.Option(False, "--force", help="Keep FP16/INT8 twins that fail the accuracy gate."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13..17; TensorRT 8.6 reads up to 17)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Default iso level stored in the model "
                                              "(choose it with `recon-cli eval --split train`; default 0.4)."),
):
    """Export a run folder to a model folder that `recon-cli` runs without torch.

    Always checks ONNX Runtime against PyTorch, lints for TensorRT 8.6 and plans GPU memory.
    """
    from recon.cli import console as ui
    from recon.export.onnx_export import export_model

    manifest = export_model(weights, out, log=lambda message: ui.err.print(ui.esc(message)), fp16=fp16, engine=engine, vram=vram, workspace=workspace, batch=batch,
                 data=data, force=force, opset=opset, threshold=threshold, int8=int8)
    ui.out.print(files_table(out, manifest))


def files_table(out: Path, manifest: dict):
    """What the export wrote, one row per file (model.json included), with the check each file passed."""
    from rich.table import Table

    from recon.cli.console import esc

    lint, parity, fp16 = manifest.get("lint") or {}, manifest.get("parity"), manifest.get("fp16")
    table = Table(title=f"wrote {esc(out)}")
    for column in ("file", "MiB", "checks"):
        table.add_column(column, justify="right" if column == "MiB" else "left")

    def checks(name: str) -> str:
        net = name.split(".")[0]
        if name.endswith(".fp16.onnx") and fp16:
            return "FP16 accuracy gate " + ("passed" if fp16.get("passed") else "failed (kept: --force)")
        if name == f"{net}.onnx":
            findings = lint.get(net) or []
            linted = "clean" if not findings else f"{len(findings)} finding(s), printed above"
            return f"TensorRT 8.6 lint {linted}; " + ("parity with PyTorch passed" if parity else "parity not checked")
        return {"plan.json": "GPU memory plan"}.get(name, "")

    for name, entry in manifest["files"].items():
        table.add_row(esc(name), f"{entry['bytes'] / 2**20:.1f}", checks(name))
    table.add_row("model.json", f"{(out / 'model.json').stat().st_size / 2**20:.1f}", "sha256 of every file above")
    return table
