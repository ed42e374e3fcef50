"""The evaluation protocol: one fixed, reproducible way to score any inpainting method.

`evaluate(inpaint_fn, images_dir, masks_dir)` runs a method over a folder of ground-truth images
and a folder of masks (ideally a fixed mask set written by `gancanvas data masks`, i.e.
`data.masks.write_mask_set`) and returns an `EvalResult` with the mean of every metric overall
and per hole-area bin. The protocol, step by step:

1. Images: the image files of `images_dir` in natural name order (`data.io.list_images`;
   `img2` before `img10`). Masks: the files listed by the mask set's `manifest.json` in its
   order, or, without a manifest, the image files of `masks_dir` in natural name order.
2. Pairing: `pair="cycle"` gives image i the mask i mod n_masks (so 1000 images and 100 masks
   use every mask 10 times); `pair="stem"` gives each image the mask with the same file stem
   (`photo.jpg` -> `photo.png` or `photo_mask.png`, as `data.io.match_by_stem`), and an image
   without one is an error.
3. Crop: when `size` is given, or else the mask set's manifest declares a size, every image is
   centre-cropped (top = (H - h) // 2, left = (W - w) // 2) to it. Crops are fixed, never random,
   and never resize: an image smaller than the crop is an error. Without a size, each mask must
   have its image's size.
4. The method gets the cropped image with the hole set to 0 (so it cannot read the answer,
   as mmagic's `masked_img`) and the bool mask, and returns uint8 H x W x 3 RGB.
5. Its output is composited: hole pixels from the output, known pixels from the ground truth.
6. Metrics (`gancanvas.eval.metrics`) compare the composite with the ground truth, both as
   float in [0, 1] (uint8 / 255), in batches of `batch_size` images of one size.
7. Bins: each pair is counted in the hole-area bin of its mask: the manifest's `bin` when the
   mask set has a manifest (labels "lo-hi" from its `bins`, in percent of the image), otherwise
   one computed from the mask's hole area with the default bins 0-10, 10-20, ..., 50-60 and
   "60+" (above 60 %). Per-image metrics are averaged per bin and over all images ("all"); set
   metrics (FID) are computed over all images only.

Everything is deterministic for a deterministic method: the same folders give the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError, MaskError
from .metrics import METRICS, get_metric

__all__ = ["EvalResult", "evaluate", "compare", "center_crop", "DEFAULT_BIN_LABELS", "RESULT_FORMAT"]

RESULT_FORMAT = "gancanvas-eval"
RESULT_VERSION = 1
OVERFLOW_BIN = "60+"

InpaintFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


def _default_bins() -> list[tuple[float, float]]:
    from ..data.masks import DEFAULT_BINS

    return [(float(lo), float(hi)) for lo, hi in DEFAULT_BINS]


DEFAULT_BIN_LABELS = tuple([_bin_label(lo, hi) for lo, hi in _default_bins()] + [OVERFLOW_BIN])


def center_crop(image: np.ndarray, size: tuple[int, int], where: str = "image") -> np.ndarray:
    """The centre `size` = (h, w) window of an H x W[ x C] array: rows (H - h) // 2 ... , no resizing."""
    h, w = size
    H, W = image.shape[:2]
    if H < h or W < w:
        raise InputError(f"{where}: image is {W}x{H}, smaller than the evaluation crop {w}x{h} "
                         "(crops never resize)")
    top, left = (H - h) // 2, (W - w) // 2
    return image[top:top + h, left:left + w]


def _size_arg(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {size!r}")
    return h, w


# ----------------------------------------------------------------------------- result

def _nan_to_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


@dataclass
class EvalResult:
    """Scores of one method under the protocol.

    `records`: one dict per image in evaluation order: `image`, `mask` (file names), `bin`
    (label), `area_pct` (hole area in percent) and `values` {metric: float}. `set_values`: the
    set metrics over all images. `summary()` gives {bin: {"n": count, metric: mean}} for the
    non-empty bins in order, then "all".
    """

    metrics: tuple[str, ...]
    higher_is_better: dict[str, bool]
    precision: dict[str, int]
    bins: list[str]
    records: list[dict[str, Any]]
    set_values: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        groups = [(b, [r for r in self.records if r["bin"] == b]) for b in self.bins]
        for label, recs in [*groups, ("all", self.records)]:
            if not recs:
                continue
            row: dict[str, Any] = {"n": len(recs)}
            for m in self.metrics:
                if m in self.set_values:
                    row[m] = self.set_values[m] if label == "all" else None
                else:
                    vals = [r["values"][m] for r in recs if r["values"].get(m) is not None]
                    row[m] = float(np.mean(vals)) if vals else None
            out[label] = row
        return out

    def table(self) -> str:
        """A text (Markdown) table: one row per non-empty bin and "all"; columns n and the means."""
        summ = self.summary()
        header = ["bin", "n", *self.metrics]
        rows = [[label, str(row["n"]), *[_fmt(row[m], self.precision.get(m, 3)) for m in self.metrics]]
                for label, row in summ.items()]
        return _render(header, rows) + "\n\n" + _legend(self.metrics, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "metrics": list(self.metrics),
            "higher_is_better": dict(self.higher_is_better),
            "precision": dict(self.precision),
            "bins": list(self.bins),
            "summary": {k: {m: _nan_to_none(v) for m, v in row.items()} for k, row in self.summary().items()},
            "set_values": {k: _nan_to_none(v) for k, v in self.set_values.items()},
            "info": self.info,
            "per_image": [{**r, "values": {m: _nan_to_none(v) for m, v in r["values"].items()}}
                          for r in self.records],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        from ..utils.fs import atomic_save_bytes

        atomic_save_bytes(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        if not isinstance(d, dict) or d.get("format") != RESULT_FORMAT:
            raise InputError(f"not a {RESULT_FORMAT} result")
        return cls(metrics=tuple(d["metrics"]), higher_is_better=dict(d["higher_is_better"]),
                   precision=dict(d.get("precision", {})), bins=list(d["bins"]),
                   records=list(d["per_image"]), set_values=dict(d.get("set_values", {})),
                   info=dict(d.get("info", {})))

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> EvalResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: not a readable evaluation result ({err})") from None


def _fmt(v: float | None, precision: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{precision}f}"


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]

    def line(cells):
        # First column left-aligned (labels), numbers right-aligned.
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _legend(metrics: Iterable[str], higher: dict[str, bool]) -> str:
    lo = [m for m in metrics if not higher.get(m, False)]
    hi = [m for m in metrics if higher.get(m, False)]
    parts = []
    if lo:
        parts.append("lower is better: " + ", ".join(lo))
    if hi:
        parts.append("higher is better: " + ", ".join(hi))
    return "; ".join(parts)


def compare(results: dict[str, EvalResult], metrics: Sequence[str] | None = None) -> str:
    """A Markdown table of several methods side by side (e.g. a model vs cv2 Telea vs cv2 NS).

    Rows: the bins, then "all"; columns: n, then for each metric one column per method, the best
    value of each metric in a row in bold. All results must come from the same images and masks
    (same pairs in the same order); anything else would compare different questions.
    """
    if not results:
        raise ValueError("compare() needs at least one result")
    names = list(results)
    first = results[names[0]]
    pairs = [(r["image"], r["mask"]) for r in first.records]
    for name in names[1:]:
        if [(r["image"], r["mask"]) for r in results[name].records] != pairs:
            raise InputError(f"compare: {name!r} was evaluated on other image/mask pairs than {names[0]!r}")
    metrics = list(metrics) if metrics is not None else [
        m for m in first.metrics if all(m in r.metrics for r in results.values())]
    summaries = {n: r.summary() for n, r in results.items()}
    labels = list(summaries[names[0]])
    header = ["bin", "n"] + [f"{m} {n}" for m in metrics for n in names]
    rows = []
    for label in labels:
        row = [label, str(summaries[names[0]][label]["n"])]
        for m in metrics:
            vals = {n: summaries[n][label].get(m) for n in names}
            prec = first.precision.get(m, 3)
            finite = [v for v in vals.values() if v is not None and not math.isnan(v)]
            best = None
            if len(finite) > 1:
                best = max(finite) if first.higher_is_better.get(m, False) else min(finite)
            for n in names:
                cell = _fmt(vals[n], prec)
                if best is not None and vals[n] is not None and _fmt(vals[n], prec) == _fmt(best, prec):
                    cell = f"**{cell}**"
                row.append(cell)
        rows.append(row)
    return _render(header, rows) + "\n\n" + _legend(metrics, first.higher_is_better)


# ----------------------------------------------------------------------------- scoring

class _Scorer:
    """The metric side shared by every protocol: validated metrics, their accumulators, batches.

    `add(pred u8 HxWx3, target u8 HxWx3, mask bool HxW, record)` queues one image (a batch holds
    images of one size, at most `batch_size`) and writes the per-image values into
    `record["values"]` when its batch is scored; `result(bins, records, info)` flushes and builds
    the EvalResult. Metrics that need weight files load them here, before the first image.
    """

    def __init__(self, metrics: Sequence[str], metric_options: dict[str, dict[str, Any]] | None,
                 device: str | torch.device, batch_size: int):
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.metrics = tuple(metrics)
        if not self.metrics:
            raise ConfigError("no metrics to compute")
        self.specs = [get_metric(m) for m in self.metrics]
        self.options = dict(metric_options or {})
        unknown = sorted(set(self.options) - set(self.metrics))
        if unknown:
            raise ConfigError(f"metric_options for metrics not computed: {', '.join(unknown)}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.accs = {}
        for s in self.specs:
            opts = dict(self.options.get(s.name, {}))
            if not s.per_image:
                opts.setdefault("device", self.device)
            self.accs[s.name] = s.accumulator(**opts)
        self.batch: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]] = []

    def add(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray, record: dict) -> None:
        if self.batch and self.batch[0][0].shape != pred.shape:
            self.flush()
        self.batch.append((pred, target, mask, record))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        batch = self.batch
        if not batch:
            return

        def nchw(i):
            x = torch.from_numpy(np.stack([b[i] for b in batch])).to(self.device)
            return x.permute(0, 3, 1, 2).double()

        pred, target = nchw(0) / 255, nchw(1) / 255
        mask = torch.from_numpy(np.stack([b[2] for b in batch])).to(self.device)[:, None].double()
        for name, acc in self.accs.items():
            vals = acc.update(pred, target, mask)
            if vals is not None:
                for rec, v in zip((b[3] for b in batch), vals.tolist()):
                    rec["values"][name] = float(v)
        self.batch = []

    def options_info(self) -> dict[str, dict[str, str]]:
        return {k: {o: str(v) for o, v in opts.items()} for k, opts in self.options.items()}

    def result(self, bins: Sequence[str], records: list[dict[str, Any]], info: dict[str, Any]) -> EvalResult:
        self.flush()
        set_values = {s.name: self.accs[s.name].compute() for s in self.specs if not s.per_image}
        return EvalResult(metrics=self.metrics,
                          higher_is_better={s.name: s.higher_is_better for s in self.specs},
                          precision={s.name: s.precision for s in self.specs}, bins=list(bins),
                          records=records, set_values=set_values, info=info)


# ----------------------------------------------------------------------------- protocol

@dataclass
class _MaskEntry:
    path: Path
    bin: str | None = None  # from the manifest; None = compute from the area
    area_pct: float | None = None


def _mask_set(masks_dir: Path) -> tuple[list[_MaskEntry], list[str], tuple[int, int] | None, dict]:
    """Masks in order, bin labels in order, the declared size (or None), manifest facts."""
    from ..data.io import list_images

    if (masks_dir / "manifest.json").is_file():
        from ..data.masks import read_mask_set

        man = read_mask_set(masks_dir)
        labels = [_bin_label(float(lo), float(hi)) for lo, hi in man["bins"]]
        entries = [_MaskEntry(masks_dir / e["file"], labels[e["bin"]], float(e["area_pct"]))
                   for e in man["files"]]
        size = (int(man["size"][0]), int(man["size"][1])) if man.get("size") else None
        facts = {k: man[k] for k in ("format", "version", "kind", "size", "count", "seed") if k in man}
        return entries, labels, size, facts
    paths, _ = list_images(masks_dir)
    return [_MaskEntry(p) for p in paths], list(DEFAULT_BIN_LABELS), None, {}


def _area_label(mask: np.ndarray) -> tuple[str, float]:
    from ..data.masks import area_bin

    area = round(100.0 * np.count_nonzero(mask) / mask.size, 4)
    b = area_bin(area, _default_bins())
    return (DEFAULT_BIN_LABELS[b] if b is not None else OVERFLOW_BIN), area


def evaluate(
    inpaint_fn: InpaintFn,
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("hole_l1", "psnr", "ssim"),
    pair: str = "cycle",
    size: int | Sequence[int] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    device: str | torch.device = "cpu",
    metric_options: dict[str, dict[str, Any]] | None = None,
) -> EvalResult:
    """Score `inpaint_fn(image_u8 HxWx3, mask_bool HxW) -> u8 HxWx3` under the fixed protocol.

    See the module docstring for the protocol. `metrics`: names from `METRICS`; `metric_options`:
    per-metric keyword options, e.g. {"fid": {"weights": "pt_inception-2015-12-05-6726825d.pth"},
    "lpips": {"weights": "vgg.pth", "backbone": "vgg16-397923af.pth"}}; `device`: where metrics
    are computed (the method runs wherever it runs). Metrics that need weight files load them
    before the first image, so a missing file fails at once (MissingWeightsError).
    """
    from ..data.io import list_images, match_by_stem, read_image, read_mask

    if pair not in ("cycle", "stem"):
        raise ConfigError(f"pair must be 'cycle' or 'stem', got {pair!r}")
    scorer = _Scorer(metrics, metric_options, device, batch_size)

    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    image_paths, skipped = list_images(images_dir)
    masks, bin_labels, declared, facts = _mask_set(masks_dir)
    crop = _size_arg(size) or declared
    if not masks:
        raise InputError(f"{masks_dir}: no masks")
    if pair == "cycle":
        pairs = [(p, masks[i % len(masks)]) for i, p in enumerate(image_paths)]
    else:
        by_path = {m.path.name: m for m in masks}
        matched, missing = match_by_stem(image_paths, masks_dir)
        if missing:
            more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
            names = ", ".join(p.name for p in missing[:3])
            raise MaskError(f"{masks_dir}: no mask with the stem of {names}{more}")
        pairs = []
        for ip, mp in matched:
            if facts and mp.name not in by_path:
                raise MaskError(f"{mp}: not listed in the mask set's manifest.json")
            pairs.append((ip, by_path.get(mp.name, _MaskEntry(mp))))

    mask_cache: dict[Path, np.ndarray] = {}
    records: list[dict[str, Any]] = []

    from tqdm import tqdm

    for ip, entry in tqdm(pairs, desc="eval", unit="img", disable=not progress, file=sys.stderr):
        m = mask_cache.get(entry.path)
        if m is None:
            m = read_mask(entry.path)
            if crop is not None and m.shape != crop:
                raise MaskError(f"{entry.path}: mask is {m.shape[1]}x{m.shape[0]} but the evaluation "
                                f"crop is {crop[1]}x{crop[0]}")
            if not m.any():
                raise MaskError(f"{entry.path}: mask has no hole")
            mask_cache[entry.path] = m
        image = read_image(ip)
        if crop is not None:
            image = center_crop(image, crop, str(ip))
        elif image.shape[:2] != m.shape:
            raise MaskError(f"{entry.path}: mask is {m.shape[1]}x{m.shape[0]} but {ip.name} is "
                            f"{image.shape[1]}x{image.shape[0]} (give a size to centre-crop the images)")
        image = np.ascontiguousarray(image)
        given = image.copy()
        given[m] = 0
        out = np.asarray(inpaint_fn(given, m.copy()))
        if out.dtype != np.uint8 or out.shape != image.shape:
            raise ValueError(f"{ip.name}: the method returned {out.dtype} {out.shape}, expected uint8 "
                             f"{image.shape}")
        composite = np.where(m[..., None], out, image)
        if entry.bin is not None:
            label, area = entry.bin, entry.area_pct
        else:
            label, area = _area_label(m)
        rec = {"image": ip.name, "mask": entry.path.name, "bin": label, "area_pct": area, "values": {}}
        records.append(rec)
        scorer.add(composite, image, m, rec)

    info = {
        "protocol": "inpaint",
        "images_dir": str(images_dir),
        "masks_dir": str(masks_dir),
        "pair": pair,
        "crop": list(crop) if crop is not None else None,
        "n_images": len(records),
        "n_masks": len(masks),
        "skipped": [[p.name, why] for p, why in skipped],
        "mask_set": facts,
        "metric_options": scorer.options_info(),
    }
    return scorer.result(bin_labels, records, info)


def available_metrics() -> dict[str, str]:
    """{name: one-line description} of the registered metrics."""
    return {name: m.description for name, m in METRICS.items()}
