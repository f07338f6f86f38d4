"""The training objective λ·255²·MSE + bpp of each model curve in attncomp-eval's per-image results.

    python scripts/rd_objective.py results/kodak/per_image.csv [more.csv ...]

Averaged per image over the set, on the real files' bpp: the number a training run lowers, measured
on the test images, to compare two weights of the same λ. Anchors have no λ and are skipped.
"""

import argparse
import csv
from collections import defaultdict

from attncomp.evaluation.metrics import rd_objective
from attncomp.models import zoo


def setting_lmbda(codec: str, setting: str) -> float | None:
    """The λ behind a model point: "qN" in the zoo's convention, or "λ=value" for custom weights."""
    if setting.startswith("λ="):
        return float(setting[2:])
    name = codec.split("+")[0]  # "attn-hyperprior+refine50" is a curve of attn-hyperprior
    if setting.startswith("q") and name in zoo.ZOO:
        return zoo.entry(name).lambdas.get(int(setting[1:]))
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("per_image", nargs="+", help="per_image.csv written by attncomp-eval")
    args = parser.parse_args()
    print("| file | curve | setting | images | bpp | PSNR (dB) | λ·255²·MSE + bpp |")
    print("|---|---|---|---|---|---|---|")
    for path in args.per_image:
        points = defaultdict(list)
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                lmbda = setting_lmbda(row["codec"], row["setting"])
                if lmbda is not None:
                    points[row["codec"], row["setting"], lmbda].append((float(row["bpp"]), float(row["psnr"])))
        for (codec, setting, lmbda), rows in points.items():
            objective = sum(rd_objective(lmbda, b, p) for b, p in rows) / len(rows)
            bpp = sum(b for b, _ in rows) / len(rows)
            mean_psnr = sum(p for _, p in rows) / len(rows)
            print(f"| {path} | {codec} | {setting} | {len(rows)} | {bpp:.3f} | {mean_psnr:.2f} | {objective:.3f} |")


if __name__ == "__main__":
    main()
