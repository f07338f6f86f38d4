"""Real bitstreams: the decoder recovers exactly what the encoder quantised."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attncomp.codec import decode, unpack
from attncomp.errors import WeightsError
from attncomp.models import CodingModel, create, load_weights
from attncomp.models.coding import image_channels
from attncomp.models.fixed_point import (
    ACT_BITS,
    GATE_BITS,
    GATE_RANGE,
    GATE_TABLE,
    RESIDUAL_GATE_TABLE,
    FixedPointTransform,
)

from .helpers import TINY, smooth_image, spread_latents, with_threads


def image_tensor(h=128, w=192, seed=0):
    return torch.from_numpy(smooth_image(h, w, seed=seed)).permute(2, 0, 1)[None].float() / 255


@torch.no_grad()
def test_the_shared_tiny_model_codes_real_symbols(tiny_model):
    """The exactness tests below mean something only if the tiny model's latents are not all zero."""
    coding = CodingModel.from_network(tiny_model, "attn-hyperprior")
    y_hat, _ = coding.network.quantized_latents(image_tensor(), exact=coding.exact_h_s)
    assert torch.count_nonzero(y_hat) > y_hat.numel() // 2


@torch.no_grad()
def test_decoded_latents_equal_the_encoders_quantised_latents(tiny_model):
    x = image_tensor()
    y = tiny_model.g_a(x)
    z = tiny_model.h_a(torch.abs(y))
    coded = tiny_model.compress(x)
    decoded = tiny_model.decompress(coded["strings"], coded["shape"])
    assert torch.equal(decoded["y_hat"], torch.round(y))
    medians = tiny_model.entropy_bottleneck._get_medians()
    z_hat = tiny_model.entropy_bottleneck.decompress(coded["strings"][1], coded["shape"])
    assert torch.equal(z_hat, torch.round(z - medians) + medians)


@torch.no_grad()
def test_decoded_image_equals_forward_reconstruction_in_eval_mode(tiny_model):
    x = image_tensor()
    coded = tiny_model.compress(x)
    decoded = tiny_model.decompress(coded["strings"], coded["shape"])["x_hat"]
    assert torch.equal(decoded, tiny_model(x)["x_hat"].clamp(0, 1))


@torch.no_grad()
@pytest.mark.parametrize("name", ["attn-hyperprior", "spatial-ae"])
def test_bf16_synthesis_moves_the_image_a_little_and_the_latents_not_at_all(tiny_model, name):
    model = tiny_model if name == "attn-hyperprior" else spatial_ae()
    x = image_tensor()[:, : image_channels(model)]
    coded = model.compress(x)
    exact = model.decompress(coded["strings"], coded["shape"])
    fast = model.decompress(coded["strings"], coded["shape"], precision="bf16")
    assert torch.equal(fast["y_hat"], exact["y_hat"])
    assert fast["x_hat"].dtype == torch.float32
    assert 0 < (fast["x_hat"] - exact["x_hat"]).abs().max() <= 2 / 255


@torch.no_grad()
def test_mixed_precision_rounds_only_a_residual_post_filters_correction():
    """``mixed`` computes f(x̃) of x̂ = x̃ + f(x̃) in bf16: the image moves, by less than with bf16 throughout."""
    model = load_weights(FIXTURE / "tiny_vbr.pt").at(3)
    coded = model.compress(image_tensor())

    def decoded(precision):
        return model.decompress(coded["strings"], coded["shape"], precision)

    # an untrained residual filter corrects by exactly 0, and the image it corrects is not rounded
    assert torch.equal(decoded("mixed")["x_hat"], decoded("float32")["x_hat"])
    torch.manual_seed(0)
    model.network.post_filter.net[4].weight.normal_(std=0.05)
    exact, mixed, bf16 = decoded("float32"), decoded("mixed"), decoded("bf16")
    assert torch.equal(mixed["y_hat"], exact["y_hat"]) and mixed["x_hat"].dtype == torch.float32
    assert 0 < (mixed["x_hat"] - exact["x_hat"]).abs().max() < (bf16["x_hat"] - exact["x_hat"]).abs().max()


@pytest.mark.parametrize("bf16_is_fast", [True, False])
def test_a_synthesis_precision_says_what_a_model_does_on_its_device(tiny_model, monkeypatch, bf16_is_fast):
    monkeypatch.setattr("attncomp.models.layers.bfloat16_is_fast", lambda device: bf16_is_fast)
    residual, paper = load_weights(FIXTURE / "tiny_vbr.pt"), CodingModel.from_network(tiny_model, "attn-hyperprior")
    fast = {p: p if bf16_is_fast else "float32" for p in ("mixed", "bf16")}
    precisions = ("float32", "mixed", "bf16")
    assert [residual.synthesis_precision(p) for p in precisions] == ["float32", fast["mixed"], fast["bf16"]]
    # the paper's sigmoid post-filter outputs the image itself: there is no correction to round
    assert [paper.synthesis_precision(p) for p in precisions] == ["float32", "float32", fast["bf16"]]
    with pytest.raises(ValueError, match="precision must be one of float32, mixed, bf16"):
        paper.synthesis_precision("fp16")


@torch.no_grad()
def test_a_model_left_in_train_mode_codes_with_the_exact_scales(tiny_model, monkeypatch):
    x = image_tensor()
    coded = tiny_model.compress(x)
    # a float h_s that is visibly off: coding must not use it, in train mode either
    y_shape = (1, tiny_model.M, *(4 * s for s in coded["shape"]))
    monkeypatch.setattr(tiny_model.h_s, "forward", lambda z_hat: torch.full(y_shape, 50.0))
    try:
        tiny_model.train()
        assert tiny_model.compress(x)["strings"] == coded["strings"]
        assert torch.equal(tiny_model.decompress(coded["strings"], coded["shape"])["y_hat"], torch.round(tiny_model.g_a(x)))
    finally:
        tiny_model.eval()


@torch.inference_mode()
def test_a_model_built_under_inference_mode_codes_too():
    """Its tensors are inference tensors; building the exact h_s and the hash must still work."""
    torch.manual_seed(0)
    model = create("attn-hyperprior", **TINY).eval()
    model.update(force=True)
    x = image_tensor()
    coded = model.compress(x)
    assert torch.equal(model.decompress(coded["strings"], coded["shape"])["y_hat"], torch.round(model.g_a(x)))
    coding = CodingModel.from_network(model, "attn-hyperprior")
    assert coding.compress(x)["strings"] == coded["strings"]


def spatial_ae():
    torch.manual_seed(0)
    model = create("spatial-ae").eval()
    model.update(force=True)
    return model


@torch.no_grad()
def test_spatial_ae_round_trip_is_exact():
    model = spatial_ae()
    x = image_tensor(32, 48)
    coded = model.compress(x)
    decoded = model.decompress(coded["strings"], coded["shape"])
    assert torch.equal(decoded["y_hat"], torch.round(model.encode(x)))
    assert torch.equal(decoded["x_hat"], model(x)["x_hat"].clamp(0, 1))


@torch.no_grad()
def test_estimated_rate_matches_the_coded_bytes(tiny_model):
    x = image_tensor(256, 256)
    likelihoods = tiny_model(x)["likelihoods"]
    estimated_bits = sum(-torch.log2(v).sum().item() for v in likelihoods.values())
    coded = tiny_model.compress(x)
    actual_bits = 8 * sum(len(s[0]) for s in coded["strings"])
    # the range coder adds a few flush bytes per string
    assert actual_bits == pytest.approx(estimated_bits, rel=0.03, abs=2 * 80)


# --- deterministic hyper-synthesis -------------------------------------------------------


def scales(model, z_hat):
    return FixedPointTransform.of(model.h_s.layers)(z_hat)


@torch.no_grad()
def z_hat_of(model, seed):
    return model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(
        model.h_a(torch.abs(model.g_a(image_tensor(seed=seed))))), (2, 3))


@torch.no_grad()
def test_fixed_point_scales_do_not_depend_on_threads_memory_format_or_batch(tiny_model):
    z1, z2 = z_hat_of(tiny_model, 0), z_hat_of(tiny_model, 1)
    reference = scales(tiny_model, z1)
    two_threads = with_threads(2, scales, tiny_model, z1)
    channels_last = scales(tiny_model, z1.contiguous(memory_format=torch.channels_last))
    batched = scales(tiny_model, torch.cat([z2, z1, z2]))[1:2]
    for other in (two_threads, channels_last, batched):
        assert torch.equal(other, reference)


@torch.no_grad()
def test_fixed_point_scales_do_not_depend_on_summation_order(tiny_model):
    """Permuting the input channels (and the weights with them) reorders every sum."""
    z = z_hat_of(tiny_model, 0)
    reference = scales(tiny_model, z)
    permuted = create("attn-hyperprior", **TINY).eval()
    permuted.load_state_dict(tiny_model.state_dict())
    order = torch.randperm(z.shape[1], generator=torch.Generator().manual_seed(3))
    first = permuted.h_s.body[0]
    first.weight.data = first.weight.data[order]
    assert torch.equal(scales(permuted, z[:, order]), reference)


@torch.no_grad()
def test_a_coding_model_is_a_snapshot_of_the_weights_it_was_made_from():
    """Fine-tuning a network after making a coding model of it changes neither its streams nor its hash."""
    torch.manual_seed(0)
    network = spread_latents(create("attn-hyperprior", **TINY)).eval()
    coding = CodingModel.from_network(network, "attn-hyperprior")
    x = image_tensor()
    coded, digest = coding.compress(x), coding.weights_hash
    network.h_s.body[0].weight.mul_(1.5)  # in place, as an optimizer step
    network.g_a.body[0].weight.mul_(1.5)
    assert coding.compress(x)["strings"] == coded["strings"] and coding.weights_hash == digest
    changed = CodingModel.from_network(network, "attn-hyperprior")
    assert changed.weights_hash != digest and changed.compress(x)["strings"] != coded["strings"]


@torch.no_grad()
def test_a_coding_model_codes_with_the_entropy_tables_of_the_weights_as_they_are_now():
    """A network in training holds the CDF tables of its last export; its bottleneck has learnt on since."""
    network = create("attn-hyperprior", **TINY).eval()
    network.update(force=True)
    network.entropy_bottleneck.quantiles.mul_(1.6)  # as the aux loss moves them
    coding = CodingModel.from_network(network, "attn-hyperprior")
    network.update(force=True)
    assert torch.equal(coding.network.entropy_bottleneck._offset, network.entropy_bottleneck._offset)
    assert torch.equal(coding.network.entropy_bottleneck._quantized_cdf, network.entropy_bottleneck._quantized_cdf)


def test_a_coding_model_of_a_fixed_rate_network_codes_at_the_quality_it_was_trained_at():
    coding = CodingModel.from_network(create("attn-hyperprior", **TINY), "attn-hyperprior", quality=3)
    assert coding.quality == 3 and coding.at(3) is coding
    with pytest.raises(WeightsError, match="quality 3 only"):
        coding.at(4)


@torch.no_grad()
def test_fixed_point_scales_stay_close_to_the_float_network(tiny_model):
    z = z_hat_of(tiny_model, 0)
    exact, float_scales = scales(tiny_model, z), tiny_model.h_s(z).double()
    assert torch.allclose(exact, float_scales, rtol=0.02, atol=4 / 2**ACT_BITS)


@pytest.mark.parametrize("gain,table", [(1.0, GATE_TABLE), (2.0, RESIDUAL_GATE_TABLE)])
def test_gate_table_entries_lie_far_from_rounding_boundaries(gain, table):
    """So that any libm's sigmoid (error far below 1e-9) rounds to the same table."""
    steps = torch.arange(-GATE_RANGE * 2**ACT_BITS, GATE_RANGE * 2**ACT_BITS + 1, dtype=torch.float64)
    scaled = gain * torch.sigmoid(steps / 2**ACT_BITS) * 2**GATE_BITS
    distance = (scaled - torch.floor(scaled) - 0.5).abs()
    assert distance.min() > 1e-9
    assert torch.equal(torch.round(scaled), table)


@torch.no_grad()
def test_vectorised_scale_indexes_equal_compressais_loop(tiny_model):
    table = tiny_model.gaussian_conditional.scale_table.double()
    probes = torch.cat([table, table * (1 + 1e-7), table * (1 - 1e-7), torch.rand(1000, dtype=torch.float64) * 300])
    scales = torch.cat([probes, torch.tensor([0.0, 0.05, 0.11, 1e6], dtype=torch.float64)])
    expected = tiny_model.gaussian_conditional.build_indexes(scales)
    assert torch.equal(tiny_model.scale_indexes(scales), expected)


FIXTURE = Path(__file__).parent / "data"


@pytest.mark.parametrize("stem", ["tiny", "tiny_vbr", "tiny_ctx"])
def test_a_stream_written_by_an_earlier_attncomp_still_decodes(stem):
    """tests/data holds streams, their weights and their latents, made once by tests/data/make_fixture.py.

    ``tiny``: format 1 (positional weight names, one-byte quality), a scale prior; ``tiny_vbr``:
    format 2, a variable-rate mean-scale model at quality 3.25; ``tiny_ctx``: format 3, the same
    model and image in tiles with context. A change to the container, the fixed-point h_s, the
    gains, the entropy coder or the tiling that would silently mis-decode the streams users
    already have fails here.
    """
    model = load_weights(FIXTURE / f"{'tiny_vbr' if stem == 'tiny_ctx' else stem}.pt")
    data = (FIXTURE / f"{stem}.atc").read_bytes()
    stream = unpack(data)
    model = model.at(stream.quality) if model.variable_rate else model
    with torch.inference_mode():
        latents = [model.decompress([[s] for s in strings], shape)["y_hat"] for shape, strings in stream.tiles]
    expected = np.load(FIXTURE / f"{stem}_y.npy")
    decoded = np.concatenate([y.numpy().reshape(-1) for y in latents]).astype(expected.dtype)
    assert np.array_equal(decoded, expected)
    assert np.count_nonzero(expected) > len(expected) // 2  # a fixture of zeros would test little

    image = np.asarray(decode(FIXTURE / f"{stem}.atc", model), dtype=int)
    reference = np.asarray(Image.open(FIXTURE / f"{stem}.png"), dtype=int)
    assert image.shape == reference.shape and np.abs(image - reference).max() <= 2  # float synthesis



def test_encoding_and_decoding_build_no_autograd_graph(tiny_model):
    """Both run under inference mode: a graph of a photo's activations would cost time and memory for nothing."""
    from attncomp.codec import encode

    model = CodingModel.from_network(tiny_model, "attn-hyperprior")
    modes = []
    hooks = [module.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
             for module in (model.network.g_a, model.network.g_s)]
    try:
        decode(encode(smooth_image(64, 64), model), model)
    finally:
        for hook in hooks:
            hook.remove()
    assert modes == [True, True]
