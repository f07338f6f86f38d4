"""Export the trained model as a small weights file while training runs."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from ..models import rd, zoo


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


class ExportWeights(pl.Callback):
    """Writes ``path`` (see :mod:`attncomp.models.zoo`) every ``every_n_steps`` and at the end.

    It also counts wall-clock training time across resumed runs, so the
    exported file records the real budget behind the model.
    """

    def __init__(self, path, every_n_steps: int = 1000):
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.seconds_before = 0.0
        self._started = time.monotonic()
        self._first_step = 0
        self._last_step_done = self._started

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = self._last_step_done = time.monotonic()
        self._first_step = trainer.global_step

    def state_dict(self) -> dict:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds_before = float(state_dict.get("seconds", 0.0))

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self._started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last_step_done = time.monotonic()
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.export(trainer, pl_module)

    def export(self, trainer, pl_module) -> None:
        # Exporting builds the CDF tables, which resizes buffers: every rank builds the same ones, or
        # DDP's next broadcast of the module's buffers (a validation after fit) finds sizes that differ.
        pl_module.model.update(force=True)
        if not trainer.is_global_zero:
            return
        hp = pl_module.hparams
        # a variable-rate model (no λ of its own: its λs are in its config) codes every quality
        quality = None if pl_module.lmbda is None else rd.quality_for_lambda(pl_module.lmbda)
        training = dict(
            steps=int(trainer.global_step),
            hours=round(self.seconds() / 3600, 3),
            steps_this_run=int(trainer.global_step - self._first_step),  # this process, for throughput
            seconds_this_run=round(self._last_step_done - self._started, 3),  # to the last step
            hardware=hardware(),
            batch_size=getattr(trainer.datamodule.hparams, "batch_size", None) if trainer.datamodule else None,
            crop_size=getattr(trainer.datamodule.hparams, "crop_size", None) if trainer.datamodule else None,
            precision=str(trainer.precision),
            distortion=hp.distortion,
        )
        if "PL_GLOBAL_SEED" in os.environ:  # set by --seed_everything
            training["seed"] = int(os.environ["PL_GLOBAL_SEED"])
        if pl_module.parent:
            training["initialised_from"] = pl_module.parent
        zoo.save_weights(pl_module.model, self.path, hp.model, quality=quality,
                         lmbda=pl_module.lmbda, training=training)
