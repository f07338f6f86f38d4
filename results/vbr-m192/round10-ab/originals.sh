#!/bin/sh
# Third arm of round 10's A/B: ab.sh's control (16×128² crops) trained on the lossless originals
# (../shared/data/train, long side ≤ 768) instead of the GPU trip's pack (.trip/data: WebP quality 95,
# 4:2:0 chroma, long side ≤ 512, 40.9 dB mean / 24.9 dB worst against the resized originals), which CPU
# rounds had used since the lineage began on a GPU. The in-training validation then reads the
# originals too, so only attncomp-eval's real files on the validation split compare the arms.
# Like ab.sh, it starts from round 9's weights: first git checkout 4325b89 -- results/vbr-m192/weights.
common="--plan ablation --variants residual-meanscale-M192 --steps 184007 --init results/vbr-m192/weights --minutes 60 --deadline 65 --check-images 0 --seed_everything 32 --accelerator cpu --precision bf16-mixed --model.lr 1e-4 --model.schedule steps --model.decay_start 0.55 --model.lr_final_ratio 0.15 --model.level_weighting relative --model.synthesis_input rounded"
date
.venv/bin/python scripts/gpu_round.py runs/cpu-round/ab-originals $common --runs runs/cpu-round/ab-originals-runs --data ../shared/data/train
date
