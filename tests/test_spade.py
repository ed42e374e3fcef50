"""SPADE: parity with the official PyTorch code (fixtures in tests/fixtures/official/spade, made by
running NVlabs/SPADE at fecacc9 on CPU), the converter's option inference and errors, and the
clean model (shapes, VAE, discriminator, training step)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import gancanvas.models.spade  # noqa: F401  (registers "spade" until models/__init__ imports it)
from gancanvas import registry
from gancanvas.convert.spade import convert_spade, read_official_state
from gancanvas.errors import CheckpointError, ConfigError, InputError
from gancanvas.losses.gan import adversarial_loss, feature_matching_loss
from gancanvas.models.spade import SPADEGenerator, kld_loss
from gancanvas.weights import load_model, save_model

FIX = Path(__file__).parent / "fixtures" / "official" / "spade"
PLAIN_G = FIX / "spade_ngf2" / "latest_net_G.pth"
VAE_DIR = FIX / "spade_vae_ngf2"
# The fixture option set: 6 classes + don't-care (label 255) + instance edges = 8 channels.
LAYOUT = {"label_nc": 6, "contain_dontcare": True, "use_instance": True}


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("spade") / "plain.safetensors"
    convert_spade(PLAIN_G, out, **LAYOUT)
    model, meta = load_model(out)
    return model, meta


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("spade") / "vae.safetensors"
    res = convert_spade(VAE_DIR / "latest_net_G.pth", out, crop_size=256, aspect_ratio=4.0, **LAYOUT)
    model, _ = load_model(out)
    return model, res


# --- parity --------------------------------------------------------------------------------------


def test_parity_plain(plain):
    model, meta = plain
    d = np.load(FIX / "case_plain.npz")
    assert meta["arch"] == "spade" and meta["config"]["ngf"] == 2 and meta["config"]["spade_hidden"] == 16
    # The semantic map built from the raw files (255 = don't care, 16-bit instance ids) is the official one.
    sem = model.semantic_input(torch.from_numpy(d["label_ids_raw"].astype(np.int64)),
                               torch.from_numpy(d["inst_ids"].astype(np.int64)))
    np.testing.assert_array_equal(sem.numpy(), d["input_semantics"])
    with torch.no_grad():
        out = model(sem)
    np.testing.assert_allclose(out.numpy(), d["output"], rtol=0, atol=1e-5)


def test_parity_vae(vae):
    model, res = vae
    assert res.config["use_vae"] and res.config["crop_size"] == 256 and res.config["aspect_ratio"] == 4.0
    d = np.load(FIX / "case_vae.npz")
    # The official dataloader: ToTensor then Normalize(0.5, 0.5).
    image = (torch.from_numpy(d["image_rgb_uint8"]).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    sem = torch.from_numpy(d["input_semantics"])
    with torch.no_grad():
        mu, logvar = model.encode(image)
        np.testing.assert_allclose(mu.numpy(), d["mu"], rtol=0, atol=2e-5)
        np.testing.assert_allclose(logvar.numpy(), d["logvar"], rtol=0, atol=2e-5)
        out = model(sem, z=torch.from_numpy(d["z"]))
        np.testing.assert_allclose(out.numpy(), d["output"], rtol=0, atol=1e-5)
        # The official inference draws eps with randn_like after torch.manual_seed(4321): same draw here.
        torch.manual_seed(4321)
        out = model(sem, image=image)
    np.testing.assert_allclose(out.numpy(), d["output"], rtol=0, atol=1e-5)
    assert out.shape[-2:] == (64, 256)


# --- converter -----------------------------------------------------------------------------------


def test_convert_infers_layout_and_checks_label_nc(tmp_path):
    # Without label_nc every channel counts as a class; a wrong label_nc or an ambiguous one is one line.
    res = convert_spade(PLAIN_G, tmp_path / "a.safetensors")
    layout = (res.config["label_nc"], res.config["contain_dontcare"], res.config["use_instance"])
    assert layout == (8, False, False)
    with pytest.raises(CheckpointError) as err:
        convert_spade(PLAIN_G, tmp_path / "b.safetensors", label_nc=7)
    assert "--contain-dontcare or --instance" in _one_line(err)
    res = convert_spade(PLAIN_G, tmp_path / "b.safetensors", label_nc=7, use_instance=True)
    assert (res.config["contain_dontcare"], res.config["use_instance"]) == (False, True)
    with pytest.raises(CheckpointError) as err:
        convert_spade(PLAIN_G, tmp_path / "c.safetensors", label_nc=3)
    assert "8 semantic channels" in _one_line(err)
    with pytest.raises(CheckpointError) as err:
        convert_spade(PLAIN_G, tmp_path / "c.safetensors", label_nc=6, contain_dontcare=False)
    _one_line(err)


def test_convert_errors(tmp_path):
    sean = Path(__file__).parent / "fixtures" / "official" / "sean" / "sean_ngf2" / "latest_net_G.pth"
    with pytest.raises(CheckpointError) as err:
        convert_spade(sean, tmp_path / "x.safetensors")
    assert "gancanvas convert sean" in _one_line(err)
    with pytest.raises(CheckpointError) as err:
        convert_spade(VAE_DIR / "latest_net_E.pth", tmp_path / "x.safetensors")
    assert "encoder" in _one_line(err)
    # A VAE generator alone (no latest_net_E.pth beside it).
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(VAE_DIR / "latest_net_G.pth", lone / "latest_net_G.pth")
    with pytest.raises(CheckpointError) as err:
        convert_spade(lone / "latest_net_G.pth", tmp_path / "x.safetensors", crop_size=256, aspect_ratio=4.0,
                      **LAYOUT)
    assert "needs its encoder" in _one_line(err)
    # The weights cannot tell a 2x8 latent grid from 4x4: not the official default 8x8, so it must be given.
    with pytest.raises(CheckpointError) as err:
        convert_spade(VAE_DIR / "latest_net_G.pth", tmp_path / "x.safetensors", **LAYOUT)
    assert "aspect_ratio" in _one_line(err)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as err:
        convert_spade(garbage, tmp_path / "x.safetensors")
    assert "weights_only" in _one_line(err)
    # Missing keys: a strict load with one readable line.
    state = read_official_state(PLAIN_G)
    del state["up_1.norm_0.mlp_gamma.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError) as err:
        convert_spade(tmp_path / "cut.pth", tmp_path / "x.safetensors", **LAYOUT)
    assert "missing 1 keys: up_1.norm_0.mlp_gamma.weight" in _one_line(err)


# --- the clean model -----------------------------------------------------------------------------

TINY = {"label_nc": 4, "ngf": 4, "spade_hidden": 8, "ndf": 8, "param_free_norm": "batch"}


def _labels(n, h, w, label_nc, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, label_nc, (n, h, w), generator=g)


@pytest.mark.parametrize("mode,stride", [("normal", 32), ("more", 64), ("most", 128)])
def test_generator_sizes(mode, stride):
    model = registry.create("spade", **TINY, num_upsampling_layers=mode).eval()
    assert model.stride == stride
    sem = model.semantic_input(_labels(1, stride, 2 * stride, 4), _labels(1, stride, 2 * stride, 3))
    assert sem.shape == (1, 4 + 1, stride, 2 * stride)
    with torch.no_grad():
        out = model(sem)
    assert out.shape == (1, 3, stride, 2 * stride) and out.abs().max() <= 1


def test_generator_input_errors():
    model = registry.create("spade", **TINY).eval()
    with pytest.raises(InputError) as err:
        model(torch.zeros(1, 5, 48, 64))
    assert "multiples of 32" in _one_line(err)
    with pytest.raises(InputError) as err:
        model(torch.zeros(1, 3, 64, 64))
    assert "(N, 5, H, W)" in _one_line(err)
    with pytest.raises(InputError) as err:
        model.semantic_input(torch.full((1, 32, 32), 7))
    assert "outside" in _one_line(err)
    with pytest.raises(InputError):
        model(torch.zeros(1, 5, 32, 32), z=torch.zeros(1, 256))
    with pytest.raises(ConfigError):
        registry.create("spade", **{**TINY, "num_upsampling_layers": "lots"})
    n = registry.create("spade", **TINY).cfg.label_nc
    for names, words in (([f"c{i}" for i in range(n - 1)], "names for label_nc"),
                         (["c0"] * n, "duplicates")):
        with pytest.raises(ConfigError, match=words):
            registry.create("spade", **{**TINY, "class_names": names})


def test_vae_and_training_step():
    torch.manual_seed(0)
    cfg = {**TINY, "use_vae": True, "z_dim": 8, "crop_size": 64, "aspect_ratio": 2.0}
    g = registry.create("spade", **cfg)
    d = registry.create_discriminator("spade", **cfg)
    labels = _labels(2, 32, 64, 4)
    sem = g.semantic_input(labels)
    real = torch.rand(2, 3, 32, 64) * 2 - 1
    mu, logvar = g.encode(real)
    assert mu.shape == (2, 8) and g.encoder.layer6 is not None
    fake = g(sem, z=mu + torch.randn_like(mu) * (0.5 * logvar).exp())
    assert fake.shape == (2, 3, 32, 64)  # the latent grid (1 x 2 at 1/32) fixes the output size
    pred_fake = d(torch.cat([sem, fake], 1))
    pred_real = d(torch.cat([sem, real], 1))
    assert len(pred_fake) == 2 and len(pred_fake[0]) == 5  # num_d scales x (4 layers + prediction)
    loss = (adversarial_loss(pred_fake, True, "hinge", for_discriminator=False, reduce_scales="mean")
            + feature_matching_loss(pred_fake, pred_real, layer_weight=10.0, drop_last=True)
            + 0.05 * kld_loss(mu, logvar))
    loss.backward()
    grads = [p.grad for p in g.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    # Sampling z from N(0, 1) without an image works too.
    with torch.no_grad():
        assert g.eval()(sem, generator=torch.Generator().manual_seed(1)).shape == (2, 3, 32, 64)


def test_save_load_roundtrip(tmp_path):
    model = SPADEGenerator(registry.model_config("spade", TINY)).eval()
    save_model(tmp_path / "m.safetensors", model, arch="spade", config=TINY)
    loaded, meta = load_model(tmp_path / "m.safetensors")
    sem = model.semantic_input(_labels(1, 32, 32, 4))
    with torch.no_grad():
        torch.testing.assert_close(loaded(sem), model(sem), rtol=0, atol=0)
