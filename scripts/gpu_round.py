"""Wall-clock-budgeted training on a GPU, many runs at once on the one card; run it through gpu_round.sh.

Four plans:

``finetune`` (default): each bundled quality of the default model in its own
``attncomp-train`` process, for ``--minutes`` of training (Lightning's
``max_time``), from the bundled (or ``--init``) weights.

``variable-rate``: one variable-rate model (``--variant``'s architecture) for
``--minutes``, every image of a batch at one of the 8 λs, warm-started from the
bundled q5 weights wherever a block has the same form.

``ablation``: the equal-budget ablation of issue #18. Every variant of
:data:`ABLATION` is a variable-rate model (so one run measures every λ) trained
from scratch with the same data, crops, seed, λ draws and schedule for ``--steps``
steps (``configs/ablation.yaml``); ``--minutes`` caps each run's training time, so
a cheaper variant may get further: ``benchmarks/ablation.py`` compares them all
at the last validation step every one reached, and draws the learning curves.
Between GPU loans the ablation goes on on the CPU: ``--one-at-a-time --accelerator cpu
--precision bf16-mixed`` (``32`` on a CPU without AVX-512, where bf16 is far slower) trains the
variants one after another, each with every core; ``--at-once K`` trains K at a time, each with
its share of the cores.

``fixed-rate``: the control for a variable-rate model at equal total steps (issue #18): a
fixed-rate model of ``--variant``'s architecture at each of ``--qualities``, trained like the
ablation's variants (same config, data, crops and schedule) for ``--steps`` steps each, so that
four of them at S/4 steps cost what one variable-rate model costs at S.

Each run validates on the held-out split at the end. Each ends its training
:data:`WIND_DOWN` seconds before ``--deadline`` (``attncomp-train --stop_at``) even if
its ``--minutes`` are not spent, so that it exports and validates its last step; at
the deadline, runs still going are stopped (their last export comes back), so the
files return within the device's per-command limit. A run folder that already
holds a checkpoint resumes it with this round's minutes added to what it has
trained: only on the same machine, since checkpoints do not come back.

What comes back, at most 8 files in OUT:
    attn-hyperprior-qN.pt  finetune: the exported weights of each quality
    attn-hyperprior-vbr.pt variable-rate: the exported weights
    weights-N.tar          ablation, fixed-rate: the exported weights of every run, float16 transforms,
                           in as many tars as keep each under 16 MiB
    summary.json           steps, seconds, Mpix/s and the validation point of each run
    logs.tar.gz            each run's train.log, metrics.csv and validation.json (named from-S.… for a run
                           continued from weights trained S steps, whose step counter starts at 0)
    streams.tar            validation images encoded and decoded with a model on
                           this device (check_streams.py decodes them on another)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from attncomp.errors import AttncompError
from attncomp.files import atomic_write
from attncomp.models import zoo

ROOT = Path(__file__).resolve().parent.parent
VARIABLE_RATE = "attn-hyperprior-vbr"
FIXED_RATE = "attn-hyperprior"  # the lite fixed-rate entry; the fixed-rate plan sets a variant's switches on it
MODEL = FIXED_RATE  # the finetune plan's: the bundled fixed-rate models, one run per quality
LAMBDAS = zoo.entry(MODEL).lambdas
# The ablation's variants: overrides of the variable-rate zoo entry (lite sizes, 8 λs).
ABLATION = {
    "plain": dict(attention="none", postfilter="none", prior="scale"),
    "attention-paper": dict(attention="paper", postfilter="none", prior="scale"),
    "attention-residual": dict(attention="residual", postfilter="none", prior="scale"),
    "paper": dict(attention="paper", postfilter="paper", prior="scale"),
    "residual": dict(attention="residual", postfilter="residual", prior="scale"),
    "residual-meanscale": dict(attention="residual", postfilter="residual", prior="mean-scale"),
    "residual-meanscale-M192": dict(attention="residual", postfilter="residual", prior="mean-scale", M=192),
}


BEST = "best"
# seconds a run needs after a --stop_at stop: Lightning's validation at the stop, the export, the final
# validation (all eager, 40 images at 8 λs) with 7 runs sharing the card; the packing comes after the deadline
# (the first ablation round, 7 runs, lost ~700 steps each to a deadline that left 90 s for start-up and the end)
WIND_DOWN = 75
MIN_TRAINING = 120  # --at-once: a run begun closer than this to its stop time would spend it starting up
POLL = 1.0  # seconds between looks at the runs going on
RETURNED = ("*.pt", "weights-*.tar", "summary.json", "logs.tar.gz", "streams.tar")  # what a round writes into OUT
RETURNED_FILE_LIMIT = 15 * 2**20  # a file that comes back from the GPU machine holds at most 16 MiB


def best_variant(runs: Path) -> str:
    """The ablation variant with the lowest final validation loss (mean J over the 8 λs) under ``runs``."""
    losses = {}
    for point in runs.glob("*/validation.json"):
        if point.parent.name in ABLATION:
            losses[point.parent.name] = json.loads(point.read_text())["loss"]
    if not losses:
        raise SystemExit(f"gpu_round: --variant best needs the ablation's runs in {runs}")
    return min(losses, key=losses.get)


@dataclass(frozen=True)
class Run:
    """One attncomp-train process: its folder under ``--runs``, its options, the weights it starts from."""

    name: str
    options: tuple
    init: Path | None = None
    returned_as: str = ""  # the file name its weights come back under (finetune), else inside weights-N.tar
    # ablation: the steps behind ``init``; the run's own step counter starts at 0, its returned logs say from where
    steps_before: int = 0


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the files that come back")
    parser.add_argument("--plan", choices=["finetune", "ablation", "variable-rate", "fixed-rate"], default="finetune")
    parser.add_argument("--qualities", type=int, nargs="+", default=[1, 3, 5, 7], choices=sorted(LAMBDAS),
                        help="finetune, fixed-rate: the qualities to train")
    parser.add_argument("--variants", nargs="+", default=list(ABLATION), choices=list(ABLATION),
                        help="ablation: the variants to train")
    parser.add_argument("--steps", type=int, default=20_000,
                        help="ablation, fixed-rate: steps of every run in all, a continued one training what is left (benchmarks/ablation.py compares at the last step all reached)")
    parser.add_argument("--variant", default="paper", choices=[BEST, *ABLATION],
                        help="variable-rate: the architecture, warm-started from the bundled q5 (or --init) weights; "
                        "fixed-rate: the architecture of the fixed-rate models; "
                        f"{BEST!r}: the ablation run (--ablation-runs) with the lowest validation loss")
    parser.add_argument("--ablation-runs", type=Path, default=Path("runs/gpu-ablation"), help="--variant best: the ablation's run folders")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time of this round, per run")
    parser.add_argument("--deadline", type=float,
                        help="minutes after which unfinished runs are stopped and what they exported is returned "
                        "(default --minutes + 2: start-up, compilation and the final validation; that for each run "
                        "with --at-once, for each wave of runs)")
    parser.add_argument("--data", default=".trip/data", help="training images (the trip's pack)")
    parser.add_argument("--val-split", default="configs/validation_split.txt", help="held-out image stems")
    parser.add_argument("--runs", type=Path, help="run folders, kept between rounds (default runs/gpu-PLAN)")
    parser.add_argument("--init", type=Path, help="finetune, ablation: a folder of weights to start from, NAME.pt or "
                        "NAME.pt.xz (scripts/keep_weights.py; the ablation's: results/ablation/weights); default: bundled")
    parser.add_argument("--config", help="attncomp-train config (default configs/gpu.yaml or configs/ablation.yaml)")
    parser.add_argument("--check-images", type=int, default=3, help="validation images coded for the stream check")
    parser.add_argument("--at-once", type=int, metavar="K",
                        help="train at most K runs at a time (default: all at once, as on a GPU), each with 1/K of "
                        "the CPU's cores, the least trained first; one that would begin too close to the round's stop "
                        "time is left for the next round")
    parser.add_argument("--queue", choices=["least-trained", "as-given"], default="least-trained",
                        help="--at-once: which run begins when a slot frees: the least trained (even progress), or the "
                        "next in the order given (e.g. the leaders first, to finish them in a round)")
    parser.add_argument("--one-at-a-time", dest="at_once", action="store_const", const=1, help="--at-once 1")
    parser.add_argument("--model.model_config", dest="model_config", type=json.loads, default={},
                        help="ablation: JSON settings every variant shares (its own switches win)")
    args, extra = parser.parse_known_args(argv)  # the rest goes to attncomp-train (e.g. --accelerator cpu)
    from_scratch = args.plan in ("ablation", "fixed-rate")
    if args.init is None and not from_scratch:  # a fine-tune or a warm start begins from the bundled weights
        args.init = zoo.bundled_weights(MODEL, 1).parent
    args.runs = args.runs or Path(f"runs/gpu-{args.plan}")
    if args.deadline is None:  # start-up, compilation and the final validation: 2 minutes a run
        one_after_another = {"finetune": len(args.qualities), "ablation": len(args.variants),
                             "fixed-rate": len(args.qualities)}.get(args.plan, 1)
        args.deadline = (args.minutes + 2) * (-(-one_after_another // args.at_once) if args.at_once else 1)
    if args.plan in ("variable-rate", "fixed-rate") and args.variant == BEST:
        args.variant = best_variant(args.ablation_runs)
    args.config = args.config or str(ROOT / "configs" / ("ablation.yaml" if from_scratch else "gpu.yaml"))
    earlier = sorted({p.name for pattern in RETURNED for p in args.out.glob(pattern)})
    if earlier:  # an old weights-N.tar beside the new ones would be kept as if this round returned it
        parser.error(f"{args.out} already holds a round's files ({', '.join(earlier)}); give an empty folder")
    return args, extra


def initial(args, stem: str) -> Path:
    """``--init``'s weights ``stem``, NAME.pt or NAME.pt.xz (its .pt name, for training's error, if neither)."""
    return zoo.weights_in(args.init, stem) or args.init / f"{stem}.pt"


def plan(args) -> list[Run]:
    if args.plan == "finetune":
        return [
            Run(f"q{q}", ("--lmbda", str(LAMBDAS[q])), initial(args, f"{MODEL}-q{q}"), f"{MODEL}-q{q}.pt")
            for q in args.qualities
        ]
    if args.plan == "variable-rate":
        config = json.dumps({**args.model_config, **ABLATION[args.variant]})
        options = ("--model.model", VARIABLE_RATE, "--model.model_config", config,
                   "--model.warm_start", str(initial(args, f"{MODEL}-q5")))
        return [Run("vbr", options, None, f"{VARIABLE_RATE}.pt")]
    if args.plan == "fixed-rate":  # the lite fixed-rate entry with the variant's switches: no gains, one λ
        config = json.dumps({**args.model_config, **ABLATION[args.variant]})
        model = ("--model.model", FIXED_RATE, "--model.model_config", config)
        specs = {f"{args.variant}-q{q}": (*model, "--lmbda", str(LAMBDAS[q])) for q in args.qualities}
    else:
        specs = {name: ("--model.model", VARIABLE_RATE, "--model.model_config",
                        json.dumps({**args.model_config, **ABLATION[name]})) for name in args.variants}
    # a run continues from the weights an earlier round returned for it (--init NAME.pt), if any,
    # for what is left of its --steps
    runs = []
    if args.init is not None and not any(zoo.weights_in(args.init, name) for name in specs):
        # a mistyped folder would restart the lineages from scratch, and keep_weights then replace them
        raise SystemExit(f"gpu_round: --init {args.init} holds none of {', '.join(specs)} (NAME.pt or NAME.pt.xz)")
    for name, options in specs.items():
        init = zoo.weights_in(args.init, name) if args.init is not None else None
        before = zoo.trained_steps(zoo.read_weights(init).get("training")) if init else 0
        before = resumed_origin(args.runs / name, before, init)
        if before >= args.steps:
            raise SystemExit(f"gpu_round: {init} has trained {before} steps, --steps {args.steps}: none left")
        runs.append(Run(name, (*options, "--trainer.max_steps", str(args.steps - before)), init, steps_before=before))
    return runs


def resumed_origin(run: Path, init_steps: int, init: Path | None) -> int:
    """The steps behind the start of the run in ``run`` that a round resumes: its checkpoint counts its steps
    from the weights it first started from, which need not be ``--init``'s (those may have been kept after it
    began). Without a checkpoint, ``init_steps``. A checkpoint behind ``--init``'s weights is refused: resuming
    it would throw away the steps that only ``--init`` holds."""
    checkpoint = run / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return init_steps
    saved = zoo.safe_load(checkpoint, "checkpoint")
    origin = zoo.trained_steps({"initialised_from": saved.get("initialised_from")})  # as the run counts it
    trained = origin + saved.get("global_step", 0)
    if trained < init_steps:
        raise SystemExit(f"gpu_round: {checkpoint} has trained {trained} steps, {init} {init_steps}: "
                         "continue from --init with another --runs")
    return origin


def budget(run: Path, minutes: float, resuming: bool) -> int:
    """Total training seconds of ``run`` after this round: what it has trained so far, as counted by
    Lightning's Timer (which ``max_time`` compares against, restored from the checkpoint on resume),
    plus this round's minutes; so a round that overran its budget does not eat into the next one."""
    trained = 0.0
    if resuming:
        checkpoint = zoo.safe_load(run / "checkpoints" / "last.ckpt", "checkpoint")
        trained = checkpoint.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {}).get("train", 0.0)
    return int(trained + minutes * 60)


def start(args, extra, run_spec: Run, stop_at: float, env: dict | None = None) -> subprocess.Popen:
    run = args.runs / run_spec.name
    run.mkdir(parents=True, exist_ok=True)
    resuming = (run / "checkpoints" / "last.ckpt").is_file()
    seconds = budget(run, args.minutes, resuming)
    command = [
        sys.executable, "-m", "attncomp.cli.train", "--config", args.config, *run_spec.options,
        "--data", args.data, "--data.val_split", args.val_split, "--out", str(run),
        "--trainer.max_time", f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        "--stop_at", f"{stop_at:.0f}",
    ]
    # the initial weights also give a resumed run its architecture; the checkpoint then replaces them
    if run_spec.init is not None:
        command += ["--model.init_weights", str(run_spec.init)]
    if resuming:
        command += ["--resume", "last"]
    began = "resuming" if resuming else "starting from " + str(run_spec.init or "scratch")
    print(f"{run_spec.name}: {began}, budget {seconds} s", flush=True)
    with open(run / "train.log", "a") as log:  # the child writes to its own copy of the descriptor
        return subprocess.Popen(command + extra, stdout=log, stderr=subprocess.STDOUT, env=env)


def summarise(run: Path, wall: float) -> dict:
    training = zoo.read_weights(run / "weights.pt")["training"]
    pixels = training["steps_this_run"] * training["batch_size"] * training["crop_size"] ** 2
    point = json.loads((run / "validation.json").read_text()) if (run / "validation.json").is_file() else None
    return dict(
        steps=training["steps"],
        steps_this_round=training["steps_this_run"],
        train_seconds_this_round=round(training["seconds_this_run"], 1),
        # a resumed run with no steps left (or a few tiny ones) may have trained for no measurable time
        mpix_per_s=round(pixels / training["seconds_this_run"] / 1e6, 2) if training["seconds_this_run"] > 0 else None,
        wall_seconds=round(wall, 1),
        hardware=training["hardware"],
        validation=point,
    )


def code_streams(weights: Path, images: list[Path], tar: tarfile.TarFile) -> None:
    """Encode and decode ``images`` with the model on this machine's accelerator; keep both for a CPU check."""
    import torch

    from attncomp.codec import decode, encode

    model = zoo.load_weights(weights)
    if model.variable_rate:
        model = model.at(3)
    if torch.cuda.is_available():
        model = model.to("cuda")
    for path in images:
        stream = encode(path, model)
        decoded = io.BytesIO()
        decode(stream, model, precision="float32").save(decoded, format="PNG")  # bf16 rounding differs by device
        for name, data in ((f"{path.stem}.atc", stream), (f"{path.stem}.decoded.png", decoded.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def wait_until(processes: dict, deadline: float) -> list[str]:
    """Wait for every process until ``deadline`` (monotonic seconds); stop the rest. Returns their names."""
    stopped = []
    for name, process in processes.items():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            stopped.append(name)
            process.send_signal(signal.SIGINT)  # Lightning's graceful shutdown; weights.pt is the last export
    for name in stopped:
        try:
            processes[name].wait(timeout=20)
        except subprocess.TimeoutExpired:
            processes[name].kill()
            processes[name].wait()
    return stopped


def half_precision(weights: Path) -> Path:
    """A copy of a weights file with float16 transforms (what the zoo bundles), beside it."""
    half = weights.with_name(weights.stem + "-half.pt")
    zoo.rewrite_weights(weights, half)
    return half


def pack_in_tars(out: Path, members: list[tuple[str, Path]]) -> None:
    """``weights-1.tar``, ``weights-2.tar``…: the members in order, each tar under RETURNED_FILE_LIMIT."""
    groups, size = [[]], 0
    for name, path in members:
        cost = path.stat().st_size + 1024  # with its tar header
        if groups[-1] and size + cost > RETURNED_FILE_LIMIT:
            groups.append([])
            size = 0
        groups[-1].append((name, path))
        size += cost
    for index, group in enumerate(groups, 1):
        atomic_write(out / f"weights-{index}.tar", lambda file, group=group: tar_of(file, group))


def tar_of(file, members: list[tuple[str, Path]]) -> None:
    with tarfile.open(fileobj=file, mode="w") as tar:
        for name, path in members:
            tar.add(path, name)


def steps_so_far(args, run: Run) -> int:
    """The steps behind a run's next start: its initial weights', plus its checkpoint's if it resumes one."""
    checkpoint = args.runs / run.name / "checkpoints" / "last.ckpt"
    resumed = zoo.safe_load(checkpoint, "checkpoint").get("global_step", 0) if checkpoint.is_file() else 0
    return run.steps_before + resumed


def train(args, extra, runs: list[Run]) -> tuple[dict, list, dict]:
    """Start the runs and wait for them until the deadline: all at once, or ``--at-once K`` at a time, the least
    trained first (or as given, ``--queue as-given``). Returns (the processes by name, the names stopped at the deadline, each run's wall seconds)."""
    deadline = time.monotonic() + args.deadline * 60
    stop_at = time.time() + args.deadline * 60 - WIND_DOWN
    queued = args.at_once is not None and args.at_once < len(runs)
    least_trained_first = queued and args.queue == "least-trained"
    waiting = sorted(runs, key=lambda run: steps_so_far(args, run)) if least_trained_first else list(runs)
    at_once = args.at_once or len(runs)
    env = None  # K runs sharing a CPU's cores: more threads than cores would spin-wait on each other
    if at_once > 1 and args.at_once:
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // at_once)))
    processes, running, began, walls, stopped = {}, {}, {}, {}, []
    while waiting or running:
        while waiting and len(running) < at_once:
            run = waiting.pop(0)
            if queued and time.time() > stop_at - MIN_TRAINING:
                print(f"gpu_round: {run.name} not begun: less than {MIN_TRAINING} s to the round's stop time", file=sys.stderr)
                continue
            processes[run.name] = running[run.name] = start(args, extra, run, stop_at, env)
            began[run.name] = time.monotonic()
        if time.monotonic() >= deadline:
            stopped = wait_until(running, deadline)
        else:
            time.sleep(POLL)
        for name in [name for name, process in running.items() if process.poll() is not None]:
            walls[name] = time.monotonic() - began.pop(name)
            del running[name]
            print(f"{name}: ended after {walls[name]:.0f} s", flush=True)
    return processes, stopped, walls


def main(argv=None) -> int:
    try:
        return run_round(*parse(argv))
    except AttncompError as exc:  # e.g. a damaged --init file: one line, not a traceback
        raise SystemExit(f"gpu_round: {exc}") from None


def run_round(args, extra) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan(args)
    processes, stopped, walls = train(args, extra, runs)
    failed = [name for name, process in processes.items() if name not in stopped and process.returncode != 0]
    not_begun = [run.name for run in runs if run.name not in processes]
    runs = [run for run in runs if run.name in processes]
    summary, returned = {}, []
    with tarfile.open(args.out / "logs.tar.gz", "w:gz") as logs:
        for run in runs:
            folder = args.runs / run.name
            prefix = f"{run.name}/from-{run.steps_before}." if run.steps_before else f"{run.name}/"
            for name in ("train.log", "validation.json"):
                if (folder / name).is_file():
                    logs.add(folder / name, prefix + name)
            for csv in sorted((folder / "csv").glob("version_*/metrics.csv")):
                logs.add(csv, f"{prefix}{csv.parent.name}.metrics.csv")
            if (folder / "weights.pt").is_file():
                summary[run.name] = summarise(folder, walls[run.name])
                returned.append((run, folder / "weights.pt"))
    if args.plan in ("finetune", "variable-rate"):
        for run, weights in returned:
            atomic_write(args.out / run.returned_as, lambda file, weights=weights: file.write(weights.read_bytes()))
    else:  # float16 transforms, packed in tars that each come back (the float32 files total ~46 MB)
        returned = [(run, half_precision(weights)) for run, weights in returned]
        pack_in_tars(args.out, [(f"{run.name}.pt", weights) for run, weights in returned])
    for name in stopped:
        if name in summary:
            summary[name]["stopped_at_deadline"] = True
    summary.update({name: {"not_begun": True} for name in not_begun})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if returned:
        from attncomp.image import list_images, read_split

        split = read_split(args.val_split)
        images = [p for p in list_images(args.data) if p.stem in split][: args.check_images]
        with tarfile.open(args.out / "streams.tar", "w") as tar:
            code_streams(returned[0][1], images, tar)
    for name in stopped:
        print(f"gpu_round: {name} stopped at the {args.deadline:g}-minute deadline; its last export came back", file=sys.stderr)
    for name in failed:
        print(f"gpu_round: {name} failed; see logs.tar.gz {name}/train.log", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
