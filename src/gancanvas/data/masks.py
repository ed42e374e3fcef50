"""Hole masks for training and evaluation: DeepFill brush strokes, boxes, fixed evaluation sets.

All masks are float32 HxW numpy arrays with values in {0, 1}, **1 = hole** (unknown). Every
random draw comes from a `numpy.random.Generator` passed in by the caller, never from the global
RNG, so a data loader worker, a test and an evaluation set each control their own stream.

The training masks follow the official DeepFill code (see REFERENCE.md 1.1 and 2.4), written
afresh with two deliberate departures: non-square images are drawn correctly (the official
brush code swaps H and W), and no random flips are applied (the official flips were no-ops, so
not flipping is what the official code really does).
"""

from __future__ import annotations

import inspect
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError, InputError
from . import filesets

__all__ = [
    "Stroke",
    "brush_strokes",
    "render_strokes",
    "free_form_mask",
    "bbox",
    "bbox_to_mask",
    "box_mask",
    "union",
    "MaskSampler",
    "MASK_KINDS",
    "DEFAULT_BINS",
    "area_bin",
    "write_mask_set",
    "read_mask_set",
    "MASK_SET_FORMAT",
    "MASK_SET_VERSION",
]

MASK_KINDS = ("free-form", "box", "free-form+box")
DEFAULT_BINS: tuple[tuple[float, float], ...] = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60))
MASK_SET_FORMAT = "gancanvas-mask-set"
# Bump when the sampling or the rendering changes: a set written by another version differs.
MASK_SET_VERSION = 1


# --------------------------------------------------------------------------------------------
# Free-form brush strokes (DeepFill v2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stroke:
    """One brush stroke: a polyline through ``points`` ((x, y) pixel coordinates) of ``width`` px."""

    points: tuple[tuple[int, int], ...]
    width: int


def _check_range(name: str, lo: float, hi: float, minimum: float = 0) -> None:
    if not (minimum <= lo <= hi):
        raise ConfigError(f"mask parameters: need {minimum} <= min_{name} <= max_{name}, got {lo}, {hi}")


def brush_strokes(
    h: int,
    w: int,
    rng: np.random.Generator,
    *,
    min_strokes: int = 1,
    max_strokes: int = 3,
    min_vertices: int = 4,
    max_vertices: int = 11,
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
    min_width: float = 12,
    max_width: float = 40,
    average_radius: float | None = None,
) -> list[Stroke]:
    """The geometry of DeepFill v2 brush strokes (``brush_stroke_mask``), defaults as official.

    Bounds are inclusive: the official ``randint(1, 4)`` strokes and ``randint(4, 12)`` vertices
    are ``min/max_strokes = 1/3`` and ``min/max_vertices = 4/11``. Per stroke: the angles
    alternate between ``2*pi - U(a_min, a_max)`` and ``U(a_min, a_max)`` around ``mean_angle``;
    a uniform start point, then ``n_vertices`` steps of length
    ``clip(N(r, r // 2), 0, 2r)`` with ``r = average_radius`` (default ``sqrt(h² + w²) / 8``),
    each new point clipped to the image; width ``int(U(min_width, max_width))``.
    A stroke therefore has ``n_vertices + 1`` points.
    """
    _check_range("strokes", min_strokes, max_strokes, 1)
    _check_range("vertices", min_vertices, max_vertices, 1)
    _check_range("width", min_width, max_width, 1)
    if h < 1 or w < 1:
        raise ConfigError(f"mask size must be positive, got {h}x{w}")
    r_avg = math.sqrt(h * h + w * w) / 8 if average_radius is None else float(average_radius)
    strokes = []
    for _ in range(int(rng.integers(min_strokes, max_strokes + 1))):
        n_vertex = int(rng.integers(min_vertices, max_vertices + 1))
        a_min = mean_angle - rng.uniform(0, angle_range)
        a_max = mean_angle + rng.uniform(0, angle_range)
        angles = rng.uniform(a_min, a_max, size=n_vertex)
        angles[::2] = 2 * math.pi - angles[::2]
        angles = angles.tolist()
        # The official code reads `h, w = mask.size` (PIL gives (width, height)), so x was drawn
        # in [0, H) and y in [0, W): harmless for square images, wrong otherwise (#114, #337).
        # Here x runs over the width and y over the height.
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        points = [(x, y)]
        # `r_avg // 2` (floor of a float) as in the official code: 22.0, not 22.6, at 256².
        steps = np.clip(rng.normal(r_avg, r_avg // 2, size=n_vertex), 0, 2 * r_avg).tolist()
        for r, a in zip(steps, angles):
            # Clipped to [0, w] like the official code (one pixel past the edge is harmless);
            # plain min/max on floats because np.clip on scalars dominated the run time.
            x = int(min(max(x + r * math.cos(a), 0.0), w))
            y = int(min(max(y + r * math.sin(a), 0.0), h))
            points.append((x, y))
        width = int(rng.uniform(min_width, max_width))
        strokes.append(Stroke(tuple(points), width))
    return strokes


def _render_strokes_pil(h: int, w: int, strokes: Sequence[Stroke], fill: int) -> Image.Image:
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for s in strokes:
        draw.line(list(s.points), fill=fill, width=s.width)
        r = s.width // 2
        # Round joints and caps, as the official code: a disc of about the stroke width per point.
        for x, y in s.points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    return img


def render_strokes(h: int, w: int, strokes: Sequence[Stroke]) -> np.ndarray:
    """Draw strokes (PIL ``ImageDraw.line`` + an ellipse per point) into a float32 HxW {0,1} mask."""
    return np.asarray(_render_strokes_pil(h, w, strokes, 1), dtype=np.float32)


def free_form_mask(h: int, w: int, rng: np.random.Generator, **params: Any) -> np.ndarray:
    """A DeepFill v2 free-form (brush stroke) mask, float32 HxW in {0, 1}, 1 = hole.

    ``params`` are those of `brush_strokes` (official defaults). No flip is applied: the
    official code's random flips discarded their result, so they never happened there either.
    """
    return render_strokes(h, w, brush_strokes(h, w, rng, **params))


# --------------------------------------------------------------------------------------------
# Boxes (DeepFill v1 / v2 `random_bbox` + `bbox2mask`)
# --------------------------------------------------------------------------------------------


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ConfigError(f"mask parameter {name} must be an int or a pair of ints, got {value!r}") from None
    return int(a), int(b)


def bbox(
    h: int,
    w: int,
    rng: np.random.Generator,
    *,
    height: int | None = None,
    width: int | None = None,
    margin: int | Sequence[int] = 0,
) -> tuple[int, int, int, int]:
    """A random box ``(top, left, height, width)`` as the official ``random_bbox``.

    ``top`` is uniform in ``[margin_v, h - margin_v - height)`` (likewise ``left``), upper bound
    exclusive as ``tf.random_uniform``; a box that fits exactly sits at the margin. Defaults scale
    the official 128x128 at 256x256: ``height = h // 2``, ``width = w // 2``. ``margin`` is an int
    or ``(vertical, horizontal)``. DeepFill v1's local critic needs this box; `bbox_to_mask`
    turns it into a hole.
    """
    bh = h // 2 if height is None else int(height)
    bw = w // 2 if width is None else int(width)
    mv, mh = _pair(margin, "margin")
    if bh < 1 or bw < 1 or mv < 0 or mh < 0 or bh > h - 2 * mv or bw > w - 2 * mh:
        raise ConfigError(f"a {bw}x{bh} box with margins {mh},{mv} does not fit a {w}x{h} image")
    top = int(rng.integers(mv, h - mv - bh)) if h - mv - bh > mv else mv
    left = int(rng.integers(mh, w - mh - bw)) if w - mh - bw > mh else mh
    return top, left, bh, bw


def bbox_to_mask(
    h: int,
    w: int,
    box: tuple[int, int, int, int],
    rng: np.random.Generator | None = None,
    *,
    max_delta: int | Sequence[int] | None = None,
) -> np.ndarray:
    """The official ``bbox2mask``: ``mask[t+dh : t+bh-dh, l+dw : l+bw-dw] = 1``.

    ``dh = randint(max_delta_h // 2 + 1)`` (likewise ``dw``), so each side shrinks by 0..delta/2.
    ``max_delta`` is an int or ``(vertical, horizontal)``; default ``(h // 8, w // 8)`` (the
    official 32 at 256). With ``rng=None`` or ``max_delta=0`` the whole box is the hole (the
    official inference setting).
    """
    top, left, bh, bw = box
    mdh, mdw = (h // 8, w // 8) if max_delta is None else _pair(max_delta, "max_delta")
    if mdh < 0 or mdw < 0:
        raise ConfigError(f"max_delta must be >= 0, got {max_delta!r}")
    dh = int(rng.integers(0, mdh // 2 + 1)) if rng is not None else 0
    dw = int(rng.integers(0, mdw // 2 + 1)) if rng is not None else 0
    mask = np.zeros((h, w), np.float32)
    mask[top + dh : top + bh - dh, left + dw : left + bw - dw] = 1.0
    return mask


def box_mask(
    h: int,
    w: int,
    rng: np.random.Generator,
    *,
    height: int | None = None,
    width: int | None = None,
    max_delta: int | Sequence[int] | None = None,
    margin: int | Sequence[int] = 0,
) -> np.ndarray:
    """A random box hole (official DeepFill v1/v2 rule): `bbox` then `bbox_to_mask`.

    At 256x256 the defaults give the official 128x128 box shrunk by 0..16 px per side, i.e.
    holes of 96..128 px per side.
    """
    box = bbox(h, w, rng, height=height, width=width, margin=margin)
    return bbox_to_mask(h, w, box, rng, max_delta=max_delta)


def union(*masks: np.ndarray) -> np.ndarray:
    """Pixel-wise OR of {0, 1} masks of one shape, as float32."""
    if not masks:
        raise ValueError("union() needs at least one mask")
    shapes = {np.shape(m) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"union() needs masks of one shape, got {sorted(shapes)}")
    out = np.zeros(np.shape(masks[0]), np.float32)
    for m in masks:
        np.maximum(out, np.asarray(m, np.float32) != 0, out=out)
    return out


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


def _defaults(fn) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


_FREE_FORM_PARAMS = _defaults(brush_strokes)
_BOX_PARAMS = _defaults(box_mask)


class MaskSampler:
    """Draws training masks of one kind: ``"free-form"``, ``"box"`` or ``"free-form+box"``.

    ``"free-form+box"`` is the official DeepFill v2 training mask: the union of a box
    (`box_mask`) and brush strokes (`free_form_mask`). ``params`` are the keyword parameters of
    those functions (the two sets have distinct names); unknown kinds or parameters raise
    `ConfigError` at construction, not at the first sample.

        sampler = MaskSampler("free-form+box", max_delta=0)
        mask = sampler.sample(256, 256, np.random.default_rng(0))
    """

    def __init__(self, kind: str, **params: Any) -> None:
        if kind not in MASK_KINDS:
            raise ConfigError(f"unknown mask kind {kind!r} (known: {', '.join(MASK_KINDS)})")
        known: dict[str, Any] = {}
        if "free-form" in kind:
            known.update(_FREE_FORM_PARAMS)
        if "box" in kind:
            known.update(_BOX_PARAMS)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(unknown)} for mask kind {kind!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        self.kind = kind
        self._ff: dict[str, Any] | None = None
        self._box: dict[str, Any] | None = None
        if "free-form" in kind:
            self._ff = {k: params.get(k, v) for k, v in _FREE_FORM_PARAMS.items()}
        if "box" in kind:
            self._box = {k: params.get(k, v) for k, v in _BOX_PARAMS.items()}
        # Validate now (a throw-away draw for the strokes), so a bad config fails when it is
        # loaded, not in a data loader worker hours later. Box sizes depend on the image size
        # and are checked at sampling time.
        if self._ff is not None:
            brush_strokes(8, 8, np.random.default_rng(0), **self._ff)
        if self._box is not None:
            _pair(self._box["margin"], "margin")
            if self._box["max_delta"] is not None:
                _pair(self._box["max_delta"], "max_delta")

    @property
    def params(self) -> dict[str, Any]:
        """All parameters including defaults (``None`` = scaled with the image size)."""
        out: dict[str, Any] = {}
        out.update(self._ff or {})
        out.update(self._box or {})
        return out

    def sample(self, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        """One float32 HxW {0, 1} mask."""
        if self._box is not None and self._ff is not None:
            return union(box_mask(h, w, rng, **self._box), free_form_mask(h, w, rng, **self._ff))
        if self._box is not None:
            return box_mask(h, w, rng, **self._box)
        return free_form_mask(h, w, rng, **self._ff)

    def __repr__(self) -> str:
        return f"MaskSampler({self.kind!r}, {self.params!r})"


# --------------------------------------------------------------------------------------------
# Fixed evaluation sets
# --------------------------------------------------------------------------------------------


def _check_bins(bins: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    try:
        out = [(float(lo), float(hi)) for lo, hi in bins]
    except (TypeError, ValueError):
        raise ConfigError(f"bins must be (low, high) pairs of hole-area percentages, got {bins!r}") from None
    if not out:
        raise ConfigError("bins must not be empty")
    for i, (lo, hi) in enumerate(out):
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"bin {lo:g}-{hi:g}: need 0 <= low < high <= 100 (percent of the image)")
        if i and lo < out[i - 1][1]:
            raise ConfigError(f"bins must be sorted and must not overlap: {out[i - 1]} then {(lo, hi)}")
    return out


def area_bin(area_pct: float, bins: Sequence[Sequence[float]] = DEFAULT_BINS) -> int | None:
    """Index of the bin ``[low, high)`` holding ``area_pct`` (the last bin includes its high end),
    or None when no bin does."""
    last = len(bins) - 1
    for i, (lo, hi) in enumerate(bins):
        if lo <= area_pct < hi or (i == last and area_pct == hi):
            return i
    return None


def _area_pct(mask: np.ndarray) -> float:
    # Rounded once, and the bin computed from the rounded value, so the manifest's numbers and
    # bins always agree when someone recomputes them.
    return round(100.0 * np.count_nonzero(mask) / mask.size, 4)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = _pair(size, "size")
    if h < 1 or w < 1:
        raise ConfigError(f"mask set size must be positive, got {size!r}")
    return h, w


def _draw_set(
    sampler: MaskSampler,
    h: int,
    w: int,
    targets: list[int],
    bins: list[tuple[float, float]],
    rng: np.random.Generator,
) -> list[list[tuple[bytes, float]]]:
    """Rejection-sample masks into area bins; bins that plain samples rarely reach are filled
    with unions of samples. Returns per bin the accepted masks as (PNG bytes, area %), kept
    encoded because 1000 raw 512² masks would hold a gigabyte. Deterministic for a given rng."""
    accepted: list[list[tuple[bytes, float]]] = [[] for _ in bins]

    def need(b: int | None) -> bool:
        return b is not None and len(accepted[b]) < targets[b]

    def accept(b: int, m: np.ndarray, a: float) -> None:
        accepted[b].append((_png_bytes((m != 0).astype(np.uint8) * 255), a))

    # Phase 1: plain samples. The budget is a few draws per mask wanted; rare bins are left to
    # phase 2 rather than drawing for minutes.
    budget = 4 * sum(targets) + 200
    lo_seen, hi_seen = math.inf, -math.inf
    for _ in range(budget):
        if not any(need(b) for b in range(len(bins))):
            break
        m = sampler.sample(h, w, rng)
        a = _area_pct(m)
        lo_seen, hi_seen = min(lo_seen, a), max(hi_seen, a)
        b = area_bin(a, bins)
        if a > 0 and need(b):
            accept(b, m, a)

    # Phase 2: a bin still short (larger holes than one sample usually makes) gets unions of
    # several samples, grown until the area falls in the bin (or overshoots: start again).
    for b, (lo, hi) in enumerate(bins):
        tries = 0
        max_tries = 50 * (targets[b] - len(accepted[b])) + 200
        while need(b) and tries < max_tries:
            tries += 1
            m = sampler.sample(h, w, rng)
            for _ in range(32):
                a = _area_pct(m)
                if area_bin(a, bins) == b and a > 0:
                    accept(b, m, a)
                    break
                if a >= hi:
                    break
                m = union(m, sampler.sample(h, w, rng))
        if need(b):
            raise ConfigError(
                f"cannot fill the hole-area bin {lo:g}-{hi:g}% with {sampler.kind!r} masks at {w}x{h} "
                f"({len(accepted[b])} of {targets[b]} found in {max_tries} attempts; single masks "
                f"covered {lo_seen:.1f}-{hi_seen:.1f}%); choose other bins or another mask kind"
            )
    return accepted


def write_mask_set(
    out_dir: str | os.PathLike,
    *,
    kind: str,
    size: int | Sequence[int],
    count: int,
    seed: int,
    bins: Sequence[Sequence[float]] = DEFAULT_BINS,
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a fixed, versioned evaluation mask set and return its manifest.

    ``count`` masks of ``size`` (an int or ``(h, w)``) drawn by `MaskSampler(kind, **params)`
    from ``numpy.random.default_rng(seed)``, spread evenly over the hole-area ``bins`` (percent
    of the image; ``count % len(bins)`` extra masks go to the first bins). Files are
    ``00000.png``, ... (uint8 0/255, in bin order) and ``manifest.json`` (format, version, kind,
    size, count, seed, generator params, bins, library versions, and per file ``file``,
    ``area_pct``, ``bin`` (index into ``bins``) and ``sha256``). Same arguments and library
    versions -> byte-identical files. All writes are atomic and the manifest is written last, so
    a folder with a manifest is complete. Writing again into a folder that holds the same set
    (same kind, size, count, seed, params, bins) rewrites it, so reruns and resumed training
    runs just work; a *different* set there raises `InputError` unless ``overwrite=True``.
    Raises `ConfigError` when a bin cannot be filled (e.g. 0-10% with boxes of 14-25%).
    """
    h, w = _size(size)
    bins_ = _check_bins(bins)
    if int(count) < 1:
        raise ConfigError(f"mask set count must be >= 1, got {count}")
    count = int(count)
    sampler = MaskSampler(kind, **(params or {}))
    out = Path(out_dir)
    identity = {
        "format": MASK_SET_FORMAT,
        "version": MASK_SET_VERSION,
        "kind": kind,
        "size": [h, w],
        "count": count,
        "seed": int(seed),
        "params": _jsonable(sampler.params),
        "bins": [[lo, hi] for lo, hi in bins_],
    }
    old_files = filesets.open_set(out, identity, "mask set", overwrite)
    per_bin, extra = divmod(count, len(bins_))
    targets = [per_bin + (1 if i < extra else 0) for i in range(len(bins_))]
    rng = np.random.default_rng(int(seed))
    accepted = _draw_set(sampler, h, w, targets, bins_, rng)

    filesets.begin_set(out)
    entries = []
    for b, masks in enumerate(accepted):
        for buf, area in masks:
            entries.append({**filesets.write_file(out, len(entries), buf), "area_pct": area, "bin": b})
    return filesets.finish_set(out, identity, entries, old_files)


def _png_bytes(u8: np.ndarray) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(u8).save(bio, format="PNG")
    return bio.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


_MANIFEST_KEYS = ("format", "version", "kind", "size", "count", "seed", "bins", "files")


def read_mask_set(directory: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """Read and validate a mask set's ``manifest.json``; returns the manifest dict.

    Checks the format and version, the keys, that every listed file exists and that the bins
    and counts agree; with ``verify=True`` also each file's sha256. Raises `InputError` with one
    line naming the problem (missing or corrupt manifest, unknown version, missing file, ...).
    """
    d = Path(directory)
    manifest, mp = filesets.read_manifest(
        d, fmt=MASK_SET_FORMAT, version=MASK_SET_VERSION, keys=_MANIFEST_KEYS, what="mask set",
        how_to_make="create one with `gancanvas data masks` or write_mask_set",
        hints={"gancanvas-margin-set": " (a margin set: evaluate outpainting models with --margins)"})
    try:
        bins = _check_bins(manifest["bins"])
    except ConfigError as exc:
        raise InputError(f"{mp}: corrupt manifest ({exc})") from None
    files = manifest["files"]
    if not isinstance(files, list) or len(files) != manifest["count"]:
        raise InputError(f"{mp}: corrupt manifest (count is {manifest['count']} but files lists "
                         f"{len(files) if isinstance(files, list) else 'no list'})")
    for i, e in enumerate(files):
        if not isinstance(e, dict) or not {"file", "area_pct", "bin"} <= set(e):
            raise InputError(f"{mp}: corrupt manifest (entry {i} needs file, area_pct and bin)")
        if not isinstance(e["bin"], int) or not 0 <= e["bin"] < len(bins):
            raise InputError(f"{mp}: corrupt manifest (entry {i}: bin {e['bin']!r} out of range)")
        filesets.check_listed_file(d, mp, i, e, verify)
    return manifest
