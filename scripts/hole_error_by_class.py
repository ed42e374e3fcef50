"""Hole-L1 per scene class: where in the hole an inpainting method errs, next to baselines.

    python scripts/hole_error_by_class.py deepfill-v2-scenes --images scenes/images \
        --labels scenes/labels --masks masks/ --baseline telea --every 3

The pairing is the inpainting protocol's (`gancanvas eval`: images sorted by name, image i with
mask i of the mask set, cycled); `--every K` keeps every K-th pair. Each hole pixel is scored
(mean absolute error x100 on [0, 1], as `hole_l1`) under its class in the label map of the same
stem (`gancanvas data scenes` writes both), so the table says, per class, how many hole pixels
there are and each method's error on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import gancanvas
    from gancanvas.data.io import list_images, read_image, read_mask
    from gancanvas.data.labels import read_label_map
    from gancanvas.data.masks import read_mask_set
    from gancanvas.data.synthetic import CLASSES
    from gancanvas.eval.baselines import BASELINES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model name or file")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True, help="label maps (class ids), paired by stem")
    ap.add_argument("--masks", type=Path, required=True, help="a mask set (gancanvas data masks)")
    ap.add_argument("--baseline", action="append", default=[], choices=sorted(BASELINES))
    ap.add_argument("--every", type=int, default=1)
    args = ap.parse_args()

    pipe = gancanvas.load(args.model)
    methods = {args.model: lambda img, m: np.asarray(pipe.inpaint(img, m))}
    methods.update({b: BASELINES[b] for b in args.baseline})
    images, _ = list_images(args.images)
    masks = [args.masks / e["file"] for e in read_mask_set(args.masks)["files"]]  # manifest order
    pairs = [(p, masks[i % len(masks)]) for i, p in enumerate(images)][::args.every]
    err = {name: np.zeros(len(CLASSES)) for name in methods}
    count = np.zeros(len(CLASSES), dtype=np.int64)
    for image_path, mask_path in pairs:
        image, hole = read_image(image_path), read_mask(mask_path)
        labels = read_label_map(args.labels / f"{image_path.stem}.png").astype(np.int64)
        given = np.where(hole[..., None], 0, image).astype(np.uint8)
        count += np.bincount(labels[hole], minlength=len(CLASSES))
        for name, fn in methods.items():
            out = np.asarray(fn(given, hole.copy())).astype(np.float64)
            e = np.abs(out - image).mean(axis=-1) / 2.55
            err[name] += np.bincount(labels[hole], weights=e[hole], minlength=len(CLASSES))
    print(f"hole-L1 per class, {len(pairs)} pairs\n")
    print("| class | hole pixels | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for c, name in enumerate(CLASSES):
        if count[c]:
            cells = " | ".join(f"{err[m][c] / count[c]:.2f}" for m in methods)
            print(f"| {name} | {count[c]:,} | {cells} |")
    total = count.sum()
    print("| all | {:,} | {} |".format(total, " | ".join(f"{err[m].sum() / total:.2f}" for m in methods)))


if __name__ == "__main__":
    main()
