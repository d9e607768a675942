#!/usr/bin/env bash
# The synthetic training set of the shipped default model (edge preset). Resumable: re-run to finish.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synth-v1}
.venv/bin/recon-cli data synth --out "$DATA" --objects 300 --views 20 --image-size 256 --voxel-res 64 --seed 0
.venv/bin/recon-cli data preview "$DATA" --out "$DATA/preview.png" --samples 9
