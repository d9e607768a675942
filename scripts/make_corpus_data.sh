#!/usr/bin/env bash
# The real-shape dataset: ../shared/corpus (431 CAD meshes; research and educational use only, see
# its README) turned into the canonical frame with --auto-orient and the checked overrides, rendered
# with the same renderer and cameras as the procedural set. Split 80/20 by mesh per category (seed 0,
# stored in the manifest). Resumable: re-run to finish; also re-renders meshes whose override changed.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-../shared/corpus}
DATA_OUT=${DATA_OUT:-data/corpus-v1}
.venv/bin/recon-cli data build --meshes "$CORPUS" --out "$DATA_OUT" --auto-orient \
  --overrides scripts/corpus-overrides.tsv --views 20 --image-size 256 --voxel-res 64 --seed 0
.venv/bin/recon-cli data preview "$DATA_OUT" --out "$DATA_OUT/preview.png" --samples 9
.venv/bin/recon-cli data preview "$DATA_OUT" --orientations --out "$DATA_OUT/orientations.png"
