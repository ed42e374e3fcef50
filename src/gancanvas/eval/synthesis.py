"""The label-to-image evaluation protocol: label maps (+ instance maps) and their photos.

`evaluate_synthesis(method, labels_dir, images_dir)` synthesises an image from every label map and
compares it with the photo the label map was drawn from; it returns an `EvalResult` (the
inpainting protocol's, so `table()`, `compare()` and JSON work alike). Step by step:

1. Label maps: the image files of `labels_dir` in natural name order (ids as grey / indexed
   PNGs, or colours read through `palette` or the model's palette). Photos: the file of
   `images_dir` with the same stem (extensions in `data.io.IMAGE_EXTS` order); instance maps
   (`instances_dir`, optional): likewise. A label map without its photo (or instance map, when
   `instances_dir` is given) is an error: nothing is skipped silently.
2. Crop: with `size`, label map, instance map and photo are centre-cropped to it alike; without,
   the photo must have the label map's size. Never resized.
3. The method synthesises an image from the label map (and instance map). Which style it gets is
   fixed by `style`:
   - `style="photo"` (default), the reconstruction setting: SEAN gets the per-region style codes
     of the photo itself (as SEAN's paper reports reconstruction); pix2pixHD with instance
     features gets the features encoded from the photo (official `--use_encoded_image`); SPADE
     with the VAE gets z drawn from the encoding of the photo (official test-time
     `reparameterize`, drawn with `seed`). Models that take no style (pix2pixHD without
     features, SPADE without the VAE) run as they are; the record says `style: none`.
   - `style="default"`: each model's default without the photo: pix2pixHD with features draws
     stored cluster centres with `seed` (zero features without clusters), SPADE with the VAE
     draws z ~ N(0, 1) with `seed`; SEAN has no default (it needs codes): an InputError.
   `seed` also seeds SEAN's noise. Every draw is seeded, so the numbers are reproducible.
4. Metrics compare the output with the photo, both as float in [0, 1], over the whole image:
   by default `psnr` (dB, capped at 100), `ssim`, `rmse` (data range 1, the scale of SEAN's
   table) and `l1` (mean absolute error x100, percent of the range). The metric mask is all
   ones (every pixel is synthesised), so `hole_l1` equals `l1`.
5. One row, "all": the mean over the images.

Not computed: mIoU (segmentation accuracy of the outputs, SPADE's and pix2pixHD's main table):
it needs a segmentation network trained on the same classes (DeepLab / DRN / UperNet), and none
is available offline here, so no number is reported rather than a made-up one.

Methods: a callable `fn(labels int HxW, instances int HxW or None, photo u8 HxWx3) -> u8 HxWx3`
(it may read the photo: the reconstruction setting does), a `Synthesizer`, a model name or file,
or the name of a baseline in `SYNTHESIS_BASELINES` (class-mean: an oracle flat reference).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .protocol import EvalResult, _Scorer, _size_arg, center_crop

__all__ = ["evaluate_synthesis", "synthesis_method", "SynthesisFn", "STYLE_MODES"]

SynthesisFn = Callable[[np.ndarray, "np.ndarray | None", np.ndarray], np.ndarray]
STYLE_MODES = ("photo", "default")
_INSTANCE_EXTS = (".png", ".npy", ".tif", ".tiff", ".bmp", ".webp", ".jpg", ".jpeg")


def _synthesizer_fn(pipe, style: str, seed: int) -> tuple[SynthesisFn, str]:
    """fn for a Synthesizer under `style`, and the style it takes ("image" / "default" / "none")."""
    if style == "photo":
        use = "image" if "image" in pipe.style_kinds else "none"
    else:
        use = "default" if pipe.style_kinds else "none"
        try:
            pipe.check_style(None)  # SEAN has no default style: say so once, before the first image
        except InputError:
            raise InputError(f"model '{pipe.name}' ({pipe.arch}) has no default style (it needs style "
                             "codes); evaluate it with style 'photo' (--style photo: the photo's own "
                             "codes)") from None
    spade_vae = pipe.arch == "spade" and pipe.cfg.use_vae

    def fn(labels, instances, photo):
        res = pipe.run(labels, instances, style=photo if use == "image" else None, seed=seed)
        if spade_vae and res.image.shape != photo.shape:
            oh, ow = res.image.shape[:2]
            raise InputError(f"model '{pipe.name}' (SPADE with the VAE) always makes {ow}x{oh} images "
                             f"(crop_size {pipe.cfg.crop_size}, aspect_ratio {pipe.cfg.aspect_ratio:g}) but "
                             f"the photos are {photo.shape[1]}x{photo.shape[0]}; evaluate it on {ow}x{oh} "
                             "label maps and photos")
        fn.last_style = res.style
        return res.image

    fn.last_style = use
    return fn, use


def synthesis_method(method: Any, device: str | torch.device = "cpu", style: str = "photo",
                     seed: int = 0) -> tuple[str, SynthesisFn, Any]:
    """(display name, fn, pipeline or None) of a method: a baseline name, a model name / file, a
    Synthesizer, or a callable. A model of another task is a one-line InputError."""
    from .baselines import SYNTHESIS_BASELINES
    from .methods import resolve_method

    if style not in STYLE_MODES:
        raise InputError(f"style must be one of {', '.join(STYLE_MODES)}, got {style!r}")
    return resolve_method(method, task="synthesize", option="--labels", baselines=SYNTHESIS_BASELINES,
                          adapt=lambda p: _synthesizer_fn(p, style, seed)[0], device=device)


def _stems(folder: Path, exts: Sequence[str], what: str) -> dict[str, Path]:
    """{stem: file} of `folder`, the first extension in `exts` order winning."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder ({what})")
    found: dict[str, tuple[int, Path]] = {}
    for p in folder.iterdir():
        ext = p.suffix.lower()
        if p.is_file() and not p.name.startswith(".") and ext in exts:
            rank = exts.index(ext)
            if p.stem not in found or rank < found[p.stem][0]:
                found[p.stem] = (rank, p)
    return {k: v[1] for k, v in found.items()}


def _pair(labels: list[Path], folder: Path, exts: Sequence[str], what: str) -> list[Path]:
    by_stem = _stems(folder, exts, what)
    missing = [p for p in labels if p.stem not in by_stem]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        names = ", ".join(p.name for p in missing[:3])
        raise InputError(f"{folder}: no {what} with the stem of the label map(s) {names}{more} (label maps, "
                         f"photos and instance maps are paired by file stem)")
    return [by_stem[p.stem] for p in labels]


def evaluate_synthesis(
    method: Any,
    labels_dir: str | os.PathLike,
    images_dir: str | os.PathLike,
    *,
    instances_dir: str | os.PathLike | None = None,
    metrics: Sequence[str] = ("psnr", "ssim", "rmse", "l1"),
    style: str = "photo",
    seed: int = 0,
    palette: Any = None,
    size: int | Sequence[int] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    device: str | torch.device = "cpu",
    metric_options: dict[str, dict[str, Any]] | None = None,
) -> EvalResult:
    """Score a label-to-image method against the photos of its label maps (module docstring).

    `method`: `fn(labels, instances, photo) -> u8 HxWx3`, a Synthesizer, a model name / file (loaded
    on `device`) or a baseline name (class-mean). `instances_dir`: instance maps by stem, for models
    that use them (without it such a model gets the label map in their place, as the pipeline
    does; `info["instances"]` says so). `style`, `seed`: step 3. `palette`: for colour label maps
    (default: the model's). `size`: a centre crop. Records name the photo (`image`), the label map
    (`mask`, what `compare` pairs on), the instance map and the style used.
    """
    from ..data.io import IMAGE_EXTS, list_images, read_image
    from ..data.labels import load_palette, read_instance_map, read_label_map

    scorer = _Scorer(metrics, metric_options, device, batch_size)
    name, fn, pipe = synthesis_method(method, device, style, seed)
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    inst_dir = Path(instances_dir) if instances_dir is not None else None
    if pipe is not None and inst_dir is not None and not pipe.uses_instances:
        raise InputError(f"model '{pipe.name}' ({pipe.arch}) takes no instance map (trained without "
                         "instances); drop --instances")
    pal = load_palette(palette) if palette is not None else (pipe.palette if pipe is not None else None)
    crop = _size_arg(size)
    label_paths, skipped = list_images(labels_dir)
    photos = _pair(label_paths, images_dir, IMAGE_EXTS, "photo")
    insts = _pair(label_paths, inst_dir, _INSTANCE_EXTS, "instance map") if inst_dir is not None else \
        [None] * len(label_paths)

    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    for lp, pp, ip in tqdm(list(zip(label_paths, photos, insts)), desc=f"eval {name}", unit="img",
                           disable=not progress, file=sys.stderr):
        labels = read_label_map(lp, pal)
        photo = read_image(pp)
        inst = read_instance_map(ip) if ip is not None else None
        if crop is not None:
            labels = center_crop(labels, crop, str(lp))
            photo = center_crop(photo, crop, str(pp))
            inst = center_crop(inst, crop, str(ip)) if inst is not None else None
        elif photo.shape[:2] != labels.shape:
            raise InputError(f"{pp}: the photo is {photo.shape[1]}x{photo.shape[0]} but its label map "
                             f"{lp.name} is {labels.shape[1]}x{labels.shape[0]} (give a size to centre-crop "
                             "both)")
        if inst is not None and inst.shape != labels.shape:
            raise InputError(f"{ip}: the instance map is {inst.shape[1]}x{inst.shape[0]} but its label map "
                             f"{lp.name} is {labels.shape[1]}x{labels.shape[0]}")
        labels, photo = np.ascontiguousarray(labels), np.ascontiguousarray(photo)
        inst = np.ascontiguousarray(inst) if inst is not None else None
        try:
            out = np.asarray(fn(labels, inst, photo.copy()))
        except InputError as err:
            msg = str(err)
            raise (err if str(lp) in msg else InputError(f"{lp}: {msg}")) from None
        if out.dtype != np.uint8 or out.shape != photo.shape:
            raise InputError(f"{lp.name}: {name} returned {out.dtype} {out.shape}, expected uint8 "
                             f"{photo.shape}")
        rec = {"image": pp.name, "mask": lp.name, "instances": ip.name if ip is not None else None,
               "bin": "all", "area_pct": 100.0, "style": getattr(fn, "last_style", "n/a"), "values": {}}
        records.append(rec)
        scorer.add(out, photo, np.ones(labels.shape, bool), rec)

    if inst_dir is not None:
        inst_note = str(inst_dir)
    elif pipe is not None and pipe.uses_instances:
        inst_note = "none given: the label map stands in (class boundaries only)"
    else:
        inst_note = None
    info = {
        "protocol": "synthesis",
        "method": name,
        "labels_dir": str(labels_dir),
        "images_dir": str(images_dir),
        "instances": inst_note,
        "style_mode": style,
        "seed": int(seed),
        "crop": list(crop) if crop is not None else None,
        "n_images": len(records),
        "skipped": [[p.name, why] for p, why in skipped],
        "not_computed": {"miou": "needs a segmentation network for these classes; none is available offline"},
        "metric_options": scorer.options_info(),
    }
    return scorer.result([], records, info)
