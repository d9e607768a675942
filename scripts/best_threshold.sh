#!/usr/bin/env bash
# Prints the iso level with the best mean IoU on TRAINING objects (20 per category, 1 trial) of DATA for
# MODEL's VARIANT, writing the sweep to JSON; used by evaluate_default.sh and compare_on_real.sh.
#   scripts/best_threshold.sh DATA MODEL VARIANT JSON
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/recon-cli eval --data "$1" --model "$2" --variant "$3" --split train --max-objects 20 --trials 1 \
  --json "$4" > /dev/null
.venv/bin/python -c "import json, sys; print(json.load(open(sys.argv[1]))['best_threshold'])" "$4"
