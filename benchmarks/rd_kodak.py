"""Rate–distortion on Kodak: attncomp-eval with every bundled model and every Pillow anchor.

    python benchmarks/rd_kodak.py [--out results/kodak] [--refine 0 50]

``--refine 0 50`` measures the plain and the refined encoder (about 16 minutes on 2 cores).

Writes the per-image CSV, the JSON curves, bd_rate.md, the RD plots and report.html.
"""

import sys

from attncomp.cli.evaluate import main
from attncomp.models import ZOO, available_qualities

from common import kodak_dir

if __name__ == "__main__":
    bundled = [name for name in ZOO if available_qualities(name)]  # a variable-rate model at each of its λs
    # a later --out in the arguments overrides this default
    sys.exit(main([str(kodak_dir()), "--model", *bundled, "--anchors", "jpeg", "webp", "avif", "jpeg2000",
                   "--out", "results/kodak", "--force", *sys.argv[1:]]))
