"""The private internals of CompressAI's entropy models that attncomp uses, in one place.

The bits of a latent under the coder's own distributions (for encoder-side
refinement), the bottleneck's medians, the scale bound, the decoded symbols
without CompressAI's slow list-to-tensor step, and the names of the CDF buffers
a weights file stores. :func:`check` lists any the installed CompressAI lacks;
``tests/test_entropy_internals.py`` runs it, so an upgrade that changes one fails
there with a message that says which.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def bottleneck_medians(bottleneck):
    """The per-channel medians z is rounded around, shape (1, C, 1, 1)."""
    return bottleneck._get_medians()


def bottleneck_likelihoods(bottleneck, z_hat):
    """Lower-bounded likelihoods of already quantised ``z_hat`` (no noise, no rounding)."""
    channels_first = z_hat.transpose(0, 1).reshape(z_hat.size(1), 1, -1)
    likelihoods, _, _ = bottleneck._likelihood(channels_first)
    return bottleneck.likelihood_lower_bound(likelihoods)


def conditional_likelihoods(conditional, y_hat, scales, means=None):
    """Lower-bounded likelihoods of already quantised ``y_hat`` under N(means, scales)."""
    return conditional.likelihood_lower_bound(conditional._likelihood(y_hat, scales, means))


def conditional_symbols(conditional, strings: list, indexes):
    """The integer symbols ``GaussianConditional.decompress`` decodes from ``strings`` (one per batch item)
    with ``indexes``, as a float64 tensor on the CPU: ŷ − means.

    CompressAI's own ``decompress`` turns each string's decoded list into a tensor with ``torch.tensor``,
    which took 8.4 ms for the 131,072 symbols of a 512-px tile here, more than the range decoder itself
    (4.9 ms); through NumPy it takes 2.9 ms. The symbols, and so ŷ, are the same
    (``tests/test_entropy_internals.py``).
    """
    if len(strings) != indexes.size(0):
        raise ValueError(f"{len(strings)} coded strings for a batch of {indexes.size(0)}")
    tables = (
        conditional._quantized_cdf.tolist(),
        conditional._cdf_length.reshape(-1).int().tolist(),
        conditional._offset.reshape(-1).int().tolist(),
    )
    symbols = [
        np.array(conditional.entropy_coder.decode_with_indexes(string, index.reshape(-1).int().tolist(), *tables), np.int32)
        for string, index in zip(strings, indexes)
    ]
    return torch.from_numpy(np.stack(symbols)).reshape(indexes.shape).double()


def scale_bound(conditional) -> float:
    """The smallest scale the conditional codes with."""
    return float(conditional.lower_bound_scale.bound)


def check() -> list[str]:
    """What this module relies on and the installed CompressAI lacks (empty when all is there)."""
    bottleneck, conditional = EntropyBottleneck(2), GaussianConditional(None)
    needs = {
        "EntropyBottleneck._get_medians": hasattr(bottleneck, "_get_medians"),
        "EntropyBottleneck._likelihood": hasattr(bottleneck, "_likelihood"),
        "GaussianConditional._likelihood": hasattr(conditional, "_likelihood"),
        "GaussianConditional.lower_bound_scale.bound": hasattr(getattr(conditional, "lower_bound_scale", None), "bound"),
        "EntropyModel.entropy_coder.decode_with_indexes": hasattr(conditional.entropy_coder, "decode_with_indexes"),
    }
    needs.update({f"EntropyModel buffer {name}": name in dict(bottleneck.named_buffers()) for name in CDF_BUFFERS})
    return [name for name, present in needs.items() if not present]
