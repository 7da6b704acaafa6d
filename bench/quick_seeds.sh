#!/usr/bin/env bash
# Runs the `quick` preset for several seeds on one store and writes each summary to bench/results/.
# The first seed starts from an empty store (its wall time is the cold-run figure); later seeds reuse the
# seed-independent stages (pool, start evaluation, bi labels). Usage: bench/quick_seeds.sh [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-./te-store-quick}
SEEDS=${*:-2021 1 2}
mkdir -p bench/results
for seed in $SEEDS; do
  start=$(date +%s)
  .venv/bin/trans-encoder self-distill --preset quick --store "$STORE" --seed "$seed" \
    --run-name "quick-seed-$seed" --summary "bench/results/quick-seed-$seed.json" ${EXTRA_ARGS:-}
  echo "seed $seed: $(( $(date +%s) - start )) s wall" | tee -a bench/results/quick-seeds.log
done
