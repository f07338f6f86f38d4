"""The LightningModule: one rate–distortion training step for any zoo model."""

from __future__ import annotations

import functools
import math
from typing import Literal, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from pytorch_msssim import ms_ssim

from ..errors import WeightsError
from ..models import zoo
from ..models.layers import in_float32


def rate_bpp(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel: −Σ log2 p over every latent."""
    return sum(torch.log(lk).sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


def ms_ssim_float32(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MS-SSIM on [0, 1] images, in float32 even under bf16 autocast (it logged inf in bf16)."""
    return in_float32(functools.partial(ms_ssim, data_range=1.0))(x_hat, x)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10(mse.clamp_min(1e-10))


def lr_factor(progress: float, decay_start: float, final_ratio: float) -> float:
    """Constant learning rate, then a geometric decay to ``final_ratio`` over the rest of the run.

    ``progress`` is the fraction of the run done, in steps or in wall-clock
    time. Holding the rate high for most of the run and annealing at the end
    is what the paper's 3e-3 → 3e-5 schedule does; tying the decay to the
    run's budget lets a resumed run with a larger budget decay later.
    """
    if progress <= decay_start or decay_start >= 1:
        return 1.0
    return final_ratio ** min((progress - decay_start) / (1 - decay_start), 1.0)


def step_decay(max_steps: int, decay_start: float, final_ratio: float):
    """:func:`lr_factor` over ``max_steps`` steps, as ``LambdaLR`` takes it."""
    return lambda step: lr_factor(step / max_steps, decay_start, final_ratio)


def time_decay(timer: Timer, decay_start: float, final_ratio: float):
    """:func:`lr_factor` over the wall-clock budget of Lightning's ``max_time`` (``timer``)."""

    def factor(step: int) -> float:
        elapsed = timer.time_elapsed("train")
        total = elapsed + (timer.time_remaining("train") or 0.0)
        return lr_factor(elapsed / total if total > 0 else 0.0, decay_start, final_ratio)

    return factor


class CompressionModule(pl.LightningModule):
    """Trains a zoo model on loss = λ·255²·MSE + bpp (CompressAI's convention).

    With ``distortion="ms-ssim"`` the loss is λ·(1 − MS-SSIM) + bpp. The
    entropy bottleneck's quantiles have their own optimizer on CompressAI's
    auxiliary loss, so optimisation is manual.

    Args:
        model: zoo name (``attncomp.models.ZOO``).
        lmbda: rate–distortion trade-off λ.
        model_config: overrides of the zoo entry's constructor arguments.
        init_weights: exported weights to start from (fine-tune another rate).
        lr: learning rate held for the first ``decay_start`` of the steps.
        lr_final_ratio: the learning rate at the last step, relative to ``lr``.
        schedule: what ``decay_start`` is a fraction of: ``steps`` (``max_steps``) or
            ``time`` (the trainer's ``max_time``, for wall-clock-budgeted rounds on a GPU).
        channels_last: NHWC tensors, faster convolutions on CPU.
        compile: ``torch.compile`` the transforms.
    """

    def __init__(
        self,
        model: str = zoo.DEFAULT_MODEL,
        lmbda: float = 0.013,
        distortion: Literal["mse", "ms-ssim"] = "mse",
        model_config: Optional[dict] = None,
        init_weights: Optional[str] = None,
        lr: float = 1e-4,
        lr_final_ratio: float = 0.01,
        decay_start: float = 0.8,
        aux_lr: float = 1e-3,
        clip_max_norm: float = 1.0,
        schedule: Literal["steps", "time"] = "steps",
        channels_last: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.parent = None  # what the initial weights were trained with, for the export's record
        if init_weights:
            self.model = zoo.load_weights(init_weights)
            if self.model.zoo_name != model:
                raise WeightsError(f"--model.init_weights holds {self.model.zoo_name}, not {model}")
            changed = sorted(k for k, v in (model_config or {}).items() if self.model.config.get(k) != v)
            if changed:  # the file's sizes win; say so rather than train another model than asked for
                raise WeightsError(
                    f"--model.init_weights fixes the model's {', '.join(changed)}; drop them from --model.model_config"
                )
            self.parent = dict(self.model.training_info, lmbda=self.model.lmbda)
            self.model.train()
        else:
            self.model = zoo.create(model, **(model_config or {}))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            for name in ("g_a", "g_s", "h_a", "h_s", "post_filter", "encoder", "decoder"):
                if hasattr(self.model, name):
                    getattr(self.model, name).compile()

    def forward(self, x: torch.Tensor) -> dict:
        return self.model(x)

    def setup(self, stage: str) -> None:
        # The quantiles only see the auxiliary loss, which does not depend on the data: every
        # DDP rank computes the same gradient for them, so DDP need not (and cannot) sync them.
        quantiles = [f"model.{n}" for n, _ in self.model.named_parameters() if n.endswith(".quantiles")]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, quantiles)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["initialised_from"] = self.parent

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A resumed run keeps the record of the weights it first started from: --model.init_weights
        # may name a file that has been overwritten since (train_zoo.sh re-bundles after each session).
        if "initialised_from" in checkpoint:
            self.parent = checkpoint["initialised_from"]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Through :func:`attncomp.models.zoo.load_state`, which resizes the CDF tables an export filled."""
        return zoo.load_state(self.model, {k.removeprefix("model."): v for k, v in state_dict.items()}, strict=strict)

    def rd_loss(self, x: torch.Tensor, out: dict) -> dict:
        x_hat = out["x_hat"].float()
        num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = rate_bpp(out["likelihoods"], num_pixels)
        mse = torch.mean((x_hat - x) ** 2)
        if self.hparams.distortion == "mse":
            distortion = 255**2 * mse
        else:
            distortion = 1 - ms_ssim_float32(x_hat, x)
        return {"loss": self.hparams.lmbda * distortion + bpp, "bpp": bpp, "mse": mse, "psnr": psnr(mse)}

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        optimizer, aux_optimizer = self.optimizers()
        x = self._prepare(batch)
        losses = self.rd_loss(x, self.model(x))

        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(losses["loss"])
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip_max_norm, gradient_clip_algorithm="norm")
        optimizer.step()

        aux_loss = self.model.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(aux_loss)
        aux_optimizer.optimizer.step()  # the raw optimizer: global_step counts batches, not two steps each
        self.lr_schedulers().step()

        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=False)
        self.log_dict(
            {"loss": losses["loss"].detach(), "bpp": losses["bpp"].detach(), "psnr": losses["psnr"].detach()},
            prog_bar=True,
            logger=False,
        )
        self.log("train/aux_loss", aux_loss.detach())
        return losses["loss"]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = self._prepare(batch)
        out = self.model(x)
        losses = self.rd_loss(x, out)
        if min(x.shape[-2:]) > 160:  # MS-SSIM's five scales need at least 161 pixels
            losses["ms_ssim"] = ms_ssim_float32(out["x_hat"].clamp(0, 1), x)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=x.shape[0], sync_dist=True)

    def configure_optimizers(self):
        quantiles = {n for n, p in self.model.named_parameters() if n.endswith(".quantiles")}
        params = dict(self.model.named_parameters())
        main = torch.optim.Adam([params[n] for n in sorted(params) if n not in quantiles], lr=self.hparams.lr)
        aux = torch.optim.Adam([params[n] for n in sorted(quantiles)], lr=self.hparams.aux_lr)
        hp = self.hparams
        if hp.schedule == "time":
            timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None)
            if timer is None:
                raise ValueError("--model.schedule time needs a wall-clock budget: pass --trainer.max_time")
            schedule = time_decay(timer, hp.decay_start, hp.lr_final_ratio)
        else:
            max_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else 1_000_000
            schedule = step_decay(max_steps, hp.decay_start, hp.lr_final_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(main, schedule)
        return [main, aux], [{"scheduler": scheduler, "interval": "step"}]
