"""The DeepFill v2 recipe on the real model at cnum 4, 32 px: the official loss rules, an overfit
check, sketch guidance, mixed precision and an end-to-end run of configs/deepfill_v2/tiny-test.yaml."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gancanvas.errors import ConfigError
from gancanvas.train import engine, run
from gancanvas.train.config import load_config
from gancanvas.train.recipes import Phase
from gancanvas.train.recipes.deepfill_v2 import DeepFillV2Recipe
from train_helpers import assert_exact_resume, learning_rates, train_batch

TINY = Path(__file__).resolve().parents[1] / "configs/deepfill_v2/tiny-test.yaml"


def _trainer(tmp_path, *overrides) -> engine.Trainer:
    return engine.Trainer(load_config(TINY, list(overrides)), tmp_path / "run", engine.Dist())


def test_losses_follow_the_official_rules(tmp_path):
    t = _trainer(tmp_path)
    G, D = t.nets["G"], t.nets["D"]
    D.eval()  # no power-iteration update, so the hand computation sees the same critic
    batch = train_batch(t)
    gt, mask = batch["image"], batch["mask"]
    assert D.conv1.in_channels == 4  # image + mask
    with torch.no_grad():
        d_loss, d_logs = t.recipe.loss(Phase("D", "D"), t.nets, batch)
        g_loss, g_logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
        out = G(gt, mask)
        x1, x2 = out["coarse"], out["refined"]
        completed = x2 * mask + gt * (1 - mask)
        pos, neg = D(torch.cat([gt, mask], 1)), D(torch.cat([completed, mask], 1))
        hinge = 0.5 * F.relu(1 - pos).mean() + 0.5 * F.relu(1 + neg).mean()
        l1 = (gt - x1).abs().mean() + (gt - x2).abs().mean()  # whole image, both stages
    torch.testing.assert_close(d_loss, hinge)
    torch.testing.assert_close(g_logs["l1"], l1)
    torch.testing.assert_close(g_logs["adv"], -neg.mean())
    torch.testing.assert_close(g_loss, -neg.mean() + l1)
    assert set(d_logs) == {"hinge", "real", "fake"} and set(g_logs) == {"total", "adv", "l1"}
    # loss weights are applied
    t.recipe.loss_cfg.gan_alpha, t.recipe.loss_cfg.l1_alpha = 0.5, 2.0
    with torch.no_grad():
        g_loss2, _ = t.recipe.loss(Phase("G", "G"), t.nets, batch)
    torch.testing.assert_close(g_loss2, -0.5 * neg.mean() + 2.0 * l1)
    t.close()


def test_gan_alpha_zero_trains_the_generator_alone(tmp_path):
    """loss.gan_alpha=0: no critic phase and no critic call; the G step is the L1 step.
    (Through run(): a checkpointed run whose logs hold no critic losses.)"""
    t = _trainer(tmp_path, "loss.gan_alpha=0", "train.total_steps=2")
    assert [p.net for p in t.phases] == ["G"] and t.draws_per_step == 1
    D0 = {k: v.clone() for k, v in t.nets["D"].state_dict().items()}
    batch = train_batch(t)
    calls = []
    hook = t.nets["D"].register_forward_hook(lambda *a: calls.append(1))
    G_ref = copy.deepcopy(t.nets["G"])
    loss, logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
    assert set(logs) == {"total", "l1"} and not calls
    out = G_ref(batch["image"], batch["mask"])
    l1 = (batch["image"] - out["coarse"]).abs().mean() + (batch["image"] - out["refined"]).abs().mean()
    torch.testing.assert_close(loss, l1)
    t.train_step([batch])
    hook.remove()
    assert not calls and t.step == 1
    assert all(torch.equal(v, D0[k]) for k, v in t.nets["D"].state_dict().items())  # D untouched
    assert any(not torch.equal(v, G_ref.state_dict()[k]) for k, v in t.nets["G"].state_dict().items())
    t.close()
    out_dir = run(TINY, run_dir=tmp_path / "cli",
                  overrides=["loss.gan_alpha=0", "train.total_steps=2", "train.log_every=1"])
    assert (out_dir / "model.safetensors").is_file()
    rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [set(r["losses"]) for r in rows if r["kind"] == "train"]
    assert logged == [{"G/total", "G/l1"}] * 2


def test_overfits_a_fixedtrain_batch(tmp_path):
    t = _trainer(tmp_path, "train.lr_g=0.002", "train.lr_d=0.0002")
    batch = train_batch(t)

    @torch.no_grad()
    def l1():
        gt = batch["image"]
        out = t.nets["G"](gt, batch["mask"])
        return float((gt - out["coarse"]).abs().mean() + (gt - out["refined"]).abs().mean())

    before = l1()
    for _ in range(25):
        t.train_step([batch, batch])
    after = l1()
    assert after < 0.7 * before, (before, after)
    assert t.step == 25
    # The EMA follows the generator (beta 0.999 moves it a little, not not at all).
    g, e = t.nets["G"].state_dict(), t.ema.state_dict()
    assert any(not torch.equal(g[k], e[k]) for k in g)
    t.close()


def test_sketch_guided(tmp_path):
    t = _trainer(tmp_path, "model.options.guided=true")
    batch = train_batch(t)
    assert "sketch" in batch and t.nets["D"].conv1.in_channels == 5
    assert float(batch["sketch"].sum()) > 0 and float((batch["sketch"] * (1 - batch["mask"])).sum()) == 0
    t.train_step([batch, batch])
    cols = t.recipe.visuals(t.ema, batch)
    assert list(cols) == ["input", "mask", "sketch", "coarse", "refined", "completed", "attention",
                          "ground truth"]
    t.close()
    with pytest.raises(ConfigError, match="data.sketch"):
        _trainer(tmp_path / "b", "model.options.guided=true", "data.sketch=false")


def test_bf16_autocast_step(tmp_path):
    def one_step(name):
        t = _trainer(tmp_path / name, "train.amp=bf16")
        batch = train_batch(t)
        t.train_step([batch, batch])
        t.close()
        assert all(p.dtype == torch.float32 for p in t.nets["G"].parameters())
        return {k: float(v / t._counts[k]) for k, v in t._sums.items()}

    a, b = one_step("a"), one_step("b")
    assert all(torch.isfinite(torch.tensor(v)) for v in a.values()), a
    assert a == b  # deterministic (oneDNN's bf16 CPU kernels were not: the engine turns them off)
    assert torch.backends.mkldnn.enabled  # ...and back on when the trainer is closed


def test_bf16_generator_only_keeps_onednn(tmp_path):
    """With no critic (gan_alpha 0) the oneDNN bf16 kernels stay on (they are the CPU speed-up);
    the steps are finite and repeat exactly."""
    def one_step(name):
        t = _trainer(tmp_path / name, "train.amp=bf16", "loss.gan_alpha=0")
        assert torch.backends.mkldnn.enabled
        batch = train_batch(t)
        t.train_step([batch])
        t.close()
        return {k: float(v / t._counts[k]) for k, v in t._sums.items()}

    a, b = one_step("a"), one_step("b")
    assert set(a) == {"G/total", "G/l1"} and all(torch.isfinite(torch.tensor(v)) for v in a.values())
    assert a == b
    t = _trainer(tmp_path / "c", "train.amp=bf16")  # with the critic: off while the trainer lives
    assert not torch.backends.mkldnn.enabled
    t.close()
    assert torch.backends.mkldnn.enabled


def test_linear_learning_rate_decay(tmp_path):
    t = _trainer(tmp_path, "train.total_steps=10", "loss.niter_decay=4", "train.lr_d=1e-3")
    factors = [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]  # constant, then lr -= lr0 / niter_decay per step
    for (g, d), f in zip(learning_rates(t, range(10)), factors, strict=True):
        assert g == pytest.approx(1e-4 * f) and d == pytest.approx(1e-3 * f)
    t.close()
    t = _trainer(tmp_path / "b", "train.total_steps=10")  # niter_decay 0: the official constant rate
    assert set(learning_rates(t, range(10))) == {(1e-4, 1e-4)}
    t.close()
    with pytest.raises(ConfigError, match="loss.niter_decay must be in 0..10"):
        _trainer(tmp_path / "c", "train.total_steps=10", "loss.niter_decay=11")


def test_exact_resume_through_the_decay(tmp_path):
    over = ["loss.gan_alpha=0", "train.total_steps=4", "loss.niter_decay=3", "train.eval_every=0",
            "train.image_every=0", "train.keep_checkpoints=5", "train.ckpt_every=2"]
    assert_exact_resume(TINY, tmp_path, DeepFillV2Recipe, over)


def test_tiny_config_end_to_end(tmp_path):
    import gancanvas
    from gancanvas.weights import load_model

    run_dir = run(TINY, run_dir=tmp_path / "run")
    lines = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert {"D/hinge", "D/real", "D/fake", "G/adv", "G/l1", "G/total"} == set(train[-1]["losses"])
    assert {"hole_l1", "psnr", "ssim"} == set(lines[-1]["metrics"])
    model, meta = load_model(run_dir / "model.safetensors")
    assert meta["arch"] == "deepfill_v2" and meta["config"]["cnum"] == 4
    pipe = gancanvas.load(str(run_dir / "model.safetensors"))
    assert pipe is not None
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
