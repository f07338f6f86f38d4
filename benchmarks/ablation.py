"""The equal-budget ablation of issue #18: its table and learning curves, from committed run logs.

The runs come from ``scripts/gpu_round.sh OUT --plan ablation`` (every variant a variable-rate
lite model trained from scratch for the same steps, data, crops and seed). Unpack the round's
``logs.tar.gz`` into ``results/ablation/logs`` and commit it; this script then writes

    results/ablation/learning_curves.png   validation J (mean over the 8 λs) against steps
    results/ablation/table.md              per variant: steps, validation J, BD-rate vs plain

Validation numbers are the estimated rate on the held-out split (configs/validation_split.txt).
``--weights DIR`` (the round's ``weights.tar`` unpacked) also codes every Kodak image at the 8
qualities with each variant — real bitstreams — for a BD-rate against plain on the test set and each
variant's decode time relative to plain, measured in the same run.

    python benchmarks/ablation.py [results/ablation] [--weights runs/ablation-weights] [--limit N]
"""

import argparse
import csv
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import KODAK  # noqa: E402

from attncomp.evaluation import bd_rate  # noqa: E402
from attncomp.evaluation.runner import curves, load_images, run  # noqa: E402
from attncomp.models import load_weights  # noqa: E402

LEVELS = range(1, 9)
BASELINE = "plain"


def learning_curve(folder: Path) -> list[tuple[int, float]]:
    """(step, validation J) of every validation of a run, across its resumed parts."""
    points = {}
    for path in sorted(folder.glob("version_*.metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val/loss"):
                    points[int(row["step"])] = float(row["val/loss"])
    return sorted(points.items())


def validation_curve(point: dict) -> tuple[list, list]:
    """(bpp, PSNR) at each λ of a variable-rate run's final validation."""
    return [point[f"bpp_q{q}"] for q in LEVELS], [point[f"psnr_q{q}"] for q in LEVELS]


def kodak_points(weights: Path, images) -> dict:
    """Real-file (bpp, PSNR, decode s) at each quality of one variant."""
    model = load_weights(weights)
    evaluation = run(images, [model.at(q) for q in LEVELS], keep_images=0, progress=False)
    points = curves(evaluation.records)[model.name]
    return {key: [p[key] for p in points] for key in ("bpp", "psnr", "decode_s")}


def fmt(value: float, unit: str = "%") -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1f}{unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results/ablation", type=Path)
    parser.add_argument("--weights", type=Path, help="folder of VARIANT.pt (the round's weights.tar)")
    parser.add_argument("--images", default=str(KODAK))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    logs = args.results / "logs"
    variants = sorted(p.name for p in logs.iterdir() if (p / "validation.json").is_file())
    if BASELINE not in variants:
        raise SystemExit(f"no {BASELINE} run with a validation.json under {logs}")
    final = {v: json.loads((logs / v / "validation.json").read_text()) for v in variants}
    learning = {v: learning_curve(logs / v) for v in variants}

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for v in variants:
        if learning[v]:
            ax.plot(*zip(*learning[v]), marker="o", markersize=3, label=v)
    ax.set(xlabel="training step", ylabel="validation J = λ·255²·MSE + bpp (mean of 8 λ)",
           title="Equal-budget ablation: held-out validation split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.results / "learning_curves.png")

    kodak = {}
    if args.weights:
        images = load_images(args.images, args.limit)
        for v in variants:
            start = time.perf_counter()
            kodak[v] = kodak_points(args.weights / f"{v}.pt", images)
            print(f"{v}: Kodak measured in {time.perf_counter() - start:.0f} s", flush=True)
        (args.results / "kodak.json").write_text(json.dumps(kodak, indent=1) + "\n")
    elif (args.results / "kodak.json").is_file():
        kodak = json.loads((args.results / "kodak.json").read_text())

    base = validation_curve(final[BASELINE])
    rows = ["| variant | steps | validation J | J vs plain | validation BD-rate vs plain | Kodak BD-rate vs plain | "
            "Kodak decode time vs plain |", "|---|---|---|---|---|---|---|"]
    for v in variants:
        curve = validation_curve(final[v])
        j, j_base = final[v]["loss"], final[BASELINE]["loss"]
        kodak_bd = kodak_time = math.nan
        if v in kodak and BASELINE in kodak:
            k, kb = kodak[v], kodak[BASELINE]
            kodak_bd = bd_rate(kb["bpp"], kb["psnr"], k["bpp"], k["psnr"])
            kodak_time = float(np.mean(k["decode_s"]) / np.mean(kb["decode_s"]))
        rows.append(
            f"| {v} | {final[v]['step']} | {j:.4f} | {fmt(100 * (j / j_base - 1))} | "
            f"{fmt(bd_rate(*base, *curve))} | {fmt(kodak_bd)} | "
            f"{'n/a' if not math.isfinite(kodak_time) else f'{kodak_time:.2f}x'} |"
        )
    table = "\n".join(rows) + "\n"
    (args.results / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
