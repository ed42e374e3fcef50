"""The training config: one YAML file (+ `key=value` overrides) validated against these dataclasses.

    model:  arch + options          the generator's options (validated by the registry)
    data:   what to train on        built-in scenes or a folder / list file of images
    train:  how to optimise         batch, steps, Adam, AMP, EMA, logging/checkpoint cadence
    loss:   family-specific weights validated by the recipe's `Loss` dataclass
    eval:   the fixed validation    mask set and metrics

`load_config` returns a `RunConfig` whose `model.options`, `loss` and `train.recipe` are filled
with their defaults, so the `config.yaml` saved in the run folder says everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..config import load_yaml, parse_overrides, structured, to_dict
from ..errors import ConfigError, ModelNotFoundError

AMP_MODES = ("none", "fp16", "bf16")
DATA_KINDS = ("scenes", "folder")


@dataclass
class ModelSection:
    arch: str = "deepfill_v2"
    options: dict[str, Any] = field(default_factory=dict)  # the arch's config dataclass fields


@dataclass
class DataSection:
    kind: str = "scenes"  # scenes | folder
    root: str = ""  # folder: a directory of images, or a text file with one image path per line
    val_root: str = ""  # folder: validation images; empty = hold out `val_count` images of `root`
    size: int = 256  # training crops are size x size
    # The short side images are scaled to before the size x size crop (scenes are rendered at
    # it); 0 = size. Larger values train on crops at the images' full scale (e.g. 128 px crops of
    # 256 px scenes: about a fifth of the cost per step, objects at their evaluation size).
    load_size: int = 0
    count: int = 10000  # scenes: number of training scenes (validation scenes follow them)
    val_count: int = 64
    seed: int = 0  # which scenes are rendered / which files are held out for validation
    mask: str = "free-form+box"  # data.masks.MaskSampler kind (free-form+box = the official v2 mask)
    # MaskSampler parameters (e.g. min_width/max_width for strokes at sizes other than 256); the
    # validation set is drawn with the same ones. Empty = the official parameters.
    mask_params: dict[str, Any] = field(default_factory=dict)
    # A sketch channel: Canny edges of the ground truth inside the hole. None = iff the model is guided.
    sketch: bool | None = None
    canny: list[int] = field(default_factory=lambda: [100, 200])  # cv2.Canny thresholds (low, high)
    flip: bool = True  # random horizontal flips (training only)


@dataclass
class TrainSection:
    recipe: str = ""  # empty = the architecture's default recipe from the registry
    batch_size: int = 16  # global: split evenly over the DDP ranks
    total_steps: int = 0  # one step = one pass over the recipe's phases (v2: one D and one G update)
    kimg: float = 0.0  # alternative to total_steps: thousands of generator-step images
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    amp: str = "none"  # none | fp16 (one GradScaler per optimizer) | bf16
    # CUDA only: TF32 matmuls/convolutions and cuDNN autotuning (training sizes are fixed). Off:
    # full-precision fp32 kernels and cuDNN's default algorithm choice (slower).
    tf32: bool = True
    ema_beta: float = 0.999  # generator EMA decay per G step
    ema_halflife_kimg: float = 0.0  # > 0: overrides ema_beta (decay = 0.5 ** (batch / (1000 * halflife)))
    seed: int = 0  # network init and the sample stream (crops, flips, masks, order)
    device: str = "auto"  # auto | cpu | cuda
    workers: int = 2  # DataLoader worker processes per rank
    log_every: int = 100
    image_every: int = 1000  # 0 = never
    ckpt_every: int = 5000  # 0 = only at the end (and on SIGINT/SIGTERM)
    eval_every: int = 5000  # 0 = only at the end
    keep_checkpoints: int = 3


@dataclass
class EvalSection:
    masks: str = ""  # an existing mask set (data.masks.write_mask_set); empty = generated into the run dir
    mask: str = ""  # kind of the generated set; empty = data.mask
    seed: int = 2024  # the generated set depends on this seed and the training size only
    metrics: list[str] = field(default_factory=lambda: ["hole_l1", "psnr", "ssim"])
    batch_size: int = 8  # per rank
    images: int = 8  # rows in the TensorBoard image grid (taken from the validation set)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    loss: dict[str, Any] = field(default_factory=dict)  # validated by the recipe's Loss dataclass
    eval: EvalSection = field(default_factory=EvalSection)

    def steps(self) -> int:
        """Total training steps: `total_steps`, or `kimg` (generator-step images) over the global batch."""
        if self.train.total_steps > 0:
            return self.train.total_steps
        return math.ceil(self.train.kimg * 1000 / self.train.batch_size)

    def ema_beta(self) -> float:
        t = self.train
        if t.ema_halflife_kimg > 0:
            return 0.5 ** (t.batch_size / (t.ema_halflife_kimg * 1000))
        return t.ema_beta


def _check(cond: bool, where: str, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {key} {msg}")


def _check_values(cfg: RunConfig, where: str) -> None:
    d, t, e = cfg.data, cfg.train, cfg.eval
    _check(d.kind in DATA_KINDS, where, "data.kind",
           f"must be one of {', '.join(DATA_KINDS)}, got '{d.kind}'")
    _check(d.kind != "folder" or bool(d.root), where, "data.root", "is required when data.kind is 'folder'")
    _check(d.size >= 8, where, "data.size", f"must be at least 8, got {d.size}")
    _check(d.load_size == 0 or d.load_size >= d.size, where, "data.load_size",
           f"must be 0 (= data.size) or at least data.size ({d.size}), got {d.load_size}")
    _check(d.count >= 1, where, "data.count", f"must be positive, got {d.count}")
    _check(d.val_count >= 1, where, "data.val_count", f"must be positive, got {d.val_count}")
    _check(len(d.canny) == 2, where, "data.canny", f"must be [low, high], got {d.canny}")
    _check(t.batch_size >= 1, where, "train.batch_size", f"must be positive, got {t.batch_size}")
    _check(t.total_steps > 0 or t.kimg > 0, where, "train.total_steps", "or train.kimg must be positive")
    _check(t.lr_g > 0 and t.lr_d > 0, where, "train.lr_g/lr_d", "must be positive")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), where, "train.betas",
           f"must be two numbers in [0, 1), got {t.betas}")
    _check(t.amp in AMP_MODES, where, "train.amp", f"must be one of {', '.join(AMP_MODES)}, got '{t.amp}'")
    _check(0 <= t.ema_beta < 1, where, "train.ema_beta", f"must be in [0, 1), got {t.ema_beta}")
    _check(t.device in ("auto", "cpu", "cuda"), where, "train.device",
           f"must be auto, cpu or cuda, got '{t.device}'")
    _check(t.workers >= 0, where, "train.workers", f"must be >= 0, got {t.workers}")
    _check(t.log_every >= 1, where, "train.log_every", f"must be positive, got {t.log_every}")
    for key in ("image_every", "ckpt_every", "eval_every"):
        _check(getattr(t, key) >= 0, where, f"train.{key}", "must be >= 0 (0 = off)")
    _check(t.keep_checkpoints >= 1, where, "train.keep_checkpoints",
           f"must be positive, got {t.keep_checkpoints}")
    _check(e.batch_size >= 1, where, "eval.batch_size", f"must be positive, got {e.batch_size}")
    _check(e.images >= 0, where, "eval.images", f"must be >= 0, got {e.images}")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, merge and fully validate a training config (model options and loss weights included)."""
    from ..registry import get_spec
    from .recipes import get_recipe

    where = str(path)
    raw = load_yaml(path)
    over = parse_overrides(list(overrides))
    cfg = structured(RunConfig, raw, over, name=where)
    _check_values(cfg, where)

    try:
        spec = get_spec(cfg.model.arch)
    except ModelNotFoundError as err:
        raise ConfigError(f"{where}: model.arch: {err}") from None
    model_cfg = structured(spec.config, cfg.model.options, name=f"{where}: model.options of '{spec.name}'")
    recipe_name = cfg.train.recipe or spec.recipe or ""
    if not recipe_name:
        raise ConfigError(f"{where}: train.recipe is required: model '{spec.name}' registers no "
                          "default recipe")
    recipe_cls = get_recipe(recipe_name, where)
    loss_cfg = structured(recipe_cls.Loss, cfg.loss, name=f"{where}: loss ({recipe_name} recipe)")

    cfg.model.options = to_dict(model_cfg)
    cfg.loss = to_dict(loss_cfg)
    cfg.train.recipe = recipe_name
    if not cfg.eval.mask:
        cfg.eval.mask = cfg.data.mask
    _check_names(cfg, where)
    return cfg


def _check_names(cfg: RunConfig, where: str) -> None:
    """Mask kinds and metric names, checked now rather than in a worker or at the first evaluation."""
    from ..data.masks import MASK_KINDS
    from ..eval.metrics import METRICS

    for key, kind in (("data.mask", cfg.data.mask), ("eval.mask", cfg.eval.mask)):
        _check(kind in MASK_KINDS, where, key, f"must be one of {', '.join(MASK_KINDS)}, got '{kind}'")
    from ..data.masks import MaskSampler

    try:
        MaskSampler(cfg.data.mask, **cfg.data.mask_params)
    except ConfigError as err:
        raise ConfigError(f"{where}: data.mask_params: {err}") from None
    for name in cfg.eval.metrics:
        m = METRICS.get(name)
        _check(m is not None, where, "eval.metrics", f"names an unknown metric '{name}' "
               f"(known: {', '.join(sorted(METRICS))})")
        _check(m.per_image, where, "eval.metrics", f"'{name}' is a set-level metric; training evaluation "
               "takes per-image metrics (use gancanvas eval for FID)")
        _check(m.prepare is None, where, "eval.metrics", f"'{name}' needs weight files; training evaluation "
               "takes the pixel metrics (use gancanvas eval for it)")


def config_to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_from_yaml_text(text: str, where: str) -> RunConfig:
    """A RunConfig from a saved (already resolved) config.yaml text, e.g. inside a checkpoint."""
    return structured(RunConfig, OmegaConf.create(text), name=where)
