#!/usr/bin/env bash
# Reproduces the shipped default model (edge preset) on a 2-core CPU. Resumable: every stage runs
# with --resume, so re-running the script continues where it stopped. Two independent chains run
# side by side, one core each: the sketch net, and voxel -> gan -> joint -> direct (the voxel
# stages train on ground-truth sketches, so they do not wait for the sketch net).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synth-v1}
RUN=${RUN:-runs/default}
CLI=.venv/bin/recon-cli
export OMP_NUM_THREADS=1
COMMON=(--data "$DATA" --out "$RUN" --preset edge --seed 0 --resume --workers 1)

[ -f "$DATA/manifest.json" ] || scripts/make_data.sh
mkdir -p "$RUN"

( $CLI train sketch "${COMMON[@]}" --epochs "${SKETCH_EPOCHS:-2}" --batch 32 ) > "$RUN/sketch.log" 2>&1 &
sketch=$!
(
  $CLI train voxel "${COMMON[@]}" --epochs "${VOXEL_EPOCHS:-3}" --batch 32 --lr "${VOXEL_LR:-0.01}"
  $CLI train gan "${COMMON[@]}" --epochs "${GAN_EPOCHS:-30}" --batch 4
  $CLI train joint "${COMMON[@]}" --epochs "${JOINT_EPOCHS:-1}" --batch 32 --lr "${JOINT_LR:-0.001}" --alpha "${ALPHA:-1e-11}"
  $CLI train direct "${COMMON[@]}" --epochs "${DIRECT_EPOCHS:-3}" --batch 32 --lr "${VOXEL_LR:-0.01}"
) > "$RUN/voxel-chain.log" 2>&1 &
chain=$!
wait $sketch $chain
