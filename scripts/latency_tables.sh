#!/usr/bin/env bash
# The README's latency tables, regenerated for a trained run: export RUN with INT8 twins (calibrated
# on DATA's training views, gated on its test views; the export also checks OpenVINO and gates its
# BF16), then benchmarks/bench_runtime.py (every engine beside PyTorch eager, interleaved) and
# `recon-cli profile --compare` (same pictures at every batch size, sgemm peak, share per network).
# Run it on a quiet machine: the tables are side-by-side ratios, but a busy CPU still blurs them.
#
#   scripts/latency_tables.sh [RUN] [DATA] [OUT]      defaults: runs/default data/synth-v1 runs/latency
#   scripts/latency_tables.sh recon/models/default    a model folder: measured as it is (no export, so no
#                                                     INT8 twins; PyTorch eager from its imported weights)
#
# Writes OUT/model (the export), OUT/bench_runtime.md, OUT/profile.txt, OUT/profile-int8.txt, OUT/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}
DATA=${2:-data/synth-v1}
OUT=${3:-runs/latency}
BIN=.venv/bin
mkdir -p "$OUT"

MODEL=$OUT/model
if [ -f "$RUN/model.json" ]; then
    MODEL=$RUN
elif ! $BIN/recon-cli export --weights "$RUN" --out "$OUT/model" --int8 --data "$DATA" 2>&1 | tee "$OUT/export.log"; then
    echo "INT8 twins refused by the gate (see $OUT/export.log): exporting without them" >&2
    $BIN/recon-cli export --weights "$RUN" --out "$OUT/model" --data "$DATA" 2>&1 | tee -a "$OUT/export.log"
fi
$BIN/python benchmarks/bench_runtime.py --weights "$RUN" --model "$MODEL" --threads "$(nproc)" \
    | tee "$OUT/bench_runtime.md"
$BIN/recon-cli profile --model "$MODEL" --batch 1,8 --iterations 20 --compare --weights "$RUN" \
    --json "$OUT/profile.json" | tee "$OUT/profile.txt"
if [ -f "$MODEL/sketch.int8.onnx" ]; then
    $BIN/recon-cli profile --model "$MODEL" --batch 1,8 --iterations 20 --int8 \
        --json "$OUT/profile-int8.json" | tee "$OUT/profile-int8.txt"
fi
