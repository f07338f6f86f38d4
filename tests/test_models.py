"""The models of both papers: shapes, switches and CompressAI compatibility."""

import pytest
import torch
from compressai.models import ScaleHyperprior

from attncomp.errors import WeightsError
from attncomp.models import (
    ZOO,
    AttentionHyperprior,
    ChannelAttention,
    PostFilter,
    SpatialAttentionAE,
    create,
    load,
    load_weights,
    weights_hash,
)

from .helpers import TINY


def test_channel_attention_scales_each_channel_by_a_gate_in_0_1():
    block = ChannelAttention(32, reduction=16)
    x = torch.randn(2, 32, 9, 7)
    gate = block.gate(x)
    assert gate.shape == (2, 32, 1, 1)
    assert torch.all((gate > 0) & (gate < 1))
    assert torch.allclose(block(x), x * gate)
    assert block.mlp[0].out_channels == 2  # C → C/r → C


def test_channel_attention_on_three_channels_keeps_one_hidden_unit():
    assert ChannelAttention(3, reduction=16).mlp[0].out_channels == 1


def test_post_filter_maps_images_to_images_in_0_1():
    out = PostFilter(channels=8)(torch.rand(1, 3, 17, 23))
    assert out.shape == (1, 3, 17, 23)
    assert out.min() >= 0 and out.max() <= 1


def test_attention_hyperprior_is_a_compressai_scale_hyperprior():
    assert issubclass(AttentionHyperprior, ScaleHyperprior)
    out = AttentionHyperprior(**TINY)(torch.rand(2, 3, 128, 192))
    assert out["x_hat"].shape == (2, 3, 128, 192)
    assert out["likelihoods"]["y"].shape == (2, 24, 8, 12)
    assert out["likelihoods"]["z"].shape == (2, 16, 2, 3)


def test_switches_off_give_exactly_compressais_parameters():
    plain = AttentionHyperprior(N=16, M=24, attention=False, postfilter=False)
    reference = ScaleHyperprior(N=16, M=24)
    assert plain.state_dict().keys() == reference.state_dict().keys()
    plain.load_state_dict(reference.state_dict())  # CompressAI weights load as they are


@pytest.mark.parametrize("attention,postfilter", [(True, True), (True, False), (False, True), (False, False)])
def test_switches_add_exactly_their_blocks(attention, postfilter):
    model = AttentionHyperprior(**TINY, attention=attention, postfilter=postfilter)
    n_attention = sum(isinstance(m, ChannelAttention) for m in model.modules())
    assert n_attention == (4 if attention else 0)
    assert isinstance(model.post_filter, PostFilter) == postfilter


def test_from_state_dict_recovers_sizes_and_switches():
    model = AttentionHyperprior(N=16, M=32, reduction=8, postfilter_channels=8, postfilter=True)
    rebuilt = AttentionHyperprior.from_state_dict(model.state_dict())
    assert rebuilt.config == model.config


@pytest.mark.parametrize("channels", [1, 3])
def test_spatial_attention_ae_codes_one_channel_at_half_resolution(channels):
    model = SpatialAttentionAE(in_channels=channels)
    out = model(torch.rand(2, channels, 32, 48))
    assert out["x_hat"].shape == (2, channels, 32, 48)
    assert out["likelihoods"]["code"].shape == (2, 1, 16, 24)
    assert model.downsampling_factor == 2


def test_spatial_attention_is_inverted_and_multiplies_the_code():
    model = SpatialAttentionAE(in_channels=1)
    x = torch.rand(1, 1, 16, 16)
    code = model.encoder(x)
    assert torch.allclose(model.encode(x), code * (1 - model.attention(code)))


def test_zoo_knows_both_papers_and_rejects_unknown_names():
    assert {"attn-hyperprior", "attn-hyperprior-paper", "plain-hyperprior", "spatial-ae"} <= set(ZOO)
    paper = create("attn-hyperprior-paper")
    assert (paper.N, paper.M) == (192, 320)
    with pytest.raises(WeightsError, match="unknown model"):
        create("nope")
    with pytest.raises(WeightsError, match="has no option K"):
        create("attn-hyperprior", K=3)
    with pytest.raises(WeightsError, match="quality 9"):
        load("attn-hyperprior", quality=9)


def test_weights_file_round_trip_keeps_config_and_outputs(tiny_weights):
    model = load_weights(tiny_weights)
    assert not model.training and model.config["N"] == 16 and model.lmbda == 0.01
    again = load_weights(tiny_weights)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["x_hat"], again(x)["x_hat"])
    assert weights_hash(model) == weights_hash(again) and len(weights_hash(model)) == 8


def test_the_weights_hash_follows_in_place_updates(tiny_weights):
    model = load_weights(tiny_weights)
    before = weights_hash(model)
    with torch.no_grad():
        model.g_s[0].weight.add_(1e-3)  # fine-tuning a loaded model changes what its streams claim
    assert weights_hash(model) != before
    assert weights_hash(model) == weights_hash(model)


def test_weights_files_are_plain_data(tiny_weights):
    payload = torch.load(tiny_weights, weights_only=True)
    assert payload["format"] == "attncomp-weights" and payload["model"] == "attn-hyperprior"


def test_bad_weights_files_raise_weights_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(junk)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an attncomp weights file"):
        load_weights(tmp_path / "other.pt")
    torch.save({"format": "attncomp-weights", "version": 1, "config": {}}, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="incomplete"):
        load_weights(tmp_path / "partial.pt")


def test_a_state_with_differently_sized_cdf_tables_loads_over_built_ones(tiny_weights):
    from attncomp.models.zoo import load_state

    model = load_weights(tiny_weights)  # its CDF tables are built
    other = create("attn-hyperprior", **TINY)
    with torch.no_grad():
        other.entropy_bottleneck.quantiles.mul_(4)  # wider support: longer CDFs
    other.update(force=True)
    assert other.entropy_bottleneck._quantized_cdf.shape != model.entropy_bottleneck._quantized_cdf.shape
    load_state(model, other.state_dict())
    assert torch.equal(model.entropy_bottleneck._quantized_cdf, other.entropy_bottleneck._quantized_cdf)
