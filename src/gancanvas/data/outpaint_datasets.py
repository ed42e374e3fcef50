"""Outpainting datasets (SRN): a canvas-sized crop of an image plus margins, both fixed by the sample key.

Training sample key n (data/datasets.py: the global counter over all samples ever drawn) gives

- the image crop as `InpaintTrainSet` does (image `perm_epoch[n % N]`, short side resized to the
  canvas, a random canvas-sized crop, an optional flip), all seeded by (seed, n);
- the margins, seeded by (seed, n // group): one known-box position per `group` consecutive keys.
  The trainer passes the global batch size as `group`, so every sample of a batch (on every rank)
  has the same margins. The SRN generator takes one (top, left, bottom, right) per call, so one
  forward per batch needs them shared; the official graph likewise draws one box per batch.
  The known box size is fixed for the whole run; only its position varies from batch to batch.

Margin sampling (`sample_margins`), per axis, given the canvas side S, the known side s and the
sides allowed to get a margin (`sides`):
- "random": the official SRN `random_mask`: the box's start is uniform in [m, S - s - m]
  (both ends inclusive, m = min_margin), so margins are asymmetric in general;
- "one-sided": the box touches one edge, chosen at random, so the margin is all on one side.
An axis with only one allowed side puts the margin there (e.g. `sides: [right]` with a known
width < canvas width: extend to the right only); an axis with none needs s == S.

Validation: `val_margins(count, ...)` draws margins j from (eval seed, j), one pair per
validation image (here the margins vary per sample: evaluation completes each margin group on
its own). The list is written once per run (`write_val_margins`, rank 0) and read back, so a
resumed run is scored on the same pairs even if this code changes; `eval.masks` may name the
file of another run to compare runs on the same pairs.

Samples: dict(image 3HW [-1, 1] the ground-truth canvas, mask 1HW {0, 1} (1 = to predict),
margins int64 (4,) = (top, left, bottom, right), key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..utils.fs import atomic_write
from .datasets import InpaintTrainSet, InpaintValSet, resize_short_side
from .margins import Margins

__all__ = ["MARGIN_MODES", "MARGIN_SIDES", "check_margin_sampling", "sample_margins", "canvas_mask",
           "OutpaintTrainSet",
           "OutpaintValSet", "val_margins", "write_val_margins", "read_val_margins"]

MARGIN_MODES = ("random", "one-sided")
MARGIN_SIDES = ("top", "left", "bottom", "right")
VAL_FORMAT = "gancanvas-val-margins/1"

# Stream identifiers mixed into the seeds, distinct from datasets.py's, so the crop draws and
# the margin draws of one key are independent generators.
_CROP_STREAM = 0x0C20
_MARGIN_STREAM = 0x3A26
_VAL_STREAM = 0x7A1


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    vals = list(value)
    if len(vals) != 2:
        raise ConfigError(f"{what} must be an int or [height, width], got {value!r}")
    return int(vals[0]), int(vals[1])


def check_margin_sampling(canvas: int | Sequence[int], known: int | Sequence[int], mode: str = "random",
                          sides: Sequence[str] = MARGIN_SIDES, min_margin: int | Sequence[int] = 0,
                          prefix: str = "") -> None:
    """One-line ConfigError if these settings cannot produce margins (checked at startup).

    `prefix` is put before the setting names in messages (the recipe passes "loss.")."""
    big_h, big_w = _pair(canvas, "canvas size")
    h, w = _pair(known, f"{prefix}known_size")
    mt, ml = _pair(min_margin, f"{prefix}min_margin")
    if mode not in MARGIN_MODES:
        raise ConfigError(f"{prefix}margin_mode must be one of {', '.join(MARGIN_MODES)}, got '{mode}'")
    if not sides or any(s not in MARGIN_SIDES for s in sides):
        raise ConfigError(f"{prefix}margin_sides must be a non-empty subset of {', '.join(MARGIN_SIDES)}, "
                          f"got {list(sides)}")
    if min(h, w) < 1 or h > big_h or w > big_w:
        raise ConfigError(f"{prefix}known_size {h}x{w} must fit the {big_h}x{big_w} canvas")
    if (h, w) == (big_h, big_w):
        raise ConfigError(f"{prefix}known_size equals the {big_h}x{big_w} canvas: nothing to outpaint")
    if mt < 0 or ml < 0:
        raise ConfigError(f"{prefix}min_margin must be >= 0, got {mt},{ml}")
    for axis, spare, lo, hi, m in (("vertical", big_h - h, "top", "bottom", mt),
                                   ("horizontal", big_w - w, "left", "right", ml)):
        n_sides = (lo in sides) + (hi in sides)
        if spare > 0 and n_sides == 0:
            raise ConfigError(f"{prefix}margin_sides: the {axis} margin ({spare} px) needs '{lo}' or '{hi}'")
        if m * n_sides > spare:
            raise ConfigError(f"{prefix}min_margin {m} on each allowed {axis} side exceeds the {spare} px "
                              "of margin there")


def _axis(rng: np.random.Generator, spare: int, lo_ok: bool, hi_ok: bool, m: int, mode: str) -> int:
    """The margin before the box on one axis (the one after is spare minus it)."""
    if lo_ok and hi_ok:
        if mode == "random":
            return int(rng.integers(m, spare - m + 1))  # official: maxval + 1, both ends inclusive
        return spare if spare and rng.random() < 0.5 else 0
    return spare if lo_ok else 0


def sample_margins(canvas: int | Sequence[int], known: int | Sequence[int], rng: np.random.Generator,
                   mode: str = "random", sides: Sequence[str] = MARGIN_SIDES,
                   min_margin: int | Sequence[int] = 0) -> Margins:
    """Margins placing a `known` box on a `canvas` (module doc). With all sides and mode "random"
    this is `data.margins.random_margins` (the same draws from `rng`)."""
    big_h, big_w = _pair(canvas, "canvas")
    h, w = _pair(known, "known_size")
    mt, ml = _pair(min_margin, "min_margin")
    top = _axis(rng, big_h - h, "top" in sides, "bottom" in sides, mt, mode)
    left = _axis(rng, big_w - w, "left" in sides, "right" in sides, ml, mode)
    return Margins(top, left, big_h - h - top, big_w - w - left)


def canvas_mask(height: int, width: int, margins: Margins) -> np.ndarray:
    """float32 HxW, 1 on the margins (to predict), 0 on the known box."""
    mask = np.ones((height, width), np.float32)
    mask[margins.top:height - margins.bottom, margins.left:width - margins.right] = 0
    return mask


def _sample(img: np.ndarray, margins: Margins, key: int) -> dict[str, torch.Tensor]:
    from .io import image_to_tensor

    mask = canvas_mask(img.shape[0], img.shape[1], margins)
    return {"image": image_to_tensor(img)[0], "mask": torch.from_numpy(mask)[None],
            "margins": torch.tensor(tuple(margins), dtype=torch.int64),
            "key": torch.tensor(key, dtype=torch.int64)}


class OutpaintTrainSet(InpaintTrainSet):
    """Global sample key n -> dict(image, mask, margins, key); margins shared by `group` keys."""

    def __init__(self, images, size: int, known: int | Sequence[int], seed: int, *, group: int,
                 mode: str = "random", sides: Sequence[str] = MARGIN_SIDES,
                 min_margin: int | Sequence[int] = 0, flip: bool = False, load_size: int = 0):
        # The parent gives the image permutation and the skipping of unreadable files; its mask
        # sampler is not used.
        super().__init__(images, size, "box", seed, flip=flip, load_size=load_size)
        check_margin_sampling(size, known, mode, sides, min_margin)
        if group < 1:
            raise ConfigError(f"the margin group (global batch) must be positive, got {group}")
        self.known, self.group = _pair(known, "known_size"), int(group)
        self.mode, self.sides, self.min_margin = mode, tuple(sides), _pair(min_margin, "min_margin")

    def margins(self, n: int) -> Margins:
        rng = np.random.default_rng([self.seed, _MARGIN_STREAM, int(n) // self.group])
        return sample_margins(self.size, self.known, rng, self.mode, self.sides, self.min_margin)

    def __getitem__(self, n: int) -> dict[str, torch.Tensor]:
        n = int(n)
        img = resize_short_side(self._load(n), self.load_size)
        rng = np.random.default_rng([self.seed, _CROP_STREAM, n])
        h, w = img.shape[:2]  # a fixed order of draws: crop, flip
        top = int(rng.integers(0, h - self.size + 1))
        left = int(rng.integers(0, w - self.size + 1))
        img = img[top:top + self.size, left:left + self.size]
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
        return _sample(np.ascontiguousarray(img), self.margins(n), n)


def val_margins(count: int, size: int, known: int | Sequence[int], seed: int, mode: str = "random",
                sides: Sequence[str] = MARGIN_SIDES, min_margin: int | Sequence[int] = 0) -> list[Margins]:
    """The validation margins: pair j drawn from (seed, j), independent of `count`."""
    check_margin_sampling(size, known, mode, sides, min_margin)
    return [sample_margins(size, known, np.random.default_rng([seed, _VAL_STREAM, j]), mode, sides,
                           min_margin) for j in range(count)]


def _settings(size: int, known, seed: int, mode: str, sides, min_margin) -> dict:
    return {"size": int(size), "known": list(_pair(known, "known_size")), "seed": int(seed), "mode": mode,
            "sides": list(sides), "min_margin": list(_pair(min_margin, "min_margin"))}


def write_val_margins(path: str | Path, count: int, size: int, known, seed: int, mode: str = "random",
                      sides: Sequence[str] = MARGIN_SIDES, min_margin=0) -> Path:
    """Write the validation margins (JSON) unless `path` already holds the same set."""
    path = Path(path)
    settings = _settings(size, known, seed, mode, sides, min_margin)
    try:
        old = json.loads(path.read_text())
        same = old.get("format") == VAL_FORMAT and old.get("settings") == settings
        if same and len(old["margins"]) >= count:
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    margins = val_margins(count, size, known, seed, mode, sides, min_margin)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ",\n  ".join(json.dumps(list(m)) for m in margins)  # one (top, left, bottom, right) per line
    with atomic_write(path, "w") as f:
        f.write(f'{{"format": {json.dumps(VAL_FORMAT)},\n "settings": {json.dumps(settings)},\n'
                f' "margins": [\n  {rows}\n ]}}\n')
    return path


def read_val_margins(path: str | Path, size: int, known) -> list[Margins]:
    """The margins of a validation file, checked against this run's canvas and known size."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != VAL_FORMAT:
            raise ValueError("not a validation margins file")
        margins = [Margins(*(int(v) for v in m)) for m in data["margins"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read validation margins ({err})") from None
    h, w = _pair(known, "known_size")
    for m in margins:
        if m.canvas_size(h, w) != (size, size) or min(m) < 0:
            raise InputError(f"{path}: margins {tuple(m)} do not place a {h}x{w} known box on this run's "
                             f"{size}x{size} canvas")
    return margins


class OutpaintValSet(InpaintValSet):
    """Fixed validation pairs: image j (centre crop of the canvas size) with margins j."""

    def __init__(self, images, margins: Sequence[Margins], size: int, load_size: int = 0):
        if not margins:
            raise InputError("no validation margins")
        margins = [Margins(*m) for m in margins]
        super().__init__(images, np.stack([canvas_mask(size, size, m) for m in margins]), size,
                         load_size=load_size)
        self.margins = margins[:len(self.pixels)]

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        return _sample(self.pixels[j], self.margins[j], int(j))
