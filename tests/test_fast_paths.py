"""The CPU fast paths of the DeepFill v2 layers against straightforward reference implementations.

GatedConv2d runs its feature and gate halves as two convolutions on CPU and gates in place
under no_grad; GatedDeconv2d runs nearest x2 + 3x3 conv as four 2x2 phase convolutions;
contextual attention keeps its score buffers between calls. Each must give the reference's
outputs and, in training mode, the reference's gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gancanvas
from gancanvas.nn import attention
from gancanvas.nn.attention import contextual_attention, release_workspace
from gancanvas.nn.conv import GatedConv2d, GatedDeconv2d, interleave_phases, pad_same, subpixel_weight

CL = torch.channels_last


def ref_gated(conv: GatedConv2d, x: torch.Tensor) -> torch.Tensor:
    """The textbook gated conv: one conv of 2C maps, split, act(features) * sigmoid(gates)."""
    if conv.tf_same:
        x = pad_same(x, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    if not conv.gated:
        return y
    feat, gate = y.chunk(2, dim=1)
    act = F.elu if conv.activation == "elu" else F.relu
    return act(feat) * torch.sigmoid(gate)


def ref_deconv(up: GatedDeconv2d, x: torch.Tensor) -> torch.Tensor:
    return ref_gated(up.conv, F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _grads(module, fn, x, g_out):
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    (fn(x) * g_out).sum().backward()
    return [x.grad] + [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3), dict(kernel_size=5), dict(kernel_size=3, dilation=4),
    dict(kernel_size=3, stride=2, compat="official"), dict(kernel_size=3, stride=2),
    dict(kernel_size=3, activation="relu"), dict(kernel_size=3, activation=None),
])
def test_gated_conv_matches_reference_forward_and_backward(kw, channels_last):
    conv = GatedConv2d(5, 6, **kw)
    _randomise(conv)
    x = torch.randn(2, 5, 12, 10, generator=torch.Generator().manual_seed(1))
    if channels_last:
        conv, x = conv.to(memory_format=CL), x.contiguous(memory_format=CL)
    ref = ref_gated(conv, x)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        out = conv(x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        if channels_last:
            assert out.is_contiguous(memory_format=CL)
    g_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    got = _grads(conv, conv, x, g_out)
    want = _grads(conv, lambda t: ref_gated(conv, t), x, g_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_subpixel_phases_are_nearest_upsampling_then_conv():
    w = torch.randn(4, 3, 3, 3)
    x = torch.randn(1, 3, 5, 7)
    y = interleave_phases(F.conv2d(x, subpixel_weight(w), padding=1), 4)
    want = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, padding=1)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", ["elu", "relu", None])
def test_gated_deconv_matches_reference_forward_and_backward(activation, channels_last):
    up = GatedDeconv2d(6, 5, activation=activation)
    _randomise(up, seed=3)
    x = torch.randn(2, 6, 7, 9, generator=torch.Generator().manual_seed(4))
    if channels_last:
        up, x = up.to(memory_format=CL), x.contiguous(memory_format=CL)
    ref = ref_deconv(up, x)
    for ctx in (torch.no_grad, torch.inference_mode, torch.enable_grad):
        with ctx():
            out = up(x)
        assert out.shape == (2, 5, 14, 18)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        if channels_last:
            assert out.is_contiguous(memory_format=CL)
    g_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))
    got = _grads(up, up, x, g_out)
    want = _grads(up, lambda t: ref_deconv(up, t), x, g_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@pytest.fixture
def reference_layers(monkeypatch):
    """Swap the fast forwards of the gated layers for the reference implementations."""
    def use():
        monkeypatch.setattr(GatedConv2d, "forward", lambda self, x: ref_gated(self, x))
        monkeypatch.setattr(GatedDeconv2d, "forward", lambda self, x: ref_deconv(self, x))
    return use


@pytest.mark.parametrize("compat", ["clean", "official"])
def test_generator_training_step_matches_reference(compat, reference_layers):
    # float64: with weights large enough to matter the network amplifies float32 rounding
    # (near-tied attention weights), which would hide a real difference; float64 does not.
    torch.manual_seed(0)
    model = gancanvas.create("deepfill_v2", cnum=8, compat=compat)
    _randomise(model, seed=6)
    model = model.double()
    g = torch.Generator().manual_seed(7)
    image = torch.rand(2, 3, 32, 40, generator=g, dtype=torch.float64) * 2 - 1
    mask = torch.zeros(2, 1, 32, 40, dtype=torch.float64)
    mask[:, :, 8:20, 10:26] = 1

    def step():
        model.zero_grad()
        out = model(image, mask)
        loss = (out["coarse"] - image).abs().mean() + (out["refined"] - image).abs().mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        return out, grads

    out, grads = step()
    with torch.inference_mode():
        fast_inference = model(image, mask)
    reference_layers()
    ref_out, ref_grads = step()
    for key in ("coarse", "refined"):
        torch.testing.assert_close(out[key], ref_out[key], rtol=0, atol=1e-9)
        torch.testing.assert_close(fast_inference[key], ref_out[key], rtol=0, atol=1e-9)
    assert torch.equal(out["offsets"], ref_out["offsets"])
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().clamp_min(1e-6)
        torch.testing.assert_close(grad / scale, ref_grads[name] / scale, rtol=0, atol=1e-9, msg=name)


def test_channels_last_survives_the_whole_generator():
    model = gancanvas.create("deepfill_v2", cnum=8).eval().to(memory_format=CL)
    seen = []

    def hook(mod, inp, out):
        seen.append((type(mod).__name__, out.is_contiguous(memory_format=CL)))

    for m in model.modules():
        if isinstance(m, (GatedConv2d, GatedDeconv2d)):
            m.register_forward_hook(hook)
    image = torch.zeros(1, 3, 32, 32).contiguous(memory_format=CL)
    with torch.inference_mode():
        model(image, torch.zeros(1, 1, 32, 32))
    assert seen and all(ok for _, ok in seen), [name for name, ok in seen if not ok]


def test_attention_workspace_kept_between_calls_gives_the_same_results():
    release_workspace()
    g = torch.Generator().manual_seed(8)
    big = torch.rand(1, 8, 32, 32, generator=g)
    small = torch.rand(2, 8, 16, 24, generator=g)
    mask = torch.zeros(1, 1, 16, 24)
    mask[..., 4:10, 6:14] = 1
    with torch.inference_mode():
        fresh = contextual_attention(small, small, mask)
        contextual_attention(big, big)  # leaves a larger pair of buffers behind
        kept = attention._kept.bufs
        assert kept is not None and kept[0].numel() >= 17 * 17 * 16 * 16
        again = contextual_attention(small, small, mask)  # reuses them
        assert attention._kept.bufs is kept
    torch.testing.assert_close(again[0], fresh[0], rtol=0, atol=0)
    assert torch.equal(again[1], fresh[1])
    release_workspace()
    assert attention._kept.bufs is None
    # Under autograd the scores are fresh tensors (no buffer is kept or written to).
    f = small.clone().requires_grad_(True)
    y, _ = contextual_attention(f, f, mask)
    y.sum().backward()
    assert attention._kept.bufs is None and f.grad is not None
    torch.testing.assert_close(y.detach(), fresh[0], rtol=1e-5, atol=1e-5)


def test_attention_workspace_over_the_limit_is_not_kept(monkeypatch):
    release_workspace()
    monkeypatch.setattr(attention, "KEEP_WORKSPACE_BYTES", 1024)
    f = torch.rand(1, 4, 16, 16)
    with torch.inference_mode():
        contextual_attention(f, f)
    assert attention._kept.bufs is None
