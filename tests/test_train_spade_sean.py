"""The SPADE and SEAN recipes on the real models at ngf 2, 32x32 scenes: the official loss rules
(hinge averaged over scales, feature matching / num_D, VGG, KL with the VAE), the D phase that
re-generates the fake with the updated G, TTUR, the linear decay, a SEAN reconstruction that learns,
exact resume, model files that `gancanvas.load` reads, and one-line config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import gancanvas
from gancanvas.cli import main
from gancanvas.errors import GancanvasError, MissingWeightsError
from gancanvas.losses.perceptual import VGGPerceptualLoss
from gancanvas.models.spade import kld_loss
from gancanvas.train import engine, run
from gancanvas.train.config import load_config
from gancanvas.train.recipes import Phase
from gancanvas.train.recipes.spade import SPADERecipe
from train_helpers import assert_exact_resume, metrics_lines, one_line, tiny_vgg19_file, train_batch

ROOT = Path(__file__).resolve().parents[1] / "configs"
TINY = {"spade": ROOT / "spade/tiny-test.yaml", "sean": ROOT / "sean/tiny-test.yaml"}
VAE = ["model.options.use_vae=true", "model.options.crop_size=32", "model.options.z_dim=8"]
QUIET = ["train.eval_every=0", "train.image_every=0"]


def _trainer(tmp_path, arch, *overrides) -> engine.Trainer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return engine.Trainer(load_config(TINY[arch], list(overrides)), tmp_path, engine.Dist())


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    return tiny_vgg19_file(tmp_path_factory)


@pytest.mark.parametrize("arch", ["spade", "sean"])
def test_tiny_config_trains_end_to_end_and_loads(tmp_path, arch):
    out = tmp_path / "run"
    if arch == "sean":
        assert main(["train", str(TINY[arch]), "--run-dir", str(out)]) == 0
    else:
        run(TINY[arch], run_dir=out)
    assert (out / "last").read_text().strip() == "step-00000002"
    rows = metrics_lines(out)
    ev = [r for r in rows if r["kind"] == "eval"]
    assert ev and set(ev[-1]["metrics"]) == {"l1", "psnr", "ssim"}
    assert all(np.isfinite(v) for v in ev[-1]["metrics"].values())
    trained = [r for r in rows if r["kind"] == "train"]
    assert {"G/gan", "G/feat", "D/fake", "D/real"} <= set(trained[-1]["losses"])
    # The model file is the EMA generator, loadable without the config.
    pipe = gancanvas.load(str(out / "model.safetensors"))
    assert pipe.arch == arch and pipe.task == "synthesize"
    ema = load_file(str(out / "checkpoints/step-00000002/G_ema.safetensors"))
    state = pipe.model.state_dict()
    assert state.keys() == ema.keys()
    assert all(torch.equal(state[k].cpu(), v) for k, v in ema.items())
    from gancanvas.data.synthetic import render_scene

    scene = render_scene(7, 32, 32)
    style = scene.image if arch == "sean" else None
    img = pipe.synthesize(scene.labels, style=style)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


def test_spade_losses_follow_the_official_rules(tmp_path, vgg_file):
    t = _trainer(tmp_path, "spade", "loss.no_vgg=false", f"loss.vgg19_weights={vgg_file}",
                 "loss.vgg_channel_divisor=16")
    G, D = t.nets["G"].eval(), t.nets["D"].eval()  # eval: no power iterations, fixed BN statistics
    batch = train_batch(t)
    gt = batch["image"]
    assert gt.shape[-2:] == (32, 32) and torch.equal(batch["mask"], torch.ones_like(gt[:, :1]))
    with torch.no_grad():
        g_loss, g_logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
        d_loss, d_logs = t.recipe.loss(Phase("D", "D", new_batch=False), t.nets, batch)
        sem = G.semantic_input(batch["labels"], batch["instances"])
        assert sem.shape[1] == 11  # one-hot (10) + instance edges
        fake = G(sem)
        pf, pr = D(torch.cat([sem, fake], 1)), D(torch.cat([sem, gt], 1))
        # Hinge on the last output of each scale, averaged over the 2 scales; D without a 1/2.
        gan = sum(-s[-1].mean() for s in pf) / 2
        d_fake = sum(F.relu(1 + s[-1]).mean() for s in pf) / 2
        d_real = sum(F.relu(1 - s[-1]).mean() for s in pr) / 2
        # Feature matching: every layer but the prediction, 1 / num_D each (no 4 / (n + 1) factor).
        feat = sum(F.l1_loss(a, b) / 2 for sf, sr in zip(pf, pr) for a, b in zip(sf[:-1], sr[:-1]))
        vgg = VGGPerceptualLoss(weights=vgg_file, channel_divisor=16)(fake, gt)
    torch.testing.assert_close(g_logs["gan"], gan)
    torch.testing.assert_close(g_logs["feat"], feat)
    torch.testing.assert_close(g_logs["vgg"], vgg)
    torch.testing.assert_close(g_loss, gan + 10 * feat + 10 * vgg)
    torch.testing.assert_close(d_logs["fake"], d_fake)
    torch.testing.assert_close(d_logs["real"], d_real)
    torch.testing.assert_close(d_loss, d_fake + d_real)
    assert set(g_logs) == {"gan", "feat", "vgg", "total"} and set(d_logs) == {"total", "fake", "real"}
    # Validation scores the synthesis from the label map.
    with torch.no_grad():
        torch.testing.assert_close(t.recipe.complete(G, batch), fake)
    t.close()


def test_spade_vae_adds_the_kl_term_and_validates_on_mu(tmp_path):
    t = _trainer(tmp_path, "spade", *VAE)
    G, D = t.nets["G"].eval(), t.nets["D"].eval()
    batch = train_batch(t)
    gt = batch["image"]
    sem = G.semantic_input(batch["labels"], batch["instances"])
    with torch.no_grad():
        torch.manual_seed(3)
        _, logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
        mu, logvar = G.encode(gt)
        torch.manual_seed(3)
        fake = G(sem, image=gt)  # z sampled from the encoding, with the same draw
        pf, pr = D(torch.cat([sem, fake], 1)), D(torch.cat([sem, gt], 1))
    assert set(logs) == {"gan", "feat", "kld", "total"}
    torch.testing.assert_close(logs["kld"], 0.05 * kld_loss(mu, logvar))
    torch.testing.assert_close(logs["gan"], sum(-s[-1].mean() for s in pf) / 2)
    torch.testing.assert_close(logs["feat"], sum(F.l1_loss(a, b) / 2 for sf, sr in zip(pf, pr)
                                                 for a, b in zip(sf[:-1], sr[:-1])))
    torch.testing.assert_close(logs["total"], logs["gan"] + 10 * logs["feat"] + logs["kld"])
    assert float(logs["kld"]) > 0
    with torch.no_grad():
        torch.testing.assert_close(t.recipe.complete(G, batch), G(sem, z=mu))  # deterministic: z = mu
    # The KL term trains the encoder: its weights change in one step.
    G.train()
    D.train()
    before = {k: v.clone() for k, v in G.encoder.state_dict().items()}
    t.train_step([batch])
    assert any(not torch.equal(v, before[k]) for k, v in G.encoder.state_dict().items())
    t.close()
    # SEAN has no KL term.
    with pytest.raises(GancanvasError) as err:
        _trainer(tmp_path / "sean", "sean", "loss.lambda_kld=0.05")
    assert "lambda_kld" in one_line(err)


@pytest.mark.parametrize("arch, extra", [("spade", []), ("spade", VAE), ("sean", [])])
def test_d_phase_regenerates_the_fake_with_the_updated_g(tmp_path, arch, extra):
    t = _trainer(tmp_path, arch, *extra)
    assert [(p.name, p.net, p.new_batch) for p in t.phases] == [("G", "G", True), ("D", "D", False)]
    G, D = t.nets["G"], t.nets["D"]
    batch = train_batch(t)
    probe = G.conv_img.weight
    calls, d_inputs = [], []
    g_forward, d_forward = G.forward, D.forward

    def g_spy(*args, **kwargs):
        out = g_forward(*args, **kwargs)
        calls.append({"grad": torch.is_grad_enabled(), "weight": probe.detach().clone(),
                      "out": out.detach().clone(), "image": kwargs.get("image") is not None})
        return out

    def d_spy(x):
        d_inputs.append(x.detach().clone())
        return d_forward(x)

    G.forward, D.forward = g_spy, d_spy
    start = probe.detach().clone()
    t.train_step([batch])
    assert [c["grad"] for c in calls] == [True, False]  # G phase, then D phase under no_grad
    assert torch.equal(calls[0]["weight"], start)
    assert not torch.equal(calls[1]["weight"], start)  # the D phase's G has been updated...
    assert torch.equal(calls[1]["weight"], probe.detach())
    # ...and D scores that new fake, fake and real in one call.
    assert len(d_inputs) == 2 and d_inputs[1].shape[0] == 2 * batch["image"].shape[0]
    torch.testing.assert_close(d_inputs[1][:2, -3:], calls[1]["out"])
    torch.testing.assert_close(d_inputs[1][2:, -3:], batch["image"])
    # The style image goes in wherever the model has an image encoder.
    assert all(c["image"] == (arch == "sean" or bool(extra)) for c in calls)
    t.close()


@pytest.mark.parametrize("arch", ["spade", "sean"])
def test_ttur_optimizers(tmp_path, arch):
    t = _trainer(tmp_path, arch, "train.betas=[0,0.9]")
    for key, lr in (("G", 1e-4), ("D", 4e-4)):
        group = t.opts[key].param_groups[0]
        assert group["lr"] == pytest.approx(lr)
        assert group["betas"] == (0.0, 0.9) and all(type(b) is float for b in group["betas"])
    t.train_step([train_batch(t)])  # an int beta would raise a TypeError in Adam here
    t.close()
    for name in ("scenes-256.yaml", "scenes-128-small.yaml"):
        c = load_config(ROOT / arch / name, ["loss.no_vgg=true"])
        assert (c.train.lr_g, c.train.lr_d, list(c.train.betas)) == (1e-4, 4e-4, [0.0, 0.9])
        assert c.train.recipe == arch and c.loss["gan_mode"] == "hinge"
        assert c.loss["lambda_feat"] == 10.0 and c.loss["lambda_vgg"] == 10.0
        assert c.model.options["class_names"][:2] == ["sky", "cloud"]
    c = load_config(ROOT / arch / "scenes-256.yaml")
    assert c.model.options["ngf"] == 64 and c.data.size == 256 and not c.loss["no_vgg"]
    small = load_config(ROOT / arch / "scenes-128-small.yaml")
    # The shipped models' schedules (the SPADE run was shortened to fit the CPU budget).
    steps = {"spade": (2000, 1000), "sean": (3000, 1500)}[arch]
    assert small.loss["no_vgg"] and (small.train.total_steps, small.loss["niter_decay"]) == steps


def test_linear_learning_rate_decay_keeps_the_ttur_ratio(tmp_path):
    t = _trainer(tmp_path, "spade", "train.total_steps=10", "loss.niter_decay=4")
    factors = [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]  # official: lr0, then lr -= lr0 / niter_decay
    for step in [9, 0, 8, 3, 7, 6, 1, 2, 5, 4]:  # depends on the step alone
        t.recipe.on_step(step, t.opts)
        g, d = t.opts["G"].param_groups[0]["lr"], t.opts["D"].param_groups[0]["lr"]
        assert g == pytest.approx(1e-4 * factors[step]) and d == pytest.approx(4e-4 * factors[step])
    t.close()


def test_sean_reconstruction_learns_against_a_control(tmp_path):
    def l1_after(name, lr):
        t = _trainer(tmp_path / name, "sean", f"train.lr_g={lr}", "train.lr_d=4e-4")
        batch = train_batch(t)
        G = t.nets["G"]

        def l1():
            with torch.no_grad():
                out = G(G.semantic_input(batch["labels"]), image=batch["image"], noise=0)
            return float((out - batch["image"]).abs().mean())

        before = l1()
        for _ in range(12):
            t.train_step([batch])
        t.close()
        return before, l1()

    before, trained = l1_after("trained", 2e-3)
    c_before, control = l1_after("control", 1e-9)
    assert before == c_before  # same seed, same start
    assert trained < 0.75 * control, (before, trained, control)  # measured: 0.26 vs 0.46


@pytest.mark.parametrize("arch, extra", [("sean", []), ("spade", VAE)])
def test_exact_resume(tmp_path, arch, extra):
    over = [*extra, *QUIET, "train.total_steps=4", "loss.niter_decay=3", "train.keep_checkpoints=5"]
    assert_exact_resume(TINY[arch], tmp_path, _recipe_class(arch), over)


def _recipe_class(arch):
    from gancanvas.train.recipes import get_recipe

    return get_recipe(arch)


def test_missing_vgg_weights_is_one_line_at_startup(tmp_path, monkeypatch):
    monkeypatch.delenv("GANCANVAS_VGG19_WEIGHTS", raising=False)
    for arch in ("spade", "sean"):
        with pytest.raises(MissingWeightsError) as err:
            _trainer(tmp_path / arch, arch, "loss.no_vgg=false")
        msg = one_line(err)
        assert "loss.vgg19_weights" in msg and "GANCANVAS_VGG19_WEIGHTS" in msg and "loss.no_vgg=true" in msg
        assert not (tmp_path / arch / "checkpoints").exists()
    # Through the CLI: exit code 2 and the message, no traceback.
    code = main(["train", str(TINY["sean"]), "--run-dir", str(tmp_path / "cli"), "loss.no_vgg=false"])
    assert code == 2


@pytest.mark.parametrize("arch, override, key", [
    ("spade", "data.size=48", "multiples of 32"),
    ("sean", "loss.aspect=1.5", "multiples of 32"),
    ("spade", "model.options.use_vae=true", "crop_size"),
    ("spade", "loss.gan_mode=ls", "loss.gan_mode"),
    ("sean", "loss.niter_decay=5", "loss.niter_decay"),
    ("spade", "loss.lambda_feet=1", "lambda_feet"),
    ("sean", "data.load_size=512", "data.load_size"),
])
def test_config_errors_are_one_line(tmp_path, arch, override, key):
    with pytest.raises(GancanvasError) as err:
        _trainer(tmp_path, arch, override)
    assert key in one_line(err)


def test_spade_recipe_is_the_registered_default():
    from gancanvas import registry

    assert registry.get_spec("spade").recipe == "spade" and registry.get_spec("sean").recipe == "sean"
    assert issubclass(_recipe_class("sean"), SPADERecipe)
