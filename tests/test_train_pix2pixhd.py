"""The pix2pixHD recipe on the real model at ngf 4, 32x64 scenes: the official loss rules, an overfit
check against a control, the VGG loss from a tiny random VGG19 file, the local-enhancer stage from a
global run (`--init RUN/last`, the global part fixed, then trained), the linear learning-rate decay,
exact resume, the label datasets' determinism and one-line config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from gancanvas.errors import ConfigError, GancanvasError, InputError, MissingWeightsError
from gancanvas.losses.perceptual import VGGPerceptualLoss
from gancanvas.train import engine, run
from gancanvas.train.config import load_config
from gancanvas.train.recipes import Phase
from gancanvas.train.recipes.pix2pixhd import Pix2PixHDRecipe
from train_helpers import (
    assert_exact_resume,
    learning_rates,
    metrics_lines,
    one_line,
    tiny_vgg19_file,
    train_batch,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs/pix2pixhd"
TINY = CONFIGS / "tiny-test.yaml"
# The local-enhancer stage of TINY: its global part has ngf 2 * 2 = 4, the width of TINY's generator.
LOCAL = ["model.options.n_local_enhancers=1", "model.options.ngf=2"]


def _trainer(tmp_path, *overrides, init=None) -> engine.Trainer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return engine.Trainer(load_config(TINY, list(overrides)), tmp_path, engine.Dist(), init=init)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    return tiny_vgg19_file(tmp_path_factory)


@pytest.fixture(scope="module")
def global_run(tmp_path_factory) -> Path:
    """A finished 2-step run of TINY (stage 1)."""
    return run(TINY, run_dir=tmp_path_factory.mktemp("global") / "run")


def test_losses_follow_the_official_rules(tmp_path, vgg_file):
    t = _trainer(tmp_path, "loss.no_vgg=false", f"loss.vgg19_weights={vgg_file}",
                 "loss.vgg_channel_divisor=16")
    G, D = t.nets["G"], t.nets["D"]
    batch = train_batch(t)
    gt = batch["image"]
    assert batch["labels"].dtype == torch.int64 and batch["instances"].dtype == torch.int64
    assert torch.equal(batch["mask"], torch.ones_like(gt[:, :1]))
    assert gt.shape[-2:] == (32, 64)  # data.size x data.size * aspect
    with torch.no_grad():
        g_loss, g_logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
        d_loss, d_logs = t.recipe.loss(Phase("D", "D", new_batch=False), t.nets, batch)
        fake = G(batch["labels"], batch["instances"])
        sem = G.semantic_input(batch["labels"], batch["instances"])
        assert sem.shape[1] == 11  # one-hot (10) + instance edges
        pf, pr = D(torch.cat([sem, fake], 1)), D(torch.cat([sem, gt], 1))
        # LSGAN on the last output of each scale, summed over the 2 scales.
        gan = sum(((s[-1] - 1) ** 2).mean() for s in pf)
        d_want = 0.5 * (sum((s[-1] ** 2).mean() for s in pf) + sum(((s[-1] - 1) ** 2).mean() for s in pr))
        # Feature matching: every layer but the prediction, 1/num_D * 4/(n_layers_D + 1) each.
        feat = sum(F.l1_loss(a, b) * (1 / 2) * (4 / 3)
                   for sf, sr in zip(pf, pr) for a, b in zip(sf[:-1], sr[:-1]))
        vgg = VGGPerceptualLoss(weights=vgg_file, channel_divisor=16)(fake, gt)
    torch.testing.assert_close(g_logs["gan"], gan)
    torch.testing.assert_close(g_logs["feat"], feat)
    torch.testing.assert_close(g_logs["vgg"], vgg)
    torch.testing.assert_close(g_loss, gan + 10 * feat + 10 * vgg)
    torch.testing.assert_close(d_loss, d_want)
    assert set(g_logs) == {"gan", "feat", "vgg", "total"} and set(d_logs) == {"total", "fake", "real"}
    # The vanilla GAN: BCE on logits.
    t.recipe.loss_cfg.gan_mode = "vanilla"
    with torch.no_grad():
        _, logs = t.recipe.loss(Phase("G", "G"), t.nets, batch)
    bce = sum(F.binary_cross_entropy_with_logits(s[-1], torch.ones_like(s[-1])) for s in pf)
    torch.testing.assert_close(logs["gan"], bce)
    t.close()


def test_step_order_and_the_cached_fake(tmp_path):
    t = _trainer(tmp_path)
    assert [(p.name, p.new_batch) for p in t.phases] == [("G", True), ("D", False)]
    assert t.draws_per_step == 1
    batch = train_batch(t)
    with torch.no_grad():
        before = t.nets["G"](batch["labels"], batch["instances"])
    seen = {}
    D = t.nets["D"]
    orig = D.forward

    def spy(x):
        seen.setdefault("d_inputs", []).append(x.detach().clone())
        return orig(x)

    D.forward = spy
    t.train_step([batch])
    # The D phase scored the fake made before the G update, as the official single forward does.
    d_in = seen["d_inputs"][-1]
    torch.testing.assert_close(d_in[:2, -3:], before)
    t.close()


def test_overfits_a_fixed_batch_against_a_control(tmp_path):
    def l1_after(name, lr):
        t = _trainer(tmp_path / name, f"train.lr_g={lr}", "train.lr_d=0.0002")
        batch = train_batch(t)

        def l1():
            with torch.no_grad():
                return float((t.nets["G"](batch["labels"], batch["instances"]) - batch["image"]).abs().mean())

        before = l1()
        for _ in range(15):
            t.train_step([batch])
        t.close()
        return before, l1()

    before, trained = l1_after("trained", 0.004)
    c_before, control = l1_after("control", 1e-9)
    assert before == c_before  # same seed, same start
    assert trained < 0.75 * control, (before, trained, control)
    assert abs(control - before) < 0.02 * before


def test_missing_vgg_weights_is_one_line_at_startup(tmp_path, monkeypatch, vgg_file):
    monkeypatch.delenv("GANCANVAS_VGG19_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        _trainer(tmp_path / "a", "loss.no_vgg=false")
    msg = one_line(err)
    assert "loss.vgg19_weights" in msg and "GANCANVAS_VGG19_WEIGHTS" in msg and "loss.no_vgg" in msg
    assert not (tmp_path / "a" / "checkpoints").exists()
    # The environment variable is the fallback.
    monkeypatch.setenv("GANCANVAS_VGG19_WEIGHTS", str(vgg_file))
    t = _trainer(tmp_path / "b", "loss.no_vgg=false", "loss.vgg_channel_divisor=16")
    assert t.recipe.vgg is not None and t.recipe.vgg.vgg.source == str(vgg_file)
    t.close()


def test_local_enhancer_stage_from_a_global_run(tmp_path, global_run):
    g_global = load_file(str(global_run / "checkpoints/step-00000002/G.safetensors"))
    t = _trainer(tmp_path / "local", *LOCAL, "loss.niter_fix_global=2", "train.total_steps=4",
                 init=global_run / "last")
    G = t.nets["G"]
    state = G.state_dict()
    global_keys = [k for k in state if k.startswith("G.model.")]
    assert global_keys and all(torch.equal(state[k], g_global[k]) for k in global_keys)
    assert "G.model.13.weight" not in state  # the global output layer is not part of the enhancer model
    assert all(torch.equal(t.ema.state_dict()[k], g_global[k]) for k in global_keys)

    def snapshot():
        return {k: v.clone() for k, v in G.state_dict().items()}

    start = snapshot()
    batches = [train_batch(t, 2 * i) for i in range(4)]
    t.train_step([batches[0]])
    t.train_step([batches[1]])
    fixed = snapshot()
    assert all(torch.equal(fixed[k], start[k]) for k in global_keys)  # the global part is fixed...
    assert any(not torch.equal(fixed[k], start[k]) for k in fixed if k.startswith("G.model1_"))  # ...not G2
    t.train_step([batches[2]])
    joint = snapshot()
    assert any(not torch.equal(joint[k], fixed[k]) for k in global_keys)  # then trained jointly
    # A fresh Adam state at the switch (the official optimizer rebuild): one step counted since.
    opt = t.opts["G"]
    enh = opt.param_groups[0]["params"][0]
    assert float(opt.state[enh]["step"]) == 1.0
    assert len(opt.param_groups[1]["params"]) == len(global_keys)
    t.close()

    # Through run(): `--init RUN/last`, and the stage without a local enhancer is refused.
    out = run(TINY, run_dir=tmp_path / "stage2", init=global_run / "last",
              overrides=[*LOCAL, "loss.niter_fix_global=1", "train.eval_every=0", "train.image_every=0"])
    assert "step-00000002" in metrics_lines(out)[0]["init"]
    with pytest.raises(ConfigError) as err:
        _trainer(tmp_path / "bad", "loss.niter_fix_global=1")
    assert "n_local_enhancers" in one_line(err)


def test_linear_learning_rate_decay(tmp_path):
    t = _trainer(tmp_path, "train.total_steps=10", "loss.niter_decay=4", "train.lr_d=1e-3")
    factors = [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]  # official: lr0, then lr -= lr0 / niter_decay
    for (g, d), f in zip(learning_rates(t, range(10)), factors, strict=True):
        assert g == pytest.approx(2e-4 * f) and d == pytest.approx(1e-3 * f)
    t.close()
    # The staged enhancer stage: the global group at 0 until niter_fix_global, decayed with the rest after.
    t = _trainer(tmp_path / "b", *LOCAL, "train.total_steps=6", "loss.niter_decay=2",
                 "loss.niter_fix_global=2")
    seen = []
    for step in range(6):
        t.recipe.on_step(step, t.opts)
        seen.append([g["lr"] for g in t.opts["G"].param_groups])
    want = [[2e-4, 0], [2e-4, 0], [2e-4, 2e-4], [2e-4, 2e-4], [2e-4, 2e-4], [1e-4, 1e-4]]
    assert sum(seen, []) == pytest.approx(sum(want, []))
    t.close()


def test_exact_resume_across_the_stage_switch_and_decay(tmp_path, global_run):
    over = [*LOCAL, "train.total_steps=4", "loss.niter_fix_global=2", "loss.niter_decay=3",
            "train.eval_every=0", "train.image_every=0", "train.keep_checkpoints=5"]
    # Stopped by a signal after step 2: the resumed session starts with the switch to joint training.
    assert_exact_resume(TINY, tmp_path, Pix2PixHDRecipe, over, init=global_run / "last")


def test_scene_data_is_a_function_of_the_key(tmp_path):
    from gancanvas.data.label_datasets import LabelTrainSet, SceneLabelSource
    from gancanvas.data.synthetic import render_scene, scene_seed

    cfg = load_config(TINY)
    t1 = _trainer(tmp_path / "a")
    ds = t1.train_set
    a = [ds[n] for n in (0, 5, 17, 40)]
    b = [LabelTrainSet(SceneLabelSource([scene_seed(0, i) for i in range(16)], 32, 64), 32, 64,
                       cfg.train.seed)[n] for n in (40, 17, 5, 0)][::-1]
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == {"labels", "instances", "image", "mask", "key"}
        assert all(torch.equal(x[k], y[k]) for k in x)
    # Each sample is a scene (possibly flipped); the label map and instances agree with it.
    flips = 0
    for n in range(8):
        s = ds[n]
        idx = int(ds.permutation(0)[n])
        scene = render_scene(scene_seed(0, idx), 32, 64)
        lab = torch.from_numpy(scene.labels)
        flipped = not torch.equal(s["labels"], lab)
        flips += flipped
        assert torch.equal(s["labels"], lab.flip(-1) if flipped else lab)
        inst = torch.from_numpy(scene.instances)
        assert torch.equal(s["instances"], inst.flip(-1) if flipped else inst)
    assert 0 < flips < 8
    # Validation: fixed scenes after the training ones, never flipped.
    v = t1.val_set[0]
    assert torch.equal(v["labels"], torch.from_numpy(render_scene(scene_seed(0, 16), 32, 64).labels))
    t1.close()


def _official_folder(root: Path, n: int, h: int, w: int) -> Path:
    """n scenes written in the official pix2pixHD layout (train_label/, train_img/, train_inst/)."""
    from gancanvas.data.synthetic import write_scenes

    src = write_scenes(root / "src", size=h, width=w, count=n, color_labels=False).parent
    for a, b in (("labels", "train_label"), ("images", "train_img"), ("instances", "train_inst")):
        (src / a).rename(root / b)
    return root


def test_official_layout_folder_crops_and_flips(tmp_path):
    from gancanvas.data.label_datasets import fit_crop
    from gancanvas.data.synthetic import render_scene, scene_seed

    root = _official_folder(tmp_path / "data", 6, 48, 80)
    over = ["data.kind=folder", f"data.root={root}", "data.val_count=2", "data.size=16", "loss.aspect=1.5"]
    t = _trainer(tmp_path / "run", *over)
    ds = t.train_set
    assert len(ds) == 4 and len(t.val_set) == 2
    s = ds[3]
    assert s["image"].shape == (3, 16, 24) and s["labels"].shape == (16, 24)
    assert set(s["labels"].unique().tolist()) <= set(range(10))
    assert torch.equal(ds[3]["image"], s["image"])  # the same key, the same crop and flip
    crops = {tuple(ds[n]["image"][:, 0, 0].tolist()) for n in range(4, 12)}
    assert len(crops) > 1
    # Nearest-neighbour id maps: every id of the crop exists in the source scene.
    scene = render_scene(scene_seed(0, 0), 48, 80)
    c = fit_crop({"labels": scene.labels, "instances": scene.instances, "image": scene.image}, 16, 24)
    assert set(np.unique(c["instances"])) <= set(np.unique(scene.instances))
    t.close()
    # Ids out of range: one line at startup naming the file.
    with pytest.raises(InputError) as err:
        _trainer(tmp_path / "run2", *over, "model.options.label_nc=5")
    assert "train_label" in one_line(err) and "label_nc 5" in str(err.value)


@pytest.mark.parametrize("override, key", [
    ("loss.gan_mode=hinge", "loss.gan_mode"),
    ("loss.niter_decay=5", "loss.niter_decay"),
    ("loss.aspect=0", "loss.aspect"),
    ("loss.niter_fix_global=-1", "loss.niter_fix_global"),
    ("loss.lambda_feet=1", "lambda_feet"),
    ("data.load_size=512", "data.load_size"),
])
def test_config_errors_are_one_line(tmp_path, override, key):
    with pytest.raises(GancanvasError) as err:
        _trainer(tmp_path, override)
    assert key in one_line(err)


def test_configs_load():
    c512 = load_config(CONFIGS / "scenes-512.yaml")
    c1024 = load_config(CONFIGS / "scenes-1024.yaml")
    assert c512.train.recipe == c1024.train.recipe == "pix2pixhd"
    assert c512.model.options["n_local_enhancers"] == 0 and c1024.model.options["n_local_enhancers"] == 1
    # The stage-2 global part has stage 1's width, so --init fits.
    assert c1024.model.options["ngf"] * 2 == c512.model.options["ngf"]
    assert c512.model.options["label_nc"] == 10 and c1024.loss["niter_fix_global"] > 0
    assert (c512.train.lr_g, c512.train.lr_d, list(c512.train.betas)) == (2e-4, 2e-4, [0.5, 0.999])


def test_instance_features_train_the_encoder_with_g(tmp_path):
    t = _trainer(tmp_path, "model.options.instance_feat=true", "model.options.nef=4",
                 "model.options.n_downsample_E=2")
    G = t.nets["G"]
    assert t.nets["D"].scale0_layer0[0].in_channels == 11 + 3  # D never sees the style features
    opt_params = {id(p) for g in t.opts["G"].param_groups for p in g["params"]}
    assert all(id(p) in opt_params for p in G.E.parameters())
    before = {k: v.clone() for k, v in G.E.state_dict().items()}
    t.train_step([train_batch(t)])
    assert any(not torch.equal(v, before[k]) for k, v in G.E.state_dict().items())
    t.close()
