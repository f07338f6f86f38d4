"""Issue #18: one variable-rate model against the fixed-rate models it would replace, at equal total training steps.

The fixed-rate models are one per quality, of the variable-rate model's architecture, trained like the
ablation's variants (``scripts/gpu_round.py OUT --plan fixed-rate --variant V --steps S/4``, kept with
``scripts/keep_weights.py OUT results/variable-rate/weights``); the variable-rate one is the ablation's variant V
at S steps. Both code the same images with real bitstreams at the fixed-rate models' qualities: the held-out
validation split of the training images (``configs/validation_split.txt``), where a choice would be made, and
Kodak, which only reports. Per quality: bpp, PSNR and J = λ·255²·MSE + bpp (averaged per image, as training
measures it); over the range: the variable-rate model's BD-rate against the fixed-rate curve and its decode time.

    python benchmarks/variable_rate_vs_fixed.py results/ablation/weights/plain.pt.xz results/variable-rate/weights \\
        --out results/variable-rate

writes OUT/table.md (and prints it) and OUT/points.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import data_dir, kodak_dir

from attncomp.evaluation import bd_rate
from attncomp.evaluation.metrics import rd_objective
from attncomp.evaluation.report import format_bd
from attncomp.evaluation.runner import load_images, run
from attncomp.models import load_weights, zoo

ROOT = Path(__file__).resolve().parent.parent


def fixed_rate_models(folder: Path, variable_rate) -> dict:
    """quality -> CodingModel of every fixed-rate weights file in ``folder`` with ``variable_rate``'s transforms."""
    models = {}
    for path in sorted(folder.glob("*.pt*")):
        model = load_weights(path)
        if model.quality is None:
            continue
        if model.quality in models:
            raise SystemExit(f"variable_rate_vs_fixed: two fixed-rate models of quality {model.quality} in {folder}")
        models[model.quality] = model
    if len(models) < 2:
        raise SystemExit(f"variable_rate_vs_fixed: {folder} holds {len(models)} fixed-rate weights; a curve needs two")
    for quality, model in models.items():  # every setting but the λs (a fixed-rate model has none)
        differ = [k for k in variable_rate.config if k != "lambdas" and model.config.get(k) != variable_rate.config[k]]
        if differ:
            raise SystemExit(f"variable_rate_vs_fixed: the q{quality} model differs from the variable-rate one in "
                             f"{', '.join(differ)}: compare one architecture")
    return dict(sorted(models.items()))


def points(models: dict, images) -> list[dict]:
    """One point per quality: mean bpp, PSNR, J over ``images`` (real files) and mean decode seconds."""
    out = []
    for quality, model in models.items():
        records = run(images, [model], keep_images=0, progress=False).records
        out.append(dict(
            quality=quality, lmbda=model.lmbda,
            bpp=float(np.mean([r.bpp for r in records])),
            psnr=float(np.mean([r.psnr for r in records])),
            j=float(np.mean([rd_objective(model.lmbda, r.bpp, r.psnr) for r in records])),
            decode_s=float(np.mean([r.decode_s for r in records])),
        ))
    return out


def compare(name: str, fixed: list[dict], variable: list[dict]) -> list[str]:
    """Markdown rows of one image set: each quality, then BD-rate and decode time over the range."""
    rows = []
    for f, v in zip(fixed, variable):
        rows.append(f"| {name} | q{f['quality']} ({f['lmbda']}) | {f['bpp']:.3f} / {f['psnr']:.2f} / {f['j']:.3f} | "
                    f"{v['bpp']:.3f} / {v['psnr']:.2f} / {v['j']:.3f} | {format_bd(100 * (v['j'] / f['j'] - 1))} |")
    bd = bd_rate([p["bpp"] for p in fixed], [p["psnr"] for p in fixed], [p["bpp"] for p in variable], [p["psnr"] for p in variable])
    speed = np.mean([p["decode_s"] for p in variable]) / np.mean([p["decode_s"] for p in fixed])
    rows.append(f"| {name} | BD-rate (PSNR), decode time | | | {format_bd(bd)}, {speed:.2f}× the decode time |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variable_rate", type=Path, help="the variable-rate weights (.pt or .pt.xz)")
    parser.add_argument("fixed", type=Path, help="folder of fixed-rate weights of its architecture, one per quality")
    parser.add_argument("--out", type=Path, default=Path("results/variable-rate"))
    parser.add_argument("--train-images", type=Path, default=data_dir() / "train")
    parser.add_argument("--split", type=Path, default=ROOT / "configs" / "validation_split.txt")
    parser.add_argument("--kodak", type=Path, default=kodak_dir())
    parser.add_argument("--limit", type=int, help="only the first N images of each set")
    args = parser.parse_args(argv)
    if not args.fixed.is_dir():
        raise SystemExit(f"variable_rate_vs_fixed: no folder {args.fixed}")
    variable_rate = load_weights(args.variable_rate)
    if not variable_rate.variable_rate:
        raise SystemExit(f"variable_rate_vs_fixed: {args.variable_rate} is a fixed-rate model")
    fixed = fixed_rate_models(args.fixed, variable_rate)
    steps = {q: zoo.trained_steps(m.training) for q, m in fixed.items()}
    variable_steps = zoo.trained_steps(variable_rate.training)
    header = (f"Variable-rate model {args.variable_rate.name}: {variable_steps:,} steps; the fixed-rate models: "
              + " + ".join(f"{s:,} (q{q})" for q, s in steps.items()) + f" = {sum(steps.values()):,} steps.")
    rows = [header, "", "| images | quality (λ) | fixed-rate bpp / PSNR / J | variable-rate bpp / PSNR / J | J vs fixed |",
            "|---|---|---|---|---|"]
    measured = {}
    sets = {"validation": load_images(args.train_images, args.limit, split=args.split),
            "Kodak": load_images(args.kodak, args.limit)}
    for name, images in sets.items():
        measured[name] = dict(fixed=points(fixed, images),
                              variable_rate=points({q: variable_rate.at(q) for q in fixed}, images))
        rows += compare(name, measured[name]["fixed"], measured[name]["variable_rate"])
    args.out.mkdir(parents=True, exist_ok=True)
    table = "\n".join(rows) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "points.json").write_text(json.dumps(dict(steps=dict(variable_rate=variable_steps, fixed=steps), **measured), indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
