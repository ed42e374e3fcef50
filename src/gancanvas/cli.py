"""The `gancanvas` command line.

Every user-facing problem is a GancanvasError: printed as one line `error: ...` on stderr,
exit code 2. Batch commands (a folder as input) report bad files, skip them, still write the
rest, and exit with 2 if anything was skipped.

    gancanvas inpaint photo.png --mask hole.png -o out.png
    gancanvas outpaint photo.png --top 64 --left 0 --bottom 64 --right 128 -o out.png
    gancanvas outpaint photos/ --right 50% -o results/
    gancanvas synthesize labels.png --instances inst.png --style-cluster 3 -o out.png
    gancanvas synthesize labels/ --instances insts/ -o results/
    gancanvas features cluster model.safetensors --data scenes/ -k 10 -o clustered.safetensors
    gancanvas styles extract face.png --labels face_labels.png --model sean.safetensors -o face.styles.st
    gancanvas synthesize edited_labels.png --model sean.safetensors --styles face.styles.safetensors \
        --region-style hair=other.styles.safetensors --interpolate other.styles.safetensors:0.3 -o out.png
    gancanvas styles mean sean.safetensors --data celeba/ -o mean.styles.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import GancanvasError, InputError

SIDES = ("top", "left", "bottom", "right")


def _err(msg: str) -> None:
    from tqdm import tqdm

    # tqdm.write clears a running progress bar, prints the line and redraws the bar below it.
    tqdm.write(f"error: {msg}", file=sys.stderr)
    sys.stderr.flush()


def _about(err: GancanvasError, path: Path) -> GancanvasError:
    """`err` with the file named in front, unless its message names it already (batch reports)."""
    msg = str(err)
    if str(path) in msg:
        return err
    return type(err)(f"{path}: {msg}")


def _single_output(out: Path, src: Path) -> Path:
    """-o of a one-file command: a file, or an existing folder to write <stem>.png into."""
    return out / (src.stem + ".png") if out.is_dir() else out


def _by_stem(path: Path, folder: Path, exts: tuple[str, ...]) -> Path | None:
    """The file in `folder` that goes with `path`: the same stem (or, for Cityscapes names, the
    `_instanceIds` sibling of a `_labelIds` file), extensions in `exts` order."""
    stems = [path.stem]
    if path.stem.endswith("_labelIds"):
        stems.append(path.stem[: -len("_labelIds")] + "_instanceIds")
    for stem in stems:
        for ext in exts:
            for cand in (folder / (stem + ext), folder / (stem + ext.upper())):
                if cand.is_file() and cand.resolve() != path.resolve():
                    return cand
    return None


def _progress(iterable, total: int, desc: str, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", disable=not enabled or total <= 1,
                dynamic_ncols=True)


def _batch_inputs(src: Path) -> tuple[list[Path], int]:
    """The readable images of a batch folder; the other files are reported as skipped and counted."""
    from .data import io

    images, skipped = io.list_images(src)
    for path, why in skipped:
        _err(f"{path}: skipped ({why})")
    return images, len(skipped)


def _run_batch(jobs: list, desc: str, work) -> tuple[int, int]:
    """`work(job)` for every job under a progress bar; a GancanvasError skips that job with one line.
    Returns (done, skipped)."""
    done = skipped = 0
    for job in _progress(jobs, len(jobs), desc):
        try:
            work(job)
            done += 1
        except GancanvasError as err:
            _err(f"{err} (skipped)")
            skipped += 1
    return done, skipped


def _batch_summary(done: int, failed: int, out_dir: Path, what: str = "images") -> int:
    """The last line of a batch command, and its exit code: 2 if anything was skipped."""
    print(f"wrote {done} {what} to {out_dir}" + (f"; {failed} skipped" if failed else ""))
    return 0 if failed == 0 else 2


# ----------------------------------------------------------------------------- inpaint
def _inpaint_one(pipe, image_path: Path, mask_path: Path, out_path: Path, sketch_path: Path | None,
                 flow_path: Path | None, resize_mask: bool) -> None:
    from .data import io

    image = io.read_image(image_path)
    mask = io.read_mask(mask_path)
    sketch = io.read_sketch(sketch_path) if sketch_path else None
    res = pipe.run(image, mask, sketch, resize_mask=resize_mask, flow=flow_path is not None,
                   source=str(mask_path))
    io.write_image(out_path, res.image)
    if flow_path is not None and res.flow is not None:
        io.write_image(flow_path, res.flow)


def cmd_inpaint(args) -> int:
    from .data import io
    from .pipelines import load

    src, mask_src = Path(args.input), Path(args.mask)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    if not mask_src.exists():
        raise InputError(f"{mask_src}: no such file or directory")
    pipe = load(args.model, task="inpaint", device=args.device)
    if src.is_file():
        if mask_src.is_dir():
            raise InputError(f"{mask_src}: a directory of masks needs a directory of images")
        out = Path(args.output)
        if out.is_dir():
            out = out / (src.stem + ".png")
        _inpaint_one(pipe, src, mask_src, out, Path(args.sketch) if args.sketch else None,
                     Path(args.flow) if args.flow else None, args.resize_mask)
        print(f"wrote {out}")
        return 0

    # Batch: a folder of images, masks matched by file stem (or one mask for all).
    images, failed = _batch_inputs(src)
    if mask_src.is_dir():
        pairs, unmatched = io.match_by_stem(images, mask_src)
        for path in unmatched:
            _err(f"{path}: skipped (no mask with the same name in {mask_src})")
    else:
        pairs = [(p, mask_src) for p in images]
    sketches = Path(args.sketch) if args.sketch else None
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    flow_dir = Path(args.flow) if args.flow else None
    failed += len(unmatched) if mask_src.is_dir() else 0

    def work(pair: tuple[Path, Path]) -> None:
        image_path, mask_path = pair
        sketch_path = None
        if sketches is not None:
            cands = sorted(sketches.glob(image_path.stem + ".*")) if sketches.is_dir() else [sketches]
            sketch_path = cands[0] if cands else None
        _inpaint_one(pipe, image_path, mask_path, out_dir / (image_path.stem + ".png"), sketch_path,
                     flow_dir / (image_path.stem + ".png") if flow_dir else None, args.resize_mask)

    written, skipped = _run_batch(pairs, "inpaint", work)
    return _batch_summary(written, failed + skipped, out_dir)


# ----------------------------------------------------------------------------- outpaint
def _margin_values(args) -> list[str | None]:
    return [getattr(args, side) for side in SIDES]


def _outpaint_one(pipe, image_path: Path, out_path: Path, values: list, names: tuple[str, ...]) -> str:
    from .data import io

    try:
        image = io.read_image(image_path)
        margins = pipe.margins(image.shape[:2], *values, names=names)
        res = pipe.run(image, margins)
        io.write_image(out_path, res.image)
    except GancanvasError as err:
        raise _about(err, image_path) from None
    (h, w), (big_h, big_w) = image.shape[:2], res.image.shape[:2]
    return f"{w}x{h} -> {big_w}x{big_h} ({margins})"


def cmd_outpaint(args) -> int:
    from .data.margins import parse_margins
    from .pipelines import load

    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    names = tuple(f"--{side}" for side in SIDES)
    values = _margin_values(args)
    # Syntax, signs and "all zero" do not depend on the image: report them once, before loading the
    # model. A huge nominal size keeps any positive percentage non-zero here.
    parse_margins(*values, size=(1 << 30, 1 << 30), max_side=None, names=names)
    pipe = load(args.model, task="outpaint", device=args.device)
    if src.is_file():
        out = _single_output(Path(args.output), src)
        what = _outpaint_one(pipe, src, out, values, names)
        print(f"wrote {out} ({what})")
        return 0

    # Batch: every image of the folder with the same margins (percentages per image).
    images, failed = _batch_inputs(src)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = _run_batch(
        images, "outpaint", lambda p: _outpaint_one(pipe, p, out_dir / (p.stem + ".png"), values, names))
    return _batch_summary(written, failed + skipped, out_dir)


# ----------------------------------------------------------------------------- synthesize
_INSTANCE_EXTS = (".png", ".npy", ".tif", ".tiff", ".bmp", ".webp", ".jpg", ".jpeg")


def _style_arg(args):
    """The `style` of Synthesizer.run from --style-cluster / --style-random (SEAN codes come from
    `_style_codes`, the style image is passed per file)."""
    if args.style_cluster is not None:
        return args.style_cluster
    if args.style_random:
        return "random"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_interpolate(value: str) -> tuple[Path, float, list[str] | None]:
    """--interpolate FILE:T or FILE:T:REGIONS (comma list of region names or ids)."""
    from .styles import StyleError, parse_weight

    head, sep, last = value.rpartition(":")
    if not sep or not head or not last:
        raise InputError(f"--interpolate {value}: expected FILE:T (T in [0, 1]) or FILE:T:REGIONS, "
                         "e.g. other.styles.safetensors:0.3")
    regions = None
    if _is_number(last):
        file, weight = head, last
    elif ":" in head:
        file, _, weight = head.rpartition(":")
        regions = [r.strip() for r in last.split(",") if r.strip()]
    else:
        file, weight = head, last
    try:
        t = parse_weight(weight)
    except StyleError as err:
        raise StyleError(f"--interpolate {value}: {err}") from None
    if not file or regions == []:
        raise InputError(f"--interpolate {value}: expected FILE:T (T in [0, 1]) or FILE:T:REGIONS")
    return Path(file), t, regions


def _parse_code_edits(args) -> dict:
    """The SEAN style options, checked before any model is loaded (syntax, weights, files)."""
    given = [opt for opt, v in (("--region-style", args.region_style), ("--interpolate", args.interpolate),
                                ("--crossover", args.crossover), ("--mean", args.mean),
                                ("--zero-missing", args.zero_missing)) if v]
    if given and not args.style:
        raise InputError(f"{', '.join(given)}: these edit SEAN style codes; give the base codes with "
                         "--styles FILE (gancanvas styles extract)")
    edits: dict = {"regions": [], "interpolate": None, "crossover": None}
    if not args.style:
        return edits
    files = [("--styles", Path(args.style))]
    for value in args.region_style:
        region, sep, file = value.partition("=")
        if not sep or not region.strip() or not file.strip():
            raise InputError(f"--region-style {value}: expected REGION=FILE, a region name or id and a style "
                             "file, e.g. hair=other.styles.safetensors")
        edits["regions"].append((region.strip(), Path(file.strip()), value))
        files.append(("--region-style", Path(file.strip())))
    if args.interpolate is not None:
        edits["interpolate"] = (*_parse_interpolate(args.interpolate), args.interpolate)
        files.append(("--interpolate", edits["interpolate"][0]))
    if args.crossover is not None:
        flags, file = args.crossover
        edits["crossover"] = (flags, Path(file))
        files.append(("--crossover", Path(file)))
    if args.mean:
        files.append(("--mean", Path(args.mean)))
    for opt, path in files:
        if not path.is_file():
            raise InputError(f"{path}: no such style file ({opt})")
    return edits


def _style_codes(pipe, args, edits: dict):
    """--styles with the edits applied in order: region swaps, interpolation, crossover, --mean."""
    from .styles import StyleCodes, StyleError, parse_block_flags

    if "codes" not in pipe.style_kinds:
        raise InputError(f"model '{pipe.name}' ({pipe.arch}) takes no per-region style codes; --styles is "
                         "for SEAN models")
    model = pipe.model
    codes = StyleCodes.load(args.style, model)
    for region, file, text in edits["regions"]:
        try:
            rid = codes.region_id(region)
        except StyleError as err:
            raise StyleError(f"--region-style {text}: {err}") from None
        other = StyleCodes.load(file, model)
        if not bool(other.present[rid]):
            has = ", ".join(other.present_names())
            raise StyleError(f"--region-style {text}: {file} has no code for '{codes.names[rid]}' ({rid}); "
                             f"its source image has no such region (it has: {has})")
        codes = codes.swap(rid, other)
    if edits["interpolate"] is not None:
        file, t, regions, text = edits["interpolate"]
        other = StyleCodes.load(file, model)
        try:
            codes = codes.interpolate(other, t, regions)
        except StyleError as err:
            raise StyleError(f"--interpolate {text}: {err}") from None
    if edits["crossover"] is not None:
        flags, file = edits["crossover"]
        try:
            flags = parse_block_flags(flags, codes.space.n_blocks)
        except StyleError as err:
            blocks = ", ".join(getattr(model, "style_blocks", ()))
            raise StyleError(f"--crossover {edits['crossover'][0]} {file}: {err}"
                             + (f"; this model's style blocks: {blocks}" if blocks else "")) from None
        codes = codes.crossover(flags, StyleCodes.load(file, model))
    if args.mean:
        codes = codes.fill_missing(StyleCodes.load(args.mean, model))
    return codes


def _check_missing_codes(codes, labels, args) -> None:
    """A one-line error for classes of the label map that the codes lack (unless --zero-missing)."""
    import numpy as np

    from .styles import StyleError

    missing = codes.missing_in(np.unique(labels))
    if missing and not args.zero_missing:
        what = f"{args.style}" + (f" and {args.mean}" if args.mean else "")
        raise StyleError(f"no style code for {', '.join(missing)} (in the label map, not in {what}); give "
                         "--mean MEAN.styles.safetensors, per-class means from `gancanvas styles mean MODEL "
                         "--data DIR -o MEAN.styles.safetensors`, or --zero-missing")


def _synthesize_one(pipe, label_path: Path, out_path: Path, palette, inst_path: Path | None, style,
                    style_image: Path | None, seed: int, args=None) -> str:
    from .data import io
    from .data.labels import read_instance_map, read_label_map

    try:
        labels = read_label_map(label_path, palette)
        instances = read_instance_map(inst_path) if inst_path is not None else None
        if style_image is not None:
            style = io.read_image(style_image)
        elif args is not None and args.style:
            _check_missing_codes(style, labels, args)
        res = pipe.run(labels, instances, style=style, seed=seed, source=str(label_path),
                       instances_source=None if inst_path is None else str(inst_path),
                       style_source=None if style_image is None else str(style_image))
        io.write_image(out_path, res.image)
    except GancanvasError as err:
        raise _about(err, label_path) from None
    note = ""
    if res.missing_styles:
        note = f"; no style code for {', '.join(res.missing_styles)} (zero codes used)"
    return f"style: {res.style}{note}"


def cmd_synthesize(args) -> int:
    from .data import io
    from .data.labels import load_palette
    from .pipelines import load

    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    for opt, value in (("--instances", args.instances), ("--style-image", args.style_image)):
        if value and not Path(value).exists():
            raise InputError(f"{value}: no such file or directory ({opt})")
    palette = load_palette(args.palette) if args.palette else None
    style = _style_arg(args)
    edits = _parse_code_edits(args)
    pipe = load(args.model, task="synthesize", device=args.device)
    if args.instances and not pipe.uses_instances:
        raise InputError(f"model '{pipe.name}' ({pipe.arch}) takes no instance map (trained without "
                         "instances); drop --instances")
    if args.style:
        style = _style_codes(pipe, args, edits)
    # Model-wide problems (a style it cannot take, clusters it lacks) once, not once per file.
    pipe.check_style(style, image=bool(args.style_image))
    if palette is None:
        palette = pipe.palette
    instances = Path(args.instances) if args.instances else None
    style_image = Path(args.style_image) if args.style_image else None
    if src.is_file():
        for opt, path in (("--instances", instances), ("--style-image", style_image)):
            if path is not None and path.is_dir():
                raise InputError(f"{path}: a folder for {opt} needs a folder of label maps")
        out = _single_output(Path(args.output), src)
        what = _synthesize_one(pipe, src, out, palette, instances, style, style_image, args.seed, args)
        print(f"wrote {out} ({what})")
        return 0

    # Batch: every label map of the folder; instance maps and style images matched by file stem.
    labels, failed = _batch_inputs(src)
    jobs = []
    for label_path in labels:
        inst = style_img = None
        if instances is not None:
            inst = _by_stem(label_path, instances, _INSTANCE_EXTS) if instances.is_dir() else instances
            if inst is None:
                _err(f"{label_path}: skipped (no instance map with the same name in {instances})")
                failed += 1
                continue
        if style_image is not None:
            style_img = style_image
            if style_image.is_dir():
                style_img = _by_stem(label_path, style_image, io.IMAGE_EXTS)
            if style_img is None:
                _err(f"{label_path}: skipped (no style image with the same name in {style_image})")
                failed += 1
                continue
        jobs.append((label_path, inst, style_img))
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    def work(job: tuple[Path, Path | None, Path | None]) -> None:
        label_path, inst, style_img = job
        _synthesize_one(pipe, label_path, out_dir / (label_path.stem + ".png"), palette, inst, style,
                        style_img, args.seed, args)

    written, skipped = _run_batch(jobs, "synthesize", work)
    return _batch_summary(written, failed + skipped, out_dir)


# ----------------------------------------------------------------------------- features
def cmd_features_cluster(args) -> int:
    from .data.labels import find_label_dataset, load_palette
    from .models.pix2pixhd_features import cluster_features
    from .pipelines import load
    from .weights import save_model

    palette = load_palette(args.palette) if args.palette else None
    pipe = load(args.model, task="synthesize", device=args.device)
    model = pipe.model
    if pipe.arch != "pix2pixhd" or not model.cfg.use_features:
        what = pipe.arch if pipe.arch != "pix2pixhd" else "pix2pixhd without instance features"
        raise InputError(f"{pipe.name}: style clusters are for pix2pixHD models with instance features "
                         f"(instance_feat or label_feat); this is a {what} model")
    if args.k < 1 or args.k > model.cfg.n_clusters:
        raise InputError(f"-k {args.k}: must be in 1..{model.cfg.n_clusters} (the model's n_clusters, the "
                         "room it has per class)")
    if palette is None:
        palette = pipe.palette
    # label_feat models pool over label regions: their datasets need no instance maps.
    samples = find_label_dataset(args.data, args.phase, need_images=True,
                                 instances=False if model.cfg.label_feat else None)
    bar = _progress(None, len(samples), "encode")
    try:
        centres = cluster_features(model, samples, k=args.k, seed=args.seed, phase=args.phase,
                                   palette=palette, progress=lambda n, name: bar.update(1))
    finally:
        bar.close()
    if not centres:
        raise InputError(f"{args.data}: no instance is large enough to cluster (area ratio > 0.5, the "
                         f"official rule) in {len(samples)} samples")
    model.set_clusters(centres, source=str(args.data))
    extra = dict(pipe.meta.get("extra", {}))
    extra["clusters"] = {"k": args.k, "seed": args.seed, "data": str(args.data), "samples": len(samples),
                         "classes": sorted(int(c) for c in centres)}
    save_model(args.output, model, arch=pipe.arch, config=pipe.meta["config"], extra=extra)
    n_centres = sum(len(c) for c in centres.values())
    print(f"wrote {args.output}: {pipe.name} with {n_centres} style centres for {len(centres)} classes "
          f"(k <= {args.k}, seed {args.seed}) from {len(samples)} samples in {args.data}")
    return 0


# ----------------------------------------------------------------------------- styles
def _load_style_code_model(args):
    """The `styles` commands' model: a synthesis model with per-region style codes (SEAN)."""
    from .pipelines import load

    pipe = load(args.model, task="synthesize", device=args.device)
    if "codes" not in pipe.style_kinds:
        raise InputError(f"model '{pipe.name}' ({pipe.arch}) has no per-region style codes (a SEAN model "
                         "does)")
    return pipe


def cmd_styles_extract(args) -> int:
    from .data import io
    from .data.labels import load_palette
    from .styles import StyleCodes

    photos_arg, labels_arg = args.input, args.labels
    if args.image is not None:  # the old spelling: `styles extract LABELS --image PHOTO`
        if args.labels is not None:
            raise InputError("--image is the old spelling of the photo: give the photo first and the label "
                             "map with --labels (gancanvas styles extract PHOTO --labels LABELS)")
        print("warning: `styles extract LABELS --image PHOTO` is deprecated; use `gancanvas styles extract "
              "PHOTO --labels LABELS`", file=sys.stderr)
        photos_arg, labels_arg = args.image, args.input
    if labels_arg is None:
        raise InputError("styles extract needs the photo's label map: --labels LABELS (a file, or a folder "
                         "matched by file name)")
    photos, src = Path(photos_arg), Path(labels_arg)
    for path in (photos, src, *([Path(args.instances)] if args.instances else [])):
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
    palette = load_palette(args.palette) if args.palette else None
    pipe = _load_style_code_model(args)
    instances = Path(args.instances) if args.instances else None

    def extract(label_path: Path, photo: Path, inst: Path | None) -> StyleCodes:
        try:
            return pipe.extract_styles(label_path, photo, inst, palette=palette, source=str(label_path),
                                       image_source=str(photo))
        except GancanvasError as err:
            raise _about(err, label_path) from None

    if photos.is_file():
        if src.is_dir() or (instances is not None and instances.is_dir()):
            raise InputError("a folder for --labels or --instances needs a folder of photos")
        out = Path(args.output)
        codes = extract(src, photos, instances)
        codes.save(out)
        print(f"wrote {out}: codes of {int(codes.present.sum())} of {codes.space.regions} regions "
              f"({', '.join(codes.present_names())})")
        return 0

    # Batch: label maps (and instance maps) matched by stem; one style file per photo, and their mean.
    if not src.is_dir():
        raise InputError(f"{src}: a folder of photos needs a folder of label maps (--labels)")
    images, failed = _batch_inputs(photos)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[StyleCodes] = []

    def work(photo: Path) -> None:
        label_path = _by_stem(photo, src, io.IMAGE_EXTS)
        inst = _by_stem(photo, instances, _INSTANCE_EXTS) if instances is not None else None
        if label_path is None:
            raise InputError(f"{photo}: no label map with the same name in {src}")
        if instances is not None and inst is None:
            raise InputError(f"{photo}: no instance map with the same name in {instances}")
        codes = extract(label_path, photo, inst)
        codes.save(out_dir / (photo.stem + ".safetensors"))
        done.append(codes)

    _, skipped = _run_batch(images, "extract", work)
    if args.mean and done:
        StyleCodes.mean(done, source=f"mean of {len(done)} images in {photos}").save(args.mean)
        print(f"wrote {args.mean} (mean codes of {len(done)} images)")
    return _batch_summary(len(done), failed + skipped, out_dir, "style files")


def cmd_styles_mean(args) -> int:
    from .data.labels import find_label_dataset, load_palette
    from .styles import StyleError

    data = Path(args.data)
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}: must be >= 1")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be >= 1")
    palette = load_palette(args.palette) if args.palette else None
    pipe = _load_style_code_model(args)
    samples = find_label_dataset(data, args.phase, need_images=True, instances=pipe.uses_instances)
    if args.limit is not None:
        samples = samples[:args.limit]
    failed = []

    def skip(sample, err) -> None:
        _err(f"{_about(err, sample.labels)} (skipped)")
        failed.append(sample)

    bar = _progress(None, len(samples), "styles mean")
    try:
        mean, used = pipe.mean_styles(samples, palette=palette, batch_size=args.batch_size,
                                      progress=bar.update, skip=skip)
    except StyleError:
        if not failed:
            raise
        raise InputError(f"{data}: none of the {len(samples)} samples could be read") from None
    finally:
        bar.close()
    mean.source = f"mean of {used} images in {data}"
    mean.save(args.output)
    absent = [n for n, p in zip(mean.names, mean.present.tolist()) if not p]
    print(f"wrote {args.output}: mean codes of {used} images for {int(mean.present.sum())} of "
          f"{mean.space.regions} regions" + (f"; never seen: {', '.join(absent)}" if absent else "")
          + (f"; {len(failed)} skipped" if failed else ""))
    return 0 if not failed else 2


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    import numpy as np

    from .data import io
    from .data.masks import MaskSampler
    from .data.synthetic import render_scene
    from .pipelines import load

    out = Path(args.output)
    pipe = load(args.model, task="inpaint", device=args.device)
    scene = render_scene(args.seed, args.size, args.size)
    rng = np.random.default_rng(args.seed)
    mask = MaskSampler("free-form").sample(args.size, args.size, rng) > 0
    res = pipe.run(scene.image, mask, flow=True)
    before = scene.image.copy()
    before[mask] = 255  # the hole shown white, as the editors show it
    io.write_image(out / "before.png", before)
    io.write_image(out / "mask.png", (mask * 255).astype(np.uint8))
    io.write_image(out / "after.png", res.image)
    io.write_image(out / "original.png", scene.image)
    sheet = [before, res.image, scene.image]
    if res.flow is not None:
        io.write_image(out / "flow.png", res.flow)
        sheet.append(res.flow)
    io.write_image(out / "comparison.png", np.concatenate(sheet, axis=1))
    print(f"model {pipe.name}: inpainted a {args.size}x{args.size} built-in scene "
          f"({100 * mask.mean():.1f}% hole)")
    print(f"wrote {out}/before.png, after.png, mask.png, original.png, comparison.png")
    return 0


# ----------------------------------------------------------------------------- data
def cmd_data_masks(args) -> int:
    from .data.masks import write_mask_set

    manifest = write_mask_set(args.output, kind=args.kind, size=args.size, count=args.count, seed=args.seed)
    n = len(manifest["files"]) if isinstance(manifest, dict) and "files" in manifest else args.count
    print(f"wrote {n} {args.kind} masks ({args.size}px, seed {args.seed}) to {args.output}")
    return 0


def cmd_data_margins(args) -> int:
    from .data.margins import write_margin_set

    known = args.known if args.known is not None else args.size // 2
    sides = [x.strip() for x in args.sides.split(",") if x.strip()]
    man = write_margin_set(args.output, size=args.size, known=known, count=args.count, seed=args.seed,
                           mode=args.mode, sides=sides, min_margin=args.min_margin)
    print(f"wrote {len(man['files'])} {args.mode} margins ({known}px known box on a {args.size}px canvas, "
          f"seed {args.seed}) to {args.output}")
    return 0


def cmd_data_scenes(args) -> int:
    from .data.synthetic import write_scenes

    write_scenes(args.output, size=args.size, count=args.count, seed=args.seed, width=args.width)
    print(f"wrote {args.count} scenes ({args.size}px, seed {args.seed}) to {args.output}")
    return 0


# ----------------------------------------------------------------------------- train / eval
def cmd_train(args) -> int:
    from .train import run

    run_dir = run(args.config, run_dir=args.run_dir, resume=args.resume, init=args.init,
                  overrides=args.overrides)
    if run_dir is not None and os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"run folder: {run_dir}")
    return 0


_EVAL_PROTOCOLS = {
    # option -> (task, protocol name)
    "--masks": ("inpaint", "inpainting"),
    "--margins": ("outpaint", "outpainting"),
    "--labels": ("synthesize", "label-to-image"),
}


def _eval_baselines() -> dict[str, dict]:
    from .eval.baselines import BASELINES, OUTPAINT_BASELINES, SYNTHESIS_BASELINES

    return {"--masks": BASELINES, "--margins": OUTPAINT_BASELINES, "--labels": SYNTHESIS_BASELINES}


def _eval_method(name: str, option: str, device: str):
    """A baseline function or a loaded pipeline of the protocol of `option`; one-line errors."""
    from .eval.methods import check_task
    from .pipelines import load

    baselines = _eval_baselines()
    task, what = _EVAL_PROTOCOLS[option]
    if name in baselines[option]:
        return name, baselines[option][name]
    for other, table in baselines.items():
        if name in table:
            kind = _EVAL_PROTOCOLS[other][1]
            raise InputError(f"'{name}' is {'an' if kind[0] in 'aeiou' else 'a'} {kind} baseline ({other}); "
                             f"{what} baselines ({option}): {', '.join(baselines[option])}")
    pipe = load(name, device=device)
    check_task(pipe, task, option)
    return pipe.name, pipe


def cmd_eval(args) -> int:
    from .eval.protocol import compare, evaluate

    given = [opt for opt, v in (("--masks", args.masks), ("--margins", args.margins),
                                ("--labels", args.labels)) if v]
    if len(given) != 1:
        got = f" (got {' and '.join(given)})" if given else ""
        raise InputError("give one of --masks DIR (inpainting), --margins DIR (outpainting) or --labels DIR "
                         f"(label to image){got}")
    option = given[0]
    misplaced = [(opt, home) for opt, v, home in (("--instances", args.instances, "--labels"),
                                                  ("--style", args.style, "--labels"),
                                                  ("--palette", args.palette, "--labels"),
                                                  ("--pair", args.pair, "--masks"))
                 if v is not None and option != home]
    if misplaced:
        opt, home = misplaced[0]
        raise InputError(f"{opt} is an option of the {_EVAL_PROTOCOLS[home][1]} protocol ({home}), "
                         f"not of {option}")
    for path, opt in ((args.images, "--images"), (args.masks or args.margins or args.labels, option),
                      (args.instances, "--instances")):
        if path is not None and not Path(path).is_dir():
            raise InputError(f"{path}: no such folder ({opt})")
    baselines = _eval_baselines()[option]
    for b in args.baseline:
        if b not in baselines:
            raise InputError(f"unknown {_EVAL_PROTOCOLS[option][1]} baseline '{b}' "
                             f"(known: {', '.join(baselines)})")
    methods = dict(_eval_method(name, option, args.device) for name in [args.model, *args.baseline])
    default_metrics = "psnr,ssim,rmse,l1" if option == "--labels" else "hole_l1,psnr,ssim"
    metrics = tuple(m.strip() for m in (args.metrics or default_metrics).split(",") if m.strip())
    results = {}
    bar = sys.stderr.isatty()  # progress bars for people, not for logs
    for name, method in methods.items():
        if option == "--masks":
            fn = method
            if hasattr(method, "task"):  # a pipeline; baselines are plain functions
                fn = lambda img, m, _p=method: _p.run(img, m).image  # noqa: E731
            results[name] = evaluate(fn, args.images, args.masks, metrics=metrics, pair=args.pair or "cycle",
                                     progress=bar)
        elif option == "--margins":
            from .eval.outpaint import evaluate_outpaint

            results[name] = evaluate_outpaint(method, args.images, args.margins, metrics=metrics,
                                              device=args.device, progress=bar)
        else:
            from .eval.synthesis import evaluate_synthesis

            if hasattr(method, "task") and method.uses_instances and not args.instances:
                print(f"note: model '{name}' uses instance maps; without --instances the label map stands in",
                      file=sys.stderr)
            results[name] = evaluate_synthesis(method, args.labels, args.images, instances_dir=args.instances,
                                               metrics=metrics, style=args.style or "photo", seed=args.seed,
                                               palette=args.palette, device=args.device, progress=bar)
    if len(results) == 1:
        print(next(iter(results.values())).table())
    else:
        print(compare(results))
    if args.json:
        payload = {k: v.to_dict() for k, v in results.items()}
        from .utils.fs import atomic_save_bytes

        atomic_save_bytes(args.json, json.dumps(payload, indent=2).encode())
        print(f"wrote {args.json}")
    return 0


def cmd_models(args) -> int:
    from .registry import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':24} {'kind':12} {'task':10} {'arch':14} config / description")
    for r in rows:
        extra = r["config"] or r["description"]
        flag = "" if r["available"] else " (weights missing)"
        default = f" [default for {', '.join(r['default_for'])}]" if r["default_for"] else ""
        print(f"{r['name']:24} {r['kind']:12} {r['task']:10} {r['arch']:14} {extra}{flag}{default}")
    return 0


# ----------------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    from .server.settings import Settings

    try:
        from .server.app import serve
    except ImportError as err:  # fastapi / uvicorn / python-multipart are the `web` extra
        from .errors import MissingDependencyError

        raise MissingDependencyError(f"the web server needs the web extra ({err.name} is missing): "
                                     "pip install 'gancanvas[web]'") from None
    if args.models_dir and not Path(args.models_dir).is_dir():
        raise InputError(f"{args.models_dir}: no such folder (--models-dir)")
    try:
        settings = Settings(models_dir=args.models_dir, device=args.device, max_pixels=args.max_pixels,
                            max_upload_bytes=args.max_upload_bytes, queue_size=args.queue_size)
    except ValueError as err:
        raise InputError(str(err)) from None
    serve(settings, host=args.host, port=args.port, max_connections=args.max_connections)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gancanvas", description="Context-aware image synthesis with GANs.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"gancanvas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def device_arg(sp):
        sp.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    sp = sub.add_parser("demo", help="inpaint a built-in sample with the default model, write before/after")
    sp.add_argument("-o", "--output", default="gancanvas-demo",
                    help="output folder (default: gancanvas-demo)")
    sp.add_argument("--model", default=None, help="model name or file (default: the built-in default)")
    sp.add_argument("--size", type=int, default=256)
    sp.add_argument("--seed", type=int, default=7)
    device_arg(sp)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("inpaint", help="fill the holes of an image (or a folder of images)")
    sp.add_argument("input", help="image file or folder of images")
    sp.add_argument("--mask", required=True, help="mask file (non-zero or alpha = hole) or folder (by stem)")
    sp.add_argument("--sketch", help="optional guidance lines (file or folder), for guided models")
    sp.add_argument("--model", default=None, help="model name or file (default: the built-in default)")
    sp.add_argument("-o", "--output", required=True, help="output file, or folder in batch mode")
    sp.add_argument("--flow", help="also write the attention-flow picture (file, or folder in batch mode)")
    sp.add_argument("--resize-mask", action="store_true", help="resize masks of another size (nearest)")
    device_arg(sp)
    sp.set_defaults(func=cmd_inpaint)

    sp = sub.add_parser(
        "outpaint", help="extend an image (or a folder of images) beyond its borders",
        description="Extend images beyond their borders. A margin is pixels (64) or a percentage of the "
                    "image (50%: of its height for --top/--bottom, of its width for --left/--right); "
                    "the known pixels are kept exactly.")
    sp.add_argument("input", help="image file or folder of images")
    for side in SIDES:
        sp.add_argument(f"--{side}", default=None, metavar="PX|N%",
                        help=f"pixels or percentage to add at the {side} (default 0)")
    sp.add_argument("--model", default=None, help="model name or file (default: the built-in default)")
    sp.add_argument("-o", "--output", required=True, help="output file, or folder in batch mode")
    device_arg(sp)
    sp.set_defaults(func=cmd_outpaint)

    sp = sub.add_parser(
        "synthesize", help="turn a label map (or a folder of them) into an image",
        description="Label map (+ instance map, + style) to image with a pix2pixHD, SPADE or SEAN model. "
                    "Label maps are grey or indexed ids, or colours read through --palette (or the "
                    "model's own palette).")
    sp.add_argument("input", help="label map file or folder of label maps")
    sp.add_argument("--instances",
                    help="instance map (16-bit ids, Cityscapes rule) or folder (matched by stem)")
    sp.add_argument("--model", default=None, help="model name or file (default: the built-in default)")
    sp.add_argument("--palette", default=None,
                    help="colours of the ids for colour label maps: scenes, cityscapes, celebamask-hq or "
                         "a JSON file")
    style = sp.add_mutually_exclusive_group()
    style.add_argument("--style-cluster", type=int, default=None, metavar="K",
                       help="pix2pixHD: stored k-means centre K of each class (gancanvas features cluster)")
    style.add_argument("--style-random", action="store_true",
                       help="pix2pixHD: a random stored centre per instance; SPADE (VAE): a random z; "
                            "drawn with --seed")
    style.add_argument("--style-image", default=None, metavar="IMG",
                       help="take the styles from a photo (file, or folder matched by stem)")
    style.add_argument("--styles", "--style", dest="style", default=None, metavar="FILE",
                       help="SEAN: a style-code file (gancanvas styles extract / styles mean); the base "
                            "codes that the options below edit")
    sp.add_argument("--region-style", action="append", default=[], metavar="REGION=FILE",
                    help="SEAN: take the code of one region (a name such as hair, or an id such as 13) from "
                         "another style file; repeatable")
    sp.add_argument("--interpolate", default=None, metavar="FILE:T[:REGIONS]",
                    help="SEAN: move the codes toward FILE's by T in [0, 1] (0 = unchanged, 1 = FILE's), all "
                         "regions or a comma list of names / ids")
    sp.add_argument("--crossover", nargs=2, default=None, metavar=("FLAGS", "FILE"),
                    help="SEAN: per style block, coarse to fine, 1 = keep the codes, 0 = take FILE's, e.g. "
                         "1,1,0,0,0,0 (applied after --region-style and --interpolate)")
    sp.add_argument("--mean", default=None, metavar="FILE",
                    help="SEAN: codes for the regions the style files lack (gancanvas styles mean)")
    sp.add_argument("--zero-missing", action="store_true",
                    help="SEAN: regions without a code get a zero code instead of an error")
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of random styles, VAE z and SEAN noise (default 0)")
    sp.add_argument("-o", "--output", required=True, help="output file, or folder in batch mode")
    device_arg(sp)
    sp.set_defaults(func=cmd_synthesize)

    sp = sub.add_parser("features", help="pix2pixHD instance features: per-class k-means style clusters")
    fsub = sp.add_subparsers(dest="features_command", required=True, metavar="WHAT")
    cp = fsub.add_parser(
        "cluster", help="encode a label dataset and store per-class k-means style centres in the model",
        description="Encode every training instance with the model's feature encoder, run k-means per "
                    "class (instances larger than half of H*W/32, as the official encode_features.py) "
                    "and write the model again with the centres stored in it. The output is a complete "
                    "model file (the model with its clusters), not a clusters-only file: give it to "
                    "`gancanvas synthesize --model` with --style-cluster K or --style-random.")
    cp.add_argument("model", help="pix2pixHD model name or file trained with instance features")
    cp.add_argument("--data", required=True,
                    help="label dataset folder: labels/ images/ instances/ (gancanvas data scenes) or the "
                         "official train_label/ train_img/ train_inst/")
    cp.add_argument("-k", type=int, default=10, help="centres per class (at most the model's n_clusters; "
                                                      "default 10)")
    cp.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    cp.add_argument("--phase", default="train",
                    help="official layout: the {phase}_label/ folders (default train)")
    cp.add_argument("--palette", default=None,
                    help="for colour label maps: scenes, cityscapes or a JSON file")
    cp.add_argument("-o", "--output", required=True,
                    help="model file to write: the model with its clusters stored (may be MODEL itself)")
    device_arg(cp)
    cp.set_defaults(func=cmd_features_cluster)

    sp = sub.add_parser("styles", help="SEAN per-region style codes: extract them from photos, average them")
    ssub = sp.add_subparsers(dest="styles_command", required=True, metavar="WHAT")
    ep = ssub.add_parser(
        "extract", help="the style codes of a photo under its label map (file, or folders by stem)",
        description="Encode a photo's per-region style codes under its label map with a SEAN model and "
                    "write them as a style file (safetensors) for `gancanvas synthesize --styles`. With "
                    "folders: one style file per photo (label maps matched by file name), and --mean.")
    ep.add_argument("input", metavar="PHOTO", help="the photo, or a folder of photos")
    ep.add_argument("--labels", default=None,
                    help="the photo's label map (same size), or a folder of them (matched by file name)")
    ep.add_argument("--image", default=None, help=argparse.SUPPRESS)  # deprecated: LABELS --image PHOTO
    ep.add_argument("--instances", default=None, help="instance map or folder, for models that use them")
    ep.add_argument("--model", default=None, help="SEAN model name or file (default: the built-in default)")
    ep.add_argument("--palette", default=None,
                    help="for colour label maps: scenes, cityscapes, celebamask-hq or a JSON file")
    ep.add_argument("--mean", default=None, metavar="FILE",
                    help="folders: also write the per-region mean of all codes (for regions a photo lacks)")
    ep.add_argument("-o", "--output", required=True, help="style file, or folder in batch mode")
    device_arg(ep)
    ep.set_defaults(func=cmd_styles_extract)
    mp = ssub.add_parser(
        "mean", help="per-class mean style codes over a dataset (for regions a style file lacks)",
        description="Encode every photo of a label dataset and average each region's codes over the "
                    "photos that have it (the official SEAN mean style codes). Regions never seen stay "
                    "absent. The result is a style file for `gancanvas synthesize --mean` (or --styles).")
    mp.add_argument("model", help="SEAN model name or file")
    mp.add_argument("--data", required=True,
                    help="dataset folder: {phase}_label/ + {phase}_img/ (official), labels/ + images/ "
                         "(gancanvas data scenes) or {phase}/labels/ + {phase}/images/ (SEAN)")
    mp.add_argument("--phase", default="train", help="the official layouts' phase (default train)")
    mp.add_argument("--palette", default=None,
                    help="for colour label maps: scenes, cityscapes, celebamask-hq or a JSON file")
    mp.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N samples only")
    mp.add_argument("--batch-size", type=int, default=8, help="photos encoded at once (default 8)")
    mp.add_argument("-o", "--output", required=True, help="style file to write")
    device_arg(mp)
    mp.set_defaults(func=cmd_styles_mean)

    sp = sub.add_parser("data", help="write built-in data: fixed mask sets, procedural scenes")
    dsub = sp.add_subparsers(dest="data_command", required=True, metavar="WHAT")
    mp = dsub.add_parser("masks", help="a fixed, versioned mask set with a manifest")
    mp.add_argument("--kind", default="free-form", help="free-form, box or free-form+box")
    mp.add_argument("--size", type=int, default=256)
    mp.add_argument("--count", type=int, default=1000)
    mp.add_argument("--seed", type=int, default=0)
    mp.add_argument("-o", "--output", required=True)
    mp.set_defaults(func=cmd_data_masks)
    gp = dsub.add_parser("margins", help="a fixed, versioned outpainting margin set with a manifest",
                         description="Known-box positions on a canvas for outpainting evaluation: mask PNGs "
                                     "(255 = unknown) and manifest.json (seed, settings, version, margins).")
    gp.add_argument("--size", type=int, default=256, help="canvas side (default 256)")
    gp.add_argument("--known", type=int, default=None, help="known box side (default half the canvas)")
    gp.add_argument("--count", type=int, default=1000)
    gp.add_argument("--seed", type=int, default=0)
    gp.add_argument("--mode", default="random", choices=["random", "one-sided"],
                    help="random: the box anywhere (official SRN); one-sided: touching one edge per axis")
    gp.add_argument("--sides", default="top,left,bottom,right",
                    help="comma list of the sides that may get a margin (default all four)")
    gp.add_argument("--min-margin", type=int, default=0, help="smallest margin on an allowed side")
    gp.add_argument("-o", "--output", required=True)
    gp.set_defaults(func=cmd_data_margins)
    scp = dsub.add_parser("scenes", help="built-in procedural scenes: images, label and instance maps")
    scp.add_argument("--size", type=int, default=256, help="height (and width unless --width)")
    scp.add_argument("--width", type=int, default=None)
    scp.add_argument("--count", type=int, default=500)
    scp.add_argument("--seed", type=int, default=0)
    scp.add_argument("-o", "--output", required=True)
    scp.set_defaults(func=cmd_data_scenes)

    sp = sub.add_parser("train", help="train a model from a YAML config (torchrun for many processes)")
    sp.add_argument("config", help="YAML config, e.g. configs/deepfill_v2/scenes-256.yaml")
    sp.add_argument("--run-dir", default=None, help="run folder (default: runs/<config>-<time>)")
    sp.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    sp.add_argument("--init", default=None, help="initialise the generator from a checkpoint or model file")
    sp.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. train.batch_size=8")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser(
        "eval", help="evaluate a model on a fixed protocol: masks, margins or label maps",
        description="Score a model (and baselines) on a fixed protocol: --masks DIR (inpainting: a mask "
                    "set), --margins DIR (outpainting: a margin set) or --labels DIR (label to image: "
                    "label maps paired with the --images photos by file stem). The model's task must match.")
    sp.add_argument("model", help="model name or file, or a baseline (inpainting: telea, ns; outpainting: "
                                  "reflect, telea, ns; label to image: class-mean)")
    sp.add_argument("--images", required=True, help="ground-truth images (photos) folder")
    sp.add_argument("--masks", default=None, help="inpainting: a mask set folder (gancanvas data masks)")
    sp.add_argument("--margins", default=None,
                    help="outpainting: a margin set folder (gancanvas data margins)")
    sp.add_argument("--labels", default=None, help="label to image: label maps folder (paired by stem)")
    sp.add_argument("--instances", default=None, help="label to image: instance maps folder (paired by stem)")
    sp.add_argument("--style", default=None, choices=["photo", "default"],
                    help="label to image: styles from the photo itself (reconstruction; default) or each "
                         "model's default style")
    sp.add_argument("--seed", type=int, default=0, help="label to image: seed of random styles and noise")
    sp.add_argument("--palette", default=None, help="label to image: colours of colour label maps")
    sp.add_argument("--metrics", default=None,
                    help="comma list (default hole_l1,psnr,ssim; label to image psnr,ssim,rmse,l1; also "
                         "fid,lpips)")
    sp.add_argument("--baseline", action="append", default=[],
                    help="add a baseline column (repeatable): telea, ns (masks); reflect, telea, ns "
                         "(margins); class-mean (labels)")
    sp.add_argument("--pair", default=None, choices=["cycle", "stem"], help="inpainting: image-mask pairing")
    sp.add_argument("--json", default=None, help="also write the results as JSON")
    device_arg(sp)
    sp.set_defaults(func=cmd_eval)

    from .convert import add_convert_parser

    add_convert_parser(sub)

    from .server.settings import MAX_CONNECTIONS, MAX_PIXELS, MAX_UPLOAD_BYTES, QUEUE_SIZE

    sp = sub.add_parser("serve", help="the web editor and REST API (http://127.0.0.1:7860/)")
    sp.add_argument("--models-dir", default=None, help="folder of model files (*.safetensors) to offer")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)")
    sp.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    sp.add_argument("--max-upload-bytes", type=int, default=MAX_UPLOAD_BYTES,
                    help=f"largest request body (default {MAX_UPLOAD_BYTES}); 413 beyond")
    sp.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                    help=f"largest image or canvas in pixels (default {MAX_PIXELS}); 413 beyond")
    sp.add_argument("--queue-size", type=int, default=QUEUE_SIZE,
                    help=f"jobs that may wait behind the running one (default {QUEUE_SIZE}); 503 beyond")
    sp.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                    help=f"open connections (default {MAX_CONNECTIONS}); 503 beyond")
    device_arg(sp)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("models", help="list built-in models and architectures")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `train CONFIG --run-dir D key=value ...`: argparse stops collecting the trailing
        # positional overrides at the first option, so the ones after it arrive here.
        overrides_only = all("=" in e and not e.startswith("-") for e in extra)
        if getattr(args, "command", None) == "train" and overrides_only:
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if os.environ.get("GANCANVAS_DEBUG"):
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except GancanvasError as err:
        _err(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
