"""`gancanvas synthesize`, `gancanvas features cluster` and the Synthesizer pipeline end to end on tiny
pix2pixHD / SPADE / SEAN models and the built-in scenes at 64 px: single and batch runs, instance
maps, styles by cluster / seed / photo / codes, colour label maps, one-line errors."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import gancanvas
from gancanvas import registry
from gancanvas.cli import main
from gancanvas.data.labels import read_instance_map, read_label_map
from gancanvas.data.synthetic import PALETTE, write_scenes
from gancanvas.errors import InputError
from gancanvas.weights import load_model, save_model

SIZE = 64
P2P = {"label_nc": 10, "ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1, "instance_feat": True,
       "nef": 4, "n_downsample_E": 2, "n_clusters": 4, "ndf": 4, "num_D": 1, "n_layers_D": 2}


def _save(path, arch, cfg, model=None, extra=None):
    if model is None:
        torch.manual_seed(0)
        model = registry.create(arch, **cfg)
    save_model(path, model, arch=arch, config=registry.model_config(arch, cfg).__dict__, extra=extra)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, size=SIZE, count=3, seed=0)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    p2p = registry.create("pix2pixhd", **P2P)
    paths = {"plain": _save(d / "p2p.safetensors", "pix2pixhd", P2P, p2p)}
    rng = np.random.default_rng(0)
    # Centres far apart, so that another pick shows in the uint8 output of an untrained model.
    p2p.set_clusters({c: rng.uniform(-1, 1, (3, 3)) for c in range(10)})
    paths["clustered"] = _save(d / "clustered.safetensors", "pix2pixhd", P2P, p2p)
    paths["palette"] = _save(d / "with-palette.safetensors", "pix2pixhd", P2P, p2p,
                             extra={"palette": "scenes"})
    no_style = {"label_nc": 10, "ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1, "no_instance": True}
    paths["no_style"] = _save(d / "no-style.safetensors", "pix2pixhd", no_style)
    paths["outpaint"] = _save(d / "srn.safetensors", "srn", {"g_cnum": 4})
    return paths


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def _synth(capsys, tmp_path, scenes, model, *opts, name="00000", out="o.png"):
    code, _, err = _run(capsys, "synthesize", scenes / "labels" / f"{name}.png", "--instances",
                        scenes / "instances" / f"{name}.png", "--model", model, *opts, "-o", tmp_path / out)
    assert code == 0, err
    return np.asarray(Image.open(tmp_path / out))


def test_synthesize_single_with_instances(tmp_path, scenes, models, capsys):
    res = _synth(capsys, tmp_path, scenes, models["clustered"])
    assert res.shape == (SIZE, SIZE, 3) and res.dtype == np.uint8
    assert res.std() > 0
    # Without the instance map the label map's regions stand in: other edges, another image.
    code, _, err = _run(capsys, "synthesize", scenes / "labels" / "00000.png", "--model", models["clustered"],
                        "-o", tmp_path / "no-inst.png")
    assert code == 0, err
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "no-inst.png")), res)


def test_synthesize_batch_matches_instances_and_skips_bad_files(tmp_path, scenes, models, capsys):
    labels, insts, out = tmp_path / "labels", tmp_path / "insts", tmp_path / "results"
    labels.mkdir()
    insts.mkdir()
    for i in range(3):
        Image.open(scenes / "labels" / f"0000{i}.png").save(labels / f"s{i}.png")
        Image.open(scenes / "instances" / f"0000{i}.png").save(insts / f"s{i}.png")
    (labels / "notes.txt").write_text("not a label map")
    bad = np.asarray(Image.open(labels / "s0.png")).copy()
    bad[:4, :4] = 12  # ids 0..9 only
    Image.fromarray(bad).save(labels / "badids.png")
    np.save(insts / "badids.npy", np.zeros((SIZE, SIZE), np.int64))  # instance maps may be .npy
    Image.open(labels / "s0.png").save(labels / "noinst.png")
    Image.open(labels / "s1.png").save(labels / "small.png")
    Image.fromarray(np.zeros((SIZE, SIZE // 2), np.uint16)).save(insts / "small.png")
    code, outp, err = _run(capsys, "synthesize", labels, "--instances", insts, "--model", models["clustered"],
                           "-o", out)
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["s0.png", "s1.png", "s2.png"]
    assert "Traceback" not in err
    for name in ("notes.txt", "badids.png", "noinst.png", "small.png"):
        assert sum(name in ln for ln in err.splitlines()) == 1, (name, err)
    assert "wrote 3 images" in outp and "4 skipped" in outp
    # Batch results are the single-file results.
    single = _synth(capsys, tmp_path, scenes, models["clustered"], name="00001")
    assert np.array_equal(np.asarray(Image.open(out / "s1.png")), single)


def test_style_cluster_and_random_by_seed(tmp_path, scenes, models, capsys):
    model = models["clustered"]
    r1 = _synth(capsys, tmp_path, scenes, model, "--style-random", "--seed", "1", out="r1.png")
    assert np.array_equal(r1, _synth(capsys, tmp_path, scenes, model, "--style-random", "--seed", "1",
                                     out="r1b.png"))
    r2 = _synth(capsys, tmp_path, scenes, model, "--style-random", "--seed", "2", out="r2.png")
    assert not np.array_equal(r1, r2)
    c0 = _synth(capsys, tmp_path, scenes, model, "--style-cluster", "0", out="c0.png")
    c1 = _synth(capsys, tmp_path, scenes, model, "--style-cluster", "1", out="c1.png")
    assert not np.array_equal(c0, c1)
    # A cluster index picks the same centre whatever the seed.
    assert np.array_equal(c1, _synth(capsys, tmp_path, scenes, model, "--style-cluster", "1", "--seed", "5",
                                     out="c1b.png"))
    # A style photo is encoded by the model's encoder: deterministic, and not a stored centre.
    s = _synth(capsys, tmp_path, scenes, model, "--style-image", scenes / "images" / "00000.png", out="s.png")
    assert np.array_equal(s, _synth(capsys, tmp_path, scenes, model, "--style-image",
                                    scenes / "images" / "00000.png", out="s2.png"))
    assert not np.array_equal(s, c0)


def test_colour_labels_with_palette(tmp_path, scenes, models, capsys):
    grey = _synth(capsys, tmp_path, scenes, models["clustered"], out="grey.png")
    colour = scenes / "labels_color" / "00000.png"
    inst = scenes / "instances" / "00000.png"
    for palette in ("scenes", scenes / "manifest.json"):
        code, _, err = _run(capsys, "synthesize", colour, "--instances", inst, "--palette", palette,
                            "--model", models["clustered"], "-o", tmp_path / "c.png")
        assert code == 0, err
        assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), grey)
    # A JSON palette of its own: {"id": colour}.
    (tmp_path / "pal.json").write_text(json.dumps({str(i): c for i, c in enumerate(PALETTE.tolist())}))
    code, _, err = _run(capsys, "synthesize", colour, "--instances", inst, "--palette", tmp_path / "pal.json",
                        "--model", models["clustered"], "-o", tmp_path / "j.png")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "j.png")), grey)
    # A model file that stores its palette reads colour maps without --palette.
    code, _, err = _run(capsys, "synthesize", colour, "--instances", inst, "--model", models["palette"],
                        "-o", tmp_path / "m.png")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), grey)


def test_python_api(scenes, models):
    m = gancanvas.load(str(models["clustered"]))
    assert m.task == "synthesize" and m.uses_instances and m.has_clusters
    labels = read_label_map(scenes / "labels" / "00000.png")
    inst = read_instance_map(scenes / "instances" / "00000.png")
    out = m.synthesize(labels, inst, style=1)
    assert isinstance(out, np.ndarray) and out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    pil = m.synthesize(Image.fromarray(labels.astype(np.uint8)), Image.fromarray(inst.astype(np.int32)),
                       style=1)
    assert isinstance(pil, Image.Image)
    assert np.array_equal(np.asarray(pil), out)
    assert np.array_equal(m.synthesize(labels, inst, style="random", seed=3),
                          m.synthesize(labels, inst, style="random", seed=3))
    colour = np.asarray(Image.open(scenes / "labels_color" / "00000.png"))
    assert np.array_equal(m.synthesize(colour, inst, style=1, palette="scenes"), out)
    # Sizes that are no multiple of the model's stride, down to one pixel: padded and cropped back.
    for h, w in ((37, 50), (1, 1), (4, 9)):
        assert m.synthesize(labels[:h, :w], inst[:h, :w]).shape == (h, w, 3)
    bad = labels.copy()
    bad[0, 0] = 10
    with pytest.raises(InputError, match="outside this model's range 0..9"):
        m.synthesize(bad, inst)
    with pytest.raises(InputError, match="instance map is"):
        m.synthesize(labels, inst[:, :32])


@pytest.mark.parametrize("case", ["ids", "negative", "inst_size", "colours", "no_palette", "no_clusters",
                                  "cluster_range", "no_style", "no_instances", "style_size", "task",
                                  "missing", "default"])
def test_synthesize_bad_input_one_line(tmp_path, scenes, models, capsys, monkeypatch, case):
    labels, inst = scenes / "labels" / "00000.png", scenes / "instances" / "00000.png"
    model, opts = models["clustered"], []
    ids = np.asarray(Image.open(labels)).copy()
    if case == "ids":
        ids[:3, :3] = 11
        ids[5, 5] = 255
        labels = tmp_path / "ids.png"
        Image.fromarray(ids).save(labels)
        needles = ["ids.png", "11 (9 px)", "255 (1 px)", "0..9"]
    elif case == "negative":
        labels = tmp_path / "neg.tif"
        Image.fromarray(ids.astype(np.int32) - 1).save(labels)
        needles = ["neg.tif", "-1", "0..9"]
    elif case == "inst_size":
        inst = tmp_path / "inst.png"
        Image.fromarray(np.zeros((SIZE, SIZE + 8), np.uint16)).save(inst)
        needles = ["inst.png", "same size"]
    elif case == "colours":
        colour = np.asarray(Image.open(scenes / "labels_color" / "00000.png")).copy()
        colour[:2, :2] = (1, 2, 3)
        labels = tmp_path / "colour.png"
        Image.fromarray(colour).save(labels)
        opts, needles = ["--palette", "scenes"], ["colour.png", "not in the palette", "(1, 2, 3) in 4 px"]
    elif case == "no_palette":
        labels, needles = scenes / "labels_color" / "00000.png", ["needs a palette"]
    elif case == "no_clusters":
        model, opts, needles = models["plain"], ["--style-cluster", "0"], ["stores no style clusters"]
    elif case == "cluster_range":
        opts, needles = ["--style-cluster", "3"], ["style cluster 3 is out of range", "0..2"]
    elif case == "no_style":
        model, inst, opts = models["no_style"], None, ["--style-random"]
        needles = ["cannot use a random style", "takes no style"]
    elif case == "no_instances":
        model, needles = models["no_style"], ["takes no instance map"]
    elif case == "style_size":
        style = tmp_path / "style.png"
        Image.fromarray(np.zeros((SIZE // 2, SIZE, 3), np.uint8)).save(style)
        opts, needles = ["--style-image", style], ["style.png", "64x32", "same size"]
    elif case == "task":
        model, needles = models["outpaint"], ["this is an 'outpaint' model (srn), not a 'synthesize' model"]
    elif case == "missing":
        labels, needles = tmp_path / "nope.png", ["nope.png"]
    else:
        monkeypatch.setattr(registry, "PRETRAINED", {})
        model, needles = None, ["no built-in default model for task 'synthesize'"]
    argv = ["synthesize", labels, *(["--instances", inst] if inst is not None else []), *opts,
            *(["--model", model] if model is not None else []), "-o", tmp_path / "o.png"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _one_line_error(err, *needles)
    assert not (tmp_path / "o.png").exists()


def test_features_cluster_writes_model_with_clusters(tmp_path, scenes, models, capsys):
    out = tmp_path / "clustered.safetensors"
    code, stdout, err = _run(capsys, "features", "cluster", models["plain"], "--data", scenes, "-k", "2",
                             "--seed", "0", "-o", out)
    assert code == 0, err
    assert "style centres" in stdout
    m = gancanvas.load(str(out))
    clusters = m.model.clusters()
    assert clusters and all(1 <= len(c) <= 2 for c in clusters.values())
    # The rest of the model is the input model, unchanged.
    before, _ = load_model(models["plain"])
    after, meta = load_model(out)
    for k, v in before.state_dict().items():
        if not k.startswith("cluster_"):
            assert torch.equal(v, after.state_dict()[k]), k
    assert meta["extra"]["clusters"]["k"] == 2 and meta["extra"]["clusters"]["samples"] == 3
    # Same seed, same centres; the clustered model takes cluster styles.
    code, _, err = _run(capsys, "features", "cluster", models["plain"], "--data", scenes, "-k", "2",
                        "-o", tmp_path / "again.safetensors")
    assert code == 0, err
    again = gancanvas.load(str(tmp_path / "again.safetensors")).model.clusters()
    assert clusters.keys() == again.keys()
    assert all(np.array_equal(clusters[c], again[c]) for c in clusters)
    _synth(capsys, tmp_path, scenes, out, "--style-cluster", "1")


@pytest.mark.parametrize("case", ["no_features", "k", "data"])
def test_features_cluster_errors_one_line(tmp_path, scenes, models, capsys, case):
    model, k, data = models["plain"], "2", scenes
    if case == "no_features":
        model, needle = models["no_style"], "instance features"
    elif case == "k":
        k, needle = "5", "n_clusters"
    else:
        data, needle = tmp_path, "no label maps found"
    code, _, err = _run(capsys, "features", "cluster", model, "--data", data, "-k", k,
                        "-o", tmp_path / "o.st")
    assert code == 2
    _one_line_error(err, needle)
    assert not (tmp_path / "o.st").exists()


# --------------------------------------------------------------------------------------------- SPADE / SEAN
@pytest.fixture(scope="module")
def spade_sean(tmp_path_factory):
    d = tmp_path_factory.mktemp("spade")
    paths = {}
    for name, arch, cfg in [
        ("spade", "spade", {"label_nc": 10, "ngf": 2, "spade_hidden": 4, "ndf": 4}),
        ("spade_vae", "spade", {"label_nc": 10, "ngf": 2, "spade_hidden": 4, "ndf": 4, "use_vae": True,
                                "z_dim": 4, "crop_size": SIZE}),
        ("sean", "sean", {"label_nc": 10, "ngf": 2, "spade_hidden": 4, "ndf": 4, "style_dim": 4,
                          "encoder_ngf": 4}),
    ]:
        torch.manual_seed(0)
        model = registry.create(arch, **cfg)
        with torch.no_grad():
            # An untrained generator's output is flat grey; amplify it so z / styles show in uint8,
            # and give SEAN's noise (zero-initialised scales) a say, so its seed matters.
            model.conv_img.weight.mul_(1e4)
            for k, v in model.named_parameters():
                if k.endswith("noise_var"):
                    v.fill_(1.0)
        paths[name] = _save(d / f"{name}.safetensors", arch, cfg, model)
    return paths


def test_spade_and_sean_styles(tmp_path, scenes, spade_sean, capsys):
    labels, inst = scenes / "labels" / "00000.png", scenes / "instances" / "00000.png"
    photo = scenes / "images" / "00000.png"

    def synth(model, *opts, out="o.png"):
        code, _, err = _run(capsys, "synthesize", labels, "--model", model, *opts, "-o", tmp_path / out)
        assert code == 0, err
        return np.asarray(Image.open(tmp_path / out))

    assert synth(spade_sean["spade"], "--instances", inst).shape == (SIZE, SIZE, 3)
    vae = spade_sean["spade_vae"]
    a, b = synth(vae, "--style-random", "--seed", "1"), synth(vae, "--style-random", "--seed", "2")
    assert np.array_equal(a, synth(vae, "--style-random", "--seed", "1")) and not np.array_equal(a, b)
    assert synth(vae, "--style-image", photo).shape == (SIZE, SIZE, 3)

    from gancanvas.styles import StyleCodes

    m = gancanvas.load(str(spade_sean["sean"]))
    ids = read_label_map(labels)
    image = torch.from_numpy(np.array(Image.open(photo))).permute(2, 0, 1)[None].float() / 127.5 - 1
    (codes,) = StyleCodes.extract(m.model, image, m.model.semantic_input(torch.from_numpy(ids)[None]))
    codes.save(tmp_path / "codes.safetensors")
    by_codes = synth(spade_sean["sean"], "--styles", tmp_path / "codes.safetensors")
    assert np.array_equal(by_codes, synth(spade_sean["sean"], "--style", tmp_path / "codes.safetensors"))
    # Codes extracted from the photo under its label map reproduce --style-image (same noise seed).
    assert np.array_equal(by_codes, synth(spade_sean["sean"], "--style-image", photo, out="p.png"))
    assert np.array_equal(by_codes, m.synthesize(ids, style=codes))
    assert np.array_equal(by_codes, m.synthesize(ids, styles=codes))
    assert not np.array_equal(by_codes, m.synthesize(ids, style=codes, seed=1))


@pytest.mark.parametrize("case", ["spade_style", "vae_cluster", "sean_none", "sean_instances"])
def test_spade_and_sean_errors_one_line(tmp_path, scenes, spade_sean, capsys, case):
    labels, inst = scenes / "labels" / "00000.png", scenes / "instances" / "00000.png"
    opts = {"spade_style": ["--style-random"], "vae_cluster": ["--style-cluster", "1"], "sean_none": [],
            "sean_instances": ["--instances", inst]}[case]
    model = {"spade_style": "spade", "vae_cluster": "spade_vae", "sean_none": "sean",
             "sean_instances": "sean"}
    needle = {"spade_style": "without the VAE encoder", "vae_cluster": "cannot use a style cluster",
              "sean_none": "needs a style", "sean_instances": "takes no instance map"}[case]
    code, _, err = _run(capsys, "synthesize", labels, *opts, "--model", spade_sean[model[case]],
                        "-o", tmp_path / "o.png")
    assert code == 2
    _one_line_error(err, needle)


def test_batch_model_wide_problem_reported_once(tmp_path, scenes, models, capsys):
    code, _, err = _run(capsys, "synthesize", scenes / "labels", "--instances", scenes / "instances",
                        "--style-cluster", "0", "--model", models["plain"], "-o", tmp_path / "out")
    assert code == 2
    _one_line_error(err, "stores no style clusters")
    assert not (tmp_path / "out").exists()


def test_styles_extract_feeds_synthesize(tmp_path, scenes, spade_sean, models, capsys):
    from gancanvas.styles import StyleCodes

    sean, labels = spade_sean["sean"], scenes / "labels" / "00000.png"
    code, out, err = _run(capsys, "styles", "extract", scenes / "images" / "00000.png", "--labels", labels,
                          "--model", sean, "-o", tmp_path / "a.safetensors")
    assert code == 0, err
    assert "regions" in out and not err
    m = gancanvas.load(str(sean))
    codes = StyleCodes.load(tmp_path / "a.safetensors", m.model)
    assert torch.equal(codes.codes, m.extract_styles(labels, scenes / "images" / "00000.png").codes)
    ids = read_label_map(labels)
    assert codes.missing_in(np.unique(ids)) == []
    # The file drives synthesize exactly like the photo it came from.
    for opts, name in ((["--styles", tmp_path / "a.safetensors"], "c.png"),
                       (["--style-image", scenes / "images" / "00000.png"], "p.png")):
        code, _, err = _run(capsys, "synthesize", labels, *opts, "--model", sean, "-o", tmp_path / name)
        assert code == 0, err
    by_codes, by_photo = (np.asarray(Image.open(tmp_path / n)) for n in ("c.png", "p.png"))
    assert np.array_equal(by_codes, by_photo)

    # The old spelling (LABELS --image PHOTO) still works, with a deprecation warning.
    code, _, err = _run(capsys, "styles", "extract", labels, "--image", scenes / "images" / "00000.png",
                        "--model", sean, "-o", tmp_path / "old.safetensors")
    assert code == 0 and "deprecated" in err
    assert torch.equal(StyleCodes.load(tmp_path / "old.safetensors").codes, codes.codes)

    # Folders: one file per photo (label maps by stem), the mean, bad files skipped.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, src in (("00000", "00000"), ("00001", "00001"), ("extra", "00002")):
        Image.open(scenes / "images" / f"{src}.png").save(photos / f"{name}.png")
    code, out, err = _run(capsys, "styles", "extract", photos, "--labels", scenes / "labels", "--model", sean,
                          "--mean", tmp_path / "mean.safetensors", "-o", tmp_path / "codes")
    assert code == 2
    errors = re.findall(r"error: [^\r\n]*", err)  # between progress-bar redraws
    assert len(errors) == 1 and "extra.png" in errors[0] and "no label map" in errors[0]
    written = sorted(p.name for p in (tmp_path / "codes").iterdir())
    assert written == ["00000.safetensors", "00001.safetensors"]
    mean = StyleCodes.load(tmp_path / "mean.safetensors", m.model)
    assert mean.present.sum() >= codes.present.sum()
    # A model without per-region codes: one line.
    code, _, err = _run(capsys, "styles", "extract", scenes / "images" / "00000.png", "--labels", labels,
                        "--model", models["clustered"], "-o", tmp_path / "x.safetensors")
    assert code == 2
    _one_line_error(err, "no per-region style codes")
