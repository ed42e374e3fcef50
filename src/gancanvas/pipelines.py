"""Inference pipelines: the pre- and post-processing around a model.

`load(name_or_path)` returns the pipeline of the model's task (`registry` task of its arch):

- `Inpainter` ("inpaint"): `inpaint(image, mask, sketch=None)`. Pads to the model's stride, runs
  the generator, crops back and pastes the known pixels back bit-exactly.
- `Outpainter` ("outpaint"): `outpaint(image, top=, left=, bottom=, right=)`, margins in pixels or
  percentages ("50%"); the whole canvas comes back with the known pixels exactly as given.
- `Synthesizer` ("synthesize"): `synthesize(labels, instances=None, style=None, seed=0)`, label
  map (ids, or colours through a palette) to image, for pix2pixHD, SPADE and SEAN; `style` is
  mapped to what the model has (cluster index / random by seed / a style photo / style codes;
  SEAN: `synthesize(labels, styles=codes, mean=mean_codes)`, codes from `extract_styles` or
  `gancanvas.styles.StyleCodes`, per-class means from `mean_styles`).

Every entry point takes PIL images or numpy arrays and returns the type it was given. Bad input
is a one-line `InputError` raised here, before the network sees it.

A model file may carry the palette of its colour label maps in its metadata: `extra["palette"]`
("scenes", "cityscapes", "celebamask-hq", or a JSON palette value as `data.labels.load_palette`
reads it); the synthesis pipeline then reads colour label maps without being given a palette.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import registry
from .data import io
from .data.labels import (
    Palette,
    check_instances,
    check_labels,
    coerce_instance_map,
    coerce_label_map,
    load_palette,
)
from .data.margins import Margins, check_margins, parse_margins
from .errors import CheckpointError, InputError, MaskError, ModelNotFoundError
from .weights import load_model

#: Margin names, in the order of `Margins` (the CLI labels them "--top", ...).
SIDES = ("top", "left", "bottom", "right")


@dataclass
class InpaintResult:
    """What `Inpainter.run` returns: the completed image and, if asked, the attention flow."""

    image: np.ndarray  # uint8 HxWx3
    flow: np.ndarray | None = None  # uint8 HxWx3 colour-wheel picture of the attention offsets
    coarse: np.ndarray | None = None  # uint8 HxWx3 stage-1 output (composited)


@dataclass
class OutpaintResult:
    """What `Outpainter.run` returns: the canvas, the margins used and the synthesised region."""

    image: np.ndarray  # uint8 HxWx3, the whole canvas
    margins: Margins
    mask: np.ndarray  # bool HxW, True = synthesised (outside the known image)


@dataclass
class SynthesisResult:
    """What `Synthesizer.run` returns: the image and how its style was chosen."""

    image: np.ndarray  # uint8 HxWx3
    style: str = "none"  # used: none | default | random | cluster | zeros | instances | image | codes
    # pix2pixHD clusters: {(image or -1, instance id): centre index, -1 = none / given features}.
    picks: dict = field(default_factory=dict)
    missing_styles: list[str] = field(default_factory=list)  # SEAN: used regions without a code


def resolve_model_path(name_or_path: str | Path) -> tuple[Path, str]:
    """A built-in model name or a file path -> (path, display name)."""
    s = str(name_or_path)
    registry._ensure_loaded()
    if s in registry.PRETRAINED:
        spec = registry.PRETRAINED[s]
        if not spec.path.is_file():
            raise ModelNotFoundError(f"built-in model '{s}' is registered but its weights file {spec.path} "
                                     "is missing from this installation")
        return spec.path, s
    p = Path(s)
    if p.is_dir():
        # A training run folder: its exported EMA generator.
        if (p / "model.safetensors").is_file():
            return p / "model.safetensors", str(p)
        raise ModelNotFoundError(f"{p}: a directory without model.safetensors (is it a training run folder?)")
    if p.is_file():
        return p, str(p)
    known = ", ".join(sorted(registry.PRETRAINED)) or "none"
    raise ModelNotFoundError(f"'{s}' is neither a built-in model name (known: {known}) nor a file")


def _pad_to_multiple(x: torch.Tensor, multiple: int, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    # Reflection needs the pad to be smaller than the side; tiny images fall back to replicate.
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class Pipeline:
    task = ""

    def __init__(self, model: torch.nn.Module, meta: dict, name: str, device: str | torch.device = "cpu"):
        # channels_last: oneDNN's fast convolution layout on CPU (and tensor cores on GPU).
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.meta = meta
        self.name = name
        self.device = torch.device(device)

    @property
    def arch(self) -> str:
        return self.meta["arch"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, arch={self.arch!r})"


class Inpainter(Pipeline):
    """Fill holes: `inpaint(image, mask, sketch=None)`; any non-zero mask pixel is a hole."""

    task = "inpaint"

    @property
    def guided(self) -> bool:
        return bool(self.meta["config"].get("guided", False))

    def inpaint(self, image: Any, mask: Any, sketch: Any = None, *, resize_mask: bool = False):
        """Return the completed image as the type given (PIL image or numpy array)."""
        img, kind = io.coerce_image(image)
        out = self.run(img, io.coerce_mask(mask), None if sketch is None else io.coerce_mask(sketch),
                       resize_mask=resize_mask)
        return io.restore_type(out.image, kind)

    @torch.inference_mode()
    def run(self, image: np.ndarray, mask: np.ndarray, sketch: np.ndarray | None = None, *,
            resize_mask: bool = False, flow: bool = False, source: str | None = None) -> InpaintResult:
        """Inpaint uint8 HxWx3 `image` where bool HxW `mask` is set; the core of every entry point."""
        mask = io.check_mask(mask, image.shape[:2], path=source, resize=resize_mask)
        if sketch is not None:
            if not self.guided:
                raise InputError(f"model '{self.name}' was not trained with a sketch channel; "
                                 "drop --sketch or use a guided model")
            sketch = io.check_mask(sketch, image.shape[:2], path=source, resize=resize_mask, allow_empty=True)
        stride = int(getattr(self.model, "stride", 8))
        x = io.image_to_tensor(image).to(self.device)
        m = io.mask_to_tensor(mask).to(self.device)
        x_p, (h, w) = _pad_to_multiple(x, stride, "reflect")
        x_p = x_p.contiguous(memory_format=torch.channels_last)
        # Padding is known context (reflected pixels), never part of the hole.
        m_p, _ = _pad_to_multiple(m, stride, "constant")
        s_p = None
        if self.guided:
            s = io.mask_to_tensor(sketch).to(self.device) if sketch is not None else torch.zeros_like(m)
            s_p, _ = _pad_to_multiple(s, stride, "constant")
        outs = self.model(x_p, m_p, s_p) if self.guided else self.model(x_p, m_p)
        refined = outs["refined"][..., :h, :w]
        completed = refined * m + x * (1 - m)
        result = io.tensor_to_image(completed)
        # Known pixels come back exactly as given (no float round trip).
        result[~mask] = image[~mask]
        res = InpaintResult(image=result)
        if flow and outs.get("offsets") is not None:
            from .nn.attention import flow_to_uint8

            res.flow = flow_to_uint8(outs["offsets"], (x_p.shape[-2], x_p.shape[-1]))[:h, :w]
        return res


class Outpainter(Pipeline):
    """Extend an image beyond its borders: `outpaint(image, top=, left=, bottom=, right=)`.

    Margins are pixels (int, "64", "64px") or a percentage of the image ("50%": of its height for
    top/bottom, of its width for left/right). The result is the whole canvas with the known image
    at (top, left), its pixels exactly as given.
    """

    task = "outpaint"

    def margins(self, size: tuple[int, int], top=None, left=None, bottom=None, right=None, *,
                names: tuple[str, ...] = SIDES) -> Margins:
        """Parse and validate margins for a known image of `size` (h, w), this model's limits included.

        One-line InputError for unreadable, negative or all-zero margins, a canvas above the size
        limit, or a canvas this model cannot produce (official SRN: the integer-ratio rule).
        """
        m = parse_margins(top, left, bottom, right, size=size, names=names)
        self.model.check_margins(size, m)
        return m

    def outpaint(self, image: Any, top=0, left=0, bottom=0, right=0):
        """Return the outpainted canvas as the type given (PIL image or numpy array)."""
        img, kind = io.coerce_image(image)
        m = self.margins(img.shape[:2], top, left, bottom, right)
        return io.restore_type(self.run(img, m).image, kind)

    @torch.inference_mode()
    def run(self, image: np.ndarray, margins: Margins | tuple[int, int, int, int]) -> OutpaintResult:
        """Outpaint uint8 HxWx3 `image` by `margins` (pixels); the core of every entry point."""
        h, w = image.shape[:2]
        m = check_margins(margins, (h, w))
        self.model.check_margins((h, w), m)
        x = io.image_to_tensor(image).to(self.device).contiguous(memory_format=torch.channels_last)
        # SRN pads to its stride itself (clean mode) and places the known box from the margins.
        out = self.model(x, m)
        result = io.tensor_to_image(out["complete"])
        # Known pixels come back exactly as given (no float round trip).
        result[m.top:m.top + h, m.left:m.left + w] = image
        mask = np.ones(result.shape[:2], dtype=bool)
        mask[m.top:m.top + h, m.left:m.left + w] = False
        return OutpaintResult(image=result, margins=m, mask=mask)


def _pad_edge(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Replicate the last row / column of an HxW[xC] array up to `size` (bottom and right)."""
    ph, pw = size[0] - arr.shape[0], size[1] - arr.shape[1]
    if ph == 0 and pw == 0:
        return arr
    return np.pad(arr, [(0, ph), (0, pw)] + [(0, 0)] * (arr.ndim - 2), mode="edge")


def _check_same_size(photo: np.ndarray, labels: np.ndarray, photo_source: str | None, where: str) -> None:
    if photo.shape[:2] != labels.shape:
        raise InputError(f"{photo_source or 'style image'}: style image is {photo.shape[1]}x{photo.shape[0]} "
                         f"but the label map {where} is {labels.shape[1]}x{labels.shape[0]} (WxH); they must "
                         "be the same size (styles are taken per region of the label map)")


def _is_style_codes(x: Any) -> bool:
    from .styles import StyleCodes

    return isinstance(x, StyleCodes)


def _style_kind(style: Any) -> tuple[str, Any]:
    """A `style` argument -> (kind, value); kinds: default, random, zeros, cluster, instances,
    image (uint8 HxWx3), codes (a StyleCodes or a style file path)."""
    if style is None:
        return "default", None
    if isinstance(style, str) and style in ("random", "zeros"):
        return style, None
    if isinstance(style, (int, np.integer)) and not isinstance(style, bool):
        if style < 0:
            raise InputError(f"style cluster index must be >= 0, got {style}")
        return "cluster", int(style)
    if isinstance(style, Mapping):
        return "instances", dict(style)
    if isinstance(style, (Image.Image, np.ndarray)):
        return "image", io.coerce_image(style)[0]
    if isinstance(style, (str, os.PathLike)):
        # A style file holds SEAN codes (safetensors); anything else is read as a style photo.
        if Path(style).suffix.lower() == ".safetensors":
            return "codes", Path(style)
        return "image", io.read_image(style)
    if _is_style_codes(style):
        return "codes", style
    raise InputError(f"style: expected 'random', 'zeros', a cluster index, a style image, style codes or a "
                     f"style file, got {type(style).__name__}")


class Synthesizer(Pipeline):
    """Label map (+ instance map, + style) to image: `synthesize(labels, instances=None, style=None)`.

    Label maps are grey / indexed ids or colours (read through `palette`, or the model's own).
    Styles by architecture:

    - pix2pixHD with instance features: `style=None` (random stored cluster centres drawn with
      `seed`; zero features when the model stores none), "random" (the same, but the model must
      store clusters), an int k (centre k of each class), "zeros", {instance id: index}, or a
      style photo (PIL / numpy / path) encoded with the model's encoder. Others take no style.
    - SPADE with the VAE encoder: `style=None` / "random" (z drawn with `seed`) or a style photo;
      without it no style.
    - SEAN: style codes (`StyleCodes`, or a style file from `gancanvas styles extract`) or a style
      photo of the same size as the label map (its codes under that label map); `seed` draws the
      noise. Regions the label map uses but the codes lack get a zero code (listed in the result),
      unless `synthesize(..., mean=)` fills them (the CLI refuses them without --mean).
    """

    task = "synthesize"

    def __init__(self, model: torch.nn.Module, meta: dict, name: str, device: str | torch.device = "cpu"):
        if meta["arch"] not in self._BACKENDS:
            raise ModelNotFoundError(f"{name}: no synthesis pipeline for architecture '{meta['arch']}' yet "
                                     f"(known: {', '.join(self._BACKENDS)})")
        super().__init__(model, meta, name, device)
        self._palette: Palette | None = None

    # --- what the model takes -----------------------------------------------------------------

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def label_nc(self) -> int:
        return int(self.cfg.label_nc)

    @property
    def dontcare(self) -> int | None:
        """The id with its own input channel (pix2pixHD `dontcare`, SPADE/SEAN 255), or None."""
        if self.arch == "pix2pixhd":
            return self.cfg.dontcare
        return 255 if getattr(self.cfg, "contain_dontcare", False) else None

    @property
    def uses_instances(self) -> bool:
        """Whether an instance map changes the output (edge channel, or per-instance styles)."""
        if self.arch == "pix2pixhd":
            return not self.cfg.no_instance or (self.cfg.instance_feat and not self.cfg.label_feat)
        return bool(getattr(self.cfg, "use_instance", False))

    @property
    def style_kinds(self) -> tuple[str, ...]:
        """The style kinds this model takes (see `_style_kind`); empty: none."""
        if self.arch == "pix2pixhd":
            if not self.cfg.use_features:
                return ()
            return ("default", "random", "zeros", "cluster", "instances", "image")
        if self.arch == "spade":
            return ("default", "random", "image") if self.cfg.use_vae else ()
        return ("codes", "image")

    @property
    def has_clusters(self) -> bool:
        return self.arch == "pix2pixhd" and self.cfg.use_features and bool(self.model.cluster_counts.any())

    @property
    def palette(self) -> Palette | None:
        """The palette stored in the model file (`extra["palette"]`), or None."""
        spec = self.meta.get("extra", {}).get("palette")
        if spec is not None and self._palette is None:
            self._palette = load_palette(spec)
        return self._palette

    # --- entry points ---------------------------------------------------------------------------

    def synthesize(self, labels: Any, instances: Any = None, style: Any = None, *, styles: Any = None,
                   mean: Any = None, seed: int = 0, palette: Any = None):
        """Return the synthesised image: a PIL image for a PIL label map, else a uint8 HxWx3 array.

        `labels`: a path, a PIL image (indexed: its indices are ids), or an array / tensor of ids
        (HxW) or colours (HxWx3 uint8, read with `palette` or the model's palette). `instances`:
        the same kinds of ids (Cityscapes rule: id >= 1000 is object k of class id // 1000).
        `style` and `seed`: see the class doc; `styles` is another name for `style` (SEAN codes:
        `synthesize(labels, styles=codes)`). `mean`: SEAN, codes (or a style file) for the regions
        `styles` lacks (`StyleCodes.fill_missing`), e.g. the per-class means of `gancanvas styles mean`.
        """
        if styles is not None:
            if style is not None:
                raise InputError("give the style as style= or styles=, not both")
            style = styles
        if mean is not None:
            style = self._fill_missing(style, mean)
        kind = "pil" if isinstance(labels, Image.Image) else "numpy"
        pal = palette if palette is not None else self.palette
        ids = coerce_label_map(labels, pal, what="labels")
        inst = coerce_instance_map(instances, what="instances") if instances is not None else None
        return io.restore_type(self.run(ids, inst, style=style, seed=seed).image, kind)

    def _fill_missing(self, style: Any, mean: Any):
        from .styles import StyleCodes

        kind, value = _style_kind(style)
        if kind != "codes":
            raise InputError("mean= fills the regions that SEAN style codes lack; give the codes as styles=")
        if "codes" not in self.style_kinds:
            raise InputError(self._style_message("codes"))
        codes = value if isinstance(value, StyleCodes) else StyleCodes.load(value, self.model)
        if not isinstance(mean, StyleCodes):
            mean = StyleCodes.load(mean, self.model)
        return codes.fill_missing(mean)

    @torch.inference_mode()
    def run(self, labels: np.ndarray, instances: np.ndarray | None = None, *, style: Any = None,
            seed: int = 0, source: str | None = None, instances_source: str | None = None,
            style_source: str | None = None) -> SynthesisResult:
        """Synthesise from int HxW `labels` (and `instances`); the core of every entry point.

        `source`, `instances_source`, `style_source` name the files in error messages.
        """
        where = source or "labels"
        labels = np.asarray(labels)
        if labels.ndim != 2 or 0 in labels.shape:
            raise InputError(f"{where}: a label map must be HxW ids, got shape {labels.shape}")
        check_labels(labels, self.label_nc, self.dontcare, path=where)
        if instances is not None:
            instances = np.asarray(instances)
            self._check_instances(instances, labels, instances_source, where)
        kind, value = _style_kind(style)
        self._check_style(kind, value)
        # SPADE's encoder resizes its input; the others pool the style photo over the label map's regions.
        per_region = self.arch != "spade"
        if kind == "image" and per_region:
            _check_same_size(value, labels, style_source, where)
        h, w = labels.shape
        size = self._padded_size(h, w)
        lab = torch.from_numpy(_pad_edge(labels.astype(np.int64), size))[None].to(self.device)
        inst = None
        if instances is not None:
            inst = torch.from_numpy(_pad_edge(instances.astype(np.int64), size))[None].to(self.device)
        if kind == "image":
            value = io.image_to_tensor(_pad_edge(value, size) if per_region else value).to(self.device)
        out, info = getattr(self, self._BACKENDS[self.arch])(lab, inst, kind, value, seed, labels)
        if self.arch != "spade" or not self.cfg.use_vae:
            out = out[..., :h, :w]  # a SPADE VAE model's output size is fixed by its latent grid
        return SynthesisResult(image=io.tensor_to_image(out), **info)

    @torch.inference_mode()
    def extract_styles(self, labels: Any, image: Any, instances: Any = None, *, palette: Any = None,
                       source: str | None = None, image_source: str | None = None):
        """SEAN: the per-region style codes (`gancanvas.styles.StyleCodes`) of a photo under its label
        map (same size); what `synthesize(..., style=codes)` takes, to edit, save or reuse.

        Inputs as in `synthesize` (plus the photo: PIL / numpy / path). `source` names the codes
        (and the label map in errors), `image_source` the photo in errors.
        """
        from .styles import StyleCodes

        if "codes" not in self.style_kinds:
            raise InputError(f"model '{self.name}' ({self.arch}) has no per-region style codes (a SEAN model "
                             "does)")
        where = source or "labels"
        pal = palette if palette is not None else self.palette
        ids = coerce_label_map(labels, pal, what=where)
        check_labels(ids, self.label_nc, self.dontcare, path=where)
        photo = io.read_image(image) if isinstance(image, (str, os.PathLike)) else io.coerce_image(image)[0]
        _check_same_size(photo, ids, image_source, where)
        size = self._padded_size(*ids.shape)
        lab = torch.from_numpy(_pad_edge(ids, size))[None].to(self.device)
        inst = None
        if instances is not None:
            inst_ids = coerce_instance_map(instances, what="instances")
            self._check_instances(inst_ids, ids, None, where)
            inst = torch.from_numpy(_pad_edge(inst_ids, size))[None].to(self.device)
        seg = self.model.semantic_input(lab, inst)
        x = io.image_to_tensor(_pad_edge(photo, size)).to(self.device)
        return StyleCodes.extract(self.model, x, seg, [source or ""])[0]

    @torch.inference_mode()
    def mean_styles(self, samples: Any, *, palette: Any = None, batch_size: int = 8,
                    progress: Any = None, skip: Any = None):
        """SEAN: per-class mean style codes over a dataset (what the official
        calculate_mean_style_code.py computes over the test set), for regions an image lacks.

        `samples`: `data.labels.LabelSample`s with photos (`find_label_dataset`). They are encoded
        `batch_size` at a time (consecutive samples of the same size share a batch); a region's mean
        is over the images where it is present; regions never seen stay absent. `progress(n)` is
        called as samples are done; `skip(sample, error)` gets the samples that cannot be read
        (without it, the first bad sample raises). Returns (StyleCodes, number of images used).
        """
        from .data.labels import read_label_sample
        from .errors import GancanvasError
        from .styles import StyleCodes

        if "codes" not in self.style_kinds:
            raise InputError(f"model '{self.name}' ({self.arch}) has no per-region style codes (a SEAN model "
                             "does)")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        pal = palette if palette is not None else self.palette
        used = [0]

        def flush(batch: list) -> list:
            lab = torch.stack([b[0] for b in batch]).to(self.device)
            inst = torch.stack([b[1] for b in batch]).to(self.device) if batch[0][1] is not None else None
            x = torch.stack([b[2] for b in batch]).to(self.device)
            seg = self.model.semantic_input(lab, inst)
            out = StyleCodes.extract(self.model, x, seg, [b[3] for b in batch])
            used[0] += len(batch)
            if progress is not None:
                progress(len(batch))
            return out

        def codes():
            batch: list = []
            for sample in samples:
                try:
                    if sample.image is None:
                        raise InputError(f"{sample.labels}: no photo for this label map")
                    d = read_label_sample(sample, pal)
                    ids = d["labels"]
                    check_labels(ids, self.label_nc, self.dontcare, path=sample.labels)
                    if "instances" in d and not self.uses_instances:
                        d.pop("instances")
                    if self.uses_instances and "instances" not in d:
                        raise InputError(f"{sample.labels}: the model uses instance maps and this sample "
                                         "has none")
                except GancanvasError as err:
                    if skip is None:
                        raise
                    skip(sample, err)
                    if progress is not None:
                        progress(1)
                    continue
                size = self._padded_size(*ids.shape)
                lab = torch.from_numpy(_pad_edge(ids, size))
                inst = torch.from_numpy(_pad_edge(d["instances"], size)) if "instances" in d else None
                photo = io.image_to_tensor(_pad_edge(d["image"], size))[0]
                if batch and (tuple(batch[0][0].shape) != tuple(lab.shape) or len(batch) >= batch_size):
                    yield from flush(batch)
                    batch = []
                batch.append((lab, inst, photo, str(sample.labels)))
            if batch:
                yield from flush(batch)

        mean = StyleCodes.mean(codes(), source="mean")
        return mean, used[0]

    def _check_instances(self, instances: np.ndarray, labels: np.ndarray, source: str | None, where: str):
        if not self.uses_instances:
            raise InputError(f"model '{self.name}' ({self.arch}) takes no instance map (trained without "
                             "instances); drop --instances")
        check_instances(instances, labels, source or "instances", where)

    # --- sizes ------------------------------------------------------------------------------------

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The label-map size the network runs at: a multiple of the model's stride and, with
        instance norm, at least two strides (instance norm needs more than one value per channel
        at the bottleneck). The pipeline replicates the last row / column there, then crops back."""
        stride = int(self.model.stride)
        if self.arch == "spade" and self.cfg.use_vae:
            return h, w  # the label map only modulates; the output size comes from the latent grid
        norm = self.cfg.norm if self.arch == "pix2pixhd" else self.cfg.param_free_norm
        least = 2 * stride if norm == "instance" else stride

        def side(n: int) -> int:
            return max(least, -(-n // stride) * stride)

        return side(h), side(w)

    # --- styles -----------------------------------------------------------------------------------

    def check_style(self, style: Any = None, *, image: bool = False) -> None:
        """Raise the one-line InputError `run` would raise for `style` whatever the label map (a style
        the model cannot take, a cluster it does not store, codes of another model); `image=True`
        checks a style photo. The CLI calls it once before a batch instead of failing every file."""
        kind, value = ("image", None) if image else _style_kind(style)
        self._check_style(kind, value)

    def _check_style(self, kind: str, value: Any) -> None:
        if kind not in self.style_kinds and not (kind == "default" and not self.style_kinds):
            raise InputError(self._style_message(kind))
        if kind in ("random", "cluster") and self.arch == "pix2pixhd" and not self.has_clusters:
            raise InputError(f"model '{self.name}' stores no style clusters; run `gancanvas features "
                             "cluster` on its training data first, or give a style image")
        if kind == "cluster" and self.arch == "pix2pixhd":
            most = int(self.model.cluster_counts.max())
            if value >= most:
                raise InputError(f"style cluster {value} is out of range: model '{self.name}' stores at most "
                                 f"{most} centres per class (0..{most - 1})")
        if kind == "codes" and _is_style_codes(value):
            value.check(self.model)

    def _style_message(self, kind: str) -> str:
        """Why this model cannot take a style of `kind` (or, for "default", needs one)."""
        if self.arch == "pix2pixhd":
            why = "a pix2pixHD model trained without instance features (--instance_feat) takes no style"
        elif self.arch == "spade" and not self.cfg.use_vae:
            why = "a SPADE model without the VAE encoder (use_vae) takes no style"
        elif self.arch == "spade":
            why = "SPADE styles are a random z (--style-random --seed N) or a style image (--style-image)"
        else:
            why = ("a SEAN model needs per-region style codes: --styles CODES.safetensors (gancanvas styles "
                   "extract) or --style-image PHOTO (same size as the label map)")
        if kind == "default":
            return f"model '{self.name}' needs a style: {why}"
        what = {"cluster": "a style cluster", "random": "a random style", "zeros": "zero styles",
                "instances": "per-instance styles", "image": "a style image", "codes": "style codes"}[kind]
        return f"model '{self.name}' cannot use {what}: {why}"

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    # Backends: (labels (1, H, W), instances or None, style kind, value, seed, the unpadded label
    # map) -> (image (1, 3, H', W') in [-1, 1], SynthesisResult fields besides the image).

    def _run_pix2pixhd(self, lab, inst, kind, value, seed, labels):
        m = self.model
        if not self.cfg.use_features:
            return m.synthesize(lab, inst), {"style": "none"}
        if kind == "image":
            return m.synthesize(lab, inst, image=value), {"style": "image"}
        style = {"default": None, "random": "random", "zeros": "zeros"}.get(kind, value)
        regions = m.prepare(lab, inst)["instances"]
        feats, picks = m.sample_features(regions, style, seed)
        return m.forward(lab, inst, features=feats), {"style": kind, "picks": picks}

    def _run_spade(self, lab, inst, kind, value, seed, labels):
        m = self.model
        seg = m.semantic_input(lab, inst)
        if not self.cfg.use_vae:
            return m(seg), {"style": "none"}
        g = self._generator(seed)
        if kind == "image":
            return m(seg, image=value, generator=g), {"style": "image"}
        return m(seg, generator=g), {"style": "random"}

    def _run_sean(self, lab, inst, kind, value, seed, labels):
        m = self.model
        seg = m.semantic_input(lab, inst)
        g = self._generator(seed)  # the noise of SEAN's normalisation layers
        if kind == "image":
            return m(seg, image=value, generator=g), {"style": "image"}
        from .styles import StyleCodes

        # StyleCodes were checked against the model in `_check_style`; a file is checked as it loads.
        codes = value if isinstance(value, StyleCodes) else StyleCodes.load(value, m)
        styles, present = codes.to_batch(self.device)
        missing = codes.missing_in(np.unique(labels))
        out = m(seg, styles=styles, present=present, generator=g)
        return out, {"style": "codes", "missing_styles": missing}

    _BACKENDS = {"pix2pixhd": "_run_pix2pixhd", "spade": "_run_spade", "sean": "_run_sean"}


_PIPELINES = {"inpaint": Inpainter, "outpaint": Outpainter, "synthesize": Synthesizer}


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def from_model(model: torch.nn.Module, meta: dict, name: str = "model", device="cpu") -> Pipeline:
    """The pipeline of a built model (its task comes from the registry entry of `meta["arch"]`)."""
    task = registry.get_spec(meta["arch"]).task
    if task not in _PIPELINES:
        raise ModelNotFoundError(f"no inference pipeline for task '{task}' yet")
    return _PIPELINES[task](model, meta, name, device)


def load(name_or_path: str | Path | None = None, *, task: str | None = None, device="cpu") -> Pipeline:
    """Load a built-in name or model file; `None` means the built-in default model of `task`."""
    if name_or_path is None:
        if task is None:
            raise ModelNotFoundError("give a model name or path, or a task to pick its default model")
        name_or_path = registry.default_model(task).name
    path, name = resolve_model_path(name_or_path)
    model, meta = load_model(path, device=device)
    pipe = from_model(model, meta, name, device)
    if task is not None and pipe.task != task:
        raise CheckpointError(f"{name}: this is {_a(pipe.task)} '{pipe.task}' model ({meta['arch']}), "
                              f"not {_a(task)} '{task}' model; use `gancanvas {pipe.task}` with it")
    return pipe


__all__ = ["Inpainter", "InpaintResult", "Outpainter", "OutpaintResult", "Synthesizer", "SynthesisResult",
           "SIDES", "load", "from_model", "resolve_model_path", "MaskError"]
