"""Official SEAN PyTorch checkpoints (ZPdesu/SEAN `latest_net_G.pth`) -> gancanvas model files.

Read with `torch.load(weights_only=True)`. The official names map as follows:

- `Zencoder.model.{1,4,7,10,14}` -> `style_encoder.{conv_in,down_1,down_2,up,conv_out}`;
- each block's `ace_{0,1,s}` ("ACE") -> `norm_{0,1,s}` (`gancanvas.nn.norm.SEAN`):
  `fc_mu0 .. fc_mu18` (one Linear per class) are stacked into `style_fc.weight` (R, D, D) and
  `style_fc.bias` (R, D); `conv_gamma` and `conv_beta` are stacked (gamma first) into
  `style_conv` with the weight stored input-major, (D, 2C, k, k); `Spade.mlp_shared.0` /
  `Spade.mlp_{gamma,beta}` -> `mask_branch.mlp_*`; `param_free_norm`, `noise_var` and
  `blending_{gamma,beta}` keep their names;
- spectral norm `weight_orig/_u/_v` -> the parametrisation names (as for SPADE).

Dropped, because the official forward never uses them (and checked to be there, so a checkpoint
of another layout still fails loudly): `Spade.param_free_norm.*` in every ACE, the blending
weights of `up_3` (its ACE has no style branch), and `fc_mu<j>` for j >= the number of regions
(the official code always builds 19).

The official SEAN was trained without instance maps (`--no_instance`): its ACE would treat an
edge channel as one more style region, which gancanvas' SEAN does not, so such a layout is
refused. A 19-class model (the released CelebAMask-HQ one) gets the CelebAMask-HQ class names and
palette unless `class_names` says otherwise ("celebamask-hq", "scenes", "cityscapes", a file or a
list; `gancanvas convert sean ... --class-names`), so `--region-style hair=...` works on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CheckpointError, ConfigError, InputError
from .spade import identify_official, map_spectral, read_official_state, resolve_label_layout, wrong_family

if TYPE_CHECKING:
    from . import Converted

__all__ = ["convert_sean", "sean_options_from_state", "sean_state_from_official"]

_ZENCODER = {"1": "conv_in", "4": "down_1", "7": "down_2", "10": "up", "14": "conv_out"}
_FC_MU = re.compile(r"^(.*)\.ace_([01s])\.fc_mu(\d+)\.(weight|bias)$")
_STYLE_CONV = re.compile(r"^(.*)\.ace_([01s])\.conv_(gamma|beta)\.(weight|bias)$")


def sean_options_from_state(state: Mapping[str, torch.Tensor], where: str) -> dict:
    """Architecture options implied by an official SEAN generator state dict (label layout aside)."""
    if identify_official(state) != "sean":
        raise wrong_family(state, "sean", where)
    try:
        fc = state["fc.weight"]
        head = state["head_0.conv_0.weight_orig"] if "head_0.conv_0.weight_orig" in state \
            else state["head_0.conv_0.weight"]
        mu0 = state["head_0.ace_0.fc_mu0.weight"]
        shared = state["head_0.ace_0.Spade.mlp_shared.0.weight"]
        enc_in = state["Zencoder.model.1.weight"]
        enc_out = state["Zencoder.model.14.weight"]
    except KeyError as err:
        raise CheckpointError(f"{where}: SEAN generator checkpoint without {err.args[0]}") from None
    n_fc = len({m.group(3) for k in state if (m := _FC_MU.match(k)) and m.group(1) == "head_0"
                and m.group(2) == "0"})
    ngf_e = int(enc_in.shape[0])
    if enc_out.shape[1] != 8 * ngf_e:
        raise CheckpointError(f"{where}: Zencoder.model.14 takes {enc_out.shape[1]} channels; the style "
                              f"encoder with width {ngf_e} gives {8 * ngf_e}")
    return {"ngf": int(head.shape[0]) // 16, "style_dim": int(mu0.shape[0]), "encoder_ngf": ngf_e,
            "spade_hidden": int(shared.shape[0]), "spade_kernel": int(shared.shape[-1]),
            "spectral": "head_0.conv_0.weight_orig" in state, "semantic_nc": int(fc.shape[1]),
            "n_fc_mu": n_fc}


def sean_state_from_official(state: Mapping[str, torch.Tensor], regions: int, where: str = "checkpoint"
                             ) -> dict[str, torch.Tensor]:
    """Rename / stack an official SEAN generator state dict into gancanvas' names (see module doc)."""
    out: dict[str, torch.Tensor] = {}
    fc_mu: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    style_conv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if k.startswith("Zencoder.model."):
            idx, _, rest = k[len("Zencoder.model."):].partition(".")
            if idx not in _ZENCODER:
                out[k] = v  # reported as unexpected by the strict load
                continue
            out[f"style_encoder.{_ZENCODER[idx]}.{rest}"] = v
            continue
        m = _FC_MU.match(k)
        if m:
            block, which, j, kind = m.groups()
            if int(j) < regions:
                fc_mu.setdefault((f"{block}.norm_{which}", kind), {})[int(j)] = v
            continue
        m = _STYLE_CONV.match(k)
        if m:
            block, which, part, kind = m.groups()
            style_conv.setdefault((f"{block}.norm_{which}", kind), {})[part] = v
            continue
        if ".Spade.param_free_norm." in k:
            continue
        if k.startswith("up_3.ace_") and k.endswith((".blending_gamma", ".blending_beta")):
            continue
        k = re.sub(r"\.ace_([01s])\.", r".norm_\1.", k)
        k = k.replace(".Spade.mlp_shared.0.", ".mask_branch.mlp_shared.").replace(".Spade.", ".mask_branch.")
        out[map_spectral(k)] = v
    for (prefix, kind), rows in fc_mu.items():
        if sorted(rows) != list(range(regions)):
            missing = sorted(set(range(regions)) - set(rows))
            raise CheckpointError(f"{where}: {prefix.replace('.norm_', '.ace_')} lacks fc_mu{missing[0]} "
                                  f"(needed for {regions} style regions)")
        out[f"{prefix}.style_fc.{kind}"] = torch.stack([rows[j] for j in range(regions)])
    for (prefix, kind), parts in style_conv.items():
        if set(parts) != {"gamma", "beta"}:
            have = next(iter(parts))
            other = "beta" if have == "gamma" else "gamma"
            raise CheckpointError(f"{where}: {prefix.replace('.norm_', '.ace_')} has conv_{have}.{kind} but "
                                  f"not conv_{other}.{kind}")
        both = torch.cat([parts["gamma"], parts["beta"]])
        # RegionConv keeps the weight input-major: (D, 2C, k, k).
        out[f"{prefix}.style_conv.{kind}"] = both.transpose(0, 1).contiguous() if kind == "weight" else both
    return out


def convert_sean(source: str | Path, output: str | Path, *, label_nc: int | None = None,
                 contain_dontcare: bool | None = None, use_instance: bool | None = None,
                 num_upsampling_layers: str | None = None, class_names: list[str] | str | Path | None = None
                 ) -> Converted:
    """Convert an official SEAN generator (`latest_net_G.pth`) into a gancanvas model file.

    `label_nc` defaults to the width of the label input (the released model: 19); it is checked
    against the checkpoint when given. `class_names`: a list, a built-in set name or a file
    (`data.labels.load_class_names`); default: CelebAMask-HQ's for 19 classes, else unnamed.
    """
    from .. import registry
    from ..config import to_dict
    from ..data.labels import CELEBAMASK_HQ_CLASSES, load_class_names, palette_name_for
    from ..models import sean as _sean  # noqa: F401  (registers the architecture)
    from ..weights import load_state_strict, save_model
    from . import Converted

    src = Path(source)
    where = str(src)
    out = Path(output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give the model file to write, e.g. {out}/sean.safetensors")
    state = read_official_state(src, "SEAN generator")
    found = sean_options_from_state(state, where)
    semantic_nc = found.pop("semantic_nc")
    n_fc = found.pop("n_fc_mu")
    options = dict(found)
    try:
        layout = resolve_label_layout(semantic_nc, where, label_nc, contain_dontcare, use_instance)
        if layout["use_instance"]:
            raise ConfigError(f"{where}: official SEAN with an instance-edge channel styles the edge map as "
                              "a region; only label layouts without instance maps (--no_instance) are "
                              "supported")
        options.update(layout)
        regions = layout["label_nc"] + int(layout["contain_dontcare"])
        if regions > n_fc:
            raise ConfigError(f"{where}: {regions} style regions but the checkpoint has only {n_fc} "
                              f"per-region transforms (fc_mu0..fc_mu{n_fc - 1})")
        if num_upsampling_layers is not None:
            options["num_upsampling_layers"] = num_upsampling_layers
        if class_names is not None:
            try:
                options["class_names"] = list(load_class_names(class_names, layout["label_nc"]))
            except InputError as err:
                raise ConfigError(f"{where}: class_names: {err}") from None
        elif layout["label_nc"] == len(CELEBAMASK_HQ_CLASSES):
            options["class_names"] = list(CELEBAMASK_HQ_CLASSES)
        cfg = registry.model_config("sean", options)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    model = registry.get_spec("sean").builder(cfg)
    load_state_strict(model, sean_state_from_official(state, regions, where), where)
    config = to_dict(cfg)
    extra = {"source": str(src.resolve()), "converted_from": "pytorch", "official": "ZPdesu/SEAN"}
    palette = palette_name_for(options.get("class_names"))
    if palette is not None:  # colour label maps (CelebAMask-HQ's colour masks) read without --palette
        extra["palette"] = palette
    try:
        save_model(out, model.eval(), arch="sean", config=config, extra=extra, dtype=torch.float32)
    except OSError as err:
        raise InputError(f"{out}: cannot write ({err.strerror or err})") from None
    n_params = sum(p.numel() for p in model.parameters())
    return Converted(path=out, arch="sean", config=config, source=where, n_params=n_params, extra=extra)
