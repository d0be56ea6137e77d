#!/usr/bin/env bash
# A SIND model and a linear-rescaling model averaged, on the frozen recipe
# (configs/native.yaml), against two models of one method: benchmarks/real.md, "A SIND
# model and a linear-rescaling model averaged". Trains every run (about a minute each with
# the frozen features cached, ~45 min in all on 2 CPU cores; runs already finished are
# kept), then prints the comparisons (benchmarks/average_runs.py --groups).
#   bash benchmarks/sind_linear_pair.sh [runs/pair]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/pair}
mkdir -p "$OUT"
S0='split.seeds=[0,1,2,3,4,5,6,7,8,9]'
S10='split.seeds=[10,11,12,13,14,15,16,17,18,19]'
CLIVE='datasets=[{name: clive, root: ../../shared/data/CLIVE, allow_missing: true}]'
BIQ='datasets=[{name: biq2021, root: ../../shared/data/BIQ2021, allow_missing: true}]'
declare -A RATIOS=([s80]='split.ratios=[0.8,0.0,0.2]' [s60]='split.ratios=[0.6,0.2,0.2]')

train() {   # train FOLDER OVERRIDES...: one `mixiqa train` unless it already finished
  local out=$OUT/$1; shift
  [ -f "$out/results.json" ] && return 0
  MIXIQA_QUIET=1 uv run mixiqa train configs/native.yaml --out "$out" "$@" > "$out.log" 2>&1
}

for p in s80 s60; do
  for s in S0 S10; do
    for m in sind linear; do
      for t in 0 1; do   # train.seed 1: a second model of the same method, other draws
        train "$p-$s-$m-t$t" --set "${!s}" --set "${RATIOS[$p]}" --set method.name=$m \
          --set train.seed=$t
      done
    done
    train "$p-$s-clive-alone" --set "${!s}" --set "${RATIOS[$p]}" --set method.name=naive \
      --set "$CLIVE"
    train "$p-$s-biq-alone" --set "${!s}" --set "${RATIOS[$p]}" --set method.name=naive \
      --set "$BIQ"
  done
done
for s in S0 S10; do   # the other regression mappers as partners, split80 only
  train "s80-$s-monotonic-t0" --set "${!s}" --set "${RATIOS[s80]}" --set method.name=monotonic
  train "s80-$s-mimi-t0" --set "${!s}" --set "${RATIOS[s80]}" --set method.name=mimi \
    --set 'method.mapper_kwargs={hidden: [32, 32], steps: 20}'
done

for p in s80 s60; do
  for s in S0 S10; do
    r() { echo "$OUT/$p-$s-$1"; }
    pairs=()
    [ "$p" = s80 ] && pairs=("$(r sind-t0)+$(r monotonic-t0)" "$(r sind-t0)+$(r mimi-t0)")
    echo "== $p, seeds ${!s#split.seeds=}"
    uv run python benchmarks/average_runs.py --groups "$(r linear-t0)+$(r linear-t1)" \
      "$(r linear-t0)" "$(r sind-t0)" "$(r sind-t0)+$(r sind-t1)" "$(r clive-alone)" \
      "$(r biq-alone)" "$(r sind-t0)+$(r linear-t0)" "${pairs[@]}"
  done
done
