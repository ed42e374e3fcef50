"""pix2pixHD: "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs"
(Wang, Liu, Zhu, Tao, Kautz, Catanzaro; CVPR 2018).

A label map (one-hot), the instance boundary map and, optionally, per-instance style features go in;
a photo comes out. The parts, as in the paper:

- **G1, the global generator**: a 7x7 stem, `n_downsample_global` stride-2 convs, `n_blocks_global`
  residual blocks and as many transposed convs back up, reflection padding, instance norm;
- **G2, local enhancers** (any number, `n_local_enhancers`): each sees the input at twice the
  previous resolution, adds its own front-end features to the coarser generator's last feature map
  (the global generator minus its output layer) and refines with residual blocks;
- **D1..Dk, multi-scale discriminators** (`num_D` PatchGANs on the image pair downsampled 1, 2, 4...
  times), each returning its intermediate features for the feature-matching loss;
- **the instance boundary map**: instance ids only matter where they change, so an edge channel
  (1 where a pixel's id differs from a 4-neighbour) is appended to the one-hot labels;
- **the instance-wise feature encoder E**: an encoder-decoder on the real photo whose output is
  averaged within each instance, giving a low-dimensional style per object. At test time the
  style comes from the photo again, or from per-class k-means centres of those features over the
  training set (`models/pix2pixhd_features.py`), stored in this model as buffers.

Losses (the recipe): LSGAN (default) or vanilla GAN summed over the discriminator scales, feature
matching (lambda 10, weight 4/(n_layers_D+1) per layer, 1/num_D per scale) and the VGG19 loss.

Official checkpoint layout. The networks keep the official `nn.Sequential` indices, so the
converted state dict is the official one with a prefix: `latest_net_G.pth` key `K` -> `G.K`
(`model.N...`, `model1_1.N...`, `model1_2.N...`), `latest_net_E.pth` key `K` -> `E.K`, and the
clusters file (`features_clustered_010.npy`, class -> (k, feat_num)) -> the buffers
`cluster_centers` (label_nc, n_clusters, feat_num) and `cluster_counts` (label_nc,). Discriminator
keys (`scale{s}_layer{j}.N...`, or `layer{s}.N...` without feature matching) also match.

`compat="official"` samples cluster styles exactly like the official test script (one
`np.random` draw per instance id over the whole batch, ids in ascending order), so a seed gives
the official picks; `"clean"` draws per image. Classes without clusters get zero features (the
official code leaves that memory uninitialised).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import check_instances, instance_classes, instance_edges, one_hot
from ..errors import CheckpointError, ConfigError, InputError
from ..registry import register_model

__all__ = [
    "Pix2PixHDConfig", "Pix2PixHD", "GlobalGenerator", "LocalEnhancer", "Encoder", "ResnetBlock",
    "NLayerDiscriminator", "MultiscaleDiscriminator", "build_pix2pixhd_discriminator",
    "instance_average", "instance_groups", "init_weights", "COMPAT_MODES",
]

COMPAT_MODES = ("clean", "official")


@dataclass
class Pix2PixHDConfig:
    label_nc: int = 35  # label classes (Cityscapes labelIds: 35)
    dontcare: int | None = None  # an id outside 0..label_nc-1 with its own extra input channel (None: none)
    output_nc: int = 3
    # Width of the finest generator stage: the global generator's with no local enhancer, the last
    # enhancer's otherwise (the global part then has ngf * 2^n_local_enhancers), as in the official --ngf.
    ngf: int = 64
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 0  # 0: the global generator alone (official --netG global); 1: 1024p
    n_blocks_local: int = 3
    norm: str = "instance"  # "instance" (no affine) | "batch"
    no_instance: bool = False  # no instance map input (no edge channel)
    instance_feat: bool = False  # instance-wise style features from the encoder
    label_feat: bool = False  # the same, pooled over label regions instead of instances
    feat_num: int = 3
    nef: int = 16  # encoder width
    n_downsample_E: int = 4
    n_clusters: int = 10  # room per class for the stored k-means style centres
    ndf: int = 64
    n_layers_D: int = 3
    num_D: int = 2  # 3 in the official 1024p scripts
    no_ganFeat_loss: bool = False  # discriminators then return their prediction only
    compat: str = "clean"  # "clean" | "official"

    def __post_init__(self):
        name = "model 'pix2pixhd'"
        if self.compat not in COMPAT_MODES:
            raise ConfigError(f"{name}: compat must be one of {', '.join(COMPAT_MODES)}, got '{self.compat}'")
        if self.norm not in ("instance", "batch"):
            raise ConfigError(f"{name}: norm must be 'instance' or 'batch', got '{self.norm}'")
        for key in ("label_nc", "output_nc", "ngf", "feat_num", "nef", "n_clusters", "ndf", "n_layers_D",
                    "num_D"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local",
                    "n_downsample_E"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{name}: {key} must be >= 0, got {getattr(self, key)}")
        if self.dontcare is not None and 0 <= self.dontcare < self.label_nc:
            raise ConfigError(f"{name}: dontcare ({self.dontcare}) must lie outside the class ids "
                              f"0..{self.label_nc - 1} (e.g. 255)")

    @property
    def label_channels(self) -> int:
        """One-hot channels: label_nc (+1 for don't-care)."""
        return self.label_nc + (self.dontcare is not None)

    @property
    def semantic_nc(self) -> int:
        """What the discriminators see besides the image: one-hot (+ edge)."""
        return self.label_channels + (not self.no_instance)

    @property
    def use_features(self) -> bool:
        return self.instance_feat or self.label_feat

    @property
    def input_nc(self) -> int:
        """Generator input channels: one-hot, edge, features."""
        return self.semantic_nc + (self.feat_num if self.use_features else 0)


INPLACE_NORM_NUMEL = 1 << 24  # 64 MiB of float32: the full- and half-resolution maps at 512x1024


class InstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm without affine parameters (the official default: checkpoints hold no norm keys).

    Without autograd it normalises large inputs in place: inside the generator that input is always a
    fresh conv output nobody else holds, and at 512x1024 this saves one full-resolution activation
    (128 MiB at ngf 64) of peak memory against the official network.
    """

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place only for large maps: there it saves memory at a ~10 % cost on the norm; on small
        # deep maps (the residual blocks) the native kernel is twice as fast as var_mean.
        if (torch.is_grad_enabled() and x.requires_grad) or x.numel() < INPLACE_NORM_NUMEL:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
        return x.sub_(mean).mul_(var.add_(self.eps).rsqrt_())


def _norm(kind: str):
    if kind == "instance":
        return InstanceNorm2d
    return functools.partial(nn.BatchNorm2d, affine=True)


def init_weights(module: nn.Module) -> None:
    """The official initialisation: conv / transposed-conv weights N(0, 0.02) (biases keep PyTorch's
    default), batch-norm scale N(1, 0.02) and shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Generators: G1 (global) and G2 (local enhancers)
# --------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """x + [pad, conv3, norm, ReLU, pad, conv3, norm](x): no activation after the sum."""

    def __init__(self, dim: int, norm):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return x + self.conv_block(x)
        return self.conv_block(x).add_(x)  # inference: no third block-sized tensor for the sum


def _down(cin: int, cout: int, norm) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), norm(cout), nn.ReLU(True)]


def _up(cin: int, cout: int, norm) -> list[nn.Module]:
    # output_padding 1 makes every x2 step exact, so the output has the input's size.
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), norm(cout),
            nn.ReLU(True)]


def _stem(cin: int, cout: int, norm) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), norm(cout), nn.ReLU(True)]


def _to_image(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.Tanh()]


def _global_layers(input_nc: int, output_nc: int, ngf: int, n_down: int, n_blocks: int,
                   norm) -> list[nn.Module]:
    layers = _stem(input_nc, ngf, norm)
    for i in range(n_down):
        layers += _down(ngf * 2 ** i, ngf * 2 ** (i + 1), norm)
    layers += [ResnetBlock(ngf * 2 ** n_down, norm) for _ in range(n_blocks)]
    for i in range(n_down, 0, -1):
        layers += _up(ngf * 2 ** i, ngf * 2 ** (i - 1), norm)
    return layers + _to_image(ngf, output_nc)


class GlobalGenerator(nn.Module):
    """G1: stem, downsampling, residual blocks at 1/2^n_down, upsampling, 7x7 tanh output (`model`)."""

    def __init__(self, input_nc: int, output_nc: int = 3, ngf: int = 64, n_downsampling: int = 4,
                 n_blocks: int = 9, norm=None):
        super().__init__()
        norm = norm or _norm("instance")
        self.model = nn.Sequential(*_global_layers(input_nc, output_nc, ngf, n_downsampling, n_blocks, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LocalEnhancer(nn.Module):
    """G2 around G1: `model` is the global generator (width ngf * 2^n_local) without its output
    layer, run on the input downsampled n_local times; enhancer n (1 = coarsest) adds its front end
    `model{n}_1` on the input at its scale to the previous output and refines with `model{n}_2`."""

    def __init__(self, input_nc: int, output_nc: int = 3, ngf: int = 32, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3, norm=None):
        super().__init__()
        norm = norm or _norm("instance")
        self.n_local_enhancers = n_local_enhancers
        g1 = _global_layers(input_nc, output_nc, ngf * 2 ** n_local_enhancers, n_downsample_global,
                            n_blocks_global, norm)
        self.model = nn.Sequential(*g1[:-3])  # its 7x7 output conv is replaced by the enhancers
        for n in range(1, n_local_enhancers + 1):
            width = ngf * 2 ** (n_local_enhancers - n)
            front = _stem(input_nc, width, norm) + _down(width, 2 * width, norm)
            back = [ResnetBlock(2 * width, norm) for _ in range(n_blocks_local)] + _up(2 * width, width, norm)
            if n == n_local_enhancers:
                back += _to_image(ngf, output_nc)
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        # 3x3 average with stride 2; border windows average only the pixels inside the image.
        return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            x_n = pyramid[self.n_local_enhancers - n]
            out = getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(x_n) + out)
        return out


# --------------------------------------------------------------------------------------------
# Instance-wise feature encoder E
# --------------------------------------------------------------------------------------------


def instance_groups(instances: torch.Tensor, per_item: bool = True):
    """Group the pixels of an (N, H, W) id map by (image, id), or by id alone (`per_item=False`).

    Returns `(inverse, counts, batch, ids)`: `inverse` (N*H*W,) the group of each pixel in NHW
    order, `counts` pixels per group, and each group's image index (-1 when not per item) and id.
    Groups are sorted by (image, id). One `torch.unique`, no loop over instances.
    """
    inst = instances.long()
    n = inst.shape[0]
    lo = inst.min()
    span = inst.max() - lo + 1
    key = inst - lo
    if per_item:
        key = key + torch.arange(n, device=inst.device).view(n, 1, 1) * span
    uniq, inverse, counts = torch.unique(key.reshape(-1), sorted=True, return_inverse=True,
                                         return_counts=True)
    if per_item:
        batch, ids = torch.div(uniq, span, rounding_mode="floor"), uniq % span + lo
    else:
        batch, ids = torch.full_like(uniq, -1), uniq + lo
    return inverse, counts, batch, ids


def instance_average(x: torch.Tensor, instances: torch.Tensor, *, return_means: bool = False):
    """Instance-wise average pooling: every pixel of `x` (N, C, H, W) becomes the per-channel mean of
    its instance in `instances` (N, H, W) (each image separately). Differentiable.

    With `return_means`, also `(means (G, C), counts (G,), batch (G,), ids (G,))` of the groups.
    """
    n, c, h, w = x.shape
    inverse, counts, batch, ids = instance_groups(instances)
    flat = x.permute(0, 2, 3, 1).reshape(-1, c)
    # Sums in float64: a float32 running sum over a whole-image region would lose digits.
    acc = torch.float64 if x.device.type != "mps" else x.dtype
    sums = torch.zeros((counts.numel(), c), dtype=acc, device=x.device).index_add_(0, inverse, flat.to(acc))
    means = (sums / counts.unsqueeze(1).to(acc)).to(x.dtype)
    pooled = means[inverse].reshape(n, h, w, c).permute(0, 3, 1, 2)
    if return_means:
        return pooled, (means, counts, batch, ids)
    return pooled


class Encoder(nn.Module):
    """E: stem, n_down stride-2 convs, as many transposed convs, 7x7 tanh to `output_nc` features
    (`model`), then instance-wise average pooling."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 16, n_downsampling: int = 4,
                 norm=None):
        super().__init__()
        norm = norm or _norm("instance")
        layers = _stem(input_nc, ngf, norm)
        for i in range(n_downsampling):
            layers += _down(ngf * 2 ** i, ngf * 2 ** (i + 1), norm)
        for i in range(n_downsampling, 0, -1):
            layers += _up(ngf * 2 ** i, ngf * 2 ** (i - 1), norm)
        self.model = nn.Sequential(*layers + _to_image(ngf, output_nc))
        self.stride = 2 ** n_downsampling

    def raw(self, image: torch.Tensor) -> torch.Tensor:
        """The conv stack's output before pooling; any size (padded to the stride, cropped back)."""
        return _padded(self.model, image, self.stride)

    def forward(self, image: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return instance_average(self.raw(image), instances)


def _padded(net: nn.Module, x: torch.Tensor, stride: int) -> torch.Tensor:
    """net(x) for sides that are not multiples of `stride`: replicate-pad bottom/right, crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return net(x)[..., :h, :w]


# --------------------------------------------------------------------------------------------
# Multi-scale discriminators D1..Dk
# --------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs, stride 2 for the first n_layers, leaky ReLU 0.2, norm after all but the
    first; then a stride-1 layer and a 1-channel stride-1 output. Blocks `model0..model{n_layers+1}`
    (each a Sequential) so the intermediate features can be returned."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm=None):
        super().__init__()
        norm = norm or _norm("instance")
        self.n_layers = n_layers
        # Padding 2 with 4x4 kernels (the official ceil((4-1)/2)): each layer grows the map by one.
        blocks = [[nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            blocks.append([nn.Conv2d(prev, nf, 4, stride=stride, padding=2), norm(nf),
                           nn.LeakyReLU(0.2, True)])
        blocks.append([nn.Conv2d(nf, 1, 4, stride=1, padding=2)])
        for j, block in enumerate(blocks):
            setattr(self, f"model{j}", nn.Sequential(*block))

    def blocks(self) -> list[nn.Module]:
        return [getattr(self, f"model{j}") for j in range(self.n_layers + 2)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks():
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """`num_D` PatchGANs; the i-th sees the input average-pooled i times (3x3, stride 2).

    `forward(x)` -> a list over scales (full resolution first) of lists of feature maps whose last
    element is the patch prediction (logits); without intermediate features each list holds the
    prediction only. Layout as officially: the full-resolution D is `scale{num_D-1}_layer{j}`
    (`layer{num_D-1}` without intermediate features), the coarsest `scale0_*`.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 num_D: int = 2, get_interm_feat: bool = True):
        super().__init__()
        self.num_D, self.n_layers, self.get_interm_feat = num_D, n_layers, get_interm_feat
        for i in range(num_D):
            d = NLayerDiscriminator(input_nc, ndf, n_layers, _norm(norm))
            if get_interm_feat:
                for j, block in enumerate(d.blocks()):
                    setattr(self, f"scale{i}_layer{j}", block)
            else:
                setattr(self, f"layer{i}", nn.Sequential(*[m for b in d.blocks() for m in b]))
        init_weights(self)

    def _scale(self, i: int) -> list[nn.Module]:
        if self.get_interm_feat:
            return [getattr(self, f"scale{i}_layer{j}") for j in range(self.n_layers + 2)]
        return [getattr(self, f"layer{i}")]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        for i in range(self.num_D):
            feats, y = [], x
            for block in self._scale(self.num_D - 1 - i):
                y = block(y)
                feats.append(y)
            result.append(feats)
            if i != self.num_D - 1:
                x = LocalEnhancer.downsample(x)
        return result


def build_pix2pixhd_discriminator(cfg: Pix2PixHDConfig) -> MultiscaleDiscriminator:
    """D input: one-hot labels (+ edge) and the image (the style features are not shown to D)."""
    return MultiscaleDiscriminator(cfg.semantic_nc + cfg.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm,
                                   cfg.num_D, not cfg.no_ganFeat_loss)


# --------------------------------------------------------------------------------------------
# The model: inputs, styles, generator
# --------------------------------------------------------------------------------------------


@register_model("pix2pixhd", task="synthesize", config=Pix2PixHDConfig,
                discriminator=build_pix2pixhd_discriminator, recipe="pix2pixhd")
class Pix2PixHD(nn.Module):
    """pix2pixHD: label map (+ instances, + styles) to image, with global generator and local enhancers."""

    def __init__(self, cfg: Pix2PixHDConfig | None = None):
        super().__init__()
        cfg = cfg or Pix2PixHDConfig()
        self.cfg = cfg
        norm = _norm(cfg.norm)
        if cfg.n_local_enhancers == 0:
            self.G = GlobalGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global,
                                     cfg.n_blocks_global, norm)
        else:
            self.G = LocalEnhancer(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global,
                                   cfg.n_blocks_global, cfg.n_local_enhancers, cfg.n_blocks_local, norm)
        if cfg.use_features:
            self.E = Encoder(cfg.output_nc, cfg.feat_num, cfg.nef, cfg.n_downsample_E, norm)
            # Per-class k-means centres of E's instance features (padded to n_clusters; counts say how
            # many rows of each class are real). Saved with the weights, so a model file is complete.
            self.register_buffer("cluster_centers", torch.zeros(cfg.label_nc, cfg.n_clusters, cfg.feat_num))
            self.register_buffer("cluster_counts", torch.zeros(cfg.label_nc, dtype=torch.int64))
        init_weights(self)

    @property
    def stride(self) -> int:
        """Sides that need no padding are multiples of this."""
        return 2 ** (self.cfg.n_downsample_global + self.cfg.n_local_enhancers)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.G.parameters())
        return p.device, p.dtype

    def _tensor(self, x) -> torch.Tensor:
        # Integer numpy maps (uint8 / uint16 / int32 ids) become int64 first: torch handles uint16 poorly.
        if isinstance(x, np.ndarray) and x.dtype.kind in "uib":
            x = x.astype(np.int64)
        return torch.as_tensor(x, device=self._device_dtype()[0])

    # --- inputs ---------------------------------------------------------------------------------

    def _label_input(self, labels) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(one-hot (N, C, H, W), ids (N, H, W) or None when a one-hot map was given)."""
        _, dtype = self._device_dtype()
        t = self._tensor(labels)
        c = self.cfg.label_channels
        if t.dim() == 4 and t.shape[1] == c and c > 1 and t.is_floating_point():
            return t.to(dtype), None
        if t.dim() == 2:
            t = t[None]
        if t.dim() == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.dim() != 3:
            raise InputError(f"labels: expected ids (N, H, W), (N, 1, H, W) or a one-hot map (N, {c}, H, W), "
                             f"got shape {tuple(t.shape)}")
        oh = one_hot(t, self.cfg.label_nc, self.cfg.dontcare, dtype=dtype, path="labels")
        return oh, t.long() if not t.is_floating_point() else t.round().long()

    def _instance_input(self, instances, ids: torch.Tensor | None, onehot: torch.Tensor) -> torch.Tensor:
        """(N, H, W) int64 instance ids; without a map, the label map stands in (class regions)."""
        if instances is None:
            return ids if ids is not None else onehot.argmax(1)
        t = self._tensor(instances)
        if t.dim() == 2:
            t = t[None]
        if t.dim() == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.dim() != 3 or t.is_floating_point() and bool((t != t.round()).any()):
            raise InputError(f"instances: expected integer ids (N, H, W) or (N, 1, H, W), "
                             f"got {tuple(t.shape)} {t.dtype}")
        check_instances(t, onehot, "instances", "labels")
        if t.shape[0] != onehot.shape[0]:
            raise InputError(f"instances: batch of {t.shape[0]} instance maps for {onehot.shape[0]} "
                             "label maps")
        return t.long()

    def prepare(self, labels, instances=None) -> dict[str, torch.Tensor]:
        """Validated inputs: `semantic` (N, semantic_nc, H, W) = one-hot [+ don't-care] [+ edge], the
        discriminators' label input; `instances` (N, H, W), the map styles are pooled / sampled over
        (labels when `label_feat` or when no instance map is given)."""
        onehot, ids = self._label_input(labels)
        inst = self._instance_input(instances, ids, onehot)
        if self.cfg.label_feat:
            regions = ids if ids is not None else onehot.argmax(1)
        else:
            regions = inst
        parts = [onehot]
        if not self.cfg.no_instance:
            parts.append(instance_edges(inst.unsqueeze(1), dtype=onehot.dtype))
        return {"semantic": torch.cat(parts, 1) if len(parts) > 1 else onehot, "instances": regions}

    def semantic_input(self, labels, instances=None) -> torch.Tensor:
        """One-hot labels [+ don't-care] [+ instance edges]: what D sees besides the image."""
        return self.prepare(labels, instances)["semantic"]

    # --- styles -----------------------------------------------------------------------------------

    def _need_features(self) -> None:
        if not self.cfg.use_features:
            raise InputError("this pix2pixHD model has no instance feature encoder (trained without "
                             "--instance_feat), so it takes no style")

    def encode(self, image: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """E on a photo (N, 3, H, W) in [-1, 1], averaged per instance of `instances` (N, H, W)."""
        self._need_features()
        if image.dim() != 4 or image.shape[1] != self.cfg.output_nc:
            raise InputError(f"style image: expected (N, {self.cfg.output_nc}, H, W) in [-1, 1], "
                             f"got {tuple(image.shape)}")
        if image.shape[-2:] != instances.shape[-2:] or image.shape[0] != instances.shape[0]:
            raise InputError(f"style image is {tuple(image.shape)} but the label map is "
                             f"{tuple(instances.shape)}; they must have the same batch and size")
        device, dtype = self._device_dtype()
        return self.E(image.to(device, dtype), instances.to(device))

    def clusters(self) -> dict[int, np.ndarray]:
        """The stored k-means centres: class id -> (k, feat_num) float32 array (classes with any)."""
        self._need_features()
        counts = self.cluster_counts.cpu().numpy()
        centers = self.cluster_centers.detach().cpu().float().numpy()
        return {int(c): centers[c, : counts[c]].copy() for c in np.nonzero(counts)[0]}

    def set_clusters(self, centers: Mapping[int, np.ndarray], source: str = "clusters") -> None:
        """Store per-class centres (class id -> (k, feat_num)); classes not given get none."""
        self._need_features()
        cfg = self.cfg
        table = torch.zeros_like(self.cluster_centers)
        counts = torch.zeros_like(self.cluster_counts)
        for cls, rows in centers.items():
            arr = np.asarray(rows, dtype=np.float64)
            if not 0 <= int(cls) < cfg.label_nc:
                raise CheckpointError(f"{source}: class {cls} is outside this model's 0..{cfg.label_nc - 1}")
            if arr.ndim != 2 or arr.shape[1] != cfg.feat_num:
                raise CheckpointError(f"{source}: class {cls} centres have shape {arr.shape}, expected "
                                      f"(k, {cfg.feat_num})")
            if arr.shape[0] > cfg.n_clusters:
                raise CheckpointError(f"{source}: class {cls} has {arr.shape[0]} centres, the model has room "
                                      f"for {cfg.n_clusters} (set n_clusters)")
            table[int(cls), : arr.shape[0]] = torch.from_numpy(arr).to(table.dtype)
            counts[int(cls)] = arr.shape[0]
        with torch.no_grad():
            self.cluster_centers.copy_(table)
            self.cluster_counts.copy_(counts)

    def sample_features(self, instances: torch.Tensor, style=None,
                        seed: int = 0) -> tuple[torch.Tensor, dict]:
        """A style feature map (N, feat_num, H, W) from the stored centres, constant per instance.

        `style`: None / "random": a random centre of the instance's class per instance, drawn with
        `np.random.RandomState(seed)` in ascending id order (compat "official": over the whole
        batch, as the official test script; else image by image); an int k: centre k of each class
        (modulo its count); "zeros"; or a dict {instance id: centre index or feat_num values}
        (others random). Instances whose class has no centres get zeros. Returns the map and the
        picks {(image or -1, id): centre index or -1}.
        """
        self._need_features()
        known = style is None or isinstance(style, (int, np.integer, Mapping)) or style in ("random", "zeros")
        if not known or isinstance(style, bool):
            raise InputError(f"style: unknown style {style!r} (random, zeros, a cluster index, a dict "
                             "{instance id: index or features}, a feature map or a style image)")
        device, dtype = self._device_dtype()
        inst = instances.to(device).long()
        per_item = self.cfg.compat != "official"
        inverse, _, batch, ids = instance_groups(inst, per_item=per_item)
        classes = instance_classes(ids).cpu().numpy()
        counts = self.cluster_counts.cpu().numpy()
        centers = self.cluster_centers.detach().cpu().double().numpy()
        table = np.zeros((ids.numel(), self.cfg.feat_num), dtype=np.float64)
        picks: dict = {}
        rng = np.random.RandomState(seed)
        chosen = style if isinstance(style, Mapping) else {}
        for g, (b, i, cls) in enumerate(zip(batch.tolist(), ids.tolist(), classes.tolist())):
            k = int(counts[cls]) if 0 <= cls < self.cfg.label_nc else 0
            if i in chosen and not isinstance(chosen[i], (int, np.integer)):
                vec = np.asarray(chosen[i], dtype=np.float64).reshape(-1)
                if vec.shape != (self.cfg.feat_num,):
                    raise InputError(f"style: instance {i}: expected {self.cfg.feat_num} feature values, "
                                     f"got {vec.shape[0]}")
                table[g], picks[(b, i)] = vec, -1
                continue
            if k == 0 or style == "zeros":
                picks[(b, i)] = -1
                continue
            if i in chosen:
                idx = int(chosen[i]) % k
            elif isinstance(style, (int, np.integer)) and not isinstance(style, bool):
                idx = int(style) % k
            else:
                # One draw per instance with clusters, nothing otherwise: the official stream.
                idx = int(rng.randint(0, k))
            table[g], picks[(b, i)] = centers[cls, idx], idx
        n, h, w = inst.shape
        feat = torch.from_numpy(table).to(device, dtype)[inverse].reshape(n, h, w, -1).permute(0, 3, 1, 2)
        return feat.contiguous(), picks

    # --- generation ---------------------------------------------------------------------------

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """G on a ready input (N, input_nc, H, W); any size (replicate-padded to `stride`, cropped back)."""
        return _padded(self.G, x, self.stride)

    def forward(self, labels, instances=None, features: torch.Tensor | None = None,
                image: torch.Tensor | None = None) -> torch.Tensor:
        """labels: int ids (N, H, W) / (N, 1, H, W) or a one-hot float map (N, label_channels, H, W);
        instances: int ids (N, H, W) / (N, 1, H, W), or None (the label map's regions then give the
        edges); features: a style map (N, feat_num, H, W), or `image` (N, 3, H, W) in [-1, 1] to
        encode one (training), or neither (zeros). Returns the image (N, output_nc, H, W) in [-1, 1].
        """
        inputs = self.prepare(labels, instances)
        x = inputs["semantic"]
        if self.cfg.use_features:
            if features is None and image is not None:
                features = self.encode(image, inputs["instances"])
            if features is None:
                features = x.new_zeros((x.shape[0], self.cfg.feat_num, *x.shape[-2:]))
            want = (x.shape[0], self.cfg.feat_num, *x.shape[-2:])
            if tuple(features.shape) != want:
                raise InputError(f"features: expected shape {want}, got {tuple(features.shape)}")
            x = torch.cat([x, features.to(x.dtype)], 1)
        return self.generate(x)

    @torch.no_grad()
    def synthesize(self, labels, instances=None, style=None, *, seed: int = 0,
                   image: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: the image (N, 3, H, W) in [-1, 1] for a label map (and instance map).

        For models with styles: `image` (a photo to take the styles from, the official
        --use_encoded_image), or `style` as in `sample_features` (default: random centres with
        `seed`), or a feature map tensor (N, feat_num, H, W). Other models ignore the style.
        """
        if not self.cfg.use_features:
            return self.forward(labels, instances)
        inputs = self.prepare(labels, instances)
        if image is not None:
            features = self.encode(image, inputs["instances"])
        elif isinstance(style, torch.Tensor):
            features = style
        else:
            features, _ = self.sample_features(inputs["instances"], style, seed)
        return self.forward(labels, instances, features=features)

    # --- training helpers ---------------------------------------------------------------------

    def enhancer_parameters(self) -> list[nn.Parameter]:
        """The parameters the official schedule trains first (--niter_fix_global): the finest local
        enhancer's (`G.model{n}_*`, n = n_local_enhancers) and the encoder's."""
        n = self.cfg.n_local_enhancers
        if n == 0:
            raise ConfigError("model 'pix2pixhd': no local enhancer to train alone (n_local_enhancers is 0)")
        params = [p for k, p in self.G.named_parameters() if k.startswith(f"model{n}_")]
        if self.cfg.use_features:
            params += list(self.E.parameters())
        return params

    def load_global(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> list[str]:
        """Start a local-enhancer model from a global-generator model's weights (the official
        --load_pretrain from 512p to 1024p): every `G.model.*` tensor of this model, plus the encoder
        and the clusters when both have them, must be in `state` with the same shape (the global
        output layer there is ignored). Returns the keys taken."""
        own = self.state_dict()
        wanted = [k for k in own if k.startswith(("G.model.", "E.", "cluster_"))]
        missing = [k for k in wanted if k.startswith("G.") and k not in state]
        shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                  for k in wanted if k in state and state[k].shape != own[k].shape]
        if missing or shapes:
            parts = ([f"missing {len(missing)} keys: {', '.join(missing[:4])}"] if missing else []) + \
                    ([f"shape mismatch: {', '.join(shapes[:4])}"] if shapes else [])
            raise CheckpointError(f"{source}: not a global generator for this model's global part; "
                                  + "; ".join(parts))
        taken = [k for k in wanted if k in state]
        with torch.no_grad():
            for k in taken:
                own[k].copy_(state[k].to(own[k].dtype))
        return taken
