"""attncomp-eval: rate–distortion on real bitstreams, with classical anchors, BD-rates and a report.

examples:
  attncomp-eval ../shared/data/kodak --anchors jpeg webp avif --out results/mine
  attncomp-eval photos/ --model attn-hyperprior --qualities 1 3 --out results/photos
  attncomp-eval photos/ --weights runs/a/weights.pt runs/b/weights.pt --anchors jpeg
  attncomp-eval ../shared/data/kodak --refine 0 50 --out results/refine   plain and refined encoder
  attncomp-eval ../shared/data/train --split configs/validation_split.txt --weights runs/*/weights.pt
                                     choose weights on the held-out validation images, never on the test set

Writes to --out: per_image.csv, one CompressAI-style JSON per codec, bd_rate.md (each
attncomp curve against every other curve), rd_psnr.png, rd_ms_ssim.png and report.html
(a single file for a browser).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from ..catalog import DEFAULT_PRECISION
from ..errors import AttncompError
from ..evaluation import anchors, reference, report, runner
from ..files import atomic_write
from ..models import DEFAULT_MODEL, ZOO, available_qualities, load, load_weights
from . import non_negative, positive, reuse_freed_memory

PROG = "attncomp-eval"
BASELINE_MODELS = ("spatial-ae", "spatial-ae-gray")


def select_models(args) -> list:
    models = []
    for path in args.weights or []:
        model = load_weights(path)
        if model.variable_rate:  # one file, a curve: at --qualities, else at each of its λs
            levels = range(1, len(model.config["lambdas"]) + 1)
            models += [model.at(q) for q in args.qualities or levels]
        elif args.qualities and not args.model:
            raise AttncompError(f"{path} codes at one quality (its own λ): drop --qualities, or pass variable-rate weights")
        else:
            models.append(model)
    names = args.model or ([] if args.weights else [DEFAULT_MODEL, *BASELINE_MODELS])
    both = sorted({m.name for m in models} & set(names))
    if both:  # a curve is named by its model: trained weights and the bundled ones would be averaged into one
        raise AttncompError(f"--weights and --model {', '.join(both)} would share one curve; evaluate them in separate runs")
    for name in names:
        bundled = available_qualities(name)
        qualities = args.qualities or bundled
        if name in BASELINE_MODELS and not args.model:
            # the baseline appears as a row at whichever requested qualities are bundled
            qualities = [q for q in qualities if q in bundled]
        elif not qualities:
            raise AttncompError(f"no bundled weights for {name}; pass --weights FILE")
        models += [load(name, q) for q in qualities]
    if not models and not args.anchors:
        raise AttncompError("nothing to evaluate: no models and no --anchors")
    points = [f"{runner.model_label(m)} {runner.model_setting(m)}" for m in models]
    twice = sorted({p for p in points if points.count(p) > 1})
    if twice:
        raise AttncompError(f"{', '.join(twice)} would be one point twice; evaluate those weights in separate runs")
    return models


def json_text(value) -> str:
    """Strict JSON (browsers and jq reject NaN): a missing number, e.g. a refined point's estimate, is null."""

    def strict(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: strict(x) for k, x in v.items()}
        return [strict(x) for x in v] if isinstance(v, (list, tuple)) else v

    return json.dumps(strict(value), indent=2, allow_nan=False)


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, to mix new results into an earlier evaluation's folder unless --force."""
    if out.exists() and not out.is_dir():
        raise AttncompError(f"--out {out} is a file, not a folder")
    if (out / "summary.json").exists() and not force:
        raise AttncompError(f"{out} already holds an evaluation; use --force to replace it, or another --out")


def remove_stale_curves(out: Path, written: set) -> None:
    """Delete the curve files the previous evaluation in ``out`` wrote and this one does not."""
    try:
        previous = json.loads((out / "summary.json").read_text()).get("curves", {})
    except (OSError, ValueError, AttributeError):
        return
    for codec in set(previous) - written:
        (out / f"{codec}.json").unlink(missing_ok=True)


def write_outputs(out: Path, evaluation, images, anchor_codecs, reference_dir, crops: int = 3) -> list[dict]:
    """Every output file of an evaluation, each written atomically; ``summary.json``, which marks a
    complete evaluation, is removed first and written last, so an interrupted run leaves none."""
    curves = runner.curves(evaluation.records)
    rows = runner.record_rows(evaluation.records)
    per_image = io.StringIO()
    writer = csv.DictWriter(per_image, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    files = {"per_image.csv": per_image.getvalue()}
    for codec, points in curves.items():
        if codec in evaluation.models:  # the decode precision moves PSNR by thousandths of a dB: say which it was
            precisions = sorted({m.synthesis_precision(DEFAULT_PRECISION) for m in evaluation.models[codec].values()})
            description = f"attncomp {codec}, real bitstreams, decoded in {' and '.join(precisions)}"
        else:
            description = anchors.LABELS.get(codec, f"{codec}, real bitstreams")
        files[f"{codec}.json"] = json_text(runner.to_compressai_json(codec, points, description))

    ours = {name: curves[name] for name in evaluation.models}
    others = {name: curves[name] for name in anchor_codecs if name in curves}
    published = {}
    if reference.is_kodak([t.name for t in images]):
        published = reference.load_published(reference_dir)
        if not published:
            print(f"{PROG}: note: no published curves in {reference_dir} (--reference or ATTNCOMP_REFERENCE)", file=sys.stderr)
    table = report.bd_table(ours, {**ours, **others, **published})  # ours against each other too: which weights win
    files["bd_rate.md"] = report.bd_markdown(table)
    everything = {**curves, **published}
    plots = {metric: report.plot_rd(everything, metric, highlight=ours) for metric in ("psnr", "ms_ssim")}
    files.update({f"rd_{metric}.png": png for metric, png in plots.items()})
    summary = [dict(p, codec=c) for c, points in curves.items() for p in points]
    sections = report.model_sections(evaluation, images, anchor_codecs, crops)
    title = f"attncomp evaluation: {len(images)} images"
    files["report.html"] = report.html_page(title, {f"rd_{m}": png for m, png in plots.items()}, table, sections, summary)

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_curves(out, set(curves))
    (out / "summary.json").unlink(missing_ok=True)
    files["summary.json"] = json_text({"curves": curves, "bd_rate": table})  # last: dicts keep their order
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        atomic_write(out / name, lambda f, data=data: f.write(data))
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of test images (searched recursively)")
    parser.add_argument("--model", nargs="+", choices=sorted(ZOO), metavar="NAME",
                        help=f"zoo models with bundled weights (default: {DEFAULT_MODEL}, plus the spatial-attention baseline if bundled)")
    parser.add_argument("--qualities", nargs="+", type=float, metavar="Q",
                        help="qualities to test (default: all bundled, or every level of a variable-rate --weights file; "
                        "fractional ones for variable-rate models)")
    parser.add_argument("--weights", nargs="+", metavar="FILE", help="exported weights files to test (one RD point each)")
    parser.add_argument("--anchors", nargs="*", default=[], choices=sorted(anchors.SWEEPS), metavar="CODEC",
                        help=f"classical codecs through Pillow: {' '.join(sorted(anchors.SWEEPS))}")
    parser.add_argument("--out", default="results/eval", help="output folder (default results/eval)")
    parser.add_argument("--limit", type=positive, help="use only the first N images")
    parser.add_argument("--split", metavar="FILE", help="use only the images whose names FILE lists (a validation split)")
    parser.add_argument("--crops", type=non_negative, default=3, help="images shown side by side in the report (default 3)")
    parser.add_argument("--refine", nargs="+", type=non_negative, default=[0], metavar="STEPS",
                        help="encoder refinement steps, one curve each (default 0: the plain encoder; e.g. --refine 0 50)")
    parser.add_argument("--reference", default=None, help="folder of published CompressAI results JSON (Kodak only)")
    parser.add_argument("--force", action="store_true", help="replace the results already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        missing = [c for c in args.anchors if not anchors.available(c)]
        if missing:
            raise AttncompError(f"this Pillow cannot encode {', '.join(missing)}")
        check_out(Path(args.out), args.force)
        images = runner.load_images(args.images, args.limit, args.split)
        models = select_models(args)
        reuse_freed_memory()  # this process is the CLI's: tile activations are reused, not page-faulted in afresh
        evaluation = runner.run(
            images, models, args.anchors, keep_images=args.crops, progress=not args.no_progress, refine=args.refine
        )
        table = write_outputs(Path(args.out), evaluation, images, args.anchors, args.reference or reference.default_dir(), args.crops)
    except (AttncompError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(report.bd_markdown(table) if table else "no BD-rate (need a model and an anchor)")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
