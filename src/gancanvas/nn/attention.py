"""Contextual attention (Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018).

The layer fills the foreground (the hole) by borrowing feature patches from the background (the
known region). With `f` the foreground features, `b` the background features and `r` the rate:

1. Matching happens at 1/r resolution. Every `ksize` x `ksize` background patch w_q is a
   filter, normalised to unit L2 norm; its cosine-like score against the foreground patch x_p
   is s(p, q) = <x_p, w_q / |w_q|>.
2. Fuse: the scores are summed along the diagonals of the score "image" (p, q), so that a
   foreground patch scores highly where its neighbours match the source's neighbours too:
   first horizontally, s'(p, q) = sum_d s(p + d, q + d), then vertically the same way. This
   favours the coherent copying of large regions.
3. Background patches that touch the hole are invalid. The attention is a softmax over the
   valid background positions of `softmax_scale * s`.
4. Paste: every foreground position receives a mixture of the raw (full resolution, 2r x 2r)
   background patches weighted by its attention; the patches of neighbouring positions
   overlap (stride r), and the overlap-add is averaged.

`offsets` (N, 2, h, w), int64: the (row, col) of the highest-weighted source patch minus the
position itself, on the 1/r grid. `flow_to_image` paints it with the optical-flow colour wheel.

Two fidelity modes:

- `compat="official"` reproduces `inpaint_ops.contextual_attention` of the official TF code,
  quirks included: align-corners nearest downsampling (`resize_nearest`), TF "SAME" patch
  geometry, a background patch is valid iff its 3x3 patch of the downsampled mask of **sample
  0** is hole-free (one mask for the whole batch; with per-sample masks that are all equal this
  is the same thing), the fuse runs on the flattened score matrix and therefore wraps around
  row ends (horizontal pass, row-major order) and column ends (vertical pass, column-major
  order), invalid scores are multiplied by 0 before and after the softmax (they still take
  probability mass; the weights are not renormalised), and the paste is divided by 4
  everywhere (wrong at the border, where fewer patches overlap). Sizes must be multiples of
  `rate`, as the official code needs.
- `compat="clean"` (default) is the sound version for training from scratch: stride
  downsampling (floor nearest), per-sample masks, a background patch is invalid if any image
  pixel under its matching footprint or its pasted raw patch is a hole (the hole is max-pooled,
  so thin strokes cannot slip between samples), invalid scores get -inf (the softmax
  renormalises over valid patches), a true 2-D diagonal fuse with zero padding (no wrap), and
  the paste divided by the true overlap count, so a constant background is reproduced exactly.
  A sample without any valid background patch gets y = 0 and offsets = 0 (no NaN).

Only `stride=1` is implemented: with a larger stride the fuse would add up background patches
`stride` cells apart against foreground patches one cell apart, and the official code cannot
run it either (its fuse reshape fails).

Cost and memory: the score matrix has L_f x L_b entries (L = positions on the 1/r grid), i.e.
(H W / r^2)^2 per sample, 1 GB in float32 for a 256 x 256 feature map. `tile=T` scores at most T
foreground positions (rows of the matrix) at a time, plus the halo rows that matching and fuse
need (neighbouring rows; in official mode also the wrapped-around ones), and overlap-adds each
tile's paste, so peak memory is O((T + halo) * L_b) instead of O(L_f * L_b) with the same
result (the same offsets; y equal up to float rounding). `tile="auto"` picks T from a budget
(`AUTO_TILE_BYTES`). Under autograd each tile is checkpointed (recomputed in backward), so
training memory is bounded too.

Implementation: three identities keep the big products small and avoid L x L convolutions.
- Matching: <x_p, w_q> = sum over offsets o of <f(p + o), b(q + o)>, so the scores are the
  C-wide Gram matrix G(p, q) = <f(p), b(q)> summed along k x k diagonals, then divided by
  |w_q| (a 9x smaller product than with 9C-wide patches).
- Fuse and those diagonal sums are shifted slice additions of score rows (the wrap-around of
  the official flattened order is a second, shorter slice), not a 1-channel convolution over
  the L x L plane, which is many times slower on CPU. Large score buffers are reused
  (`_Workspace`): in-place passes, no fresh gigabyte per step, and (up to
  `KEEP_WORKSPACE_BYTES`) no fresh buffers per call either; `release_workspace()` frees them.
- Paste: the 2r x 2r raw patches are 2 x 2 blocks of r x r cells of b, and the pasted patches
  of neighbouring positions overlap by whole cells, so output cell c receives
  sum_q A'(c, q) cell(q) with A'(c, q) = sum over (a, b) in {0,1}^2 of A(c - (a, b), q - (a, b)):
  a 2 x 2 diagonal sum of the attention and a product 4x smaller than with raw patches.
- Batched form (clean mode, untiled, on an accelerator or under autograd): the same three
  identities as whole-batch tensor ops on the (N, hf, wf, hb, wb) score volume, each diagonal
  pass three shifted slices of a zero-padded copy. The slice-run form above issues thousands of
  tiny ops per sample: right for a CPU, but kernel-launch bound on a GPU (2.5 s per training
  step at 256 px, batch 32, two runs sharing an H100; 0.3 s batched) and slow under autograd
  anywhere.
Softmax terms below exp's normal float32 range (x - max < -87, weights under 2e-38) are set to
exactly 0 before exp: denormal exp is 10x slower on CPU, and nothing visible changes.
Everything runs in float32 (float64 inputs stay float64) with autocast off: a half-precision
softmax over thousands of near-equal scores (x10) would change the argmax, and the memory is
dominated by the score matrix anyway.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .resample import resize_nearest

__all__ = [
    "AUTO_TILE_BYTES",
    "BATCHED_MAX_SCORES",
    "KEEP_WORKSPACE_BYTES",
    "ContextualAttention",
    "colour_wheel",
    "contextual_attention",
    "flow_to_image",
    "flow_to_uint8",
    "release_workspace",
    "resize_nearest",
]

COMPAT_MODES = ("clean", "official")
AUTO_TILE_BYTES = 256 * 2**20  # score memory allowed to `tile="auto"` (two live tile buffers)
# Largest score volume (N * L_f * L_b elements) the batched form takes on; beyond it the
# per-sample form bounds memory (its padded copies would take several times this).
BATCHED_MAX_SCORES = 2**27
_EXP_FLOOR = -87.0  # exp(-87) ~ 1.6e-38 is still a normal float32; below it exp goes denormal


# --------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class _Geometry:
    """The 1/rate grids of one call: foreground hf x wf, background hb x wb (= patch grid)."""

    hf: int
    wf: int
    hb: int
    wb: int

    @property
    def lf(self) -> int:
        return self.hf * self.wf

    @property
    def lb(self) -> int:
        return self.hb * self.wb


def _patches(x: torch.Tensor, k: int, stride: int, before: int, grid: tuple[int, int]) -> torch.Tensor:
    """k x k windows of NCHW `x` -> (N, C*k*k, gh*gw); window (gy, gx) starts at
    (gy * stride - before, gx * stride - before), zero outside `x`."""
    pads = []
    for axis, (n, g) in enumerate(zip(x.shape[-2:], grid)):
        after = (g - 1) * stride + k - n - before
        pads.append(max(after, 0))
        if after < 0:  # the windows do not reach the end: drop the unused tail
            x = x.narrow(2 + axis, 0, n + after)
    x = F.pad(x, (before, pads[1], before, pads[0]))
    return F.unfold(x, k, stride=stride)


def _to_cells(x: torch.Tensor, r: int, grid: tuple[int, int]) -> torch.Tensor:
    """r x r cells of NCHW `x` on the paste grid: (N, (gh+1)*(gw+1), C*r*r).

    Cell (u, v) covers rows [r*u - r//2, r*u - r//2 + r) (zero outside x), so the 2r x 2r
    window of grid position (k, l), which TF "SAME" starts at r*k - r//2, is cells
    (k..k+1, l..l+1).
    """
    n, c, h, w = x.shape
    gh, gw = grid
    p = r // 2
    x = F.pad(x, (p, r * (gw + 1) - p - w, p, r * (gh + 1) - p - h))
    x = x.view(n, c, gh + 1, r, gw + 1, r).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (gh + 1) * (gw + 1), c * r * r)


def _overlap_count(geo: _Geometry, r: int, size: tuple[int, int], device, dtype) -> torch.Tensor:
    """How many pasted 2r x 2r patches cover each output pixel (4 inside, 2 or 1 at the border)."""
    def per_axis(n: int) -> torch.Tensor:
        c = torch.ones(n + 1, device=device, dtype=dtype)
        c[1:n] = 2  # cell u is covered by positions u - 1 and u, where they exist
        return c.repeat_interleave(r)

    p = r // 2
    return (per_axis(geo.hf)[:, None] * per_axis(geo.wf)[None, :])[p:p + size[0], p:p + size[1]]


def _from_cells(cells: torch.Tensor, r: int, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `_to_cells`: (N, (gh+1)*(gw+1), C*r*r) -> NCHW cropped to `size`."""
    n = cells.shape[0]
    gh, gw = grid
    c = cells.shape[-1] // (r * r)
    x = cells.view(n, gh + 1, gw + 1, c, r, r).permute(0, 3, 1, 4, 2, 5)
    x = x.reshape(n, c, r * (gh + 1), r * (gw + 1))
    p = r // 2
    return x[..., p:p + size[0], p:p + size[1]]


# --------------------------------------------------------------------------------------------
# diagonal sums as shifted slice additions
#
# A pass adds, for every shift d of a k-tap identity kernel, score(nb(p, d), nb(q, d)) to
# score(p, q), where nb is the d-th neighbour of a position in the pass's order:
#   "row": row-major order (official horizontal fuse pass; wraps across row ends)
#   "col": column-major order (official vertical fuse pass; wraps across column ends)
#   "x":   horizontal neighbour (no wrap): matching, clean fuse
#   "y":   vertical neighbour (no wrap): matching, clean fuse
# Neighbours outside the grid contribute zero, like the zero padding of the official convs.


def _neighbours(idx: np.ndarray, d: int, h: int, w: int, order: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat (row-major) index of the d-th neighbour of each flat index, and whether it exists."""
    i, j = np.divmod(idx, w)
    if order == "row":
        nb = idx + d
        ok = (nb >= 0) & (nb < h * w)
    elif order == "col":
        c = j * h + i + d
        ok = (c >= 0) & (c < h * w)
        nb = (c % h) * w + c // h
    elif order == "x":
        ok = (j + d >= 0) & (j + d < w)
        nb = idx + d
    else:  # "y"
        ok = (i + d >= 0) & (i + d < h)
        nb = idx + d * w
    return nb, ok


def _runs(dst: np.ndarray, src: np.ndarray) -> list[tuple[int, int, int]]:
    """Split index pairs into maximal runs where both advance by one: (dst0, src0, length)."""
    if len(dst) == 0:
        return []
    cut = np.flatnonzero((np.diff(dst) != 1) | (np.diff(src) != 1)) + 1
    starts = np.concatenate(([0], cut))
    ends = np.concatenate((cut, [len(dst)]))
    return [(int(dst[s]), int(src[s]), int(e - s)) for s, e in zip(starts, ends)]


def _shifts(k: int) -> list[int]:
    """Taps of a k-long kernel with TF "SAME" padding ((k-1)//2 before), the centre first."""
    before = (k - 1) // 2
    return [0] + [t - before for t in range(k) if t != before]


class _ColumnShift:
    """Adds `src[:, nb(q, d)]` into `dst[:, q]` along the background axis of a block of rows."""

    def __init__(self, d: int, order: str, h: int, w: int):
        self.d, self.order, self.h, self.w = d, order, h, w
        if order != "x":
            q = np.arange(h * w)
            nb, ok = _neighbours(q, d, h, w, order)
            self.runs = _runs(q[ok], nb[ok])

    def __call__(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        if self.order == "x":  # one strided slice over all background rows at once
            d, w = self.d, self.w
            lo, hi = max(0, -d), w - max(0, d)
            if lo < hi:
                dst.view(-1, self.h, w)[:, :, lo:hi] += src.view(-1, self.h, w)[:, :, lo + d:hi + d]
            return
        for q0, s0, n in self.runs:
            dst[:, q0:q0 + n] += src[:, s0:s0 + n]


@dataclass
class _Pass:
    """One diagonal-sum pass restricted to a block of output rows: row runs per shift."""

    order: str
    n_out: int
    steps: list[tuple[int, list[tuple[int, int, int]]]]  # (shift d, runs over the row buffers)

    def __call__(self, src: torch.Tensor, columns: dict[tuple[str, int], _ColumnShift],
                 out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            out = src.new_empty((self.n_out, src.shape[1]))
        for d, runs in self.steps:  # d = 0 first: it covers every output row
            for r0, s0, n in runs:
                if d == 0:
                    out[r0:r0 + n] = src[s0:s0 + n]
                else:
                    columns[self.order, d](out[r0:r0 + n], src[s0:s0 + n])
        return out


def _make_pass(rows_out: np.ndarray, shifts: list[int], order: str, h: int,
               w: int) -> tuple[_Pass, np.ndarray]:
    """The pass producing rows `rows_out` (sorted), and the sorted rows it reads."""
    nbs = [_neighbours(rows_out, d, h, w, order) for d in shifts]
    rows_src = np.unique(np.concatenate([nb[ok] for nb, ok in nbs]))
    steps = []
    for d, (nb, ok) in zip(shifts, nbs):
        steps.append((d, _runs(np.flatnonzero(ok), np.searchsorted(rows_src, nb[ok]))))
    return _Pass(order, len(rows_out), steps), rows_src


@dataclass
class _Paste:
    """The 2 x 2 diagonal sum A -> A' for one tile: the tile's rows land on a block of cells."""

    first_cell: int
    n_cells: int
    steps: list[tuple[int, int, list[tuple[int, int, int]]]] = field(default_factory=list)

    def __call__(self, a: torch.Tensor, grid: tuple[int, int],
                 out: torch.Tensor | None = None) -> torch.Tensor:
        gh, gw = grid
        out = a.new_zeros((self.n_cells, (gh + 1) * (gw + 1))) if out is None else out.zero_()
        out = out.view(-1, gh + 1, gw + 1)
        av = a.view(-1, gh, gw)
        for dy, dx, runs in self.steps:
            for r0, s0, n in runs:
                out[r0:r0 + n, dy:dy + gh, dx:dx + gw] += av[s0:s0 + n]
        return out.view(self.n_cells, -1)


def _make_paste(rows: np.ndarray, hf: int, wf: int) -> _Paste:
    i, j = np.divmod(rows, wf)
    cell = i * (wf + 1) + j  # own cell on the (hf+1) x (wf+1) cell grid
    first, last = int(cell[0]), int(cell[-1]) + wf + 2
    plan = _Paste(first, last - first + 1)
    src = np.arange(len(rows))
    for dy in (0, 1):
        for dx in (0, 1):
            plan.steps.append((dy, dx, _runs(cell + dy * (wf + 1) + dx - first, src)))
    return plan


@dataclass
class _Tile:
    """One block of foreground rows [start, stop) and what computing it needs."""

    start: int
    stop: int
    gram_rows: np.ndarray  # foreground rows of the Gram matrix it reads (tile + halo)
    match: list[_Pass]
    fuse: list[_Pass]
    paste: _Paste


def _plan_tiles(geo: _Geometry, tile: int | None, ksize: int, fuse_k: int | None,
                fuse_orders: tuple[str, str]) -> list[_Tile]:
    """Split the foreground rows into tiles; work out each tile's halo and slice runs."""
    step = geo.lf if tile is None else tile
    chain = []  # passes from the last to the first
    if fuse_k is not None and fuse_k > 1:
        chain += [("fuse", fuse_orders[1], _shifts(fuse_k)), ("fuse", fuse_orders[0], _shifts(fuse_k))]
    if ksize > 1:
        chain += [("match", "y", _shifts(ksize)), ("match", "x", _shifts(ksize))]
    tiles = []
    for start in range(0, geo.lf, step):
        stop = min(start + step, geo.lf)
        rows = np.arange(start, stop)
        passes = {"match": [], "fuse": []}
        need = rows
        for kind, order, shifts in chain:  # work backwards from the rows we want
            p, need = _make_pass(need, shifts, order, geo.hf, geo.wf)
            passes[kind].insert(0, p)
        tiles.append(_Tile(start, stop, need, passes["match"], passes["fuse"],
                           _make_paste(rows, geo.hf, geo.wf)))
    return tiles


def _auto_tile(geo: _Geometry, ksize: int, fuse_k: int | None, official: bool, budget: int,
               itemsize: int = 4) -> int | None:
    """Largest tile whose two workspace buffers (tile + halo rows) fit in `budget` bytes.

    The halo is about 2 * (ksize // 2 + fuse_k // 2) grid rows (plus one in official mode, for
    the wrap-around), so memory cannot go below that however small the tile.
    """
    reach = ksize // 2 + (fuse_k // 2 if fuse_k else 0)  # grid rows the halo reaches on each side
    halo = 2 * reach * (geo.wf + 1) + (geo.wf if official and fuse_k else 0)
    rows = budget // (2 * itemsize * (geo.hb + 1) * (geo.wb + 1)) - halo
    # At very high resolution the halo alone passes the budget; a tile smaller than its halo
    # would recompute the halo many times over (hours at 2048 px), so tiles are at least that big:
    # memory stays bounded by 4 x halo rows of scores instead.
    rows = max(rows, halo, geo.wf)
    if rows >= geo.lf:
        return None
    if rows >= geo.wf:  # whole grid rows keep the slices long
        rows -= rows % geo.wf
    return max(int(rows), 1)


# --------------------------------------------------------------------------------------------
# the layer


class _Workspace:
    """Two score buffers used in turn by successive passes, tiles and samples.

    A fresh gigabyte-sized tensor costs more in page faults than the pass that fills it, and so
    does a fresh 140 MB one per call (512 px: 37 000 page faults, about 15 % of the layer's
    time). The buffers are therefore kept between calls, per thread, when they fit in
    `KEEP_WORKSPACE_BYTES` together; `release_workspace()` frees them.
    """

    def __init__(self, numel: int, like: torch.Tensor):
        self.numel, self.like, self.bufs, self.cur = numel, like, None, 0

    def next(self, rows: int, cols: int) -> torch.Tensor:
        """A rows x cols view of the buffer the current scores are not in."""
        if self.bufs is None:
            self.bufs = _workspace_buffers(self.numel, self.like)
        self.cur ^= 1
        return self.bufs[self.cur][:rows * cols].view(rows, cols)


# The largest pair of score buffers kept between calls: that of a 512 px image's exact attention
# (2 x 71 MB). Larger pairs (tiled attention of big images) are freed after each call, so that
# they do not add to the peak memory of the layers that follow.
KEEP_WORKSPACE_BYTES = 160 * 2**20
_kept = threading.local()


def _workspace_buffers(numel: int, like: torch.Tensor) -> list[torch.Tensor]:
    # Buffers made under torch.inference_mode() are inference tensors, which may not be written
    # outside it (and the other way round is fine but would pin the wrong kind): one pair per mode.
    key = (like.device, like.dtype, torch.is_inference_mode_enabled())
    bufs = getattr(_kept, "bufs", None)
    if bufs is not None and _kept.key == key and bufs[0].numel() >= numel:
        return bufs
    _kept.bufs = None  # free the old pair before allocating the new one
    bufs = [like.new_empty(numel) for _ in range(2)]
    if 2 * numel * like.element_size() <= KEEP_WORKSPACE_BYTES:
        _kept.bufs, _kept.key = bufs, key
    return bufs


def release_workspace() -> None:
    """Free the score buffers that contextual attention keeps between calls (this thread's)."""
    _kept.bufs = None


def _attention(s: torch.Tensor, keep: torch.Tensor, scale: float, official: bool,
               inplace: bool) -> torch.Tensor:
    """Masked softmax over background positions (dim 1) of the scores `s`."""
    if official:
        # Invalid scores are zeroed, not removed: they keep softmax mass (official behaviour).
        s = s.mul_(keep * scale) if inplace else s * keep * scale
    elif inplace:
        s = torch.add(torch.zeros_like(keep, dtype=s.dtype).masked_fill_(~keep, -math.inf), s, alpha=scale,
                      out=s)
    else:
        s = (s * scale).masked_fill(~keep, -math.inf)
    m = s.amax(dim=1, keepdim=True)
    if inplace:
        s = F.threshold(s.sub_(m), _EXP_FLOOR, -math.inf, inplace=True).exp_()
        s = s.div_(s.sum(dim=1, keepdim=True))
    else:
        s = torch.softmax(F.threshold(s - m.detach(), _EXP_FLOOR, -math.inf), dim=1)
    if official:
        s = s.mul_(keep) if inplace else s * keep
    return s


def _attend_tile(plan: _Tile, fd: torch.Tensor, bd: torch.Tensor, norm: torch.Tensor, cells: torch.Tensor,
                 keep: torch.Tensor, columns: dict, geo: _Geometry, scale: float, official: bool,
                 ws: _Workspace | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Match, fuse, attend and paste the foreground rows of one tile of one sample.

    fd (L_f, C) and bd (C, L_b) downsampled features, norm (L_b,) background patch norms,
    cells (L_cells, C r r) background cells, keep (L_b,) validity (float 0/1 official, bool clean).
    Returns the pasted cells of the tile's cell block and the argmax source of each row.
    `ws` = None: out-of-place (autograd); else every big buffer is a view into the workspace.
    """
    inplace = ws is not None
    nb = bd.shape[1]
    rows = plan.gram_rows
    if len(rows) == fd.shape[0]:
        x = fd
    elif rows[-1] - rows[0] + 1 == len(rows):
        x = fd[int(rows[0]):int(rows[-1]) + 1]
    else:
        x = fd.index_select(0, torch.as_tensor(rows, device=fd.device))
    s = torch.mm(x, bd, out=ws.next(len(rows), nb)) if inplace else torch.mm(x, bd)  # <f(p), b(q)>
    del x
    for p in plan.match:  # k x k diagonal sums: <patch f(p), patch b(q)>
        s = p(s, columns, ws.next(p.n_out, nb) if inplace else None)
    s = s.div_(norm) if inplace else s / norm
    for p in plan.fuse:
        s = p(s, columns, ws.next(p.n_out, nb) if inplace else None)
    a = _attention(s, keep, scale, official, inplace)
    del s
    arg = a.argmax(dim=1)
    n_cols = (geo.hb + 1) * (geo.wb + 1)
    a = plan.paste(a, (geo.hb, geo.wb), ws.next(plan.paste.n_cells, n_cols) if inplace else None)
    return torch.mm(a, cells), arg


def _diagonal_sum(s: torch.Tensor, k: int, dims: tuple[int, int]) -> torch.Tensor:
    """out(p, q) = sum_d s(p + d, q + d) over the k taps d along one grid axis of the foreground
    (dims[0]) and the same axis of the background (dims[1]); zero outside the grids."""
    before = (k - 1) // 2
    pad = [0, 0] * s.dim()
    for dim in dims:  # F.pad lists the last dimension first
        pad[2 * (s.dim() - 1 - dim):2 * (s.dim() - dim)] = [before, k - 1 - before]
    sp = F.pad(s, pad)
    out = None
    for t in range(k):
        part = sp.narrow(dims[0], t, s.shape[dims[0]]).narrow(dims[1], t, s.shape[dims[1]])
        out = part if out is None else out + part
    return out


def _attend_batched(fd: torch.Tensor, bd: torch.Tensor, norm: torch.Tensor, cells: torch.Tensor,
                    keep: torch.Tensor, geo: _Geometry, ksize: int, fuse_k: int | None,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean-mode match, fuse, attend and paste for the whole batch at once.

    fd (N, L_f, C), bd (N, C, L_b), norm (N, L_b), cells (N, L_cells, C r r), keep (N or 1, L_b)
    bool. Returns the pasted cells (N, (hf+1)(wf+1), C r r), the argmax source of every
    foreground position (N, L_f) and which samples had no valid background patch (N,).
    """
    n = fd.shape[0]
    hf, wf, hb, wb = geo.hf, geo.wf, geo.hb, geo.wb
    s = torch.bmm(fd, bd).view(n, hf, wf, hb, wb)  # <f(p), b(q)>
    if ksize > 1:  # k x k diagonal sums: <patch f(p), patch b(q)>
        s = _diagonal_sum(_diagonal_sum(s, ksize, (2, 4)), ksize, (1, 3))
    s = s / norm.view(n, 1, 1, hb, wb)
    if fuse_k is not None and fuse_k > 1:
        s = _diagonal_sum(_diagonal_sum(s, fuse_k, (2, 4)), fuse_k, (1, 3))
    keep = keep.expand(n, -1)
    empty = ~keep.any(dim=1)
    # A sample with nothing to borrow from attends uniformly (no NaN) and is zeroed below.
    keep = keep | empty[:, None]
    s = (s.reshape(n, geo.lf, geo.lb) * scale).masked_fill(~keep[:, None, :], -math.inf)
    m = s.amax(dim=2, keepdim=True)
    a = torch.softmax(F.threshold(s - m.detach(), _EXP_FLOOR, -math.inf), dim=2)
    a = a * (~empty).to(a.dtype)[:, None, None]
    arg = a.argmax(dim=2)
    # Paste: A'(c, c') = sum over (dy, dx) in {0, 1}^2 of A(c - (dy, dx), c' - (dy, dx)) on the
    # (h+1) x (w+1) cell grids, then one product with the background cells.
    a = a.view(n, hf, wf, hb, wb)
    a2 = None
    for dy in (0, 1):
        for dx in (0, 1):
            part = F.pad(a, (dx, 1 - dx, dy, 1 - dy, dx, 1 - dx, dy, 1 - dy))
            a2 = part if a2 is None else a2 + part
    a2 = a2.view(n, (hf + 1) * (wf + 1), (hb + 1) * (wb + 1))
    return torch.bmm(a2, cells), arg, empty


def contextual_attention(f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, *,
                         ksize: int = 3, stride: int = 1, rate: int = 2, fuse_k: int = 3,
                         softmax_scale: float = 10.0, fuse: bool = True, compat: str = "clean",
                         tile: int | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill foreground `f` with patches of background `b` (see the module docstring).

    Args:
        f: N x C x Hf x Wf foreground features (the queries; what to fill).
        b: N x C x Hb x Wb background features (where patches are borrowed from).
        mask: N x 1 x Hb x Wb or 1 x 1 x Hb x Wb, 1 = hole; background patches that touch the
            hole are not used. None = every patch is usable. Official mode reads sample 0 only.
        ksize: matching patch size on the 1/rate grid.
        stride: background patch stride on the 1/rate grid; only 1 is implemented.
        rate: downsampling factor for matching; pasted patches are 2*rate x 2*rate.
        fuse_k: length of the fuse diagonals.
        softmax_scale: softmax temperature multiplier.
        fuse: sum scores along diagonals (favour coherent regions).
        compat: "clean" or "official".
        tile: None (all foreground positions at once), an int (at most that many at once,
            same result, bounded memory) or "auto" (`AUTO_TILE_BYTES` of scores).

    Returns:
        y: like f (the filled features), in f's dtype.
        offsets: int64 N x 2 x ceil(Hf/rate) x ceil(Wf/rate), the (row, col) of the chosen
            source minus the own position on the 1/rate grid.
    """
    _check_args(f, b, mask, ksize, stride, rate, fuse_k, softmax_scale, compat, tile)
    official = compat == "official"
    r = rate
    out_dtype = f.dtype
    with torch.autocast(device_type=f.device.type, enabled=False):
        # float32 at least (see the module docstring); float64 stays float64 (gradcheck).
        work = torch.float64 if f.dtype == torch.float64 else torch.float32
        f, b = f.to(work), b.to(work)
        n = f.shape[0]
        size = tuple(f.shape[-2:])

        # 1. Downsample for matching.
        if official:
            fd = resize_nearest(f, (f.shape[-2] // r, f.shape[-1] // r), align_corners=True)
            bd = resize_nearest(b, (b.shape[-2] // r, b.shape[-1] // r), align_corners=True)
        else:
            fd, bd = f[..., ::r, ::r], b[..., ::r, ::r]
        geo = _Geometry(fd.shape[-2], fd.shape[-1], bd.shape[-2], bd.shape[-1])
        # 2. Background patch norms (k x k box sum of |b|^2), cells to paste, validity.
        kb = (ksize - 1) // 2
        sq = F.pad(bd.pow(2).sum(dim=1, keepdim=True), (kb, ksize - 1 - kb, kb, ksize - 1 - kb))
        norm = F.conv2d(sq, sq.new_ones((1, 1, ksize, ksize))).flatten(1).sqrt().clamp_min(1e-4)
        cells = _to_cells(b, r, (geo.hb, geo.wb))
        keep = _valid_patches(mask, geo, ksize, r, official, b)
        fd = fd.flatten(2).transpose(1, 2)  # (N, L_f, C)
        bd = bd.flatten(2)  # (N, C, L_b)

        # 3. Score, fuse, attend and paste, tile by tile.
        fuse_len = fuse_k if fuse else None
        if tile == "auto":
            tile = _auto_tile(geo, ksize, fuse_len, official, AUTO_TILE_BYTES, f.element_size())
        track = torch.is_grad_enabled() and (f.requires_grad or b.requires_grad)
        if (not official and tile is None and (track or f.device.type != "cpu")
                and n * geo.lf * geo.lb <= BATCHED_MAX_SCORES):
            y, arg, empty = _attend_batched(fd, bd, norm, cells, keep, geo, ksize, fuse_len, softmax_scale)
            return _finish(y, arg, empty, geo, r, size, official, out_dtype)
        fuse_orders = ("row", "col") if official else ("x", "y")
        plans = _plan_tiles(geo, tile, ksize, fuse_len, fuse_orders)
        columns = {}
        for order, k in (("x", ksize), ("y", ksize)) + ((fuse_orders[0], fuse_k), (fuse_orders[1], fuse_k)):
            for d in _shifts(k)[1:]:
                columns[order, d] = _ColumnShift(d, order, geo.hb, geo.wb)
        ws = None
        if not track:
            most = max(max(len(t.gram_rows), t.paste.n_cells) for t in plans)
            ws = _Workspace(most * (geo.hb + 1) * (geo.wb + 1), f)

        out_cells, args = [], []
        empty = torch.zeros(n, dtype=torch.bool)
        for i in range(n):
            keep_i = keep[i if keep.shape[0] > 1 else 0]
            acc = cells.new_zeros(((geo.hf + 1) * (geo.wf + 1), cells.shape[-1]))
            if not official and not bool(keep_i.any()):
                empty[i] = True  # nothing to borrow from: y = 0, offsets = 0
                if track:
                    # Keep y attached to f and b (zero gradient) so that every parameter upstream
                    # still receives a gradient; DDP otherwise waits for them forever.
                    acc = acc + 0.0 * (fd[i].sum() + cells[i].sum())
                out_cells.append(acc)
                args.append(torch.zeros(geo.lf, dtype=torch.int64, device=f.device))
                continue
            arg_i = []
            for plan in plans:
                fn_args = (plan, fd[i], bd[i], norm[i], cells[i], keep_i, columns, geo, softmax_scale,
                           official)
                if track and len(plans) > 1:
                    # Recompute the tile in backward instead of keeping its score matrix.
                    part, a = checkpoint(_attend_tile, *fn_args, None, use_reentrant=False)
                else:
                    part, a = _attend_tile(*fn_args, ws)
                # Overlap-add: neighbouring tiles share the cells along their border.
                acc[plan.paste.first_cell:plan.paste.first_cell + plan.paste.n_cells] += part
                arg_i.append(a)
                del part
            out_cells.append(acc)
            args.append(torch.cat(arg_i) if len(arg_i) > 1 else arg_i[0])
        return _finish(torch.stack(out_cells), torch.stack(args), empty, geo, r, size, official, out_dtype)


def _finish(out_cells: torch.Tensor, arg: torch.Tensor, empty: torch.Tensor, geo: _Geometry, r: int,
            size: tuple[int, int], official: bool,
            out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pasted cells -> y (averaged over the overlapping patches) and argmax sources -> offsets."""
    n = out_cells.shape[0]
    y = _from_cells(out_cells, r, (geo.hf, geo.wf), size)
    # 4. Average the overlapping patches.
    if official:
        y = y / 4.0  # the official constant (exact only where four patches overlap)
    else:
        y = y / _overlap_count(geo, r, size, y.device, y.dtype)
    # 5. Offsets: argmax source on the 1/rate grid minus own position.
    pos = torch.arange(geo.lf, device=arg.device)
    offsets = torch.stack([arg // geo.wb - pos // geo.wf, arg % geo.wb - pos % geo.wf], dim=1)
    offsets = offsets.view(n, 2, geo.hf, geo.wf)
    # Samples with nothing to borrow from: offsets 0 (no data-dependent branch: no GPU sync).
    offsets = offsets.masked_fill(empty.to(offsets.device)[:, None, None, None], 0)
    return y.to(out_dtype), offsets


def _valid_patches(mask: torch.Tensor | None, geo: _Geometry, ksize: int, r: int, official: bool,
                   b: torch.Tensor) -> torch.Tensor:
    """Which background patches may be borrowed: (N or 1, L_b); float 0/1 (official) or bool."""
    if mask is None:
        mask = b.new_zeros((1, 1) + tuple(b.shape[-2:]))
    mask = mask.to(b.device, b.dtype)
    kb = (ksize - 1) // 2
    if official:
        md = resize_nearest(mask[:1], (geo.hb, geo.wb), align_corners=True)
        return (_patches(md, ksize, 1, kb, (geo.hb, geo.wb)).mean(dim=1) == 0).to(b.dtype)
    # Clean: a cell of the 1/rate grid is a hole if any of its pixels is; a patch is usable only
    # if neither its matching footprint nor the raw patch it pastes covers a hole pixel.
    md = F.max_pool2d(mask, r, stride=r, ceil_mode=True)
    match_hole = _patches(md, ksize, 1, kb, (geo.hb, geo.wb)).amax(dim=1)
    raw_hole = _patches(mask, 2 * r, r, r // 2, (geo.hb, geo.wb)).amax(dim=1)
    return (match_hole <= 0) & (raw_hole <= 0)


def _check_args(f, b, mask, ksize, stride, rate, fuse_k, softmax_scale, compat, tile) -> None:
    if compat not in COMPAT_MODES:
        raise ValueError(f"contextual_attention: compat must be one of {COMPAT_MODES}, got {compat!r}")
    if f.dim() != 4 or b.dim() != 4:
        raise ValueError(f"contextual_attention: f and b must be N x C x H x W, got {tuple(f.shape)} "
                         f"and {tuple(b.shape)}")
    if f.shape[:2] != b.shape[:2]:
        raise ValueError(f"contextual_attention: f and b need the same batch and channels, got "
                         f"{tuple(f.shape)} and {tuple(b.shape)}")
    if mask is not None and (mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, f.shape[0])
                             or mask.shape[-2:] != b.shape[-2:]):
        raise ValueError(f"contextual_attention: mask must be N x 1 x {b.shape[-2]} x {b.shape[-1]} "
                         f"(N = 1 or {f.shape[0]}), got {tuple(mask.shape)}")
    for name, v in (("ksize", ksize), ("rate", rate), ("fuse_k", fuse_k)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"contextual_attention: {name} must be a positive int, got {v!r}")
    if stride != 1:
        raise ValueError(f"contextual_attention: only stride=1 is implemented, got {stride!r}")
    if not softmax_scale > 0:
        raise ValueError(f"contextual_attention: softmax_scale must be positive, got {softmax_scale!r}")
    if not (tile is None or tile == "auto" or (isinstance(tile, int) and tile >= 1)):
        raise ValueError(f"contextual_attention: tile must be None, 'auto' or a positive int, got {tile!r}")
    if compat == "official":
        sizes = tuple(f.shape[-2:]) + tuple(b.shape[-2:])
        if any(s % rate for s in sizes):
            raise ValueError(f"contextual_attention: official mode needs sizes divisible by rate={rate}, "
                             f"got f {tuple(f.shape[-2:])}, b {tuple(b.shape[-2:])}")


class ContextualAttention(nn.Module):
    """`contextual_attention` with its options fixed; forward(f, b, mask) -> (y, offsets)."""

    def __init__(self, ksize: int = 3, stride: int = 1, rate: int = 2, fuse_k: int = 3,
                 softmax_scale: float = 10.0, fuse: bool = True, compat: str = "clean",
                 tile: int | str | None = None):
        super().__init__()
        if compat not in COMPAT_MODES:
            raise ValueError(f"ContextualAttention: compat must be one of {COMPAT_MODES}, got {compat!r}")
        self.ksize, self.stride, self.rate, self.fuse_k = ksize, stride, rate, fuse_k
        self.softmax_scale, self.fuse, self.compat, self.tile = softmax_scale, fuse, compat, tile

    def forward(self, f: torch.Tensor, b: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return contextual_attention(f, b, mask, ksize=self.ksize, stride=self.stride, rate=self.rate,
                                    fuse_k=self.fuse_k, softmax_scale=self.softmax_scale, fuse=self.fuse,
                                    compat=self.compat, tile=self.tile)

    def extra_repr(self) -> str:
        return (f"ksize={self.ksize}, stride={self.stride}, rate={self.rate}, fuse_k={self.fuse_k}, "
                f"softmax_scale={self.softmax_scale}, fuse={self.fuse}, compat={self.compat!r}, "
                f"tile={self.tile!r}")


# --------------------------------------------------------------------------------------------
# attention flow pictures

# Segment lengths of the Middlebury colour wheel: red-yellow, yellow-green, green-cyan,
# cyan-blue, blue-magenta, magenta-red.
_WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)


def colour_wheel() -> torch.Tensor:
    """The 55 x 3 Middlebury flow colour wheel (float64, 0..255) used by the official code.

    Each segment holds one channel at 255 while another ramps up (or down) in steps of
    floor(255 * i / n), going round red -> yellow -> green -> cyan -> blue -> magenta -> red.
    """
    rows = []
    # (full channel, ramping channel, rising) per segment
    layout = ((0, 1, True), (1, 0, False), (1, 2, True), (2, 1, False), (2, 0, True), (0, 2, False))
    for n, (full, ramp, rising) in zip(_WHEEL_SEGMENTS, layout):
        seg = torch.zeros(n, 3, dtype=torch.float64)
        steps = torch.floor(255 * torch.arange(n, dtype=torch.float64) / n)
        seg[:, full] = 255
        seg[:, ramp] = steps if rising else 255 - steps
        rows.append(seg)
    return torch.cat(rows)


def _flow_colours(offsets: torch.Tensor, batch_running_max: bool) -> torch.Tensor:
    """uint8-valued float64 colours (N, h, w, 3) of int offsets (N, 2, h, w), as the official code."""
    off = offsets.detach().to("cpu", torch.float64)
    u, v = off[:, 0], off[:, 1]  # the official code calls the row offset u and the column offset v
    maxrad = torch.sqrt(u * u + v * v).flatten(1).amax(dim=1)
    if batch_running_max:
        maxrad = torch.cummax(maxrad, dim=0).values  # official quirk: a running max over the batch
    denom = (maxrad + np.finfo(np.float64).eps).view(-1, 1, 1)
    u, v = u / denom, v / denom
    rad = torch.sqrt(u * u + v * v)
    wheel = colour_wheel()
    ncols = wheel.shape[0]
    a = torch.atan2(-v, -u) / math.pi
    fk = (a + 1) / 2 * (ncols - 1) + 1  # 1-based position on the wheel
    k0 = torch.floor(fk).long()
    k1 = torch.where(k0 + 1 == ncols + 1, torch.ones_like(k0), k0 + 1)
    frac = (fk - k0).unsqueeze(-1)
    col = (1 - frac) * (wheel[k0 - 1] / 255) + frac * (wheel[k1 - 1] / 255)
    inside = (rad <= 1).unsqueeze(-1)
    # Inside the unit disc the colour fades to white at zero motion; outside it is darkened.
    col = torch.where(inside, 1 - rad.unsqueeze(-1) * (1 - col), col * 0.75)
    return torch.floor(255 * col)


def flow_to_image(offsets: torch.Tensor, *, batch_running_max: bool = False) -> torch.Tensor:
    """Colour-wheel picture of attention offsets: float32 N x 3 x h x w in [-1, 1].

    offsets: int N x 2 x h x w (row, col). Hue is the direction, saturation the length relative
    to the largest length `maxrad`; zero offset is white. By default `maxrad` is per image. The
    official code keeps a running maximum over the batch (image i is normalised by the largest
    length among images 0..i); `batch_running_max=True` reproduces that (use it in official
    mode to compare with official summaries). The result is at offset resolution; the official
    graph then resizes it x rate (v1 nearest, v2 bilinear with align_corners).
    """
    if offsets.dim() != 4 or offsets.shape[1] != 2:
        raise ValueError(f"flow_to_image: offsets must be N x 2 x h x w, got {tuple(offsets.shape)}")
    img = _flow_colours(offsets, batch_running_max).to(torch.float32).permute(0, 3, 1, 2)
    return (img / 127.5 - 1).contiguous().to(offsets.device)


def flow_to_uint8(offsets: torch.Tensor, size: int | tuple[int, int]) -> np.ndarray:
    """One image's flow picture as uint8 H x W x 3 RGB, upsampled (nearest) for saving.

    offsets: 2 x h x w or 1 x 2 x h x w. size: an integer factor, or the target (H, W) (e.g. the
    image size, so that the picture lines up with the image).
    """
    if offsets.dim() == 3:
        offsets = offsets.unsqueeze(0)
    if offsets.dim() != 4 or offsets.shape[:2] != (1, 2):
        raise ValueError(f"flow_to_uint8: offsets of one image must be 2 x h x w, got {tuple(offsets.shape)}")
    h, w = offsets.shape[-2:]
    out = (h * size, w * size) if isinstance(size, int) else tuple(int(s) for s in size)
    col = _flow_colours(offsets, False)[0].to(torch.uint8)  # h x w x 3, values already 0..255
    col = resize_nearest(col.permute(2, 0, 1), out, align_corners=False).permute(1, 2, 0)
    return np.ascontiguousarray(col.numpy())
