"""The CompressAI internals attncomp uses are still there and compute what its public API does."""

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from attncomp.models import entropy_internals as internals


def test_the_installed_compressai_has_every_internal_attncomp_uses():
    missing = internals.check()
    assert not missing, f"this CompressAI lacks {', '.join(missing)}: update attncomp/models/entropy_internals.py"


def test_the_internal_likelihoods_are_the_ones_forward_computes():
    """Refinement's rate must be the rate the models train on: same numbers as the public forward pass."""
    torch.manual_seed(0)
    bottleneck = EntropyBottleneck(4).eval()
    z = torch.randn(2, 4, 3, 5) * 3
    z_hat, expected = bottleneck(z)
    assert torch.equal(z_hat, torch.round(z - internals.bottleneck_medians(bottleneck)) + internals.bottleneck_medians(bottleneck))
    bits = -internals.bottleneck_likelihoods(bottleneck, z_hat).log2().sum()
    assert torch.allclose(bits, -expected.log2().sum())

    conditional = GaussianConditional(None).eval()
    y, scales, means = torch.randn(2, 4, 3, 5) * 4, torch.rand(2, 4, 3, 5) * 5, torch.randn(2, 4, 3, 5)
    y_hat, expected = conditional(y, scales, means)
    assert torch.allclose(internals.conditional_likelihoods(conditional, y_hat, scales, means), expected)
    assert internals.scale_bound(conditional) == conditional.lower_bound_scale(torch.zeros(1)).item()


def test_the_decoded_symbols_are_the_ones_compressais_decompress_returns():
    torch.manual_seed(0)
    conditional = GaussianConditional(None).eval()
    conditional.update_scale_table(torch.exp(torch.linspace(-2, 3, 16)))
    scales, means = torch.rand(2, 4, 3, 5) * 8, torch.randn(2, 4, 3, 5)
    indexes = conditional.build_indexes(scales)
    strings = conditional.compress(torch.randn(2, 4, 3, 5) * 6, indexes, means)
    symbols = internals.conditional_symbols(conditional, strings, indexes)
    assert symbols.dtype == torch.float64 and symbols.abs().max() > 2
    assert torch.equal(symbols + means.double(), conditional.decompress(strings, indexes, torch.float64, means.double()))
