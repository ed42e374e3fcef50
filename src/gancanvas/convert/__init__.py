"""Importers of official checkpoints, one per family, behind one registry.

`CONVERTERS[name](source, output, **options)` reads an official checkpoint, checks that it is
what `name` says, builds the gancanvas model in `compat="official"` mode, loads the weights
strictly and writes a gancanvas model file (`gancanvas.weights.save_model`), which
`gancanvas.load(output)` then takes like any other. It returns a `Converted` summary.

The command line is `gancanvas convert NAME SOURCE -o OUTPUT`; `add_convert_parser` builds that
subcommand so cli.py only has to call it. Family modules are imported when a converter runs,
so building the CLI parser stays cheap (no torch import).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CONVERTERS", "Converted", "add_convert_parser", "cmd_convert", "register_converter"]


@dataclass
class Converted:
    """What a converter wrote: the model file, its architecture and options, and where it came from."""

    path: Path
    arch: str
    config: dict[str, Any]
    source: str
    n_params: int
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI."""
        keys = ("cnum", "g_cnum", "ratio", "guided", "label_nc", "ngf", "n_local_enhancers", "instance_feat",
                "style_dim", "use_vae", "compat")
        opts = ", ".join(f"{k}={self.config[k]}" for k in keys if k in self.config)
        return (f"wrote {self.path} ({self.arch}, {opts}, {self.n_params:,} parameters) "
                f"from {self.source}")


#: name -> converter(source, output, **options) -> Converted. Names are the CLI spellings.
CONVERTERS: dict[str, Callable[..., Converted]] = {}
_HELP: dict[str, str] = {}


def register_converter(name: str, help: str = ""):
    """Decorator adding a converter to `CONVERTERS` (SRN, pix2pixHD, SPADE, SEAN plug in here)."""

    def deco(fn: Callable[..., Converted]) -> Callable[..., Converted]:
        CONVERTERS[name] = fn
        _HELP[name] = help or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return deco


@register_converter("deepfill-v2", "official DeepFill v2 TensorFlow checkpoint directory "
                                   "(JiahuiYu/generative_inpainting master)")
def _deepfill_v2(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .deepfill import convert_deepfill

    return convert_deepfill(source, output, "v2", **options)


@register_converter("deepfill-v1", "official DeepFill v1 TensorFlow checkpoint directory "
                                   "(JiahuiYu/generative_inpainting v1.0.0)")
def _deepfill_v1(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .deepfill import convert_deepfill

    return convert_deepfill(source, output, "v1", **options)


@register_converter("srn", "official SRN TensorFlow checkpoint directory (shepnerd/outpainting_srn)")
def _srn(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .srn import convert_srn

    return convert_srn(source, output, **options)


@register_converter("pix2pixhd", "official pix2pixHD PyTorch generator latest_net_G.pth (NVIDIA/pix2pixHD); "
                                 "--label-nc N, --encoder latest_net_E.pth, "
                                 "--clusters features_clustered_010.npy")
def _pix2pixhd(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .pix2pixhd import convert_pix2pixhd

    return convert_pix2pixhd(source, output, **options)


@register_converter("spade", "official SPADE PyTorch generator latest_net_G.pth (NVlabs/SPADE); --label-nc N "
                             "(COCO/ADE20K/Cityscapes inferred), --encoder latest_net_E.pth for VAE models")
def _spade(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .spade import convert_spade

    return convert_spade(source, output, **options)


@register_converter("sean", "official SEAN PyTorch generator latest_net_G.pth (ZPdesu/SEAN); --label-nc N "
                            "(default: inferred; 19 = CelebAMask-HQ), --class-names SET|FILE")
def _sean(source: str | Path, output: str | Path, **options: Any) -> Converted:
    from .sean import convert_sean

    return convert_sean(source, output, **options)


#: The extra CLI options each converter accepts (cmd_convert passes only these).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "pix2pixhd": ("label_nc", "encoder", "clusters"),
    "spade": ("label_nc", "encoder", "contain_dontcare", "use_instance", "num_upsampling_layers", "crop_size",
              "aspect_ratio", "class_names"),
    "sean": ("label_nc", "contain_dontcare", "num_upsampling_layers", "class_names"),
}
_ALL_OPTIONS = tuple(dict.fromkeys(k for opts in _OPTIONS.values() for k in opts))


def cmd_convert(args: argparse.Namespace) -> int:
    """`gancanvas convert NAME SOURCE -o OUTPUT`: run the converter and print its one-line summary."""
    from ..errors import ConfigError

    given = {k: getattr(args, k) for k in _ALL_OPTIONS if getattr(args, k, None) is not None}
    bad = [f"--{k.replace('_', '-')}" for k in given if k not in _OPTIONS.get(args.format, ())]
    if bad:
        raise ConfigError(f"convert {args.format}: {', '.join(bad)} is not an option of this format "
                          f"(used by: {', '.join(sorted(_OPTIONS))})")
    result = CONVERTERS[args.format](args.source, args.output, **given)
    print(result.summary())
    return 0


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `convert` subcommand to the CLI's subparsers (cli.build_parser calls this)."""
    formats = "; ".join(f"{name}: {_HELP[name]}" for name in sorted(CONVERTERS))
    sp = subparsers.add_parser(
        "convert", help="convert an official checkpoint into a gancanvas model file",
        description=f"Convert an official checkpoint into a gancanvas model file. Formats: {formats}.")
    sp.add_argument("format", choices=sorted(CONVERTERS), metavar="FORMAT",
                    help=f"what the source is: {', '.join(sorted(CONVERTERS))}")
    sp.add_argument("source", help="the official checkpoint (for TensorFlow: the checkpoint directory, "
                                   "a prefix such as snap-0, or its .index file)")
    sp.add_argument("-o", "--output", required=True, help="the model file to write (.safetensors)")
    sp.add_argument("--label-nc", dest="label_nc", type=int, default=None,
                    help="pix2pixHD/SPADE/SEAN: the official --label_nc (35 for Cityscapes); "
                         "default: inferred")
    sp.add_argument("--encoder", default=None,
                    help="pix2pixHD: the feature encoder latest_net_E.pth; SPADE: the VAE encoder")
    sp.add_argument("--contain-dontcare", dest="contain_dontcare", action="store_true", default=None,
                    help="SPADE/SEAN: the label maps have a don't-care label "
                         "(the official --contain_dontcare_label)")
    sp.add_argument("--instance", dest="use_instance", action=argparse.BooleanOptionalAction, default=None,
                    help="SPADE: whether the generator takes an instance-edge channel (default: inferred)")
    sp.add_argument("--num-upsampling-layers", dest="num_upsampling_layers", default=None,
                    choices=["normal", "more", "most"],
                    help="SPADE/SEAN: the official --num_upsampling_layers")
    sp.add_argument("--crop-size", dest="crop_size", type=int, default=None,
                    help="SPADE VAE: the official --crop_size")
    sp.add_argument("--aspect-ratio", dest="aspect_ratio", type=float, default=None,
                    help="SPADE VAE: the official --aspect_ratio")
    sp.add_argument("--class-names", dest="class_names", default=None, metavar="SET|FILE",
                    help="SPADE/SEAN: the class names (region names for --region-style): celebamask-hq, "
                         "scenes, cityscapes, or a file (one name per line, or JSON); SEAN default: "
                         "celebamask-hq for --label-nc 19")
    sp.add_argument("--clusters", default=None,
                    help="pix2pixHD: the style centres features_clustered_010.npy")
    sp.set_defaults(func=cmd_convert)
    return sp
