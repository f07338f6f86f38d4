#!/usr/bin/env bash
# The paper's ablation on a CPU budget: plain hyperprior, +channel attention, +attention+post-filter.
# Same size (N=64, M=128), data, crops, seed, steps and λ for every variant; each trains from scratch.
# Evaluate with: python benchmarks/ablation.py runs/ablation
set -euo pipefail
DATA=${DATA:-../shared/data/train}
STEPS=${STEPS:-2500}
for lmbda in ${LAMBDAS:-0.0067 0.025}; do
  for model in plain-hyperprior attn-hyperprior-noPF attn-hyperprior; do
    .venv/bin/attncomp-train --config configs/lite.yaml --data "$DATA" \
      --model.model "$model" --lmbda "$lmbda" --max-steps "$STEPS" --trainer.val_check_interval "$STEPS" \
      --seed_everything 0 --out "runs/ablation/$model-$lmbda" --resume last
  done
done
