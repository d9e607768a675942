"""`recon-cli export`: a trained run folder -> a deployable model folder (ONNX, optional FP16/INT8/TensorRT).

Registered in cli/main.py as `app.command("export")(export)`. Only typer and pathlib at import time:
torch and the ONNX tooling load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(
    weights: Path = typer.Option(..., "--weights", help="Run folder with sketch.pt and joint.pt (or voxel.pt)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (replaced as a whole, never half-written)."),
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
    from recon.export.onnx_export import export_model

    export_model(weights, out, fp16=fp16, engine=engine, vram=vram, workspace=workspace, batch=batch,
                 data=data, force=force, opset=opset, threshold=threshold, int8=int8)
