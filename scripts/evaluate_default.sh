#!/usr/bin/env bash
# Evaluates the default run (Table 1 and Table 2 layouts on the synthetic test split, and the full
# model on the real test split) and exports it into the package. Thresholds are chosen on TRAINING
# objects (20 per category) of the real set when there is one (else the synthetic set), never on a
# test split.
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTH=${SYNTH:-data/synth-v1}
REAL=${REAL-data/corpus-v1}
RUN=${RUN:-runs/default}
MODEL=${MODEL:-recon/models/default}
RESULTS=${RESULTS:-docs/results}
CLI=.venv/bin/recon-cli
PY=.venv/bin/python
PICK=${REAL:-$SYNTH}
mkdir -p "$RESULTS"

# The variants whose checkpoints the run has (edge2's recipe trains no joint or direct stage); the
# deployable chain is sketch + joint, else sketch + voxel ("no-refine"), as `recon-cli export` picks.
declare -A NEEDS=([full]=joint [no-refine]=voxel [direct]=direct)
VARIANTS=()
for variant in full no-refine direct; do
  [ -f "$RUN/${NEEDS[$variant]}.pt" ] && VARIANTS+=("$variant")
done
DEPLOYED=$([ -f "$RUN/joint.pt" ] && echo full || echo no-refine)
for variant in "${VARIANTS[@]}"; do
  threshold=$(scripts/best_threshold.sh "$PICK" "$RUN" "$variant" "$RUN/threshold-$variant.json")
  COLUMNS=120 $CLI eval --data "$SYNTH" --model "$RUN" --variant "$variant" --trials 3 --threshold "$threshold" \
    --json "$RUN/eval-$variant.json" | tee "$RESULTS/eval-$variant.txt"
done
cp "$RUN/eval-$DEPLOYED.json" "$RUN/eval.json"
PRESET=${PRESET:-edge2} $PY - "$RUN" "$SYNTH" $REAL <<'PY'
import json, os, sys
run, *folders = sys.argv[1:]
data = []
for folder in folders:
    manifest = json.load(open(f"{folder}/manifest.json"))
    data.append({"folder": folder, "kind": manifest["kind"], "fingerprint": manifest["fingerprint"],
                 "settings": manifest["settings"], "objects": len(manifest["objects"]),
                 "excluded": manifest.get("excluded", []),
                 "terms": "research and educational use only (../shared/corpus/README.md)"
                          if manifest["kind"] == "build" else "our own procedural shapes: no third-party terms"})
recipe = {"data": ["scripts/make_data.sh"] + (["scripts/make_corpus_data.sh"] if len(folders) > 1 else []),
          "train": "scripts/train_default.sh", "evaluate": "scripts/evaluate_default.sh", "seed": 0,
          "preset": os.environ.get("PRESET", "edge2"), "datasets": data, "metrics": [json.loads(l) for l in open(f"{run}/metrics.jsonl")]}
json.dump(recipe, open(f"{run}/recipe.json", "w"), indent=2)
PY
threshold=$($PY -c "import json; print(json.load(open('$RUN/eval.json'))['threshold'])")
COLUMNS=120 $CLI export --weights "$RUN" --out "$MODEL" --threshold "$threshold" --data "$SYNTH" | tee "$RESULTS/export.txt"
COLUMNS=120 $CLI eval --data "$SYNTH" --model "$MODEL" --trials 3 --json "$RUN/eval-onnx.json" | tee "$RESULTS/eval-onnx.txt"
if [ -n "$REAL" ]; then
  COLUMNS=120 $CLI eval --data "$REAL" --model "$MODEL" --trials 3 --json "$RUN/eval-real.json" | tee "$RESULTS/eval-real.txt"
fi
