"""Does bf16 cost quality? The same lite run (λ, steps, seed, data) in fp32 and in bf16-mixed.

Runs attncomp-train twice from the same initialisation and prints each run's final
validation loss, bpp and PSNR (whole-image validation, eval mode: the real quantiser),
and the bf16/fp32 ratio of the loss on the last line.

    python benchmarks/bf16_quality.py --steps 400 [--data ../shared/data/train --val-data ../shared/data/kodak]
"""

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path


def final_validation(out: Path) -> dict:
    (log,) = (out / "csv").glob("version_*/metrics.csv")
    rows = [r for r in csv.DictReader(open(log)) if r.get("val/loss")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lmbda", default="0.0067")
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--val-data", default="../shared/data/kodak")
    parser.add_argument("--val-images", type=int, default=8)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("32-true", "bf16-mixed"):
            out = Path(tmp) / precision
            subprocess.run(
                [sys.executable, "-m", "attncomp.cli.train", "--config", "configs/lite.yaml", "--lmbda", args.lmbda,
                 "--data", args.data, "--val-data", args.val_data, "--max-steps", str(args.steps),
                 "--precision", precision, "--model.compile", "false", "--data.val_images", str(args.val_images),
                 "--trainer.val_check_interval", str(args.steps), "--trainer.limit_val_batches", str(args.val_images),
                 "--trainer.enable_progress_bar", "false", "--out", str(out)],
                check=True, capture_output=True,
            )
            results[precision] = final_validation(out)
            r = results[precision]
            print(f"{precision:>10}: val loss {r['val/loss']:.4f}, bpp {r['val/bpp']:.4f}, PSNR {r['val/psnr']:.2f} dB")
    ratio = results["bf16-mixed"]["val/loss"] / results["32-true"]["val/loss"]
    print(f"validation loss bf16 / fp32 after {args.steps} steps: {ratio:.3f}")


if __name__ == "__main__":
    main()
