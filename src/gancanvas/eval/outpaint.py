"""The outpainting evaluation protocol: one fixed, reproducible way to score any outpainting method.

`evaluate_outpaint(method, images_dir, margins_dir)` runs a method over a folder of ground-truth
images and a fixed margin set (`gancanvas data margins`, `data.margins.write_margin_set`) and
returns an `EvalResult` (the inpainting protocol's, so `table()`, `compare()` and JSON work alike).
Step by step:

1. Images: the image files of `images_dir` in natural name order. Margin entries: the manifest's
   list in its order; image i gets entry i mod n (as the inpainting protocol's `pair="cycle"`).
2. Crop: every image is centre-cropped (top = (H - h) // 2, left = (W - w) // 2) to the set's
   canvas size; never resized, and an image smaller than the canvas is an error.
3. The method gets only the known box of the ground truth, `gt[top:top + h, left:left + w]` (a
   copy, so it cannot read the answer), and the entry's `Margins(top, left, bottom, right)`, and
   returns the whole canvas, uint8 H x W x 3 RGB.
4. Its output is composited: the margins (the unknown region) from the output, the known box from
   the ground truth.
5. Metrics compare the composite with the ground-truth canvas, both as float in [0, 1]: `hole_l1`
   is the mean absolute error over the unknown region only (pixels and channels, x100: percent of
   the range, the inpainting table's definition); `psnr` and `ssim` are computed over the whole
   canvas with the known pixels kept (exact), the usual choice of outpainting papers: they differ
   from a perfect score only through the unknown region, but a smaller unknown region scores
   higher, so only compare numbers of one margin set.
6. Bins: how many sides of the canvas get a margin ("1 side" ... "4 sides", from the manifest),
   then "all".

Methods: a callable `fn(known u8 hxwx3, margins) -> u8 HxWx3`, an `Outpainter`, a model name or
file, or the name of a baseline in `OUTPAINT_BASELINES` (reflect, telea, ns). A model is checked
against every margin entry before the first image: a model that cannot produce the set's canvas
(the official SRN's fixed expansion ratio, a clean SRN's largest expansion per side) is a one-line
InputError naming the model and the set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, MaskError
from .protocol import EvalResult, _Scorer, center_crop

__all__ = ["evaluate_outpaint", "outpaint_method", "OutpaintFn"]

OutpaintFn = Callable[[np.ndarray, Any], np.ndarray]


def outpaint_method(method: Any, device: str | torch.device = "cpu") -> tuple[str, OutpaintFn, Any]:
    """(display name, fn, pipeline or None) of a method: a baseline name, a model name / file, an
    Outpainter, or a callable. A model of another task is a one-line InputError."""
    from .baselines import OUTPAINT_BASELINES
    from .methods import resolve_method

    return resolve_method(method, task="outpaint", option="--margins", baselines=OUTPAINT_BASELINES,
                          adapt=lambda p: (lambda known, m: p.run(known, m).image), device=device)


def _check_model(pipe, entries: list[dict], known: tuple[int, int], canvas: tuple[int, int],
                 margins_dir: Path) -> None:
    """Every margin entry must be one the model can produce; one line naming both otherwise."""
    from ..data.margins import Margins

    seen = set()
    for e in entries:
        m = Margins(*(int(v) for v in e["margins"]))
        if m in seen:
            continue
        seen.add(m)
        try:
            pipe.model.check_margins(known, m)
        except InputError as err:
            raise InputError(
                f"model '{pipe.name}' cannot be evaluated on the margin set {margins_dir} (a "
                f"{known[0]}x{known[1]} known box on a {canvas[0]}x{canvas[1]} canvas; entry {e['file']}: "
                f"{m}): {err}") from None


def evaluate_outpaint(
    method: Any,
    images_dir: str | os.PathLike,
    margins_dir: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("hole_l1", "psnr", "ssim"),
    batch_size: int = 8,
    progress: bool = True,
    device: str | torch.device = "cpu",
    metric_options: dict[str, dict[str, Any]] | None = None,
) -> EvalResult:
    """Score an outpainting method on a fixed margin set (module docstring: the protocol).

    `method`: `fn(known u8 hxwx3, margins) -> u8 HxWx3 canvas`, an Outpainter, a model name / file
    (loaded on `device`) or a baseline name (reflect, telea, ns). `metrics`, `metric_options`,
    `device`, `batch_size`: as `evaluate`. Records name the image, the margin file (`mask`), its
    bin, the unknown area in percent and the margins.
    """
    from ..data.io import list_images, read_image, read_mask
    from ..data.margins import MARGIN_SET_BINS, Margins, read_margin_set

    scorer = _Scorer(metrics, metric_options, device, batch_size)
    name, fn, pipe = outpaint_method(method, device)
    images_dir, margins_dir = Path(images_dir), Path(margins_dir)
    man = read_margin_set(margins_dir)
    canvas = (int(man["size"][0]), int(man["size"][1]))
    known = (int(man["known"][0]), int(man["known"][1]))
    entries = list(man["files"])
    bins = [str(b) for b in man.get("bins", MARGIN_SET_BINS)]
    if pipe is not None:
        _check_model(pipe, entries, known, canvas, margins_dir)
    image_paths, skipped = list_images(images_dir)

    from tqdm import tqdm

    mask_cache: dict[str, np.ndarray] = {}
    records: list[dict[str, Any]] = []
    h, w = known
    for i, ip in enumerate(tqdm(image_paths, desc=f"eval {name}", unit="img", disable=not progress,
                                file=sys.stderr)):
        e = entries[i % len(entries)]
        m = Margins(*(int(v) for v in e["margins"]))
        unknown = mask_cache.get(e["file"])
        if unknown is None:
            unknown = np.ones(canvas, bool)
            unknown[m.top:m.top + h, m.left:m.left + w] = False
            on_disk = read_mask(margins_dir / e["file"])
            if on_disk.shape != canvas or not np.array_equal(on_disk, unknown):
                raise MaskError(f"{margins_dir / e['file']}: the mask file does not match its margins {m} in "
                                "manifest.json (a damaged margin set; write it again)")
            mask_cache[e["file"]] = unknown
        gt = np.ascontiguousarray(center_crop(read_image(ip), canvas, str(ip)))
        given = gt[m.top:m.top + h, m.left:m.left + w].copy()
        out = np.asarray(fn(given, m))
        if out.dtype != np.uint8 or out.shape != gt.shape:
            raise InputError(f"{ip.name}: {name} returned {out.dtype} {out.shape} for margins {m}, expected "
                             f"uint8 {gt.shape} (the {canvas[0]}x{canvas[1]} canvas)")
        composite = np.where(unknown[..., None], out, gt)
        rec = {"image": ip.name, "mask": e["file"], "bin": bins[int(e["bin"])],
               "area_pct": float(e.get("area_pct", round(100.0 * unknown.mean(), 4))),
               "margins": list(m), "values": {}}
        records.append(rec)
        scorer.add(composite, gt, unknown, rec)

    facts = {k: man[k] for k in ("format", "version", "size", "known", "count", "seed", "mode", "sides",
                                 "min_margin") if k in man}
    info = {
        "protocol": "outpaint",
        "method": name,
        "images_dir": str(images_dir),
        "margins_dir": str(margins_dir),
        "pair": "cycle",
        "crop": list(canvas),
        "n_images": len(records),
        "n_margins": len(entries),
        "skipped": [[p.name, why] for p, why in skipped],
        "margin_set": facts,
        "metric_options": scorer.options_info(),
    }
    return scorer.result(bins, records, info)
