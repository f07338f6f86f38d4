"""attncomp-train: Lightning's CLI with the short options of a codec library.

Every option can also live in a YAML file (``--config``) and
``--print_config`` shows the full configuration. The short options are
aliases of LightningCLI's dotted ones:

    --lmbda X        --model.lmbda X
    --data DIR       --data.train_dir DIR
    --val-data DIR   --data.val_dir DIR
    --max-steps N    --trainer.max_steps N
    --accelerator A  --trainer.accelerator A   (likewise --devices, --strategy, --precision)
    --out DIR        checkpoints, logs and the exported weights.pt
    --resume CKPT    continue a run (a .ckpt file, or "last" for the newest in --out)
    --stop_at T      end training at wall-clock time T (seconds since the epoch), then export and validate
    --reuse_freed_memory false   glibc's default allocator (by default freed blocks are kept
                     for reuse: CPU training steps then do not page-fault their memory in afresh)

A run ends by validating its final weights (estimated rate, on the validation
split) and writing that point to ``--out``/validation.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ..errors import AttncompError
from ..files import atomic_write
from ..models import image_channels
from ..models.layers import bfloat16_is_fast
from ..models.rd import MS_SSIM_MIN_SIDE
from ..training import (
    CompressionModule,
    ExportWeights,
    ImageFolderData,
    PeriodicCheckpoint,
    StopAt,
)
from ..training.checkpoints import check_resumable
from . import reuse_freed_memory

ALIASES = {
    "--lmbda": "--model.lmbda",
    "--data": "--data.train_dir",
    "--val-data": "--data.val_dir",
    "--max-steps": "--trainer.max_steps",
    "--accelerator": "--trainer.accelerator",
    "--devices": "--trainer.devices",
    "--strategy": "--trainer.strategy",
    "--precision": "--trainer.precision",
}


def translate(argv: list[str]) -> list[str]:
    """Rewrite the short aliases (``--lmbda 0.01`` or ``--lmbda=0.01``) to LightningCLI's names."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(ALIASES[name] + eq + value if name in ALIASES else arg)
    return out


class TrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--out", default="runs/attncomp", help="run folder: checkpoints, logs, weights.pt")
        parser.add_argument("--resume", default=None, help='checkpoint to resume, or "last"')
        parser.add_argument("--checkpoint_every", type=int, default=500, help="steps between checkpoints")
        parser.add_argument("--stop_at", type=Optional[float], default=None,
                            help="end training at this wall-clock time (seconds since the epoch), then export and validate")
        parser.add_argument("--reuse_freed_memory", type=bool, default=True,
                            help="keep freed blocks up to 256 MB for reuse instead of returning them to the system "
                                 "(glibc): CPU training steps no longer page-fault their tensors in afresh")
        parser.set_defaults({"trainer.max_steps": 100_000, "trainer.max_epochs": -1})

    def instantiate_trainer(self, **kwargs) -> Trainer:
        out = Path(self.config["out"])
        every = self.config["checkpoint_every"]
        callbacks = [
            PeriodicCheckpoint(out / "checkpoints", every_n_train_steps=every),
            ExportWeights(out / "weights.pt", every_n_steps=every),
        ]
        if self.config["stop_at"] is not None:
            callbacks.append(StopAt(self.config["stop_at"]))
        # each run (and each resume) logs to its own csv/version_N/metrics.csv; TensorBoard appends
        loggers = [CSVLogger(out, name="csv"), TensorBoardLogger(out, name="tensorboard", version="")]
        return super().instantiate_trainer(
            callbacks=(self._get(self.config_init, "trainer", default={}).get("callbacks") or []) + callbacks,
            logger=loggers,
            default_root_dir=str(out),
            **kwargs,
        )


def write_validation_point(trainer: Trainer, module, datamodule, path: Path) -> None:
    """Validate the final weights and record the RD point (estimated bpp, PSNR, loss) with the step."""
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    if not results:  # validation turned off (--trainer.limit_val_batches 0)
        return
    (metrics,) = results
    if trainer.is_global_zero:
        images = int(sum(trainer.num_val_batches))  # batches of one image, after --trainer.limit_val_batches
        point = {"step": trainer.global_step, "images": images, "lmbda": module.lmbda}  # None: one point per λ
        point.update({k.removeprefix("val/"): round(float(v), 6) for k, v in sorted(metrics.items())})
        atomic_write(path, lambda f: f.write(json.dumps(point, indent=1).encode() + b"\n"))


def main(argv: list[str] | None = None) -> int:
    # DDP relaunches this program with sys.argv, so the translated options go there.
    sys.argv[1:] = translate(sys.argv[1:] if argv is None else argv)
    try:
        cli = TrainCLI(
            CompressionModule,
            ImageFolderData,
            run=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": __doc__, "prog": "attncomp-train"},
            seed_everything_default=0,
        )
        if cli.config["reuse_freed_memory"]:
            reuse_freed_memory()
        channels = image_channels(cli.model.model)
        if cli.datamodule.hparams.channels != channels:
            raise AttncompError(f"{cli.model.hparams.model} codes {channels}-channel images: pass --data.channels {channels}")
        crop, batch = cli.datamodule.hparams.crop_size, cli.datamodule.hparams.batch_size
        factor = cli.model.model.downsampling_factor
        if crop < factor or crop % factor:
            raise AttncompError(f"--data.crop_size must be a positive multiple of {factor} "
                                f"({cli.model.hparams.model} downsamples by {factor}), not {crop}")
        if batch < 1:
            raise AttncompError(f"--data.batch_size must be at least 1, not {batch}")
        if cli.model.hparams.distortion == "ms-ssim" and crop < MS_SSIM_MIN_SIDE:
            raise AttncompError(f"--model.distortion ms-ssim needs --data.crop_size {MS_SSIM_MIN_SIDE} or more "
                                f"(MS-SSIM's five scales), not {crop}")
        device = cli.trainer.strategy.root_device
        if str(cli.trainer.precision).startswith("bf16") and not bfloat16_is_fast(device):
            print(f"attncomp-train: warning: this {device.type.upper()} has no fast bf16 (it needs AVX-512): "
                  "--precision 32 trains far faster here", file=sys.stderr)
        out, resume = Path(cli.config["out"]), cli.config["resume"]
        if resume == "last":
            last = out / "checkpoints" / "last.ckpt"
            resume = str(last) if last.is_file() else None  # "last" in an empty --out starts the run
            if resume is None and (out / "weights.pt").exists():
                raise AttncompError(
                    f"{out} holds weights.pt but no checkpoints/last.ckpt to resume: "
                    f"fine-tune from it with --model.init_weights {out / 'weights.pt'} and another --out"
                )
        if resume:
            check_resumable(resume, cli.model)
        elif (out / "weights.pt").exists() or (out / "checkpoints" / "last.ckpt").exists():
            raise AttncompError(f"{out} already holds a run: pass --resume last to continue it, or another --out")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume, weights_only=True)
        if cli.datamodule.val_images:
            write_validation_point(cli.trainer, cli.model, cli.datamodule, out / "validation.json")
    # OSError: e.g. an --out that cannot be written; MisconfigurationException: e.g. --accelerator gpu without one
    except (AttncompError, OSError, ValueError, MisconfigurationException) as exc:
        print(f"attncomp-train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
