"""One wall-clock-budgeted training round of the bundled models on a GPU; run it through gpu_round.sh.

Each quality trains in its own ``attncomp-train`` process, all at once on the
one card (a lite model alone leaves an H100 mostly idle), for ``--minutes`` of
training (Lightning's ``max_time``), then validates on the held-out split. A run
folder that already holds a checkpoint resumes it with the budget extended, so
a second round on the same machine continues where the first stopped; on a
fresh machine ``--init`` (the returned weights) starts where it ended.

What comes back, at most 8 files in OUT:
    attn-hyperprior-qN.pt  the exported weights of each quality
    summary.json           steps, seconds, Mpix/s and the validation point of each
    logs.tar.gz            each run's train.log, metrics.csv and validation.json
    streams.tar            validation images encoded and decoded with the model on
                           this device (check_streams.py decodes them on another)
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from attncomp.models import zoo

ROOT = Path(__file__).resolve().parent.parent
MODEL = zoo.DEFAULT_MODEL
LAMBDAS = zoo.entry(MODEL).lambdas


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the files that come back")
    parser.add_argument("--qualities", type=int, nargs="+", default=[1, 3, 5, 7], choices=sorted(LAMBDAS))
    parser.add_argument("--minutes", type=float, default=7.0, help="training time of this round, per quality")
    parser.add_argument("--data", default=".trip/data", help="training images (the trip's pack)")
    parser.add_argument("--val-split", default="configs/validation_split.txt", help="held-out image stems")
    parser.add_argument("--runs", type=Path, default=Path("runs/gpu-round"), help="run folders, kept between rounds")
    parser.add_argument("--init", type=Path, help="weights to start from (default: .trip/init if present, else bundled)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "gpu.yaml"))
    parser.add_argument("--check-images", type=int, default=3, help="validation images coded for the stream check")
    args, extra = parser.parse_known_args(argv)  # the rest goes to attncomp-train (e.g. --accelerator cpu)
    if args.init is None:
        args.init = Path(".trip/init") if Path(".trip/init").is_dir() else zoo.bundled_weights(MODEL, 1).parent
    return args, extra


def budget(run: Path, minutes: float, resuming: bool) -> float:
    """Total training seconds of ``run`` after this round (Lightning's max_time counts across resumes)."""
    record = run / "rounds.json"
    rounds = json.loads(record.read_text()) if resuming and record.is_file() else []
    rounds.append(minutes * 60)
    record.write_text(json.dumps(rounds))
    return sum(rounds)


def start(args, extra, quality: int) -> subprocess.Popen:
    run = args.runs / f"q{quality}"
    run.mkdir(parents=True, exist_ok=True)
    resuming = (run / "checkpoints" / "last.ckpt").is_file()
    seconds = int(budget(run, args.minutes, resuming))
    command = [
        sys.executable, "-m", "attncomp.cli.train", "--config", args.config,
        "--lmbda", str(LAMBDAS[quality]), "--data", args.data, "--data.val_split", args.val_split, "--out", str(run),
        "--trainer.max_time", f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
    ]
    # the initial weights also give a resumed run its architecture; the checkpoint then replaces them
    command += ["--model.init_weights", str(args.init / f"{MODEL}-q{quality}.pt")]
    if resuming:
        command += ["--resume", "last"]
    log = open(run / "train.log", "a")
    print(f"q{quality}: {'resuming' if resuming else 'starting from ' + str(args.init)}, budget {seconds} s", flush=True)
    return subprocess.Popen(command + extra, stdout=log, stderr=subprocess.STDOUT)


def summarise(run: Path, wall: float) -> dict:
    training = zoo.read_weights(run / "weights.pt")["training"]
    pixels = training["steps_this_run"] * training["batch_size"] * training["crop_size"] ** 2
    point = json.loads((run / "validation.json").read_text()) if (run / "validation.json").is_file() else None
    return dict(
        steps=training["steps"],
        steps_this_round=training["steps_this_run"],
        train_seconds_this_round=round(training["seconds_this_run"], 1),
        mpix_per_s=round(pixels / training["seconds_this_run"] / 1e6, 2),
        wall_seconds=round(wall, 1),
        hardware=training["hardware"],
        validation=point,
    )


def code_streams(weights: Path, images: list[Path], tar: tarfile.TarFile) -> None:
    """Encode and decode ``images`` with the model on this machine's accelerator; keep both for a CPU check."""
    import torch

    from attncomp.codec import decode, encode

    model = zoo.load_weights(weights)
    if torch.cuda.is_available():
        model = model.cuda()
    for path in images:
        stream = encode(path, model)
        decoded = io.BytesIO()
        decode(stream, model).save(decoded, format="PNG")
        for name, data in ((f"{path.stem}.atc", stream), (f"{path.stem}.decoded.png", decoded.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def main(argv=None) -> int:
    args, extra = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    runs = {q: start(args, extra, q) for q in args.qualities}
    failed = [q for q, process in runs.items() if process.wait() != 0]
    wall = time.monotonic() - began
    summary = {}
    with tarfile.open(args.out / "logs.tar.gz", "w:gz") as logs:
        for quality in args.qualities:
            run = args.runs / f"q{quality}"
            for name in ("train.log", "validation.json", "rounds.json"):
                if (run / name).is_file():
                    logs.add(run / name, f"q{quality}/{name}")
            for csv in sorted((run / "csv").glob("version_*/metrics.csv")):
                logs.add(csv, f"q{quality}/{csv.parent.name}.metrics.csv")
            if not (run / "weights.pt").is_file():
                continue
            summary[f"q{quality}"] = summarise(run, wall)
            (args.out / f"{MODEL}-q{quality}.pt").write_bytes((run / "weights.pt").read_bytes())
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if summary:
        from attncomp.image import list_images, read_split

        split = read_split(args.val_split)
        images = [p for p in list_images(args.data) if p.stem in split][: args.check_images]
        with tarfile.open(args.out / "streams.tar", "w") as tar:
            code_streams(args.out / f"{MODEL}-{next(iter(summary))}.pt", images, tar)
    for quality in failed:
        print(f"gpu_round: q{quality} failed; see logs.tar.gz q{quality}/train.log", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
