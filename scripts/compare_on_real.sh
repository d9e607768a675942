#!/usr/bin/env bash
# Compares trained models on the real test split (held-out CAD meshes) and on the synthetic test
# split, with `recon-cli eval`: writes each output under WORK and a summary with every output pasted
# to OUT. Each model's iso level is chosen on 20 REAL TRAINING objects per category, never on a test split.
#   scripts/compare_on_real.sh "procedural=runs/default" "mix=runs/mix-ft"
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTH=${SYNTH:-data/synth-v1}
REAL=${REAL:-data/corpus-v1}
WORK=${WORK:-runs/compare}
OUT=${OUT:-docs/results/real-shapes.md}
CLI=.venv/bin/recon-cli
PY=.venv/bin/python
mkdir -p "$WORK"
for pair in "$@"; do
  name=${pair%%=*}
  model=${pair#*=}
  threshold=$(scripts/best_threshold.sh "$REAL" "$model" full "$WORK/$name-threshold.json")
  for split in real synth; do
    data=$REAL; [ "$split" = synth ] && data=$SYNTH
    COLUMNS=120 $CLI eval --data "$data" --model "$model" --trials 3 --threshold "$threshold" \
      --json "$WORK/$name-$split.json" > "$WORK/$name-$split.txt"
  done
  echo "$name: real test split, $(grep "^IoU at 32" "$WORK/$name-real.txt")"
done
$PY - "$OUT" "$WORK" "$@" <<'PY'
import json, sys
from pathlib import Path
out, work, *pairs = sys.argv[1:]
names = [pair.split("=", 1) for pair in pairs]
lines = ["| model | weights | threshold | real: airplane | car | chair | **mean** | synthetic mean "
         "| real silhouette IoU | real depth MAE | real normal error (deg) |", "|---" * 11 + "|"]
sweeps = []
for name, model in names:
    real = json.load(open(f"{work}/{name}-real.json"))
    synth = json.load(open(f"{work}/{name}-synth.json"))
    iou, sketch = real["iou"], real["sketch"]
    lines.append(f"| {name} | `{model}` | {real['threshold']} | {iou['airplane']:.3f} | {iou['car']:.3f} | "
                 f"{iou['chair']:.3f} | **{iou['mean']:.3f}** | {synth['iou']['mean']:.3f} | "
                 f"{sketch.get('silhouette_iou', float('nan')):.3f} | {sketch.get('depth_mae', float('nan')):.4f} | "
                 f"{sketch.get('normal_angle_deg', float('nan')):.1f} |")
    levels = list(real["per_threshold"])
    sweeps.append((name, levels, [real["per_threshold"][t]["mean"] for t in levels]))
levels = sweeps[0][1]
sweep = ["| model | " + " | ".join(levels) + " |", "|---" * (len(levels) + 1) + "|"]
sweep += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for name, _, values in sweeps]
pasted = []
for name, model in names:
    for split in ("real", "synth"):
        pasted += [f"`recon-cli eval --data {'REAL' if split == 'real' else 'SYNTH'} --model {model}` ({name}):",
                   "", "```", Path(f"{work}/{name}-{split}.txt").read_text().rstrip(), "```", ""]
Path(out).write_text("\n".join(
    ["# Real shapes: procedural-only vs procedural + real training data", "",
     "Made by `scripts/compare_on_real.sh`. Real: the 80 held-out meshes of the CAD corpus test split "
     "(41 airplanes, 20 cars, 19 chairs), synthetic: the 180 procedural test objects; voxel IoU at 32^3, "
     "3 trials of one random view per object; iso level chosen on 20 real training objects per category.", ""]
    + lines + ["", "Mean IoU on the real test split per iso level (the threshold sweep):", ""] + sweep
    + ["", "## The `recon-cli eval` outputs", ""] + pasted) + "\n")
print(f"wrote {out}")
PY
