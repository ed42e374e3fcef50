"""The SRN recipe on the real model at g_cnum 4 (a 16 px known box on a 32 px canvas): margins data,
the official loss rules of both stages, stage 1 lowering the validation L1, stage 2 with 5:1
phases from `--init <stage 1>/last`, exact resume and one-line config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gancanvas.cli import main
from gancanvas.data.datasets import SceneImages
from gancanvas.data.io import image_to_tensor
from gancanvas.data.margins import Margins, crop_known, random_margins
from gancanvas.data.outpaint_datasets import (
    OutpaintTrainSet,
    OutpaintValSet,
    read_val_margins,
    sample_margins,
    val_margins,
    write_val_margins,
)
from gancanvas.errors import ConfigError, InputError, MissingWeightsError
from gancanvas.losses.perceptual import IDMRFLoss
from gancanvas.losses.srn import (
    relative_spatial_variant_weights,
    srn_critic_loss,
    srn_generator_adversarial,
    srn_reconstruction_losses,
)
from gancanvas.nn.vgg import VGG19_WEIGHTS_ENV, make_random_vgg19_weights
from gancanvas.train import engine, run
from gancanvas.train.config import load_config
from gancanvas.train.recipes import Phase
from train_helpers import train_batch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs/srn/tiny-test.yaml"


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    return make_random_vgg19_weights(tmp_path_factory.mktemp("vgg") / "vgg19.safetensors", channel_divisor=16,
                                     depth="relu4_2")


def stage2(vgg_file) -> list[str]:
    return ["loss.pretrain=false", f"loss.vgg19_weights={vgg_file}", "loss.vgg19_channel_divisor=16"]


def _trainer(run_dir, *overrides, init=None) -> engine.Trainer:
    return engine.Trainer(load_config(TINY, list(overrides)), run_dir, engine.Dist(), init=init)


def _one_line(msg: str, *needles: str) -> None:
    assert msg and "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)


# ----------------------------------------------------------------------------- data
def test_margins_data_is_a_function_of_the_key():
    images = SceneImages(list(range(6)), 32)
    a = OutpaintTrainSet(images, 32, [16, 16], seed=3, group=4)
    b = OutpaintTrainSet(images, 32, [16, 16], seed=3, group=4)
    seen = set()
    for n in (0, 1, 3, 4, 9, 17, 3):  # out of order and repeated: a function of n alone
        x, y = a[n], b[n]
        assert all(torch.equal(x[k], y[k]) for k in x)
        m = Margins(*x["margins"].tolist())
        assert m.canvas_size(16, 16) == (32, 32) and min(m) >= 0
        mask = torch.ones(1, 32, 32)
        mask[:, m.top:m.top + 16, m.left:m.left + 16] = 0
        assert torch.equal(x["mask"], mask) and x["image"].shape == (3, 32, 32)
        seen.add(tuple(m))
    # One margin draw per group (the global batch): shared inside it, redrawn for the next.
    assert all(torch.equal(a[n]["margins"], a[0]["margins"]) for n in range(4))
    assert len({tuple(a[4 * g]["margins"].tolist()) for g in range(12)}) > 3
    assert not torch.equal(a[0]["image"], a[1]["image"])
    assert not torch.equal(OutpaintTrainSet(images, 32, 16, seed=4, group=4)[0]["image"], a[0]["image"])
    # data.load_size: canvases are 32 px windows of 64 px scenes, not the scenes shrunk.
    big = OutpaintTrainSet(SceneImages(list(range(6)), 64), 32, 16, seed=3, group=4, load_size=64)
    x = big[0]["image"]
    full = image_to_tensor(big.images.load(int(big.permutation(0)[0])))[0]
    windows = full.unfold(1, 32, 1).unfold(2, 32, 1)
    hit = (windows - x[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0
    flipped = (windows - x.flip(-1)[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0
    assert bool(hit.any() or flipped.any())


def test_margin_sampling_modes():
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):  # "random" on all sides is the official rule of data.margins.random_margins
        ours = sample_margins(32, 16, rng1, min_margin=[2, 3])
        assert ours == random_margins(32, 16, rng2, min_margin=(2, 3))
    rng = np.random.default_rng(0)
    corners = {sample_margins(32, 16, rng, "one-sided") for _ in range(60)}
    assert corners == {Margins(t, left, 16 - t, 16 - left) for t in (0, 16) for left in (0, 16)}
    right = {sample_margins([32, 32], [32, 16], rng, "random", ["right"]) for _ in range(5)}
    assert right == {Margins(0, 0, 0, 16)}  # one allowed side: the margin goes there
    sides = {sample_margins(32, [32, 16], rng, "one-sided", ["left", "right"]) for _ in range(40)}
    assert sides == {Margins(0, 16, 0, 0), Margins(0, 0, 0, 16)}
    asym = {sample_margins(32, [32, 16], rng, "random", ["left", "right"]) for _ in range(60)}
    assert len(asym) > 8 and all(m.top == m.bottom == 0 for m in asym)


def test_validation_pairs_are_fixed_by_the_eval_seed(tmp_path):
    first = val_margins(6, 32, 16, seed=2024)
    assert first == val_margins(6, 32, 16, seed=2024)
    assert first[:3] == val_margins(3, 32, 16, seed=2024)  # pair j does not depend on the count
    assert first != val_margins(6, 32, 16, seed=7)
    path = write_val_margins(tmp_path / "val_margins.json", 6, 32, 16, 2024)
    assert read_val_margins(path, 32, 16) == first
    with pytest.raises(InputError):
        read_val_margins(path, 48, 16)  # another canvas
    images = SceneImages([100, 101, 102], 32)
    v = OutpaintValSet(images, first, 32)
    assert len(v) == 3 and v[2]["margins"].tolist() == list(first[2])
    assert torch.equal(v[1]["image"], OutpaintValSet(images, first, 32)[1]["image"])


# ----------------------------------------------------------------------------- the recipe
def test_losses_follow_the_official_rules(tmp_path, vgg_file):
    t = _trainer(tmp_path / "run", *stage2(vgg_file))
    assert [(p.net, p.count, p.new_batch) for p in t.phases] == [("D", 5, True), ("G", 1, True)]
    G, D = t.nets["G"], t.nets["D"]
    batch = train_batch(t)
    gt = batch["image"]
    m = Margins(*batch["margins"][0].tolist())
    torch.manual_seed(0)
    d_loss, d_logs = t.recipe.loss(Phase("D", "D"), t.nets, batch)
    g_loss, g_logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
    with torch.no_grad():
        out = G(crop_known(gt, m), m)
        pred, mask = out["output"], out["mask"]
        assert torch.equal(mask, batch["mask"])
        w = relative_spatial_variant_weights(mask)
        diff = (gt - pred).abs()
        l1 = 1.2 * (diff * w).mean()  # RSV, pretrain_l1_alpha inside
        ae = 1.2 * (diff * (1 - mask)).mean() / (1 - mask).expand_as(diff).mean()
        rec = srn_reconstruction_losses(pred, gt, mask)
        torch.testing.assert_close(rec["l1"], l1)
        torch.testing.assert_close(rec["ae"], ae)
        adv = srn_generator_adversarial(D, out["complete"], mask)
        mrf = IDMRFLoss(weights=vgg_file, channel_divisor=16, pool="avg")(pred, gt)
    torch.manual_seed(0)  # the same interpolates (the penalty needs autograd)
    d_want = srn_critic_loss(D, gt, out["complete"], mask, gp_lambda=10.0)["total"]
    torch.testing.assert_close(g_logs["l1"], l1)
    torch.testing.assert_close(g_logs["ae"], ae)
    torch.testing.assert_close(g_logs["adv"], adv)
    torch.testing.assert_close(g_logs["mrf"], mrf)
    torch.testing.assert_close(g_loss, 1e-3 * adv + 0.05 * mrf + 4.2 * l1 + 1.2 * ae)
    torch.testing.assert_close(d_loss, d_want)
    assert set(d_logs) == {"total", "wgan_global", "wgan_context", "gp_global", "gp_local"}
    # One training step: 5 critic updates and one generator update, and under DDP every
    # parameter of both networks has received a gradient (none is left out of the backward).
    t.train_step([train_batch(t, 2 * i) for i in range(t.draws_per_step)])
    assert t.draws_per_step == 6
    for net, n in (("D", 5), ("G", 1)):
        assert all(s["step"] == n for s in t.opts[net].state.values())
        assert all(p.grad is not None for p in t.nets[net].parameters()), net
    t.close()

    s1 = _trainer(tmp_path / "s1")  # stage 1: the generator alone, reconstruction terms only
    assert [(p.net, p.count) for p in s1.phases] == [("G", 1)] and set(s1.nets) == {"G"}
    assert s1.recipe.mrf is None
    g1, logs1 = s1.recipe.loss(Phase("G", "G"), s1.nets, train_batch(s1))
    assert set(logs1) == {"total", "l1", "ae"}
    torch.testing.assert_close(g1, 4.2 * logs1["l1"] + 1.2 * logs1["ae"])
    s1.train_step([train_batch(s1)])
    assert all(p.grad is not None for p in s1.nets["G"].parameters())
    s1.close()


def test_complete_handles_mixed_margins_and_keeps_known_pixels(tmp_path):
    t = _trainer(tmp_path / "run")
    items = [t.val_set[j] for j in range(len(t.val_set))]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert len({tuple(r) for r in batch["margins"].tolist()}) > 1  # validation margins vary per pair
    with torch.no_grad():
        out = t.recipe.complete(t.ema, batch)
        for j, r in enumerate(batch["margins"].tolist()):
            m = Margins(*r)
            alone = t.ema(crop_known(batch["image"][j:j + 1], m), m)["complete"]
            torch.testing.assert_close(out[j:j + 1], alone)
    known = batch["mask"] == 0
    assert torch.equal(out[known.expand_as(out)], batch["image"][known.expand_as(out)])
    cols = t.recipe.visuals(t.ema, batch)
    assert list(cols) == ["input", "mask", "output", "completed", "ground truth"]
    t.close()


def test_stage1_lowers_the_validation_l1(tmp_path):
    """The issue's check: a few dozen stage-1 steps lower the masked L1 on the fixed validation
    pairs; with the reconstruction weights at zero (the control) nothing moves."""
    fast = ["train.total_steps=30", "train.lr_g=0.001", "train.ema_beta=0", "train.eval_every=0",
            "train.ckpt_every=0", "train.image_every=0", "train.log_every=10", "data.count=64",
            "data.val_count=8"]

    def hole_l1(name, *extra):
        t = _trainer(tmp_path / name, *fast, *extra)
        before = t.evaluate()["hole_l1"]
        t.train()
        return before, t.evaluate()["hole_l1"]

    before, after = hole_l1("on")
    assert after < 0.85 * before, (before, after)
    c_before, c_after = hole_l1("off", "loss.l1_alpha=0", "loss.ae_alpha=0")
    assert c_before == before and c_after == pytest.approx(c_before, rel=1e-6)


def test_stage2_from_stage1_last_through_the_cli(tmp_path, vgg_file, capsys):
    s1 = tmp_path / "srn-pretrain"
    assert main(["train", str(TINY), "--run-dir", str(s1), "train.total_steps=1"]) == 0
    g1 = load_file(str(s1 / "checkpoints/step-00000001/G.safetensors"))
    assert not (s1 / "checkpoints/step-00000001/D.safetensors").exists()

    # --init <run>/last loads the generator only; the critics start from their fresh init.
    fresh = _trainer(tmp_path / "fresh", *stage2(vgg_file))
    t = _trainer(tmp_path / "init", *stage2(vgg_file), init=s1 / "last")
    assert all(torch.equal(v, g1[k]) for k, v in t.nets["G"].state_dict().items())
    assert all(torch.equal(v, g1[k]) for k, v in t.ema.state_dict().items())
    assert any(not torch.equal(v, fresh.nets["G"].state_dict()[k]) for k, v in g1.items())
    assert all(torch.equal(v, fresh.nets["D"].state_dict()[k]) for k, v in t.nets["D"].state_dict().items())
    fresh.close()
    t.close()

    s2 = tmp_path / "srn"
    capsys.readouterr()
    argv = ["train", str(TINY), "--run-dir", str(s2), "--init", str(s1 / "last"), *stage2(vgg_file)]
    assert main(argv) == 0
    lines = [json.loads(s) for s in (s2 / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["init"].endswith("step-00000001/G.safetensors")
    train = [r for r in lines if r["kind"] == "train"]
    assert {"G/l1", "G/ae", "G/adv", "G/mrf", "G/total", "D/total", "D/gp_global", "D/gp_local"} <= set(
        train[-1]["losses"])
    assert {"hole_l1", "psnr", "ssim"} == set(lines[-1]["metrics"])
    assert json.loads((s2 / "checkpoints/step-00000002/state.json").read_text())["samples"] == 2 * 6 * 2

    import gancanvas

    assert gancanvas.load(str(s2 / "model.safetensors")) is not None


def test_stage2_exact_resume(tmp_path, vgg_file):
    straight = run(TINY, run_dir=tmp_path / "straight", overrides=stage2(vgg_file))
    half = run(TINY, run_dir=tmp_path / "half", overrides=[*stage2(vgg_file), "train.total_steps=1"])
    run(TINY, run_dir=half, resume=True, overrides=stage2(vgg_file))
    for net in ("G", "D", "G_ema"):
        a = load_file(str(straight / f"checkpoints/step-00000002/{net}.safetensors"))
        b = load_file(str(half / f"checkpoints/step-00000002/{net}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), net
    evals = [[json.loads(s)["metrics"] for s in (d / "metrics.jsonl").read_text().splitlines()
              if json.loads(s)["kind"] == "eval"][-1] for d in (straight, half)]
    assert evals[0] == evals[1]


# ----------------------------------------------------------------------------- errors
def test_missing_vgg_weights_stop_stage2_at_startup(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(VGG19_WEIGHTS_ENV, raising=False)
    with pytest.raises(MissingWeightsError) as err:
        _trainer(tmp_path / "a", "loss.pretrain=false")
    _one_line(str(err.value), "loss.vgg19_weights", VGG19_WEIGHTS_ENV)
    code = main(["train", str(TINY), "--run-dir", str(tmp_path / "b"), "loss.pretrain=false",
                 f"loss.vgg19_weights={tmp_path / 'nope.pth'}"])
    err_text = capsys.readouterr().err.strip()
    assert code == 2 and len(err_text.splitlines()) == 1 and "nope.pth" in err_text
    assert not (tmp_path / "b" / "checkpoints").exists()
    _trainer(tmp_path / "c", "loss.pretrain=false", "loss.mrf_alpha=0").close()  # no ID-MRF, no VGG19


@pytest.mark.parametrize("overrides, words", [
    (["model.options.critic_size=[64,64]"], "critic_size"),
    (["loss.known_size=[8,8]"], "at most 2x per side"),
    (["loss.known_size=[40,16]"], "must fit"),
    (["loss.known_size=[32,32]"], "nothing to outpaint"),
    (["loss.margin_sides=[top,bottom]"], "'left' or 'right'"),
    (["loss.margin_sides=[middle]"], "margin_sides"),
    (["loss.margin_mode=spiral"], "margin_mode"),
    (["loss.min_margin=[9,0]"], "min_margin"),
    (["loss.l1_type=l2"], "l1_type"),
    (["loss.critic_steps=0"], "critic_steps"),
    (["model.options.compat=official", "loss.known_size=[16,32]"], "(H/h)*(W/w)"),
])
def test_config_errors_are_one_line(tmp_path, overrides, words):
    with pytest.raises(ConfigError) as err:
        _trainer(tmp_path / "run", *overrides)
    _one_line(str(err.value), words)


def test_configs_are_the_official_settings():
    s1 = load_config(ROOT / "configs/srn/scenes-256.yaml")
    s2 = load_config(ROOT / "configs/srn/scenes-256-finetune.yaml")
    for cfg in (s1, s2):
        assert cfg.model.arch == "srn" and cfg.train.recipe == "srn"
        assert cfg.data.size == 256 and cfg.loss["known_size"] == [128, 128]
        assert cfg.model.options["critic_size"] == [256, 256] and cfg.model.options["g_cnum"] == 64
        assert cfg.train.betas == [0.5, 0.9] and cfg.train.lr_g == cfg.train.lr_d == 1e-4
        assert (cfg.loss["l1_alpha"], cfg.loss["ae_alpha"], cfg.loss["pretrain_l1_alpha"]) == (4.2, 1.2, 1.2)
        assert cfg.loss["margin_mode"] == "random" and cfg.loss["l1_type"] == "rsv"
        assert cfg.model.options == s1.model.options and cfg.eval.seed == 2024
    assert s1.loss["pretrain"] and not s2.loss["pretrain"]
    assert (s2.loss["gan_alpha"], s2.loss["mrf_alpha"], s2.loss["gp_lambda"], s2.loss["critic_steps"]) == (
        1e-3, 0.05, 10.0, 5)
