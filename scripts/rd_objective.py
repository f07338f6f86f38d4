"""The training objective λ·255²·MSE + bpp of each model curve in attncomp-eval's per-image results.

    python scripts/rd_objective.py results/kodak/per_image.csv [more.csv ...]

Averaged per image over the set, on the real files' bpp: the number a training run lowers, measured
on the test images, to compare two weights of the same λ. Each model point's λ is the file's λ column (a
variable-rate model's at fractional qualities too); anchors have none and are skipped.
"""

import argparse
import csv
import math
import sys
from collections import defaultdict

from attncomp.evaluation.metrics import rd_objective


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("per_image", nargs="+", help="per_image.csv written by attncomp-eval")
    args = parser.parse_args(argv)
    print("| file | curve | setting | images | bpp | PSNR (dB) | λ·255²·MSE + bpp |")
    print("|---|---|---|---|---|---|---|")
    for path in args.per_image:
        points = defaultdict(list)
        with open(path, newline="") as f:
            rows = csv.DictReader(f)
            if "lmbda" not in (rows.fieldnames or []):
                sys.exit(f"rd_objective: {path} has no λ column: an older attncomp-eval wrote it, run it again")
            for row in rows:
                lmbda = float(row["lmbda"])
                if not math.isnan(lmbda):
                    points[row["codec"], row["setting"], lmbda].append((float(row["bpp"]), float(row["psnr"])))
        for (codec, setting, lmbda), rows in points.items():
            objective = sum(rd_objective(lmbda, b, p) for b, p in rows) / len(rows)
            bpp = sum(b for b, _ in rows) / len(rows)
            mean_psnr = sum(p for _, p in rows) / len(rows)
            print(f"| {path} | {codec} | {setting} | {len(rows)} | {bpp:.3f} | {mean_psnr:.2f} | {objective:.3f} |")


if __name__ == "__main__":
    main()
