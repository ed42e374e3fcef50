"""Convolutions shared by the inpainting models: TF-"SAME" padding, gated convs, spectral norm.

Two padding modes, chosen per layer by `compat`:
- "clean": symmetric zero padding `dilation * (k - 1) // 2` on every side (PyTorch's usual choice).
- "official": TensorFlow's "SAME" rule, so converted TF checkpoints give the official outputs.
  For stride 1 and an odd kernel the two agree; for stride 2 on an even size TF pads one pixel
  less before than after (k3: 0/1, k5: 1/2), which shifts the sampling grid by half a pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

COMPAT_MODES = ("clean", "official")


def check_compat(compat: str) -> str:
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
    return compat


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial axis of length `size`."""
    out = math.ceil(size / stride)
    span = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """Zero-pad an NCHW tensor the way TF "SAME" does before a convolution."""
    top, bottom = same_padding(x.shape[-2], kernel, stride, dilation)
    left, right = same_padding(x.shape[-1], kernel, stride, dilation)
    return F.pad(x, (left, right, top, bottom))


class Conv2dSame(nn.Conv2d):
    """`nn.Conv2d` whose padding follows `compat` (square kernels, zero padding).

    In official mode a stride-1 layer with an odd kernel keeps the built-in symmetric padding
    (identical to TF "SAME", and cheaper than an explicit pad); only strided layers pad by hand.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = True, compat: str = "clean"):
        self.compat = check_compat(compat)
        self.tf_same = compat == "official" and (stride > 1 or kernel_size % 2 == 0)
        padding = 0 if self.tf_same else dilation * (kernel_size - 1) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_same:
            x = pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return self._conv_forward(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", compat={self.compat}"


_ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


class GatedConv2d(Conv2dSame):
    """DeepFill v2 gated convolution: `act(features) * sigmoid(gates)`.

    `out_channels` is the number of output maps; the convolution itself computes twice as many,
    the first half features and the second half gates (the order of the official channel split,
    which a converted kernel relies on). With `activation=None` it is a plain convolution with
    `out_channels` outputs and no gate (the official output layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, activation: str | None = "elu", compat: str = "clean"):
        if activation is not None and activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (known: {sorted(_ACTIVATIONS)})")
        self.gated = activation is not None
        super().__init__(in_channels, out_channels * (2 if self.gated else 1), kernel_size, stride,
                         dilation, compat=compat)
        self.activation = activation
        self.out_maps = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return super().forward(x)
        if self.tf_same:
            x = pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        c = self.out_maps
        if x.device.type == "cpu":
            # Two convolutions, one per half, instead of one of 2C maps then a channel split: in
            # channels_last a half of the 2C output is strided (runs of C values), and with C = 12
            # or 24 the elementwise kernels fall back to scalar code (exp above all). Contiguous
            # halves keep the gating vectorised (3x faster gating for the full-resolution layers
            # at 512 px); oneDNN runs the two half-width convs as fast as the full one. Same maths.
            b = (None, None) if self.bias is None else (self.bias[:c], self.bias[c:])
            feat = self._conv_forward(x, self.weight[:c], b[0])
            gate = self._conv_forward(x, self.weight[c:], b[1])
        else:
            feat, gate = self._conv_forward(x, self.weight, self.bias).chunk(2, dim=1)
        return _gate(feat, gate, self.activation)


def _gate(feat: torch.Tensor, gate: torch.Tensor, activation: str) -> torch.Tensor:
    """`act(feat) * sigmoid(gate)`; under no_grad / inference in place on the fresh conv outputs."""
    act = _ACTIVATIONS[activation]
    if not torch.is_grad_enabled():
        return act(feat, inplace=True).mul_(gate.sigmoid_())
    return act(feat) * torch.sigmoid(gate)


# Nearest x2 upsampling then a 3x3 convolution (padding 1) equals four 2x2 convolutions of the
# small input, one per output phase: output row 2i reads upsampled rows 2i-1, 2i, 2i+1, i.e.
# source rows i-1 (tap 0) and i (taps 1 + 2); output row 2i+1 reads source rows i (taps 0 + 1)
# and i+1 (tap 2). Columns alike. _PHASE_TAPS[phase, tap of the 2x2, tap of the 3x3].
_PHASE_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) kernel applied after nearest x2 -> (4 O, I, 2, 2) kernel of the four phases.

    Output channel (2 * py + px) * O + o of a 2x2 convolution with padding 1 of the small input,
    at (i + py, j + px), is output pixel (2i + py, 2j + px), channel o, of the original layer.
    """
    m = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)
    w = torch.einsum("pak,qbl,oikl->pqoiab", m, m, weight)
    return w.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def interleave_phases(y: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, 4C, H+1, W+1) phase maps of `subpixel_weight` -> (N, C, 2H, 2W) (pixel (2i+py, 2j+px)
    = channel (2py+px)C + c at (i+py, j+px)); channels_last in, channels_last out."""
    n, _, h1, w1 = y.shape
    h, w, c = h1 - 1, w1 - 1, channels
    if not torch.is_grad_enabled() and y.is_contiguous(memory_format=torch.channels_last):
        # One strided copy: with channels_last strides the source of (i, py, j, px, c) is at
        # (i + py) sh + (j + px) sw + (2 py + px) C + c.
        sn, _, sh, sw = y.stride()
        src = y.as_strided((n, h, 2, w, 2, c), (sn, sh, sh + 2 * c, sw, sw + c, 1))
        out = torch.empty((n, c, 2 * h, 2 * w), dtype=y.dtype, device=y.device,
                          memory_format=torch.channels_last)
        out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c).copy_(src)
        return out
    y6 = y.view(n, 2, 2, c, h1, w1)
    rows = [torch.stack([y6[:, py, px, :, py:py + h, px:px + w] for px in (0, 1)], dim=-1) for py in (0, 1)]
    out = torch.stack(rows, dim=3).reshape(n, c, 2 * h, 2 * w)  # (n, c, h, py, w, px)
    if y.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class GatedDeconv2d(nn.Module):
    """DeepFill upsampling layer: x2 nearest neighbour, then a gated 3x3 convolution.

    The inner layer is `self.conv`, so `<name>.conv.weight` is the official
    `<name>/<name>_conv/kernel`. TF's align-corners nearest x2 picks the same source pixels as
    PyTorch's plain nearest x2, so one upsampling serves both compat modes.

    On CPU the layer runs as four 2x2 convolutions of the small input (`subpixel_weight`), gated
    at low resolution and interleaved once: 16 instead of 36 multiply-adds per output value and
    no upsampled copy of the input (the same result up to float rounding).
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str | None = "elu",
                 compat: str = "clean"):
        super().__init__()
        self.conv = GatedConv2d(in_channels, out_channels, 3, activation=activation, compat=compat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        conv, c = self.conv, self.conv.out_maps
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        halves = 2 if conv.gated else 1
        # (phase, half, c, I, 2, 2): the features and gates of each phase as two convolutions
        # (see GatedConv2d.forward), each with channels (phase, c).
        w = subpixel_weight(conv.weight).view(4, halves, c, -1, 2, 2)
        out = []
        for k in range(halves):
            wk = w[:, k].reshape(4 * c, -1, 2, 2).contiguous(memory_format=fmt)
            bk = None if conv.bias is None else conv.bias.view(halves, c)[k].repeat(4)
            out.append(F.conv2d(x, wk, bk, padding=1))
        y = _gate(out[0], out[1], conv.activation) if conv.gated else out[0]
        return interleave_phases(y, c)


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2,
              compat: str = "clean") -> nn.Module:
    """Spectral-normalised conv (one power iteration per training forward, eps 1e-12, as neuralgym).

    The kernel is initialised (glorot-uniform, zero bias, TF's defaults) before the
    parametrisation is registered so the power-iteration vectors start from the real weight.
    """
    conv = Conv2dSame(in_channels, out_channels, kernel_size, stride, compat=compat)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return spectral_norm(conv, n_power_iterations=1, eps=1e-12)


def tf_default_init_(module: nn.Module, types: tuple[type, ...] = (nn.Conv2d,)) -> None:
    """The official TF generators' initialisation (TF defaults): glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, types):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def run_named(module: nn.Module, names, x: torch.Tensor) -> torch.Tensor:
    """Apply `module`'s submodules `names` in order (the official nets are plain chains of named layers)."""
    for name in names:
        x = getattr(module, name)(x)
    return x
