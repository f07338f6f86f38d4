#!/bin/sh
# A/B of the training crop: 16×128² crops (the lineage's) against 4×256² (the same pixels per step),
# equal steps (12,000) from round 9's weights (172,007 steps), same seed and schedule. At 128² the hyper
# latent z of a crop is 2×2 and y 8×8, so h_a/h_s learn mostly at padded borders; whole-image
# validation decides. Run from the repository root; to rerun from round 9's weights, first
# git checkout 4325b89 -- results/vbr-m192/weights (results/vbr-m192/weights now holds round 11's).
common="--plan ablation --variants residual-meanscale-M192 --steps 184007 --init results/vbr-m192/weights --minutes 60 --deadline 65 --check-images 0 --seed_everything 32 --accelerator cpu --precision bf16-mixed --model.lr 1e-4 --model.schedule steps --model.decay_start 0.55 --model.lr_final_ratio 0.15 --model.level_weighting relative --model.synthesis_input rounded"
date
.venv/bin/python scripts/gpu_round.py runs/cpu-round/ab-crop128 $common --runs runs/cpu-round/ab-crop128-runs
date
.venv/bin/python scripts/gpu_round.py runs/cpu-round/ab-crop256 $common --runs runs/cpu-round/ab-crop256-runs --data.crop_size 256 --data.batch_size 4
date
