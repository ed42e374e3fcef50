"""SPADE: "Semantic Image Synthesis with Spatially-Adaptive Normalization" (Park, Liu, Wang, Zhu;
CVPR 2019).

Label map -> image. The label map is not fed through an encoder that normalisation would wash
out; instead every normalisation layer of the generator is a **SPADE** layer
(`gancanvas.nn.norm.SPADE`): parameter-free batch/instance normalisation followed by a per-pixel
scale and bias predicted from the label map.

- **Generator** (`SPADEGenerator`): a stack of SPADE residual blocks with nearest x2 upsampling
  between them, starting from a small feature map of 16 * ngf channels: the label map downsampled
  to 1 / 2^k of the output and convolved (`fc`), or, with the VAE (`use_vae`), a latent vector z
  mapped by a linear layer. `num_upsampling_layers` "normal" / "more" / "most" gives k = 5 / 6 / 7
  (one extra x2 between the two middle blocks for "more"; also an extra block for "most").
- **SPADE residual block** (`SPADEResnetBlock`): SPADE -> leaky ReLU -> 3x3 conv, twice; the
  shortcut is learned (SPADE -> 1x1 conv without bias, no activation) when the width changes.
  Spectral norm on all three convolutions, as the official `spectral...` norm_G option.
- **Style encoder** (`ConvEncoder`, with `use_vae`): six stride-2 convs (spectral norm + instance
  norm) on the image resized to 256x256, then mu and log-variance of z; trained with a KL term
  (`kld_loss`) so that z ~ N(0, 1) at test time gives diverse outputs.
- **Discriminator** (`MultiscaleDiscriminator`): PatchGAN discriminators on [label map, image] at
  full and half resolution, returning every layer's features for the feature-matching loss;
  spectral norm + instance norm in the middle layers ("spectralinstance"), 4 layers, the last
  intermediate one with stride 1. Losses (in the recipe): hinge GAN, feature matching (x10),
  VGG perceptual (x10), KL (x0.05); Adam with TTUR, G lr 1e-4, D lr 4e-4, betas (0, 0.9).

The generator takes the **semantic map** (N, semantic_nc, H, W): one channel per class
(`label_nc`), a "don't care" channel if `contain_dontcare`, then the instance-edge channel if
`use_instance` (the official channel order). Without the VAE the output has the label map's size
(its sides must be multiples of 2^k); with it the latent grid is fixed by `crop_size` and
`aspect_ratio`, as officially, and so is the output size.

Attribute names follow the official modules, so an official checkpoint converts by renaming the
spectral-norm tensors and dropping a Sequential index (`gancanvas.convert.spade`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import ConfigError, InputError
from ..nn.norm import PARAM_FREE_NORMS, SPADE
from ..registry import register_model

__all__ = ["SPADEConfig", "SPADEResnetBlock", "SPADEGenerator", "ConvEncoder", "NLayerDiscriminator",
           "MultiscaleDiscriminator", "build_spade_discriminator", "kld_loss", "reparameterize",
           "init_weights", "UPSAMPLING_LAYERS", "semantic_channels", "semantic_map", "DONTCARE_ID"]

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}


#: The label id that means "don't care" in the official data (its own channel with contain_dontcare).
DONTCARE_ID = 255


def semantic_channels(label_nc: int, contain_dontcare: bool, use_instance: bool) -> int:
    """Channels of the semantic map: classes, then "don't care", then the instance edges."""
    return label_nc + int(contain_dontcare) + int(use_instance)


def semantic_map(cfg, labels, instances=None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The generator input from label ids (N, H, W) / (N, 1, H, W) / (H, W) and instance ids.

    One-hot classes (ids outside the range: InputError), the don't-care channel (id 255) with
    `contain_dontcare`, and the instance-edge channel with `use_instance`; without an instance map
    the label map stands in (class boundaries).
    """
    from ..data.labels import check_instances, instance_edges, one_hot

    ids = torch.as_tensor(labels, device=device)
    dontcare = DONTCARE_ID if cfg.contain_dontcare else None
    onehot = one_hot(ids, cfg.label_nc, dontcare, dtype=dtype, path="labels")
    if onehot.dim() == 3:
        onehot = onehot[None]
    if not cfg.use_instance:
        return onehot
    inst = torch.as_tensor(instances, device=device) if instances is not None else ids
    if inst.dim() == 2:
        inst = inst[None]
    if inst.dim() == 4:
        inst = inst[:, 0]
    check_instances(inst, onehot, "instances", "labels")
    if inst.shape[0] != onehot.shape[0]:
        raise InputError(f"instances: {inst.shape[0]} instance maps for {onehot.shape[0]} label maps")
    return torch.cat([onehot, instance_edges(inst.unsqueeze(1), dtype=dtype)], dim=1)


def check_label_classes(name: str, label_nc: int, class_names) -> None:
    """The label classes of a SPADE-family config: at least one, and one distinct name per class
    when names are given (labels are looked up by name)."""
    if label_nc < 1:
        raise ConfigError(f"{name}: label_nc must be >= 1, got {label_nc}")
    if class_names is not None and len(class_names) != label_nc:
        raise ConfigError(f"{name}: class_names has {len(class_names)} names for label_nc {label_nc} classes")
    if class_names is not None and len(set(class_names)) != len(class_names):
        raise ConfigError(f"{name}: class_names has duplicates")


@dataclass
class SPADEConfig:
    label_nc: int = 10  # classes (10 = the built-in scenes; Cityscapes 35, ADE20K 150, COCO-Stuff 182)
    contain_dontcare: bool = False  # one extra channel for "don't care" (label 255 in the official data)
    use_instance: bool = True  # append the instance-edge channel
    class_names: list[str] | None = None  # names of the label_nc classes (None: unnamed)
    ngf: int = 64  # generator width: blocks have 16, 16, 16, 8, 4, 2, 1 (x ngf) channels
    num_upsampling_layers: str = "normal"  # "normal" | "more" | "most" (5 / 6 / 7 x2 upsamplings)
    param_free_norm: str = "syncbatch"  # SPADE's normalisation: "syncbatch" (official) | "batch" | "instance"
    spade_hidden: int = 128  # width of SPADE's shared embedding (official 128)
    spade_kernel: int = 3  # kernel size of SPADE's convs (official 3, "spade...3x3")
    spectral: bool = True  # spectral norm on the residual blocks' convs (official "spectral...")
    use_vae: bool = False  # start from z (image-encoder VAE) instead of the downsampled label map
    z_dim: int = 256
    crop_size: int = 256  # with use_vae: output width (the latent grid is crop_size / 2^k wide)
    aspect_ratio: float = 1.0  # with use_vae: width / height of the output
    init_gain: float = 0.02  # xavier-normal gain of the official init ("init_variance")
    # Discriminator
    ndf: int = 64
    n_layers_d: int = 4
    num_d: int = 2

    def __post_init__(self):
        name = "model 'spade'"
        check_label_classes(name, self.label_nc, self.class_names)
        if self.num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ConfigError(f"{name}: num_upsampling_layers must be one of "
                              f"{', '.join(UPSAMPLING_LAYERS)}, got '{self.num_upsampling_layers}'")
        if self.param_free_norm not in PARAM_FREE_NORMS or self.param_free_norm == "none":
            raise ConfigError(f"{name}: param_free_norm must be syncbatch, batch or instance, "
                              f"got '{self.param_free_norm}'")
        if self.ngf < 2 or self.ngf % 2:
            raise ConfigError(f"{name}: ngf must be an even number >= 2, got {self.ngf}")
        if self.spade_hidden < 1 or self.spade_kernel < 1 or self.spade_kernel % 2 == 0:
            raise ConfigError(f"{name}: spade_hidden must be >= 1 and spade_kernel odd, got "
                              f"{self.spade_hidden} and {self.spade_kernel}")
        if self.use_vae:
            grid = self.latent_grid()
            if min(grid) < 1:
                raise ConfigError(f"{name}: crop_size {self.crop_size} with aspect_ratio {self.aspect_ratio} "
                                  f"leaves a latent grid of {grid[0]}x{grid[1]}")
        if self.n_layers_d < 2 or self.num_d < 1 or self.ndf < 1:
            raise ConfigError(f"{name}: need n_layers_d >= 2, num_d >= 1, ndf >= 1")

    @property
    def semantic_nc(self) -> int:
        return semantic_channels(self.label_nc, self.contain_dontcare, self.use_instance)

    @property
    def num_up(self) -> int:
        return UPSAMPLING_LAYERS[self.num_upsampling_layers]

    def latent_grid(self) -> tuple[int, int]:
        """(height, width) of the first feature map for the VAE path (the official rule)."""
        sw = self.crop_size // 2 ** self.num_up
        return round(sw / self.aspect_ratio), sw


# --- building blocks -----------------------------------------------------------------------------


def _sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    # One power iteration per training forward; at eval the stored u, v give sigma (the official
    # torch.nn.utils.spectral_norm semantics, so converted checkpoints reproduce its outputs).
    return spectral_norm(module, n_power_iterations=1, eps=1e-12) if enabled else module


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The official "xavier" init: xavier-normal(gain) on conv / linear weights, zero biases.

    Layers already under spectral norm are skipped: the constructors here initialise those before
    registering it, so the power-iteration vectors start from the initialised weight. SEAN's
    per-region transforms are included.
    """
    from ..nn.norm import PerRegionLinear, RegionConv

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not hasattr(m, "parametrizations"):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, PerRegionLinear):
            for w in m.weight:
                nn.init.xavier_normal_(w, gain=gain)
            nn.init.zeros_(m.bias)
        elif isinstance(m, RegionConv):  # xavier's fans are symmetric, so the stored layout does not matter
            nn.init.xavier_normal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class NormResnetBlock(nn.Module):
    """The layers of the SPADE-family residual block: two (norm, leaky ReLU, 3x3 conv) units and a
    learned shortcut when fin != fout (norm then a 1x1 conv without bias; no activation on the
    shortcut, as the official code, which differs from the SPADE paper's figure here). The middle
    width is min(fin, fout). `make_norm(channels)` builds the conditional norms (SPADE, SEAN);
    subclasses define forward."""

    def __init__(self, fin: int, fout: int, make_norm, init_gain: float, spectral: bool):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1)
        conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        init_weights(conv_0, init_gain)
        init_weights(conv_1, init_gain)
        self.conv_0 = _sn(conv_0, spectral)
        self.conv_1 = _sn(conv_1, spectral)
        self.norm_0 = make_norm(fin)
        self.norm_1 = make_norm(fmiddle)
        if self.learned_shortcut:
            conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            init_weights(conv_s, init_gain)
            self.conv_s = _sn(conv_s, spectral)
            self.norm_s = make_norm(fin)


class SPADEResnetBlock(NormResnetBlock):
    """SPADE residual block (`NormResnetBlock` with SPADE norms)."""

    def __init__(self, fin: int, fout: int, semantic_nc: int, cfg: SPADEConfig):
        super().__init__(fin, fout, lambda channels: SPADE(channels, semantic_nc, cfg.spade_hidden,
                                                          cfg.spade_kernel, cfg.param_free_norm),
                         cfg.init_gain, cfg.spectral)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(_leaky(self.norm_0(x, seg)))
        dx = self.conv_1(_leaky(self.norm_1(dx, seg)))
        return x_s + dx


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, 1)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return eps * torch.exp(0.5 * logvar) + mu


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over the batch and the dimensions, as officially
    (the recipe weights it by lambda_kld = 0.05)."""
    return -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp())


class ConvEncoder(nn.Module):
    """VAE image encoder: image -> (mu, logvar) of z.

    The image is resized to 256x256 (bilinear), then six 3x3 stride-2 convs with spectral norm and
    instance norm (ngf, 2, 4, 8, 8, 8 x ngf channels, leaky ReLU after each) leave a 4x4 grid,
    flattened into `fc_mu` and `fc_var`. (The official encoder drops its sixth layer when
    crop_size < 256, which no longer fits its own fc layers; here it always has six.)
    """

    size = 256

    def __init__(self, ngf: int = 64, z_dim: int = 256, init_gain: float = 0.02):
        super().__init__()
        widths = (ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf, 8 * ngf)
        for i, (cin, cout) in enumerate(zip((3, *widths[:-1]), widths), start=1):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)  # a bias before IN is void
            init_weights(conv, init_gain)
            self.add_module(f"layer{i}", nn.Sequential(_sn(conv), nn.InstanceNorm2d(cout, affine=False)))
        self.fc_mu = nn.Linear(8 * ngf * 4 * 4, z_dim)
        self.fc_var = nn.Linear(8 * ngf * 4 * 4, z_dim)
        init_weights(self, init_gain)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        if tuple(x.shape[2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        for i in range(1, 7):
            x = _leaky(getattr(self, f"layer{i}")(x))
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)


# --- discriminator -------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator with intermediate outputs (for feature matching).

    `model0`: 4x4 stride-2 conv + leaky ReLU; `model1..model{n-1}`: 4x4 convs doubling the width
    (at most 512), stride 2 except the last (stride 1), spectral norm without bias + instance norm
    + leaky ReLU ("spectralinstance"); `model{n}`: 4x4 conv to one channel. Padding 2 as officially.
    `forward` returns the list of every unit's output, the patch predictions last.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, init_gain: float = 0.02):
        super().__init__()
        kw, pad = 4, math.ceil((4 - 1) / 2)
        units = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            conv = nn.Conv2d(nf_prev, nf, kw, stride=1 if n == n_layers - 1 else 2, padding=pad, bias=False)
            init_weights(conv, init_gain)
            units.append(nn.Sequential(_sn(conv), nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2)))
        units.append(nn.Sequential(nn.Conv2d(nf, 1, kw, stride=1, padding=pad)))
        for i, unit in enumerate(units):
            self.add_module(f"model{i}", unit)
        self.n_units = len(units)
        init_weights(self, init_gain)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(self.n_units):
            x = getattr(self, f"model{i}")(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """`num_d` NLayerDiscriminators on [semantic map, image], at full resolution, then each time
    average-pooled (3x3, stride 2, padding not counted). Returns a list over scales (full
    resolution first) of lists of features, the prediction last: what `adversarial_loss(...,
    reduce_scales="mean")` and `feature_matching_loss(..., drop_last=True)` take."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2,
                 init_gain: float = 0.02):
        super().__init__()
        self.num_d = num_d
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(in_channels, ndf, n_layers, init_gain))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i in range(self.num_d):
            results.append(getattr(self, f"discriminator_{i}")(x))
            if i + 1 < self.num_d:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return results


def build_spade_discriminator(cfg) -> MultiscaleDiscriminator:
    """SPADE's (and SEAN's) discriminator: input = semantic map + RGB image."""
    return MultiscaleDiscriminator(cfg.semantic_nc + 3, cfg.ndf, cfg.n_layers_d, cfg.num_d, cfg.init_gain)


# --- generator -----------------------------------------------------------------------------------


@register_model("spade", task="synthesize", config=SPADEConfig,
                discriminator=build_spade_discriminator, recipe="spade")
class SPADEGenerator(nn.Module):
    """SPADE: semantic image synthesis with spatially-adaptive normalization."""

    def __init__(self, cfg: SPADEConfig | None = None):
        super().__init__()
        cfg = cfg or SPADEConfig()
        self.cfg = cfg
        nf, snc = cfg.ngf, cfg.semantic_nc
        if cfg.use_vae:
            self.sh, self.sw = cfg.latent_grid()
            self.fc = nn.Linear(cfg.z_dim, 16 * nf * self.sh * self.sw)
            self.encoder = ConvEncoder(nf, cfg.z_dim, cfg.init_gain)
        else:
            self.fc = nn.Conv2d(snc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, snc, cfg)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, snc, cfg)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, snc, cfg)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, snc, cfg)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, snc, cfg)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, snc, cfg)
        self.up_3 = SPADEResnetBlock(2 * nf, nf, snc, cfg)
        final_nc = nf
        self.up_blocks = ("up_0", "up_1", "up_2", "up_3")
        if cfg.num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(nf, nf // 2, snc, cfg)
            self.up_blocks += ("up_4",)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)
        init_weights(self, cfg.init_gain)  # the layers without spectral norm (those were done before it)

    @property
    def stride(self) -> int:
        """Label-map sides must be multiples of this (without the VAE)."""
        return 2 ** self.cfg.num_up

    def output_size(self, segmap_size: tuple[int, int]) -> tuple[int, int]:
        if self.cfg.use_vae:
            return self.sh * self.stride, self.sw * self.stride
        return tuple(segmap_size)

    def _check_segmap(self, segmap: torch.Tensor) -> None:
        snc = self.cfg.semantic_nc
        if segmap.dim() != 4 or segmap.shape[1] != snc:
            raise InputError(f"SPADE: the semantic map must be (N, {snc}, H, W) ({self.cfg.label_nc} classes"
                             f"{' + dontcare' if self.cfg.contain_dontcare else ''}"
                             f"{' + instance edges' if self.cfg.use_instance else ''}), "
                             f"got {tuple(segmap.shape)}")
        h, w = segmap.shape[2:]
        if not self.cfg.use_vae and (h % self.stride or w % self.stride or h == 0 or w == 0):
            raise InputError(f"SPADE: label map sides must be positive multiples of {self.stride} "
                             f"(num_upsampling_layers '{self.cfg.num_upsampling_layers}'), got {h}x{w}")

    def semantic_input(self, labels, instances=None) -> torch.Tensor:
        """The semantic map this model takes, from label ids (and instance ids); see `semantic_map`."""
        p = next(self.parameters())
        return semantic_map(self.cfg, labels, instances, p.dtype, p.device)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of z for a style image (VAE models only)."""
        if not self.cfg.use_vae:
            raise InputError("this SPADE model has no image encoder (it was built without use_vae)")
        return self.encoder(image)

    def forward(self, segmap: torch.Tensor, z: torch.Tensor | None = None, image: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Image (N, 3, H, W) in [-1, 1] from the semantic map.

        VAE models: `z` (N, z_dim) if given; else z sampled from the encoding of `image` if given;
        else z ~ N(0, 1) (drawn from `generator`). Without the VAE, `z` and `image` must be None.
        """
        self._check_segmap(segmap)
        segmap = segmap.float() if not segmap.is_floating_point() else segmap
        n = segmap.shape[0]
        cfg = self.cfg
        if cfg.use_vae:
            if z is None:
                if image is not None:
                    z = reparameterize(*self.encode(image), generator=generator)
                else:
                    z = torch.randn(n, cfg.z_dim, generator=generator, device=segmap.device)
            x = self.fc(z.to(segmap.dtype)).view(n, 16 * cfg.ngf, self.sh, self.sw)
        else:
            if z is not None or image is not None:
                raise InputError("this SPADE model takes no z or style image (it was built without use_vae)")
            h, w = segmap.shape[2:]
            x = F.interpolate(segmap, size=(h // self.stride, w // self.stride), mode="nearest")
            x = self.fc(x)

        x = self.head_0(x, segmap)
        x = _up(x)
        x = self.G_middle_0(x, segmap)
        if cfg.num_upsampling_layers in ("more", "most"):
            x = _up(x)
        x = self.G_middle_1(x, segmap)
        for name in self.up_blocks:
            x = getattr(self, name)(_up(x), segmap)
        x = self.conv_img(_leaky(x))
        return torch.tanh(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
