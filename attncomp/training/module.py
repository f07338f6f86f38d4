"""The LightningModule: one rate–distortion training step for any zoo model."""

from __future__ import annotations

import functools
from typing import Literal, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from pytorch_msssim import ms_ssim

from ..catalog import DEFAULT_TRAINING_MODEL
from ..errors import WeightsError
from ..models import AttentionHyperprior, rd, zoo
from ..models.layers import in_float32
from .data import draw_seed


# Where a wider model's leading channels mean what the source's do. Not h_s: a mean-scale h_s stacks
# scales and means, so a wider one's leading channels are not the source's.
RESIZABLE = ("g_a.", "g_s.", "h_a.", "gains", "inverse_gains")


def copy_matching_tensors(path, network) -> dict:
    """Copy into ``network`` each tensor of the weights file ``path`` with the same name and shape, and
    the shared channels of a same-named tensor whose channel counts differ (e.g. a wider M).

    Left out: CDF tables (exporting rebuilds them), and blocks whose switch differs between the
    two configs even where shapes agree (a paper post-filter's weights are no residual one's,
    a scale prior's h_a, h_s and z density no mean-scale prior's). Returns the file's training record with what
    was copied, for the export's ``initialised_from``.
    """
    payload = zoo.read_weights(path)
    source_network = zoo.build_network(payload, path)
    source, own = source_network.state_dict(), network.state_dict()
    theirs, ours = getattr(source_network, "config", {}), getattr(network, "config", {})
    skip = [f".{name}" for name in zoo.ENTROPY_TABLE_BUFFERS]
    differs = {k for k in ("attention", "postfilter", "prior") if theirs.get(k) != ours.get(k)}
    excluded = (["attention."] if "attention" in differs else []) + (["post_filter."] if "postfilter" in differs else [])
    excluded += ["h_a.", "h_s.", "entropy_bottleneck."] if "prior" in differs else []  # z's density follows h_a

    def wanted(key: str) -> bool:
        return not key.endswith(tuple(skip)) and not any(part in key for part in excluded)

    shared = {k: v for k, v in source.items() if k in own and wanted(k)}
    matching = {k: v for k, v in shared.items() if own[k].shape == v.shape}
    resized = {k: overlap_copy(v, own[k]) for k, v in shared.items()
               if k not in matching and k.startswith(RESIZABLE) and channels_differ(v, own[k])}
    if not matching:
        raise WeightsError(f"{path} shares no tensor with {type(network).__name__}: nothing to warm-start from")
    network.load_state_dict({**own, **matching, **resized})  # everything else keeps its own (fresh) values
    copied = sorted({".".join(k.split(".")[:2]) for k in matching})  # e.g. g_a.body, g_a.attention
    return dict(payload.get("training") or {}, model=payload["model"], lmbda=payload.get("lmbda"), copied=copied,
                resized=sorted(resized))


def channels_differ(source: torch.Tensor, own: torch.Tensor) -> bool:
    """Whether two tensors differ only in their channel counts (the first two dimensions), as a layer
    next to the latents does between models with different M; kernels must agree."""
    return source.dim() == own.dim() >= 1 and source.shape[2:] == own.shape[2:]


def overlap_copy(source: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``own`` with ``source`` in the leading channels they share: a model with more latent channels
    starts with the source's, the extra ones keep their fresh values."""
    shared = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, own.shape))
    merged = own.clone()
    merged[shared] = source[shared]
    return merged


def ms_ssim_float32(x_hat: torch.Tensor, x: torch.Tensor, size_average: bool = True) -> torch.Tensor:
    """MS-SSIM on [0, 1] images, in float32 even under bf16 autocast (it logged inf in bf16)."""
    return in_float32(functools.partial(ms_ssim, data_range=1.0, size_average=size_average))(x_hat, x)


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


def step_decay(max_steps: int, decay_start: float, final_ratio: float, steps_before=lambda: 0):
    """:func:`lr_factor` over ``max_steps`` steps, as ``LambdaLR`` takes it.

    ``steps_before`` (called at each step) counts steps trained before this run that the schedule
    spans too: with them, a run continued from weights trained S steps takes the rate where a run
    over all ``S + max_steps`` steps would be, whichever part of the lineage it trains.
    """

    def factor(step: int) -> float:
        before = steps_before()
        return lr_factor((before + step) / (before + max_steps), decay_start, final_ratio)

    return factor


def time_decay(timer: Timer, decay_start: float, final_ratio: float):
    """:func:`lr_factor` over the wall-clock budget of Lightning's ``max_time`` (``timer``)."""

    def factor(step: int) -> float:
        elapsed = timer.time_elapsed("train")
        total = elapsed + (timer.time_remaining("train") or 0.0)
        return lr_factor(elapsed / total if total > 0 else 0.0, decay_start, final_ratio)

    return factor


FIXED_RATE_LAMBDA = 0.013  # a fixed-rate run's λ unless told: CompressAI's quality 4
LEVEL_MEAN_RATE = 0.01  # level_weighting="relative": how far a batch moves its levels' running means


class CompressionModule(pl.LightningModule):
    """Trains a zoo model on loss = λ·255²·MSE + bpp (CompressAI's convention).

    With ``distortion="ms-ssim"`` the loss is λ·(1 − MS-SSIM) + bpp. The
    entropy bottleneck's quantiles have their own optimizer on CompressAI's
    auxiliary loss, so optimisation is manual.

    Args:
        model: zoo name (``attncomp.models.ZOO``); by default the lite fixed-rate model.
        lmbda: a fixed-rate model's rate–distortion trade-off λ (default 0.013, CompressAI's quality 4).
            A variable-rate model trains each of its own λs and refuses one, which it would ignore.
        model_config: overrides of the zoo entry's constructor arguments.
        init_weights: exported weights of this same model to start from (fine-tune another rate).
        warm_start: exported weights of another model (e.g. a fixed-rate one for a variable-rate
            model) whose tensors are copied wherever name and shape match; the rest starts fresh.
        lr: learning rate held for the first ``decay_start`` of the steps.
        lr_final_ratio: the learning rate at the last step, relative to ``lr``.
        schedule: what ``decay_start`` is a fraction of: ``steps`` (``max_steps``), ``total-steps``
            (the steps behind ``init_weights`` and ``max_steps``: runs that continue one another from
            kept weights, in any session, share one schedule, as the ablation's rounds do) or
            ``time`` (the trainer's ``max_time``, for wall-clock-budgeted rounds on a GPU).
        channels_last: NHWC tensors, faster convolutions on CPU.
        compile: ``torch.compile`` the transforms.
        level_weighting: how a variable-rate model's λs share the gradient: ``uniform``, the mean of
            their losses, which the highest λs dominate (their λ·255²·MSE + bpp is ~15× the lowest's);
            or ``relative``, each loss divided by its level's running mean, so that the same relative
            gain counts alike at every rate, as BD-rate counts it.
        synthesis_input: what g_s reconstructs from in training, ``noise`` (y + uniform noise) or
            ``rounded`` (ŷ as the coder rounds it, straight-through gradient; the rate still sees the
            noise): see :meth:`~attncomp.models.AttentionHyperprior.forward`.
    """

    def __init__(
        self,
        model: str = DEFAULT_TRAINING_MODEL,
        lmbda: Optional[float] = None,
        distortion: Literal["mse", "ms-ssim"] = "mse",
        model_config: Optional[dict] = None,
        init_weights: Optional[str] = None,
        warm_start: Optional[str] = None,
        lr: float = 1e-4,
        lr_final_ratio: float = 0.01,
        decay_start: float = 0.8,
        aux_lr: float = 1e-3,
        clip_max_norm: float = 1.0,
        schedule: Literal["steps", "total-steps", "time"] = "steps",
        channels_last: bool = True,
        compile: bool = False,
        level_weighting: Literal["uniform", "relative"] = "uniform",
        synthesis_input: Literal["noise", "rounded"] = "noise",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.parent = None  # what the initial weights were trained with, for the export's record
        if init_weights:
            payload = zoo.read_weights(init_weights)
            if payload["model"] != model:
                raise WeightsError(f"--model.init_weights holds {payload['model']}, not {model}")
            self.model = zoo.build_network(payload, init_weights)
            changed = sorted(k for k, v in (model_config or {}).items() if self.model.config.get(k) != v)
            if changed:  # the file's sizes win; say so rather than train another model than asked for
                raise WeightsError(
                    f"--model.init_weights fixes the model's {', '.join(changed)}; drop them from --model.model_config"
                )
            self.parent = dict(payload.get("training") or {}, lmbda=payload.get("lmbda"))
        else:
            self.model = zoo.create(model, **(model_config or {}))
        if warm_start:
            if init_weights:
                raise WeightsError("pass --model.init_weights or --model.warm_start, not both")
            self.parent = dict(copy_matching_tensors(warm_start, self.model), warm_start=str(warm_start))
        if synthesis_input != "noise" and not isinstance(self.model, AttentionHyperprior):
            raise ValueError(f"--model.synthesis_input {synthesis_input}: {model} has no such choice")
        # a variable-rate model trains every rate at once: each image of a batch draws one of its λs
        self.lambdas = tuple(getattr(self.model, "config", {}).get("lambdas", ()))
        if self.lambdas and lmbda is not None:
            raise ValueError(f"--lmbda: {model} is a variable-rate model and trains each of its λs {self.lambdas}; "
                             "drop --lmbda (or model.lmbda from a --config file), or train a fixed-rate model "
                             f"(--model.model {DEFAULT_TRAINING_MODEL})")
        # the logged hyperparameters hold the λ this run trains (None for a variable-rate model: its config holds its λs)
        self.hparams.lmbda = None if self.lambdas else (FIXED_RATE_LAMBDA if lmbda is None else lmbda)
        # on the training device once, not copied there every step (not saved: the model's config holds them)
        self.register_buffer("lambda_table", torch.tensor(self.lambdas, dtype=torch.float32), persistent=False)
        # level_weighting="relative": each level's running mean loss (NaN until drawn); checkpoints keep it
        # beside the state dict, which stays the network's
        self.register_buffer("level_loss_mean", torch.full((len(self.lambdas),), float("nan")), persistent=False)
        # a variable-rate run's λ draws, seeded at the start of training: runs of one seed draw the same λs at
        # the same steps whatever else their architecture takes from the global generator (the ablation compares them)
        self.level_generator: Optional[torch.Generator] = None
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            for name in ("g_a", "g_s", "h_a", "h_s", "post_filter", "encoder", "decoder"):
                if hasattr(self.model, name):
                    getattr(self.model, name).compile()

    @property
    def lmbda(self) -> Optional[float]:
        """The λ this run trains; None for a variable-rate model, which trains each of its own."""
        return self.hparams.lmbda

    def forward(self, x: torch.Tensor) -> dict:
        return self.model(x)

    def setup(self, stage: str) -> None:
        # The quantiles only see the auxiliary loss, which does not depend on the data: every
        # DDP rank computes the same gradient for them, so DDP need not (and cannot) sync them.
        quantiles = [f"model.{n}" for n, _ in self.model.named_parameters() if n.endswith(".quantiles")]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, quantiles)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["initialised_from"] = self.parent
        checkpoint["network"] = self.network_identity()
        checkpoint["level_loss_mean"] = self.level_loss_mean.tolist()

    def network_identity(self) -> dict:
        """What the network is, for :func:`~attncomp.training.checkpoints.check_resumable`: switches such as
        paper or residual blocks leave the tensor shapes alike."""
        return {"model": self.hparams.model, "config": dict(self.model.config)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A resumed run keeps the record of the weights it first started from: --model.init_weights
        # may name a file that has been overwritten since (train_zoo.sh re-bundles after each session).
        if "initialised_from" in checkpoint:
            self.parent = checkpoint["initialised_from"]
        if len(checkpoint.get("level_loss_mean", ())) == len(self.lambdas):
            self.level_loss_mean.copy_(torch.tensor(checkpoint["level_loss_mean"]))

    def steps_before(self) -> int:
        """Steps behind this run's initial weights, counted as its export will record them
        (:func:`~attncomp.models.zoo.trained_steps`: 0 from scratch or from a warm start)."""
        return zoo.trained_steps({"initialised_from": self.parent})

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Through :func:`attncomp.models.zoo.load_state`, which resizes the CDF tables an export filled."""
        return zoo.load_state(self.model, {k.removeprefix("model."): v for k, v in state_dict.items()}, strict=strict)

    def rd_loss(self, x: torch.Tensor, out: dict, lmbda, levels: Optional[torch.Tensor] = None) -> dict:
        """λ·distortion + bpp per image, averaged; ``lmbda`` is a float or one λ per image, drawn at
        ``levels``, with which ``objective`` is what training lowers (``level_weighting``)."""
        x_hat = out["x_hat"].float()
        pixels = x.shape[2] * x.shape[3]
        bpp = rd.bits_per_image(out["likelihoods"]) / pixels
        mse = torch.mean((x_hat - x) ** 2, dim=(1, 2, 3))
        if self.hparams.distortion == "mse":
            loss = rd.objective(lmbda, mse, bpp)
        else:
            if min(x.shape[-2:]) < rd.MS_SSIM_MIN_SIDE:  # pytorch_msssim would only assert
                raise ValueError(
                    f"an MS-SSIM loss needs images of at least {rd.MS_SSIM_MIN_SIDE}×{rd.MS_SSIM_MIN_SIDE} pixels "
                    f"(its five scales), got {x.shape[-2]}×{x.shape[-1]}"
                )
            loss = lmbda * (1 - ms_ssim_float32(x_hat, x, size_average=False)) + bpp
        means = {k: v.mean() for k, v in {"loss": loss, "bpp": bpp, "mse": mse}.items()}
        if levels is not None:  # a variable-rate model in training: what its gradient follows
            means["objective"] = self.relative_to_level_means(loss, levels).mean()
        return dict(means, psnr=rd.psnr_from_mse(means["mse"]))

    def relative_to_level_means(self, loss: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Each image's ``loss`` over its level's running mean (``level_weighting="relative"``), which
        this batch updates (by 1% a step; a level's first batch sets it); unchanged with ``uniform``."""
        if self.hparams.level_weighting == "uniform":
            return loss
        with torch.no_grad():  # torch.where, not boolean indexing: no device-to-host sync on a GPU each step
            mean = self.level_loss_mean
            count = torch.zeros_like(mean).index_add_(0, levels, torch.ones_like(loss))
            batch_mean = torch.zeros_like(mean).index_add_(0, levels, loss.float()) / count  # NaN where not drawn
            moved = torch.where(mean.isnan(), batch_mean, mean + LEVEL_MEAN_RATE * (batch_mean - mean))
            mean.copy_(torch.where(count > 0, moved, mean))
        return loss / self.level_loss_mean[levels]

    def on_train_start(self) -> None:
        if self.lambdas:
            self.level_generator = torch.Generator(self.device).manual_seed(draw_seed(self.global_rank, self.global_step))

    def _rate_inputs(self, x: torch.Tensor):
        """(forward's keyword arguments, λ): the run's λ, or one of the model's λs drawn per image."""
        inputs = {} if self.hparams.synthesis_input == "noise" else {"synthesis_input": self.hparams.synthesis_input}
        if not self.lambdas:
            return inputs, self.lmbda
        levels = torch.randint(len(self.lambdas), (x.shape[0],), device=x.device, generator=self.level_generator)
        return dict(inputs, levels=levels), self.lambda_table[levels]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        optimizer, aux_optimizer = self.optimizers()
        x = self._prepare(batch)
        rate, lmbda = self._rate_inputs(x)
        losses = self.rd_loss(x, self.model(x, **rate), lmbda, rate.get("levels"))

        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(losses.pop("objective", losses["loss"]))
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
        """One validation point per λ: a variable-rate model is validated at each of its levels."""
        # Eager: compiled transforms would recompile for every validation image's size and for eval mode,
        # minutes of compilation per run on a GPU round (the first ablation round never finished validating).
        with torch.compiler.set_stance("force_eager"):
            self._validate(self._prepare(batch))

    def _validate(self, x: torch.Tensor) -> None:
        # a variable-rate model at each of its levels, sharing the rate-independent part of the forward pass
        outputs = self.model.each_level(x) if self.lambdas else [self.model(x)]
        losses_per_level = []
        for level, out in enumerate(outputs):
            lmbda = self.lambda_table[level] if self.lambdas else self.lmbda
            losses = self.rd_loss(x, out, lmbda)
            if min(x.shape[-2:]) >= rd.MS_SSIM_MIN_SIDE:
                losses["ms_ssim"] = ms_ssim_float32(out["x_hat"].clamp(0, 1), x)
            suffix = f"_q{level + 1}" if self.lambdas else ""
            self.log_dict({f"val/{k}{suffix}": v for k, v in losses.items()}, batch_size=x.shape[0], sync_dist=True)
            losses_per_level.append(losses["loss"])
        if self.lambdas:  # the mean over levels, what selection compares
            self.log("val/loss", torch.stack(losses_per_level).mean(), batch_size=x.shape[0], sync_dist=True)

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
            # read at each step: a resumed run's record of its initial weights comes back with its checkpoint
            lineage = {"steps_before": self.steps_before} if hp.schedule == "total-steps" else {}
            schedule = step_decay(max_steps, hp.decay_start, hp.lr_final_ratio, **lineage)
        scheduler = torch.optim.lr_scheduler.LambdaLR(main, schedule)
        return [main, aux], [{"scheduler": scheduler, "interval": "step"}]
