"""Per-region style codes: the file format, the edits (swap, interpolation, crossover, missing
regions) tested by what they do to the synthesised image, and one-line errors for bad input.

The model is the official SEAN fixture generator (CelebAMask-HQ classes, reduced widths), converted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gancanvas.models.sean  # noqa: F401  (registers "sean" until models/__init__ imports it)
from gancanvas import registry
from gancanvas.convert.sean import convert_sean
from gancanvas.errors import InputError
from gancanvas.styles import StyleCodes, StyleSpace
from gancanvas.weights import load_model

FIX = Path(__file__).parent / "fixtures" / "official" / "sean"


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("styles") / "sean.safetensors"
    convert_sean(FIX / "sean_ngf2" / "latest_net_G.pth", path)
    model, _ = load_model(path)
    d = np.load(FIX / "case_test_recon.npz")
    image, sem = torch.from_numpy(d["image"]), torch.from_numpy(d["input_semantics"])
    a, b = StyleCodes.extract(model, image, sem, ["28083.png", "28090.png"])
    return model, sem, d["label_ids"], a, b


def _synth(model, sem, codes: StyleCodes) -> torch.Tensor:
    styles, present = codes.to_batch()
    with torch.no_grad():
        return model(sem, styles=styles, present=present, noise=0)[0]


# --- the value type and the file -----------------------------------------------------------------


def test_extract_matches_official_codes_and_roundtrips(setup, tmp_path):
    model, sem, _, a, b = setup
    d = np.load(FIX / "case_test_recon.npz")
    np.testing.assert_allclose(a.codes.numpy(), d["style_matrix"][0], rtol=0, atol=1e-5)
    assert a.present.tolist() == d["ace_npy_present"][0].tolist()
    assert "hat" in b and "hat" not in a and a.present_names()[:3] == ["background", "skin", "nose"]
    # A code per present region, by id, by numeric string or by name.
    torch.testing.assert_close(a["hair"], a[13])
    torch.testing.assert_close(a["13"], a.codes[13])
    a.save(tmp_path / "a.styles.safetensors")
    back = StyleCodes.load(tmp_path / "a.styles.safetensors", model)
    assert torch.equal(back.codes, a.codes) and torch.equal(back.present, a.present)
    assert back.space == a.space and back.names[13] == "hair"
    # The official test mode dumps a code per present class (styles_test/style_codes/<image>/<class>/ACE.npy).
    for codes in (a, b):
        folder = FIX / "styles_test" / "style_codes" / codes.source
        dumped = sorted(int(p.name) for p in folder.iterdir())
        assert dumped == [i for i, p in enumerate(codes.present.tolist()) if p]
        for cls in dumped:
            np.testing.assert_allclose(codes.codes[cls].numpy(), np.load(folder / str(cls) / "ACE.npy"),
                                       rtol=0, atol=1e-5)


def test_mean_and_fill_missing(setup):
    model, sem, labels, a, b = setup
    mean = StyleCodes.mean([a, b])
    both = a.present & b.present
    torch.testing.assert_close(mean.codes[both], (a.codes[both] + b.codes[both]) / 2)
    hat = a.region_id("hat")
    torch.testing.assert_close(mean.codes[hat], b.codes[hat])  # only b has a hat: its code is the mean
    assert not mean.present[a.region_id("neck_l")]  # in neither image
    filled = a.fill_missing(mean)
    assert filled.present[hat] and torch.equal(filled.codes[hat], mean.codes[hat])
    assert torch.equal(filled.codes[a.present], a.codes[a.present])  # present regions untouched
    # Synthesising image 1's label map (with a hat) from image 0's codes needs the filled codes.
    assert a.missing_in(np.unique(labels[1])) == ["eye_g", "hat"]
    assert filled.missing_in(np.unique(labels[1])) == []


# --- edits, by behaviour -------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["hair", "cloth"])
def test_swapping_a_region_changes_mostly_that_region(setup, region):
    model, sem, labels, a, b = setup
    base = _synth(model, sem[:1], a)
    swapped = a.swap(region, b)
    assert torch.equal(swapped[region], b[region]) and torch.equal(swapped["skin"], a["skin"])
    diff = (_synth(model, sem[:1], swapped) - base).abs().mean(0).numpy()
    inside = labels[0] == a.region_id(region)
    assert diff[inside].mean() > 4 * diff[~inside].mean()
    assert diff[inside].sum() / diff.sum() > 2 * inside.mean()  # the change is concentrated in the region


def test_interpolation_endpoints(setup):
    model, sem, _, a, b = setup
    zero, one = a.interpolate(b, 0.0), a.interpolate(b, 1.0)
    both = a.present & b.present
    assert torch.equal(zero.codes[a.present], a.codes[a.present])
    assert torch.equal(one.codes[both], b.codes[both])
    assert torch.equal(_synth(model, sem[:1], zero), _synth(model, sem[:1], a))
    # On image 1's label map every region has b's code at t=1 (hat and eye_g, which a lacks, included).
    assert torch.equal(_synth(model, sem[1:], one), _synth(model, sem[1:], b))
    half = a.interpolate(b, 0.5)
    torch.testing.assert_close(half.codes[both], (a.codes[both] + b.codes[both]) / 2)
    only_hair = a.interpolate(b, 1.0, regions=["hair"])
    assert torch.equal(only_hair.codes, a.swap("hair", b).codes)


def test_crossover(setup):
    model, sem, _, a, b = setup
    k = model.n_style_blocks
    # 1 = keep these codes, 0 = take the other's, per block (coarse to fine).
    same = a.crossover([1] * k, b)
    assert torch.equal(same.codes, a.codes) and torch.equal(same.present, a.present)
    assert torch.equal(_synth(model, sem[:1], same), _synth(model, sem[:1], a))
    assert torch.equal(_synth(model, sem[:1], a.crossover("0,0,0,0,0,0", b)), _synth(model, sem[:1], b))
    assert torch.equal(a.crossover("110000", b).codes, a.crossover([1, 1, 0, 0, 0, 0], b).codes)
    mixed = a.crossover("1,1,0,0,0,0", b)
    assert mixed.is_per_block and mixed.codes.shape == (k, 19, 16)
    both = a.present & b.present
    assert torch.equal(mixed.codes[0][both], a.codes[both])  # head_0 kept from a
    assert torch.equal(mixed.codes[5][both], b.codes[both])  # up_2 from b
    y = _synth(model, sem[:1], mixed)
    assert not torch.allclose(y, _synth(model, sem[:1], a))
    assert not torch.allclose(y, _synth(model, sem[:1], b))
    # Per-block codes go through the other edits and the file format too.
    assert mixed.swap("hair", a).codes.shape == (k, 19, 16)
    assert StyleCodes.mean([mixed, a]).codes.shape == (k, 19, 16)


def test_saved_per_block_codes(setup, tmp_path):
    model, sem, _, a, b = setup
    mixed = a.crossover([1, 0, 1, 0, 1, 0], b)
    mixed.save(tmp_path / "x.safetensors")
    back = StyleCodes.load(tmp_path / "x.safetensors", model)
    assert torch.equal(_synth(model, sem[:1], back), _synth(model, sem[:1], mixed))


# --- bad input: one clear line each --------------------------------------------------------------


def test_unknown_region_and_bad_values(setup):
    model, sem, _, a, b = setup
    with pytest.raises(InputError) as err:
        a.swap("hiar", b)
    assert "unknown region 'hiar'" in _one_line(err) and "did you mean 'hair'" in _one_line(err)
    with pytest.raises(InputError) as err:
        a[19]
    assert "0..18" in _one_line(err)
    with pytest.raises(InputError) as err:
        a["hat"]
    assert "no code" in _one_line(err)
    for t in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(InputError) as err:
            a.interpolate(b, t)
        assert "[0, 1]" in _one_line(err)
    for flags in ("1,0", "1,1,2,0,0,0", [True] * 7, "a,b,c,d,e,f"):
        with pytest.raises(InputError) as err:
            a.crossover(flags, b)
        assert "6 block flags" in _one_line(err)


def test_codes_from_another_model_or_class_set(setup, tmp_path):
    model, sem, _, a, b = setup
    # Same architecture and classes, other weights: refused (the codes mean something else there).
    other = registry.create("sean", **{**model.cfg.__dict__}).eval()
    with pytest.raises(InputError) as err:
        a.check(other)
    assert "another sean model" in _one_line(err)
    a.check(other, check_weights=False)
    a.save(tmp_path / "a.safetensors")
    with pytest.raises(InputError):
        StyleCodes.load(tmp_path / "a.safetensors", other)
    # Another class set (the built-in scenes), another code length.
    scenes = registry.create("sean", label_nc=19, ngf=2, style_dim=16, encoder_ngf=4, spade_hidden=16,
                             class_names=[f"c{i}" for i in range(19)])
    with pytest.raises(InputError) as err:
        StyleCodes.load(tmp_path / "a.safetensors", scenes)
    assert "class set differs" in _one_line(err)
    wide = registry.create("sean", label_nc=19, ngf=2, style_dim=8, encoder_ngf=4, spade_hidden=16,
                           class_names=list(model.cfg.class_names))
    with pytest.raises(InputError) as err:
        StyleCodes.load(tmp_path / "a.safetensors", wide)
    assert "style_dim 16" in _one_line(err)
    foreign = StyleCodes(torch.zeros(19, 16), torch.ones(19, dtype=torch.bool),
                         StyleSpace.of_model(scenes), "scenes.styles")
    with pytest.raises(InputError) as err:
        a.swap("hair", foreign)
    assert "class set differs" in _one_line(err)


def test_not_a_style_file(setup, tmp_path):
    model, *_ = setup
    with pytest.raises(InputError) as err:
        StyleCodes.load(tmp_path / "missing.safetensors")
    assert "not found" in _one_line(err)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError) as err:
        StyleCodes.load(tmp_path / "junk.safetensors")
    assert "not a style file" in _one_line(err)
    from gancanvas.weights import save_model

    save_model(tmp_path / "model.safetensors", model, arch="sean", config={})
    with pytest.raises(InputError) as err:
        StyleCodes.load(tmp_path / "model.safetensors")
    assert "gancanvas model file" in _one_line(err)
