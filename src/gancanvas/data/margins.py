"""Outpainting margins: parsing, validation, the canvas and mask, and training margins.

`Margins(top, left, bottom, right)` are pixel counts added around a known image of h x w; the
canvas is (h + top + bottom) x (w + left + right). On the command line and in the API a margin
is an int (pixels) or a string: "64", "64px" or "50%" (a percentage of the image's height for
top/bottom and of its width for left/right, rounded half up).

Validation (`parse_margins`, `check_margins`) raises one-line InputErrors for negative margins,
all four zero, and a canvas above a size limit; model-specific limits (how far a model expands,
the official SRN integer-ratio rule) are checked by the model (`SRNGenerator.check_margins`).

Training (`random_margins`) follows the official SRN `random_mask`: the known box of a fixed size
sits at a random position in the canvas, top uniform in [min_top, H - h - min_top] inclusive
(likewise left), so the margins are (t, l, H - h - t, W - w - l).

Evaluation (`write_margin_set`, `read_margin_set`; `gancanvas data margins`): a fixed, versioned set
of known-box positions on a canvas, mask PNGs plus a manifest, for `eval.evaluate_outpaint`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError

__all__ = ["Margins", "parse_margin", "parse_margins", "check_margins", "outpaint_canvas", "crop_known",
           "random_margins", "MAX_CANVAS_SIDE", "write_margin_set", "read_margin_set", "margin_set_entry",
           "MARGIN_SET_FORMAT", "MARGIN_SET_VERSION", "MARGIN_SET_BINS"]

#: Default cap on a canvas side (pixels): beyond it memory, not the margins, is the problem.
MAX_CANVAS_SIDE = 16384

_SIDES = ("top", "left", "bottom", "right")
_VALUE = re.compile(r"^\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*(%|px)?\s*$")


class Margins(NamedTuple):
    """Pixels to add on each side of the known image (a tuple, so `(t, l, b, r)` works as well)."""

    top: int = 0
    left: int = 0
    bottom: int = 0
    right: int = 0

    def canvas_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the canvas around an h x w image."""
        return height + self.top + self.bottom, width + self.left + self.right

    def known_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the known image on the canvas."""
        return self.top, self.left, height, width

    def __str__(self) -> str:
        return f"top={self.top} left={self.left} bottom={self.bottom} right={self.right}"


def parse_margin(value: int | float | str | None, length: int, side: str = "margin") -> int:
    """One margin in pixels: an int, or "64" / "64px" / "50%" (percent of `length`, rounded half up).

    `side` names the margin in errors (e.g. "--top"). None counts as 0. Negative values are
    returned as they are (check_margins reports them with the others).
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InputError(f"{side}: expected pixels or a percentage, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{side}: margins are whole pixels (or a percentage like '25%'), got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise InputError(f"{side}: expected pixels or a percentage, got {value!r}")
    m = _VALUE.match(value)
    if m is None:
        raise InputError(f"{side}: cannot read {value!r}; give pixels (64) or a percentage of the "
                         "image (50%)")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "%":
        px = abs(number) * length / 100.0
        return int(math.copysign(math.floor(px + 0.5), number))  # half up, sign kept for check_margins
    if number != int(number):
        raise InputError(f"{side}: margins are whole pixels (or a percentage like '25%'), got {value!r}")
    return int(number)


def check_margins(margins: Margins | Sequence[int], size: Sequence[int] | None = None, *,
                  max_side: int | None = MAX_CANVAS_SIDE, names: Sequence[str] = _SIDES) -> Margins:
    """Validate margins (for a known image of `size` = (h, w) if given); returns them as Margins.

    One-line InputError for: a negative margin, all four zero, a canvas side above `max_side`.
    """
    m = Margins(*(int(v) for v in margins))
    neg = [f"{n}={v}" for n, v in zip(names, m) if v < 0]
    if neg:
        raise InputError(f"margins must be >= 0 pixels, got {', '.join(neg)}")
    if not any(m):
        raise InputError(f"all four margins are 0: nothing to outpaint; give at least one of "
                         f"{', '.join(names)}")
    if size is not None and max_side is not None:
        big_h, big_w = m.canvas_size(int(size[0]), int(size[1]))
        if max(big_h, big_w) > max_side:
            raise InputError(f"margins too large: the canvas would be {big_h}x{big_w} pixels, more than "
                             f"{max_side} on a side ({m})")
    return m


def parse_margins(top=None, left=None, bottom=None, right=None, *, size: Sequence[int],
                  max_side: int | None = MAX_CANVAS_SIDE, names: Sequence[str] = _SIDES) -> Margins:
    """Margins from four values (ints or "64" / "64px" / "50%" strings) for an image of size (h, w).

    Percentages of top/bottom are taken of h, of left/right of w. `names` label the sides in
    errors (the CLI passes "--top", ...). Validated with `check_margins`.
    """
    h, w = int(size[0]), int(size[1])
    lengths = (h, w, h, w)
    vals = [parse_margin(v, n, side) for v, n, side in zip((top, left, bottom, right), lengths, names)]
    return check_margins(Margins(*vals), (h, w), max_side=max_side, names=names)


def _is_numpy_image(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim in (2, 3)


def outpaint_canvas(image, margins: Margins | Sequence[int], fill: float = 0.0):
    """The known image placed on the canvas, and the canvas mask (1 = to predict).

    torch N3hw (or 3hw) -> (canvas N3HW with `fill` outside, mask N1HW float, 1 = outside);
    numpy hxwxC or hxw -> (canvas HxWxC of the same dtype, mask HxW float32).
    In [-1, 1] images `fill=0` is the official mid-grey.
    """
    top, left, bottom, right = check_margins(margins, max_side=None)
    if isinstance(image, torch.Tensor):
        squeeze = image.dim() == 3
        x = image[None] if squeeze else image
        if x.dim() != 4:
            raise InputError(f"outpaint_canvas: expected a N x C x h x w tensor, got {tuple(image.shape)}")
        n, _, h, w = x.shape
        canvas = torch.nn.functional.pad(x, (left, right, top, bottom), value=fill)
        mask = torch.ones((n, 1, h + top + bottom, w + left + right), dtype=canvas.dtype if
                          canvas.is_floating_point() else torch.float32, device=x.device)
        mask[:, :, top:top + h, left:left + w] = 0
        return (canvas[0], mask[0]) if squeeze else (canvas, mask)
    if _is_numpy_image(image):
        h, w = image.shape[:2]
        pad = [(top, bottom), (left, right)] + ([(0, 0)] if image.ndim == 3 else [])
        canvas = np.pad(image, pad, mode="constant", constant_values=fill)
        mask = np.ones((h + top + bottom, w + left + right), np.float32)
        mask[top:top + h, left:left + w] = 0
        return canvas, mask
    raise InputError(f"outpaint_canvas: expected a torch tensor or a numpy image, got {type(image).__name__}")


def crop_known(canvas, margins: Margins | Sequence[int]):
    """The known part of a full canvas (training: the FEN input is the crop of the ground truth).

    torch (..., H, W) or numpy HxW[xC]."""
    top, left, bottom, right = Margins(*(int(v) for v in margins))
    if isinstance(canvas, torch.Tensor):
        big_h, big_w = canvas.shape[-2:]
        out = canvas[..., top:big_h - bottom, left:big_w - right]
        hw = out.shape[-2:]
    else:
        big_h, big_w = canvas.shape[:2]
        out = canvas[top:big_h - bottom, left:big_w - right]
        hw = out.shape[:2]
    if min(hw) < 1 or min(top, left, bottom, right) < 0:
        raise InputError(f"margins {Margins(top, left, bottom, right)} leave nothing of a "
                         f"{big_h}x{big_w} canvas")
    return out


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an int or (height, width), got {value!r}") from None
    return int(a), int(b)


def random_margins(canvas_size: int | Sequence[int], known_size: int | Sequence[int],
                   rng: np.random.Generator, min_margin: int | Sequence[int] = 0) -> Margins:
    """Training margins as the official SRN `random_mask`: the known box at a random position.

    `canvas_size` (H, W), `known_size` (h, w) (the official 256x256 and 128x128), `min_margin`
    (top/left lower bounds, the official `--margins`). top is uniform in [min_top, H - h - min_top]
    (inclusive, as `maxval + 1` there), likewise left.
    """
    big_h, big_w = _pair(canvas_size, "canvas_size")
    h, w = _pair(known_size, "known_size")
    mt, ml = _pair(min_margin, "min_margin")
    fits = 1 <= h <= big_h - 2 * mt and 1 <= w <= big_w - 2 * ml and mt >= 0 and ml >= 0
    if not fits or (h, w) == (big_h, big_w):
        raise InputError(f"a {h}x{w} known box with minimum margins {mt},{ml} does not fit a "
                         f"{big_h}x{big_w} canvas with something left to predict")
    top = int(rng.integers(mt, big_h - h - mt + 1))
    left = int(rng.integers(ml, big_w - w - ml + 1))
    return Margins(top, left, big_h - h - top, big_w - w - left)


# ----------------------------------------------------------------------------- fixed margin sets

MARGIN_SET_FORMAT = "gancanvas-margin-set"
# Bump when the sampling changes: a set written by another version places other boxes.
MARGIN_SET_VERSION = 1
#: Bin labels of a margin set: how many sides of the canvas get a margin (1 to 4).
MARGIN_SET_BINS = ("1 side", "2 sides", "3 sides", "4 sides")
_SET_STREAM = 0x5E7  # mixed into the seed: the set's draws are independent of training's


def _set_pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    try:
        return _pair(value, what)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an int or (height, width), got {value!r}") from None


def margin_set_entry(size: int | Sequence[int], known: int | Sequence[int], seed: int, index: int,
                     mode: str = "random", sides: Sequence[str] = _SIDES,
                     min_margin: int | Sequence[int] = 0) -> Margins:
    """Margins of entry `index` of the margin set (size, known, seed, mode, sides, min_margin).

    Drawn by `outpaint_datasets.sample_margins` from `numpy.random.default_rng([seed, 0x5E7,
    index])`: entry j depends only on the settings and j, so a set of 100 is the first 100 entries
    of the set of 200 with the same settings.
    """
    from .outpaint_datasets import sample_margins

    rng = np.random.default_rng([int(seed), _SET_STREAM, int(index)])
    return sample_margins(size, known, rng, mode, sides, min_margin)


def write_margin_set(out_dir, *, size: int | Sequence[int], known: int | Sequence[int], count: int,
                     seed: int, mode: str = "random", sides: Sequence[str] = _SIDES,
                     min_margin: int | Sequence[int] = 0, overwrite: bool = False) -> dict:
    """Write a fixed, versioned outpainting evaluation set and return its manifest.

    Entry j places a `known` (h, w) box on a `size` (H, W) canvas at the position
    `margin_set_entry(size, known, seed, j, mode, sides, min_margin)` ("random": the official SRN
    `random_mask` position, uniform per axis; "one-sided": the box touches one edge per axis).
    Files: ``00000.png``, ... the canvas masks (uint8, 255 = unknown = the margins, 0 = the known
    box) and ``manifest.json`` (format, version, size, known, count, seed, mode, sides,
    min_margin, bins, library versions, and per entry ``file``, ``margins`` [top, left, bottom,
    right], ``area_pct`` (unknown area in percent of the canvas), ``bin`` (index into
    `MARGIN_SET_BINS`: the number of sides with a margin, minus 1) and ``sha256``). Same arguments
    -> byte-identical files. Atomic writes, manifest last; writing the same set again rewrites it,
    a different set in the folder is an InputError unless ``overwrite=True``.
    """
    import io as _io
    from pathlib import Path

    from PIL import Image

    from ..errors import ConfigError
    from . import filesets
    from .outpaint_datasets import MARGIN_MODES, check_margin_sampling

    big_h, big_w = _set_pair(size, "size")
    h, w = _set_pair(known, "known")
    mt, ml = _set_pair(min_margin, "min_margin")
    if int(count) < 1:
        raise InputError(f"margin set count must be >= 1, got {count}")
    if int(seed) < 0:
        raise InputError(f"margin set seed must be >= 0, got {seed}")
    if mode not in MARGIN_MODES:
        raise InputError(f"margin mode must be one of {', '.join(MARGIN_MODES)}, got '{mode}'")
    try:
        check_margin_sampling((big_h, big_w), (h, w), mode, list(sides), (mt, ml))
    except ConfigError as err:
        raise InputError(str(err)) from None
    out = Path(out_dir)
    identity = {"format": MARGIN_SET_FORMAT, "version": MARGIN_SET_VERSION, "size": [big_h, big_w],
                "known": [h, w], "count": int(count), "seed": int(seed), "mode": mode,
                "sides": list(sides), "min_margin": [mt, ml], "bins": list(MARGIN_SET_BINS)}
    old_files = filesets.open_set(out, identity, "margin set", overwrite)
    filesets.begin_set(out)
    entries = []
    for j in range(int(count)):
        m = margin_set_entry((big_h, big_w), (h, w), seed, j, mode, sides, (mt, ml))
        mask = np.full((big_h, big_w), 255, np.uint8)
        mask[m.top:m.top + h, m.left:m.left + w] = 0
        bio = _io.BytesIO()
        Image.fromarray(mask).save(bio, format="PNG")
        n_sides = sum(1 for v in m if v > 0)
        entries.append({**filesets.write_file(out, j, bio.getvalue()), "margins": list(m), "bin": n_sides - 1,
                        "area_pct": round(100.0 * (1 - h * w / (big_h * big_w)), 4)})
    return filesets.finish_set(out, identity, entries, old_files)


def read_margin_set(directory, *, verify: bool = False) -> dict:
    """Read and validate a margin set's ``manifest.json`` (see `write_margin_set`); returns it.

    One-line InputError for a missing or corrupt manifest, another format or version, a listed
    file that is missing, or margins that do not place the known box on the canvas; with
    ``verify=True`` also each mask file's sha256.
    """
    from pathlib import Path

    from . import filesets

    d = Path(directory)
    man, mp = filesets.read_manifest(
        d, fmt=MARGIN_SET_FORMAT, version=MARGIN_SET_VERSION,
        keys=("version", "size", "known", "count", "seed", "bins", "files"), what="margin set",
        how_to_make="write one with `gancanvas data margins`",
        hints={"gancanvas-mask-set": " (a mask set: evaluate inpainting models with --masks)"})
    try:
        big_h, big_w = (int(v) for v in man["size"])
        h, w = (int(v) for v in man["known"])
        files = list(man["files"])
    except (TypeError, ValueError):
        raise InputError(f"{mp}: corrupt manifest (size, known or files)") from None
    if len(files) != man["count"]:
        raise InputError(f"{mp}: corrupt manifest (count is {man['count']} but files lists {len(files)})")
    for i, e in enumerate(files):
        try:
            m = Margins(*(int(v) for v in e["margins"]))
            if "file" not in e or not 0 <= int(e["bin"]) < len(man["bins"]):
                raise ValueError
        except (TypeError, ValueError, KeyError):
            raise InputError(f"{mp}: corrupt manifest (entry {i} needs file, margins and bin)") from None
        if min(m) < 0 or m.canvas_size(h, w) != (big_h, big_w):
            raise InputError(f"{mp}: corrupt manifest (entry {i}: margins {tuple(m)} do not place the "
                             f"{h}x{w} known box on the {big_h}x{big_w} canvas)")
        filesets.check_listed_file(d, mp, i, e, verify)
    return man
