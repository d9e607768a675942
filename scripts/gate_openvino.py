#!/usr/bin/env python
"""Check OpenVINO on an existing model folder and record it in its model.json, as `recon-cli export`
does at export: FP32 against ONNX Runtime, and BF16 through the accuracy gate where this CPU has BF16.

    .venv/bin/python scripts/gate_openvino.py recon/models/default --data data/synth-v1

For a model exported on a CPU without BF16 (the runtime then keeps OpenVINO at FP32 everywhere, since
BF16 was never measured): run it once on a BF16 CPU, and `--device auto` takes BF16 where it passed.
The networks are not touched; only model.json's "openvino" entry is replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="Model folder (recon-cli export).")
    parser.add_argument("--data", type=Path, default=None, help="Dataset folder whose test views the BF16 gate "
                        "scores (default: the seeded synthetic batch only).")
    args = parser.parse_args(argv)

    from recon.export.parity import openvino_checks
    from recon.runtime.errors import ReconError
    from recon.runtime.fileio import write_json_atomic
    from recon.runtime.model import MANIFEST, load_model_dir, read_json
    from recon.runtime.openvino_backend import GATE_KEY, model_precision

    try:
        model = load_model_dir(args.model)
        figures = openvino_checks(model.path, image_size=model.image_size, voxel_res=model.voxel_res,
                                  mean=model.mean, std=model.std, threshold=model.threshold, data=args.data)
    except ReconError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if figures is None:
        print("error: openvino is not installed (pip install 'recon[openvino]')", file=sys.stderr)
        return 2
    manifest = read_json(model.path / MANIFEST)
    manifest[GATE_KEY] = figures
    write_json_atomic(model.path / MANIFEST, manifest)
    precision, note = model_precision(manifest)
    print(f"wrote {model.path / MANIFEST}: OpenVINO on this CPU runs {precision.upper()}"
          + (f" ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
