#!/usr/bin/env bash
# The CypherTalk flow on SST-2 with the bundled model, once lossless (horizontal-only) and once with
# vertical noise (preset medium): keygen -> shake -> encode -> tune (the cloud) -> private inference
# -> recover -> plaintext inference with the recovered model.
set -euo pipefail
BIN=${BIN:-.venv/bin}
SST2=${SST2:-../shared/data/sst2}
OUT=${OUT:-flow-demo-out}
TRAIN_ROWS=${TRAIN_ROWS:-2000}
STEPS=${STEPS:-150}
[ -f "$SST2/train.tsv" ] || { echo "SST-2 not found in $SST2 (set SST2=...)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
head -n $((TRAIN_ROWS + 1)) "$SST2/train.tsv" > "$OUT/private-train.tsv"
st="$BIN/shaketune"
for preset in horizontal-only medium; do
  d="$OUT/$preset"
  mkdir -p "$d"
  echo "== $preset"
  "$st" keygen --preset "$preset" --out "$d/owner.key"
  "$st" shake --key "$d/owner.key" --out "$d/upload-model"
  "$st" encode --key "$d/owner.key" --data "$OUT/private-train.tsv" --out "$d/upload-data.jsonl" --max-length 64
  "$st" tune --model "$d/upload-model" --data "$d/upload-data.jsonl" --out "$d/cloud-tuned" --steps "$STEPS"
  echo "private inference on SST-2 test (tuned shaken model, ids encoded with the key):"
  "$st" evaluate --model "$d/cloud-tuned" --key "$d/owner.key" --data "$SST2/test.tsv"
  "$st" recover --model "$d/cloud-tuned" --key "$d/owner.key" --out "$d/recovered"
  echo "recovered model on plaintext SST-2 test (no key needed any more):"
  "$st" evaluate --model "$d/recovered" --data "$SST2/test.tsv"
done
