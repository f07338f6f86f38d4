"""The GPU training round's CPU twin: scripts/gpu_round.sh end to end, twice, on a tiny budget."""

import argparse
import json
import lzma
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attncomp.catalog import COMPRESSAI_LAMBDAS
from attncomp.codec import decode
from attncomp.models import CodingModel, create, load_weights, save_weights, zoo

from .helpers import TINY, image_folder, load_script, smooth_image, spread_latents

ROOT = Path(__file__).resolve().parent.parent


def test_a_round_trains_validates_returns_its_files_and_the_next_round_continues(tmp_path):
    data = image_folder(tmp_path / "data", 4, 80, 96)
    split = tmp_path / "split.txt"
    split.write_text("# held out\nimg3\n")
    init = tmp_path / "init"
    torch.manual_seed(0)
    save_weights(create("attn-hyperprior", **TINY), init / "attn-hyperprior-q3.pt", "attn-hyperprior", 3, 0.0067)

    def round_(out, steps):  # a step cap, not the minutes, ends the run: the test holds on a loaded machine
        command = [
            "bash", str(ROOT / "scripts" / "gpu_round.sh"), str(out), "--qualities", "3", "--minutes", "5",
            "--data", str(data), "--runs", str(tmp_path / "runs"), "--init", str(init), "--check-images", "1",
            "--accelerator", "cpu", "--precision", "32", "--model.compile", "false", "--val-split", str(split),
            "--data.crop_size", "64", "--data.batch_size", "2", "--trainer.max_steps", str(steps),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout, json.loads((out / "summary.json").read_text())["q3"]

    log, first = round_(tmp_path / "out1", 2)
    assert "starting from" in log
    assert first["steps"] == first["steps_this_round"] == 2
    assert first["validation"]["images"] == 1 and first["validation"]["bpp"] > 0
    out = tmp_path / "out1"
    assert sorted(p.name for p in out.iterdir()) == ["attn-hyperprior-q3.pt", "logs.tar.gz", "streams.tar", "summary.json"]
    assert load_weights(out / "attn-hyperprior-q3.pt").training["steps"] == first["steps"]

    # the stream coded by the round decodes here to the image the round decoded
    with tarfile.open(out / "streams.tar") as tar:
        stream = tar.extractfile("img3.atc").read()
        expected = np.asarray(Image.open(tar.extractfile("img3.decoded.png")))
    assert np.array_equal(np.asarray(decode(stream, load_weights(out / "attn-hyperprior-q3.pt"))), expected)

    log, second = round_(tmp_path / "out2", 4)  # Lightning's max_steps counts the resumed steps too
    assert "resuming" in log
    assert second["steps"] == first["steps"] + second["steps_this_round"] == 4


def test_the_ablation_plan_trains_every_variant_for_the_same_steps_and_returns_them_in_one_tar(tmp_path, capsys):
    data = image_folder(tmp_path / "data", 3, 64, 64)
    split = tmp_path / "split.txt"
    split.write_text("img2\n")
    out = tmp_path / "out"
    command = [  # scripts/gpu_round.py in this process (the test above runs it through gpu_round.sh)
        str(out), "--plan", "ablation", "--variants", "plain",
        "residual-meanscale", "--steps", "2", "--minutes", "5", "--data", str(data), "--runs", str(tmp_path / "runs"),
        "--check-images", "1", "--val-split", str(split), "--accelerator", "cpu", "--precision", "32",
        "--model.compile", "false", "--model.model_config", json.dumps(TINY), "--data.crop_size", "64",
        "--data.batch_size", "2", "--one-at-a-time",  # as on a CPU; on a GPU all variants train at once
    ]
    assert load_script("gpu_round").main(command) == 0
    events = [line.split(" after ")[0] for line in capsys.readouterr().out.splitlines()
              if re.match(r"[\w-]+: (starting|ended)", line)]
    assert events == ["plain: starting from scratch, budget 300 s", "plain: ended",
                      "residual-meanscale: starting from scratch, budget 300 s", "residual-meanscale: ended"]
    summary = json.loads((out / "summary.json").read_text())
    assert {name: run["steps"] for name, run in summary.items()} == {"plain": 2, "residual-meanscale": 2}
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "streams.tar", "summary.json", "weights-1.tar"]
    with tarfile.open(out / "weights-1.tar") as tar:
        assert sorted(tar.getnames()) == ["plain.pt", "residual-meanscale.pt"]
        tar.extractall(tmp_path / "weights", filter="data")
    with tarfile.open(out / "streams.tar") as tar:  # coded with the returned (float16) weights of the first variant
        stream = tar.extractfile("img2.atc").read()
        expected = np.asarray(Image.open(tar.extractfile("img2.decoded.png")))
    assert np.array_equal(np.asarray(decode(stream, load_weights(tmp_path / "weights" / "plain.pt"))), expected)

    # the report the README's ablation table comes from, on these logs
    results = tmp_path / "results"
    with tarfile.open(out / "logs.tar.gz") as tar:
        tar.extractall(results / "logs", filter="data")
    ablation_report(results)
    table = (results / "table.md").read_text()
    assert "at step 2," in table and "| plain | 2 |" in table and "| residual-meanscale | 2 |" in table
    assert (results / "learning_curves.png").stat().st_size > 0
    plain, meanscale = (load_weights(tmp_path / "weights" / f"{v}.pt").config for v in ("plain", "residual-meanscale"))
    assert plain["N"] == meanscale["N"] == TINY["N"]  # the shared settings, and each variant's own switches
    assert (plain["attention"], plain["prior"]) == ("none", "scale")
    assert (meanscale["attention"], meanscale["prior"]) == ("residual", "mean-scale")

    # on a fresh checkout (no run folders), the next round continues each variant from its returned weights,
    # kept compressed in a tracked folder
    init = tmp_path / "kept"
    load_script("keep_weights").main([str(out), str(init)])
    assert sorted(p.name for p in init.iterdir()) == ["plain.pt.xz", "residual-meanscale.pt.xz"]
    again = [str(tmp_path / "out2"), *command[1:], "--init", str(tmp_path / "kep")]
    again[again.index("--runs") + 1] = str(tmp_path / "runs2")
    with pytest.raises(SystemExit, match="holds none of plain, residual-meanscale"):  # mistyped: no lineage lost
        load_script("gpu_round").main(again)
    again[again.index("--init") + 1] = str(init)
    again[again.index("--steps") + 1] = "4"  # in all: 2 more
    del again[again.index("residual-meanscale")]  # one variant shows it
    assert load_script("gpu_round").main(again) == 0
    assert f"plain: starting from {init / 'plain.pt.xz'}" in capsys.readouterr().out
    assert sorted(p.name for p in init.iterdir()) == ["plain.pt.xz", "residual-meanscale.pt.xz"]  # left as kept
    with tarfile.open(tmp_path / "out2" / "logs.tar.gz") as tar:  # unpacked beside the first round's logs
        assert "plain/from-2.version_0.metrics.csv" in tar.getnames() and "plain/from-2.train.log" in tar.getnames()
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert {name: run["steps_this_round"] for name, run in summary.items()} == {"plain": 2}
    with tarfile.open(tmp_path / "out2" / "weights-1.tar") as tar:
        tar.extractall(tmp_path / "weights2", filter="data")
    assert load_weights(tmp_path / "weights2" / "plain.pt").training["initialised_from"]["steps"] == 2

    # keeping the second round's weights replaces the variant it trained; the other keeps its own
    untrained = (init / "residual-meanscale.pt.xz").read_bytes()
    load_script("keep_weights").main([str(tmp_path / "out2"), str(init)])
    assert lzma.decompress((init / "plain.pt.xz").read_bytes()) == (tmp_path / "weights2" / "plain.pt").read_bytes()
    assert (init / "residual-meanscale.pt.xz").read_bytes() == untrained

    # weights a round returned unvalidated are validated here, at the steps behind them (4: 2 + 2)
    ablation_report(results, "--validate", tmp_path / "weights2", "--data", data, "--split", split)
    assert "| plain | 4 |" in (results / "table.md").read_text()

    # another attempt's J at the same step beside each variant's (here the same logs: the same J)
    ablation_report(results, "--compare", results)
    plain = next(row for row in (results / "table.md").read_text().splitlines() if row.startswith("| plain |"))
    assert plain.split(" | ")[2] == plain.split(" | ")[3]


def test_a_run_that_trained_no_measurable_time_is_summarised_without_a_throughput(tmp_path):
    """A resumed run with no steps left (or a few tiny ones) reports its steps; its throughput is unknown, not a crash."""
    gpu_round = load_script("gpu_round")
    training = dict(steps=20, steps_this_run=0, seconds_this_run=0.0, batch_size=16, crop_size=128, hardware="CPU")
    save_weights(create("attn-hyperprior", **TINY), tmp_path / "weights.pt", "attn-hyperprior", quality=1,
                 lmbda=0.0018, training=training)
    summary = gpu_round.summarise(tmp_path, wall=1.0)
    assert (summary["steps"], summary["steps_this_round"], summary["mpix_per_s"]) == (20, 0, None)


def test_a_round_resumes_a_run_from_the_steps_its_checkpoint_began_at_and_never_from_behind_init(tmp_path):
    """A run folder trained from scratch to 4,500 steps resumes to --steps 6000 although --init's kept copy of
    it has trained 4,500 too (counting those as behind the checkpoint would end the run at once); a checkpoint
    behind --init's weights is refused."""
    gpu_round = load_script("gpu_round")
    init, runs = tmp_path / "kept", tmp_path / "runs"
    config = dict(TINY, attention="none", postfilter="none", prior="scale")
    save_weights(create("attn-hyperprior-vbr", **config), init / "plain.pt", "attn-hyperprior-vbr", training={"steps": 4500})
    (runs / "plain" / "checkpoints").mkdir(parents=True)

    def plain_run(steps: int):
        args, _ = gpu_round.parse([str(tmp_path / "out"), "--plan", "ablation", "--variants", "plain", "--init",
                                   str(init), "--runs", str(runs), "--steps", str(steps)])
        (run,) = gpu_round.plan(args)
        return run.steps_before, run.options[run.options.index("--trainer.max_steps") + 1]

    assert plain_run(6000) == (4500, "1500")  # no checkpoint: from --init's weights
    torch.save({"global_step": 4500, "initialised_from": None}, runs / "plain" / "checkpoints" / "last.ckpt")
    assert plain_run(6000) == (0, "6000")
    torch.save({"global_step": 1500, "initialised_from": {"steps": 1500}}, runs / "plain" / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit, match="has trained 3000 steps, .*plain.pt 4500: continue from --init with another --runs"):
        plain_run(6000)
    # a run warm-started from another model's weights counts none of theirs, as the run itself does
    warm = {"steps": 5429, "warm_start": "q5.pt"}
    torch.save({"global_step": 4600, "initialised_from": warm}, runs / "plain" / "checkpoints" / "last.ckpt")
    assert plain_run(6000) == (0, "6000")


def test_the_fixed_rate_plan_trains_one_model_per_quality_of_a_variants_architecture_like_the_ablation(tmp_path):
    gpu_round = load_script("gpu_round")
    args, _ = gpu_round.parse([str(tmp_path / "out"), "--plan", "fixed-rate", "--variant", "residual-meanscale-M192",
                               "--qualities", "1", "7", "--steps", "1500", "--one-at-a-time"])
    assert args.config.endswith("ablation.yaml") and args.deadline == 2 * (7 + 2)  # one after the other
    runs = gpu_round.plan(args)
    assert [run.name for run in runs] == ["residual-meanscale-M192-q1", "residual-meanscale-M192-q7"]
    for run, lmbda in zip(runs, ("0.0018", "0.0932")):
        options = dict(zip(run.options[::2], run.options[1::2]))
        assert options["--lmbda"] == lmbda and options["--trainer.max_steps"] == "1500"
        model = create(options["--model.model"], **json.loads(options["--model.model_config"]))
        assert model.lambdas == ()  # one λ, no gains
        assert (model.config["prior"], model.config["attention"], model.config["M"]) == ("mean-scale", "residual", 192)


def test_the_variable_rate_model_is_compared_with_fixed_rate_ones_per_quality_on_validation_and_kodak(tmp_path, capsys):
    plain = dict(TINY, attention="none", postfilter="none", prior="scale")
    torch.manual_seed(0)
    variable_rate = tmp_path / "plain.pt"
    save_weights(create("attn-hyperprior-vbr", **plain), variable_rate, "attn-hyperprior-vbr", training={"steps": 4})
    for quality in (1, 3):
        save_weights(create("attn-hyperprior", **plain), tmp_path / "fixed" / f"plain-q{quality}.pt", "attn-hyperprior",
                     quality, COMPRESSAI_LAMBDAS[quality], training={"steps": 2})
    train, kodak = image_folder(tmp_path / "train", 3, 64, 64), image_folder(tmp_path / "kodak", 1, 64, 96)
    split = tmp_path / "split.txt"
    split.write_text("img2\n")
    compare = experiment_script("variable_rate_vs_fixed").main
    compare([str(variable_rate), str(tmp_path / "fixed"), "--out", str(tmp_path / "out"), "--train-images", str(train),
             "--split", str(split), "--kodak", str(kodak)])
    table = (tmp_path / "out" / "table.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    assert table.startswith("Variable-rate model plain.pt: 4 steps; the fixed-rate models: 2 (q1) + 2 (q3) = 4 steps.")
    rows = [row.split(" | ")[:2] for row in table.splitlines() if row.startswith("| ") and "---" not in row][1:]
    assert rows == [["| validation", "q1 (0.0018)"], ["| validation", "q3 (0.0067)"], ["| validation", "BD-rate (PSNR), decode time"],
                    ["| Kodak", "q1 (0.0018)"], ["| Kodak", "q3 (0.0067)"], ["| Kodak", "BD-rate (PSNR), decode time"]]
    points = json.loads((tmp_path / "out" / "points.json").read_text())
    assert [p["quality"] for p in points["validation"]["variable_rate"]] == [1, 3]
    assert points["Kodak"]["fixed"][0]["bpp"] > 0

    # a fixed-rate model of another architecture is no control for it
    save_weights(create("attn-hyperprior", **dict(plain, prior="mean-scale")), tmp_path / "fixed" / "plain-q5.pt",
                 "attn-hyperprior", 5, COMPRESSAI_LAMBDAS[5])
    with pytest.raises(SystemExit, match="the q5 model differs from the variable-rate one in prior"):
        compare([str(variable_rate), str(tmp_path / "fixed"), "--out", str(tmp_path / "out")])


def experiment_script(name: str):
    """A benchmarks/ script as a module (its import of benchmarks/common.py resolved)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return load_script(name, "benchmarks")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def ablation_report(*argv) -> None:
    """benchmarks/ablation.py, in this process."""
    experiment_script("ablation").main([str(arg) for arg in argv])


def test_kept_weights_are_never_replaced_by_a_truncated_or_ambiguous_return(tmp_path, tiny_weights):
    keep = load_script("keep_weights").main
    out, kept = tmp_path / "out", tmp_path / "kept"
    out.mkdir()
    (out / "plain.pt").write_bytes(tiny_weights.read_bytes())
    keep([str(out), str(kept)])
    good = (kept / "plain.pt.xz").read_bytes()
    (out / "plain.pt").write_bytes(tiny_weights.read_bytes()[:2000])  # a return cut off at the command limit
    with pytest.raises(SystemExit, match="nothing kept: .*truncated or corrupt"):
        keep([str(out), str(kept)])
    assert [p.name for p in kept.iterdir()] == ["plain.pt.xz"] and (kept / "plain.pt.xz").read_bytes() == good
    with tarfile.open(out / "weights-1.tar", "w") as tar:  # a stale tar beside the round's own file
        tar.add(tiny_weights, "plain.pt")
    with pytest.raises(SystemExit, match="plain.pt is in both"):
        keep([str(out), str(kept)])


def test_kept_weights_are_replaced_only_by_their_continuation_unless_forced(tmp_path):
    keep = load_script("keep_weights").main
    out, kept = tmp_path / "out", tmp_path / "kept"
    out.mkdir()

    def returned(steps, **config):
        save_weights(create("attn-hyperprior-vbr", **{**TINY, **config}), out / "plain.pt", "attn-hyperprior-vbr",
                     training={"steps": steps})

    returned(300)
    keep([str(out), str(kept)])
    returned(200)  # e.g. a round whose mistyped --init started it from scratch
    with pytest.raises(SystemExit, match="200 steps behind it, the kept .* 300"):
        keep([str(out), str(kept)])
    returned(400, attention="paper")
    with pytest.raises(SystemExit, match="another model or configuration"):
        keep([str(out), str(kept)])
    assert zoo.trained_steps(zoo.read_weights(kept / "plain.pt.xz")["training"]) == 300
    keep([str(out), str(kept), "--force"])
    assert zoo.read_weights(kept / "plain.pt.xz")["config"]["attention"] == "paper"


def test_a_round_refuses_a_folder_that_holds_an_earlier_rounds_files(tmp_path, capsys):
    (tmp_path / "weights-1.tar").write_bytes(b"")
    with pytest.raises(SystemExit):
        load_script("gpu_round").main([str(tmp_path), "--plan", "ablation"])
    assert "already holds a round's files (weights-1.tar)" in capsys.readouterr().err


def test_the_ablation_table_says_which_weights_its_kodak_columns_measured():
    kodak_steps = experiment_script("ablation").kodak_steps
    assert kodak_steps({}) == "no Kodak measurement (--weights)."
    assert kodak_steps({"plain": {"step": 4000}, "residual": {"step": 4000}}).endswith("weights at step 4000.")
    mixed = kodak_steps({"plain": {"step": 4000}, "residual": {"step": 3000}, "paper": {}})
    assert mixed.endswith("plain at step 4000, residual at step 3000, paper at step ?.")


def test_a_round_stops_what_runs_past_its_deadline_and_returns_weights_in_tars_small_enough_to_come_back(tmp_path):
    gpu_round = load_script("gpu_round")
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stderr=subprocess.DEVNULL)
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    began = time.monotonic()
    assert gpu_round.wait_until({"slow": slow, "quick": quick}, began + 2) == ["slow"]
    assert quick.returncode == 0 and slow.returncode is not None and time.monotonic() - began < 60

    members = []
    for index in range(5):
        (tmp_path / f"{index}.pt").write_bytes(bytes(6 * 2**20))  # 6 MB each: 2, 2 and 1 to a tar
        members.append((f"variant{index}.pt", tmp_path / f"{index}.pt"))
    gpu_round.pack_in_tars(tmp_path, members)
    tars = sorted(tmp_path.glob("weights-*.tar"))
    assert [t.name for t in tars] == ["weights-1.tar", "weights-2.tar", "weights-3.tar"]
    assert all(t.stat().st_size < 16 * 2**20 for t in tars)  # what the device returns per file
    names = []
    for path in tars:
        with tarfile.open(path) as tar:
            names += tar.getnames()
    assert names == [name for name, _ in members]


@pytest.mark.parametrize("queue, order", [("least-trained", ["b", "c", "a"]), ("as-given", ["a", "b", "c"])])
def test_a_cpu_round_trains_k_runs_at_a_time_the_least_trained_first_or_as_given_each_with_its_share_of_the_cores(
        tmp_path, monkeypatch, queue, order):
    gpu_round = load_script("gpu_round")
    launched = []

    def start(args, extra, run, stop_at, env=None):
        assert sum(process.poll() is None for _, _, process in launched) < 2, "more than K runs at once"
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
        launched.append((run.name, (env or {}).get("OMP_NUM_THREADS"), process))
        return process

    monkeypatch.setattr(gpu_round, "start", start)
    monkeypatch.setattr(gpu_round, "steps_so_far", lambda args, run: run.steps_before)
    monkeypatch.setattr(gpu_round.os, "cpu_count", lambda: 4)
    runs = [gpu_round.Run(name, (), steps_before=steps) for name, steps in (("a", 30), ("b", 10), ("c", 20))]
    args = argparse.Namespace(at_once=2, deadline=5, runs=tmp_path, queue=queue)
    processes, stopped, walls = gpu_round.train(args, [], runs)
    assert [(name, threads) for name, threads, _ in launched] == [(name, "2") for name in order]
    assert not stopped and sorted(walls) == ["a", "b", "c"] and all(p.returncode == 0 for p in processes.values())


@pytest.mark.parametrize("prior", ["scale", "mean-scale"])
def test_the_speed_benchmarks_compressai_reference_decodes_attncomps_latents_at_its_rate(prior):
    """benchmarks/codec_speed.py times CompressAI decoding what attncomp decodes: the same rate, every level."""
    common = experiment_script("common")
    torch.manual_seed(0)
    network = spread_latents(create("attn-hyperprior-vbr", **TINY, prior=prior)).eval()
    x = torch.from_numpy(smooth_image(128, 128)).permute(2, 0, 1)[None].float() / 255
    coding = CodingModel.from_network(network, "attn-hyperprior-vbr")
    for quality in (2, 7):
        reference = common.compressai_reference(coding.network, quality)
        stream = common.reference_stream(reference, coding.network, x)
        ours = coding.at(quality).compress(x)["strings"]
        size = sum(len(s[0]) for s in stream["strings"]) / sum(len(s[0]) for s in ours)
        assert abs(size - 1) < 0.05, (quality, size)
        assert reference.decompress(stream["strings"], stream["shape"])["x_hat"].shape == x.shape
