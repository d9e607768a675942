#!/usr/bin/env bash
# The joint stage's alpha, measured: short fine-tunes (the first 40 training objects of each
# category, 1 epoch) from the default run's voxel net with the same frozen critic, alpha in
# {0, 1e-11, 1e-3}, each evaluated on the whole test split. Output: docs/results/alpha.md
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synth-v1}
RUN=${RUN:-runs/default}
CLI=.venv/bin/recon-cli
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p docs/results runs/alpha
for alpha in 0 1e-11 1e-3; do
  folder=runs/alpha/$alpha
  mkdir -p "$folder"
  cp "$RUN/sketch.pt" "$RUN/voxel.pt" "$RUN/gan.pt" "$folder/"
  $CLI train joint --data "$DATA" --out "$folder" --preset edge --seed 0 --resume --epochs 1 --batch 32 \
    --lr 0.01 --alpha "$alpha" --max-objects 40 > "$folder/train.log" 2>&1
  $CLI eval --data "$DATA" --model "$folder" --variant full --trials 1 --json "$folder/eval.json" > "$folder/eval.txt"
done
.venv/bin/python - <<'PY' | tee docs/results/alpha.md
import json
print("| alpha | chair | car | airplane | mean (IoU at 0.4, 1 trial) | best threshold |")
print("|---|---|---|---|---|---|")
for alpha in ("0", "1e-11", "1e-3"):
    r = json.load(open(f"runs/alpha/{alpha}/eval.json"))
    print(f"| {alpha} | " + " | ".join(f"{r['iou'][c]:.3f}" for c in ("chair", "car", "airplane", "mean"))
          + f" | {r['best_threshold']} ({r['iou_at_best']['mean']:.3f}) |")
PY
