#!/usr/bin/env bash
# The main job on the embedded default (SQLite): a short multi-objective study of shaking settings on
# SST-2 with the bundled model, then the feasible Pareto front, the selected setting and a real key.
set -euo pipefail
BIN=${BIN:-.venv/bin}
SST2=${SST2:-../shared/data/sst2}
OUT=${OUT:-demo-out}
TRIALS=${TRIALS:-16}
[ -f "$SST2/train.tsv" ] || { echo "SST-2 not found in $SST2 (set SST2=...)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
DB="sqlite:///$OUT/shaketune.db"
st="$BIN/shaketune"
set -x
"$st" optimize --study demo --storage "$DB" --trials "$TRIALS" --timeout 600 --seed 0 \
  --train "$SST2/train.tsv" --eval "$SST2/dev.tsv[0:500]" --public "$SST2/dev.tsv[1000:]" \
  --train-size 1000 --max-length 48 --steps 40,80,160 --learning-rates 1e-4,3e-4 --recovery-steps 0,100
"$st" select --study demo --storage "$DB" --policy knee --out "$OUT/selected-settings.json"
"$st" keygen --settings "$OUT/selected-settings.json" --public-text "$SST2/dev.tsv[1000:]" --out "$OUT/owner.key"
"$st" report --study demo --storage "$DB" --out "$OUT/report"
set +x
echo
echo "review the study:  $st dashboard --storage $DB   (then open http://127.0.0.1:8080)"
echo "or the report:     $OUT/report/index.html"
