#!/usr/bin/env bash
# Private fine-tuning of a causal language model, end to end and offline (make lm-demo): a small
# Llama-architecture model built here with the bundled tokenizer and pretrained on public text; a short
# study of shaking settings, full tuning against LoRA, with SST-2 training sentences as private documents
# (next-token accuracy by private inference); the setting selected under the default leakage cap; then the
# owner's flow with it: key, shaken model, encoded upload, the cloud's tuning, private evaluation against
# the recovered model, and private generation. The study starts from five shipped settings
# (scripts/lm-demo-start.json: noise, flattening, and per-occurrence substitution of all but the 1,000 most
# frequent public tokens) and runs without a cap so every trial's accuracy shows; the default cap (the
# bound on rare tokens and planted secrets at most 0.05) applies when selecting.
set -euo pipefail
BIN=${BIN:-.venv/bin}
SST2=${SST2:-../shared/data/sst2}
OUT=${OUT:-lm-demo-out}
TRIALS=${TRIALS:-6}
[ -f "$SST2/train.tsv" ] || { echo "SST-2 not found in $SST2 (set SST2=...)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
DB="sqlite:///$OUT/shaketune.db"
st="$BIN/shaketune"
MODEL="$OUT/small-llama"
DATA=(--train "$SST2/train.tsv" --eval "$SST2/dev.tsv[0:300]" --public "$SST2/dev.tsv[1000:]")
set -x
"$st" small-lm --out "$MODEL" --public "$SST2/dev.tsv[1000:]" --steps 300
"$st" optimize --study lm-demo --storage "$DB" --trials "$TRIALS" --seed 0 --no-leakage-cap --strategy plain \
  --model "$MODEL" --task-kind lm "${DATA[@]}" --train-size 500 --max-length 32 \
  --steps 100 --learning-rates 1e-3 --modes full,lora --lora-ranks 8 --recovery-steps 0 \
  --operators gaussian --max-shares 1,0.002,0.001 --keep-top 0,1000 --candidates vocabulary \
  --enqueue scripts/lm-demo-start.json
"$st" select --study lm-demo --storage "$DB" --max-leakage 0.05 --out "$OUT/selected-settings.json"
"$st" keygen --model "$MODEL" --settings "$OUT/selected-settings.json" --public-text "$SST2/dev.tsv[1000:]" \
  --out "$OUT/owner.key"
"$st" shake --key "$OUT/owner.key" --model "$MODEL" --out "$OUT/shaken"
"$st" encode --key "$OUT/owner.key" --model "$MODEL" --task-kind lm --data "$SST2/train.tsv[0:500]" \
  --max-length 32 --out "$OUT/upload.jsonl"
set +x
tuning() { "$BIN/python" -c "import json,sys; print(json.load(open('$OUT/selected-settings.json'))['tuning'][sys.argv[1]])" "$1"; }
set -x
"$st" tune --model "$OUT/shaken" --task-kind lm --data "$OUT/upload.jsonl" --out "$OUT/tuned" \
  --steps "$(tuning steps)" --learning-rate "$(tuning learning_rate)" --mode "$(tuning mode)"
"$st" evaluate --model "$OUT/tuned" --key "$OUT/owner.key" --task-kind lm --data "$SST2/dev.tsv[0:300]" \
  --max-length 32
"$st" recover --model "$OUT/tuned" --key "$OUT/owner.key" --out "$OUT/recovered"
"$st" evaluate --model "$OUT/recovered" --task-kind lm --data "$SST2/dev.tsv[0:300]" --max-length 32
"$st" generate --model "$OUT/tuned" --key "$OUT/owner.key" --prompt "the film is" --max-new-tokens 12
set +x
echo
echo "private evaluation: the owner's key-holding inference on the cloud's tuned model; the recovered model"
echo "is what the owner keeps (equal for 1:1 keys; for homophonic keys the copies' rows are averaged)"
echo "review the study:  $st dashboard --storage $DB   (then open http://127.0.0.1:8080)"
