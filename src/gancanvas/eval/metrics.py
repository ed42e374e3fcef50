"""Evaluation metrics: a small registry of per-image and set-level metrics.

Every metric sees the same inputs: `pred` and `target`, float tensors N x 3 x H x W, RGB in
[0, 1] (8-bit images divided by 255), and `mask`, float N x 1 x H x W with 1 (> 0.5) = hole.
In the evaluation protocol `pred` is already composited (known pixels copied from the input),
so whole-image metrics differ from the target only inside the hole.

Per-image metrics return a tensor of N values; the dataset value is their mean. Set-level
metrics (FID) have no per-image value: `METRICS[name].accumulator()` collects what they need
batch by batch and `compute()` gives one number for the whole set. Per-image metrics have the
same accumulator interface (it averages), so a caller treats all metrics alike:

    acc = METRICS["psnr"].accumulator()
    for pred, target, mask in batches:
        acc.update(pred, target, mask)    # per-image values, or None for a set metric
    value = acc.compute()

Pixel metrics are computed in float64 so that hand-computed values and skimage agree to
round-off, whatever the input dtype.

Definitions (d = pred - target, pixel values in [0, 1], H = the set of hole pixels of an image,
each image separately):
- `hole_l1` = 100 * sum_{p in H, c in RGB} |d_pc| / (3 |H|): the mean absolute error over the
  hole's pixels *and* channels, in percent of the full range. This is mmagic's `MAE` with
  `mask_key="mask", scaling=100`, the "l1" column of its DeepFill v1/v2 tables (e.g. 8.635 for
  v2 on Places365). Undefined (NaN) for a mask without a hole.
- `l1` = 100 * mean_{all p, c} |d_pc|: the whole-image mean absolute error in percent. This is
  the usual reading of the DeepFill papers' "mean l1 error" (the author calls it a relative L1
  error, JiahuiYu/generative_inpainting#146; the exact formula is only in an image there).
  With composited outputs, l1 = hole_l1 * |H| / (H*W), so the two differ by the hole fraction:
  compare papers' "mean l1 %" with `l1`, mmagic's "l1" with `hole_l1`.
- `l2` = 100 * mean_{all p, c} d_pc^2: the whole-image mean squared error in percent, the
  papers' "squared relative L2 error" ("mean l2 %").
- `rmse` = sqrt(mean_{all p, c} d_pc^2): the whole-image root mean squared error on the [0, 1]
  scale (data range 1, as psnr), per image, the dataset value the mean of per-image RMSEs. This
  is the scale of SEAN's reconstruction table (RMSE 0.12 next to PSNR 18.74 dB: -20 log10 0.116);
  multiply by 255 for 8-bit levels. For one image psnr = -20 log10(rmse).
- `psnr` = 10 log10(1 / mean_{all p, c} d_pc^2) dB (data range 1, whole image, per image, the
  dataset value is the mean of per-image PSNRs), capped at 100 dB: identical images would give
  +inf and one infinite image would make the mean infinite.
- `ssim`: Wang et al. 2004, Gaussian window 11x11 (sigma 1.5, truncated at radius 5,
  normalised), K1 = 0.01, K2 = 0.03, data range 1, population (not sample) local covariances;
  the SSIM map is evaluated where the window lies inside the image ("valid", i.e. 5 px from
  every edge are not scored), averaged per channel, then over R, G, B. Equal to
  `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1, data_range=1)`. Images need sides >= 11 px.
- `lpips`: LPIPS-VGG v0.1 on the whole image (see `gancanvas.eval.lpips`), local weight files.
- `fid`: Fréchet distance between Gaussians fitted to the FID Inception pool3 features of the
  outputs and of the ground-truth images of the same run (see `gancanvas.eval.inception`):
  ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), S the sample covariance (N - 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError

__all__ = [
    "METRICS", "Accumulator", "Metric", "register_metric", "get_metric", "hole_l1", "l1", "l2",
    "psnr", "rmse", "ssim", "lpips", "FID", "feature_statistics", "frechet_distance", "PSNR_CAP",
]

PSNR_CAP = 100.0


class Accumulator(Protocol):
    """Running state of one metric over a data set."""

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Add a batch; returns the per-image values (per-image metrics) or None (set metrics)."""

    def compute(self) -> float:
        """The value over everything added so far."""


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    `fn` is, for a per-image metric, `fn(pred, target, mask, **options) -> (N,) tensor`; for a set
    metric, a factory `fn(**options) -> Accumulator`. `prepare(**options)`, when given, is run by
    `accumulator()` so that a missing weights file is reported before a long evaluation starts.
    """

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    per_image: bool = True
    precision: int = 3
    prepare: Callable[..., Any] | None = None

    @property
    def description(self) -> str:
        doc = (self.fn.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 **options) -> torch.Tensor:
        if not self.per_image:
            raise TypeError(f"{self.name} is a set metric with no per-image value; "
                            f"use METRICS[{self.name!r}].accumulator()")
        _check_batch(pred, target, mask)
        return self.fn(pred, target, mask, **options)

    def accumulator(self, **options) -> Accumulator:
        if not self.per_image:
            return self.fn(**options)
        if self.prepare is not None:
            self.prepare(**options)
        return _MeanOf(self, options)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, higher_is_better: bool, per_image: bool = True, precision: int = 3,
                    prepare: Callable[..., Any] | None = None):
    """Decorator: register a per-image metric function, or a set metric's accumulator class."""

    def deco(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = Metric(name, fn, higher_is_better, per_image, precision, prepare)
        return fn

    return deco


def get_metric(name: str) -> Metric:
    """The registered metric `name`; ConfigError listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None


class _MeanOf:
    """Accumulator of a per-image metric: keeps the values, `compute()` is their mean."""

    def __init__(self, metric: Metric, options: dict):
        self.metric, self.options, self.values = metric, options, []

    def update(self, pred, target, mask):
        v = self.metric(pred, target, mask, **self.options)
        self.values.append(v.detach().double().cpu())
        return v

    def compute(self) -> float:
        if not self.values:
            return math.nan
        return float(torch.cat(self.values).mean())


def _check_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
        raise ValueError(f"metrics expect pred and target N x 3 x H x W of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    n, _, h, w = pred.shape
    if tuple(mask.shape) != (n, 1, h, w):
        raise ValueError(f"metrics expect a mask {n} x 1 x {h} x {w}, got {tuple(mask.shape)}")


def _f64(x: torch.Tensor) -> torch.Tensor:
    # MPS has no float64; everywhere else float64 keeps sums over 10^6 pixels exact enough.
    return x.float() if x.device.type == "mps" else x.double()


# ----------------------------------------------------------------------------- pixel metrics

@register_metric("hole_l1", higher_is_better=False)
def hole_l1(pred, target, mask):
    """Mean absolute error over the hole (pixels and channels), x100; mmagic's masked MAE."""
    hole = (mask > 0.5).to(_f64(pred).dtype)
    err = (_f64(pred) - _f64(target)).abs() * hole
    count = hole.sum(dim=(1, 2, 3)) * pred.shape[1]
    # 0/0 -> NaN for an image without a hole: there is nothing to score.
    return 100.0 * err.sum(dim=(1, 2, 3)) / count


@register_metric("l1", higher_is_better=False)
def l1(pred, target, mask):
    """Mean absolute error over the whole image (pixels and channels), x100."""
    return 100.0 * (_f64(pred) - _f64(target)).abs().mean(dim=(1, 2, 3))


@register_metric("l2", higher_is_better=False)
def l2(pred, target, mask):
    """Mean squared error over the whole image (pixels and channels), x100."""
    return 100.0 * (_f64(pred) - _f64(target)).pow(2).mean(dim=(1, 2, 3))


@register_metric("psnr", higher_is_better=True, precision=2)
def psnr(pred, target, mask):
    """PSNR in dB over the whole image, data range 1, capped at 100 dB (identical images)."""
    mse = (_f64(pred) - _f64(target)).pow(2).mean(dim=(1, 2, 3))
    # mse = 0 gives +inf; the clamp turns it (and anything above the cap) into PSNR_CAP.
    return (10.0 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP)


@register_metric("rmse", higher_is_better=False, precision=4)
def rmse(pred, target, mask):
    """Root mean squared error over the whole image (pixels and channels), data range 1."""
    return (_f64(pred) - _f64(target)).pow(2).mean(dim=(1, 2, 3)).sqrt()


SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


@functools.lru_cache(maxsize=8)
def _gauss1d(dtype: torch.dtype, device: str) -> torch.Tensor:
    r = SSIM_WINDOW // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


@register_metric("ssim", higher_is_better=True, precision=4)
def ssim(pred, target, mask):
    """SSIM (Gaussian 11x11, sigma 1.5, K 0.01/0.03, valid region), mean over RGB; = skimage's."""
    n, c, h, w = pred.shape
    if min(h, w) < SSIM_WINDOW:
        raise InputError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels "
                         f"(its Gaussian window); got {h}x{w}")
    x = _f64(pred).reshape(n * c, 1, h, w)
    y = _f64(target).reshape(n * c, 1, h, w)
    g = _gauss1d(x.dtype, str(x.device))
    # The 2-D Gaussian is separable: two 1-D passes, "valid" so no padding convention matters.
    stack = torch.cat([x, y, x * x, y * y, x * y], 0)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1))
    stack = F.conv2d(stack, g.view(1, 1, 1, -1))
    mx, my, exx, eyy, exy = stack.chunk(5, 0)
    vx, vy, cxy = exx - mx * mx, eyy - my * my, exy - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # (K * data range)^2 with data range 1
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.reshape(n, c, -1).mean(dim=2).mean(dim=1)


# ----------------------------------------------------------------------------- LPIPS

@functools.lru_cache(maxsize=4)
def _lpips_net(weights: str, backbone: str, device: str):
    from .lpips import load_lpips

    return load_lpips(weights, backbone, device=device)


def _lpips_prepare(weights=None, backbone=None, device: str | torch.device = "cpu"):
    from .inception import resolve_weights
    from .lpips import (
        LPIPS_WEIGHTS_ENV,
        LPIPS_WEIGHTS_SOURCE,
        VGG16_WEIGHTS_ENV,
        VGG16_WEIGHTS_SOURCE,
    )

    w = resolve_weights(weights, LPIPS_WEIGHTS_ENV, "LPIPS", LPIPS_WEIGHTS_SOURCE)
    b = resolve_weights(backbone, VGG16_WEIGHTS_ENV, "LPIPS (VGG16 backbone)", VGG16_WEIGHTS_SOURCE)
    # Cached by resolved paths and device: the network is loaded once per process.
    return _lpips_net(str(w.resolve()), str(b.resolve()), str(torch.device(device)))


def _lpips_check(weights=None, backbone=None):
    """Load (and cache) the network once before an evaluation, so missing files fail early."""
    _lpips_prepare(weights, backbone)


@register_metric("lpips", higher_is_better=False, precision=4, prepare=_lpips_check)
def lpips(pred, target, mask, *, weights=None, backbone=None):
    """LPIPS-VGG v0.1 distance over the whole image (needs local weight files)."""
    net = _lpips_prepare(weights, backbone, device=pred.device)
    with torch.no_grad():
        return net(pred.float(), target.float()).double()


# ----------------------------------------------------------------------------- FID

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample covariance (normalised by N - 1, as numpy.cov) of N x D features."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"FID needs features of at least 2 images, got {f.shape[0] if f.ndim else 0}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance of N(mu1, S1) and N(mu2, S2): |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^(1/2).

    tr (S1 S2)^(1/2) is computed as sum_i sqrt(lambda_i) over the eigenvalues of the symmetric
    matrix S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as S1 S2 (XY and YX share them).
    Two symmetric eigen-decompositions replace a general matrix square root (scipy.linalg.sqrtm):
    no complex round-off to discard, and singular covariances (fewer images than feature
    dimensions, the usual case) need no added epsilon. Eigenvalues that round-off pushes below 0
    are clipped to 0, and a result of -1e-12 from round-off is reported as 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"frechet_distance: mismatched shapes {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, s1, mu2, s2)):
        raise ValueError("frechet_distance: non-finite statistics (NaN/inf features)")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2  # exact symmetry for eigh
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)


@register_metric("fid", higher_is_better=False, per_image=False, precision=2)
class FID:
    """FID between the outputs and the ground-truth images (FID Inception pool3, local weights).

    `FID(weights=None, device="cpu")`: `weights` is the path of `pt_inception-2015-12-05-*.pth`
    (or `$GANCANVAS_FID_WEIGHTS`); `update(pred, target, mask)` adds the pool3 features of both,
    `compute()` is the Fréchet distance of their Gaussians. Needs at least 2 images; with fewer
    than 2048 images the covariances are singular and FID is biased upwards, so only compare FIDs
    computed on the same number of images.
    """

    def __init__(self, weights=None, device: str | torch.device = "cpu", net=None):
        from .inception import load_fid_inception

        self.device = torch.device(device)
        self.net = net if net is not None else load_fid_inception(weights, device=self.device)
        self.fake: list[np.ndarray] = []
        self.real: list[np.ndarray] = []

    def features(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.net(x.to(self.device, torch.float32)).double().cpu().numpy()

    def update(self, pred, target, mask):
        _check_batch(pred, target, mask)
        self.fake.append(self.features(pred))
        self.real.append(self.features(target))
        return None

    def compute(self) -> float:
        if not self.fake:
            return math.nan
        mu1, s1 = feature_statistics(np.concatenate(self.fake))
        mu2, s2 = feature_statistics(np.concatenate(self.real))
        return frechet_distance(mu1, s1, mu2, s2)
