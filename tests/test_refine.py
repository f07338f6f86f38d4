"""Encoder-side latent refinement: fewer bits for the same quality, the decoder unchanged."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attncomp.cli.codec import main as codec_main
from attncomp.codec import decode, encode
from attncomp.codec.refine import hard_round, rd_loss, refine_latents, sga_round
from attncomp.errors import WeightsError
from attncomp.models import create, load, load_weights, save_weights

from .helpers import TINY, run_main

SAMPLE = Path(__file__).parents[1] / "examples" / "kodim23.png"


def tiny_model(folder, lmbda):
    """An untrained tiny model as a user's weights file makes it, with or without a λ."""
    torch.manual_seed(0)
    save_weights(create("attn-hyperprior", **TINY), folder / "tiny.pt", "attn-hyperprior", lmbda=lmbda)
    return load_weights(folder / "tiny.pt")


def real_cost(model, image: Image.Image, data: bytes) -> float:
    """λ·255²·MSE + bpp measured on the decoded stream: what refinement must lower."""
    original = np.asarray(image, dtype=np.float64) / 255
    decoded = np.asarray(decode(data, model), dtype=np.float64) / 255
    return model.lmbda * 255**2 * np.mean((original - decoded) ** 2) + 8 * len(data) / (image.width * image.height)


def test_refinement_lowers_the_real_rate_distortion_cost_and_any_decoder_reads_it():
    model = load("attn-hyperprior", 3)
    image = Image.open(SAMPLE).convert("RGB").crop((256, 128, 448, 320))
    plain = encode(image, model)
    refined = encode(image, model, refine_steps=30)
    assert refined != plain
    assert real_cost(model, image, refined) < 0.97 * real_cost(model, image, plain)
    assert decode(refined).size == image.size  # the bundled decoder, named by the stream


def test_refined_encoding_is_deterministic(tmp_path):
    model = tiny_model(tmp_path, 0.01)
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 64, 48))
    assert encode(image, model, refine_steps=4) == encode(image, model, refine_steps=4)


def test_the_coded_latents_never_score_worse_than_the_analysis_transform(tmp_path):
    model = tiny_model(tmp_path, 0.01)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        start = model.analysis(x)
        refined = refine_latents(model, x, (64, 64), steps=3)
        assert rd_loss(model, refined, x, 0.01, hard_round) <= rd_loss(model, start, x, 0.01, hard_round)


def test_sga_rounding_hardens_into_the_coders_rounding():
    values = torch.tensor([-1.7, -0.2, 0.3, 0.49, 2.6]) + 0.25
    generator = torch.Generator().manual_seed(0)
    soft = sga_round(values, 0.25, tau=0.5, generator=generator)
    hard = sga_round(values, 0.25, tau=1e-3, generator=generator)
    assert torch.all((soft - 0.25 >= torch.floor(values - 0.25)) & (soft - 0.25 <= torch.ceil(values - 0.25)))
    assert torch.equal(hard, torch.round(values - 0.25) + 0.25)


def test_models_that_cannot_refine_lack_a_lambda_or_were_trained_for_ms_ssim_say_so(tmp_path):
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 32, 32))
    with pytest.raises(WeightsError, match="does not support"):
        encode(image, load("spatial-ae", 3), refine_steps=2)
    with pytest.raises(WeightsError, match="do not record one"):
        encode(image, tiny_model(tmp_path, None), refine_steps=2)
    # an MS-SSIM λ: refining for MSE would be the wrong objective
    ms_ssim_model = dataclasses.replace(tiny_model(tmp_path, 8.73), training={"distortion": "ms-ssim"})
    with pytest.raises(WeightsError, match="MS-SSIM"):
        encode(image, ms_ssim_model, refine_steps=2)


def test_cli_refine_option(tmp_path):
    negative = run_main(codec_main, ["encode", SAMPLE, tmp_path / "a.atc", "--refine", "-1"])
    assert negative.returncode == 2 and "negative" in negative.stderr.decode()
    unsupported = run_main(codec_main, ["encode", SAMPLE, tmp_path / "b.atc", "--model", "spatial-ae", "--refine", "2"])
    err = unsupported.stderr.decode().strip()
    assert unsupported.returncode == 1 and err.startswith("attncomp-codec: error:") and "\n" not in err, err
    assert "does not support encoder-side refinement" in err
    assert not (tmp_path / "b.atc").exists()
