"""Per-region style codes (SEAN): a value type, a file format and the edits users make with them.

A `StyleCodes` holds one style code per region (class) of a model's label set, as extracted from
one image (`StyleCodes.extract`), or averaged over many (`StyleCodes.mean`):

- `codes`: (R, D), or (K, R, D) with one matrix per style block of the generator (K = 6 for
  SEAN) once codes of different images are crossed block by block;
- `present`: (R,) bool, the regions that have a code (classes seen in the source image);
- `space`: the `StyleSpace` the codes belong to: architecture, number of regions, code length,
  number of style blocks, the region names (and their hash) and an id of the style encoder's
  weights. Codes only make sense for the model (the encoder and the per-region transforms) that
  produced them, so every operation between two sets of codes and every use with a model checks
  the spaces and says in one line what differs.

Edits (each returns a new object): `swap(regions, other)` takes some regions' codes from another
image, `interpolate(other, t)` blends all (or some) regions, `crossover(blocks, other)` keeps the
codes of the blocks flagged 1 and takes the others' (flag 0) from another image (coarse blocks
carry shape and colour layout, fine ones texture), `fill_missing(mean)` supplies codes for regions
the source image lacks (the official UI uses the mean codes of the test set for those). Regions are
named by id (13, "13") or by name ("hair") from the model's class names.

    import gancanvas
    from gancanvas.styles import StyleCodes

    pipe = gancanvas.load("sean.safetensors")                  # a Synthesizer
    face = pipe.extract_styles("face_labels.png", "face.png")  # or StyleCodes.load(path, pipe.model)
    other = StyleCodes.load("other.styles.safetensors", pipe.model)
    face["hair"]                                               # the hair code, (D,) (or (K, D))
    edited = face.swap("hair", other).interpolate(other, 0.3).crossover([1, 1, 0, 0, 0, 0], other)
    mean = StyleCodes.mean([face, other])                      # per region, over the codes having it
    image = pipe.synthesize("edited_labels.png", styles=edited.fill_missing(mean))
    edited.save("edited.styles.safetensors")

Every problem (an unknown region, a weight outside [0, 1], flags that do not fit, a file of
another model or class set, a file that is not a style file) is a one-line `StyleError`
(an `InputError`). The command line: `gancanvas styles extract|mean` and
`gancanvas synthesize --styles FILE --region-style REGION=FILE --interpolate FILE:T
--crossover FLAGS FILE --mean FILE`.

File format: safetensors with tensors `codes` (float32) and `present` (uint8), and metadata
`format = gancanvas-styles/1`, the space (`arch`, `regions`, `style_dim`, `n_blocks`,
`class_names` as JSON, `class_hash`, `weights_id`) and `source`. Absent regions are stored as zero
rows.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import StyleError
from .utils.fs import atomic_save_bytes

__all__ = ["StyleSpace", "StyleCodes", "FORMAT", "parse_weight", "parse_block_flags"]

FORMAT = "gancanvas-styles/1"


def _class_hash(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:12]


def _weights_id(tensors: dict[str, torch.Tensor]) -> str:
    """A short hash of named tensors (as float32, sorted by name)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        h.update(name.encode("utf-8"))
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _names_text(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def parse_weight(t: float | str) -> float:
    """An interpolation weight: a number in [0, 1] (a string is parsed); StyleError otherwise."""
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise StyleError(f"interpolation weight must be a number in [0, 1], got {t!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise StyleError(f"interpolation weight must be in [0, 1], got {value:g}")
    return value


def parse_block_flags(blocks: Sequence[int | bool] | str, n_blocks: int) -> list[int]:
    """Crossover flags, one 0 or 1 per style block: a sequence, "1,1,0,0,0,0" or "110000".

    StyleError (one line) unless there are exactly `n_blocks` flags, each 0 or 1.
    """
    if isinstance(blocks, str):
        text = blocks.strip()
        if text and set(text) <= {"0", "1"}:
            parts: list = list(text)
        else:
            parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    else:
        try:
            parts = list(blocks)
        except TypeError:
            parts = [None]
    flags = []
    for p in parts:
        if isinstance(p, bool):
            flags.append(int(p))
        elif isinstance(p, int) or (isinstance(p, str) and p in ("0", "1")):
            flags.append(int(p))
        elif isinstance(p, float) and p in (0.0, 1.0):
            flags.append(int(p))
        else:
            flags.append(-1)
    if len(flags) != n_blocks or any(f not in (0, 1) for f in flags):
        raise StyleError(f"crossover needs {n_blocks} block flags of 0 or 1 (one per style block, coarse to "
                         f"fine; 1 = keep the base codes, 0 = take the other's), got {blocks!r}")
    return flags


@dataclass(frozen=True)
class StyleSpace:
    """What a set of style codes belongs to (the fingerprint checked on every use)."""

    arch: str
    regions: int
    style_dim: int
    n_blocks: int
    class_names: tuple[str, ...]
    weights_id: str = ""  # hash of the style encoder and per-region transforms ("" = unknown)

    @property
    def class_hash(self) -> str:
        return _class_hash(self.class_names)

    @classmethod
    def of_model(cls, model: torch.nn.Module) -> StyleSpace:
        """The space of a SEAN generator (anything with `encode_styles`, `cfg` and style blocks)."""
        cfg = getattr(model, "cfg", None)
        if not hasattr(model, "encode_styles") or cfg is None or not hasattr(cfg, "region_names"):
            raise StyleError(f"{type(model).__name__} takes no per-region style codes (a SEAN model does)")
        # The encoder decides what a code means and the per-region transforms how it is used; their
        # biases stand in for the transforms (hashing 6 x R x D x D weights would take a while).
        tensors = {f"style_encoder.{k}": v for k, v in model.style_encoder.state_dict().items()}
        for name in model.style_blocks:
            tensors[f"{name}.norm_0.style_fc.bias"] = getattr(model, name).norm_0.style_fc.bias
        return cls(getattr(model, "arch", "sean"), cfg.regions, cfg.style_dim, len(model.style_blocks),
                   tuple(cfg.region_names()), _weights_id(tensors))

    def describe(self) -> str:
        return (f"{self.arch} with {self.regions} regions ({_names_text(self.class_names)}), "
                f"style_dim {self.style_dim}")

    def mismatch(self, other: StyleSpace, *, check_weights: bool = True) -> str | None:
        """Why codes of `other` cannot be used where codes of `self` are expected (None: they can)."""
        if (self.arch, self.regions, self.style_dim) != (other.arch, other.regions, other.style_dim):
            return f"they are for {other.describe()}, not {self.describe()}"
        if self.class_names != other.class_names:
            pairs = enumerate(zip(other.class_names, self.class_names))
            diff = [f"{i}: '{a}' vs '{b}'" for i, (a, b) in pairs if a != b]
            return (f"their class set differs ({_names_text(diff, 3)}; class hash {other.class_hash} vs "
                    f"{self.class_hash})")
        if self.n_blocks != other.n_blocks:
            return f"they are for a generator with {other.n_blocks} style blocks, not {self.n_blocks}"
        if check_weights and self.weights_id and other.weights_id and self.weights_id != other.weights_id:
            return (f"they were extracted with another {other.arch} model (style weights {other.weights_id}, "
                    f"this one has {self.weights_id}); codes do not carry over between models")
        return None

    def to_metadata(self) -> dict[str, str]:
        return {"arch": self.arch, "regions": str(self.regions), "style_dim": str(self.style_dim),
                "n_blocks": str(self.n_blocks), "class_names": json.dumps(list(self.class_names)),
                "class_hash": self.class_hash, "weights_id": self.weights_id}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: str) -> StyleSpace:
        try:
            names = tuple(str(n) for n in json.loads(meta["class_names"]))
            space = cls(meta["arch"], int(meta["regions"]), int(meta["style_dim"]), int(meta["n_blocks"]),
                        names, meta.get("weights_id", ""))
        except (KeyError, ValueError, TypeError) as err:
            raise StyleError(f"{where}: corrupt style-code metadata ({type(err).__name__}: {err})") from None
        if len(names) != space.regions:
            raise StyleError(f"{where}: corrupt style-code metadata ({len(names)} names for {space.regions} "
                             "regions)")
        if meta.get("class_hash") not in (None, space.class_hash):
            raise StyleError(f"{where}: corrupt style-code metadata (class names do not match their hash)")
        return space


class StyleCodes:
    """Style codes of one image (or a mean): `codes` (R, D) or per block (K, R, D), `present` (R,)."""

    def __init__(self, codes: torch.Tensor, present: torch.Tensor, space: StyleSpace, source: str = ""):
        codes = torch.as_tensor(codes).detach().to("cpu", torch.float32)
        present = torch.as_tensor(present).detach().to("cpu").bool()
        r, d, k = space.regions, space.style_dim, space.n_blocks
        if tuple(codes.shape) not in ((r, d), (k, r, d)):
            raise StyleError(f"{source or 'style codes'}: codes of shape {tuple(codes.shape)} do not fit "
                             f"{space.describe()} (expected ({r}, {d}) or ({k}, {r}, {d}))")
        if tuple(present.shape) != (r,):
            raise StyleError(f"{source or 'style codes'}: present mask of shape {tuple(present.shape)}, "
                             f"expected ({r},)")
        # Absent regions hold zeros, so files and comparisons do not depend on leftovers.
        mask = present.view(*([1] * (codes.dim() - 2)), r, 1)
        self.codes = torch.where(mask, codes, torch.zeros((), dtype=codes.dtype))
        self.present = present
        self.space = space
        self.source = source

    # --- construction ------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def extract(cls, model: torch.nn.Module, image: torch.Tensor, segmap: torch.Tensor,
                sources: Sequence[str] | None = None) -> list[StyleCodes]:
        """The codes of each image of a batch: `image` (N, 3, H, W) in [-1, 1] and its semantic map."""
        space = StyleSpace.of_model(model)
        codes, present = model.encode_styles(image, segmap)
        names = list(sources) if sources is not None else [""] * codes.shape[0]
        return [cls(codes[i], present[i], space, names[i]) for i in range(codes.shape[0])]

    @classmethod
    def mean(cls, items: Iterable[StyleCodes], source: str = "mean") -> StyleCodes:
        """Per-region mean over the items where the region is present (streams: any iterable).

        Regions present in none of them stay absent. Per-block codes are averaged block by block.
        """
        total = count = space = None
        for item in items:
            if space is None:
                space = item.space
                total = torch.zeros_like(item.codes, dtype=torch.float64)
                count = torch.zeros(space.regions, dtype=torch.float64)
            else:
                item._check_same_space(space, "mean")
            codes = item.codes.double()
            if codes.dim() > total.dim():  # a per-block item: from now on average per block
                total = total.unsqueeze(0).repeat(space.n_blocks, 1, 1)
            elif codes.dim() < total.dim():
                codes = codes.unsqueeze(0)
            total += codes  # absent regions hold zeros
            count += item.present.double()
        if space is None:
            raise StyleError("no style codes to average (no images with a label map?)")
        mean = total / count.clamp_min(1).view(*([1] * (total.dim() - 2)), -1, 1)
        return cls(mean.float(), count > 0, space, source)

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a safetensors style file (atomically)."""
        from safetensors.torch import save

        meta = {"format": FORMAT, "source": self.source, **self.space.to_metadata()}
        data = save({"codes": self.codes.contiguous(), "present": self.present.to(torch.uint8).contiguous()},
                    metadata=meta)
        try:
            atomic_save_bytes(path, data)
        except OSError as err:
            raise StyleError(f"{path}: cannot write ({err.strerror or err})") from None

    @classmethod
    def load(cls, path: str | Path, model: torch.nn.Module | StyleSpace | None = None, *,
             check_weights: bool = True) -> StyleCodes:
        """Read a style file; with `model` (or its space), one-line StyleError if it does not fit."""
        from safetensors import SafetensorError, safe_open

        p = Path(path)
        if not p.is_file():
            raise StyleError(f"{p}: style file not found")
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StyleError(f"{p}: not a style file (not readable as safetensors: {msg})") from None
        if meta.get("format") != FORMAT:
            is_model = meta.get("format", "").startswith("gancanvas/")
            what = "a gancanvas model file" if is_model else "no style codes"
            raise StyleError(f"{p}: not a style file ({what}); extract one with `gancanvas styles extract`")
        if "codes" not in tensors or "present" not in tensors:
            raise StyleError(f"{p}: corrupt style file (tensors 'codes' and 'present' expected)")
        if not tensors["codes"].is_floating_point() or not bool(torch.isfinite(tensors["codes"]).all()):
            raise StyleError(f"{p}: corrupt style file (codes are not finite floating-point numbers)")
        # Messages name the file; the image the codes came from stays in the metadata ("source").
        codes = cls(tensors["codes"], tensors["present"], StyleSpace.from_metadata(meta, str(p)), str(p))
        if model is not None:
            codes.check(model, check_weights=check_weights)
        return codes

    # --- checks ------------------------------------------------------------------------------
    def check(self, model: torch.nn.Module | StyleSpace, *, check_weights: bool = True) -> None:
        """StyleError (one line) if these codes cannot drive `model`."""
        space = model if isinstance(model, StyleSpace) else StyleSpace.of_model(model)
        why = space.mismatch(self.space, check_weights=check_weights)
        if why:
            raise StyleError(f"{self.source or 'style codes'}: cannot be used with this model: {why}")

    def _check_same_space(self, space: StyleSpace, op: str) -> None:
        why = space.mismatch(self.space)
        if why:
            raise StyleError(f"{op}: {self.source or 'style codes'} do not match: {why}")

    def _other(self, other: StyleCodes, op: str) -> StyleCodes:
        if not isinstance(other, StyleCodes):
            raise StyleError(f"{op}: expected StyleCodes, got {type(other).__name__}")
        other._check_same_space(self.space, op)
        return other

    # --- regions -----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.space.class_names

    @property
    def is_per_block(self) -> bool:
        return self.codes.dim() == 3

    def region_id(self, key: int | str) -> int:
        """The region index of an id (13, "13") or a name ("hair"); StyleError naming the choices."""
        names = self.space.class_names
        if isinstance(key, bool):
            raise StyleError(f"region must be an id or a name, got {key!r}")
        if isinstance(key, str):
            k = key.strip()
            if k in names:
                return names.index(k)
            lower = [n.lower() for n in names]
            if k.lower() in lower:
                return lower.index(k.lower())
            if k.lstrip("-").isdigit():
                key = int(k)
            else:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise StyleError(f"unknown region '{key}' (regions of this model: {', '.join(names)}){hint}")
        if not isinstance(key, int):
            raise StyleError(f"region must be an id or a name, got {type(key).__name__}")
        if not 0 <= key < len(names):
            raise StyleError(f"region id {key} is out of range: this model has regions 0..{len(names) - 1}")
        return key

    def _region_ids(self, regions: int | str | Iterable[int | str]) -> list[int]:
        if isinstance(regions, (int, str)):
            regions = [regions]
        ids = [self.region_id(r) for r in regions]
        if not ids:
            raise StyleError("no regions given")
        return ids

    def __getitem__(self, key: int | str) -> torch.Tensor:
        """The code of one region: (D,), or (K, D) for per-block codes."""
        i = self.region_id(key)
        if not bool(self.present[i]):
            raise StyleError(f"region '{self.names[i]}' ({i}) has no code in "
                             f"{self.source or 'these style codes'} (it is not in the source image)")
        return self.codes[..., i, :].clone()

    def __contains__(self, key: int | str) -> bool:
        return bool(self.present[self.region_id(key)])

    def present_names(self) -> list[str]:
        return [n for n, p in zip(self.names, self.present.tolist()) if p]

    def per_block(self) -> torch.Tensor:
        """Codes as (K, R, D) (uniform codes repeated for every block)."""
        if self.is_per_block:
            return self.codes
        return self.codes.unsqueeze(0).expand(self.space.n_blocks, -1, -1).clone()

    def _pair(self, other: StyleCodes) -> tuple[torch.Tensor, torch.Tensor]:
        """Both code tensors in the same layout (per block if either is)."""
        if self.is_per_block or other.is_per_block:
            return self.per_block(), other.per_block()
        return self.codes, other.codes

    def _new(self, codes: torch.Tensor, present: torch.Tensor, what: str) -> StyleCodes:
        if codes.dim() == 3 and bool((codes == codes[:1]).all()):
            codes = codes[0]  # identical blocks: store one matrix
        return StyleCodes(codes, present, self.space, f"{self.source or 'codes'} ({what})")

    # --- edits -------------------------------------------------------------------------------
    def swap(self, regions: int | str | Iterable[int | str], other: StyleCodes) -> StyleCodes:
        """These codes with `regions` taken from `other` (regions absent there become absent)."""
        other = self._other(other, "swap")
        ids = self._region_ids(regions)
        a, b = self._pair(other)
        sel = torch.zeros(self.space.regions, dtype=torch.bool)
        sel[ids] = True
        codes = torch.where(sel.view(-1, 1), b, a)
        present = torch.where(sel, other.present, self.present)
        names = ", ".join(self.names[i] for i in ids)
        return self._new(codes, present, f"{names} from {other.source or 'other'}")

    def interpolate(self, other: StyleCodes, t: float, regions: int | str | Iterable[int | str] | None = None
                    ) -> StyleCodes:
        """(1 - t) * self + t * other on the regions present in both (all, or only `regions`).

        t = 0 gives these codes and t = 1 the other's exactly. A region present in one side only
        keeps that side's code (the other side's only among `regions`). t outside [0, 1] is an
        StyleError (extrapolated codes leave the range the generator was trained on).
        """
        other = self._other(other, "interpolate")
        t = parse_weight(t)
        a, b = self._pair(other)
        sel = torch.ones_like(self.present)
        if regions is not None:
            sel = torch.zeros_like(self.present)
            sel[self._region_ids(regions)] = True
        both = self.present & other.present & sel
        only_b = other.present & ~self.present & sel
        # torch.lerp is exact at both ends (it computes from the nearer endpoint).
        mixed = torch.lerp(a, b, t)
        codes = torch.where(both.view(-1, 1), mixed, torch.where(only_b.view(-1, 1), b, a))
        return self._new(codes, self.present | only_b, f"interpolated {t:g} with {other.source or 'other'}")

    def crossover(self, blocks: Sequence[int | bool] | str, other: StyleCodes) -> StyleCodes:
        """Per-block codes: block i keeps these codes where blocks[i] is 1 and takes `other`'s where 0.

        `blocks` has one entry per style block (coarse to fine; SEAN: head_0, G_middle_0,
        G_middle_1, up_0, up_1, up_2), as a sequence or a string ("1,1,0,0,0,0" or "110000"). A
        region absent in a block's source takes the other side's code there; regions come only from
        sides that some block uses, so all 1 gives these codes and all 0 the other's.
        """
        other = self._other(other, "crossover")
        k = self.space.n_blocks
        flags = parse_block_flags(blocks, k)
        a, b = self.per_block(), other.per_block()
        keep = torch.tensor(flags, dtype=torch.bool).view(k, 1, 1)
        both = (self.present & other.present).view(1, -1, 1)
        mine = torch.where(self.present.view(1, -1, 1), a, b)  # fallback where one side lacks a region
        theirs = torch.where(other.present.view(1, -1, 1), b, a)
        codes = torch.where(both, torch.where(keep, a, b), torch.where(keep, mine, theirs))
        # Regions come from the sides some block actually uses (all flags 1: exactly these codes).
        present = torch.zeros_like(self.present)
        if 1 in flags:
            present |= self.present
        if 0 in flags:
            present |= other.present
        return self._new(codes, present,
                         f"crossover {''.join(map(str, flags))} with {other.source or 'other'}")

    def fill_missing(self, mean: StyleCodes) -> StyleCodes:
        """These codes, with the regions they lack taken from `mean` (e.g. per-class mean codes)."""
        mean = self._other(mean, "fill_missing")
        a, b = self._pair(mean)
        take = ~self.present & mean.present
        codes = torch.where(take.view(-1, 1), b, a)
        return self._new(codes, self.present | mean.present, f"missing from {mean.source or 'mean'}")

    # --- use ---------------------------------------------------------------------------------
    def to_batch(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(styles (1, R, D) or (1, K, R, D), present (1, R)): the generator's `styles`, `present`."""
        return self.codes.unsqueeze(0).to(device, dtype), self.present.unsqueeze(0).to(device)

    def missing_in(self, labels_present: Sequence[int] | torch.Tensor) -> list[str]:
        """Names of regions used by a label map (ids) that have no code here."""
        ids = torch.as_tensor(labels_present).flatten().tolist()
        return [self.names[i] for i in sorted(set(ids)) if 0 <= i < len(self.names) and not self.present[i]]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.codes.shape))
        return (f"StyleCodes({shape}, {int(self.present.sum())}/{self.space.regions} regions present, "
                f"source={self.source!r})")
