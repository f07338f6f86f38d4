"""One model, every rate: gains per λ, fractional qualities, mean-scale prior — and still exact decoding."""

from unittest.mock import patch

import pytest
import torch

from attncomp.codec import decode, encode, unpack
from attncomp.errors import WeightsError
from attncomp.models import CodingModel, create, load_weights, save_weights, zoo
from attncomp.models.fixed_point import FixedPointTransform
from attncomp.models.rd import bits

from .helpers import TINY, load_script, smooth_image, spread_latents, with_threads

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)


def image_tensor(h=128, w=192, seed=0):
    return torch.from_numpy(smooth_image(h, w, seed=seed)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def variable_rate():
    """A tiny untrained variable-rate mean-scale model whose latents are spread enough to code."""
    torch.manual_seed(0)
    network = spread_latents(create("attn-hyperprior-vbr", **TINY))
    return CodingModel.from_network(network, "attn-hyperprior-vbr")


def test_the_zoos_variable_rate_model_covers_compressais_eight_qualities():
    network = create("attn-hyperprior-vbr", **TINY)
    assert network.lambdas == LAMBDAS and network.config["prior"] == "mean-scale"


@torch.no_grad()
def test_file_size_grows_with_quality_fractional_steps_included(variable_rate):
    x = image_tensor()
    sizes = []
    for quality in [1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 7.5, 8]:
        coded = variable_rate.at(quality).compress(x)
        sizes.append(sum(len(s[0]) for s in coded["strings"]))
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]


@torch.no_grad()
@pytest.mark.parametrize("quality", [1, 3.5, 8])
def test_the_decoder_recovers_the_encoders_latents_exactly(variable_rate, quality):
    model = variable_rate.at(quality)
    net = model.network
    x = image_tensor()
    coded = model.compress(x)
    y, z = net.analysis(x)
    z_hat = net.entropy_bottleneck.decompress(coded["strings"][1], coded["shape"])
    means, _ = net.prior_parameters(z_hat, model.exact_h_s)
    gain, inverse = net.quality_gains(quality)
    expected = (torch.round(y.double() * gain - means * gain) + means * gain) * inverse
    assert torch.equal(model.decompress(coded["strings"], coded["shape"])["y_hat"], expected.float())


@torch.no_grad()
def test_each_level_is_forward_at_that_level_with_the_rate_independent_part_run_once(variable_rate):
    network = variable_rate.network.eval()
    x = torch.cat([image_tensor(seed=0), image_tensor(seed=1)])
    outputs = list(network.each_level(x))
    assert len(outputs) == len(LAMBDAS)
    for level, out in enumerate(outputs):
        expected = network(x, levels=torch.full((2,), level))
        assert torch.equal(out["x_hat"], expected["x_hat"])
        assert all(torch.equal(out["likelihoods"][k], expected["likelihoods"][k]) for k in ("y", "z"))
    calls = []
    hook = network.g_a.register_forward_hook(lambda *args: calls.append("g_a"))
    try:
        with patch.object(FixedPointTransform, "of", wraps=FixedPointTransform.of) as freeze_h_s:
            list(network.each_level(x))
    finally:
        hook.remove()
    assert calls == ["g_a"] and freeze_h_s.call_count == 1
    try:
        with pytest.raises(ValueError, match="evaluation"):
            network.train().each_level(x)
    finally:
        network.eval()


@torch.no_grad()
def test_strings_do_not_depend_on_threads_memory_format_or_batch(variable_rate):
    model = variable_rate.at(2.75)
    x, other = image_tensor(seed=0), image_tensor(seed=1)
    reference = model.compress(x)["strings"]
    assert with_threads(2, model.compress, x)["strings"] == reference
    assert model.compress(x.contiguous(memory_format=torch.channels_last))["strings"] == reference
    batched = model.compress(torch.cat([other, x]))["strings"]
    assert [s[1] for s in batched] == [s[0] for s in reference]


@torch.no_grad()
def test_estimated_rate_matches_the_coded_bytes(variable_rate):
    model = variable_rate.at(4.5)
    x = image_tensor(256, 256)
    estimated = bits(model.estimate(x)["likelihoods"]).item()
    coded = model.compress(x)
    actual = 8 * sum(len(s[0]) for s in coded["strings"])
    assert actual == pytest.approx(estimated, rel=0.03, abs=2 * 80)


def test_a_stream_records_its_fractional_quality_and_decodes_with_it(variable_rate, tmp_path):
    save_weights(variable_rate.network, tmp_path / "vbr.pt", "attn-hyperprior-vbr")
    model = load_weights(tmp_path / "vbr.pt")
    image = smooth_image(80, 112)
    data = encode(image, model.at(3.25))
    assert unpack(data).quality == 3.25
    decoded = decode(data, model)  # the decoder picks the stream's quality
    assert decoded.size == (112, 80)
    with pytest.raises(WeightsError, match="variable-rate model: choose a quality"):
        encode(image, model)


def test_the_codec_cli_takes_fractional_qualities_for_a_variable_rate_model(variable_rate, tmp_path):
    from PIL import Image

    from attncomp.cli.codec import main

    from .helpers import run_main

    save_weights(variable_rate.network, tmp_path / "vbr.pt", "attn-hyperprior-vbr")
    Image.fromarray(smooth_image(64, 96)).save(tmp_path / "in.png")
    sizes = []
    for quality in ("1", "2.5", "3.75", "8"):
        out = tmp_path / f"q{quality}.atc"
        done = run_main(main, ["encode", tmp_path / "in.png", out, "--weights", tmp_path / "vbr.pt", "--quality", quality])
        assert done.returncode == 0, done.stderr.decode()
        sizes.append(out.stat().st_size)
    assert sizes == sorted(sizes)
    info = run_main(main, ["info", tmp_path / "q3.75.atc"])
    assert "quality:      3.75" in info.stdout.decode()
    decoded = run_main(main, ["decode", tmp_path / "q3.75.atc", tmp_path / "out.png", "--weights", tmp_path / "vbr.pt"])
    assert decoded.returncode == 0, decoded.stderr.decode()

    fixed = run_main(main, ["encode", tmp_path / "in.png", tmp_path / "x.atc", "--model", "attn-hyperprior", "--quality", "3.5"])
    err = fixed.stderr.decode().strip()
    assert fixed.returncode == 1 and "fractional qualities need a variable-rate model" in err and "\n" not in err


def test_a_byte_budget_codes_at_the_highest_quality_whose_stream_fits(variable_rate):
    from attncomp.codec import encode_to_fit

    image = smooth_image(64, 96)
    budget = len(encode(image, variable_rate.at(4.5))) + 20
    data = encode_to_fit(image, budget, variable_rate)
    quality = unpack(data).quality
    assert len(data) <= budget and quality >= 4.5
    assert data == encode(image, variable_rate.at(quality))  # a stream like any other at that quality
    assert len(encode(image, variable_rate.at(round(quality + 0.01, 2)))) > budget  # the next hundredth does not fit
    assert unpack(encode_to_fit(image, 10**6, variable_rate)).quality == 8  # everything fits: the top quality
    refined = encode_to_fit(image, budget, variable_rate, refine_steps=2)  # the quality found, refined if it fits
    assert len(refined) <= budget and unpack(refined).quality == quality


def test_a_byte_budget_too_small_for_the_lowest_quality_or_a_fixed_rate_model_is_refused(variable_rate, tiny_weights):
    from attncomp.codec import encode_to_fit
    from attncomp.errors import AttncompError

    image = smooth_image(64, 96)
    smallest = len(encode(image, variable_rate.at(1)))
    with pytest.raises(AttncompError, match=f"even quality 1, the lowest, needs {smallest} bytes, more than {smallest - 1}"):
        encode_to_fit(image, smallest - 1, variable_rate)
    with pytest.raises(WeightsError, match="needs a variable-rate model"):
        encode_to_fit(image, 10**6, load_weights(tiny_weights))


def test_the_cli_accepts_every_hundredth_of_a_variable_rate_models_range_and_nothing_finer():
    from attncomp.cli.codec import build_parser, check_model_args
    from attncomp.errors import AttncompError

    def check(quality: str):
        check_model_args(build_parser().parse_args(["encode", "a.png", "a.atc", "--model", "attn-hyperprior-vbr", "--quality", quality]))

    for hundredths in range(100, 801):
        check(f"{hundredths // 100}.{hundredths % 100:02d}")  # 1.10 is 110.00000000000001 hundredths in floats
    for quality in ("0.99", "1.005", "3.333", "8.01"):
        with pytest.raises(AttncompError, match="steps of 0.01"):
            check(quality)


def test_a_variable_rate_weights_file_refuses_a_quality_a_stream_cannot_record(variable_rate):
    """Not silently rounded: 3.555 would be coded and reported as 3.56."""
    from attncomp.errors import AttncompError

    assert variable_rate.at(3.5).quality == 3.5
    for quality in (3.555, 0.5, 8.5):
        with pytest.raises(AttncompError, match="steps of 0.01"):
            variable_rate.at(quality)


def test_attncomp_eval_measures_a_variable_rate_file_as_one_curve(variable_rate, tmp_path):
    import json

    from PIL import Image

    from attncomp.cli.evaluate import main

    from .helpers import run_main

    save_weights(variable_rate.network, tmp_path / "vbr.pt", "attn-hyperprior-vbr")
    (tmp_path / "images").mkdir()
    Image.fromarray(smooth_image(64, 64)).save(tmp_path / "images" / "a.png")
    done = run_main(main, [tmp_path / "images", "--weights", tmp_path / "vbr.pt", "--qualities", "2", "6.5",
                           "--out", tmp_path / "eval", "--crops", "0", "--no-progress"])
    assert done.returncode == 0, done.stderr.decode()
    curve = json.loads((tmp_path / "eval" / "attn-hyperprior-vbr.json").read_text())["results"]
    assert curve["setting"] == ["q2", "q6.5"] and curve["bpp"][0] < curve["bpp"][1]


def test_a_variable_rate_model_is_bundled_as_one_file_the_zoo_loads_at_any_quality(
        tmp_path, monkeypatch, capsys, variable_rate):
    trained, package = tmp_path / "trained.pt", tmp_path / "package"
    package.mkdir()
    save_weights(variable_rate.network, trained, "attn-hyperprior-vbr")
    monkeypatch.setattr(zoo, "_WEIGHTS_DIR", package)
    with pytest.raises(SystemExit) as refused:  # there is no one quality to file it under
        load_script("bundle_weights").main([str(trained), "--quality", "3"])
    assert refused.value.code == 2 and "codes every quality: leave out --quality" in capsys.readouterr().err
    load_script("bundle_weights").main([str(trained)])
    assert [p.name for p in package.iterdir()] == ["attn-hyperprior-vbr.pt"]
    assert zoo.available_qualities("attn-hyperprior-vbr") == list(range(1, 9))
    assert zoo.load("attn-hyperprior-vbr", 3.5).quality == 3.5
    capsys.readouterr()
    load_script("zoo_budget").main()
    rows = [row for row in capsys.readouterr().out.splitlines() if "attn-hyperprior-vbr" in row]
    assert len(rows) == 1 and rows[0].startswith("| attn-hyperprior-vbr | 1–8 | each level's |"), rows
