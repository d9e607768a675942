"""Run folders: one self-describing checkpoint per stage, written atomically, read with weights_only."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from recon.runtime.errors import ModelError
from recon.runtime.fileio import write_bytes_atomic
from recon.train.presets import Preset, preset_from_args


def checkpoint_path(run: str | Path, stage: str) -> Path:
    return Path(run) / f"{stage}.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """state: plain types and tensors only (so weights_only loading works); config as JSON text."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path, expect_preset: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found (train that stage first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, garbage bytes, foreign pickle: all just "corrupt"
        raise ModelError(f"{path}: corrupt or not a recon checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or "model_args" not in state or "nets" not in state:
        raise ModelError(f"{path}: not a recon checkpoint (no model_args/nets)")
    if expect_preset is not None and state["model_args"].get("name") != expect_preset:
        raise ModelError(f"{path}: checkpoint of preset {state['model_args'].get('name')!r}, "
                         f"expected {expect_preset!r}")
    return state


def checkpoint_preset(state: dict) -> Preset:
    return preset_from_args(state["model_args"])


def checkpoint_config(state: dict) -> dict:
    return json.loads(state["config"])


def resume_changes(state: dict, config: dict, data_fingerprint: str) -> list[str]:
    """What a resuming run would change against the checkpoint it continues: its data, batch or seed."""
    try:
        old = json.loads(state.get("config") or "{}")
    except (TypeError, ValueError):
        old = {}
    changes = []
    if state.get("data_fingerprint") not in (None, data_fingerprint):
        changes.append(f"data (fingerprint {state['data_fingerprint']} -> {data_fingerprint})")
    for key in ("batch", "seed"):
        if key in old and key in config and old[key] != config[key]:
            changes.append(f"--{key} ({old[key]} -> {config[key]})")
    return changes


def resume_history(state: dict, changes: list[str]) -> list[dict]:
    """The checkpoint's history, plus (when the resume changes something) what it ran with until now:
    a resumed run never overwrites the record of the data and settings its earlier epochs saw."""
    history = list(state.get("history") or [])
    if changes:
        history.append({"until_epoch": int(state.get("epoch", -1)) + 1, "data_fingerprint": state.get("data_fingerprint"),
                        "config": state.get("config"), "changes": changes})
    return history
