"""The training engine with a toy inpainting recipe: exact resume, DDP, signals, config errors,
logs, --init. Everything is tiny (32 px, a few hundred parameters, a few steps) and on CPU.

The toy family is registered when this module is imported; subprocess runs import it too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from gancanvas import registry
from gancanvas.errors import CheckpointError, ConfigError
from gancanvas.losses.gan import hinge_d_loss, hinge_g_loss
from gancanvas.train import run
from gancanvas.train.recipes import RECIPES, Phase, Recipe, register_recipe
from train_helpers import assert_same_state, checkpoint_state, metrics_lines

TESTS = Path(__file__).resolve().parent
PYTHON = sys.executable


# ----------------------------------------------------------------------------- the toy family
@dataclass
class ToyConfig:
    width: int = 4


class ToyGenerator(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.body = nn.Sequential(nn.Conv2d(4, cfg.width, 3, padding=1), nn.ELU(),
                                  nn.Conv2d(cfg.width, 3, 3, padding=1))

    def forward(self, image, mask):
        return torch.tanh(self.body(torch.cat([image * (1 - mask), mask], 1)))


class ToyCritic(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, 1, 4, 2, 1))

    def forward(self, x):
        return self.body(x).flatten(1)


for _arch in ("toy_inpaint", "toy_other"):
    registry.register_model(_arch, task="inpaint", config=ToyConfig,
                            discriminator=lambda cfg: ToyCritic(cfg.width), recipe="toy")(ToyGenerator)


@dataclass
class ToyLoss:
    l1: float = 1.0
    noise: float = 0.05  # instance noise on the critic input: random draws inside the loss
    sleep: float = 0.0  # seconds per G phase, to make runs slow enough to interrupt


class ToyRecipe(Recipe):
    name = "toy"
    Loss = ToyLoss

    def phases(self):
        return [Phase("D", "D"), Phase("G", "G")]

    def _d_in(self, x, mask):
        return torch.cat([x + self.loss_cfg.noise * torch.randn_like(x), mask], 1)

    def loss(self, phase, nets, batch):
        gt, mask = batch["image"], batch["mask"]
        if phase.net == "D":
            with torch.no_grad():
                fake = nets["G"](gt, mask) * mask + gt * (1 - mask)
            pos, neg = nets["D"](torch.cat([self._d_in(gt, mask), self._d_in(fake, mask)])).chunk(2)
            d = hinge_d_loss(pos, neg)
            return d, {"hinge": d}
        if self.loss_cfg.sleep:
            time.sleep(self.loss_cfg.sleep)
        out = nets["G"](gt, mask)
        adv = hinge_g_loss(nets["D"](self._d_in(out * mask + gt * (1 - mask), mask)))
        l1 = F.l1_loss(out, gt)
        return adv + self.loss_cfg.l1 * l1, {"adv": adv, "l1": l1}

    def complete(self, G, batch):
        return G(batch["image"], batch["mask"]) * batch["mask"] + batch["image"] * (1 - batch["mask"])


register_recipe(ToyRecipe)


TOY_YAML = """\
model:
  arch: toy_inpaint
  options: {width: 4}
data: {kind: scenes, size: 32, count: 12, val_count: 4, mask: free-form+box}
train:
  batch_size: 2
  total_steps: 4
  lr_g: 0.001
  lr_d: 0.001
  workers: 0
  log_every: 1
  image_every: 2
  ckpt_every: 2
  eval_every: 2
  keep_checkpoints: 10
  seed: 3
eval: {batch_size: 4, images: 2}
"""


@pytest.fixture
def toy_config(tmp_path) -> Path:
    p = tmp_path / "toy.yaml"
    p.write_text(TOY_YAML)
    return p


# ----------------------------------------------------------------------------- (1) exact resume
@pytest.mark.parametrize("workers, amp", [(0, "none"), (2, "none"), (0, "fp16")])
def test_exact_resume(toy_config, tmp_path, workers, amp):
    w = [f"train.workers={workers}", f"train.amp={amp}"]
    straight = run(toy_config, run_dir=tmp_path / "straight", overrides=w)
    half = run(toy_config, run_dir=tmp_path / "split", overrides=[*w, "train.total_steps=2"])
    assert (half / "last").read_text().strip() == "step-00000002"
    run(toy_config, run_dir=half, resume=True, overrides=w)
    assert (half / "last").read_text().strip() == "step-00000004"
    a = checkpoint_state(straight / "checkpoints/step-00000004")
    b = checkpoint_state(half / "checkpoints/step-00000004")
    assert any(k.startswith("G_ema.") for k in a) and any(k.startswith("opt.D.state") for k in a)
    assert any(k.startswith("scaler.G.") for k in a) == (amp == "fp16")
    assert_same_state(a, b)
    # ...and training did something: step 4 differs from step 2 in G, D and the EMA.
    mid = checkpoint_state(straight / "checkpoints/step-00000002")
    for net in ("G.", "D.", "G_ema."):
        assert any(not torch.equal(a[k], mid[k]) for k in a if k.startswith(net))
    # The log of the resumed run reads as one run: each step logged once.
    steps = [r["step"] for r in metrics_lines(half) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]


def test_workers_do_not_change_the_data(tmp_path):
    from torch.utils.data import DataLoader

    from gancanvas.data.datasets import InpaintTrainSet, SampleKeys, SceneImages

    ds = InpaintTrainSet(SceneImages(list(range(5)), 32), 32, "free-form+box", seed=1, sketch=True)
    keys = list(zip(range(12), SampleKeys(0, 4, rank=1, world=2)))
    assert [k for _, k in keys] == [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]

    def first(workers, start):
        loader = DataLoader(ds, batch_size=2, sampler=SampleKeys(start, 4, 1, 2), num_workers=workers)
        it = iter(loader)
        return [next(it) for _ in range(3)]

    a, b = first(0, 1), first(2, 1)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k])
    c = first(0, 0)  # starting one draw earlier: the same samples, one batch later
    for x, y in zip(a[:2], c[1:]):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    assert set(a[0]) == {"image", "mask", "sketch", "key"}
    assert (a[0]["sketch"] * (1 - a[0]["mask"])).sum() == 0  # strokes only inside the hole


def test_folder_dataset_skips_bad_files(tmp_path, capsys):
    from gancanvas.data.datasets import InpaintTrainSet, InpaintValSet, build_sources
    from gancanvas.data.io import write_image
    from gancanvas.train.config import DataSection

    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(7):  # assorted sizes: scaled to the short side, then cropped
        write_image(folder / f"{i}.png", rng.integers(0, 256, (40 + 5 * i, 60, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("hello")
    data = DataSection(kind="folder", root=str(folder), size=32, val_count=2)
    train_src, val_src = build_sources(data)
    assert len(train_src) == 6 and len(val_src) == 2  # broken.png is found only when read
    assert "notes.txt" in capsys.readouterr().err
    ds = InpaintTrainSet(train_src, 32, "box", seed=0)
    for n in range(3 * len(ds)):
        item = ds[n]
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    err = capsys.readouterr().err
    if "broken.png" in {p.name for p in train_src.paths}:
        assert err.count("broken.png") == 1  # reported once, then skipped
    # A list file (relative paths) gives the same images.
    listing = tmp_path / "list.txt"
    listing.write_text("# training images\n" + "".join(f"imgs/{i}.png\n" for i in range(7)))
    train2, _ = build_sources(DataSection(kind="folder", root=str(listing), size=32, val_count=2))
    assert len(train2) == 5
    val = InpaintValSet(val_src, np.ones((2, 32, 32), np.float32), 32)
    assert len(val) == len([p for p in val_src.paths if p.name != "broken.png"])


def test_load_size_crops_at_full_scale():
    """data.load_size: scenes rendered at load_size, size x size windows of them (not shrunk)."""
    from gancanvas.data.datasets import InpaintTrainSet, InpaintValSet, build_sources
    from gancanvas.data.io import image_to_tensor
    from gancanvas.data.synthetic import render_scene, scene_seed
    from gancanvas.train.config import DataSection

    train_src, val_src = build_sources(DataSection(size=32, load_size=64, count=3, val_count=2))
    ds = InpaintTrainSet(train_src, 32, "box", seed=0, flip=False, load_size=64)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32)
    full = image_to_tensor(render_scene(train_src.seeds[int(ds.permutation(0)[0])], 64, 64).image)[0]
    windows = full.unfold(1, 32, 1).unfold(2, 32, 1)  # every 32x32 window of the 64 px render
    hits = (windows - item["image"][:, None, None]).abs().amax(dim=(0, 3, 4)) == 0
    assert hits.any()  # the sample is one window of the full-scale scene, pixel for pixel
    shrunk = InpaintTrainSet(train_src, 32, "box", seed=0, flip=False)[0]["image"]  # load_size 0
    assert not torch.equal(shrunk, item["image"])
    val = InpaintValSet(val_src, np.ones((2, 32, 32), np.float32), 32, load_size=64)
    centre = render_scene(scene_seed(0, 3), 64, 64).image[16:48, 16:48]
    assert np.array_equal(val.pixels[0], centre)


def test_load_size_smaller_than_the_crop_is_a_config_error(toy_config, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(toy_config, run_dir=tmp_path / "x", overrides=["data.load_size=8"])
    assert "data.load_size" in str(err.value) and "at least data.size" in str(err.value)


# ----------------------------------------------------------------------------- (2) DDP on CPU
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: str, run_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from gancanvas.train import engine
    from gancanvas.train.config import load_config

    cfg = load_config(config, ["train.total_steps=3", "train.batch_size=4"])
    d = engine.init_distributed("cpu")
    try:
        trainer = engine.Trainer(cfg, Path(run_dir), d)
        init = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in trainer.nets.items()}
        trainer.train()
        final = {k: m.state_dict() for k, m in trainer.nets.items()}
        torch.save({"init": init, "final": final}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_gloo(toy_config, tmp_path):
    import torch.multiprocessing as mp

    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(toy_config), str(run_dir), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for net in ("G", "D"):
        for k, v in r0["final"][net].items():
            assert torch.equal(v, r1["final"][net][k]), (net, k)
        assert any(not torch.equal(v, r0["init"][net][k]) for k, v in r0["final"][net].items()), net
    assert (run_dir / "last").read_text().strip() == "step-00000003"
    lines = metrics_lines(run_dir)
    assert lines[0]["world_size"] == 2 and any(r["kind"] == "eval" for r in lines)


# ----------------------------------------------------------------------------- (3) interrupts
def _spawn_training(config: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import test_train_engine  # registers the toy family
        from gancanvas.train import run
        run({str(config)!r}, run_dir={str(run_dir)!r}, overrides={list(overrides)!r})
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([PYTHON, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for the training subprocess")


def _train_steps(run_dir: Path) -> int:
    try:
        return sum(1 for r in metrics_lines(run_dir) if r["kind"] == "train")
    except (OSError, ValueError):
        return 0


SLOW = ["train.total_steps=30", "loss.sleep=0.05", "train.eval_every=0", "train.image_every=0"]


def test_sigterm_checkpoints_and_resume(toy_config, tmp_path):
    run_dir = tmp_path / "term"
    proc = _spawn_training(toy_config, run_dir, *SLOW, "train.ckpt_every=0")
    _wait_for(lambda: _train_steps(run_dir) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped at step" in err
    name = (run_dir / "last").read_text().strip()
    step = int(name.split("-")[1])
    assert 3 <= step < 30
    info = json.loads((run_dir / "checkpoints" / name / "state.json").read_text())
    assert info["step"] == step
    run(toy_config, run_dir=run_dir, resume=True, overrides=[*SLOW[:1], "train.eval_every=0"])
    assert (run_dir / "last").read_text().strip() == "step-00000030"
    assert [r["step"] for r in metrics_lines(run_dir) if r["kind"] == "train"] == list(range(1, 31))


def test_sigterm_to_every_process_with_loader_workers(toy_config, tmp_path):
    """A batch scheduler's stop (or `pkill -f`) signals the loader workers too, not only the
    trainer: the run must still end cleanly with a checkpoint of the step it stopped at."""
    run_dir = tmp_path / "group"
    proc = _spawn_training(toy_config, run_dir, *SLOW, "train.ckpt_every=0", "train.workers=2")
    _wait_for(lambda: _train_steps(run_dir) >= 3, proc)
    children = [int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    assert len(children) >= 2  # the loader workers
    for pid in [proc.pid, *children]:  # the trainer first, as pkill does (PID order)
        os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped at step" in err and "Traceback" not in err
    step = int((run_dir / "last").read_text().strip().split("-")[1])
    assert 3 <= step < 30


def test_sigkill_leaves_a_loadable_checkpoint(toy_config, tmp_path):
    from gancanvas.train import checkpoint as ck

    run_dir = tmp_path / "kill"
    proc = _spawn_training(toy_config, run_dir, *SLOW, "train.ckpt_every=1", "train.keep_checkpoints=2")
    _wait_for(lambda: (run_dir / "last").exists(), proc)
    time.sleep(random.uniform(0.0, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    found = ck.find_checkpoint(run_dir)
    assert found is not None and found.name == (run_dir / "last").read_text().strip()
    # Loadable into fresh networks.
    gen, critic = ToyGenerator(ToyConfig()), ToyCritic(4)
    ema = ToyGenerator(ToyConfig())
    opts = {"G": torch.optim.Adam(gen.parameters()), "D": torch.optim.Adam(critic.parameters())}
    info = ck.load_checkpoint(found, nets={"G": gen, "D": critic}, ema=ema, optimizers=opts, scalers={},
                              arch="toy_inpaint", recipe="toy")
    assert info["step"] >= 1
    run(toy_config, run_dir=run_dir, resume=True, overrides=[SLOW[0], "train.eval_every=0"])
    assert (run_dir / "last").read_text().strip() == "step-00000030"
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


# ----------------------------------------------------------------------------- (4) config errors
@pytest.mark.parametrize("override, key", [
    ("train.bogus=1", "train.bogus"),
    ("nonsense.x=1", "nonsense"),
    ("train.batch_size=abc", "train.batch_size"),
    ("train.amp=fp8", "train.amp"),
    ("model.options.widht=3", "widht"),
    ("model.options.width=wide", "width"),
    ("loss.l2=1", "l2"),
    ("train.recipe=nope", "train.recipe"),
    ("data.mask=blobs", "data.mask"),
    ("eval.metrics=[psnr,fid]", "eval.metrics"),
    ("eval.metrics=[psnr,nope]", "eval.metrics"),
    ("model.arch=nope", "model.arch"),
])
def test_config_errors_name_file_and_key(toy_config, tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        run(toy_config, run_dir=tmp_path / "x", overrides=[override])
    msg = str(err.value)
    assert "\n" not in msg and str(toy_config) in msg and key in msg, msg
    assert not (tmp_path / "x").exists()


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOY_YAML.replace("batch_size: 2", "batch_size: [2]"))
    with pytest.raises(ConfigError, match="train.batch_size"):
        run(bad, run_dir=tmp_path / "x")
    bad.write_text(TOY_YAML + "\nextra_section: 1\n")
    with pytest.raises(ConfigError, match="extra_section"):
        run(bad, run_dir=tmp_path / "x")


def test_kimg_ema_halflife_and_default_run_dir(toy_config, tmp_path, monkeypatch):
    from gancanvas.train.config import load_config

    cfg = load_config(toy_config, ["train.total_steps=0", "train.kimg=0.005",
                                   "train.ema_halflife_kimg=0.002"])
    assert cfg.steps() == 3 and cfg.ema_beta() == pytest.approx(0.5)  # 5 images / batch 2; 2 images
    assert cfg.eval.mask == cfg.data.mask and cfg.train.recipe == "toy"
    monkeypatch.chdir(tmp_path)
    first = run(toy_config, overrides=["train.total_steps=1"])
    assert first.parent.name == "runs" and first.name.startswith("toy-")
    again = run(toy_config, resume=True, overrides=["train.total_steps=2"])  # finds the newest run
    assert again == first and (first / "last").read_text().strip() == "step-00000002"


# ----------------------------------------------------------------------------- (5) logs
def test_metrics_jsonl_tensorboard_and_model_file(toy_config, tmp_path):
    from gancanvas.weights import load_model

    run_dir = run(toy_config, run_dir=tmp_path / "logs",
                  overrides=["train.ckpt_every=1", "train.keep_checkpoints=2"])
    lines = metrics_lines(run_dir)
    train = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert {"D/hinge", "G/adv", "G/l1"} <= set(r["losses"]) and r["it_per_s"] > 0
        assert r["lr"] == {"G": 0.001, "D": 0.001} and r["kimg"] == r["step"] * 2 / 1000
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert set(evals[0]["metrics"]) == {"hole_l1", "psnr", "ssim"}
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    # keep_checkpoints prunes; `last` names the newest.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000003", "step-00000004"]
    model, meta = load_model(run_dir / "model.safetensors")
    assert meta["arch"] == "toy_inpaint" and meta["extra"]["step"] == 4
    ema = load_file(str(run_dir / "checkpoints/step-00000004/G_ema.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    saved = (run_dir / "config.yaml").read_text()
    assert "recipe: toy" in saved and "width: 4" in saved and "noise: 0.05" in saved


def test_missing_tensorboard_warns_and_continues(toy_config, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tb(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    run_dir = run(toy_config, run_dir=tmp_path / "notb", overrides=["train.total_steps=1"])
    assert "TensorBoard is not installed" in capsys.readouterr().err
    assert metrics_lines(run_dir)[-1]["kind"] == "eval" and not (run_dir / "tb").exists()


# ----------------------------------------------------------------------------- (7) --init
def test_init_loads_the_generator_only(toy_config, tmp_path):
    from gancanvas.train import engine
    from gancanvas.train.config import load_config
    from gancanvas.weights import save_model

    src = run(toy_config, run_dir=tmp_path / "src", overrides=["train.total_steps=2"])
    g_src = load_file(str(src / "checkpoints/step-00000002/G.safetensors"))
    d_src = load_file(str(src / "checkpoints/step-00000002/D.safetensors"))
    cfg = load_config(toy_config, ["train.seed=3"])
    for init in (src, src / "checkpoints/step-00000002", src / "model.safetensors"):
        t = engine.Trainer(cfg, tmp_path / f"new-{init.name}", engine.Dist(), init=init)
        g_want = load_file(str(src / "model.safetensors")) if init.suffix else g_src
        assert all(torch.equal(v, g_want[k]) for k, v in t.nets["G"].state_dict().items())
        assert all(torch.equal(v, g_want[k]) for k, v in t.ema.state_dict().items())
        # The critic is freshly initialised (same seed as the source run: its initial weights).
        assert any(not torch.equal(v, d_src[k]) for k, v in t.nets["D"].state_dict().items())
        assert t.step == 0 and all(not o.state for o in t.opts.values())
        t.close()
    # A fresh run with --init trains from there.
    run(toy_config, run_dir=tmp_path / "fresh", init=src, overrides=["train.total_steps=1"])
    assert (tmp_path / "fresh/last").read_text().strip() == "step-00000001"

    other = tmp_path / "other.safetensors"
    save_model(other, ToyGenerator(ToyConfig()), arch="toy_other", config={"width": 4})
    with pytest.raises(CheckpointError, match="toy_other"):
        run(toy_config, run_dir=tmp_path / "bad", init=other)


def test_resume_rejects_another_architecture(toy_config, tmp_path):
    src = run(toy_config, run_dir=tmp_path / "a", overrides=["train.total_steps=1"])
    with pytest.raises(CheckpointError) as err:
        run(toy_config, run_dir=src, resume=True, overrides=["model.arch=toy_other"])
    assert "toy_other" in str(err.value) and "\n" not in str(err.value)


def test_recipes_registry():
    assert "toy" in RECIPES
    from gancanvas.train.recipes import get_recipe

    assert get_recipe("deepfill_v2").name == "deepfill_v2"
