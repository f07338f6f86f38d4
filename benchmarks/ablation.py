"""The equal-budget ablation of issue #18: its table and learning curves, from committed run logs.

The runs come from ``scripts/gpu_round.sh OUT --plan ablation`` (every variant a variable-rate
lite model trained from scratch for the same steps, data, crops and seed). Unpack the round's
``logs.tar.gz`` into ``results/ablation/logs`` and commit it; this script then writes

    results/ablation/learning_curves.png   validation J (mean over the 8 λs) against steps
    results/ablation/table.md              per variant, at the last validation step all reached: J, BD-rate vs plain;
                                           and J at the last four steps all reached, with its mean

Validation numbers are the estimated rate on the held-out split (configs/validation_split.txt).
``--weights DIR`` (the round's ``weights-N.tar`` unpacked; their final weights, Kodak being a report, not a
selection) also codes every Kodak image at the 8
qualities with each variant — real bitstreams — for a BD-rate against plain on the test set and each
variant's decode time relative to plain, measured in the same run.

``--validate DIR…`` fills the validation points of runs a round stopped before they validated: each
``DIR/VARIANT.pt`` is validated here, on the CPU, by the training module's own validation step (the same
held-out images, ``--data``, as in training), and the point is written into the variant's logs at the
steps its weights record (those of the run it continued included).

``--compare DIR`` draws another attempt's curves (dashed, ``DIR/logs``) beside these and adds its J at the
same step to the table: two runs from scratch say how much of a difference is noise.

    python benchmarks/ablation.py [results/ablation] [--weights results/ablation/weights] [--limit N]
    python benchmarks/ablation.py results/ablation --compare results/ablation/first-attempt
    python benchmarks/ablation.py results/ablation --validate runs/round2-1 runs/round2-2 --data .trip/data
"""

import argparse
import csv
import json
import math
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import kodak_dir  # noqa: E402

from attncomp.catalog import COMPRESSAI_LAMBDAS  # noqa: E402
from attncomp.evaluation import bd_rate  # noqa: E402
from attncomp.evaluation.report import format_bd  # noqa: E402
from attncomp.evaluation.runner import curves, load_images, run  # noqa: E402
from attncomp.models import load_weights, zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LEVELS = range(1, len(COMPRESSAI_LAMBDAS) + 1)  # the qualities of every variant (variable-rate, CompressAI's λs)
BASELINE = "plain"
RECENT = 4
"""Validations the table also averages: at the held learning rate one moves by 10–40% from the next."""


def validations(folder: Path) -> dict[int, dict]:
    """Every validation of a run, across its resumed parts: step -> {metric: value} (``val/`` dropped).

    ``version_*.metrics.csv`` count steps from the run's start; ``from-S.*.metrics.csv`` (gpu_round's name for
    the logs of a run continued from weights trained S steps) from S. Lightning logs a validation during training
    at the step before (its rows count from 0), and the run's final validation of the same weights at the step
    itself: the one point is kept once, at the step.
    """
    points = {}
    for path in sorted(folder.glob("*.metrics.csv")):
        offset = re.match(r"from-(\d+)\.", path.name)
        if not (offset or path.name.startswith("version_")):
            continue
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val/loss"):
                    values = {k.removeprefix("val/"): float(v) for k, v in row.items() if k.startswith("val/") and v}
                    points[int(row["step"]) + (int(offset.group(1)) if offset else 0)] = values
    return {step: values for step, values in points.items() if points.get(step + 1) != values}


def validation_curve(point: dict) -> tuple[list, list]:
    """(bpp, PSNR) at each λ of one validation of a variable-rate run."""
    return [point[f"bpp_q{q}"] for q in LEVELS], [point[f"psnr_q{q}"] for q in LEVELS]


def validate_exports(folder: Path, logs: Path, data: str, split: str) -> None:
    """Validate every ``VARIANT.pt`` in ``folder`` on the CPU; append the point to ``logs/VARIANT``."""
    import pytorch_lightning as pl

    from attncomp.training import CompressionModule, ImageFolderData

    for weights in sorted(folder.glob("*.pt")):
        payload = zoo.read_weights(weights)
        step = zoo.trained_steps(payload.get("training"))
        module = CompressionModule(model=payload["model"], init_weights=str(weights), channels_last=False)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        (point,) = trainer.validate(module, ImageFolderData(data, val_split=split), verbose=False)
        out = logs / weights.stem / f"version_validated-{step}.metrics.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *sorted(point)])
            writer.writeheader()
            writer.writerow({"step": step, **point})
        print(f"{weights.stem}: validated at step {step}: J {point['val/loss']:.4f}", flush=True)


def kodak_points(weights: Path, images) -> dict:
    """Real-file (bpp, PSNR, decode s) at each quality of one variant; ``weights``: its ``.pt`` file, or the
    ``.pt.xz`` that scripts/keep_weights.py keeps."""
    model = load_weights(weights)
    evaluation = run(images, [model.at(q) for q in LEVELS], keep_images=0, progress=False)
    points = curves(evaluation.records)[model.name]
    return dict({key: [p[key] for p in points] for key in ("bpp", "psnr", "decode_s")},
                step=zoo.trained_steps(model.training))


def kodak_steps(kodak: dict) -> str:
    """Which weights the Kodak columns measured: ``kodak.json`` may be older than the logs."""
    if not kodak:
        return "no Kodak measurement (--weights)."
    steps = {point.get("step") for point in kodak.values()}
    if len(steps) == 1 and None not in steps:
        return f"Kodak columns with each variant's weights at step {steps.pop()}."
    return "Kodak columns with the weights of " + ", ".join(f"{v} at step {p.get('step', '?')}" for v, p in kodak.items()) + "."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results/ablation", type=Path)
    parser.add_argument("--weights", type=Path,
                        help="folder of VARIANT.pt (a round's weights-N.tar unpacked) or VARIANT.pt.xz (results/ablation/weights)")
    parser.add_argument("--compare", type=Path, help="another attempt's results folder: its curves and J beside these")
    parser.add_argument("--images", default=str(kodak_dir()))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--validate", type=Path, nargs="+", default=[],
                        help="folders of VARIANT.pt a round returned unvalidated: validate them here first")
    parser.add_argument("--data", default=".trip/data", help="--validate: the training images (the round's pack)")
    parser.add_argument("--split", default=str(ROOT / "configs" / "validation_split.txt"))
    args = parser.parse_args(argv)
    logs = args.results / "logs"
    for folder in [logs, *([args.compare / "logs"] if args.compare else [])]:
        if not folder.is_dir():
            raise SystemExit(f"ablation: no run logs in {folder} (a results folder holds logs/VARIANT/)")
    for folder in args.validate:
        validate_exports(folder, logs, args.data, args.split)
    runs = {p.name: validations(p) for p in sorted(logs.iterdir()) if p.is_dir()}
    unvalidated = sorted(v for v, points in runs.items() if not points)
    variants = sorted(v for v, points in runs.items() if points)
    if BASELINE not in variants:
        raise SystemExit(f"no validated {BASELINE} run under {logs}")
    # equal steps: a wall-clock cap may have stopped the variants at different steps
    shared = set.intersection(*(set(runs[v]) for v in variants))
    if not shared:
        raise SystemExit(f"ablation: the variants under {logs} share no validated step; nothing compares at equal steps")
    common = max(shared)
    at = {v: runs[v][common] for v in variants}
    recent = sorted(shared)[-RECENT:]
    recent_mean = {v: float(np.mean([runs[v][step]["loss"] for step in recent])) for v in variants}

    other = {p.name: validations(p) for p in sorted((args.compare / "logs").iterdir()) if p.is_dir()} if args.compare else {}

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for v in variants:
        steps = sorted(runs[v])
        (line,) = ax.plot(steps, [runs[v][step]["loss"] for step in steps], marker="o", markersize=3, label=v)
        if other.get(v):
            steps = sorted(other[v])
            ax.plot(steps, [other[v][step]["loss"] for step in steps], color=line.get_color(), linestyle="--",
                    linewidth=0.8, marker="o", markersize=2)
    ax.axvline(common, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")  # late differences of a few percent stay visible beside the early tenfold fall
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 1.5, 2, 3, 4, 5, 6, 8)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="training step", ylabel="validation J = λ·255²·MSE + bpp (mean of 8 λ)",
           title="Equal-budget ablation: held-out validation split" + (f"\n(dashed: {args.compare})" if other else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.results / "learning_curves.png")

    kodak = {}
    if args.weights:
        found = {v: zoo.weights_in(args.weights, v) for v in variants}
        if None in found.values():  # before any variant is measured
            missing = [v for v, path in found.items() if path is None]
            raise SystemExit(f"ablation: no weights (VARIANT.pt or .pt.xz) for {', '.join(missing)} in {args.weights}")
        images = load_images(args.images, args.limit)
        for v in variants:
            start = time.perf_counter()
            kodak[v] = kodak_points(found[v], images)
            print(f"{v}: Kodak measured in {time.perf_counter() - start:.0f} s", flush=True)
        (args.results / "kodak.json").write_text(json.dumps(kodak, indent=1) + "\n")
    elif (args.results / "kodak.json").is_file():
        kodak = json.loads((args.results / "kodak.json").read_text())

    base = validation_curve(at[BASELINE])
    compared = f" | J in {args.compare} at step {common}" if other else ""
    steps = " / ".join(f"{step:,}" for step in recent)
    rows = [f"Validation columns at step {common}, the last validation every variant reached, and at the last "
            f"{len(recent)} they all reached; {kodak_steps(kodak)}", "",
            f"| variant | trained to step | validation J ({common:,}){compared} | J vs plain | validation BD-rate vs plain | "
            f"validation J at {steps} | their mean, vs plain | Kodak BD-rate vs plain | Kodak decode time vs plain |",
            "|---|---|---|---|---|---|---|---|---|" + "---|" * bool(other)]
    for v in variants:
        curve = validation_curve(at[v])
        j, j_base = at[v]["loss"], at[BASELINE]["loss"]
        kodak_bd = kodak_time = math.nan
        if v in kodak and BASELINE in kodak:
            k, kb = kodak[v], kodak[BASELINE]
            kodak_bd = bd_rate(kb["bpp"], kb["psnr"], k["bpp"], k["psnr"])
            kodak_time = float(np.mean(k["decode_s"]) / np.mean(kb["decode_s"]))
        there = f" | {other[v][common]['loss']:.4f}" if common in other.get(v, {}) else " | n/a" if other else ""
        history = " / ".join(f"{runs[v][step]['loss']:.2f}" for step in recent)
        mean_vs = format_bd(100 * (recent_mean[v] / recent_mean[BASELINE] - 1))
        rows.append(
            f"| {v} | {max(runs[v])} | {j:.4f}{there} | {format_bd(100 * (j / j_base - 1))} | "
            f"{format_bd(bd_rate(*base, *curve))} | {history} | {recent_mean[v]:.2f}, {mean_vs} | {format_bd(kodak_bd)} | "
            f"{'n/a' if not math.isfinite(kodak_time) else f'{kodak_time:.2f}x'} |"
        )
    rows += [f"| {v} | no validation | | | | | | | |" + " |" * bool(other) for v in unvalidated]
    table = "\n".join(rows) + "\n"
    (args.results / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
