"""The paper's ablation on real bitstreams: plain hyperprior vs +attention vs +attention+post-filter.

Reads the exported weights of ``scripts/train_ablation.sh`` (runs/ablation/VARIANT-λ/weights.pt),
codes every Kodak image with each, and prints per λ each variant's bpp, PSNR, MS-SSIM and
rate–distortion objective J = λ·255²·MSE + bpp measured on the real files (lower is better; every
variant was trained to minimise it), then BD-rate against the plain model over the λ points and
the decode time of each variant relative to plain, measured in the same run.

    python benchmarks/ablation.py [runs/ablation] [--limit N]
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from common import KODAK

from attncomp.evaluation import bd_rate
from attncomp.evaluation.runner import curves, load_images, model_setting, run
from attncomp.models import load_weights

VARIANTS = {
    "plain-hyperprior": "plain",
    "attn-hyperprior-noPF": "+attention",
    "attn-hyperprior": "+attention +post-filter",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="?", default="runs/ablation")
    parser.add_argument("--images", default=str(KODAK))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    paths = sorted(Path(args.runs).glob("*/weights.pt"))
    if not paths:
        raise SystemExit(f"no weights under {args.runs}: run scripts/train_ablation.sh first")
    models = [load_weights(p) for p in paths]
    images = load_images(args.images, args.limit)
    evaluation = run(images, models, keep_images=0)

    points = {(codec, p["setting"]): p for codec, ps in curves(evaluation.records).items() for p in ps}
    table = {}  # (variant, λ) -> the averaged point, plus J and the training steps
    for model in models:
        key = (model.zoo_name, model_setting(model))
        # J needs the mean MSE (on [0, 1]) over images, not the MSE of the mean PSNR
        mse = np.mean([10 ** (-r.psnr / 10) for r in evaluation.records if (r.codec, r.setting) == key])
        objective = model.lmbda * 255**2 * mse + points[key]["bpp"]
        table[(model.zoo_name, model.lmbda)] = dict(points[key], objective=objective, steps=model.training_info["steps"])

    lambdas = sorted({lmbda for _, lmbda in table})
    print(f"\n{len(images)} images, real bitstreams, {torch.get_num_threads()} threads\n")
    print("| λ | variant | steps | bpp | PSNR (dB) | MS-SSIM | J = λ·255²·MSE + bpp | decode s |")
    print("|---|---|---|---|---|---|---|---|")
    for lmbda in lambdas:
        for name, label in VARIANTS.items():
            if (name, lmbda) in table:
                s = table[(name, lmbda)]
                print(f"| {lmbda} | {label} | {s['steps']} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} "
                      f"| {s['objective']:.4f} | {s['decode_s']:.3f} |")

    plain = [table.get(("plain-hyperprior", lmbda)) for lmbda in lambdas]
    print("\n| variant | BD-rate vs plain (PSNR) | BD-rate vs plain (MS-SSIM) | decode time vs plain |")
    print("|---|---|---|---|")
    for name, label in VARIANTS.items():
        ours = [table.get((name, lmbda)) for lmbda in lambdas]
        if None in ours or None in plain:
            continue
        bd = {
            metric: bd_rate([p["bpp"] for p in plain], [p[metric] for p in plain],
                            [p["bpp"] for p in ours], [p[metric] for p in ours])
            for metric in ("psnr", "ms_ssim")
        }
        slower = np.mean([o["decode_s"] / p["decode_s"] for o, p in zip(ours, plain)])
        print(f"| {label} | {fmt(bd['psnr'])} | {fmt(bd['ms_ssim'])} | {slower:.2f}x |")


def fmt(value: float) -> str:
    return "n/a (curves do not overlap)" if not math.isfinite(value) else f"{value:+.1f}%"


if __name__ == "__main__":
    main()
