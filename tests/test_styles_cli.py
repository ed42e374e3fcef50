"""SEAN per-region style control from the command line (issue 6): `gancanvas styles extract|mean` and
`gancanvas synthesize --styles --region-style --interpolate --crossover --mean`, tested by what they do
to the output image; the same edits from Python; one-line errors (exit code 2) for bad input.

The model is a tiny SEAN with the built-in scene classes at 64 px. In an untrained model at that
size the coarse style blocks work on 2x2 .. 8x8 features and smear a region's style over the whole
image, so the fixture switches their style transforms off (zero `style_fc`): only up_2 (32x32) is
styled, and a region's code then shows mostly inside that region, as in a trained model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gancanvas
from gancanvas import registry
from gancanvas.cli import main
from gancanvas.data.labels import load_class_names, read_label_map
from gancanvas.data.synthetic import CLASSES
from gancanvas.errors import InputError, StyleError
from gancanvas.styles import StyleCodes
from gancanvas.weights import save_model

SIZE = 64
CFG = {"label_nc": 10, "ngf": 2, "spade_hidden": 4, "ndf": 4, "style_dim": 4, "encoder_ngf": 4,
       "class_names": list(CLASSES), "init_gain": 1.0}
COARSE = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str) -> str:
    lines = re.findall(r"error: [^\r\n]*", err)  # between progress-bar redraws
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def _model(path, cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = registry.create("sean", **cfg)
    with torch.no_grad():
        model.conv_img.weight.mul_(10.0)  # an untrained output is nearly flat: make styles show in uint8
        for k, v in model.named_parameters():
            if k.split(".")[0] in COARSE and ".style_fc." in k:
                v.zero_()
    save_model(path, model, arch="sean", config=registry.model_config("sean", cfg).__dict__)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("sean-styles")
    scenes = d / "scenes"
    assert main(["data", "scenes", "--size", str(SIZE), "--count", "3", "-o", str(scenes)]) == 0
    model = _model(d / "sean.safetensors")
    codes = {}
    for i in range(3):
        codes[i] = d / f"{i}.styles.safetensors"
        assert main(["styles", "extract", str(scenes / "images" / f"0000{i}.png"), "--labels",
                     str(scenes / "labels" / f"0000{i}.png"), "--model", str(model),
                     "-o", str(codes[i])]) == 0
    return {"dir": d, "scenes": scenes, "model": model, "codes": codes}


def _synth(capsys, tmp_path, env, *opts, labels=0, out="o.png"):
    code, _, err = _run(capsys, "synthesize", env["scenes"] / "labels" / f"0000{labels}.png", "--model",
                        env["model"], *opts, "-o", tmp_path / out)
    assert code == 0, err
    return np.asarray(Image.open(tmp_path / out)).astype(np.int64)


def test_extract_then_synthesize_round_trip(tmp_path, env, capsys):
    a = env["codes"][0]
    base = _synth(capsys, tmp_path, env, "--styles", a)
    # The codes reproduce the photo they came from; --style is the old name of --styles.
    photo = env["scenes"] / "images" / "00000.png"
    assert np.array_equal(base, _synth(capsys, tmp_path, env, "--style-image", photo, out="p.png"))
    assert np.array_equal(base, _synth(capsys, tmp_path, env, "--style", a, out="s.png"))
    pipe = gancanvas.load(str(env["model"]))
    codes = StyleCodes.load(a, pipe.model)
    assert codes.names == CLASSES and "sky" in codes
    labels = env["scenes"] / "labels" / "00000.png"
    assert np.array_equal(base, pipe.synthesize(labels, styles=codes))


def test_region_style_by_name_and_by_id(tmp_path, env, capsys):
    a, b = env["codes"][0], env["codes"][1]
    base = _synth(capsys, tmp_path, env, "--styles", a)
    ids = read_label_map(env["scenes"] / "labels" / "00000.png")
    for region, key in (("sky", "sky"), ("grass", "5")):
        out = _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"{key}={b}", out=f"{key}.png")
        diff = np.abs(out - base).sum(-1).astype(float)
        inside = ids == CLASSES.index(region)
        assert diff.sum() > 0
        share = diff[inside].sum() / diff.sum()
        assert share > 0.5 and share > 1.5 * inside.mean(), (region, share, inside.mean())
    # By name or by id: the same edit; several swaps apply in order.
    by_id = _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"0={b}", out="0.png")
    assert np.array_equal(by_id, _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"sky={b}",
                                        out="s.png"))
    both = _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"sky={b}", "--region-style",
                  f"grass={b}", out="both.png")
    assert not np.array_equal(both, _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"sky={b}",
                                           out="sky2.png"))


def test_interpolate_and_crossover(tmp_path, env, capsys):
    a, b = env["codes"][0], env["codes"][1]
    # On image 1's label map every region has a code in both files (image 0 has all of image 1's classes).
    base = _synth(capsys, tmp_path, env, "--styles", a, labels=1)
    other = _synth(capsys, tmp_path, env, "--styles", b, labels=1, out="b.png")
    assert not np.array_equal(base, other)
    assert np.array_equal(_synth(capsys, tmp_path, env, "--styles", a, "--interpolate", f"{b}:0", labels=1,
                                 out="i0.png"), base)
    assert np.array_equal(_synth(capsys, tmp_path, env, "--styles", a, "--interpolate", f"{b}:1", labels=1,
                                 out="i1.png"), other)
    half = _synth(capsys, tmp_path, env, "--styles", a, "--interpolate", f"{b}:0.5", labels=1, out="ih.png")
    assert not np.array_equal(half, base) and not np.array_equal(half, other)
    # FILE:T:REGIONS interpolates only those regions: at 1 it is the region swap.
    assert np.array_equal(
        _synth(capsys, tmp_path, env, "--styles", a, "--interpolate", f"{b}:1:sky", labels=1, out="is.png"),
        _synth(capsys, tmp_path, env, "--styles", a, "--region-style", f"sky={b}", labels=1, out="rs.png"))
    # Crossover: 1 keeps the block from --styles, 0 takes it from FILE.
    assert np.array_equal(_synth(capsys, tmp_path, env, "--styles", a, "--crossover", "1,1,1,1,1,1", b,
                                 labels=1, out="c1.png"), base)
    assert np.array_equal(_synth(capsys, tmp_path, env, "--styles", a, "--crossover", "000000", b,
                                 labels=1, out="c0.png"), other)
    fine = _synth(capsys, tmp_path, env, "--styles", a, "--crossover", "1,1,1,1,1,0", b, labels=1,
                  out="cf.png")
    assert not np.array_equal(fine, base)


def test_styles_mean_and_missing_regions(tmp_path, env, capsys):
    scenes, model = env["scenes"], env["model"]
    code, out, err = _run(capsys, "styles", "mean", model, "--data", scenes, "--batch-size", "2",
                          "-o", tmp_path / "mean.styles.safetensors")
    assert code == 0, err
    pipe = gancanvas.load(str(model))
    mean = StyleCodes.load(tmp_path / "mean.styles.safetensors", pipe.model)
    maps = [read_label_map(scenes / "labels" / f"0000{n}.png") for n in range(3)]
    seen = sorted({int(i) for m in maps for i in np.unique(m)})
    assert [i for i, p in enumerate(mean.present.tolist()) if p] == seen
    never = [CLASSES[i] for i in range(10) if i not in seen]
    assert f"mean codes of 3 images for {len(seen)} of 10 regions" in out
    assert (f"never seen: {', '.join(never)}" in out) if never else "never seen" not in out
    # The per-region mean of the per-image codes (batching does not change them).
    singles = [StyleCodes.load(env["codes"][i], pipe.model) for i in range(3)]
    torch.testing.assert_close(mean.codes, StyleCodes.mean(singles).codes, rtol=1e-4, atol=1e-5)
    code, out, _ = _run(capsys, "styles", "mean", model, "--data", scenes, "--limit", "1",
                        "-o", tmp_path / "one.safetensors")
    assert code == 0 and "mean codes of 1 images" in out

    # Image 1's codes on image 0's label map: some classes have no code.
    b = env["codes"][1]
    missing = StyleCodes.load(b).missing_in(np.unique(read_label_map(scenes / "labels" / "00000.png")))
    assert missing
    code, _, err = _run(capsys, "synthesize", scenes / "labels" / "00000.png", "--model", model,
                        "--styles", b, "-o", tmp_path / "x.png")
    assert code == 2
    _one_line_error(err, "no style code for " + ", ".join(missing), "gancanvas styles mean", "--mean")
    assert not (tmp_path / "x.png").exists()
    filled = _synth(capsys, tmp_path, env, "--styles", b, "--mean", tmp_path / "mean.styles.safetensors")
    assert np.array_equal(filled, pipe.synthesize(scenes / "labels" / "00000.png", styles=StyleCodes.load(b),
                                                  mean=mean))
    zero = _synth(capsys, tmp_path, env, "--styles", b, "--zero-missing", out="z.png")
    assert not np.array_equal(filled, zero)
    # Batch mode: the same codes for every label map of the folder.
    code, out, err = _run(capsys, "synthesize", scenes / "labels", "--model", model, "--styles", b, "--mean",
                          tmp_path / "mean.styles.safetensors", "--region-style", f"sky={env['codes'][0]}",
                          "-o", tmp_path / "batch")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_python_api(env):
    pipe = gancanvas.load(str(env["model"]))
    a, b = (StyleCodes.load(env["codes"][i], pipe.model) for i in (0, 1))
    assert a["sky"].shape == (4,) and torch.equal(a["sky"], a[0])
    assert torch.equal(a.swap("sky", b)["sky"], b["sky"])
    assert torch.equal(a.interpolate(b, 0.3)["sky"], torch.lerp(a["sky"], b["sky"], 0.3))
    crossed = a.crossover([1, 1, 0, 0, 0, 0], b)
    assert torch.equal(crossed["sky"][0], a["sky"]) and torch.equal(crossed["sky"][5], b["sky"])
    mean = StyleCodes.mean([a, b])
    torch.testing.assert_close(mean["sky"], (a["sky"] + b["sky"]) / 2)
    labels = env["scenes"] / "labels" / "00001.png"
    out = pipe.synthesize(labels, styles=crossed)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    for bad in (lambda: a.swap("hiar", b), lambda: a.interpolate(b, 2), lambda: a.crossover("1,0", b),
                lambda: a[10]):
        with pytest.raises(StyleError):
            bad()


@pytest.fixture(scope="module")
def bad_files(env):
    d = env["dir"]
    other_model = _model(d / "other.safetensors", seed=1)  # same classes, other weights
    unnamed = _model(d / "unnamed.safetensors", {**CFG, "class_names": None})
    files = {"junk": d / "junk.safetensors", "truncated": d / "truncated.safetensors"}
    files["junk"].write_bytes(b"not a safetensors file")
    files["truncated"].write_bytes(env["codes"][1].read_bytes()[:-10])
    for name, model in (("other", other_model), ("unnamed", unnamed)):
        files[name] = d / f"{name}.styles.safetensors"
        assert main(["styles", "extract", str(env["scenes"] / "images" / "00000.png"), "--labels",
                     str(env["scenes"] / "labels" / "00000.png"), "--model", str(model), "-o",
                     str(files[name])]) == 0
    return files


BAD = {
    "other_model": (["--region-style", "sky={other}"], ["other.styles.safetensors", "another sean model"]),
    "other_classes": (["--interpolate", "{unnamed}:0.5"], ["unnamed.styles.safetensors",
                                                             "class set differs"]),
    "unknown_region": (["--region-style", "skye={b}"], ["unknown region 'skye'", "sky, cloud, mountain",
                                                        "did you mean 'sky'"]),
    "region_id": (["--region-style", "12={b}"], ["region id 12 is out of range", "0..9"]),
    "region_syntax": (["--region-style", "{b}"], ["expected REGION=FILE"]),
    "region_absent": (["--region-style", "sand={b}"], ["has no code for 'sand'"]),
    "weight_range": (["--interpolate", "{b}:1.5"], ["--interpolate", "[0, 1]", "1.5"]),
    "weight_text": (["--interpolate", "{b}:half"], ["--interpolate", "[0, 1]", "'half'"]),
    "crossover_len": (["--crossover", "1,1,0", "{b}"], ["6 block flags", "head_0, G_middle_0"]),
    "crossover_values": (["--crossover", "1,1,2,0,0,0", "{b}"], ["6 block flags of 0 or 1"]),
    "junk": (["--region-style", "sky={junk}"], ["junk.safetensors", "not a style file"]),
    "truncated": (["--crossover", "111111", "{truncated}"], ["truncated.safetensors", "not a style file"]),
    "model_as_styles": (["--mean", "{model}"], ["sean.safetensors", "gancanvas model file"]),
    "missing_file": (["--interpolate", "nowhere.st:0.5"], ["nowhere.st", "no such style file"]),
    "no_base": ([], ["give the base codes with --styles"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line(tmp_path, env, bad_files, capsys, case):
    opts, needles = BAD[case]
    paths = {k: str(v) for k, v in bad_files.items()}
    paths.update(b=str(env["codes"][1]), model=str(env["model"]))
    opts = [o.format(**paths) for o in opts]
    base = [] if case == "no_base" else ["--styles", env["codes"][0]]
    if case == "no_base":
        opts = ["--region-style", f"sky={paths['b']}"]
    code, _, err = _run(capsys, "synthesize", env["scenes"] / "labels" / "00000.png", "--model", env["model"],
                        *base, *opts, "-o", tmp_path / "o.png")
    assert code == 2
    _one_line_error(err, *needles)
    assert not (tmp_path / "o.png").exists()


def test_styles_commands_bad_input(tmp_path, env, capsys):
    scenes = env["scenes"]
    code, _, err = _run(capsys, "styles", "extract", scenes / "images" / "00000.png", "--model", env["model"],
                        "-o", tmp_path / "x.safetensors")
    assert code == 2
    _one_line_error(err, "--labels")
    code, _, err = _run(capsys, "styles", "mean", env["model"], "--data", tmp_path, "-o", tmp_path / "m.st")
    assert code == 2
    _one_line_error(err, "no label maps found")
    code, _, err = _run(capsys, "styles", "mean", env["model"], "--data", scenes, "--limit", "0",
                        "-o", tmp_path / "m.st")
    assert code == 2
    _one_line_error(err, "--limit")


FIX = Path(__file__).parent / "fixtures" / "official" / "sean"


def test_converted_celebamask_hq_model_has_region_names(tmp_path, capsys):
    src = FIX / "sean_ngf2" / "latest_net_G.pth"
    code, _, err = _run(capsys, "convert", "sean", src, "-o", tmp_path / "sean.safetensors")
    assert code == 0, err
    pipe = gancanvas.load(str(tmp_path / "sean.safetensors"))
    assert pipe.model.cfg.class_names[13] == "hair" and pipe.meta["extra"]["palette"] == "celebamask-hq"
    # The official fixture's two faces as files: label maps (ids) and photos.
    d = np.load(FIX / "case_test_recon.npz")
    for i in (0, 1):
        Image.fromarray(d["label_ids"][i]).save(tmp_path / f"l{i}.png")
        photo = ((d["image"][i].transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(photo).save(tmp_path / f"p{i}.png")
        code, _, err = _run(capsys, "styles", "extract", tmp_path / f"p{i}.png", "--labels",
                            tmp_path / f"l{i}.png", "--model", tmp_path / "sean.safetensors",
                            "-o", tmp_path / f"{i}.st")
        assert code == 0, err
    other = tmp_path / "1.st"
    base = ["synthesize", tmp_path / "l0.png", "--model", tmp_path / "sean.safetensors", "--styles",
            tmp_path / "0.st", "-o", tmp_path / "o.png"]
    code, _, err = _run(capsys, *base, "--region-style", f"hair={other}")
    assert code == 0, err
    code, _, err = _run(capsys, *base, "--region-style", f"hiar={other}")
    assert code == 2
    _one_line_error(err, "unknown region 'hiar'", "background, skin, nose", "cloth", "did you mean 'hair'")
    # --class-names: a built-in set of the right size or a file; the wrong count is one line.
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"part{i}" for i in range(19)))
    code, _, err = _run(capsys, "convert", "sean", src, "--class-names", names,
                        "-o", tmp_path / "n.safetensors")
    assert code == 0, err
    assert gancanvas.load(str(tmp_path / "n.safetensors")).model.cfg.class_names[13] == "part13"
    with pytest.raises(InputError) as err:  # what `convert sean --class-names scenes` says
        load_class_names("scenes", 19)
    assert str(err.value) == "scenes: 10 class names for 19 classes (label_nc)"
