"""Official SPADE PyTorch checkpoints (NVlabs/SPADE `latest_net_G.pth`, `latest_net_E.pth`) ->
gancanvas model files.

The official files are plain state dicts (`torch.save(net.cpu().state_dict())`), read here with
`torch.load(weights_only=True)`, so nothing is unpickled beyond tensors. gancanvas' SPADE keeps
the official attribute names; the mapping is:

- spectral norm: the official `torch.nn.utils.spectral_norm` stores `<conv>.weight_orig`,
  `<conv>.weight_u`, `<conv>.weight_v`; the parametrisation API used here names them
  `<conv>.parametrizations.weight.original`, `.0._u`, `.0._v` (same meaning: in eval mode both divide
  by sigma = u . (W v) computed from the stored vectors);
- SPADE's shared embedding is a Sequential(conv, ReLU) officially: `mlp_shared.0.*` -> `mlp_shared.*`;
- the VAE encoder (`latest_net_E.pth`, `layer{1..6}`, `fc_mu`, `fc_var`) goes under `encoder.`.

Options the weights do not say: the label layout (classes / don't-care / instance-edge channels
share one input width) and `num_upsampling_layers` "normal" vs "more" (same weights, different
output size). Known official presets are recognised by their input width (COCO-Stuff 184,
ADE20K 151, Cityscapes 36); otherwise pass `label_nc` (and `contain_dontcare` / `use_instance`
when one extra channel is ambiguous). `convert_spade(source, output, **options)` does it all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, ConfigError, InputError

if TYPE_CHECKING:
    from . import Converted

__all__ = ["convert_spade", "read_official_state", "spade_state_from_official", "spade_options_from_state",
           "PRESETS", "identify_official"]

#: Official pretrained SPADE models: semantic input width -> options.
PRESETS: dict[int, dict[str, Any]] = {
    184: {"label_nc": 182, "contain_dontcare": True, "use_instance": True, "num_upsampling_layers": "normal",
          "dataset": "COCO-Stuff"},
    151: {"label_nc": 150, "contain_dontcare": True, "use_instance": False, "num_upsampling_layers": "normal",
          "dataset": "ADE20K"},
    36: {"label_nc": 35, "contain_dontcare": False, "use_instance": True, "num_upsampling_layers": "more",
         "dataset": "Cityscapes"},
}

_SN = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
       "weight_v": "parametrizations.weight.0._v"}


def _few(names, n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def read_official_state(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A plain PyTorch state dict from `path`, loaded with weights_only=True (no code runs).

    A `module.` prefix (DataParallel) is stripped; anything that is not a mapping of tensors is
    a CheckpointError naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: {what} file not found")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: {what} file is empty")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, zip errors and plain garbage raise different types
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{p}: not a PyTorch state dict readable with weights_only=True "
                              f"({msg[:200]})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{p}: expected a state dict (a mapping of names to tensors), "
                              f"got {type(obj).__name__}")
    state = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{p}: entry '{k}' is a {type(v).__name__}, not a tensor")
        state[k[len("module."):] if k.startswith("module.") else k] = v
    return state


def identify_official(state: Mapping[str, torch.Tensor]) -> str:
    """Which official network a state dict is: 'spade', 'sean', 'spade-encoder', 'discriminator',
    'pix2pixhd' or 'unknown'."""
    keys = set(state)
    if any(".ace_0.fc_mu0." in k or k.startswith("Zencoder.") for k in keys):
        return "sean"
    if "head_0.norm_0.mlp_shared.0.weight" in keys:
        return "spade"
    if "fc_mu.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "spade-encoder"
    if any(k.startswith(("discriminator_0.", "scale0_", "layer0.")) for k in keys) or any(
            re.match(r"discriminator_\d+\.model\d", k) for k in keys):
        return "discriminator"
    if "model.1.weight" in keys:
        return "pix2pixhd"
    return "unknown"


def wrong_family(state: Mapping[str, torch.Tensor], want: str, where: str) -> CheckpointError:
    """The one-line error for a checkpoint of another family than `want`."""
    found = identify_official(state)
    hint = {
        "sean": "a SEAN generator (use `gancanvas convert sean`)",
        "spade": "a SPADE generator (use `gancanvas convert spade`)",
        "spade-encoder": "a SPADE VAE encoder (latest_net_E.pth); convert the generator latest_net_G.pth "
                         "and pass this file as its encoder",
        "discriminator": "a discriminator (latest_net_D.pth); convert the generator latest_net_G.pth",
        "pix2pixhd": "a pix2pixHD generator (use `gancanvas convert pix2pixhd`)",
    }.get(found, f"not a {want.upper()} generator (keys like {_few(sorted(state), 3)})")
    return CheckpointError(f"{where}: not an official {want.upper()} generator checkpoint: this is {hint}")


def map_spectral(key: str) -> str:
    """`<conv>.weight_orig|_u|_v` (torch.nn.utils.spectral_norm) -> the parametrisation names."""
    head, _, leaf = key.rpartition(".")
    return f"{head}.{_SN[leaf]}" if leaf in _SN else key


def resolve_label_layout(semantic_nc: int, where: str, label_nc: int | None = None,
                         contain_dontcare: bool | None = None, use_instance: bool | None = None
                         ) -> dict[str, Any]:
    """label_nc / contain_dontcare / use_instance that add up to `semantic_nc` input channels.

    Given options are validated against the width. Without label_nc every channel is a class
    (minus the flags given). With label_nc and one extra channel, a flag must say which it is.
    """
    if label_nc is not None:
        if label_nc < 1:
            raise ConfigError(f"{where}: label_nc must be >= 1, got {label_nc}")
        extra = semantic_nc - label_nc
        if extra not in (0, 1, 2):
            raise ConfigError(f"{where}: the checkpoint takes {semantic_nc} semantic channels, which does "
                              f"not fit label_nc {label_nc} (classes + at most a don't-care and an "
                              "instance-edge channel)")
        if extra == 0:
            dc, inst = False, False
        elif extra == 2:
            dc, inst = True, True
        elif contain_dontcare is not None or use_instance is not None:
            dc = bool(contain_dontcare) if contain_dontcare is not None else not use_instance
            inst = not dc
        else:
            raise ConfigError(f"{where}: the checkpoint takes {semantic_nc} channels for label_nc "
                              f"{label_nc}: the extra one is either don't-care or the instance edges; say "
                              "which (--contain-dontcare or --instance)")
        given = ((contain_dontcare, dc, "contain_dontcare"), (use_instance, inst, "use_instance"))
        for flag, val, name in given:
            if flag is not None and bool(flag) != val:
                raise ConfigError(f"{where}: {name}={flag} does not fit {semantic_nc} semantic channels with "
                                  f"label_nc {label_nc}")
        return {"label_nc": label_nc, "contain_dontcare": dc, "use_instance": inst}
    dc = bool(contain_dontcare) if contain_dontcare is not None else False
    inst = bool(use_instance) if use_instance is not None else False
    label_nc = semantic_nc - int(dc) - int(inst)
    if label_nc < 1:
        raise ConfigError(f"{where}: {semantic_nc} semantic channels leave no classes")
    return {"label_nc": label_nc, "contain_dontcare": dc, "use_instance": inst}


def spade_options_from_state(state: Mapping[str, torch.Tensor], where: str) -> dict[str, Any]:
    """Architecture options implied by an official SPADE generator state dict (label layout aside)."""
    if identify_official(state) != "spade":
        raise wrong_family(state, "spade", where)
    try:
        head = state["head_0.conv_0.weight_orig"] if "head_0.conv_0.weight_orig" in state \
            else state["head_0.conv_0.weight"]
        shared = state["head_0.norm_0.mlp_shared.0.weight"]
        fc = state["fc.weight"]
    except KeyError as err:
        raise CheckpointError(f"{where}: SPADE generator checkpoint without {err.args[0]}") from None
    ngf = head.shape[0] // 16
    opts: dict[str, Any] = {
        "ngf": ngf,
        "spade_hidden": int(shared.shape[0]),
        "spade_kernel": int(shared.shape[-1]),
        "spectral": "head_0.conv_0.weight_orig" in state,
        # Batch norm leaves running statistics in the state dict, instance norm nothing.
        "param_free_norm": ("syncbatch" if "head_0.norm_0.param_free_norm.running_mean" in state
                            else "instance"),
        "use_vae": fc.dim() == 2,
        "semantic_nc": int(shared.shape[1]),
    }
    if any(k.startswith("up_4.") for k in state):
        opts["num_upsampling_layers"] = "most"
    if opts["use_vae"]:
        opts["z_dim"] = int(fc.shape[1])
        opts["latent_cells"] = int(fc.shape[0]) // (16 * ngf)
    elif fc.shape[1] != opts["semantic_nc"]:
        raise CheckpointError(f"{where}: fc takes {fc.shape[1]} channels but SPADE takes "
                              f"{opts['semantic_nc']}")
    return opts


def spade_state_from_official(state_g: Mapping[str, torch.Tensor],
                              state_e: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Rename an official SPADE generator (and VAE encoder) state dict into gancanvas' names."""
    out = {}
    for k, v in state_g.items():
        k = map_spectral(k.replace(".mlp_shared.0.", ".mlp_shared."))
        out[k] = v
    for k, v in (state_e or {}).items():
        out["encoder." + map_spectral(k)] = v
    return out


def _vae_grid(cells: int, crop_size: int | None, aspect_ratio: float | None, num_up: int,
              where: str) -> tuple[int, float]:
    """(crop_size, aspect_ratio) giving the VAE latent grid of `cells` cells."""
    if crop_size is not None:
        sw = crop_size // 2 ** num_up
        if sw < 1 or cells % sw:
            raise ConfigError(f"{where}: crop_size {crop_size} does not fit the VAE latent grid of {cells} "
                              "cells")
        sh = cells // sw
        ratio = aspect_ratio if aspect_ratio is not None else sw / sh
        if round(sw / ratio) != sh:
            raise ConfigError(f"{where}: crop_size {crop_size} with aspect_ratio {ratio} gives a "
                              f"{round(sw / ratio)}x{sw} grid, the checkpoint has {cells} cells")
        return crop_size, float(ratio)
    if aspect_ratio is not None:
        # sw * round(sw / ratio) = cells
        for sw in range(1, cells + 1):
            if cells % sw == 0 and round(sw / aspect_ratio) == cells // sw:
                return sw * 2 ** num_up, float(aspect_ratio)
        raise ConfigError(f"{where}: no crop_size with aspect_ratio {aspect_ratio} gives {cells} latent "
                          "cells")
    # Neither given: the official defaults (--crop_size 256, --aspect_ratio 1), if they fit. The weights
    # cannot tell a 4x4 grid from a 2x8 one, so anything else must be said.
    sw = 256 // 2 ** num_up
    if sw * sw != cells:
        raise ConfigError(f"{where}: the VAE latent grid has {cells} cells, not the {sw}x{sw} of the "
                          "official defaults: pass crop_size and aspect_ratio (the official --crop_size / "
                          "--aspect_ratio)")
    return 256, 1.0


def _sibling_encoder(path: Path) -> Path | None:
    m = re.match(r"^(.*)_net_G\.pth$", path.name)
    if m:
        cand = path.with_name(f"{m.group(1)}_net_E.pth")
        if cand.is_file():
            return cand
    return None


def convert_spade(source: str | Path, output: str | Path, *, label_nc: int | None = None,
                  contain_dontcare: bool | None = None, use_instance: bool | None = None,
                  num_upsampling_layers: str | None = None, encoder: str | Path | None = None,
                  crop_size: int | None = None, aspect_ratio: float | None = None,
                  class_names: list[str] | str | Path | None = None) -> Converted:
    """Convert an official SPADE generator (`latest_net_G.pth`; with the VAE also its encoder,
    `encoder=` or the `*_net_E.pth` beside it) into a gancanvas model file."""
    from .. import registry
    from ..config import to_dict
    from ..data.labels import load_class_names, palette_name_for
    from ..models import spade as _spade  # noqa: F401  (registers the architecture)
    from ..models.spade import UPSAMPLING_LAYERS
    from ..weights import load_state_strict, save_model
    from . import Converted

    src = Path(source)
    where = str(src)
    out = Path(output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give the model file to write, e.g. {out}/spade.safetensors")
    state_g = read_official_state(src, "SPADE generator")
    found = spade_options_from_state(state_g, where)
    semantic_nc = found.pop("semantic_nc")
    cells = found.pop("latent_cells", None)
    preset = PRESETS.get(semantic_nc) if label_nc is None and contain_dontcare is None \
        and use_instance is None else None
    options = dict(found)
    try:
        if preset is not None:
            options.update({k: v for k, v in preset.items() if k != "dataset"})
        else:
            options.update(resolve_label_layout(semantic_nc, where, label_nc, contain_dontcare, use_instance))
        if num_upsampling_layers is not None:
            if found.get("num_upsampling_layers") == "most" and num_upsampling_layers != "most":
                raise ConfigError(f"{where}: the checkpoint has an up_4 block, i.e. num_upsampling_layers "
                                  f"'most', not '{num_upsampling_layers}'")
            options["num_upsampling_layers"] = num_upsampling_layers
        state_e = None
        if options["use_vae"]:
            num_up = UPSAMPLING_LAYERS.get(options.get("num_upsampling_layers", "normal"), 5)
            options["crop_size"], options["aspect_ratio"] = _vae_grid(cells, crop_size, aspect_ratio, num_up,
                                                                      where)
            enc = Path(encoder) if encoder is not None else _sibling_encoder(src)
            if enc is None:
                raise CheckpointError(f"{where}: a VAE generator needs its encoder: pass the official "
                                      "latest_net_E.pth (encoder=...)")
            state_e = read_official_state(enc, "SPADE encoder")
            if identify_official(state_e) != "spade-encoder":
                raise CheckpointError(f"{enc}: not an official SPADE VAE encoder (no fc_mu / layer1 weights)")
        elif encoder is not None:
            raise CheckpointError(f"{where}: this generator has no VAE (fc is a convolution); it takes no "
                                  "encoder")
        if class_names is not None:
            try:
                options["class_names"] = list(load_class_names(class_names, options["label_nc"]))
            except InputError as err:
                raise ConfigError(f"{where}: class_names: {err}") from None
        cfg = registry.model_config("spade", options)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    model = registry.get_spec("spade").builder(cfg)
    load_state_strict(model, spade_state_from_official(state_g, state_e), where)
    config = to_dict(cfg)
    extra = {"source": str(src.resolve()), "converted_from": "pytorch", "official": "NVlabs/SPADE"}
    if preset is not None:
        extra["preset"] = preset["dataset"]
    palette = palette_name_for(options.get("class_names"))
    if palette is not None:
        extra["palette"] = palette
    try:
        save_model(out, model.eval(), arch="spade", config=config, extra=extra, dtype=torch.float32)
    except OSError as err:
        raise InputError(f"{out}: cannot write ({err.strerror or err})") from None
    n_params = sum(p.numel() for p in model.parameters())
    return Converted(path=out, arch="spade", config=config, source=where, n_params=n_params, extra=extra)
