"""Inpainting datasets whose every random choice is a function of a global sample key.

The training stream is indexed by a counter n = 0, 1, 2, ... over all samples ever drawn (all
ranks together). Key n picks image `perm_epoch[n % N]` from a permutation seeded by
(seed, epoch = n // N), and its crop, flip and mask come from a generator seeded by (seed, n).
Nothing depends on worker ids, process ids or how far a DataLoader prefetched, so a run
resumed at sample counter c reproduces the uninterrupted one exactly, with any number of
workers. `SampleKeys` hands each rank its slice of each global batch.

Sources: the built-in procedural scenes (scene i rendered on the fly from its seed) or image
files (a folder or a text file listing paths). A file that cannot be read is reported once
(per process) and replaced by the next image of the permutation, so a bad file never stops a
run and the replacement is itself deterministic.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError, GancanvasError, InputError

# Stream identifiers mixed into the seeds so the permutation and the per-sample draws of the
# same (seed, n) are independent generators.
_PERM_STREAM = 0x5EED
_SAMPLE_STREAM = 0xA11CE

_reported: set[str] = set()


def report_once(msg: str) -> None:
    if msg not in _reported:
        _reported.add(msg)
        print(f"gancanvas: warning: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- image sources
class SceneImages:
    """Built-in procedural scenes: image i is `render_scene(seeds[i], size, size)`."""

    def __init__(self, seeds: list[int], size: int):
        self.seeds, self.size = list(seeds), size

    def __len__(self) -> int:
        return len(self.seeds)

    def name(self, i: int) -> str:
        return f"scene {self.seeds[i]}"

    def load(self, i: int) -> np.ndarray:
        from .synthetic import render_scene

        return render_scene(self.seeds[i], self.size, self.size).image


class FileImages:
    """Image files, read with data.io.read_image (any size; cropped by the dataset)."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.paths[i])

    def load(self, i: int) -> np.ndarray:
        from .io import read_image

        return read_image(self.paths[i])


def list_image_files(root: str | Path) -> list[Path]:
    """A folder's images (non-images reported once) or the paths of a list file (relative to it)."""
    from .io import list_images

    root = Path(root)
    if root.is_dir():
        paths, skipped = list_images(root)
        for path, reason in skipped:
            report_once(f"{path}: skipped ({reason})")
        return paths
    if root.is_file():
        lines = root.read_text(encoding="utf-8").splitlines()
        paths = [Path(s) for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        paths = [p if p.is_absolute() else root.parent / p for p in paths]
        if not paths:
            raise InputError(f"{root}: the list file names no images")
        return paths
    raise InputError(f"{root}: no such folder or list file")


def build_sources(data) -> tuple[SceneImages | FileImages, SceneImages | FileImages]:
    """(train, val) image sources of a `data:` config section (train.config.DataSection)."""
    if data.kind == "scenes":
        from .synthetic import scene_seed

        # The numbering of `gancanvas data scenes`; validation scenes follow the training ones,
        # so the two sets never share a scene.
        size = data.load_size or data.size
        train = SceneImages([scene_seed(data.seed, i) for i in range(data.count)], size)
        val = SceneImages([scene_seed(data.seed, data.count + j) for j in range(data.val_count)], size)
        return train, val
    paths = list_image_files(data.root)
    if data.val_root:
        return FileImages(paths), FileImages(list_image_files(data.val_root)[:data.val_count])
    if data.val_count >= len(paths):
        raise ConfigError(f"data.val_count ({data.val_count}) leaves no training images of the "
                          f"{len(paths)} in {data.root}")
    # Hold out a seeded random subset (not the last files: names are often sorted by class).
    order = np.random.default_rng([data.seed, _PERM_STREAM]).permutation(len(paths))
    held = set(order[:data.val_count].tolist())
    return (FileImages([p for i, p in enumerate(paths) if i not in held]),
            FileImages([p for i, p in enumerate(paths) if i in held]))


# ----------------------------------------------------------------------------- pixel helpers
def resize_short_side(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) == size:
        return img
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    # INTER_AREA is the alias-free choice for shrinking; it degrades to nearest when enlarging.
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, (nw, nh), interpolation=interp)


def canny_sketch(img: np.ndarray, mask: np.ndarray, thresholds: tuple[int, int]) -> np.ndarray:
    """Edges of the ground truth inside the hole, float32 {0,1} HxW.

    Stands in for the official HED edges (whose weights cannot be shipped); like the official
    pipeline it keeps only the strokes inside the hole (edge *= mask).
    """
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, int(thresholds[0]), int(thresholds[1])) > 0
    return edges.astype(np.float32) * (mask > 0)


def _to_sample(img: np.ndarray, mask: np.ndarray, sketch: bool, canny, key: int) -> dict[str, torch.Tensor]:
    from .io import image_to_tensor

    out = {"image": image_to_tensor(img)[0], "mask": torch.from_numpy(mask.astype(np.float32))[None],
           "key": torch.tensor(key, dtype=torch.int64)}
    if sketch:
        out["sketch"] = torch.from_numpy(canny_sketch(img, mask, canny))[None]
    return out


# ----------------------------------------------------------------------------- datasets
class InpaintTrainSet(Dataset):
    """Global sample key n -> dict(image 3HW [-1,1], mask 1HW {0,1}, [sketch 1HW], key)."""

    def __init__(self, images, size: int, mask_kind: str, seed: int, *, sketch: bool = False,
                 canny=(100, 200), flip: bool = True, mask_params: dict | None = None,
                 load_size: int = 0):
        from .masks import MaskSampler

        if len(images) == 0:
            raise InputError("the training set holds no images")
        self.images, self.size, self.seed = images, size, seed
        self.load_size = load_size or size  # short side before the random size x size crop
        self.sketch, self.canny, self.flip = sketch, tuple(canny), flip
        self.mask_kind = mask_kind
        self.masks = MaskSampler(mask_kind, **(mask_params or {}))
        self._perm_epoch, self._perm = -1, None
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.images)  # one epoch; the sampler streams keys past it

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:  # one cached epoch per process: keys arrive nearly in order
            self._perm = np.random.default_rng([self.seed, _PERM_STREAM, epoch]).permutation(len(self.images))
            self._perm_epoch = epoch
        return self._perm

    def _load(self, n: int) -> np.ndarray:
        epoch, pos = divmod(n, len(self.images))
        perm = self.permutation(epoch)
        for k in range(len(self.images)):
            idx = int(perm[(pos + k) % len(perm)])
            if idx in self._bad:
                continue
            try:
                img = self.images.load(idx)
            except GancanvasError as err:
                self._bad.add(idx)
                report_once(f"skipping unreadable training image: {err}")
                continue
            if min(img.shape[:2]) < 1:
                self._bad.add(idx)
                continue
            return img
        raise InputError("no training image could be read")

    def __getitem__(self, n: int) -> dict[str, torch.Tensor]:
        n = int(n)
        img = resize_short_side(self._load(n), self.load_size)
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, n])
        # A fixed order of draws: crop, flip, mask.
        h, w = img.shape[:2]
        top = int(rng.integers(0, h - self.size + 1))
        left = int(rng.integers(0, w - self.size + 1))
        img = img[top:top + self.size, left:left + self.size]
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.ascontiguousarray(img)
        mask = self.masks.sample(self.size, self.size, rng)
        return _to_sample(img, mask, self.sketch, self.canny, n)


class InpaintValSet(Dataset):
    """Fixed validation pairs: image j (centre crop) with mask j of a fixed mask set."""

    def __init__(self, images, masks: np.ndarray, size: int, *, sketch: bool = False, canny=(100, 200),
                 load_size: int = 0):
        self.size, self.sketch, self.canny = size, sketch, tuple(canny)
        self.pixels: list[np.ndarray] = []
        for j in range(len(images)):
            try:
                img = images.load(j)
            except GancanvasError as err:
                report_once(f"skipping unreadable validation image: {err}")
                continue
            img = resize_short_side(img, load_size or size)
            h, w = img.shape[:2]
            top, left = (h - size) // 2, (w - size) // 2
            self.pixels.append(np.ascontiguousarray(img[top:top + size, left:left + size]))
        if not self.pixels:
            raise InputError("no validation image could be read")
        if len(masks) < len(self.pixels):
            raise InputError(f"the validation mask set has {len(masks)} masks for {len(self.pixels)} images")
        if masks.shape[1:] != (size, size):
            raise InputError(f"validation masks are {masks.shape[1]}x{masks.shape[2]}, "
                             f"the training size is {size}")
        self.masks = masks[:len(self.pixels)].astype(np.float32)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        return _to_sample(self.pixels[j], self.masks[j], self.sketch, self.canny, int(j))


def write_val_masks(out_dir: str | Path, kind: str, size: int, count: int, seed: int,
                    params: dict | None = None) -> None:
    """A fixed validation mask set (data.masks format) drawn like the training masks: one
    hole-area bin (0-100%), so it follows the training distribution rather than an eval protocol."""
    from .masks import write_mask_set

    write_mask_set(out_dir, kind=kind, size=size, count=count, seed=seed, bins=[(0.0, 100.0)],
                   params=params or None)


def read_val_masks(directory: str | Path) -> np.ndarray:
    """The masks of a mask set folder in manifest order, float32 {0,1} count x H x W."""
    from .io import read_mask
    from .masks import read_mask_set

    manifest = read_mask_set(directory)
    return np.stack([read_mask(Path(directory) / e["file"]) for e in manifest["files"]]).astype(np.float32)


# ----------------------------------------------------------------------------- sampling
class SampleKeys(Sampler[int]):
    """Endless global sample keys for one rank: draw d covers keys [d*B, (d+1)*B), where B is the
    global batch, and rank r takes [d*B + r*b, d*B + (r+1)*b) with b = B / world."""

    def __init__(self, start_draw: int, global_batch: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ConfigError(f"train.batch_size ({global_batch}) must be divisible by the {world} processes")
        self.start_draw, self.global_batch, self.rank = start_draw, global_batch, rank
        self.local = global_batch // world

    def __iter__(self) -> Iterator[int]:
        for d in itertools.count(self.start_draw):
            first = d * self.global_batch + self.rank * self.local
            yield from range(first, first + self.local)

    def __len__(self) -> int:  # endless; DataLoader only asks when len(loader) is called
        raise TypeError("SampleKeys is endless")


def limit_opencv_threads() -> None:
    """Call in the main process before DataLoader workers are forked: each worker is one process
    among many, so OpenCV must not start a thread pool in it. (Calling cv2.setNumThreads inside a
    forked worker deadlocks on the parent's pool; the setting set here is inherited instead.)"""
    cv2.setNumThreads(1)
