"""The models of both papers: shapes, switches and CompressAI compatibility."""

import lzma
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import ScaleHyperprior
from compressai.models.utils import deconv

from attncomp.errors import WeightsError
from attncomp.models import (
    ZOO,
    AttentionHyperprior,
    ChannelAttention,
    CodingModel,
    PostFilter,
    SpatialAttentionAE,
    create,
    load,
    load_weights,
)
from attncomp.models import layers, transforms
from attncomp.models.layers import spatial_max
from attncomp.models.transforms import SynthesisTransform
from attncomp.models.zoo import upgrade_v1_hyperprior

from .helpers import TINY, smooth_image


def test_the_papers_channel_attention_scales_each_channel_by_a_gate_in_0_1():
    block = ChannelAttention(32, reduction=16)
    x = torch.randn(2, 32, 9, 7)
    gate = block.gate(x)
    assert gate.shape == (2, 32, 1, 1)
    assert torch.all((gate > 0) & (gate < 1))
    assert torch.allclose(block(x), x * gate)
    assert block.mlp[0].out_channels == 2  # C → C/r → C


@pytest.mark.parametrize("channels", [3, 32])
def test_the_max_pool_of_the_channel_attention_is_the_same_in_either_memory_layout(channels):
    x = torch.randn(2, channels, 9, 7)
    expected = torch.tensor([[[[x[b, c].max()]] for c in range(channels)] for b in range(2)])
    assert torch.equal(spatial_max(x), expected)
    assert torch.equal(spatial_max(x.contiguous(memory_format=torch.channels_last)), expected)


def test_channel_attention_on_three_channels_keeps_one_hidden_unit():
    assert ChannelAttention(3, reduction=16).mlp[0].out_channels == 1


def test_residual_channel_attention_starts_as_the_identity_and_gates_in_0_2():
    torch.manual_seed(0)
    block = ChannelAttention(32, reduction=16, residual=True)
    x = torch.randn(2, 32, 9, 7)
    assert torch.equal(block(x), x)
    torch.nn.init.normal_(block.mlp[2].weight, std=1.0)  # once trained, it can damp or amplify a channel
    gate = block.gate(x)
    assert torch.all((gate >= 0) & (gate <= 2)) and gate.min() < 0.9 and gate.max() > 1.1


def test_the_papers_post_filter_maps_images_to_images_in_0_1():
    out = PostFilter(channels=8)(torch.rand(1, 3, 17, 23))
    assert out.shape == (1, 3, 17, 23)
    assert out.min() >= 0 and out.max() <= 1


def test_the_residual_post_filter_starts_as_the_identity():
    x = torch.rand(1, 3, 17, 23)
    assert torch.equal(PostFilter(channels=8, residual=True)(x), x)


@pytest.mark.parametrize("residual, bf16_correction", [(False, False), (True, False), (True, True)])
def test_the_post_filter_without_gradients_runs_in_bands_with_the_same_output(residual, bf16_correction, monkeypatch):
    torch.manual_seed(0)
    post_filter = PostFilter(channels=8, residual=residual)
    torch.nn.init.normal_(post_filter.net[4].weight, std=0.3)  # a residual filter that is not the identity
    x = torch.rand(2, 3, 61, 40)  # 61 rows: bands of 12 (480 pixels / 40), the last one short
    whole = post_filter(x, bf16_correction)
    monkeypatch.setattr(layers, "BAND_PIXELS", 480)
    banded = []

    def filter_band(band, bf16, whole_filter=post_filter._filter):
        banded.append(band)
        return whole_filter(band, bf16)

    monkeypatch.setattr(post_filter, "_filter", filter_band)
    with torch.no_grad():
        out = post_filter(x, bf16_correction)
    assert [band.shape[-2] for band in banded] == [15, 18, 18, 18, 16, 4]  # 12 rows, 3 of context either side
    assert torch.allclose(out, whole, atol=1e-6)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_last_synthesis_layer_is_compressais_transposed_convolution_also_when_run_as_sub_pixel(memory_format):
    torch.manual_seed(0)
    reference = deconv(16, 3)
    layer = layers.SubPixelDeconv(16, 3)
    layer.load_state_dict(reference.state_dict())  # the same weights under the same keys
    x = torch.randn(2, 16, 9, 13).contiguous(memory_format=memory_format)
    assert torch.equal(layer(x), reference(x))  # with gradients: the transposed convolution itself
    with torch.no_grad():
        assert torch.allclose(layer(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("keep", [(slice(0, 40), slice(0, 64)), (slice(21, 77), slice(35, 90)), (slice(70, 96), slice(3, 5))])
def test_synthesis_of_a_region_equals_the_same_region_of_the_whole_synthesis(keep):
    """g_s asked for ``keep`` computes only what those pixels read, and gets them right (no gate: it pools)."""
    torch.manual_seed(0)
    g_s = SynthesisTransform(16, 24).eval()
    y = torch.randn(1, 24, 6, 8) * 3
    with torch.no_grad():
        torch.testing.assert_close(g_s(y, keep), g_s(y)[..., keep[0], keep[1]], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("keep, bands", [(None, 6), ((slice(21, 77), slice(35, 90)), 4)])
def test_synthesis_without_gradients_runs_its_last_upsamplings_in_bands_with_the_same_output(keep, bands, monkeypatch):
    torch.manual_seed(0)
    g_s = SynthesisTransform(16, 24, attention="paper").eval()  # the gate pools over all bands together
    y = torch.randn(1, 24, 6, 8) * 3  # a 96×128 image
    with torch.no_grad():
        one_pass = g_s(y, keep)
        columns = 128 if keep is None else 55
        monkeypatch.setattr(transforms, "SYNTHESIS_BAND_PIXELS", 16 * columns)  # bands of 16 rows
        runs = []
        monkeypatch.setattr(g_s, "_run", lambda first, *rest, run=g_s._run: runs.append(first) or run(first, *rest))
        banded = g_s(y, keep)
    assert runs.count(0) == 1 and len(runs) == 1 + bands  # the layers before the bands run once
    torch.testing.assert_close(banded, one_pass, atol=1e-5, rtol=1e-4)


def test_attention_hyperprior_is_a_compressai_scale_hyperprior():
    assert issubclass(AttentionHyperprior, ScaleHyperprior)
    out = AttentionHyperprior(**TINY)(torch.rand(2, 3, 128, 192))
    assert out["x_hat"].shape == (2, 3, 128, 192)
    assert out["likelihoods"]["y"].shape == (2, 24, 8, 12)
    assert out["likelihoods"]["z"].shape == (2, 16, 2, 3)


def test_switches_off_give_compressais_architecture_under_named_transforms():
    """Same layers and parameters as CompressAI's ScaleHyperprior; its names gain ``.body``."""
    plain = AttentionHyperprior(N=16, M=24, attention="none", postfilter="none")
    reference = ScaleHyperprior(N=16, M=24)
    _, renamed = upgrade_v1_hyperprior({}, reference.state_dict())
    assert plain.state_dict().keys() == renamed.keys()
    plain.load_state_dict(renamed)  # CompressAI weights load once renamed
    x = torch.rand(1, 3, 64, 64)
    reference.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain.g_s(plain.g_a(x)), reference.g_s(reference.g_a(x)))


@pytest.mark.parametrize("attention", ["none", "paper", "residual"])
@pytest.mark.parametrize("postfilter", ["none", "paper", "residual"])
def test_switches_add_exactly_their_blocks_under_their_names(attention, postfilter):
    model = AttentionHyperprior(**TINY, attention=attention, postfilter=postfilter)
    for transform in (model.g_a, model.g_s, model.h_a, model.h_s):
        assert isinstance(transform.attention, ChannelAttention) == (attention != "none")
        if attention != "none":
            assert transform.attention.residual == (attention == "residual")
    assert isinstance(model.post_filter, PostFilter) == (postfilter != "none")
    if postfilter != "none":
        assert model.post_filter.residual == (postfilter == "residual")


def test_residual_blocks_start_where_the_model_without_them_is():
    """A model with residual attention and post-filter computes, untrained, what the plain model computes."""
    torch.manual_seed(0)
    plain = AttentionHyperprior(**TINY, attention="none", postfilter="none").eval()
    residual = AttentionHyperprior(**TINY, attention="residual", postfilter="residual").eval()
    residual.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(residual(x)["x_hat"], plain(x)["x_hat"])


def test_bad_switch_values_are_refused():
    refusals = {
        "attention must be one of none, paper, residual": dict(attention="yes"),
        "postfilter must be one of none, paper, residual": dict(postfilter=True),
        "prior must be scale or mean-scale": dict(prior="laplace"),
        "lambdas must increase": dict(lambdas=(0.1, 0.01)),
    }
    for message, bad in refusals.items():
        with pytest.raises(ValueError, match=message):
            AttentionHyperprior(**TINY, **bad)


def test_a_mean_scale_prior_predicts_a_mean_and_a_scale_per_latent():
    model = AttentionHyperprior(**TINY, prior="mean-scale")
    z_hat = torch.randn(1, TINY["N"], 2, 3)
    assert model.h_s(z_hat).shape == (1, 2 * TINY["M"], 8, 12)
    means, scales = model.prior_parameters(z_hat)
    assert means.shape == scales.shape == (1, TINY["M"], 8, 12)
    out = model(torch.rand(2, 3, 128, 192))
    assert out["likelihoods"]["y"].shape == (2, TINY["M"], 8, 12)


def test_training_can_reconstruct_from_the_rounded_latents_the_decoder_sees_with_gradients_through_them():
    torch.manual_seed(0)
    model = AttentionHyperprior(**TINY, prior="scale")
    x = torch.rand(1, 3, 64, 64)
    decoded = model.eval()(x)["x_hat"]  # with gradients, as in training: g_s takes the same path
    model.train()
    noisy = model(x)
    rounded = model(x, synthesis_input="rounded")
    assert torch.equal(rounded["x_hat"], decoded) and not torch.equal(noisy["x_hat"], decoded)
    assert not torch.equal(rounded["likelihoods"]["y"], model.eval()(x)["likelihoods"]["y"])  # the rate keeps the noise
    model.train()
    torch.mean((model(x, synthesis_input="rounded")["x_hat"] - x) ** 2).backward()
    assert model.g_a.body[0].weight.grad.abs().sum() > 0  # straight through the rounding to the encoder
    with pytest.raises(ValueError, match="synthesis_input must be noise or rounded"):
        model(x, synthesis_input="floor")


def test_a_variable_rate_model_has_one_gain_vector_per_lambda():
    lambdas = (0.0018, 0.0067, 0.025)
    model = AttentionHyperprior(**TINY, lambdas=lambdas)
    assert model.gains.shape == model.inverse_gains.shape == (3, TINY["M"])
    assert torch.all(model.gains[1:] > model.gains[:-1])  # a larger λ starts with finer steps
    out = model(torch.rand(2, 3, 64, 64), levels=torch.tensor([0, 2]))
    assert out["x_hat"].shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="levels or a quality"):
        model(torch.rand(1, 3, 64, 64))


def test_fractional_qualities_interpolate_the_gains_of_their_neighbours():
    model = AttentionHyperprior(**TINY, lambdas=(0.0018, 0.0067, 0.025))
    gains = model.gains.detach().double()
    assert torch.equal(model.quality_gains(2)[0].flatten(), gains[1])
    between = model.quality_gains(2.25)[0].flatten()
    assert torch.allclose(between, 0.75 * gains[1] + 0.25 * gains[2])
    for bad in (0.5, 3.01):
        with pytest.raises(ValueError, match="quality must lie in"):
            model.quality_gains(bad)


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


def test_weights_file_round_trip_keeps_config_weights_and_outputs(tiny_weights, tiny_model):
    """tiny_weights is tiny_model saved: loading gives back its weights, its outputs and its hash."""
    model = load_weights(tiny_weights)
    assert isinstance(model, CodingModel) and model.name == "attn-hyperprior"
    assert not model.network.training and model.config["N"] == 16 and model.lmbda == 0.01
    saved = tiny_model.state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in model.network.state_dict().items())
    original = CodingModel.from_network(tiny_model, "attn-hyperprior")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.estimate(x)["x_hat"], original.estimate(x)["x_hat"], atol=1e-6)  # NHWC vs NCHW
    assert model.weights_hash == original.weights_hash and len(model.weights_hash) == 8


def test_a_coding_model_is_immutable(tiny_weights):
    model = load_weights(tiny_weights)
    with pytest.raises(AttributeError):
        model.quality = 5
    with pytest.raises(TypeError):
        model.training["steps"] = 1


def test_a_coding_model_moves_but_is_never_cast(tiny_weights):
    """A cast would change the scale table and quantiles the coding indexes come from."""
    model = load_weights(tiny_weights)
    moved = model.to("cpu", memory_format=torch.contiguous_format)
    assert moved.weights_hash == model.weights_hash and moved.network is not model.network
    with pytest.raises(TypeError, match="not a dtype"):
        model.to(torch.float16)


def test_the_stored_config_says_the_architecture(tmp_path):
    """No shape guessing: a file's config builds the network, switches and all."""
    from attncomp.models import save_weights

    network = create("attn-hyperprior", **TINY, attention="residual", prior="mean-scale", lambdas=(0.001, 0.01))
    save_weights(network, tmp_path / "w.pt", "attn-hyperprior")
    loaded = load_weights(tmp_path / "w.pt")
    assert loaded.config == network.config and loaded.variable_rate
    assert loaded.at(1.5).quality == 1.5 and 0.001 < loaded.at(1.5).lmbda < 0.01
    with pytest.raises(WeightsError, match="codes qualities 1 to 2"):
        loaded.at(3)


def test_a_bundled_fixed_rate_quality_loads_whether_given_as_an_int_or_a_float():
    assert load("attn-hyperprior", 3.0).quality == load("attn-hyperprior", 3).quality == 3


def test_a_fixed_rate_model_codes_at_its_own_quality_only():
    model = load("attn-hyperprior", 3)
    assert model.at(3) is model
    with pytest.raises(WeightsError, match="quality 3 only"):
        model.at(3.5)


def test_format_1_weights_files_load_under_the_new_names():
    """tests/data/tiny.pt was written by attncomp's first weights format (positional names, boolean switches)."""
    path = Path(__file__).parent / "data" / "tiny.pt"
    assert torch.load(path, weights_only=True)["version"] == 1
    model = load_weights(path)
    assert model.config["attention"] == "paper" and model.config["postfilter"] == "paper"
    assert isinstance(model.network.g_a.attention, ChannelAttention)


def test_weights_kept_xz_compressed_load_as_the_file_itself(tmp_path, tiny_weights):
    from attncomp.models.zoo import weights_in

    kept = tmp_path / "tiny.pt.xz"
    kept.write_bytes(lzma.compress(Path(tiny_weights).read_bytes()))
    assert weights_in(tmp_path, "tiny") == kept and weights_in(tmp_path, "other") is None
    assert load_weights(kept).weights_hash == load_weights(tiny_weights).weights_hash
    (tmp_path / "tiny.pt").write_bytes(Path(tiny_weights).read_bytes())
    assert weights_in(tmp_path, "tiny") == tmp_path / "tiny.pt"  # the plain file, if both are there
    kept.write_bytes(lzma.compress(Path(tiny_weights).read_bytes())[:-100])
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(kept)


def test_weights_files_are_plain_data(tiny_weights):
    payload = torch.load(tiny_weights, weights_only=True)
    assert payload["format"] == "attncomp-weights" and payload["model"] == "attn-hyperprior"


def test_bad_weights_files_raise_weights_error(tmp_path, tiny_weights):
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
    payload = torch.load(tiny_weights, weights_only=True)
    for damage in ({"config": None}, {"state_dict": {**payload["state_dict"], "g_a.body.0.weight": [0.0]}},
                   {"training": [1, 2]}, {"quality": "3"}, {"lmbda": True}):
        torch.save({**payload, **damage}, tmp_path / "damaged.pt")
        with pytest.raises(WeightsError, match="damaged"):
            load_weights(tmp_path / "damaged.pt")
    torch.save({**payload, "version": True}, tmp_path / "flag.pt")  # True == 1, but is no format version
    with pytest.raises(WeightsError, match="format version True"):
        load_weights(tmp_path / "flag.pt")
    torch.save({**payload, "version": 1}, tmp_path / "mislabelled.pt")  # format-2 names under format 1's label
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(tmp_path / "mislabelled.pt")
    state = dict(payload["state_dict"])
    h_s_weight = next(k for k in state if k.startswith("h_s.") and k.endswith("weight"))
    state[h_s_weight] = torch.full_like(state[h_s_weight], math.inf)  # no fixed-point h_s can hold it
    torch.save({**payload, "state_dict": state}, tmp_path / "huge.pt")
    with pytest.raises(WeightsError, match="huge.pt: weights too large"):
        load_weights(tmp_path / "huge.pt")


def test_a_state_with_differently_sized_cdf_tables_loads_over_built_ones(tiny_weights):
    from attncomp.models.zoo import load_state

    model = load_weights(tiny_weights).network  # its CDF tables are built
    other = create("attn-hyperprior", **TINY)
    with torch.no_grad():
        other.entropy_bottleneck.quantiles.mul_(4)  # wider support: longer CDFs
    other.update(force=True)
    assert other.entropy_bottleneck._quantized_cdf.shape != model.entropy_bottleneck._quantized_cdf.shape
    load_state(model, other.state_dict())
    assert torch.equal(model.entropy_bottleneck._quantized_cdf, other.entropy_bottleneck._quantized_cdf)


def test_weights_rewritten_in_float16_keep_their_record_and_code_like_the_original(tmp_path, tiny_weights):
    from attncomp.codec import decode, encode
    from attncomp.models.zoo import rewrite_weights

    rewrite_weights(tiny_weights, tmp_path / "half.pt")  # what bundle_weights.py and a GPU round's return do
    original, half = load_weights(tiny_weights), load_weights(tmp_path / "half.pt")
    assert (half.name, half.quality, half.lmbda, dict(half.training)) == (
        original.name, original.quality, original.lmbda, dict(original.training))
    stored = torch.load(tmp_path / "half.pt", weights_only=True)["state_dict"]
    assert stored["g_a.body.0.weight"].dtype == torch.float16  # the transforms; the entropy models stay exact
    assert stored["entropy_bottleneck._quantized_cdf"].dtype == torch.int32
    image = smooth_image(64, 64)
    assert np.abs(np.asarray(decode(encode(image, half), half), dtype=int) - np.asarray(
        decode(encode(image, original), original), dtype=int)).mean() < 1.0


@pytest.mark.parametrize("weights", ["tiny", "tiny_vbr", "spatial-ae"])
def test_the_rate_estimate_needs_no_synthesis_and_equals_the_forward_pass(tiny_weights, weights):
    if weights == "spatial-ae":
        model = load("spatial-ae", 3)
    elif weights == "tiny_vbr":
        model = load_weights(Path(__file__).parent / "data" / "tiny_vbr.pt").at(3.5)
    else:
        model = load_weights(tiny_weights)
    x = torch.rand(1, model.image_channels, 64, 64)
    with torch.no_grad():
        estimate, likelihoods = model.estimate(x)["likelihoods"], model.likelihoods(x)
    assert likelihoods.keys() == estimate.keys()
    assert all(torch.equal(likelihoods[k], estimate[k]) for k in estimate)


def test_trained_steps_count_every_continued_run_and_stop_at_a_warm_start():
    from attncomp.models import zoo

    warm = {"warm_start": "attn-hyperprior-q5.pt", "steps": 9}
    record = {"steps": 4000, "initialised_from": {"steps": 1000, "initialised_from": {"steps": 2000, "initialised_from": warm}}}
    assert zoo.trained_steps(record) == 7000
    assert [run["steps"] for run in zoo.training_chain(record)] == [4000, 1000, 2000, 9]
    assert zoo.trained_steps(None) == 0
