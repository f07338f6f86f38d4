"""Evaluation: metrics on known inputs, BD-rate on a known answer, the report from tiny images."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attncomp.cli.evaluate import main as evaluate_main
from attncomp.evaluation import bd_rate, ms_ssim, psnr
from attncomp.evaluation.anchors import SWEEPS, available, roundtrip
from attncomp.evaluation.metrics import rd_objective
from attncomp.models import load_weights

from .helpers import image_folder, load_script, run_main, smooth_image


def test_psnr_of_identical_images_is_infinite_and_of_known_error_is_exact():
    a = smooth_image(32, 32)
    assert psnr(a, a) == math.inf
    b = a.astype(np.int16) + 1
    b[b > 255] = 254
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b.astype(np.uint8)) == pytest.approx(10 * math.log10(255**2 / mse))


def test_ms_ssim_is_one_for_identical_images_and_nan_when_too_small():
    a = smooth_image(192, 192)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ms_ssim(a, noisy) < 0.99
    assert math.isnan(ms_ssim(a[:64, :64], a[:64, :64]))


def test_bd_rate_of_a_curve_shifted_by_a_known_rate_factor():
    rate = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
    quality = 30 + 6 * np.log2(rate)
    assert bd_rate(rate, quality, 0.75 * rate, quality) == pytest.approx(-25.0, abs=0.01)
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(bd_rate(rate, quality, rate, quality + 100))  # no overlap


def test_bd_rate_needs_the_curves_to_share_half_the_narrower_quality_range():
    anchor = ([0.2, 0.4, 0.8, 1.6], [28, 31, 34, 37])
    assert math.isnan(bd_rate(*anchor, [0.3, 0.5], [36.9, 40]))  # 0.1 of a 3.1-dB range
    assert math.isfinite(bd_rate(*anchor, [0.3, 0.5], [35, 38]))  # 2 of 3 dB
    assert math.isfinite(bd_rate(*anchor, [0.3, 0.5], [30, 32]))  # inside the anchor's range


def test_a_point_averages_quality_over_the_same_images_as_its_rate():
    from attncomp.evaluation.runner import Record, curves

    def record(image, bpp, psnr_db, ms_ssim_value):
        return Record("jpeg", "50", image, 100, bpp, psnr_db, ms_ssim_value, 0.0, 0.0)

    (point,) = curves([record("a", 0.5, 30.0, 0.95), record("b", 1.5, 34.0, 0.97)])["jpeg"]
    assert (point["bpp"], point["psnr"], point["ms_ssim"]) == (1.0, 32.0, pytest.approx(0.96))
    # an identical image (infinite PSNR), an image too small for MS-SSIM: that mean is undefined, not one
    # over the other images paired with the rate of all
    (point,) = curves([record("flat", 0.6, math.inf, math.nan), record("b", 1.3, 33.85, 0.97)])["jpeg"]
    assert point["bpp"] == pytest.approx(0.95) and math.isnan(point["psnr"]) and math.isnan(point["ms_ssim"])


@pytest.mark.parametrize("codec", sorted(SWEEPS))
def test_every_anchor_round_trips_through_pillow(codec):
    if not available(codec):
        pytest.skip(f"this Pillow has no {codec}")
    image = Image.fromarray(smooth_image(64, 80))
    data, decoded, *_ = roundtrip(image, codec, SWEEPS[codec][len(SWEEPS[codec]) // 2])
    assert decoded.shape == (64, 80, 3) and 0 < len(data) < 64 * 80 * 3
    assert psnr(np.asarray(image), decoded) > 20


def test_estimated_rate_is_measured_on_the_tiles_the_codec_codes():
    from attncomp import image as imageio
    from attncomp.codec import encode, unpack
    from attncomp.evaluation.runner import estimated_bpp
    from attncomp.models import load

    model, image = load("attn-hyperprior", 1), smooth_image(150, 200)
    x = imageio.to_tensor(imageio.open_image(image), 3)
    pixels, estimates = x[0, 0].numel(), []
    for tile in (64, 1024):  # small tiles cost more bits (a hyper-latent each, with its edges): the estimate must follow
        stream = unpack(encode(image, model, tile_size=tile))
        coded_bits = 8 * sum(len(s) for _, strings in stream.tiles for s in strings)
        estimates.append(estimated_bpp(model, imageio.open_image(image), tile_size=tile))
        strings = sum(len(strings) for _, strings in stream.tiles)
        # what the estimate leaves out: the range coder's final state and escapes, a few bytes per string
        assert 0 <= coded_bits - estimates[-1] * pixels <= 8 * 8 * strings
    assert estimates[0] > 1.05 * estimates[1]


def test_report_from_two_tiny_images(tmp_path, tiny_weights):
    folder = image_folder(tmp_path / "images", 2, 64, 96)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "attncomp.cli.evaluate", folder, "--weights", tiny_weights,
         "--anchors", "jpeg", "webp", "--out", out, "--no-progress"],
        capture_output=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    for name in ("per_image.csv", "attn-hyperprior.json", "jpeg.json", "webp.json", "bd_rate.md", "rd_psnr.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "jpeg.json").read_text())["results"]
    assert len(results["bpp"]) == len(SWEEPS["jpeg"]) and results["bpp"] == sorted(results["bpp"])
    ours = json.loads((out / "attn-hyperprior.json").read_text())
    assert ours["results"]["bpp"][0] > 0 and ours["results"]["estimated_bpp"][0] > 0
    assert ours["description"].endswith("decoded in float32")  # the default precision, on a sigmoid post-filter
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 2 + 2 * 3  # plots, then crops of 2 images × 3 codecs
    assert "BD-rate" in html and "<table>" in html
    assert "bit allocation" in html and "channel attention" in html


def test_eval_errors_are_one_line(tmp_path, tiny_weights):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(smooth_image(64, 64)).save(folder / "a.png")
    twins = tmp_path / "twins"
    twins.mkdir()
    Image.fromarray(smooth_image(64, 64)).save(twins / "a.png")
    Image.fromarray(smooth_image(64, 64)).save(twins / "a.jpg")
    for args, words in [
        ((tmp_path / "missing", "--anchors", "jpeg"), "not a directory"),
        ((folder, "--weights", tiny_weights, tiny_weights), "one point twice"),  # would be averaged into one
        ((twins, "--anchors", "jpeg"), "several images named a"),  # their rows would be merged
        ((folder, "--weights", tiny_weights, "--qualities", "1", "3"), "drop --qualities"),  # not silently ignored
        ((folder, "--weights", tiny_weights, "--model", "attn-hyperprior", "--qualities", "3"), "share one curve"),
    ]:
        result = run_main(evaluate_main, [*args, "--out", tmp_path / "out"])
        err = result.stderr.decode().strip()
        assert result.returncode == 1 and err.startswith("attncomp-eval: error:") and words in err, err
        assert "Traceback" not in err


def strict_json(path):
    """NaN is not JSON (browsers and jq reject it): a missing number must be written as null."""
    return json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {path.name}"))


def test_plain_and_refined_encoders_are_two_curves_with_their_lambda(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(smooth_image(64, 64)).save(folder / "a.png")
    out = tmp_path / "out"
    result = run_main(evaluate_main, [folder, "--weights", tiny_weights, "--refine", "0", "2",
                                      "--anchors", "jpeg", "--out", out, "--no-progress", "--crops", "0"])
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    plain = strict_json(out / "attn-hyperprior.json")["results"]
    refined = strict_json(out / "attn-hyperprior+refine2.json")["results"]
    assert plain["bpp"][0] > 0 and refined["bpp"][0] > 0
    curves = strict_json(out / "summary.json")["curves"]
    assert curves["attn-hyperprior+refine2"][0]["estimated_bpp"] is None  # it would describe g_a's latents
    bd_rows = (out / "bd_rate.md").read_text()
    assert "| attn-hyperprior+refine2 | attn-hyperprior |" in bd_rows  # attncomp's curves against each other
    assert "| attn-hyperprior | attn-hyperprior+refine2 |" in bd_rows and "| attn-hyperprior | jpeg |" in bd_rows
    with open(out / "per_image.csv", newline="") as f:
        rows = {row["codec"]: row for row in csv.DictReader(f)}
    lmbda = load_weights(tiny_weights).lmbda
    assert float(rows["attn-hyperprior"]["lmbda"]) == lmbda and math.isnan(float(rows["jpeg"]["lmbda"]))
    capsys.readouterr()
    load_script("rd_objective").main([str(out / "per_image.csv")])
    table = capsys.readouterr().out
    objective = rd_objective(lmbda, float(rows["attn-hyperprior"]["bpp"]), float(rows["attn-hyperprior"]["psnr"]))
    assert f"| attn-hyperprior | {rows['attn-hyperprior']['setting']} | 1 |" in table and f"{objective:.3f} |" in table
    assert "| attn-hyperprior+refine2 |" in table and "jpeg" not in table  # an anchor has no λ

    again = [folder, "--weights", tiny_weights, "--anchors", "jpeg", "--out", out, "--no-progress", "--crops", "0"]
    refused = run_main(evaluate_main, again)
    assert refused.returncode == 1 and "--force" in refused.stderr.decode()  # an earlier evaluation is kept
    assert (out / "attn-hyperprior+refine2.json").is_file()
    replaced = run_main(evaluate_main, [*again, "--force"])
    assert replaced.returncode == 0, replaced.stderr.decode()[-2000:]
    assert not (out / "attn-hyperprior+refine2.json").exists()  # no stale curve beside the new summary
    assert set(strict_json(out / "summary.json")["curves"]) == {"attn-hyperprior", "jpeg"}


def test_refinement_alone_needs_a_model_that_refines():
    from attncomp.errors import AttncompError
    from attncomp.evaluation import runner
    from attncomp.models import zoo

    with pytest.raises(AttncompError, match="supports --refine"):
        runner.run([], [zoo.load("spatial-ae", 3)], refine=(50,), progress=False)


def test_report_maps_of_a_large_image_cover_its_first_tile(tiny_weights):
    from attncomp.evaluation import report, runner
    from attncomp.models import load_weights

    wide = runner.TestImage("wide", Image.fromarray(smooth_image(64, 1100)))
    evaluation = runner.Evaluation(models={"attn-hyperprior": {"custom": load_weights(tiny_weights)}})
    sections = report.model_sections(evaluation, [wide], [], crops=0)
    assert "wide, its first 512-px tile: channel attention and bit allocation" in sections[-1]


def test_report_gates_are_those_of_the_latents_the_decoder_sees():
    """A variable-rate mean-scale model: g_s's gate is taken on ŷ with its gains and means, h_s's on ẑ."""
    import torch

    from attncomp.evaluation.report import attention_gates
    from attncomp.image import to_tensor
    from attncomp.models import load_weights

    model = load_weights(Path(__file__).parent / "data" / "tiny_vbr.pt").at(3.25)
    torch.manual_seed(0)
    with torch.no_grad():  # residual gates start at exactly 1 whatever they see: make them look
        for attention in (model.network.g_s.attention, model.network.h_s.attention):
            for parameter in attention.mlp.parameters():
                parameter.normal_()
    image = Image.fromarray(smooth_image(64, 64))
    gates = attention_gates(model, image)
    assert list(gates) == ["g_a (latent y)", "h_a (hyper-latent z)", "h_s (prior)", "g_s (RGB)"]
    net, x = model.network, to_tensor(image)
    with torch.inference_mode():
        y_hat = net.quantized_latents(x, quality=3.25, exact=model.exact_h_s)[0]  # the h_s it was loaded with
        expected = net.g_s.attention.gate(net.g_s.body(y_hat)).flatten().numpy()
    np.testing.assert_allclose(gates["g_s (RGB)"], expected, rtol=1e-5)


def test_eval_on_a_split_codes_only_the_images_it_lists(tmp_path, tiny_weights):
    folder = image_folder(tmp_path / "images", 3, 64, 64)
    split = tmp_path / "split.txt"
    split.write_text("# held out\nimg0\nimg2\n")
    out = tmp_path / "out"
    args = [str(folder), "--split", str(split), "--weights", str(tiny_weights), "--crops", "0", "--no-progress"]
    assert evaluate_main([*args, "--out", str(out)]) == 0
    with open(out / "per_image.csv", newline="") as f:
        assert sorted(row["image"] for row in csv.DictReader(f)) == ["img0", "img2"]
    split.write_text("nobody\n")
    refused = run_main(evaluate_main, [*args, "--out", tmp_path / "none"])
    assert refused.returncode == 1 and f"listed in {split}" in refused.stderr.decode()


def test_an_evaluation_cut_short_while_writing_leaves_no_summary_marking_it_complete(tmp_path, tiny_weights, monkeypatch):
    import attncomp.cli.evaluate as cli
    from attncomp.errors import AttncompError

    folder = image_folder(tmp_path / "images", 1, 64, 64)
    out = tmp_path / "out"
    args = [folder, "--weights", tiny_weights, "--crops", "0", "--no-progress", "--out", out]
    assert run_main(evaluate_main, args).returncode == 0
    written = cli.atomic_write

    def disk_full_at_the_report(path, write):
        if path.name == "report.html":
            raise AttncompError(f"cannot write {path}: No space left on device")
        written(path, write)

    monkeypatch.setattr(cli, "atomic_write", disk_full_at_the_report)
    failed = run_main(evaluate_main, [*args, "--force"])
    assert failed.returncode == 1 and "No space left" in failed.stderr.decode()
    assert not (out / "summary.json").exists()  # a half-replaced folder is not an evaluation: no --force needed
    assert not list(out.glob(".*.tmp"))


def test_published_curves_are_read_in_either_compressai_layout_and_a_bad_file_is_named(tmp_path):
    from attncomp.errors import AttncompError
    from attncomp.evaluation import reference

    stem = next(iter(reference.PUBLISHED))
    (tmp_path / f"{stem}.json").write_text(json.dumps({"results": {"bpp": [0.5, 0.2], "psnr": [31.0, 28.0]}}))
    (curve,) = reference.load_published(tmp_path).values()  # an older file: "psnr", no MS-SSIM
    assert [p["bpp"] for p in curve] == [0.2, 0.5] and curve[0]["psnr"] == 28.0
    (tmp_path / f"{stem}.json").write_text(json.dumps({"name": "no results"}))
    with pytest.raises(AttncompError, match=f"{stem}.json is not a CompressAI results file"):
        reference.load_published(tmp_path)
