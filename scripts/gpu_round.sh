#!/usr/bin/env bash
# One GPU training round: install the trip's wheels, then train (scripts/gpu_round.py).
#
#   scripts/gpu_round.sh OUT [--minutes 7] [--qualities 1 3 5 7] [attncomp-train options]
#
# Run scripts/prepare_gpu_trip.py here first: it fills the git-ignored .trip/ with the wheels
# the GPU machine lacks and the training-data pack. PYTHON picks the interpreter (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# the GPU machine lacks these; a development environment has them already
if ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ['compressai', 'jsonargparse', 'pytorch_msssim'])))"; then
    SITE=$(mktemp -d)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .trip/wheels/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" scripts/gpu_round.py "$@"
