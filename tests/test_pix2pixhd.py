"""pix2pixHD: parity with the official PyTorch outputs, the converter and its errors, label and
instance maps (reading, checks, one-hot, edges), instance pooling, the discriminators, style
sampling and clustering.

Fixtures: tests/fixtures/official/pix2pixhd (made by running NVIDIA/pix2pixHD's test entry point;
see /work/shared/fixtures/official/README.md). Arrays are NCHW, RGB, [-1, 1]. Tolerance: atol 2e-5
on outputs and pooled features (the README's suggestion; the float32-vs-float64 gap of the
official networks is below 2e-6); one-hot, edges, sampled features and cluster picks exactly.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancanvas.convert.pix2pixhd import (
    convert_pix2pixhd,
    encoder_options,
    generator_options,
    read_official_clusters,
    read_torch_state,
)
from gancanvas.data.labels import (
    Palette,
    check_instances,
    check_labels,
    coerce_label_map,
    find_label_dataset,
    instance_classes,
    instance_edges,
    load_palette,
    one_hot,
    read_instance_map,
    read_label_map,
    read_label_sample,
)
from gancanvas.data.synthetic import PALETTE, write_scenes
from gancanvas.errors import CheckpointError, ConfigError, InputError
from gancanvas.losses.gan import adversarial_loss, feature_matching_loss
from gancanvas.models.pix2pixhd import (
    MultiscaleDiscriminator,
    Pix2PixHD,
    Pix2PixHDConfig,
    build_pix2pixhd_discriminator,
    instance_average,
)
from gancanvas.models.pix2pixhd_features import cluster_features, collect_features, kmeans
from gancanvas.weights import load_model

FIX = Path(__file__).parent / "fixtures" / "official" / "pix2pixhd"
ATOL = 2e-5
FEAT = FIX / "feat_ngf4_nef4"


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def case(name: str) -> dict[str, np.ndarray]:
    with np.load(FIX / f"case_{name}.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Pix2PixHD]:
    d = tmp_path_factory.mktemp("p2phd")
    out = {}
    for name, folder, opts in [
        ("global", "global_ngf8", {"label_nc": 6}),
        ("local", "local_ngf4", {"label_nc": 6}),
        ("feat", "feat_ngf4_nef4", {"label_nc": 35, "encoder": FEAT / "latest_net_E.pth",
                                    "clusters": FEAT / "features_clustered_010.npy"}),
    ]:
        convert_pix2pixhd(FIX / folder / "latest_net_G.pth", d / f"{name}.safetensors", **opts)
        model, meta = load_model(d / f"{name}.safetensors")
        assert meta["arch"] == "pix2pixhd" and meta["config"]["compat"] == "official"
        out[name] = model
    return out


# --------------------------------------------------------------------------------------------
# Parity with the official outputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["global", "local"])
def test_parity_without_features(converted, name):
    z, model = case(name), converted[name]
    assert model.cfg.n_local_enhancers == (name == "local")
    labels, inst = z["label_ids"].astype(np.int64), z["inst_ids"]
    with torch.no_grad():
        sem = model.semantic_input(labels, inst)
        out = model(labels, inst)
    np.testing.assert_array_equal(sem[:, :-1].numpy(), z["one_hot"])
    np.testing.assert_array_equal(sem[:, -1:].numpy(), z["edge"])
    np.testing.assert_array_equal(sem.numpy(), z["G_input"])
    np.testing.assert_allclose(out.numpy(), z["output"], atol=ATOL, rtol=0)
    # The official loaders' float label tensor (B, 1, H, W) and int32 instance tensor work too.
    with torch.no_grad():
        out2 = model(torch.from_numpy(z["label_tensor"]), torch.from_numpy(z["inst_tensor"]))
    torch.testing.assert_close(out2, out, atol=0, rtol=0)


def test_parity_encoded_features(converted):
    z, model = case("feat_encoded"), converted["feat"]
    image, inst = torch.from_numpy(z["image"]), torch.from_numpy(z["inst_ids"]).long()
    with torch.no_grad():
        raw = model.E.raw(image)
        pooled = model.encode(image, inst)
        out = model.synthesize(z["label_ids"].astype(np.int64), z["inst_ids"], image=image)
        g_in = torch.cat([model.semantic_input(z["label_ids"].astype(np.int64), z["inst_ids"]), pooled], 1)
    np.testing.assert_allclose(raw.numpy(), z["E_raw"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(pooled.numpy(), z["E_pooled"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(g_in.numpy(), z["G_input"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.numpy(), z["output"], atol=ATOL, rtol=0)
    # encode_features.py rows: [mean feature, pixel count / (H*W // 32)] per class.
    rows = collect_features(model, [{"image": image, "instances": z["inst_ids"][0]}])
    expected = {int(k.rsplit("class", 1)[1]): z[k] for k in z if k.startswith("encode_features_class")}
    assert sorted(rows) == sorted(expected)
    for cls, r in expected.items():
        np.testing.assert_allclose(rows[cls][:, :-1], r[:, :-1], atol=ATOL, rtol=0)
        np.testing.assert_array_equal(rows[cls][:, -1], r[:, -1])


def test_parity_sampled_features(converted):
    z, model = case("feat_sampled"), converted["feat"]
    meta = json.loads((FIX / "meta.json").read_text())["cases"]["feat_sampled"]["sampling"]
    labels, inst = z["label_ids"].astype(np.int64), z["inst_ids"]
    with torch.no_grad():
        seed = meta["np.random.seed"]
        feat, picks = model.sample_features(torch.from_numpy(inst).long(), "random", seed=seed)
        out = model.synthesize(labels, inst, seed=seed)
        out_fed = model(labels, inst, features=torch.from_numpy(z["G_input"][:, -3:]))
    np.testing.assert_array_equal(feat.numpy(), z["feat_map"])
    assert [picks[(-1, int(i))] for i in z["sampled_instance_ids"]] == z["sampled_cluster_index"].tolist()
    np.testing.assert_allclose(out.numpy(), z["output"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out_fed.numpy(), z["output"], atol=ATOL, rtol=0)


def test_clusters_travel_with_the_model_file(converted):
    official = read_official_clusters(FEAT / "features_clustered_010.npy")
    stored = converted["feat"].clusters()
    assert sorted(stored) == sorted(official) == [7, 8, 11, 12, 21, 23, 24, 26, 33]
    for cls, centres in official.items():
        np.testing.assert_array_equal(stored[cls], centres.astype(np.float32))
    assert converted["feat"].cfg.n_clusters == 10


# --------------------------------------------------------------------------------------------
# Converter: options from the weights, errors
# --------------------------------------------------------------------------------------------


def test_options_read_off_the_weights():
    g = generator_options(read_torch_state(FIX / "local_ngf4" / "latest_net_G.pth"))
    assert g == {"n_downsample_global": 3, "n_blocks_global": 2, "n_local_enhancers": 1, "input_nc": 7,
                 "ngf": 4, "n_blocks_local": 1, "output_nc": 3, "norm": "instance"}
    e = encoder_options(read_torch_state(FEAT / "latest_net_E.pth"))
    assert e == {"nef": 4, "input_nc": 3, "feat_num": 3, "n_downsample_E": 4, "norm": "instance"}


def test_convert_errors(tmp_path):
    out = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError) as err:  # wrong label_nc
        convert_pix2pixhd(FIX / "global_ngf8" / "latest_net_G.pth", out, label_nc=35)
    msg = one_line(err)
    assert "shape mismatch" in msg and "model.1.weight (8, 7, 7, 7)" in msg and "label_nc 6" in msg
    with pytest.raises(CheckpointError, match="instance_feat.*--encoder"):  # a feature G without E/clusters
        convert_pix2pixhd(FEAT / "latest_net_G.pth", out, label_nc=35)
    with pytest.raises(CheckpointError, match="feature encoder.*--encoder"):  # E given as G
        convert_pix2pixhd(FEAT / "latest_net_E.pth", out, label_nc=35)
    with pytest.raises(CheckpointError, match="takes no style features"):
        convert_pix2pixhd(FIX / "global_ngf8" / "latest_net_G.pth", out, label_nc=6,
                          encoder=FEAT / "latest_net_E.pth")
    spade = tmp_path / "spade_G.pth"  # the key layout of an official SPADE generator
    torch.save({"fc.weight": torch.zeros(32, 8, 3, 3), "head_0.conv_0.weight_orig": torch.zeros(32, 32, 3, 3),
                "conv_img.weight": torch.zeros(3, 2, 3, 3)}, spade)
    with pytest.raises(CheckpointError, match="SPADE checkpoint"):
        convert_pix2pixhd(spade, out, label_nc=6)
    disc = tmp_path / "latest_net_D.pth"
    torch.save(build_pix2pixhd_discriminator(Pix2PixHDConfig(label_nc=6, ndf=4, num_D=1)).state_dict(), disc)
    with pytest.raises(CheckpointError, match="discriminator"):
        convert_pix2pixhd(disc, out, label_nc=6)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        convert_pix2pixhd(text, out, label_nc=6)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        convert_pix2pixhd(FIX / "case_global.npz", out, label_nc=6)
    with pytest.raises(CheckpointError, match="file not found"):
        convert_pix2pixhd(tmp_path / "missing.pth", out, label_nc=6)
    with pytest.raises(CheckpointError, match="class ids 40 are outside label_nc 35"):
        convert_pix2pixhd(FEAT / "latest_net_G.pth", out, label_nc=35, clusters=_clusters_file(
            tmp_path / "c.npy", {7: np.zeros((2, 3)), 40: np.zeros((1, 3))}))
    assert not out.exists()


def _clusters_file(path: Path, centres: dict) -> Path:
    np.save(path, centres, allow_pickle=True)
    return path


class _Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_clusters_reader_never_runs_pickle_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.npy"
    with open(evil, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array({7: _Boom()}, dtype=object), f, protocol=4)
    with pytest.raises(CheckpointError, match="forbidden global"):
        read_official_clusters(evil)
    assert not (tmp_path / "PWNED").exists()
    np.save(tmp_path / "plain.npy", np.zeros((4, 3)))
    with pytest.raises(CheckpointError, match="not the official clusters dict"):
        read_official_clusters(tmp_path / "plain.npy")
    with pytest.raises(CheckpointError, match="not a .npy file"):
        read_official_clusters(FIX / "meta.json")
    # numpy scalar keys and empty classes are fine.
    got = read_official_clusters(_clusters_file(tmp_path / "ok.npy", {np.int64(3): np.ones((2, 3)),
                                                                      4: np.zeros((0, 3))}))
    assert list(got) == [3] and got[3].shape == (2, 3)


def test_load_global_into_local_enhancer():
    torch.manual_seed(0)
    g = Pix2PixHD(Pix2PixHDConfig(label_nc=6, ngf=8, n_downsample_global=2, n_blocks_global=1))
    local = Pix2PixHD(Pix2PixHDConfig(label_nc=6, ngf=4, n_downsample_global=2, n_blocks_global=1,
                                      n_local_enhancers=1, n_blocks_local=1))
    taken = local.load_global(g.state_dict())
    assert taken and all(k.startswith("G.model.") for k in taken)
    assert torch.equal(local.state_dict()["G.model.1.weight"], g.state_dict()["G.model.1.weight"])
    fixed = {id(p) for p in local.enhancer_parameters()}
    assert fixed == {id(p) for k, p in local.named_parameters() if k.startswith("G.model1_")}
    with pytest.raises(CheckpointError, match="shape mismatch"):
        Pix2PixHD(Pix2PixHDConfig(label_nc=7, ngf=4, n_downsample_global=2, n_blocks_global=1,
                                  n_local_enhancers=1)).load_global(g.state_dict())


# --------------------------------------------------------------------------------------------
# Label and instance maps
# --------------------------------------------------------------------------------------------


def test_read_label_maps(tmp_path):
    ids = np.array([[0, 1, 2], [9, 9, 5]], dtype=np.uint8)
    Image.fromarray(ids, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "grey.png"), ids)
    indexed = Image.fromarray(ids, "P")
    indexed.putpalette(PALETTE.flatten().tolist())
    indexed.save(tmp_path / "indexed.png")
    lab = read_label_map(tmp_path / "indexed.png")
    assert lab.dtype == np.int64
    np.testing.assert_array_equal(lab, ids)  # indices are the ids
    np.testing.assert_array_equal(read_label_map(tmp_path / "indexed.png", "scenes"), ids)  # by colour
    Image.fromarray(PALETTE[ids]).save(tmp_path / "colour.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "colour.png", palette="scenes"), ids)
    hexes = {str(i): "#" + bytes(c).hex() for i, c in enumerate(PALETTE.tolist())}
    (tmp_path / "pal.json").write_text(json.dumps(hexes))
    np.testing.assert_array_equal(read_label_map(tmp_path / "colour.png", tmp_path / "pal.json"), ids)
    manifest = write_scenes(tmp_path / "scenes", size=16, count=1)
    np.testing.assert_array_equal(read_label_map(tmp_path / "colour.png", manifest), ids)
    with pytest.raises(InputError, match="needs a palette"):
        read_label_map(tmp_path / "colour.png")
    bad = PALETTE[ids].copy()
    bad[0, 0] = (1, 2, 3)
    bad[1, :2] = (250, 0, 0)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(InputError) as err:
        read_label_map(tmp_path / "bad.png", "scenes")
    msg = one_line(err)
    assert "2 colours not in the palette" in msg
    assert "(250, 0, 0) in 2 px, (1, 2, 3) in 1 px" in msg  # most frequent first
    # Cityscapes colours: ids sharing a colour read as the first of them.
    city = load_palette("cityscapes")
    assert len(city) == 34
    assert city.to_ids(np.array([[[128, 64, 128], [0, 0, 0]]], np.uint8)).tolist() == [[7, 0]]
    with pytest.raises(InputError, match="listed twice"):
        Palette(np.zeros((2, 3), np.uint8), np.array([1, 1]))
    with pytest.raises(InputError, match="no such file"):
        read_label_map(tmp_path / "missing.png")


def test_read_instance_maps(tmp_path):
    inst = np.array([[7, 26000, 26001], [33000, 33000, 40000]], dtype=np.uint16)
    Image.fromarray(inst).save(tmp_path / "inst.png")  # 16-bit grey PNG
    got = read_instance_map(tmp_path / "inst.png")
    assert got.dtype == np.int64 and got.tolist() == inst.astype(np.int64).tolist()  # >= 32768 not wrapped
    np.save(tmp_path / "inst.npy", inst.astype(np.int64) * 10)
    assert read_instance_map(tmp_path / "inst.npy").max() == 400000
    assert instance_classes(got).tolist() == [[7, 26, 26], [33, 33, 40]]
    Image.fromarray((np.zeros((2, 3, 3)) + [1, 2, 3]).astype(np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="one integer id per pixel"):
        read_instance_map(tmp_path / "rgb.png")
    np.save(tmp_path / "neg.npy", np.array([[-1, 2]]))
    with pytest.raises(InputError, match=">= 0"):
        read_instance_map(tmp_path / "neg.npy")


def test_label_checks_are_one_clear_line():
    labels = np.zeros((4, 5), np.int64)
    labels[0, :3], labels[1, 0] = 35, 255
    with pytest.raises(InputError) as err:
        check_labels(labels, 35, path="labels.png")
    msg = one_line(err)
    assert msg.startswith("labels.png: label ids 35 (3 px), 255 (1 px)") and "0..34" in msg and "255" in msg
    check_labels(np.where(labels == 35, 0, labels), 35, dontcare=255)
    with pytest.raises(InputError, match="instance map is 3x5.*label map labels.png is 4x5"):
        check_instances(np.zeros((3, 5)), labels, "inst.png", "labels.png")
    oh = one_hot(torch.tensor([[[0, 2], [255, 1]]]), 3, dontcare=255)
    assert oh.shape == (1, 4, 2, 2) and oh[0, :, 1, 0].tolist() == [0, 0, 0, 1] and oh.sum() == 4
    with pytest.raises(InputError, match="label ids 3"):
        one_hot(torch.tensor([[0, 3]]), 3)
    with pytest.raises(InputError, match="whole numbers"):
        one_hot(torch.tensor([[0.5, 1.0]]), 3)
    assert coerce_label_map(torch.tensor([[[1, 2]]])).tolist() == [[1, 2]]


def test_model_rejects_bad_input_clearly(converted):
    model = converted["global"]
    labels = np.zeros((1, 64, 64), np.int64)
    labels[0, 0, 0] = 9
    with pytest.raises(InputError) as err:
        model(labels, None)
    assert "label ids 9 (1 px)" in one_line(err) and "0..5" in one_line(err)
    with pytest.raises(InputError, match="instance map is 32x64"):
        model(np.zeros((1, 64, 64), np.int64), np.zeros((1, 32, 64), np.int64))
    with pytest.raises(InputError, match="no instance feature encoder"):
        model.sample_features(torch.zeros(1, 8, 8, dtype=torch.long))


def _edges_reference(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    out = np.zeros_like(a, dtype=np.float32)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                if 0 <= y + dy < h and 0 <= x + dx < w and a[y + dy, x + dx] != a[y, x]:
                    out[y, x] = 1
    return out


def test_instance_edges_match_direct_reference():
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 3, size=(2, 1, 9, 11)) * 1000 + 26
    got = instance_edges(torch.from_numpy(inst))
    assert got.shape == inst.shape and got.dtype == torch.float32
    for b in range(2):
        np.testing.assert_array_equal(got[b, 0].numpy(), _edges_reference(inst[b, 0]))
    np.testing.assert_array_equal(instance_edges(inst[0, 0]).numpy(), _edges_reference(inst[0, 0]))


def test_instance_average_matches_loop_reference():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 3, 12, 10)).astype(np.float32)).requires_grad_(True)
    inst = torch.from_numpy(rng.choice([0, 7, 26000, 26001, 33000], size=(2, 12, 10)))
    got = instance_average(x, inst)
    ref = x.detach().clone()
    for b in range(2):
        for i in inst[b].unique():
            m = inst[b] == i
            ref[b][:, m] = x[b][:, m].mean(1, keepdim=True).detach()
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    got.sum().backward()  # differentiable: each pixel's gradient sums to 1 over its instance's mean
    torch.testing.assert_close(x.grad, torch.ones_like(x))


# --------------------------------------------------------------------------------------------
# Architecture: sizes, discriminators, styles
# --------------------------------------------------------------------------------------------


def test_parameter_counts_of_the_official_settings():
    with torch.device("meta"):
        g512 = Pix2PixHD(Pix2PixHDConfig())
        d512 = build_pix2pixhd_discriminator(Pix2PixHDConfig())
    assert g512.cfg.input_nc == 36
    assert round(sum(p.numel() for p in g512.parameters()) / 1e6, 1) == 182.5
    assert round(sum(p.numel() for p in d512.parameters()) / 1e6, 2) == 5.60


def test_multiscale_discriminator_features():
    d = MultiscaleDiscriminator(10, ndf=8, n_layers=3, num_D=3)
    x = torch.randn(2, 10, 64, 48)
    out = d(x)
    assert len(out) == 3 and all(len(f) == 5 for f in out)
    for i, feats in enumerate(out):
        h, w = -(-64 // 2 ** i), -(-48 // 2 ** i)  # average-pooled i times (ceil)
        shapes = []
        for s in (2, 2, 2, 1, 1):
            h, w = (h + 4 - 4) // s + 1, (w + 4 - 4) // s + 1
            shapes.append((h, w))
        assert [tuple(f.shape[-2:]) for f in feats] == shapes
        assert [f.shape[1] for f in feats] == [8, 16, 32, 64, 1]
    # Official layout: the full-resolution D is scale{num_D-1}.
    d.scale2_layer4[0].bias.data.fill_(100.0)
    assert out[0][-1].mean() < 50 and d(x)[0][-1].mean() > 50
    keys = set(MultiscaleDiscriminator(10, 8, 3, num_D=1, get_interm_feat=False).state_dict())
    assert {k.rsplit(".", 1)[0] for k in keys} == {f"layer0.{i}" for i in (0, 2, 5, 8, 11)}
    real, fake = d(x), d(x + 0.1)
    assert adversarial_loss(fake, True, "lsgan", for_discriminator=False).ndim == 0
    assert feature_matching_loss(fake, real, layer_weight=1.0, drop_last=True) > 0


def test_styles_any_size_and_config_checks():
    torch.manual_seed(0)
    cfg = Pix2PixHDConfig(label_nc=4, ngf=4, n_downsample_global=2, n_blocks_global=1, instance_feat=True,
                          nef=4, n_downsample_E=2, n_clusters=3)
    m = Pix2PixHD(cfg).eval()
    m.set_clusters({1: np.array([[0.5, 0.5, 0.5], [-0.5, 0, 0.5]]), 2: np.array([[1.0, -1.0, 0.0]])})
    labels = np.ones((1, 30, 21), np.int64)
    labels[:, 10:, :] = 2
    inst = labels * 1000
    inst[:, 20:, :] += 1
    feat, picks = m.sample_features(torch.from_numpy(inst), 1)
    assert picks == {(0, 1000): 1, (0, 2000): 0, (0, 2001): 0}
    assert feat[0, :, 0, 0].tolist() == [-0.5, 0.0, 0.5]
    feat, _ = m.sample_features(torch.from_numpy(inst), {2001: [0.1, 0.2, 0.3]})
    torch.testing.assert_close(feat[0, :, 25, 3], torch.tensor([0.1, 0.2, 0.3]))
    assert m.sample_features(torch.from_numpy(inst), "zeros")[0].abs().sum() == 0
    with pytest.raises(InputError, match="unknown style"):
        m.sample_features(torch.from_numpy(inst), "blue")
    out = m.synthesize(labels, inst, seed=3)  # 30x21: not a multiple of the stride, padded inside
    assert out.shape == (1, 3, 30, 21)
    assert torch.equal(out, m.synthesize(labels, inst, seed=3))
    image = torch.rand(1, 3, 30, 21) * 2 - 1
    assert m.synthesize(labels, inst, image=image).shape == (1, 3, 30, 21)
    with pytest.raises(CheckpointError, match="room for 3"):
        m.set_clusters({1: np.zeros((4, 3))})
    with pytest.raises(ConfigError, match="dontcare"):
        Pix2PixHDConfig(label_nc=10, dontcare=3)
    with pytest.raises(ConfigError, match="norm"):
        Pix2PixHDConfig(norm="group")


# --------------------------------------------------------------------------------------------
# Datasets and clustering
# --------------------------------------------------------------------------------------------


def test_dataset_layouts(tmp_path):
    write_scenes(tmp_path / "scenes", size=16, count=2)
    samples = find_label_dataset(tmp_path / "scenes")
    assert [s.name for s in samples] == ["00000", "00001"] and samples[0].instances is not None
    s = read_label_sample(samples[1])
    assert s["labels"].shape == s["instances"].shape == s["image"].shape[:2]
    off = tmp_path / "official"
    for sub, suffix in (("train_label", "gtFine_labelIds"), ("train_img", "leftImg8bit"),
                        ("train_inst", "gtFine_instanceIds")):
        (off / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), i, np.uint8)).save(off / sub / f"city_{i:06d}_{suffix}.png")
    samples = find_label_dataset(off, "train")
    assert [p.labels.name.split("_")[1] == p.image.name.split("_")[1] == p.instances.name.split("_")[1]
            for p in samples] == [True, True]
    (off / "train_img" / "city_000001_leftImg8bit.png").unlink()
    with pytest.raises(InputError, match="1 image files for 2 label maps"):
        find_label_dataset(off, "train")
    assert len(find_label_dataset(off, "train", need_images=False)) == 2
    with pytest.raises(InputError, match="no label maps found"):
        find_label_dataset(tmp_path)


def test_kmeans_is_deterministic_and_finds_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.01, size=(20, 3)) for c in (-1.0, 0.0, 1.0)])
    c1, assign, _ = kmeans(x, 3, seed=5)
    c2, _, _ = kmeans(x, 3, seed=5)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(np.sort(c1[:, 0]), [-1, 0, 1], atol=0.02)
    assert len(np.unique(assign)) == 3


def test_cluster_features_over_scenes(tmp_path):
    torch.manual_seed(0)
    write_scenes(tmp_path / "scenes", size=32, count=2, seed=1)
    cfg = Pix2PixHDConfig(label_nc=10, ngf=4, n_downsample_global=1, n_blocks_global=1, instance_feat=True,
                          nef=4, n_downsample_E=2, n_clusters=2)
    m = Pix2PixHD(cfg).eval()
    rows = collect_features(m, tmp_path / "scenes")
    centres = cluster_features(m, None, k=2, seed=0, features=rows)
    assert centres and set(centres) <= set(rows)
    for cls, c in centres.items():
        big = rows[cls][rows[cls][:, -1] > 0.5]
        assert c.shape == (min(2, len(np.unique(big[:, :3], axis=0))), 3)
    m.set_clusters(centres)
    assert sorted(m.clusters()) == sorted(centres)
    assert cluster_features(m, tmp_path / "scenes", k=2, seed=0).keys() == centres.keys()


def test_inference_fast_path_matches_the_autograd_forward(monkeypatch):
    # In-place instance norm (large maps) and in-place residual sums run only without autograd;
    # force them on for every map size and compare with the plain forward.
    from gancanvas.models import pix2pixhd as p2p

    monkeypatch.setattr(p2p, "INPLACE_NORM_NUMEL", 1)
    torch.manual_seed(0)
    g = p2p.GlobalGenerator(5, 3, ngf=4, n_downsampling=2, n_blocks=2).eval()
    x = torch.randn(2, 5, 32, 48)
    with torch.enable_grad():
        ref = g(x.clone().requires_grad_(True)).detach()
    with torch.inference_mode():
        fast = g(x.clone())
    assert torch.allclose(fast, ref, atol=1e-5), (fast - ref).abs().max()
    assert not torch.equal(fast, torch.zeros_like(fast))
