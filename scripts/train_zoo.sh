#!/usr/bin/env bash
# How the bundled models were trained (2-core CPU; see README "Bundled models" for the budget).
# One rate is trained long, the others are fine-tuned from it. Run from the repository root.
set -euo pipefail
DATA=${DATA:-../shared/data/train}
VAL=${VAL:-../shared/data/kodak}
TRAIN=".venv/bin/attncomp-train --config configs/lite.yaml --data $DATA --val-data $VAL"

# quality 3 (λ=0.0067): the base model
$TRAIN --lmbda 0.0067 --max-steps "${BASE_STEPS:-5600}" --out runs/q3 --resume last

# qualities 1, 5, 7: fine-tuned from quality 3, the learning rate decaying over the second half
for q in "1 0.0018" "5 0.025" "7 0.0932"; do
  set -- $q
  $TRAIN --lmbda "$2" --model.init_weights runs/q3/weights.pt --model.decay_start 0.5 \
         --max-steps "${FINETUNE_STEPS:-1000}" --trainer.val_check_interval 1000 --out "runs/q$1" --resume last
done

# Wibowo's spatial-attention autoencoder (RGB), quality 3
$TRAIN --lmbda 0.0067 --model.model spatial-ae --model.lr 1e-3 --max-steps "${AE_STEPS:-3000}" --out runs/spatial-ae --resume last

for run in q1 q3 q5 q7; do .venv/bin/python scripts/bundle_weights.py "runs/$run/weights.pt"; done
.venv/bin/python scripts/bundle_weights.py runs/spatial-ae/weights.pt
