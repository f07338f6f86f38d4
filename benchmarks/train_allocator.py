"""CPU training speed with glibc's default allocator against attncomp-train's (--reuse_freed_memory), same run.

By default glibc unmaps freed blocks above its threshold and returns the free top of its heap
to the system, so a training step page-faults much of its memory in afresh; attncomp-train
keeps freed blocks up to 256 MB for reuse. Each side is a real ``attncomp-train`` run (its
own fresh process, since an allocator setting lasts for the process; sides alternate,
``--repeat`` times) of the ablation's winner from its tracked weights on the training images,
without validation. Steps/s are read from the run's TensorBoard log after ``--warmup`` steps
(compilation happens there). Also reported: each run's peak RSS.

    python benchmarks/train_allocator.py [--steps 400] [--warmup 150] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import data_dir

SIDES = {"default": "glibc's default allocator", "reuse": "freed blocks reused: attncomp-train as it is"}


def default_data() -> str:
    """The GPU pack's images if scripts/prepare_gpu_trip.py made them (faster to load), else the training folder."""
    pack = Path(".trip/data")
    return str(pack if pack.is_dir() else data_dir() / "train")


def steps_per_second(run: Path, after: int) -> float:
    """Training steps/s between step ``after`` and the last logged step, from TensorBoard's wall times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):  # fit's, and the final validate's
        log = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload()
        if "train/loss" in log.Tags()["scalars"]:
            points += [p for p in log.Scalars("train/loss") if p.step >= after]
    points.sort(key=lambda p: p.step)
    if len(points) < 2:
        raise SystemExit(f"{run}: fewer than two logged steps after step {after}: raise --steps")
    return (points[-1].step - points[0].step) / (points[-1].wall_time - points[0].wall_time)


def child(args, side: str) -> None:
    import torch

    from attncomp.cli.train import main as train
    from attncomp.models.layers import bfloat16_is_fast
    from attncomp.models.zoo import read_weights

    precision = "bf16-mixed" if bfloat16_is_fast(torch.device("cpu")) else "32-true"
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        status = train([
            "--config", args.config, "--model.model", read_weights(args.init)["model"],  # its architecture, too
            "--model.init_weights", args.init, "--model.schedule", "steps", "--data", args.data,
            "--trainer.max_steps", str(args.steps), "--trainer.limit_val_batches", "0",
            "--trainer.log_every_n_steps", "50", "--accelerator", "cpu", "--precision", precision,
            "--out", str(run), "--reuse_freed_memory", str(side == "reuse").lower(),
        ])  # fmt: skip
        if status:
            raise SystemExit(status)
        rate = steps_per_second(run, args.warmup)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps_per_second": rate, "peak_mb": peak_mb, "precision": precision}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400, help="steps per run")
    p.add_argument("--warmup", type=int, default=150, help="steps not timed (compilation)")
    p.add_argument("--repeat", type=int, default=1, help="runs per side, alternating")
    p.add_argument("--data", default=default_data())
    p.add_argument("--config", default="configs/ablation.yaml")
    p.add_argument("--init", default="results/vbr-m192/weights/residual-meanscale-M192.pt.xz", help="weights to train on")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args, args.child)
    runs = {side: [] for side in SIDES}
    for _ in range(args.repeat):
        for side in runs:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", side], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{side} run failed:\n{out.stderr[-2000:]}")
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    precision = runs["default"][0]["precision"]
    print(f"{args.steps} steps from {args.init} on {args.data}, {precision}, "
          f"timed after step {args.warmup}; median of {args.repeat} run(s) each")
    rates = {side: statistics.median(r["steps_per_second"] for r in results) for side, results in runs.items()}
    for side, results in runs.items():
        print(f"{side:9} ({SIDES[side]}): {rates[side]:.2f} steps/s, {rates[side] / rates['default']:.2f}x default, "
              f"peak RSS {max(r['peak_mb'] for r in results):.0f} MB")


if __name__ == "__main__":
    main()
