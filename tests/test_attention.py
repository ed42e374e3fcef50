"""Contextual attention: parity with the official TF code, exact == tiled, clean-mode guarantees,
the attention-flow picture and the nearest resize rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gancanvas.nn.attention as attention
from gancanvas.nn.attention import (
    ContextualAttention,
    colour_wheel,
    contextual_attention,
    flow_to_image,
    flow_to_uint8,
)
from gancanvas.nn.resample import nearest_indices, resize_nearest

FIXTURES = Path(__file__).parent / "fixtures" / "official" / "contextual_attention"


def load_case(name: str) -> dict[str, torch.Tensor]:
    """An official fixture, converted to NCHW (offsets: N x 2 x h x w int64)."""
    data = np.load(FIXTURES / f"{name}.npz")
    out = {}
    for key in data.files:
        t = torch.from_numpy(data[key]).permute(0, 3, 1, 2).contiguous()
        out[key] = t.long() if key.startswith("offsets") else t
    return out


# --------------------------------------------------------------------------------------------
# Literal re-implementations of the two algorithms (float64, small inputs only): a second
# opinion built from different operations (patch convolutions, the eye-kernel fuse over the
# flattened score image, transposed convolutions) than the optimised layer.


def _offsets_from_attention(a: torch.Tensor, hf: int, wf: int, wb: int) -> torch.Tensor:
    arg = a.argmax(dim=-1)  # (N, Lf)
    pos = torch.arange(hf * wf)
    off = torch.stack([arg // wb - pos // wf, arg % wb - pos % wf], dim=1)
    return off.view(-1, 2, hf, wf)


def naive_official(f, b, mask=None, *, fuse=True, scale=10.0):
    f, b = f.double(), b.double()
    n, c, h, w = b.shape
    fd = resize_nearest(f, (f.shape[2] // 2, f.shape[3] // 2), align_corners=True)
    bd = resize_nearest(b, (h // 2, w // 2), align_corners=True)
    hf, wf = fd.shape[-2:]
    hb, wb = bd.shape[-2:]
    m = torch.zeros(1, 1, h, w, dtype=torch.float64) if mask is None else mask[:1].double()
    md = resize_nearest(m, (hb, wb), align_corners=True)
    mm = (F.unfold(md, 3, padding=1).mean(dim=1) == 0).double()[0]
    eye = torch.eye(3, dtype=torch.float64)[None, None]
    ys, atts = [], []
    for i in range(n):
        wq = F.unfold(bd[i:i + 1], 3, padding=1)[0].t().reshape(-1, c, 3, 3)
        wq = wq / wq.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        s = F.conv2d(fd[i:i + 1], wq, padding=1)[0].flatten(1).t()  # (Lf, Lb)
        if fuse:
            s = F.conv2d(s[None, None], eye, padding=1)[0, 0]
            s = s.view(hf, wf, hb, wb).permute(1, 0, 3, 2).reshape(hf * wf, hb * wb)
            s = F.conv2d(s[None, None], eye, padding=1)[0, 0]
            s = s.view(wf, hf, wb, hb).permute(1, 0, 3, 2).reshape(hf * wf, hb * wb)
        a = torch.softmax(s * mm * scale, dim=1) * mm
        raw = F.unfold(b[i:i + 1], 4, stride=2, padding=1)[0].t().reshape(-1, c, 4, 4)
        ys.append(F.conv_transpose2d(a.t().reshape(1, hb * wb, hf, wf), raw, stride=2, padding=1) / 4)
        atts.append(a)
    a = torch.stack(atts)
    return torch.cat(ys), _offsets_from_attention(a, hf, wf, wb), a


def naive_clean(f, b, mask=None, *, scale=10.0):
    f, b = f.double(), b.double()
    n, c, h, w = b.shape
    fd, bd = f[..., ::2, ::2], b[..., ::2, ::2]
    hf, wf = fd.shape[-2:]
    hb, wb = bd.shape[-2:]
    m = torch.zeros(1, 1, h, w, dtype=torch.float64) if mask is None else mask.double()
    hole = (F.unfold(F.max_pool2d(m, 2), 3, padding=1).amax(dim=1) > 0) \
        | (F.unfold(m, 4, stride=2, padding=1).amax(dim=1) > 0)
    count = F.conv_transpose2d(torch.ones(1, 1, hf, wf, dtype=torch.float64),
                               torch.ones(1, 1, 4, 4, dtype=torch.float64), stride=2, padding=1)
    ys, atts = [], []
    for i in range(n):
        wq = F.unfold(bd[i:i + 1], 3, padding=1)[0].t().reshape(-1, c, 3, 3)
        wq = wq / wq.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        s = F.conv2d(fd[i:i + 1], wq, padding=1)[0].flatten(1).t().reshape(hf, wf, hb, wb)
        p = F.pad(s, (1, 1, 1, 1, 1, 1, 1, 1))
        s = sum(p[1 + dy:1 + dy + hf, 1 + dx:1 + dx + wf, 1 + dy:1 + dy + hb, 1 + dx:1 + dx + wb]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1)).reshape(hf * wf, hb * wb)
        a = torch.softmax((s * scale).masked_fill(hole[i if hole.shape[0] > 1 else 0], -math.inf), dim=1)
        raw = F.unfold(b[i:i + 1], 4, stride=2, padding=1)[0].t().reshape(-1, c, 4, 4)
        ys.append(F.conv_transpose2d(a.t().reshape(1, hb * wb, hf, wf), raw, stride=2, padding=1) / count)
        atts.append(a)
    a = torch.stack(atts)
    return torch.cat(ys), _offsets_from_attention(a, hf, wf, wb), a


def assert_offsets_match(off: torch.Tensor, ref: torch.Tensor, att: torch.Tensor, *, gap: float = 1e-5,
                         most: int = 3) -> None:
    """Offsets equal, except at most `most` positions whose top-2 attention weights are within `gap`."""
    differ = (off != ref).any(dim=1).flatten(1)  # (N, Lf)
    top2 = att.topk(2, dim=-1).values
    near_tie = (top2[..., 0] - top2[..., 1]) < gap
    assert not (differ & ~near_tie).any(), "offsets differ where the best source is clear"
    assert int(differ.sum()) <= most


def random_case(n, c, h, w, *, seed=0, hole=True):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, c, h, w, generator=g)
    b = torch.rand(n, c, h, w, generator=g)
    mask = torch.zeros(n, 1, h, w)
    if hole:
        for i in range(n):
            top = int(torch.randint(0, h // 2, (1,), generator=g))
            left = int(torch.randint(0, w // 2, (1,), generator=g))
            mask[i, :, top:top + h // 3, left:left + w // 3] = 1
    return f, b, mask


# --------------------------------------------------------------------------------------------
# official parity


@pytest.mark.parametrize("name,fuse", [("ca_sq32", True), ("ca_sq32", False), ("ca_rect24x40_b2", True)])
def test_official_matches_tf_fixture(name, fuse):
    case = load_case(name)
    y_ref = case["y" if fuse else "y_nofuse"]
    off_ref = case["offsets" if fuse else "offsets_nofuse"]
    f, mask = case["f"], case["mask"]
    y, off = contextual_attention(f, f, mask, ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=10.0,
                                  fuse=fuse, compat="official")
    assert y.shape == f.shape and y.dtype == torch.float32
    assert off.shape == off_ref.shape and off.dtype == torch.int64
    assert (y - y_ref).abs().max() < 5e-5  # README: float32 vs the float64 twin is <= 5e-6
    y_naive, off_naive, att = naive_official(f, f, mask, fuse=fuse)
    assert (y_naive - y_ref.double()).abs().max() < 5e-5  # the test oracle agrees with TF too
    assert_offsets_match(off, off_ref, att)
    assert_offsets_match(off_naive, off_ref, att)


def test_official_flow_matches_tf_fixture():
    for name in ("ca_sq32", "ca_rect24x40_b2"):
        case = load_case(name)
        f, mask = case["f"], case["mask"]
        _, off = contextual_attention(f, f, mask, compat="official")
        flow = flow_to_image(off, batch_running_max=True)
        assert flow.shape == (f.shape[0], 3, f.shape[2] // 2, f.shape[3] // 2)
        # The official graph then resizes x2 with bilinear, align_corners=True (v2).
        flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True)
        assert (flow - case["flow"]).abs().max() < 1e-5


def test_official_uses_the_first_mask_of_the_batch():
    f, b, mask = random_case(2, 4, 12, 16, seed=3)
    y1, off1 = contextual_attention(f, b, mask, compat="official")
    y2, off2 = contextual_attention(f, b, mask[:1], compat="official")
    assert torch.equal(y1, y2) and torch.equal(off1, off2)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 4, 12, 20)])
def test_official_and_clean_agree_with_literal_ports(shape):
    f, b, mask = random_case(*shape, seed=1)
    for compat, naive in (("official", naive_official), ("clean", naive_clean)):
        y, off = contextual_attention(f, b, mask, compat=compat)
        y_ref, off_ref, att = naive(f, b, mask)
        assert (y.double() - y_ref).abs().max() < 1e-5, compat
        assert_offsets_match(off, off_ref, att)


# --------------------------------------------------------------------------------------------
# exact == tiled


TILE_SHAPES = [
    # (f shape, b shape)
    ((1, 3, 16, 16), (1, 3, 16, 16)),
    ((2, 4, 12, 20), (2, 4, 12, 20)),  # non-square, batch 2
    ((2, 3, 20, 12), (2, 3, 16, 8)),  # f and b of different sizes
]


@pytest.mark.parametrize("compat", ["official", "clean"])
@pytest.mark.parametrize("shapes", TILE_SHAPES)
def test_tiled_equals_exact(compat, shapes):
    (n, c, hf, wf), (_, _, hb, wb) = shapes
    g = torch.Generator().manual_seed(hf * wf)
    f, b = torch.rand(n, c, hf, wf, generator=g), torch.rand(n, c, hb, wb, generator=g)
    mask = torch.zeros(n, 1, hb, wb)
    mask[0, :, hb // 4:hb // 2, wb // 4:3 * wb // 4] = 1
    mask[-1, :, hb // 2:, : wb // 3] = 1
    y0, off0 = contextual_attention(f, b, mask, compat=compat)
    lf = (hf // 2) * (wf // 2)
    for tile in (1, 7, 13, lf - 1, lf, 10 * lf):  # 7, 13 and lf - 1 do not divide lf
        y, off = contextual_attention(f, b, mask, compat=compat, tile=tile)
        assert torch.allclose(y, y0, atol=1e-5, rtol=0), tile
        assert torch.equal(off, off0), tile


@pytest.mark.parametrize("compat", ["official", "clean"])
def test_tiled_equals_exact_without_fuse_and_with_other_kernels(compat):
    f, b, mask = random_case(2, 3, 16, 12, seed=5)
    for opts in (dict(fuse=False), dict(ksize=1, fuse_k=5), dict(ksize=5, fuse_k=2, softmax_scale=4.0)):
        y0, off0 = contextual_attention(f, b, mask, compat=compat, **opts)
        for tile in (1, 11):
            y, off = contextual_attention(f, b, mask, compat=compat, tile=tile, **opts)
            assert torch.allclose(y, y0, atol=1e-5, rtol=0), opts
            assert torch.equal(off, off0), opts


def test_clean_tiled_equals_exact_on_odd_sizes():
    f, b, mask = random_case(2, 3, 11, 17, seed=2)  # not multiples of rate
    y0, off0 = contextual_attention(f, b, mask)
    assert y0.shape == f.shape and off0.shape == (2, 2, 6, 9)
    for tile in (1, 5, 20):
        y, off = contextual_attention(f, b, mask, tile=tile)
        assert torch.allclose(y, y0, atol=1e-5, rtol=0)
        assert torch.equal(off, off0)


def _count_batched(monkeypatch) -> list:
    calls = []
    real = attention._attend_batched
    monkeypatch.setattr(attention, "_attend_batched", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("shapes", TILE_SHAPES)
@pytest.mark.parametrize("opts", [{}, dict(fuse=False), dict(ksize=1, fuse_k=5), dict(ksize=5, fuse_k=2)])
def test_batched_form_equals_the_per_sample_form(shapes, opts, monkeypatch):
    """Under autograd (and on GPUs) clean mode runs whole-batch tensor ops instead of per-sample
    slice runs: the same y and offsets, a sample without any usable patch included."""
    (n, c, hf, wf), (_, _, hb, wb) = shapes
    g = torch.Generator().manual_seed(hf + wf)
    f, b = torch.rand(n, c, hf, wf, generator=g), torch.rand(n, c, hb, wb, generator=g)
    mask = (torch.rand(n, 1, hb, wb, generator=g) > 0.7).float()
    mask[-1] = 1  # nothing to borrow from in the last sample
    calls = _count_batched(monkeypatch)
    y0, off0 = contextual_attention(f, b, mask, **opts)  # no autograd: per-sample form
    assert not calls
    y, off = contextual_attention(f.requires_grad_(), b, mask, **opts)
    assert calls == [1]
    assert torch.allclose(y.detach(), y0, atol=1e-5, rtol=0) and torch.equal(off, off0)
    assert (y0[-1] == 0).all() and (off0[-1] == 0).all()


def test_batched_form_gradients_equal_the_tiled_form(monkeypatch):
    f, b, mask = random_case(2, 3, 14, 18, seed=8)
    f, b = f.double().requires_grad_(), b.double().requires_grad_()
    calls = _count_batched(monkeypatch)
    y, _ = contextual_attention(f, b, mask.double())
    grads = torch.autograd.grad((y * y).sum(), (f, b))
    assert calls == [1]
    y_t, _ = contextual_attention(f, b, mask.double(), tile=9)  # per-sample, checkpointed tiles
    grads_t = torch.autograd.grad((y_t * y_t).sum(), (f, b))
    assert calls == [1]
    assert torch.allclose(y, y_t, atol=1e-12)
    for gb, gt in zip(grads, grads_t):
        assert torch.allclose(gb, gt, atol=1e-10)


def test_batched_form_gives_way_to_bounded_memory(monkeypatch):
    f, b, mask = random_case(2, 3, 16, 16, seed=3)
    calls = _count_batched(monkeypatch)
    monkeypatch.setattr(attention, "BATCHED_MAX_SCORES", 2 * 64 * 64 - 1)  # one element too few
    y, off = contextual_attention(f.requires_grad_(), b, mask)
    assert not calls
    monkeypatch.setattr(attention, "BATCHED_MAX_SCORES", 2 * 64 * 64)
    y2, off2 = contextual_attention(f, b, mask)
    assert calls == [1] and torch.allclose(y, y2, atol=1e-5) and torch.equal(off, off2)


def test_kept_workspace_survives_a_switch_out_of_inference_mode():
    # The score buffers kept between calls must not leak inference tensors into no_grad calls
    # (a CLI command under inference_mode, then a no_grad call in the same process).
    attention.release_workspace()
    f, b, mask = random_case(1, 4, 16, 16, seed=6)
    with torch.inference_mode():
        y0, off0 = contextual_attention(f, b, mask)
    with torch.no_grad():
        y, off = contextual_attention(f, b, mask)
    with torch.inference_mode():
        y2, _ = contextual_attention(f, b, mask)
    assert torch.equal(y, y0) and torch.equal(off, off0) and torch.equal(y2, y0)


def test_auto_tile_bounds_the_workspace(monkeypatch):
    f, b, mask = random_case(1, 4, 32, 32, seed=4)
    y0, off0 = contextual_attention(f, b, mask, tile="auto")  # small input: one tile
    geo = attention._Geometry(16, 16, 16, 16)
    # Below the halo's own size the tile is floored at the halo (about 4 grid rows here) rather
    # than shrinking towards 1 position, which would recompute the halo for every position.
    assert attention._auto_tile(geo, 3, 3, False, 1024) >= 4 * 16
    budget = 512 * 1024
    monkeypatch.setattr(attention, "AUTO_TILE_BYTES", budget)
    tile = attention._auto_tile(geo, 3, 3, False, budget)
    assert tile is not None and tile < geo.lf
    plans = attention._plan_tiles(geo, tile, 3, 3, ("x", "y"))
    assert len(plans) > 1
    assert max(max(len(p.gram_rows), p.paste.n_cells) for p in plans) * 17 * 17 * 4 * 2 <= budget
    y, off = contextual_attention(f, b, mask, tile="auto")
    assert torch.allclose(y, y0, atol=1e-5, rtol=0) and torch.equal(off, off0)


# --------------------------------------------------------------------------------------------
# clean-mode guarantees


def test_clean_reconstructs_the_background_from_itself():
    g = torch.Generator().manual_seed(0)
    b = torch.relu(torch.randn(2, 8, 24, 40, generator=g))
    y, off = contextual_attention(b, b)
    assert (off == 0).all()
    assert torch.allclose(y[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2], atol=1e-4)


def test_clean_reproduces_a_constant_exactly_but_official_divides_by_four():
    c = torch.full((1, 4, 16, 12), 0.7)
    mask = torch.zeros(1, 1, 16, 12)
    mask[..., 4:10, 3:8] = 1
    for tile in (None, 5):
        y, _ = contextual_attention(c, c, mask, tile=tile)
        assert torch.allclose(y, c, atol=1e-6)
    # Official: the corner pixel is covered by one pasted patch but still divided by 4.
    y, _ = contextual_attention(c, c, None, compat="official")
    assert torch.allclose(y[..., 4:-4, 4:-4], c[..., 4:-4, 4:-4], atol=1e-6)
    assert torch.allclose(y[..., 0, 0], torch.full((1, 4), 0.7 / 4), atol=1e-6)


def test_clean_fills_the_hole_only_from_valid_patches():
    f, b, mask = random_case(2, 4, 24, 32, seed=7)
    b = b + 1000.0 * mask  # poison the hole: any weight on it would show in y
    y, off = contextual_attention(f, b, mask)
    assert y.max() < 2.0  # valid features are in [0, 1)
    # The chosen source cell's matching footprint (3 x 3 cells = rows 2k-2 .. 2k+3) is hole-free.
    n, _, h, w = off.shape
    rows = torch.arange(h).view(1, h, 1) + off[:, 0]
    cols = torch.arange(w).view(1, 1, w) + off[:, 1]
    for i in range(n):
        for r, c in zip(rows[i].flatten().tolist(), cols[i].flatten().tolist()):
            assert mask[i, 0, max(2 * r - 2, 0):2 * r + 4, max(2 * c - 2, 0):2 * c + 4].sum() == 0


def test_clean_masks_are_per_sample():
    f, b, mask = random_case(2, 4, 16, 20, seed=9)
    y, off = contextual_attention(f, b, mask)
    for i in range(2):
        yi, offi = contextual_attention(f[i:i + 1], b[i:i + 1], mask[i:i + 1])
        assert torch.allclose(y[i:i + 1], yi, atol=1e-6) and torch.equal(off[i:i + 1], offi)


def test_clean_without_any_valid_patch_gives_zero_not_nan():
    f, b, mask = random_case(2, 4, 16, 16, seed=11)
    mask[0] = 1  # sample 0: everything is hole
    f.requires_grad_(True)
    y, off = contextual_attention(f, b, mask)
    assert torch.isfinite(y).all()
    assert (y[0] == 0).all() and (off[0] == 0).all()
    y1, off1 = contextual_attention(f[1:].detach(), b[1:], mask[1:])
    assert torch.allclose(y[1:], y1, atol=1e-6) and torch.equal(off[1:], off1)
    y.sum().backward()
    assert torch.isfinite(f.grad).all()
    y, off = contextual_attention(f.detach(), b, torch.ones(2, 1, 16, 16), tile=3)
    assert (y == 0).all() and (off == 0).all()


@pytest.mark.parametrize("compat", ["clean", "official"])
def test_gradcheck(compat):
    g = torch.Generator().manual_seed(0)
    f = torch.rand(1, 2, 8, 10, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.rand(1, 2, 8, 10, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.zeros(1, 1, 8, 10, dtype=torch.float64)
    mask[..., :4, :4] = 1
    for tile in (None, 3):  # tiles are checkpointed under autograd
        def fn(f, b, tile=tile):
            return contextual_attention(f, b, mask, compat=compat, tile=tile, softmax_scale=2.0)[0]

        assert torch.autograd.gradcheck(fn, (f, b), fast_mode=True)


def test_tiled_gradients_equal_exact_gradients():
    f, b, mask = random_case(2, 4, 12, 16, seed=12)
    weights = torch.rand(f.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for tile in (None, 5):
        fi, bi = f.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y, _ = contextual_attention(fi, bi, mask, tile=tile)
        grads.append(torch.autograd.grad((y * weights).sum(), (fi, bi)))
    for g0, g1 in zip(*grads):
        assert torch.allclose(g0, g1, atol=1e-5)


def test_half_inputs_and_autocast_compute_in_float32():
    f, b, mask = random_case(1, 4, 12, 12, seed=13)
    y32, off32 = contextual_attention(f, b, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, off = contextual_attention(f, b, mask)
    assert y.dtype == torch.float32 and torch.equal(y, y32) and torch.equal(off, off32)
    yh, offh = contextual_attention(f.half(), b.half(), mask)
    y_ref, off_ref = contextual_attention(f.half().float(), b.half().float(), mask)
    assert yh.dtype == torch.float16
    assert torch.allclose(yh.float(), y_ref, atol=1e-3) and torch.equal(offh, off_ref)


def test_module_and_argument_checks():
    f, b, mask = random_case(1, 3, 12, 16, seed=14)
    layer = ContextualAttention(compat="official", tile=5)
    y, off = layer(f, b, mask)
    y0, off0 = contextual_attention(f, b, mask, compat="official")
    assert torch.allclose(y, y0, atol=1e-5) and torch.equal(off, off0)
    assert "compat='official'" in repr(layer) and "tile=5" in repr(layer)
    with pytest.raises(ValueError, match="divisible by rate"):
        contextual_attention(f[..., :11, :], f[..., :11, :], compat="official")
    with pytest.raises(ValueError, match="stride"):
        contextual_attention(f, b, stride=2)
    with pytest.raises(ValueError, match="mask"):
        contextual_attention(f, b, mask[..., :8, :])
    with pytest.raises(ValueError, match="tile"):
        contextual_attention(f, b, tile=0)
    with pytest.raises(ValueError, match="compat"):
        ContextualAttention(compat="tf")


# --------------------------------------------------------------------------------------------
# flow pictures


def test_colour_wheel_and_zero_motion():
    wheel = colour_wheel()
    assert wheel.shape == (55, 3)
    assert wheel[0].tolist() == [255, 0, 0]  # red
    assert wheel[15].tolist() == [255, 255, 0]  # yellow after the 15 RY steps
    assert wheel[21].tolist() == [0, 255, 0]  # green after 6 YG steps
    assert wheel[-1].tolist() == [255, 0, 255 - math.floor(255 * 5 / 6)]
    flow = flow_to_image(torch.zeros(2, 2, 3, 4, dtype=torch.int64))
    assert flow.shape == (2, 3, 3, 4) and (flow == 1).all()  # zero offset = white


def test_flow_normalisation_per_image_or_running_max():
    off = torch.zeros(2, 2, 4, 4, dtype=torch.int64)
    off[0, 0, 0, 0] = 6  # image 0 has the longer offsets
    off[1, 1, 1, 1] = -2
    per_image = flow_to_image(off)
    official = flow_to_image(off, batch_running_max=True)
    assert torch.equal(per_image[0], official[0])
    assert torch.equal(per_image[1], flow_to_image(off[1:])[0])
    assert not torch.equal(per_image[1], official[1])  # normalised by image 0's 6, not its own 2


def test_flow_to_uint8_upsamples_one_image():
    g = torch.Generator().manual_seed(0)
    off = torch.randint(-5, 6, (1, 2, 4, 6), generator=g)
    u8 = flow_to_uint8(off, 4)
    assert u8.dtype == np.uint8 and u8.shape == (16, 24, 3)
    ref = torch.round((flow_to_image(off)[0] + 1) * 127.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(u8[::4, ::4], ref)
    assert np.array_equal(flow_to_uint8(off[0], (16, 24)), u8)
    with pytest.raises(ValueError):
        flow_to_uint8(off.expand(2, -1, -1, -1), 4)


# --------------------------------------------------------------------------------------------
# nearest resize


def test_tf_align_corners_indices():
    assert nearest_indices(64, 32, True).tolist() == list(range(0, 31, 2)) + list(range(33, 64, 2))
    # Equal to floor(linspace(0, in - 1, out) + 0.5) for the usual even sizes ...
    for n_in, n_out in ((256, 64), (64, 32), (128, 64), (96, 48), (512, 128), (40, 20)):
        ref = np.floor(np.linspace(0, n_in - 1, n_out) + 0.5).astype(np.int64)
        assert nearest_indices(n_in, n_out, True).tolist() == ref.tolist()
    # ... but TF computes in float32, so an exact half can round down (54 -> 27: 13 * 53/26 = 26.5).
    assert nearest_indices(54, 27, True)[13] == 26
    assert nearest_indices(7, 1, True).tolist() == [0]


def test_resize_in_official_steps_differs_from_one_step():
    # Pixel value = 1000 * row + column, so the result shows which input pixel each output read.
    x = (1000 * torch.arange(256.0).view(256, 1) + torch.arange(256.0)).view(1, 1, 256, 256)
    two_steps = resize_nearest(resize_nearest(x, 64, align_corners=True), 32, align_corners=True)
    direct = resize_nearest(x, 32, align_corners=True)
    composed = nearest_indices(256, 64, True)[nearest_indices(64, 32, True)]
    expected = 1000 * composed.view(32, 1).double() + composed.double()
    assert torch.equal(two_steps[0, 0].double(), expected)  # the composition of the index maps
    assert not torch.equal(two_steps, direct)  # 256 -> 64 -> 32 != 256 -> 32
    assert (two_steps != direct).float().mean() > 0.3


def test_resize_floor_rule_equals_pytorch_nearest():
    for n_in in (5, 16, 33, 64):
        for n_out in (1, 3, 8, 32, 47, 128):
            x = torch.rand(1, 2, n_in, n_in + 1)
            ref = F.interpolate(x, size=(n_out, n_out + 2), mode="nearest")
            assert torch.equal(resize_nearest(x, (n_out, n_out + 2), align_corners=False), ref)


def test_resize_keeps_dtype_and_corners():
    m = torch.zeros(2, 1, 9, 13, dtype=torch.bool)
    m[..., 0, 0] = m[..., -1, -1] = True
    r = resize_nearest(m, (4, 5), align_corners=True)
    assert r.dtype == torch.bool and r.shape == (2, 1, 4, 5)
    assert r[..., 0, 0].all() and r[..., -1, -1].all()
    labels = torch.arange(12).view(1, 3, 4)
    assert torch.equal(resize_nearest(labels, (6, 8), align_corners=False), labels.repeat_interleave(2, 1)
                       .repeat_interleave(2, 2))


def test_fixture_meta_is_the_official_call():
    meta = json.loads((FIXTURES / "meta.json").read_text())
    assert meta["official_commit"].startswith("3a53243")
    assert "fuse=True" in meta["cases"]["rect24x40_b2"]["call"]


def test_clean_all_hole_sample_keeps_gradient_path():
    # A sample with nothing to borrow gives y = 0, but y must stay attached to the inputs so that
    # the layers before the attention get a (zero) gradient: DDP requires one for every parameter.
    f = torch.rand(1, 4, 8, 8, requires_grad=True)
    y, _ = contextual_attention(f, f, torch.ones(1, 1, 8, 8))
    assert torch.all(y == 0)
    assert y.requires_grad
    (grad,) = torch.autograd.grad(y.sum(), f)
    assert torch.all(grad == 0)
