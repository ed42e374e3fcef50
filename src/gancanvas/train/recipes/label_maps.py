"""What the label-map recipes (pix2pixHD, SPADE, SEAN) share: loss-option checks and label colours."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError
from .base import check_niter_decay


def check_label_loss_options(c, cfg, gan_modes: tuple[str, ...]) -> None:
    """The `loss:` options every label-map recipe has: GAN mode, aspect, VGG test divisor, decay."""
    if c.gan_mode not in gan_modes:
        raise ConfigError(f"loss.gan_mode must be one of {', '.join(gan_modes)}, got '{c.gan_mode}'")
    if c.aspect <= 0:
        raise ConfigError(f"loss.aspect (width / height) must be positive, got {c.aspect}")
    if c.vgg_channel_divisor < 1:
        raise ConfigError(f"loss.vgg_channel_divisor must be >= 1, got {c.vgg_channel_divisor}")
    if cfg.data.load_size:
        raise ConfigError("data.load_size is for inpainting and outpainting training; label-map "
                          "training sizes its images with data.size and loss.aspect")
    check_niter_decay(c.niter_decay, cfg)


def colour_labels(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """Label ids (N, H, W) as N3HW colours in [-1, 1]: the scenes palette, then fixed random colours."""
    from ...data.synthetic import PALETTE

    n = max(label_nc, int(labels.max()) + 1)
    table = np.random.RandomState(0).randint(0, 256, (n, 3)).astype(np.uint8)
    k = min(n, len(PALETTE))
    table[:k] = PALETTE[:k]
    rgb = torch.from_numpy(table).to(labels.device)[labels.clamp_min(0)]
    return rgb.permute(0, 3, 1, 2).float() / 127.5 - 1
