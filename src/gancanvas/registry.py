"""Model registry: a name maps to a builder and a dataclass of its options.

Model families register themselves when `gancanvas.models` is imported:

    @register_model("deepfill_v2", task="inpaint", config=DeepFillV2Config,
                    discriminator=build_sn_patchgan, recipe="deepfill_v2")
    class DeepFillV2Generator(nn.Module): ...

`create(name, **options)` builds a generator (validated options), the CLI, the server and the
training engine find families here only, and `PRETRAINED` lists the built-in trained models
shipped in `gancanvas/pretrained/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError

TASKS = ("inpaint", "outpaint", "synthesize")
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@dataclass
class ModelSpec:
    name: str
    task: str
    builder: Callable[..., Any]
    config: type
    discriminator: Callable[..., Any] | None = None  # discriminator(config) -> nn.Module
    recipe: str | None = None  # default training recipe in gancanvas.train.recipes
    description: str = ""


@dataclass
class PretrainedSpec:
    name: str
    arch: str
    file: str  # relative to gancanvas/pretrained
    config: str = ""  # the training config (repo-relative) that produced it
    command: str = ""  # the exact command that reproduces it
    description: str = ""
    default_for: tuple[str, ...] = field(default_factory=tuple)  # tasks it is the default model of

    @property
    def path(self) -> Path:
        return PRETRAINED_DIR / self.file


_MODELS: dict[str, ModelSpec] = {}
PRETRAINED: dict[str, PretrainedSpec] = {}


def register_model(name: str, *, task: str, config: type, discriminator=None, recipe=None, description=""):
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    if not dataclasses.is_dataclass(config):
        raise TypeError("config must be a dataclass")

    def deco(builder):
        doc = (builder.__doc__ or "").strip().splitlines()
        _MODELS[name] = ModelSpec(name, task, builder, config, discriminator, recipe,
                                  description or (doc[0] if doc else ""))
        return builder

    return deco


def register_pretrained(spec: PretrainedSpec) -> None:
    PRETRAINED[spec.name] = spec


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers every family)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS)) or "none"
        raise ModelNotFoundError(f"unknown model architecture '{name}' (known: {known})") from None


def model_config(name: str, *sources: Any):
    """The validated option dataclass of architecture `name`, from dicts/DictConfigs/kwargs."""
    from .config import structured

    spec = get_spec(name)
    return structured(spec.config, *sources, name=f"model '{name}'")


def create(name: str, **options):
    """Build the generator of architecture `name` with `options` (unknown/wrong ones: ConfigError)."""
    spec = get_spec(name)
    cfg = model_config(name, options)
    return spec.builder(cfg)


def create_discriminator(name: str, **options):
    spec = get_spec(name)
    if spec.discriminator is None:
        raise ModelNotFoundError(f"model '{name}' has no discriminator registered")
    return spec.discriminator(model_config(name, options))


def architectures() -> dict[str, ModelSpec]:
    _ensure_loaded()
    return dict(_MODELS)


def default_model(task: str) -> PretrainedSpec:
    _ensure_loaded()
    for spec in PRETRAINED.values():
        if task in spec.default_for:
            return spec
    raise ModelNotFoundError(f"no built-in default model for task '{task}' yet; pass --model NAME|PATH")


def list_models() -> list[dict]:
    """Built-in trained models and registered architectures, as rows for `gancanvas models`."""
    _ensure_loaded()
    rows = []
    for p in PRETRAINED.values():
        rows.append({"name": p.name, "kind": "pretrained", "arch": p.arch, "task": get_spec(p.arch).task,
                     "config": p.config, "available": p.path.is_file(), "description": p.description,
                     "default_for": list(p.default_for)})
    for s in _MODELS.values():
        rows.append({"name": s.name, "kind": "architecture", "arch": s.name, "task": s.task,
                     "config": "", "available": True, "description": s.description,
                     "default_for": []})
    return rows


# The built-in trained models shipped in gancanvas/pretrained/ (each reproducible from its config).
register_pretrained(PretrainedSpec(
    name="deepfill-v2-scenes",
    arch="deepfill_v2",
    file="deepfill-v2-scenes.safetensors",
    config="configs/deepfill_v2/scenes-256-cpu-finetune.yaml",
    command=("gancanvas train configs/deepfill_v2/scenes-256-gpu.yaml --run-dir runs/deepfill-v2-scenes-gpu"
             " && python scripts/release_model.py runs/deepfill-v2-scenes-gpu"
             " runs/deepfill-v2-scenes-gpu.safetensors"
             " && gancanvas train configs/deepfill_v2/scenes-256-cpu-finetune.yaml"
             " --run-dir runs/deepfill-v2-scenes --init runs/deepfill-v2-scenes-gpu.safetensors"
             " && python scripts/release_model.py runs/deepfill-v2-scenes"
             " src/gancanvas/pretrained/deepfill-v2-scenes.safetensors"),
    description=("DeepFill v2, cnum 32, trained on the built-in scenes at 256 px for 14 minutes on one GPU, "
                 "then fine-tuned with L1 alone on the CPU"),
    default_for=("inpaint",),
))

register_pretrained(PretrainedSpec(
    name="srn-scenes",
    arch="srn",
    file="srn-scenes.safetensors",
    config="configs/srn/scenes-128-small.yaml",
    command=("gancanvas train configs/srn/scenes-128-small.yaml --run-dir runs/srn-scenes"
             " && python scripts/release_model.py runs/srn-scenes"
             " src/gancanvas/pretrained/srn-scenes.safetensors"),
    description="SRN stage 1 (reconstruction only), g_cnum 16, 64 px known box in a 128 px canvas, "
                "trained on the built-in scenes on a 2-core CPU",
    default_for=("outpaint",),
))

register_pretrained(PretrainedSpec(
    name="pix2pixhd-scenes",
    arch="pix2pixhd",
    file="pix2pixhd-scenes.safetensors",
    config="configs/pix2pixhd/scenes-128-small.yaml",
    command=("gancanvas train configs/pix2pixhd/scenes-128-small.yaml --run-dir runs/pix2pixhd-scenes"
             " && python scripts/release_model.py runs/pix2pixhd-scenes"
             " src/gancanvas/pretrained/pix2pixhd-scenes.safetensors --palette scenes"),
    description="pix2pixHD global generator, ngf 16, no VGG loss, trained on the built-in scenes at 128 px "
                "on a 2-core CPU",
    default_for=("synthesize",),
))

register_pretrained(PretrainedSpec(
    name="spade-scenes",
    arch="spade",
    file="spade-scenes.safetensors",
    config="configs/spade/scenes-128-small.yaml",
    command=("gancanvas train configs/spade/scenes-128-small.yaml --run-dir runs/spade-scenes"
             " && python scripts/release_model.py runs/spade-scenes"
             " src/gancanvas/pretrained/spade-scenes.safetensors --palette scenes"),
    description="SPADE, ngf 8, 1x1 SPADE embeddings, no VAE or VGG loss, trained on the built-in scenes at "
                "128 px on a 2-core CPU",
))

register_pretrained(PretrainedSpec(
    name="sean-scenes",
    arch="sean",
    file="sean-scenes.safetensors",
    config="configs/sean/scenes-128-small.yaml",
    command=("gancanvas train configs/sean/scenes-128-small.yaml --run-dir runs/sean-scenes"
             " && python scripts/release_model.py runs/sean-scenes"
             " src/gancanvas/pretrained/sean-scenes.safetensors --palette scenes"),
    description="SEAN, ngf 8, style codes of 16, no VGG loss, trained as a reconstruction on the built-in "
                "scenes at 128 px on a 2-core CPU",
))
