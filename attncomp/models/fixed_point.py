"""Reproducible hyper-synthesis: h_s evaluated in exact fixed-point arithmetic.

The range decoder must see exactly the scale indexes the encoder used; one
flipped index desynchronises everything after it (CompressAI issues #279,
#309). A float h_s gives no such guarantee: the summation order of a
convolution changes with the thread count, the memory format, the batch and
the hardware. Following Ballé et al., "Integer networks for data compression"
(ICLR 2019), the trained float h_s is evaluated here on integers:

* activations are integers in units of 2**-ACT_BITS,
* weights are rounded to integers in units of 2**-WEIGHT_BITS,
* every convolution accumulates integers in float64, which is exact while
  every partial sum stays below 2**53, so the result does not depend on the
  order of the additions, and is rescaled with an exact floor,
* the attention gate's sigmoid is read from an integer table (``GATE_TABLE``)
  whose entries are checked to lie far from any rounding boundary.

Only IEEE-754 operations that are exact or correctly rounded are used, so
every machine computes the same scales bit for bit. It always runs on the
CPU, whatever device holds the model (its output has 1/256 of the image's
pixels, so this costs little): a GPU's convolution libraries may pick
algorithms (FFT, Winograd) that are not exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChannelAttention

# These constants define the scales a stream decodes with: changing any of them changes the
# bitstream format (bump codec.container.FORMAT_VERSION; the frozen streams of tests/data fail without it).
ACT_BITS = 8
WEIGHT_BITS = 12
GATE_BITS = 12
ACT_LIMIT = 2.0**22
EXACT_LIMIT = 2.0**53
GATE_RANGE = 16.0  # the sigmoid is tabulated on [-GATE_RANGE, GATE_RANGE]


def _gate_table(gain: float) -> torch.Tensor:
    steps = torch.arange(-GATE_RANGE * 2**ACT_BITS, GATE_RANGE * 2**ACT_BITS + 1, dtype=torch.float64)
    return torch.round(gain * torch.sigmoid(steps / 2**ACT_BITS) * 2**GATE_BITS)


GATE_TABLE = _gate_table(1.0)  # the paper's sigmoid gate
RESIDUAL_GATE_TABLE = _gate_table(2.0)  # the residual form's 2·sigmoid


def _check_exact(weight: torch.Tensor, bias: torch.Tensor, fan_in: int) -> None:
    """Every partial sum of a layer on activations within ±ACT_LIMIT stays an exact float64 integer."""
    bound = weight.abs().max().item() * ACT_LIMIT * fan_in + bias.abs().max().item()
    if bound >= EXACT_LIMIT:
        raise ValueError("weights too large for exact fixed-point hyper-synthesis")


def _requantize(acc: torch.Tensor) -> torch.Tensor:
    return torch.floor(acc / 2**WEIGHT_BITS).clamp_(-ACT_LIMIT, ACT_LIMIT)


@dataclass(frozen=True)
class IntegerConv:
    """A convolution's weight and bias rounded to integers, with its geometry."""

    weight: torch.Tensor
    bias: torch.Tensor
    transposed: bool
    stride: tuple
    padding: tuple
    output_padding: tuple

    @classmethod
    def of(cls, layer: nn.Conv2d | nn.ConvTranspose2d) -> IntegerConv:
        weight = torch.round(layer.weight.detach().cpu().double() * 2**WEIGHT_BITS).contiguous()
        bias = torch.round(layer.bias.detach().cpu().double() * 2 ** (ACT_BITS + WEIGHT_BITS))
        _check_exact(weight, bias, layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1])
        transposed = isinstance(layer, nn.ConvTranspose2d)
        return cls(weight, bias, transposed, layer.stride, layer.padding, layer.output_padding if transposed else ())

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            acc = F.conv_transpose2d(q, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        else:
            acc = F.conv2d(q, self.weight, self.bias, self.stride, self.padding)
        return _requantize(acc)


@dataclass(frozen=True)
class IntegerReLU:
    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return torch.relu(q)


@dataclass(frozen=True)
class IntegerChannelAttention:
    """The attention gate on integers: integer MLP, sigmoid read from a table of integers."""

    squeeze: IntegerConv
    expand: IntegerConv
    table: torch.Tensor

    @classmethod
    def of(cls, block: ChannelAttention) -> IntegerChannelAttention:
        squeeze, _, expand = block.mlp
        table = RESIDUAL_GATE_TABLE if block.residual else GATE_TABLE
        return cls(IntegerConv.of(squeeze), IntegerConv.of(expand), table)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        avg = torch.floor(q.sum(dim=(2, 3), keepdim=True) / (q.shape[2] * q.shape[3]))
        peak = q.amax(dim=(2, 3), keepdim=True)
        logits = sum(self.expand(torch.relu(self.squeeze(s))) for s in (avg, peak))
        index = logits.clamp(-GATE_RANGE * 2**ACT_BITS, GATE_RANGE * 2**ACT_BITS) + GATE_RANGE * 2**ACT_BITS
        return torch.floor(q * self.table[index.long()] / 2**GATE_BITS)


def _integer_layer(layer: nn.Module):
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return IntegerConv.of(layer)
    if isinstance(layer, nn.ReLU):
        return IntegerReLU()
    if isinstance(layer, ChannelAttention):
        return IntegerChannelAttention.of(layer)
    raise TypeError(f"no fixed-point rule for {type(layer).__name__}")


@dataclass(frozen=True)
class FixedPointTransform:
    """A float transform frozen into integers: build once per set of weights, run on any machine.

    Rounding and checking the weights costs more than the small convolutions of
    h_s themselves, so a coder builds this once when it loads weights.
    """

    steps: tuple

    @classmethod
    def of(cls, layers) -> FixedPointTransform:
        """From a sequence of convs, ReLUs and ChannelAttention blocks (a ``Transform``'s ``layers``)."""
        return cls(tuple(_integer_layer(layer) for layer in layers))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The transform of ``x``, exactly, on the CPU; float64 values on ``x``'s device."""
        q = torch.round(x.detach().cpu().double().contiguous() * 2**ACT_BITS).clamp_(-ACT_LIMIT, ACT_LIMIT)
        for step in self.steps:
            q = step(q)
        return (q / 2**ACT_BITS).to(x.device)
