#!/usr/bin/env bash
# Evaluates the default run (Table 1 and Table 2 layouts) and exports it into the package.
# Thresholds are chosen on the TRAIN split (20 objects per category), never on the test split.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synth-v1}
RUN=${RUN:-runs/default}
MODEL=${MODEL:-recon/models/default}
RESULTS=${RESULTS:-docs/results}
CLI=.venv/bin/recon-cli
PY=.venv/bin/python
mkdir -p "$RESULTS"

best_threshold() {  # variant -> the iso level with the best mean IoU on training objects
  $CLI eval --data "$DATA" --model "$RUN" --variant "$1" --split train --max-objects 20 --trials 1 \
    --json "$RUN/threshold-$1.json" > /dev/null
  $PY -c "import json, sys; print(json.load(open(sys.argv[1]))['best_threshold'])" "$RUN/threshold-$1.json"
}

for variant in full no-refine direct; do
  threshold=$(best_threshold "$variant")
  COLUMNS=120 $CLI eval --data "$DATA" --model "$RUN" --variant "$variant" --trials 3 --threshold "$threshold" \
    --json "$RUN/eval-$variant.json" | tee "$RESULTS/eval-$variant.txt"
done
cp "$RUN/eval-full.json" "$RUN/eval.json"
$PY - "$DATA" "$RUN" <<'PY'
import json, sys
data, run = sys.argv[1:]
manifest = json.load(open(f"{data}/manifest.json"))
recipe = {"data": "scripts/make_data.sh", "train": "scripts/train_default.sh",
          "evaluate": "scripts/evaluate_default.sh", "seed": 0, "preset": "edge",
          "data_fingerprint": manifest["fingerprint"], "data_settings": manifest["settings"],
          "objects": len(manifest["objects"]), "metrics": [json.loads(l) for l in open(f"{run}/metrics.jsonl")]}
json.dump(recipe, open(f"{run}/recipe.json", "w"), indent=2)
PY
threshold=$($PY -c "import json; print(json.load(open('$RUN/eval-full.json'))['threshold'])")
COLUMNS=120 $CLI export --weights "$RUN" --out "$MODEL" --threshold "$threshold" | tee "$RESULTS/export.txt"
COLUMNS=120 $CLI eval --data "$DATA" --model "$MODEL" --trials 3 --json "$RUN/eval-onnx.json" | tee "$RESULTS/eval-onnx.txt"
