#!/bin/sh
# A/B of the level weighting, equal steps from the round-2 weights (57,900 steps)
# (kept at commit af82908; results/vbr-m192/weights now holds the relative arm's: to rerun, first
#  git checkout af82908 -- results/vbr-m192/weights). Run from the repository root.
common="--plan ablation --variants residual-meanscale-M192 --steps 66400 --init results/vbr-m192/weights --minutes 65 --deadline 70 --check-images 0 --seed_everything 25 --accelerator cpu --precision bf16-mixed --model.lr 1e-4 --model.schedule steps --model.decay_start 0.55 --model.lr_final_ratio 0.15"
date
.venv/bin/python scripts/gpu_round.py runs/cpu-round/ab-uniform $common --runs runs/cpu-round/ab-uniform-runs
date
.venv/bin/python scripts/gpu_round.py runs/cpu-round/ab-relative $common --runs runs/cpu-round/ab-relative-runs --model.level_weighting relative
date
