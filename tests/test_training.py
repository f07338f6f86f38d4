"""Training: the step learns, runs resume, exports load into the codec, DDP works."""

import json
import shutil
import subprocess
import sys
import time

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader

from attncomp.cli import train as train_cli
from attncomp.cli.train import main as train_main
from attncomp.codec import decode, encode
from attncomp.models import create, load_weights
from attncomp.models.zoo import save_weights
from attncomp.training import CompressionModule
from attncomp.training.module import ms_ssim_float32, step_decay

from .helpers import TINY, run_main, smooth_image

TRAIN = [sys.executable, "-m", "attncomp.cli.train"]


def tiny_module(**kwargs):
    torch.manual_seed(0)
    return CompressionModule(model="attn-hyperprior", model_config=TINY, lmbda=0.01, lr=1e-3, **kwargs)


def fixed_batches(n_steps, size=64):
    batch = torch.stack([torch.from_numpy(smooth_image(size, size, seed=s)).permute(2, 0, 1).float() / 255 for s in range(4)])
    return DataLoader([batch] * n_steps, batch_size=None)


def trainer(steps, **kwargs):
    return pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


def test_one_step_changes_the_weights_and_the_quantiles():
    module = tiny_module()
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer(1).fit(module, fixed_batches(1))
    after = module.model.state_dict()
    assert not torch.equal(before["g_a.body.0.weight"], after["g_a.body.0.weight"])
    assert not torch.equal(before["entropy_bottleneck.quantiles"], after["entropy_bottleneck.quantiles"])


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    module = tiny_module(channels_last=False, decay_start=1.0)
    batch = next(iter(fixed_batches(1)))
    module.model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        start = module.rd_loss(batch, module.model(batch), 0.01)["loss"].item()
    trainer(80).fit(module, fixed_batches(80))
    with torch.no_grad():
        torch.manual_seed(1)
        end = module.rd_loss(batch, module.model(batch), 0.01)["loss"].item()
    assert end < 0.9 * start


def test_validation_runs_the_compiled_transforms_eagerly():
    """Validation images come in many sizes: compiling for each would cost minutes on a GPU round."""
    module = tiny_module(channels_last=False)
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    module.model.g_a.compile(backend=counting_backend)
    trainer(1, limit_val_batches=2, val_check_interval=1, num_sanity_val_steps=0).fit(
        module, fixed_batches(1), fixed_batches(2, size=128))
    compiled_for_training = len(graphs)
    trainer(0, num_sanity_val_steps=0).validate(module, fixed_batches(2, size=192), verbose=False)
    assert compiled_for_training >= 1 and len(graphs) == compiled_for_training


def test_bf16_training_keeps_the_entropy_models_in_float32():
    module = tiny_module()
    batch = next(iter(fixed_batches(1)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.model(batch)
    assert out["likelihoods"]["y"].dtype == torch.float32
    assert out["likelihoods"]["z"].dtype == torch.float32


def test_ms_ssim_is_measured_in_float32_under_bf16_autocast():
    x = torch.from_numpy(smooth_image(192, 192)).permute(2, 0, 1)[None].float() / 255
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ms_ssim_float32(x_hat, x)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ms_ssim_float32(x_hat, x).item(), abs=1e-6)
    assert 0 < value.item() < 1


def test_learning_rate_holds_then_decays_to_the_final_ratio():
    factor = step_decay(1000, decay_start=0.8, final_ratio=0.01)
    assert factor(0) == factor(800) == 1.0
    assert factor(900) == pytest.approx(0.1)
    assert factor(1000) == pytest.approx(0.01)


def test_a_lineage_split_into_runs_keeps_one_learning_rate_schedule():
    whole = step_decay(20_000, decay_start=0.8, final_ratio=0.1)
    continued = step_decay(2_500, decay_start=0.8, final_ratio=0.1, steps_before=lambda: 17_500)
    for step in (0, 1_000, 2_500):
        assert continued(step) == pytest.approx(whole(17_500 + step))
    assert continued(0) < 1  # it starts inside the decay, where the lineage is


@pytest.mark.parametrize("schedule", ["steps", "total-steps"])
def test_a_total_steps_run_from_kept_weights_starts_at_its_lineages_learning_rate(tmp_path, schedule):
    torch.manual_seed(0)
    kept = tmp_path / "kept.pt"
    save_weights(create("attn-hyperprior", **TINY), kept, "attn-hyperprior", lmbda=0.01, training={"steps": 17_500})
    module = CompressionModule(model="attn-hyperprior", init_weights=str(kept), lmbda=0.01, lr=1e-3,
                               decay_start=0.8, lr_final_ratio=0.1, schedule=schedule)
    module.trainer = pl.Trainer(accelerator="cpu", max_steps=2_500, logger=False, enable_checkpointing=False)
    _, [config] = module.configure_optimizers()
    lineage = step_decay(20_000, 0.8, 0.1)(17_500) if schedule == "total-steps" else 1.0  # else a run of its own
    assert config["scheduler"].get_last_lr()[0] == pytest.approx(1e-3 * lineage)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        Image.fromarray(smooth_image(80, 96, seed=seed)).save(folder / f"train{seed}.png")
    Image.fromarray(smooth_image(40, 40, seed=9)).save(folder / "small.webp", lossless=True)  # padded up to the crop
    return folder


def cli_args(out, folder, *extra, lmbda="0.0067"):
    """A tiny run of the default (fixed-rate) model at ``lmbda``, or of a variable-rate one (``lmbda=None``)."""
    return [*(["--lmbda", lmbda] if lmbda else []), "--model.model_config", "{N: 16, M: 24, postfilter_channels: 8, reduction: 4}",
            "--data", folder, "--val-data", folder, "--data.crop_size", "64", "--data.batch_size", "2", "--out", out,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1", *extra]


def cli(out, folder, *extra, lmbda="0.0067"):
    """attncomp-train in this process (the DDP test and --help run it as a user does)."""
    return run_main(train_main, cli_args(out, folder, *extra, lmbda=lmbda))


def test_cli_runs_resumes_and_exports_weights_the_codec_uses(tmp_path, image_folder):
    out = tmp_path / "run"
    first = cli(out, image_folder, "--max-steps", "5", "--checkpoint_every", "5")
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    weights = load_weights(out / "weights.pt")
    assert weights.lmbda == 0.0067 and weights.quality == 3 and weights.training["steps"] == 5
    assert weights.training["seed"] == 0  # LightningCLI's --seed_everything default

    second = cli(out, image_folder, "--max-steps", "8", "--resume", "last", "--checkpoint_every", "100")
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    resumed = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 8
    assert load_weights(out / "weights.pt").training["steps"] == 8
    assert load_weights(out / "weights.pt").training["steps_this_run"] == 3
    point = json.loads((out / "validation.json").read_text())  # the final weights' validation point
    assert point["step"] == 8 and point["images"] == 2 and point["bpp"] > 0 and point["psnr"] > 0

    image = smooth_image(50, 70)
    decoded = decode(encode(image, load_weights(out / "weights.pt")), load_weights(out / "weights.pt"))
    assert decoded.size == (70, 50)
    assert len(list((out / "csv").glob("version_*/metrics.csv"))) == 2  # one log per run, none overwritten


def test_a_run_past_its_stop_at_time_ends_after_one_step_exported_and_validated(tmp_path, image_folder):
    out = tmp_path / "run"
    done = cli(out, image_folder, "--max-steps", "50", "--stop_at", str(time.time() - 1))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert load_weights(out / "weights.pt").training["steps"] == 1
    assert json.loads((out / "validation.json").read_text())["step"] == 1


def test_training_keeps_freed_memory_for_reuse_unless_told_not_to(tmp_path, image_folder, monkeypatch):
    calls = []
    monkeypatch.setattr(train_cli, "reuse_freed_memory", lambda: calls.append("reuse") or True)
    one_step = ["--max-steps", "50", "--stop_at", str(time.time() - 1)]
    assert cli(tmp_path / "default", image_folder, *one_step).returncode == 0
    assert calls == ["reuse"]
    assert cli(tmp_path / "off", image_folder, *one_step, "--reuse_freed_memory", "false").returncode == 0
    assert calls == ["reuse"]


def test_a_resumed_fine_tune_keeps_the_record_of_the_weights_it_started_from(tmp_path, image_folder):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert cli(base, image_folder, "--max-steps", "3", "--checkpoint_every", "3").returncode == 0
    init = ["--model.init_weights", base / "weights.pt", "--checkpoint_every", "2"]
    assert cli(tuned, image_folder, *init, "--max-steps", "2").returncode == 0
    shutil.copy(tuned / "weights.pt", base / "weights.pt")  # the starting file is replaced, as re-bundling does

    resumed = cli(tuned, image_folder, *init, "--max-steps", "4", "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    record = load_weights(tuned / "weights.pt").training
    assert record["steps"] == 4
    assert record["initialised_from"]["steps"] == 3 and "initialised_from" not in record["initialised_from"]


def test_a_variable_rate_model_trains_every_lambda_at_once_and_codes_any_quality(tmp_path, image_folder):
    out = tmp_path / "vbr"
    run = cli(out, image_folder, "--model.model", "attn-hyperprior-vbr", "--max-steps", "2", "--checkpoint_every", "2",
              "--trainer.limit_val_batches", "0.5", lmbda=None)  # a fraction: half the 4 validation images
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    model = load_weights(out / "weights.pt")
    assert model.variable_rate and model.quality is None and model.lmbda is None
    point = json.loads((out / "validation.json").read_text())
    assert {f"loss_q{q}" for q in range(1, 9)} <= set(point) and point["lmbda"] is None and point["images"] == 2
    assert point["loss"] == pytest.approx(sum(point[f"loss_q{q}"] for q in range(1, 9)) / 8, rel=1e-5)
    image = smooth_image(50, 70)
    assert decode(encode(image, model.at(2.5)), model).size == (70, 50)


def test_a_variable_rate_model_refuses_a_lambda_it_would_ignore_and_writes_nothing(tmp_path, image_folder):
    out = tmp_path / "vbr"
    run = cli(out, image_folder, "--model.model", "attn-hyperprior-vbr", lmbda="0.01")
    err = run.stderr.decode().strip()
    assert run.returncode == 1 and err.startswith("attncomp-train: error: --lmbda: attn-hyperprior-vbr is a variable-rate")
    assert "drop --lmbda" in err and "\n" not in err and not out.exists()


def test_a_fixed_rate_run_trains_at_lambda_0_013_unless_told_and_its_hyperparameters_say_so():
    default, told = CompressionModule(model_config=TINY), CompressionModule(model_config=TINY, lmbda=0.0067)
    assert default.hparams.model == "attn-hyperprior" and default.lmbda == default.hparams.lmbda == 0.013
    assert told.lmbda == told.hparams.lmbda == 0.0067
    assert CompressionModule(model="attn-hyperprior-vbr", model_config=TINY).hparams.lmbda is None


def test_relative_level_weighting_gives_every_rate_the_same_weight_however_large_its_loss():
    module = CompressionModule(model="attn-hyperprior-vbr", model_config=TINY, level_weighting="relative")
    loss, levels = torch.tensor([1.0, 3.0, 10.0, 20.0]), torch.tensor([0, 0, 7, 7])
    objective = module.relative_to_level_means(loss, levels)
    assert module.level_loss_mean[[0, 7]].tolist() == [2.0, 15.0]  # a level's first batch sets its mean
    assert module.level_loss_mean[1:7].isnan().all()  # levels not drawn yet
    assert objective[:2].mean() == pytest.approx(1) and objective[2:].mean() == pytest.approx(1)
    module.relative_to_level_means(torch.tensor([4.0]), torch.tensor([0]))
    assert module.level_loss_mean[0].item() == pytest.approx(2.0 + 0.01 * (4.0 - 2.0))  # then each batch moves it 1%

    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    resumed = CompressionModule(model="attn-hyperprior-vbr", model_config=TINY, level_weighting="relative")
    resumed.on_load_checkpoint(checkpoint)
    torch.testing.assert_close(resumed.level_loss_mean, module.level_loss_mean, equal_nan=True)

    uniform = CompressionModule(model="attn-hyperprior-vbr", model_config=TINY)
    assert torch.equal(uniform.relative_to_level_means(loss, levels), loss)


def test_a_variable_rate_model_trains_with_relative_level_weighting():
    module = CompressionModule(model="attn-hyperprior-vbr", model_config=TINY, level_weighting="relative",
                               channels_last=False)
    before = module.model.g_a.body[0].weight.clone()
    trainer(2).fit(module, fixed_batches(2))
    assert not torch.equal(before, module.model.g_a.body[0].weight)
    assert module.level_loss_mean.isfinite().any()  # the levels drawn have running means


def test_a_mean_scale_variable_rate_model_trains_on_rounded_latents_and_a_model_without_them_is_refused():
    module = CompressionModule(model="attn-hyperprior-vbr", model_config=dict(TINY, prior="mean-scale"),
                               synthesis_input="rounded", channels_last=False)
    before = module.model.g_a.body[0].weight.clone()
    trainer(2).fit(module, fixed_batches(2))
    assert not torch.equal(before, module.model.g_a.body[0].weight)
    with pytest.raises(ValueError, match="spatial-ae-gray has no such choice"):
        CompressionModule(model="spatial-ae-gray", synthesis_input="rounded")


def test_an_ms_ssim_loss_on_crops_too_small_for_its_five_scales_is_a_one_line_error(tmp_path, image_folder):
    run = cli(tmp_path / "run", image_folder, "--model.distortion", "ms-ssim")  # 64-px crops
    err = run.stderr.decode().strip()
    assert run.returncode == 1 and err.endswith("(MS-SSIM's five scales), not 64") and "Traceback" not in err, err[-2000:]
    module = tiny_module(distortion="ms-ssim")
    x = torch.rand(1, 3, 128, 192)  # e.g. a small validation image
    with pytest.raises(ValueError, match="at least 161×161 pixels .* got 128×192"):
        module.rd_loss(x, module.model(x), 1.0)


def test_cli_refuses_a_grayscale_model_on_rgb_crops_and_runs_it_cannot_continue(tmp_path, image_folder):
    gray = run_main(train_main, ["--model.model", "spatial-ae-gray", "--data", image_folder, "--out", tmp_path / "g"])
    err = gray.stderr.decode().strip()
    assert gray.returncode == 1 and err.endswith("pass --data.channels 1") and "Traceback" not in err, err[-2000:]
    sized = cli(tmp_path / "g", image_folder, "--model.model", "spatial-ae-gray", "--data.channels", "1")
    assert sized.returncode == 1 and "spatial-ae-gray has no option M, N" in sized.stderr.decode()

    out = tmp_path / "run"
    assert cli(out, image_folder, "--max-steps", "1").returncode == 0
    before = (out / "weights.pt").read_bytes()
    again = cli(out, image_folder, "--max-steps", "1")
    assert again.returncode == 1 and "--resume last" in again.stderr.decode()
    (out / "checkpoints" / "last.ckpt").unlink()  # checkpoints deleted to save space, weights kept
    orphan = cli(out, image_folder, "--max-steps", "2", "--resume", "last")
    assert orphan.returncode == 1 and "no checkpoints/last.ckpt" in orphan.stderr.decode()
    assert (out / "weights.pt").read_bytes() == before


def test_train_help_lists_its_options_and_print_config_merges_a_config_file():
    """In this process; the DDP test below runs attncomp-train as its own program."""
    help_text = run_main(train_main, ["--help"]).stdout.decode()
    for option in ("--lmbda", "--out", "--resume", "--model.distortion", "--model.warm_start", "--data.crop_size"):
        assert option in help_text
    config = run_main(train_main, ["--config", "configs/lite.yaml", "--lmbda", "0.025", "--print_config"]).stdout.decode()
    assert "lmbda: 0.025" in config and "crop_size: 128" in config


def test_ddp_with_two_cpu_processes_trains_in_step_and_checkpoints(tmp_path, image_folder):
    args = cli_args(tmp_path / "ddp", image_folder, "--max-steps", "3", "--accelerator", "cpu", "--devices", "2",
                    "--strategy", "ddp", "--checkpoint_every", "3")
    result = subprocess.run([*TRAIN, *map(str, args)], capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "MEMBER: 2/2" in result.stderr.decode() + result.stdout.decode()  # the second process joined
    assert torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert json.loads((tmp_path / "ddp" / "validation.json").read_text())["step"] == 3  # ranks stayed in step


def test_a_variable_rate_model_warm_starts_from_fixed_rate_weights(tiny_weights):
    module = CompressionModule(model="attn-hyperprior-vbr", warm_start=str(tiny_weights),
                               model_config=dict(TINY, attention="paper", postfilter="paper", prior="scale"))
    source = load_weights(tiny_weights).network.state_dict()
    own = module.model.state_dict()
    assert torch.equal(own["g_a.body.0.weight"], source["g_a.body.0.weight"])
    assert torch.equal(own["post_filter.net.2.weight"], source["post_filter.net.2.weight"])
    assert own["gains"].shape == (8, TINY["M"])  # what the fixed-rate file lacks starts fresh
    assert {"g_a.body", "g_a.attention", "h_s.body", "post_filter.net"} <= set(module.parent["copied"])


def test_a_warm_start_leaves_out_blocks_whose_form_differs(tiny_weights):
    """Paper post-filter and scale-prior weights must not seed a residual post-filter or a mean-scale prior."""
    module = CompressionModule(model="attn-hyperprior-vbr", warm_start=str(tiny_weights), model_config=TINY)
    source = load_weights(tiny_weights).network.state_dict()
    own = module.model.state_dict()
    assert torch.equal(own["g_s.body.0.weight"], source["g_s.body.0.weight"])
    assert not torch.any(own["post_filter.net.4.weight"])  # the residual filter still starts as the identity
    assert not torch.equal(own["h_a.body.0.weight"], source["h_a.body.0.weight"])
    assert "g_a.body" in module.parent["copied"] and "g_a.attention" not in module.parent["copied"]


def test_a_warm_start_into_more_latent_channels_keeps_the_sources_in_the_leading_ones(tiny_weights):
    wider = dict(TINY, M=TINY["M"] + 8, attention="paper", postfilter="paper", prior="scale")
    torch.manual_seed(0)
    fresh = create("attn-hyperprior-vbr", **wider).state_dict()
    torch.manual_seed(0)
    module = CompressionModule(model="attn-hyperprior-vbr", warm_start=str(tiny_weights), model_config=wider)
    source = load_weights(tiny_weights).network.state_dict()
    own, M = module.model.state_dict(), TINY["M"]
    assert torch.equal(own["g_a.body.6.weight"][:M], source["g_a.body.6.weight"])  # y's channels out of g_a
    assert torch.equal(own["g_s.body.0.weight"][:M], source["g_s.body.0.weight"])  # and into g_s
    assert torch.equal(own["h_a.body.0.weight"][:, :M], source["h_a.body.0.weight"])
    assert torch.equal(own["g_a.body.6.weight"][M:], fresh["g_a.body.6.weight"][M:])  # the new ones start fresh
    assert torch.equal(own["h_s.body.4.weight"], fresh["h_s.body.4.weight"])  # h_s's outputs are not channel-aligned
    assert {"g_a.body.6.weight", "g_s.body.0.weight", "h_a.body.0.weight"} <= set(module.parent["resized"])
