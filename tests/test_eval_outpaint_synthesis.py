"""The outpainting and label-to-image evaluation protocols: fixed margin sets, metrics over the
unknown region only, the reflect / cv2 / class-mean baselines, tiny SRN / SEAN / pix2pixHD runs checked
against numpy, and the `gancanvas eval` / `gancanvas data margins` command lines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gancanvas import registry
from gancanvas.cli import main
from gancanvas.data.margins import read_margin_set, write_margin_set
from gancanvas.data.synthetic import write_scenes
from gancanvas.errors import InputError
from gancanvas.eval import (
    OUTPAINT_BASELINES,
    EvalResult,
    class_mean,
    compare,
    evaluate_outpaint,
    evaluate_synthesis,
    reflect_pad,
)
from gancanvas.eval.metrics import PSNR_CAP
from gancanvas.pipelines import Outpainter
from gancanvas.weights import save_model

SIZE = 64  # canvas and scenes
KNOWN = 32
SEAN = {"label_nc": 10, "ngf": 4, "style_dim": 8, "encoder_ngf": 4, "spade_hidden": 8, "ndf": 8,
        "param_free_norm": "batch"}
P2P = {"label_nc": 10, "ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1, "instance_feat": True,
       "nef": 4, "n_downsample_E": 2, "n_clusters": 4, "ndf": 4, "num_D": 1, "n_layers_D": 2}


def _save(path, arch, cfg):
    torch.manual_seed(0)
    model = registry.create(arch, **cfg)
    save_model(path, model, arch=arch, config=registry.model_config(arch, cfg).__dict__)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, size=SIZE, count=3, seed=0, color_labels=False)
    return root


@pytest.fixture(scope="module")
def margins(tmp_path_factory):
    d = tmp_path_factory.mktemp("margins")
    write_margin_set(d, size=SIZE, known=KNOWN, count=4, seed=0)
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "srn": _save(d / "srn.safetensors", "srn", {"g_cnum": 4, "d_cnum": 4}),
        # official SRN with ratio 9: a 3x canvas per side, not the set's 2x.
        "srn9": _save(d / "srn9.safetensors", "srn", {"g_cnum": 4, "d_cnum": 4, "compat": "official",
                                                       "ratio": 9}),
        "sean": _save(d / "sean.safetensors", "sean", SEAN),
        "p2p": _save(d / "p2p.safetensors", "pix2pixhd", P2P),
        "deepfill": _save(d / "deepfill.safetensors", "deepfill_v2", {"cnum": 4}),
    }


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ----------------------------------------------------------------------------- margin sets

def test_margin_set_is_deterministic_and_versioned(tmp_path):
    kw = dict(size=SIZE, known=KNOWN, count=6, mode="random")
    a = write_margin_set(tmp_path / "a", seed=3, **kw)
    b = write_margin_set(tmp_path / "b", seed=3, **kw)
    c = write_margin_set(tmp_path / "c", seed=4, **kw)
    ra, rb = (tmp_path / "a" / "manifest.json").read_bytes(), (tmp_path / "b" / "manifest.json").read_bytes()
    assert ra == rb and a == b
    for e in a["files"]:
        assert (tmp_path / "a" / e["file"]).read_bytes() == (tmp_path / "b" / e["file"]).read_bytes()
    assert [e["margins"] for e in c["files"]] != [e["margins"] for e in a["files"]]
    assert a["version"] == 1 and a["seed"] == 3 and a["size"] == [SIZE, SIZE] and a["known"] == [KNOWN] * 2
    for e in a["files"]:
        t, left, b_, r = e["margins"]
        assert t + b_ == SIZE - KNOWN and left + r == SIZE - KNOWN and min(e["margins"]) >= 0
        mask = np.asarray(Image.open(tmp_path / "a" / e["file"]))
        assert not mask[t:t + KNOWN, left:left + KNOWN].any() and mask.sum() == 255 * (SIZE**2 - KNOWN**2)
    # Entry j depends on j only: a shorter set is a prefix; one-sided boxes touch an edge per axis.
    short = write_margin_set(tmp_path / "short", seed=3, **{**kw, "count": 2})
    assert [e["margins"] for e in short["files"]] == [e["margins"] for e in a["files"][:2]]
    one = write_margin_set(tmp_path / "one", seed=3, **{**kw, "mode": "one-sided"})
    for m in (e["margins"] for e in one["files"]):
        assert (m[0] == 0 or m[2] == 0) and (m[1] == 0 or m[3] == 0)
    assert read_margin_set(tmp_path / "a", verify=True)["count"] == 6
    with pytest.raises(InputError, match="different margin set"):
        write_margin_set(tmp_path / "a", seed=5, **kw)


# ----------------------------------------------------------------------------- outpainting

def test_reflect_baseline_keeps_known_pixels_exactly():
    rng = np.random.default_rng(0)
    known = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for m in [(3, 2, 5, 20), (0, 0, 9, 0), (12, 15, 1, 1)]:
        out = reflect_pad(known, m)
        assert out.shape == (9 + m[0] + m[2], 7 + m[1] + m[3], 3)
        assert np.array_equal(out[m[0]:m[0] + 9, m[1]:m[1] + 7], known)
    out = reflect_pad(known, (0, 0, 0, 3))
    assert np.array_equal(out[:, 7:], known[:, 5:2:-1])  # mirrored about the last column


def test_outpaint_metrics_only_over_the_unknown_region(scenes, margins, models, monkeypatch):
    import gancanvas
    from gancanvas.data.io import list_images, read_image

    pipe = gancanvas.load(models["srn"])
    assert isinstance(pipe, Outpainter)
    gts = iter([read_image(p) for p in list_images(scenes / "images")[0]])

    def run(self, known, m):
        # The ground truth in the unknown region, garbage in the known box: a perfect score, since
        # the known box is taken from the ground truth and only the margins are scored.
        gt = next(gts)
        h, w = known.shape[:2]
        assert np.array_equal(known, gt[m.top:m.top + h, m.left:m.left + w])  # only the known box given
        out = gt.copy()
        out[m.top:m.top + h, m.left:m.left + w] = 255 - known
        return type("R", (), {"image": out})()

    monkeypatch.setattr(Outpainter, "run", run)
    res = evaluate_outpaint(pipe, scenes / "images", margins, progress=False)
    for rec in res.records:
        assert rec["values"]["hole_l1"] == 0 and rec["values"]["psnr"] == PSNR_CAP
        assert rec["values"]["ssim"] == pytest.approx(1.0, abs=1e-12)
    man = json.loads((margins / "manifest.json").read_text())
    assert [r["mask"] for r in res.records] == [e["file"] for e in man["files"][:3]]
    assert res.info["protocol"] == "outpaint" and res.info["margin_set"]["seed"] == 0


def test_outpaint_model_and_baselines_against_numpy(scenes, margins, models):
    from gancanvas.data.io import list_images, read_image

    res = {name: evaluate_outpaint(name if name in OUTPAINT_BASELINES else models["srn"], scenes / "images",
                                   margins, progress=False)
           for name in ("srn", "reflect", "telea")}
    # The reflect row by hand on image 0: hole_l1 over the margins only, PSNR over the whole canvas.
    gt = read_image(list_images(scenes / "images")[0][0]).astype(np.float64) / 255
    e = json.loads((margins / "manifest.json").read_text())["files"][0]
    t, left, _, _ = e["margins"]
    known = (gt[t:t + KNOWN, left:left + KNOWN] * 255).round().astype(np.uint8)
    out = reflect_pad(known, e["margins"]).astype(np.float64) / 255
    unknown = np.ones((SIZE, SIZE), bool)
    unknown[t:t + KNOWN, left:left + KNOWN] = False
    d = out - gt
    v = res["reflect"].records[0]["values"]
    assert v["hole_l1"] == pytest.approx(100 * np.abs(d[unknown]).mean(), abs=1e-9)
    assert v["psnr"] == pytest.approx(10 * math.log10(1 / (d**2).mean()), abs=1e-9)
    assert 0 < res["srn"].records[0]["values"]["hole_l1"] < 100
    table = compare(res)
    assert "hole_l1 srn" in table and "psnr reflect" in table and "| all" in table


# ----------------------------------------------------------------------------- label to image

def test_class_mean_is_exact_on_piecewise_constant_images(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.repeat(rng.integers(0, 10, (4, 4)), 8, 0), 8, 1)
    colours = rng.integers(0, 256, (10, 3), dtype=np.uint8)
    photo = colours[labels]
    assert np.array_equal(class_mean(labels, None, photo), photo)
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "labels" / "a.png")
    Image.fromarray(photo).save(tmp_path / "images" / "a.png")
    res = evaluate_synthesis("class-mean", tmp_path / "labels", tmp_path / "images", progress=False)
    v = res.records[0]["values"]
    assert v["psnr"] == PSNR_CAP and v["rmse"] == 0 and v["l1"] == 0 and v["ssim"] == pytest.approx(1.0)
    assert list(res.summary()) == ["all"]


def test_synthesis_on_tiny_sean_and_pix2pixhd_matches_numpy(scenes, models):
    import gancanvas
    from gancanvas.data.io import read_image
    from gancanvas.data.labels import read_instance_map, read_label_map

    for key, kw in (("sean", {}), ("p2p", {"instances_dir": scenes / "instances"})):
        res = evaluate_synthesis(models[key], scenes / "labels", scenes / "images", progress=False, **kw)
        assert [r["image"] for r in res.records] == ["00000.png", "00001.png", "00002.png"]
        assert {r["style"] for r in res.records} == {"image"}  # the reconstruction setting
        # Independently: the pipeline's output for image 0 with the photo as style, metrics in numpy.
        pipe = gancanvas.load(models[key])
        labels = read_label_map(scenes / "labels" / "00000.png")
        photo = read_image(scenes / "images" / "00000.png")
        inst = read_instance_map(scenes / "instances" / "00000.png") if kw else None
        out = pipe.run(labels, inst, style=photo, seed=0).image
        d = out.astype(np.float64) / 255 - photo.astype(np.float64) / 255
        v = res.records[0]["values"]
        assert v["rmse"] == pytest.approx(math.sqrt((d**2).mean()), abs=1e-12)
        assert v["psnr"] == pytest.approx(-20 * math.log10(math.sqrt((d**2).mean())), abs=1e-9)
        assert v["l1"] == pytest.approx(100 * np.abs(d).mean(), abs=1e-9)
        skimage = pytest.importorskip("skimage.metrics")
        ref = skimage.structural_similarity(out / 255, photo / 255, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, channel_axis=-1, data_range=1)
        assert v["ssim"] == pytest.approx(ref, abs=1e-9)
    roundtrip = EvalResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert roundtrip.summary() == res.summary() and res.info["not_computed"]["miou"]


# ----------------------------------------------------------------------------- command line

def test_cli_margins_and_eval_tables(tmp_path, scenes, models, capsys):
    d = tmp_path / "m"
    code, out, _ = _run(capsys, "data", "margins", "--size", SIZE, "--count", 2, "--known", KNOWN,
                        "--seed", 1, "--mode", "one-sided", "-o", d)
    assert code == 0 and "2 one-sided margins" in out
    assert read_margin_set(d)["mode"] == "one-sided"
    js = tmp_path / "out.json"
    code, out, err = _run(capsys, "eval", models["srn"], "--images", scenes / "images", "--margins", d,
                          "--baseline", "reflect", "--baseline", "telea", "--json", js)
    assert code == 0, err
    assert "hole_l1 reflect" in out and "ssim telea" in out
    payload = json.loads(js.read_text())
    assert len(payload) == 3 and all(v["info"]["protocol"] == "outpaint" for v in payload.values())
    code, out, err = _run(capsys, "eval", "class-mean", "--labels", scenes / "labels", "--images",
                          scenes / "images")
    assert code == 0, err
    assert "rmse" in out and "| all" in out


def test_python_methods_of_another_task_name_their_protocol(models):
    from gancanvas.eval.outpaint import outpaint_method
    from gancanvas.eval.synthesis import synthesis_method

    with pytest.raises(InputError, match=r"'inpaint' model \(deepfill_v2\): evaluate it with --masks DIR .*"
                                         r"not --margins$"):
        outpaint_method(models["deepfill"])
    with pytest.raises(InputError, match=r"'outpaint' model \(srn\): evaluate it with --margins DIR .*"
                                         r"not --labels$"):
        synthesis_method(models["srn"])
    with pytest.raises(InputError, match="not an outpainting method: int"):
        outpaint_method(3)
    with pytest.raises(InputError, match="not a label-to-image method: int"):
        synthesis_method(3)
    name, fn, pipe = outpaint_method("reflect")
    assert name == "reflect" and pipe is None and callable(fn)


def test_cli_one_line_errors(tmp_path, scenes, margins, models, capsys):
    imgs, labels = scenes / "images", scenes / "labels"
    # Wrong task for the protocol, both ways.
    _one_line_error(*_run(capsys, "eval", models["srn"], "--images", imgs, "--masks", margins)[:3:2],
                    "outpaint", "--margins")
    _one_line_error(*_run(capsys, "eval", models["deepfill"], "--images", imgs, "--margins", margins)[:3:2],
                    "inpaint", "--masks")
    _one_line_error(*_run(capsys, "eval", models["sean"], "--images", imgs, "--margins", margins)[:3:2],
                    "synthesize", "--labels")
    _one_line_error(*_run(capsys, "eval", models["srn"], "--images", imgs, "--labels", labels)[:3:2],
                    "outpaint", "--margins")
    # A model whose expansion does not fit the margin set: names both.
    _one_line_error(*_run(capsys, "eval", models["srn9"], "--images", imgs, "--margins", margins)[:3:2],
                    "srn9", str(margins), "32x32 known box on a 64x64 canvas")
    # Baselines of another protocol, no protocol, two protocols.
    _one_line_error(*_run(capsys, "eval", models["srn"], "--images", imgs, "--margins", margins,
                          "--baseline", "class-mean")[:3:2], "unknown outpainting baseline")
    _one_line_error(*_run(capsys, "eval", "telea", "--images", imgs)[:3:2], "--margins")
    _one_line_error(*_run(capsys, "eval", "telea", "--images", imgs, "--masks", margins, "--labels",
                          labels)[:3:2], "--masks and --labels")
    # Missing pairs and mismatched sizes for label to image.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(lonely / "zzz.png")
    _one_line_error(*_run(capsys, "eval", "class-mean", "--labels", lonely, "--images", imgs)[:3:2],
                    "zzz.png", "stem")
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((SIZE // 2, SIZE // 2, 3), np.uint8)).save(small / "00000.png")
    one = tmp_path / "one"
    one.mkdir()
    (one / "00000.png").write_bytes((labels / "00000.png").read_bytes())
    _one_line_error(*_run(capsys, "eval", models["sean"], "--labels", one, "--images", small)[:3:2],
                    "32x32", "64x64")
    # Images smaller than the margin set's canvas.
    _one_line_error(*_run(capsys, "eval", "reflect", "--images", small, "--margins", margins)[:3:2],
                    "smaller than the evaluation crop")
