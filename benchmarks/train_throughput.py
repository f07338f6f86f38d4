"""Training throughput: attncomp's Lightning step against a plain float32 eager loop.

Both sides train the same model (same initial weights) on the same random
batch in the same process. The baseline is the loop of CompressAI's
``examples/train.py``: float32, contiguous tensors, eager mode, Adam on the
net and on the quantiles. attncomp's side is ``attncomp-train``'s real step
(CompressionModule under a Lightning Trainer) with the config's precision,
memory format and compile setting. Prints megapixels/s of each and the ratio
on the last line.

    python benchmarks/train_throughput.py --config configs/lite.yaml
"""

from __future__ import annotations

import argparse
import copy
import time

import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from attncomp.models import zoo
from attncomp.models import rd
from attncomp.training import CompressionModule


class SameBatch(Dataset):
    def __init__(self, batch, length):
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.batch[i % len(self.batch)]


class StepTimer(pl.Callback):
    def __init__(self, warmup):
        self.warmup, self.start, self.steps = warmup, None, 0

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.steps += 1

    def rate(self):
        return self.steps / (time.perf_counter() - self.start)


def baseline_steps_per_second(model, batch, lmbda, steps, warmup):
    quantiles = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(net, lr=1e-4), torch.optim.Adam(quantiles, lr=1e-3)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        out = model(batch)
        bpp = rd.bits(out["likelihoods"]) / (batch.shape[0] * batch.shape[2] * batch.shape[3])
        loss = rd.objective(lmbda, torch.mean((out["x_hat"] - batch) ** 2), bpp)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net, 1.0)
        optimizer.step()
        aux = model.aux_loss()
        aux_optimizer.zero_grad()
        aux.backward()
        aux_optimizer.step()
    return steps / (time.perf_counter() - start)


def attncomp_steps_per_second(config, state, batch, steps, warmup):
    module = CompressionModule(**config["model"])
    module.model.load_state_dict(state)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=config.get("trainer", {}).get("precision", "32-true"),
        max_steps=warmup + steps,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    loader = DataLoader(SameBatch(batch, len(batch) * (warmup + steps + 1)), batch_size=len(batch))
    trainer.fit(module, loader)
    return timer.rate()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/lite.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation happens here)")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.config))
    data = config.get("data", {})
    crop, batch_size = data.get("crop_size", 128), data.get("batch_size", 16)
    torch.manual_seed(0)
    batch = torch.rand(batch_size, 3, crop, crop)
    model = zoo.create(config["model"]["model"], **(config["model"].get("model_config") or {}))
    state = copy.deepcopy(model.state_dict())
    lmbda = config["model"].get("lmbda", 0.013)
    megapixels = batch_size * crop * crop / 1e6

    base = baseline_steps_per_second(model, batch, lmbda, args.steps, args.warmup)
    ours = attncomp_steps_per_second(config, state, batch, args.steps, args.warmup)
    print(f"model {config['model']['model']}, batch {batch_size}×{crop}², {torch.get_num_threads()} threads")
    print(f"baseline (fp32, eager, contiguous): {base * megapixels:.3f} MP/s")
    print(f"attncomp ({config.get('trainer', {}).get('precision', '32-true')}, channels_last, "
          f"compile={config['model'].get('compile', False)}): {ours * megapixels:.3f} MP/s")
    print(f"speed-up: {ours / base:.2f}x")


if __name__ == "__main__":
    main()
