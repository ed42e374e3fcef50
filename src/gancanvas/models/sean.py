"""SEAN: "SEAN: Image Synthesis with Semantic Region-Adaptive Normalization" (Zhu, Abdal, Qin,
Wonka; CVPR 2020).

SPADE gives every semantic region its look from the label map alone; SEAN gives each region its
own **style code**, so one face's hair and another's skin can be combined, regions swapped,
interpolated, or mixed block by block.

- **Style encoder** (`RegionStyleEncoder`, the official "Zencoder"): a small conv net (two
  stride-2 convs, one transposed conv, instance norm, tanh) maps the style image to a
  `style_dim`-channel map at half resolution; **region-wise average pooling** over each class of
  the (nearest-resized) label map gives the **style matrix** ST of shape (N, regions, style_dim),
  one code per class; classes absent from the label map get a zero row and `present = False`.
- **SEAN normalization** (`gancanvas.nn.norm.SEAN`, the official "ACE"): per-channel scaled noise is
  added, then parameter-free batch norm; the modulation (gamma, beta) blends two sources with
  learned weights: a **style map** (each region's code through its own fully connected layer and a
  ReLU, broadcast over the region, then a 3x3 conv) and SPADE's **mask branch** on the label map.
- **SEAN residual block** (`SEANResnetBlock`): SPADE's block with SEAN normalization (learned
  shortcut, spectral norm, leaky ReLU 0.2). Every style block gets the same style matrix, or
  its own one for **style crossover** (per-block styles, (N, n_style_blocks, regions, style_dim)).
- **Generator** (`SEANGenerator`): `fc` on the label map downsampled to 1 / 2^k, then head_0,
  G_middle_0, G_middle_1, up_0, up_1, up_2 (SEAN blocks with styles) and up_3, whose
  normalisation only has the mask branch (as the official generator), then conv_img and tanh.
- Training (the recipe): reconstruction with styles from the target image itself, SPADE's
  multi-scale discriminator (`build_spade_discriminator`), hinge + feature matching (x10) + VGG
  (x10), Adam TTUR G 1e-4 / D 4e-4, betas (0, 0.9).

Batches and regions are vectorised: the region pooling is one einsum over one-hot region maps, and
the style map's conv is folded onto the codes (`nn.norm.RegionConv`: R instead of style_dim input
channels), so there is no loop over samples or regions (the official code loops over both and
writes each region with masked_scatter). At inference on the CPU, the label-map convolutions are
evaluated as per-region tables plus convolutions on the boundary band (`nn.norm.label_pieces`).
`benchmarks/bench_sean.py` compares this with the official loop structure on the same weights.

Regions are the first `label_nc (+1 with contain_dontcare)` channels of the semantic map; an
instance-edge channel (`use_instance`) only feeds the mask branch and `fc`. The released
CelebAMask-HQ model has 19 classes (`CELEBAMASK_HQ_CLASSES`) and no instance channel.

Noise: each SEAN normalisation adds `noise * noise_var` with one (N, 1, H, W) map per layer, drawn
as torch.randn(N, W, H, 1) transposed, which is the official draw, so a seeded run reproduces the
official noise; `forward(noise=...)` takes explicit maps (in forward order, `noise_layout`) or 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import CELEBAMASK_HQ_CLASSES  # the 19 classes of the official SEAN label maps
from ..errors import ConfigError, InputError
from ..nn.norm import SEAN
from ..registry import register_model
from .spade import (
    UPSAMPLING_LAYERS,
    NormResnetBlock,
    build_spade_discriminator,
    check_label_classes,
    init_weights,
    semantic_channels,
    semantic_map,
)

__all__ = ["SEANConfig", "RegionStyleEncoder", "SEANResnetBlock", "SEANGenerator", "region_average_pool",
           "CELEBAMASK_HQ_CLASSES", "STYLE_BLOCKS"]

#: The residual blocks whose normalisation uses the style matrix, in forward order.
STYLE_BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2")
BLOCKS = STYLE_BLOCKS + ("up_3",)


@dataclass
class SEANConfig:
    label_nc: int = 10  # classes (10 = the built-in scenes; CelebAMask-HQ 19)
    contain_dontcare: bool = False  # one extra channel (and style region) for "don't care"
    use_instance: bool = False  # append the instance-edge channel (mask branch and fc only)
    class_names: list[str] | None = None  # names of the label_nc classes (None: unnamed)
    ngf: int = 64
    num_upsampling_layers: str = "normal"  # "normal" | "more" (the official generator never runs "most")
    style_dim: int = 512  # length of a region's style code (official 512)
    encoder_ngf: int = 32  # style encoder width (official 32)
    spade_hidden: int = 128  # mask-branch embedding width (official 128)
    spade_kernel: int = 3
    param_free_norm: str = "syncbatch"  # official: always (sync) batch norm in SEAN layers
    spectral: bool = True
    noise: bool = True  # per-layer noise injection (trained in; switching it off changes outputs)
    init_gain: float = 0.02
    # Discriminator (SPADE's)
    ndf: int = 64
    n_layers_d: int = 4
    num_d: int = 2

    def __post_init__(self):
        name = "model 'sean'"
        check_label_classes(name, self.label_nc, self.class_names)
        if self.num_upsampling_layers not in ("normal", "more"):
            raise ConfigError(f"{name}: num_upsampling_layers must be 'normal' or 'more' (the official SEAN "
                              f"generator never runs the 'most' block), got '{self.num_upsampling_layers}'")
        if self.param_free_norm not in ("syncbatch", "batch", "instance"):
            raise ConfigError(f"{name}: param_free_norm must be syncbatch, batch or instance, "
                              f"got '{self.param_free_norm}'")
        if self.ngf < 1 or self.style_dim < 1 or self.encoder_ngf < 1 or self.spade_hidden < 1:
            raise ConfigError(f"{name}: ngf, style_dim, encoder_ngf and spade_hidden must be positive")
        if self.spade_kernel < 1 or self.spade_kernel % 2 == 0:
            raise ConfigError(f"{name}: spade_kernel must be odd, got {self.spade_kernel}")
        if self.n_layers_d < 2 or self.num_d < 1 or self.ndf < 1:
            raise ConfigError(f"{name}: need n_layers_d >= 2, num_d >= 1, ndf >= 1")

    @property
    def semantic_nc(self) -> int:
        return semantic_channels(self.label_nc, self.contain_dontcare, self.use_instance)

    @property
    def regions(self) -> int:
        """Style regions: the classes, plus "don't care" when it has a channel."""
        return self.label_nc + int(self.contain_dontcare)

    @property
    def num_up(self) -> int:
        return UPSAMPLING_LAYERS[self.num_upsampling_layers]

    def region_names(self) -> tuple[str, ...]:
        names = list(self.class_names) if self.class_names else [str(i) for i in range(self.label_nc)]
        if self.contain_dontcare:
            names.append("dontcare")
        return tuple(names)


def region_average_pool(features: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-wise average pooling: the mean feature vector of every region of every sample.

    features (N, D, H, W); regions (N, R, H, W), non-zero = inside (one-hot class maps at the
    features' resolution). Returns the style matrix (N, R, D), zero rows for empty regions, and
    `present` (N, R) bool. One einsum for all samples and regions.
    """
    inside = (regions != 0).to(features.dtype)
    area = inside.sum(dim=(2, 3))
    sums = torch.einsum("ndhw,nrhw->nrd", features, inside)
    return sums / area.clamp_min(1).unsqueeze(-1), area > 0


class RegionStyleEncoder(nn.Module):
    """The style encoder: image (N, 3, H, W) and semantic map -> style matrix (N, R, style_dim).

    conv_in: reflect-pad + 3x3 conv (ngf), IN, leaky ReLU; down_1, down_2: 3x3 stride-2 convs
    (2, 4 x ngf), IN, leaky ReLU; up: 3x3 stride-2 transposed conv (8 x ngf), IN, leaky ReLU;
    conv_out: reflect-pad + 3x3 conv (style_dim), tanh. The map is at H/2 x W/2; the label map is
    resized to it (nearest) for the region pooling.
    """

    def __init__(self, style_dim: int = 512, ngf: int = 32):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ngf, 3)
        self.down_1 = nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1)
        self.down_2 = nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4 * ngf, 8 * ngf, 3, stride=2, padding=1, output_padding=1)
        self.conv_out = nn.Conv2d(8 * ngf, style_dim, 3)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        def block(x):
            return F.leaky_relu(F.instance_norm(x), 0.2)

        x = block(self.conv_in(F.pad(image, (1, 1, 1, 1), mode="reflect")))
        x = block(self.down_1(x))
        x = block(self.down_2(x))
        x = block(self.up(x))
        return torch.tanh(self.conv_out(F.pad(x, (1, 1, 1, 1), mode="reflect")))

    def forward(self, image: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(style matrix (N, R, D), present (N, R)); `regions` are the region channels of the
        semantic map at the image's resolution."""
        codes = self.features(image)
        regions = F.interpolate(regions.to(codes.dtype), size=codes.shape[2:], mode="nearest")
        return region_average_pool(codes, regions)


class SEANResnetBlock(NormResnetBlock):
    """SPADE's residual block with SEAN normalisation: shortcut SEAN -> 1x1 conv when fin != fout,
    main path (SEAN, leaky ReLU, 3x3 conv) twice. `use_styles=False`: mask branch only."""

    def __init__(self, fin: int, fout: int, cfg: SEANConfig, use_styles: bool = True):
        def norm(channels: int) -> SEAN:
            return SEAN(channels, cfg.semantic_nc, cfg.regions, cfg.style_dim, cfg.spade_hidden,
                        cfg.spade_kernel, cfg.param_free_norm, use_styles)

        super().__init__(fin, fout, norm, cfg.init_gain, cfg.spectral)
        self.use_styles = use_styles

    @property
    def n_noise(self) -> int:
        return 3 if self.learned_shortcut else 2

    def forward(self, x: torch.Tensor, seg: torch.Tensor, styles: torch.Tensor | None,
                noise: Sequence[torch.Tensor | None]) -> torch.Tensor:
        # Noise maps in the official draw order: shortcut first, then norm_0, norm_1.
        if self.learned_shortcut:
            n_s, n_0, n_1 = noise
            x_s = self.conv_s(self.norm_s(x, seg, styles, n_s))
        else:
            (n_0, n_1), x_s = noise, x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg, styles, n_0), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg, styles, n_1), 0.2))
        return x_s + dx


@register_model("sean", task="synthesize", config=SEANConfig, discriminator=build_spade_discriminator,
                recipe="sean")
class SEANGenerator(nn.Module):
    """SEAN: semantic image synthesis with per-region style control."""

    arch = "sean"
    style_blocks = STYLE_BLOCKS

    def __init__(self, cfg: SEANConfig | None = None):
        super().__init__()
        cfg = cfg or SEANConfig()
        self.cfg = cfg
        nf = cfg.ngf
        self.style_encoder = RegionStyleEncoder(cfg.style_dim, cfg.encoder_ngf)
        self.fc = nn.Conv2d(cfg.semantic_nc, 16 * nf, 3, padding=1)
        self.head_0 = SEANResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_0 = SEANResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_1 = SEANResnetBlock(16 * nf, 16 * nf, cfg)
        self.up_0 = SEANResnetBlock(16 * nf, 8 * nf, cfg)
        self.up_1 = SEANResnetBlock(8 * nf, 4 * nf, cfg)
        self.up_2 = SEANResnetBlock(4 * nf, 2 * nf, cfg)
        # The last block is modulated by the label map alone (the official generator's choice).
        self.up_3 = SEANResnetBlock(2 * nf, nf, cfg, use_styles=False)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)
        init_weights(self, cfg.init_gain)  # the layers without spectral norm (those were done before it)

    # --- shapes ------------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """Label-map sides must be multiples of this."""
        return 2 ** self.cfg.num_up

    @property
    def n_style_blocks(self) -> int:
        return len(self.style_blocks)

    def _block_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """Feature size at each block of BLOCKS for an H x W output."""
        s = self.stride
        h0, w0 = h // s, w // s
        mid = 2 if self.cfg.num_upsampling_layers == "more" else 1
        scales = [1, 2, 2 * mid, 4 * mid, 8 * mid, 16 * mid, 32 * mid]
        return [(h0 * k, w0 * k) for k in scales]

    def noise_layout(self, height: int, width: int) -> list[tuple[str, int, int]]:
        """(layer, H, W) of every noise map in forward order, e.g. ("up_0.norm_s", 32, 32)."""
        out = []
        for name, (h, w) in zip(BLOCKS, self._block_sizes(height, width)):
            block = getattr(self, name)
            norms = ("norm_s", "norm_0", "norm_1") if block.learned_shortcut else ("norm_0", "norm_1")
            out += [(f"{name}.{n}", h, w) for n in norms]
        return out

    def _check_segmap(self, segmap: torch.Tensor) -> None:
        snc = self.cfg.semantic_nc
        if segmap.dim() != 4 or segmap.shape[1] != snc:
            raise InputError(f"SEAN: the semantic map must be (N, {snc}, H, W) ({self.cfg.label_nc} classes"
                             f"{' + dontcare' if self.cfg.contain_dontcare else ''}"
                             f"{' + instance edges' if self.cfg.use_instance else ''}), "
                             f"got {tuple(segmap.shape)}")
        h, w = segmap.shape[2:]
        if h % self.stride or w % self.stride or h == 0 or w == 0:
            raise InputError(f"SEAN: label map sides must be positive multiples of {self.stride}, "
                             f"got {h}x{w}")

    def semantic_input(self, labels, instances=None) -> torch.Tensor:
        """The semantic map this model takes, from label ids (and instance ids with use_instance)."""
        p = next(self.parameters())
        return semantic_map(self.cfg, labels, instances, p.dtype, p.device)

    # --- styles ------------------------------------------------------------------------------
    def encode_styles(self, image: torch.Tensor, segmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Style matrix (N, R, style_dim) and `present` (N, R) of `image` under its label map.

        `segmap` is the semantic map at the image's resolution (its region channels are used)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"SEAN: the style image must be (N, 3, H, W), got {tuple(image.shape)}")
        if segmap.dim() != 4 or segmap.shape[0] != image.shape[0] or segmap.shape[1] < self.cfg.regions:
            raise InputError(f"SEAN: the semantic map {tuple(segmap.shape)} does not fit the style image "
                             f"{tuple(image.shape)} ({self.cfg.regions} region channels needed)")
        if tuple(segmap.shape[2:]) != tuple(image.shape[2:]):
            raise InputError(f"SEAN: the style image is {image.shape[2]}x{image.shape[3]} but its label map "
                             f"is {segmap.shape[2]}x{segmap.shape[3]}")
        return self.style_encoder(image, segmap[:, :self.cfg.regions])

    def _style_per_block(self, styles: torch.Tensor, present: torch.Tensor | None, n: int) -> list:
        r, d, k = self.cfg.regions, self.cfg.style_dim, self.n_style_blocks
        if styles.dim() == 3 and tuple(styles.shape) == (n, r, d):
            styles = styles.unsqueeze(1).expand(n, k, r, d)
        elif styles.dim() != 4 or tuple(styles.shape) != (n, k, r, d):
            raise InputError(f"SEAN: styles must be (N, {r}, {d}) or per block (N, {k}, {r}, {d}) for this "
                             f"model and a batch of {n}, got {tuple(styles.shape)}")
        if present is not None:
            if tuple(present.shape) != (n, r):
                raise InputError(f"SEAN: present must be (N, {r}) = ({n}, {r}), got {tuple(present.shape)}")
            # Absent regions use a zero code, as the official reconstruction does.
            styles = styles * present.to(styles.dtype).view(n, 1, r, 1)
        return [styles[:, i] for i in range(k)]

    def _noise_maps(self, noise, n: int, h: int, w: int, like: torch.Tensor,
                    generator: torch.Generator | None) -> list[torch.Tensor | None]:
        layout = self.noise_layout(h, w)
        if not self.cfg.noise or (not isinstance(noise, Sequence) and noise is not None and not noise):
            return [None] * len(layout)
        if noise is None:
            # The official draw: randn(N, W, H, 1), used transposed as (N, 1, H, W).
            return [torch.randn(n, lw, lh, 1, generator=generator, device=like.device, dtype=like.dtype)
                    .permute(0, 3, 2, 1) for _, lh, lw in layout]
        maps = list(noise)
        if len(maps) != len(layout):
            raise InputError(f"SEAN: expected {len(layout)} noise maps (noise_layout), got {len(maps)}")
        for m, (name, lh, lw) in zip(maps, layout):
            if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[2:]) != (lh, lw) or m.shape[0] not in (1, n):
                raise InputError(f"SEAN: noise map for {name} must be (N, 1, {lh}, {lw}), "
                                 f"got {tuple(m.shape)}")
        return [m.to(like.dtype) for m in maps]

    # --- synthesis ---------------------------------------------------------------------------
    def forward(self, segmap: torch.Tensor, image: torch.Tensor | None = None,
                styles: torch.Tensor | None = None, present: torch.Tensor | None = None, noise=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Image (N, 3, H, W) in [-1, 1] from the semantic map and per-region styles.

        Styles come from `styles` (N, R, D) (or per style block (N, 6, R, D), for crossover), with
        `present` (N, R) marking the rows to use (absent rows count as zero codes), or are encoded
        from `image` under `segmap` (reconstruction, as in training). `noise`: None = random (from
        `generator`), 0 / False = none, or the maps of `noise_layout` as (N or 1, 1, H, W) tensors.
        """
        self._check_segmap(segmap)
        segmap = segmap if segmap.is_floating_point() else segmap.float()
        if (image is None) == (styles is None):
            raise InputError("SEAN: give either styles (a style matrix) or an image to encode, not "
                             f"{'both' if image is not None else 'neither'}")
        if image is not None:
            styles, present = self.encode_styles(image, segmap)
        n, _, h, w = segmap.shape
        per_block = self._style_per_block(styles, present, n)
        noises = self._noise_maps(noise, n, h, w, segmap, generator)

        s = self.stride
        x = self.fc(F.interpolate(segmap, size=(h // s, w // s), mode="nearest"))
        i = 0
        for b, name in enumerate(BLOCKS):
            block = getattr(self, name)
            if name in ("G_middle_0", "up_0", "up_1", "up_2", "up_3") or (
                    name == "G_middle_1" and self.cfg.num_upsampling_layers == "more"):
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(x, segmap, per_block[b] if block.use_styles else None, noises[i:i + block.n_noise])
            i += block.n_noise
        x = self.conv_img(F.leaky_relu(x, 0.2))
        return torch.tanh(x)
