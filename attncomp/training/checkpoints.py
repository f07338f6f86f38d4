"""Checkpoints every K steps and when the run ends: a run killed (or stopped with Ctrl-C) resumes from the last K-step mark."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint

from ..errors import WeightsError
from ..models.zoo import ENTROPY_TABLE_BUFFERS, safe_load



class PeriodicCheckpoint(ModelCheckpoint):
    """``last.ckpt`` (and the newest ``step*.ckpt``) every ``every_n_train_steps`` and when training ends.

    Lightning writes checkpoints through an fsspec transaction (a temporary
    file renamed into place), so a killed run leaves the previous checkpoint
    intact rather than a half-written one.
    """

    def __init__(self, dirpath, every_n_train_steps: int):
        super().__init__(
            dirpath=dirpath,
            filename="step{step:07d}",
            auto_insert_metric_name=False,
            every_n_train_steps=every_n_train_steps,
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,  # a resumed run keeps writing last.ckpt
        )

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.global_step != self._last_global_step_saved:
            last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
            trainer.save_checkpoint(last, weights_only=False)  # optimizers included: resumable


def check_resumable(path, module) -> None:
    """Refuse a checkpoint that is unreadable or was written for another model, with a clear message."""
    checkpoint = safe_load(path, "checkpoint")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "global_step" not in checkpoint:
        raise WeightsError(f"{path} is not a Lightning checkpoint")
    expected = {k: v.shape for k, v in module.state_dict().items() if not k.endswith(ENTROPY_TABLE_BUFFERS)}
    found = {k: v.shape for k, v in checkpoint["state_dict"].items() if not k.endswith(ENTROPY_TABLE_BUFFERS)}
    network = module.network_identity()
    if expected != found or checkpoint.get("network", network) != network:  # older checkpoints: shapes only
        raise WeightsError(f"checkpoint {path} was written for a different model or configuration")
