"""gancanvas.data.masks: official DeepFill masks, samplers and fixed evaluation sets."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gancanvas.data import masks as M
from gancanvas.data.io import read_mask
from gancanvas.errors import ConfigError, InputError


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ free-form


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_free_form_mask_shape_dtype_values(h, w, seed):
    m = M.free_form_mask(h, w, rng(seed))
    assert m.shape == (h, w) and m.dtype == np.float32
    assert set(np.unique(m).tolist()) <= {0.0, 1.0}
    assert m.any()  # every stroke leaves at least its round joints inside the image


def test_free_form_official_statistics_at_256():
    # Measured: the official parameters give a mean hole area of about 15.4% (sd 8.1%) at 256².
    g = rng(1)
    areas = np.array([M.free_form_mask(256, 256, g).mean() * 100 for _ in range(300)])
    assert 12.5 < areas.mean() < 18.5
    assert 5.5 < areas.std() < 11.0
    assert areas.min() > 0 and areas.max() < 70


def test_brush_stroke_geometry_is_bounded():
    h = w = 256
    r_avg = math.sqrt(h * h + w * w) / 8
    g = rng(2)
    n_strokes, n_points, widths = set(), set(), set()
    for _ in range(400):
        strokes = M.brush_strokes(h, w, g)
        n_strokes.add(len(strokes))
        for s in strokes:
            n_points.add(len(s.points))
            widths.add(s.width)
            pts = np.array(s.points)
            assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
            steps = np.hypot(*np.diff(pts, axis=0).T)
            assert (steps <= 2 * r_avg + 1.5).all()  # clip(N(r, r//2), 0, 2r), int truncation
    assert n_strokes == {1, 2, 3}
    assert n_points == set(range(5, 13))  # 4..11 vertices plus the start point
    assert min(widths) >= 12 and max(widths) <= 39 and len(widths) > 20


def test_brush_stroke_parameters_are_honoured():
    strokes = M.brush_strokes(
        100, 100, rng(3), min_strokes=5, max_strokes=5, min_vertices=2, max_vertices=2, min_width=3,
        max_width=4,
    )
    assert len(strokes) == 5
    assert all(len(s.points) == 3 and s.width == 3 for s in strokes)


def test_free_form_non_square_uses_the_full_width():
    # The official code swaps H and W; drawn correctly, starts spread over the whole width.
    g = rng(4)
    starts = np.array([s.points[0] for _ in range(200) for s in M.brush_strokes(64, 512, g)])
    assert starts[:, 0].max() > 400 and starts[:, 1].max() < 64
    m = M.free_form_mask(64, 512, rng(5))
    assert m.shape == (64, 512)
    cover = np.zeros(512)
    for seed in range(30):
        cover += M.free_form_mask(64, 512, rng(seed)).sum(axis=0)
    assert cover[400:].sum() > 0


def test_free_form_deterministic_and_private_rng():
    state = np.random.get_state()[1].copy()
    a = M.free_form_mask(128, 96, rng(7))
    b = M.free_form_mask(128, 96, rng(7))
    c = M.free_form_mask(128, 96, rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_render_strokes_line_and_joints():
    m = M.render_strokes(40, 60, [M.Stroke(((10, 20), (50, 20)), 12)])
    assert m[20, 30] == 1 and m[20, 10] == 1 and m[20, 50] == 1
    col = m[:, 30]
    assert 11 <= col.sum() <= 13  # about the stroke width across the line
    assert m[20, 4] == 1 and m[20, 2] == 0  # round cap: disc of radius 6 around the end point
    assert m[0].sum() == 0 and m[39].sum() == 0


def test_invalid_free_form_parameters():
    with pytest.raises(ConfigError):
        M.brush_strokes(64, 64, rng(), min_strokes=3, max_strokes=2)
    with pytest.raises(ConfigError):
        M.brush_strokes(0, 64, rng())


# ------------------------------------------------------------------------------ boxes


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, left, bh, bw = rows[0], cols[0], len(rows), len(cols)
    assert mask[top : top + bh, left : left + bw].all() and mask.sum() == bh * bw  # one solid rectangle
    return int(top), int(left), bh, bw


def test_box_mask_official_rule_at_256():
    g = rng(10)
    sides = set()
    for _ in range(300):
        m = M.box_mask(256, 256, g)
        assert m.dtype == np.float32
        top, left, bh, bw = _box_of(m)
        sides.update((bh, bw))
        assert top + bh <= 256 and left + bw <= 256
    # 128 minus 2 * randint(0, 16): 96..128 in steps of 2, both ends reached.
    assert sides <= set(range(96, 129, 2)) and min(sides) == 96 and max(sides) == 128


def test_bbox_range_and_mask_consistency():
    g = rng(11)
    tops = [M.bbox(256, 256, g)[0] for _ in range(500)]
    assert min(tops) >= 0 and max(tops) <= 127 and max(tops) > 120
    box = M.bbox(256, 256, rng(12))
    assert box[2:] == (128, 128)
    assert _box_of(M.bbox_to_mask(256, 256, box)) == box  # no rng: the whole box
    # box_mask = bbox + bbox_to_mask from one stream.
    g1, g2 = rng(13), rng(13)
    expected = M.bbox_to_mask(256, 256, M.bbox(256, 256, g1), g1)
    np.testing.assert_array_equal(M.box_mask(256, 256, g2), expected)


def test_box_mask_non_square_and_options():
    g = rng(14)
    for _ in range(100):
        _, _, bh, bw = _box_of(M.box_mask(128, 512, g))
        assert 48 <= bh <= 64 and 192 <= bw <= 256
    for _ in range(50):
        m = M.box_mask(100, 100, g, height=30, width=40, max_delta=0, margin=(10, 20))
        top, left, bh, bw = _box_of(m)
        assert (bh, bw) == (30, 40)
        assert top >= 10 and top + bh <= 90 and left >= 20 and left + bw <= 80
    m = M.box_mask(64, 64, g, height=64, width=64, max_delta=0)
    assert m.all()  # a box as large as the image sits at the margin
    with pytest.raises(ConfigError):
        M.box_mask(64, 64, g, height=60, margin=4)


def test_union():
    a = np.zeros((3, 3), np.float32)
    b = np.zeros((3, 3), np.float32)
    a[0, 0] = 1
    b[0, 0] = b[2, 2] = 1
    u = M.union(a, b)
    assert u.dtype == np.float32 and u.sum() == 2
    with pytest.raises(ValueError):
        M.union(a, np.zeros((2, 3)))
    with pytest.raises(ValueError):
        M.union()


# ------------------------------------------------------------------------------ sampler


def test_mask_sampler_kinds():
    g = rng(20)
    ff = M.MaskSampler("free-form").sample(64, 80, g)
    assert ff.shape == (64, 80) and ff.dtype == np.float32
    box = M.MaskSampler("box", max_delta=0).sample(256, 256, g)
    assert _box_of(box)[2:] == (128, 128)
    areas = [M.MaskSampler("free-form+box").sample(256, 256, g).mean() for _ in range(50)]
    assert min(areas) >= 96 * 96 / 256**2  # never smaller than the smallest official box


def test_mask_sampler_same_stream_as_functions():
    s = M.MaskSampler("free-form", max_strokes=1)
    np.testing.assert_array_equal(s.sample(50, 50, rng(3)), M.free_form_mask(50, 50, rng(3), max_strokes=1))
    assert s.params["max_strokes"] == 1 and s.params["min_width"] == 12
    assert "height" in M.MaskSampler("free-form+box").params


def test_mask_sampler_errors():
    with pytest.raises(ConfigError, match="unknown mask kind"):
        M.MaskSampler("circles")
    with pytest.raises(ConfigError, match="max_delta"):
        M.MaskSampler("free-form", max_delta=3)
    with pytest.raises(ConfigError):
        M.MaskSampler("free-form", min_vertices=9, max_vertices=2)
    with pytest.raises(ConfigError):
        M.MaskSampler("box", margin="wide")


# ------------------------------------------------------------------------------ mask sets


def test_area_bin():
    bins = M.DEFAULT_BINS
    assert M.area_bin(0.0, bins) == 0
    assert M.area_bin(9.9999, bins) == 0
    assert M.area_bin(10.0, bins) == 1
    assert M.area_bin(59.99, bins) == 5
    assert M.area_bin(60.0, bins) == 5  # the last bin includes its upper edge
    assert M.area_bin(60.01, bins) is None
    assert M.area_bin(100.0, [(0, 100)]) == 0


def test_write_mask_set_bins_and_manifest(tmp_path):
    out = tmp_path / "set"
    manifest = M.write_mask_set(out, kind="free-form", size=64, count=14, seed=3)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == M.MASK_SET_FORMAT and manifest["version"] == M.MASK_SET_VERSION
    assert manifest["kind"] == "free-form" and manifest["size"] == [64, 64]
    assert manifest["count"] == 14 and manifest["seed"] == 3
    assert manifest["params"]["max_width"] == 40
    files = manifest["files"]
    assert [e["file"] for e in files] == [f"{i:05d}.png" for i in range(14)]
    # 14 over 6 bins: the first two bins get one extra; files in bin order.
    assert [e["bin"] for e in files] == [0] * 3 + [1] * 3 + [2] * 2 + [3] * 2 + [4] * 2 + [5] * 2
    for e in files:
        img = np.asarray(Image.open(out / e["file"]))
        assert img.dtype == np.uint8 and img.shape == (64, 64)
        assert set(np.unique(img).tolist()) <= {0, 255}
        area = round(100 * np.count_nonzero(img) / img.size, 4)
        assert area == e["area_pct"] and area > 0
        assert M.area_bin(area, manifest["bins"]) == e["bin"]
        assert read_mask(out / e["file"]).sum() == np.count_nonzero(img)
    assert sorted(p.name for p in out.iterdir()) == sorted([e["file"] for e in files] + ["manifest.json"])


def test_write_mask_set_is_byte_identical(tmp_path):
    args = dict(kind="free-form", size=(64, 96), count=12, seed=11)
    M.write_mask_set(tmp_path / "a", **args)
    M.write_mask_set(tmp_path / "b", **args)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = M.write_mask_set(tmp_path / "c", **{**args, "seed": 12})
    assert other["files"][0]["sha256"] != json.loads((tmp_path / "a" / "manifest.json").read_text())[
        "files"
    ][0]["sha256"]


def test_write_mask_set_rerun_and_overwrite(tmp_path):
    out = tmp_path / "set"
    first = M.write_mask_set(out, kind="box", size=32, count=4, seed=0, bins=[(0, 100)])
    again = M.write_mask_set(out, kind="box", size=32, count=4, seed=0, bins=[(0, 100)])
    assert again == first  # the same set may be written again (reruns, resumed training)
    with pytest.raises(InputError, match="different mask set"):
        M.write_mask_set(out, kind="box", size=32, count=2, seed=1, bins=[(0, 100)])
    M.write_mask_set(out, kind="box", size=32, count=2, seed=1, bins=[(0, 100)], overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "manifest.json"]


def test_write_mask_set_large_bins_need_unions(tmp_path):
    # Single official strokes rarely cover 50-60% of the image; unions of samples fill the bin.
    manifest = M.write_mask_set(tmp_path, kind="free-form", size=128, count=30, seed=5, bins=[(50, 60)])
    assert all(50 <= e["area_pct"] <= 60 for e in manifest["files"])


def test_write_mask_set_impossible_bin(tmp_path):
    with pytest.raises(ConfigError, match=r"0-10%.*'box'"):
        M.write_mask_set(tmp_path, kind="box", size=32, count=6, seed=0)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(bins=[(10, 5)]),
        dict(bins=[(0, 20), (10, 30)]),
        dict(bins=[]),
        dict(count=0),
        dict(kind="nope"),
        dict(size=0),
    ],
)
def test_write_mask_set_rejects_bad_config(tmp_path, kwargs):
    args = dict(kind="free-form", size=64, count=6, seed=0) | kwargs
    with pytest.raises(ConfigError):
        M.write_mask_set(tmp_path, **args)


def test_write_mask_set_speed_at_256(tmp_path):
    # The brief: 1000 masks at 256 px in seconds. 300 here keeps the suite fast.
    start = time.perf_counter()
    manifest = M.write_mask_set(tmp_path, kind="free-form", size=256, count=300, seed=0)
    assert time.perf_counter() - start < 25
    counts = np.bincount([e["bin"] for e in manifest["files"]], minlength=6)
    assert counts.tolist() == [50] * 6


def test_read_mask_set(tmp_path):
    written = M.write_mask_set(tmp_path, kind="free-form", size=64, count=6, seed=1)
    assert M.read_mask_set(tmp_path, verify=True) == written


def test_read_mask_set_errors(tmp_path):
    with pytest.raises(InputError, match="no such"):
        M.read_mask_set(tmp_path / "missing")
    with pytest.raises(InputError, match="no manifest.json"):
        M.read_mask_set(tmp_path)
    M.write_mask_set(tmp_path, kind="free-form", size=64, count=6, seed=1)
    mp = tmp_path / "manifest.json"
    good = mp.read_text()

    mp.write_text(good[: len(good) // 2])
    with pytest.raises(InputError, match="corrupt manifest"):
        M.read_mask_set(tmp_path)

    data = json.loads(good)
    mp.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(InputError, match="version 99"):
        M.read_mask_set(tmp_path)

    mp.write_text(json.dumps({k: v for k, v in data.items() if k != "bins"}))
    with pytest.raises(InputError, match="missing bins"):
        M.read_mask_set(tmp_path)

    mp.write_text(json.dumps({**data, "count": 7}))
    with pytest.raises(InputError, match="count"):
        M.read_mask_set(tmp_path)

    mp.write_text(good)
    (tmp_path / "00003.png").write_bytes(Image.new("L", (64, 64)).tobytes())
    M.read_mask_set(tmp_path)  # files only checked for existence by default
    with pytest.raises(InputError, match="sha256"):
        M.read_mask_set(tmp_path, verify=True)
    (tmp_path / "00003.png").unlink()
    with pytest.raises(InputError, match="00003.png: listed in the manifest but missing"):
        M.read_mask_set(tmp_path)


def test_mask_and_margin_sets_tell_each_other_apart(tmp_path):
    from gancanvas.data.margins import read_margin_set, write_margin_set

    write_margin_set(tmp_path / "margins", size=32, known=16, count=2, seed=0)
    M.write_mask_set(tmp_path / "masks", kind="free-form", size=64, count=2, seed=0)
    with pytest.raises(InputError, match="not a gancanvas-mask-set manifest .a margin set: .*--margins"):
        M.read_mask_set(tmp_path / "margins")
    with pytest.raises(InputError, match="not a gancanvas-margin-set manifest .a mask set: .*--masks"):
        read_margin_set(tmp_path / "masks")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        M.write_mask_set(tmp_path / "file", kind="free-form", size=32, count=2, seed=0)
