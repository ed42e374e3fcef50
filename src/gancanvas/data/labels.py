"""Label maps and instance maps: reading them, checking them, and the tensors models build from them.

Shared by every label-to-image family (pix2pixHD, SPADE, SEAN). Conventions (docs/internals.md):
label maps are int64 class ids HxW, instance maps int64 ids HxW; the conversions from files and
API arguments happen here.

Label maps on disk
    - grey PNGs (8 or 16 bit) and indexed (palette) PNGs: the pixel values / palette indices are
      the ids (Cityscapes `*_labelIds.png`, the official pix2pixHD `train_label/`, VOC-style);
    - colour PNGs with a palette: each colour is looked up in a `Palette` (a JSON file, the
      built-in "scenes" palette of `gancanvas.data.synthetic`, the "cityscapes" or the
      "celebamask-hq" colours; `load_class_names` gives the class names of the same sets). A
      colour that is not in the palette is an `InputError` naming a few of them with their pixel
      counts; an indexed PNG is read by colour too when a palette is given.
Instance maps on disk
    16-bit grey PNGs with Cityscapes `instanceIds` semantics (a stuff pixel carries its class id, the
    k-th object of a thing class c carries c * 1000 + k), 8-bit/32-bit grey images, or `.npy` arrays
    of int32/int64 ids (read without pickle). `instance_classes` gives the class of an id.

Tensors (torch, batched)
    `one_hot(labels, label_nc, dontcare)` (scatter into float channels, optional extra don't-care
    channel as in SPADE), `instance_edges(instances)` (the pix2pixHD boundary map), and the checks
    `check_labels` / `check_instances`, so a bad map is one readable line, never an index error from
    inside a network.

Datasets on disk
    `find_label_dataset(root, phase)` pairs label, image and instance files of the official
    pix2pixHD layout (`train_label/`, `train_img/`, `train_inst/`, paired by sorted order as the
    official loader does), of `gancanvas data scenes` output (`labels/`, `images/`, `instances/`,
    paired by name) or of the official SEAN datasets (`{phase}/labels/`, `{phase}/images/`).
"""

from __future__ import annotations

import io as _io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError, InputError
from .io import IMAGE_EXTS, _one_line, _read_bytes

__all__ = [
    "INSTANCE_DIVISOR",
    "CITYSCAPES_PALETTE",
    "CELEBAMASK_HQ_CLASSES",
    "CELEBAMASK_HQ_PALETTE",
    "PALETTE_NAMES",
    "Palette",
    "load_palette",
    "load_class_names",
    "palette_name_for",
    "read_label_map",
    "read_instance_map",
    "coerce_label_map",
    "coerce_instance_map",
    "check_labels",
    "check_instances",
    "instance_classes",
    "instance_edges",
    "one_hot",
    "LabelSample",
    "find_label_dataset",
    "read_label_sample",
]

#: Cityscapes instance ids: object k of thing class c is c * 1000 + k; smaller ids are class ids.
INSTANCE_DIVISOR = 1000

# Cityscapes labelIds 0..33 and their colours (the dataset's published label definitions). Several
# ids share a colour (0-4 are black, 17/18 grey); reading a colour picks the first id that has it.
_CITYSCAPES = (
    ("unlabeled", (0, 0, 0)), ("ego vehicle", (0, 0, 0)), ("rectification border", (0, 0, 0)),
    ("out of roi", (0, 0, 0)), ("static", (0, 0, 0)), ("dynamic", (111, 74, 0)),
    ("ground", (81, 0, 81)), ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)),
    ("parking", (250, 170, 160)), ("rail track", (230, 150, 140)), ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("guard rail", (180, 165, 180)),
    ("bridge", (150, 100, 100)), ("tunnel", (150, 120, 90)), ("pole", (153, 153, 153)),
    ("polegroup", (153, 153, 153)), ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)), ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)), ("caravan", (0, 0, 90)), ("trailer", (0, 0, 110)), ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
)
CITYSCAPES_PALETTE: np.ndarray = np.array([c for _, c in _CITYSCAPES], dtype=np.uint8)
CITYSCAPES_PALETTE.setflags(write=False)

#: The 19 CelebAMask-HQ classes in the order of its label maps (ids 0..18), which SEAN uses (its
#: README and `g_mask.py`): hair is 13. Names as the dataset spells them (eye_g = eyeglasses,
#: ear_r = earring, neck_l = necklace).
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
# The dataset's visualisation colours (its colour masks and SEAN's UI use them), one per class above.
CELEBAMASK_HQ_PALETTE: np.ndarray = np.array([
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
    (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
    (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
], dtype=np.uint8)
CELEBAMASK_HQ_PALETTE.setflags(write=False)

#: The built-in palettes `load_palette` and `load_class_names` know by name.
PALETTE_NAMES = ("scenes", "cityscapes", "celebamask-hq")
_ALIASES = {"celebamask-hq": "celebamask-hq", "celebamaskhq": "celebamask-hq",
            "celebamask_hq": "celebamask-hq", "celeba-hq": "celebamask-hq", "scenes": "scenes",
            "cityscapes": "cityscapes"}

_SHOW = 4  # how many offending values an error message names


def _where(path: Any, default: str) -> str:
    return str(path) if path is not None else default


def _fmt_ids(ids: Sequence[int], counts: Sequence[int] | None = None, n: int = 8) -> str:
    """'3 (1,024 px), 255 (12 px) (+2 more)' - a few values for a one-line message."""
    items = [f"{int(v)}" + (f" ({int(c):,} px)" if counts is not None else "")
             for v, c in zip(ids, counts if counts is not None else [None] * len(ids))]
    extra = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + extra


# --------------------------------------------------------------------------------------------
# Palettes
# --------------------------------------------------------------------------------------------


def _rgb_key(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> int32 keys 0xRRGGBB (one integer compare per pixel)."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _key_text(key: int) -> str:
    return f"({key >> 16 & 255}, {key >> 8 & 255}, {key & 255})"


@dataclass(frozen=True)
class Palette:
    """Colours of label ids: `colors[i]` (uint8 RGB) is the colour of id `ids[i]`.

    `to_ids(rgb)` reads a colour label map (unknown colours: `InputError`), `colorize(labels)`
    draws one. When several ids share a colour, reading gives the first of them.
    """

    colors: np.ndarray  # (K, 3) uint8
    ids: np.ndarray  # (K,) int64
    names: tuple[str, ...] | None = None
    source: str = "palette"

    def __post_init__(self):
        colors = np.asarray(self.colors)
        ids = np.asarray(self.ids)
        if colors.ndim != 2 or colors.shape[1] != 3 or colors.shape[0] != ids.shape[0] or ids.ndim != 1:
            raise InputError(f"{self.source}: a palette needs one RGB colour per id, got colours of shape "
                             f"{colors.shape} for {ids.shape[0] if ids.ndim == 1 else ids.shape} ids")
        if len(np.unique(ids)) != len(ids):
            dup = sorted({int(i) for i in ids if (ids == i).sum() > 1})
            raise InputError(f"{self.source}: label ids listed twice in the palette: {_fmt_ids(dup)}")
        if len(ids) == 0:
            raise InputError(f"{self.source}: empty palette")

    def __len__(self) -> int:
        return len(self.ids)

    def to_ids(self, rgb: np.ndarray, where: str = "label map") -> np.ndarray:
        """uint8 HxWx3 colours -> int64 HxW ids; `InputError` listing colours not in the palette."""
        keys = _rgb_key(np.asarray(rgb)[..., :3])
        pal_keys, first = np.unique(_rgb_key(np.asarray(self.colors)), return_index=True)
        pos = np.searchsorted(pal_keys, keys).clip(0, len(pal_keys) - 1)
        known = pal_keys[pos] == keys
        if not known.all():
            bad, counts = np.unique(keys[~known], return_counts=True)
            order = np.argsort(-counts, kind="stable")
            shown = ", ".join(f"{_key_text(int(bad[i]))} in {int(counts[i]):,} px" for i in order[:_SHOW])
            more = f" (+{len(bad) - _SHOW} more)" if len(bad) > _SHOW else ""
            raise InputError(
                f"{where}: {len(bad)} colour{'s' if len(bad) > 1 else ''} not in the palette ({self.source}, "
                f"{len(self)} colours): {shown}{more}; colour label maps must use exactly the palette "
                "colours (no antialiasing, no JPEG)")
        return np.asarray(self.ids, dtype=np.int64)[first[pos]]

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """int HxW ids -> uint8 HxWx3 colours; `InputError` for ids the palette lacks."""
        labels = np.asarray(labels).astype(np.int64, copy=False)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = np.asarray(self.ids, dtype=np.int64)[order]
        pos = np.searchsorted(sorted_ids, labels).clip(0, len(sorted_ids) - 1)
        known = sorted_ids[pos] == labels
        if not known.all():
            bad, counts = np.unique(labels[~known], return_counts=True)
            raise InputError(f"{self.source}: no colour for label ids {_fmt_ids(bad, counts)}")
        return np.asarray(self.colors, dtype=np.uint8)[order[pos]]


def _parse_colour(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str):
        s = value.strip().lstrip("#")
        if len(s) == 6:
            try:
                return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
            except ValueError:
                pass
        raise InputError(f"{where}: colour {value!r} is not '#rrggbb' or [r, g, b]")
    if (isinstance(value, Sequence) and len(value) == 3
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
                    for v in value)):
        return int(value[0]), int(value[1]), int(value[2])
    raise InputError(f"{where}: colour {value!r} is not [r, g, b] with integers 0..255 or '#rrggbb'")


def _palette_from_json(data: Any, where: str) -> Palette:
    """Accepted JSON layouts (see `load_palette`)."""
    names: list[str] | None = None
    if isinstance(data, Mapping) and "palette" in data:
        # {"palette": [...], "classes": [...]}: a `gancanvas data scenes` manifest.json works as is.
        raw_names = data.get("classes")
        names = [str(n) for n in raw_names] if isinstance(raw_names, list) else None
        data = data["palette"]
    if isinstance(data, Mapping):  # {"7": [128, 64, 128], ...}
        try:
            ids = [int(k) for k in data]
        except ValueError:
            raise InputError(f"{where}: palette object keys must be label ids (integers)") from None
        colors = [_parse_colour(v, f"{where} (id {k})") for k, v in data.items()]
    elif isinstance(data, list) and data and all(isinstance(e, Mapping) for e in data):
        # [{"id": 7, "color": [128, 64, 128], "name": "road"}, ...]
        ids, colors, names = [], [], []
        for i, e in enumerate(data):
            if "id" not in e or not any(k in e for k in ("color", "colour")):
                raise InputError(f"{where}: entry {i} needs 'id' and 'color'")
            ids.append(int(e["id"]))
            colors.append(_parse_colour(e.get("color", e.get("colour")), f"{where} (entry {i})"))
            names.append(str(e.get("name", e["id"])))
    elif isinstance(data, list):  # [[r, g, b], ...]: the index is the id
        ids = list(range(len(data)))
        colors = [_parse_colour(v, f"{where} (id {i})") for i, v in enumerate(data)]
    else:
        raise InputError(f"{where}: not a palette (expected a list of colours, an id -> colour object, "
                         "a list of {id, color} entries or {\"palette\": [...]})")
    if names is not None and len(names) != len(ids):
        names = None
    return Palette(np.array(colors, dtype=np.uint8).reshape(-1, 3), np.array(ids, dtype=np.int64),
                   tuple(names) if names else None, where)


def load_palette(spec: Any) -> Palette:
    """A `Palette` from a name, a file or a value.

    - "scenes": the built-in procedural scenes' colours (`gancanvas.data.synthetic.PALETTE`);
    - "cityscapes": the Cityscapes colours of labelIds 0..33;
    - a path to a JSON file holding a list of colours (`[[r, g, b], ...]` or `["#rrggbb", ...]`,
      the index is the id), an object `{"<id>": colour}`, a list `[{"id", "color", "name"}]`, or
      `{"palette": [...], "classes": [...]}` (a scenes `manifest.json` is one);
    - a (K, 3) uint8 array or a list (index = id), a dict id -> colour, or a `Palette`.
    """
    if isinstance(spec, Palette):
        return spec
    if isinstance(spec, str) and spec.lower() in _ALIASES:
        return _named_palette(_ALIASES[spec.lower()])
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if not p.is_file():
            raise InputError(f"{p}: palette file not found (give a JSON file or one of "
                             f"{', '.join(PALETTE_NAMES)})")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: not a readable JSON palette ({_one_line(exc)})") from None
        return _palette_from_json(data, str(p))
    if isinstance(spec, np.ndarray):
        if spec.ndim != 2 or spec.shape[1] != 3:
            raise InputError(f"palette array must be K x 3 (RGB), got shape {spec.shape}")
        return Palette(spec.astype(np.uint8), np.arange(len(spec), dtype=np.int64), None, "palette array")
    if isinstance(spec, (list, tuple, Mapping)):
        return _palette_from_json(list(spec) if isinstance(spec, tuple) else spec, "palette")
    raise InputError(f"palette must be one of {', '.join(PALETTE_NAMES)}, a JSON file or a list of colours, "
                     f"got {type(spec).__name__}")


def _named_palette(name: str) -> Palette:
    if name == "scenes":
        from .synthetic import CLASSES, PALETTE

        return Palette(np.asarray(PALETTE), np.arange(len(PALETTE), dtype=np.int64), tuple(CLASSES), "scenes")
    if name == "cityscapes":
        return Palette(CITYSCAPES_PALETTE, np.arange(len(CITYSCAPES_PALETTE), dtype=np.int64),
                       tuple(n for n, _ in _CITYSCAPES), "cityscapes")
    return Palette(CELEBAMASK_HQ_PALETTE, np.arange(len(CELEBAMASK_HQ_PALETTE), dtype=np.int64),
                   CELEBAMASK_HQ_CLASSES, "celebamask-hq")


def palette_name_for(names: Sequence[str] | None) -> str | None:
    """The built-in palette whose class names are exactly `names` ("celebamask-hq", ...), or None."""
    if not names:
        return None
    for name in PALETTE_NAMES:
        if tuple(names) == _named_palette(name).names:
            return name
    return None


def load_class_names(spec: Any, n: int | None = None) -> tuple[str, ...]:
    """Class names (index = label id) from a name or a file; `n`: the count they must have.

    - "celebamask-hq" (19: background, skin, ..., hair (13), ..., cloth), "scenes" (the built-in
      procedural scenes, 10), "cityscapes" (labelIds 0..33);
    - a text file with one name per line, or a JSON file: a list of names, or a palette with names
      (`[{"id", "color", "name"}]` or `{"palette": [...], "classes": [...]}`);
    - a list of names.

    InputError (one line) for an unreadable file, duplicate or empty names, or a count other than `n`.
    """
    where = "class names"
    if isinstance(spec, str) and spec.lower() in _ALIASES:
        names, where = _named_palette(_ALIASES[spec.lower()]).names, spec
    elif isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        where = str(p)
        if not p.is_file():
            raise InputError(f"{p}: class-name file not found (give a text or JSON file, or one of "
                             f"{', '.join(PALETTE_NAMES)})")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: cannot read the class names ({_one_line(exc)})") from None
        if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            if isinstance(data, list) and all(isinstance(x, str) for x in data):
                names = tuple(data)
            else:
                pal = _palette_from_json(data, where)
                if pal.names is None:
                    raise InputError(f"{p}: a palette without class names ('name' per entry or 'classes')")
                order = np.argsort(pal.ids, kind="stable")
                if pal.ids[order].tolist() != list(range(len(pal))):
                    raise InputError(f"{p}: the palette's ids must be 0..{len(pal) - 1} to name classes")
                names = tuple(pal.names[i] for i in order)
        else:
            names = tuple(line.strip() for line in text.splitlines() if line.strip())
    elif isinstance(spec, (list, tuple)) and all(isinstance(x, str) for x in spec):
        names = tuple(spec)
    else:
        raise InputError(f"class names must be one of {', '.join(PALETTE_NAMES)}, a file or a list of names, "
                         f"got {type(spec).__name__}")
    names = tuple(str(x).strip() for x in names)
    if not names or any(not x for x in names):
        raise InputError(f"{where}: empty class names")
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise InputError(f"{where}: class names listed twice: {', '.join(dup[:_SHOW])}")
    if n is not None and len(names) != n:
        raise InputError(f"{where}: {len(names)} class names for {n} classes (label_nc)")
    return names


# --------------------------------------------------------------------------------------------
# Reading label and instance maps
# --------------------------------------------------------------------------------------------


def _open(path: Path) -> Image.Image:
    """Decode an image file fully (so damage is reported here, with the path), EXIF orientation applied."""
    data = _read_bytes(path)
    try:
        img = Image.open(_io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file in a supported format (PNG, BMP, TIFF, ...)") \
            from None
    except Exception as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image ({_one_line(exc)})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not make the pixels unreadable
        pass
    return img


def _integral(arr: np.ndarray, where: str, what: str) -> np.ndarray:
    """A numeric array of ids -> int64; floats must hold whole numbers, bools are refused."""
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise InputError(f"{where}: {what} must hold whole-number ids, got non-integer float values")
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{where}: {what} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _grey_or_colour(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """HxW / HxWx{1,2,3,4} -> (HxW grey, False) or (HxWx3 colour, True); alpha dropped, and an
    RGB image whose three channels are equal is grey (a grey id map saved as RGB)."""
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            return arr[..., 0], False
        return arr, True
    return arr, False


def _pil_ids(img: Image.Image, palette: Palette | None, where: str, what: str) -> np.ndarray:
    """A decoded image -> int64 ids, the rules of the module doc."""
    mode = img.mode
    if mode == "P" or mode == "PA":
        if palette is None:
            return np.asarray(img.convert("P") if mode == "PA" else img).astype(np.int64)
        img = img.convert("RGB")
        mode = "RGB"
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.int64)  # I;16B comes big-endian: astype makes it native
    if mode in ("1", "L", "I", "F", "LA", "RGB", "RGBA"):
        arr = np.asarray(img.convert("L") if mode == "LA" else img)
    else:
        try:
            arr = np.asarray(img.convert("RGB"))
        except (ValueError, OSError) as exc:
            raise ImageReadError(f"{where}: unsupported colour mode {mode!r} ({_one_line(exc)})") from None
    return _array_ids(arr, palette, where, what)


def _array_ids(arr: np.ndarray, palette: Palette | None, where: str, what: str) -> np.ndarray:
    if arr.ndim not in (2, 3) or 0 in arr.shape or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise InputError(f"{where}: expected an HxW {what} (or HxWx3 colours), got shape {arr.shape}")
    grey, colour = _grey_or_colour(arr)
    if colour:
        if palette is None:
            raise InputError(f"{where}: a colour {what} needs a palette to turn colours into ids "
                             "(--palette FILE.json | scenes | cityscapes), or give grey/indexed ids")
        if grey.dtype != np.uint8:
            raise InputError(f"{where}: colour {what} must be 8-bit RGB, got {grey.dtype}")
        return palette.to_ids(grey, where)
    # Grey ids pass through unchanged, with or without a palette.
    return _integral(grey, where, what)


def read_label_map(path: str | os.PathLike, palette: Any = None) -> np.ndarray:
    """A label map file -> int64 HxW ids (grey / indexed ids, or colours through `palette`).

    `palette`: None, or anything `load_palette` takes. Without a palette a colour image is an
    `InputError` (an RGB file whose channels are all equal is read as grey ids).
    """
    p = Path(path)
    pal = load_palette(palette) if palette is not None else None
    return _pil_ids(_open(p), pal, str(p), "label map")


def read_instance_map(path: str | os.PathLike) -> np.ndarray:
    """An instance map file -> int64 HxW ids (16-bit / 8-bit / 32-bit grey image, or `.npy` ints).

    Colour images are refused (instance ids are one integer per pixel); negative ids are refused.
    """
    p = Path(path)
    where = str(p)
    if p.suffix.lower() == ".npy":
        _read_bytes(p)  # missing / empty / unreadable: the usual one-line messages
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{where}: not a plain numeric .npy array ({_one_line(exc)})") from None
        except OSError as exc:
            raise InputError(f"{where}: cannot read the .npy file ({_one_line(exc)})") from None
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2 or 0 in arr.shape:
            raise InputError(f"{where}: instance map must be a 2-D array of ids, got shape {arr.shape}")
        ids = _integral(arr, where, "instance map")
    else:
        img = _open(p)
        if img.mode in ("RGB", "RGBA") and not _is_grey(img):
            raise InputError(f"{where}: instance map must be one integer id per pixel (a 16-bit grey PNG "
                             "such as Cityscapes *_instanceIds.png), got a colour image")
        ids = _pil_ids(img, None, where, "instance map")
    return _check_nonnegative(ids, where)


def _is_grey(img: Image.Image) -> bool:
    arr = np.asarray(img)[..., :3]
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def _check_nonnegative(ids: np.ndarray, where: str) -> np.ndarray:
    if ids.size and ids.min() < 0:
        neg = np.unique(ids[ids < 0])
        raise InputError(f"{where}: instance ids must be >= 0, found {_fmt_ids(neg)}")
    return ids


def _as_numpy(x: Any, where: str) -> np.ndarray | None:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    return None


def coerce_label_map(x: Any, palette: Any = None, what: str = "labels") -> np.ndarray:
    """An API label-map argument -> int64 HxW: a path, a PIL image (indexed: its indices), a numpy
    array or tensor of ids (HxW, 1xHxW) or of colours (HxWx3 uint8, with `palette`)."""
    pal = load_palette(palette) if palette is not None else None
    if isinstance(x, (str, os.PathLike)):
        return read_label_map(x, pal)
    if isinstance(x, Image.Image):
        try:
            x.load()
        except Exception as exc:
            raise InputError(f"{what}: cannot decode the PIL image ({_one_line(exc)})") from None
        return _pil_ids(x, pal, what, "label map")
    arr = _as_numpy(x, what)
    if arr is None:
        raise InputError(f"{what}: expected a path, a PIL image, a numpy array or a tensor, "
                         f"got {type(x).__name__}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    return _array_ids(arr, pal, what, "label map")


def coerce_instance_map(x: Any, what: str = "instances") -> np.ndarray:
    """An API instance-map argument -> int64 HxW (a path, PIL image, numpy array or tensor of ids)."""
    if isinstance(x, (str, os.PathLike)):
        return read_instance_map(x)
    if isinstance(x, Image.Image):
        x.load()
        if x.mode in ("RGB", "RGBA") and not _is_grey(x):
            raise InputError(f"{what}: instance map must be one integer id per pixel, got a colour image")
        return _check_nonnegative(_pil_ids(x, None, what, "instance map"), what)
    arr = _as_numpy(x, what)
    if arr is None:
        raise InputError(f"{what}: expected a path, a PIL image, a numpy array or a tensor, "
                         f"got {type(x).__name__}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{what}: instance map must be HxW ids, got shape {arr.shape}")
    return _check_nonnegative(_integral(arr, what, "instance map"), what)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_labels(labels: np.ndarray | torch.Tensor, label_nc: int, dontcare: int | None = None,
                 path: Any = None) -> None:
    """`InputError` naming the ids outside [0, label_nc) (other than `dontcare`) and the valid range.

    Works on numpy arrays and tensors of any shape; cheap (one comparison pass) when all is well.
    """
    where = _where(path, "label map")
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() and bool((labels != labels.round()).any()):
            raise InputError(f"{where}: label ids must be whole numbers, got non-integer values")
        bad_mask = (labels < 0) | (labels >= label_nc)
        if dontcare is not None:
            bad_mask &= labels != dontcare
        if not bool(bad_mask.any()):
            return
        bad, counts = torch.unique(labels[bad_mask].long(), return_counts=True)
        bad, counts = bad.cpu().numpy(), counts.cpu().numpy()
    else:
        arr = np.asarray(labels)
        bad_mask = (arr < 0) | (arr >= label_nc)
        if dontcare is not None:
            bad_mask &= arr != dontcare
        if not bad_mask.any():
            return
        bad, counts = np.unique(arr[bad_mask].astype(np.int64), return_counts=True)
    extra = f", or {dontcare} for don't-care" if dontcare is not None else ""
    hint = ""
    if dontcare is None and 255 in set(bad.tolist()):
        hint = "; 255 usually marks 'ignore' pixels: map them to a class first"
    raise InputError(f"{where}: label ids {_fmt_ids(bad, counts)} are outside this model's range "
                     f"0..{label_nc - 1} (label_nc {label_nc}{extra}){hint}")


def _hw(x: Any) -> tuple[int, int]:
    shape = tuple(x.shape) if hasattr(x, "shape") else tuple(np.asarray(x).shape)
    return int(shape[-2]), int(shape[-1])


def check_instances(instances: Any, labels: Any, path: Any = None, labels_path: Any = None) -> None:
    """`InputError` when an instance map's size (last two dims) differs from the label map's."""
    (ih, iw), (lh, lw) = _hw(instances), _hw(labels)
    if (ih, iw) != (lh, lw):
        lab = f" {labels_path}" if labels_path is not None else ""
        raise InputError(f"{_where(path, 'instance map')}: instance map is {ih}x{iw} (HxW) but the label "
                         f"map{lab} is {lh}x{lw}; they must be the same size")


def instance_classes(instances: np.ndarray | torch.Tensor, divisor: int = INSTANCE_DIVISOR):
    """Class id of each instance id (Cityscapes rule): `id` if `id < divisor`, else `id // divisor`."""
    if isinstance(instances, torch.Tensor):
        return torch.where(instances < divisor, instances,
                           torch.div(instances, divisor, rounding_mode="floor"))
    arr = np.asarray(instances)
    return np.where(arr < divisor, arr, arr // divisor)


# --------------------------------------------------------------------------------------------
# Tensors for the networks
# --------------------------------------------------------------------------------------------


def instance_edges(instances: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The instance boundary map: 1 where a pixel's id differs from its left, right, upper or lower
    neighbour (both sides of a boundary are marked), else 0.

    Any shape (..., H, W) (e.g. N1HW or NHW); the result has the same shape and `dtype`.
    """
    t = _as_tensor(instances)
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.to(dtype)


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    # Integer numpy maps (uint8 / uint16 / int32) become int64 first: torch supports few ops on uint16.
    if isinstance(x, np.ndarray) and x.dtype.kind in "ui":
        x = x.astype(np.int64)
    return torch.as_tensor(x)


def _ids_tensor(labels: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    t = _as_tensor(labels)
    if t.dtype == torch.bool:
        t = t.long()
    if t.is_floating_point():
        # The official loaders hand over float ids (ToTensor() * 255); they must be whole numbers.
        if bool((t != t.round()).any()):
            raise InputError(f"{what}: label ids must be whole numbers, got non-integer values")
        t = t.round().long()
    elif t.is_complex():
        raise InputError(f"{what}: label ids must be integers, got {t.dtype}")
    return t.long()


def one_hot(labels: torch.Tensor | np.ndarray, label_nc: int, dontcare: int | None = None, *,
            dtype: torch.dtype = torch.float32, path: Any = None) -> torch.Tensor:
    """Label ids -> one-hot channels: (N, H, W) or (N, 1, H, W) -> (N, C, H, W); (H, W) -> (C, H, W).

    C = label_nc, plus one more channel (index label_nc) for `dontcare` pixels when `dontcare` is
    set (SPADE's --contain_dontcare_label, where it is 255). Ids outside the range are an
    `InputError` (`check_labels`), never an index error from the scatter.
    """
    if dontcare is not None and 0 <= dontcare < label_nc:
        raise ValueError(f"dontcare ({dontcare}) must lie outside the class ids 0..{label_nc - 1}")
    t = _ids_tensor(labels, _where(path, "label map"))
    if t.dim() == 4:
        if t.shape[1] != 1:
            raise InputError(f"{_where(path, 'label map')}: expected ids N x 1 x H x W, got {tuple(t.shape)}")
        t = t[:, 0]
    squeeze = t.dim() == 2
    if squeeze:
        t = t[None]
    if t.dim() != 3:
        raise InputError(f"{_where(path, 'label map')}: expected ids H x W, N x H x W or N x 1 x H x W, "
                         f"got {tuple(t.shape)}")
    check_labels(t, label_nc, dontcare, path)
    channels = label_nc + (1 if dontcare is not None else 0)
    if dontcare is not None:
        t = torch.where(t == dontcare, torch.full_like(t, label_nc), t)
    out = torch.zeros((t.shape[0], channels, t.shape[1], t.shape[2]), dtype=dtype, device=t.device)
    out.scatter_(1, t.unsqueeze(1), 1.0)
    return out[0] if squeeze else out


# --------------------------------------------------------------------------------------------
# Paired label / image / instance folders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSample:
    """One paired sample on disk: the label map, the photo (None at test time) and the instance map."""

    name: str
    labels: Path
    image: Path | None = None
    instances: Path | None = None


def _files(d: Path, exts: Iterable[str]) -> list[Path]:
    exts = tuple(exts)
    try:
        entries = sorted(e.name for e in os.scandir(d) if e.is_file() and not e.name.startswith("."))
    except OSError as exc:
        raise InputError(f"{d}: cannot list the folder ({_one_line(exc)})") from None
    return [d / n for n in entries if os.path.splitext(n)[1].lower() in exts]


def find_label_dataset(root: str | os.PathLike, phase: str = "train", *, need_images: bool = True,
                       instances: bool | None = None) -> list[LabelSample]:
    """The paired samples under `root`, in either layout (see the module doc).

    Official layout: `{phase}_label/`, `{phase}_img/`, `{phase}_inst/`, paired by sorted file
    order like the official loader (Cityscapes names differ by suffix), so the counts must agree.
    Scenes layout: `labels/`, `images/`, `instances/`, paired by file name; the official SEAN
    layout `{phase}/labels/`, `{phase}/images/` likewise. `need_images`: the
    photos must exist (training, feature encoding). `instances`: True = required, False = not
    used, None = used when the folder exists.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    inst_exts = IMAGE_EXTS + (".npy",)
    if (root / f"{phase}_label").is_dir():
        dirs = (root / f"{phase}_label", root / f"{phase}_img", root / f"{phase}_inst")
        by_name = False
    elif (root / "labels").is_dir():
        dirs = (root / "labels", root / "images", root / "instances")
        by_name = True
    elif (root / phase / "labels").is_dir():  # the official SEAN layout: CelebA-HQ/{train,test}/labels
        dirs = (root / phase / "labels", root / phase / "images", root / phase / "instances")
        by_name = True
    else:
        raise InputError(f"{root}: no label maps found: expected {phase}_label/ (+ {phase}_img/, "
                         f"{phase}_inst/; the official pix2pixHD layout), labels/ (+ images/, "
                         f"instances/; gancanvas data scenes) or {phase}/labels/ (+ {phase}/images/; SEAN)")
    label_dir, image_dir, inst_dir = dirs
    labels = _files(label_dir, IMAGE_EXTS)
    if not labels:
        raise InputError(f"{label_dir}: no label map files")
    use_inst = inst_dir.is_dir() if instances is None else instances
    if use_inst and not inst_dir.is_dir():
        raise InputError(f"{inst_dir}: instance map folder missing (the model uses instance maps)")
    if need_images and not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder missing")
    images = _files(image_dir, IMAGE_EXTS) if need_images else []
    insts = _files(inst_dir, inst_exts) if use_inst else []

    def pair(others: list[Path], d: Path, what: str) -> list[Path]:
        if by_name:
            stems = {p.stem: p for p in others}
            missing = [p.name for p in labels if p.stem not in stems]
            if missing:
                raise InputError(f"{d}: no {what} for {len(missing)} label maps: {', '.join(missing[:_SHOW])}"
                                 + (f" (+{len(missing) - _SHOW} more)" if len(missing) > _SHOW else ""))
            return [stems[p.stem] for p in labels]
        if len(others) != len(labels):
            raise InputError(f"{d}: {len(others)} {what} files for {len(labels)} label maps in {label_dir} "
                             "(the official layout pairs files by sorted order, so the counts must match)")
        return others

    image_paths = pair(images, image_dir, "image") if need_images else [None] * len(labels)
    inst_paths = pair(insts, inst_dir, "instance map") if use_inst else [None] * len(labels)
    return [LabelSample(p.stem, p, i, s) for p, i, s in zip(labels, image_paths, inst_paths)]


def read_label_sample(sample: LabelSample, palette: Any = None) -> dict[str, np.ndarray]:
    """Read one sample: `labels` int64 HxW, `instances` int64 HxW (if any), `image` uint8 HxWx3 (if
    any); sizes are checked against the label map."""
    from .io import read_image

    out = {"labels": read_label_map(sample.labels, palette)}
    if sample.instances is not None:
        out["instances"] = read_instance_map(sample.instances)
        check_instances(out["instances"], out["labels"], sample.instances, sample.labels)
    if sample.image is not None:
        out["image"] = read_image(sample.image)
        if out["image"].shape[:2] != out["labels"].shape:
            h, w = out["image"].shape[:2]
            raise InputError(f"{sample.image}: image is {h}x{w} but its label map {sample.labels} is "
                             f"{out['labels'].shape[0]}x{out['labels'].shape[1]}")
    return out
