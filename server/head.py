"""The per-image stage: bilinear upsampling + argmax of one image's logits at its own size.

The batched stage (the pools) stops at the low-resolution logits ``[C, h, w]``. With torch's bilinear
(``align_corners=False``) an output pixel's logits are a convex combination of its cell's 4 corners, so
when one class is the argmax at all 4 corners it is the argmax everywhere in the cell (a convex
combination of non-negative margins is non-negative, and float rounding is monotone, so no other class
can score higher in the computed values either). Hence:

1. the argmax at low resolution; the pixels of cells whose 4 corners agree ("uniform", typically
   85-95 % of a photo) get that label as blocks: the low-res labels repeated along x once per low-res
   row, then whole output rows copied;
2. only the pixels of the other ("mixed") cells are interpolated, over the graph's candidates: ``topk``
   the union of the 4 corners' top-K classes (the graph's 4K slots, in its order, with its float32
   arithmetic: its mask exactly, since the corners' winner is slot 0 and ties go to the first slot),
   ``full`` every class (the same up to exact float ties, which torch gives to the lower class index
   and the shortcut to the corners' winner);
3. of a mixed cell's candidates only those that can win somewhere in it are interpolated: a class whose
   largest corner logit is below another's smallest by more than float rounding can reach (``MARGIN``
   of the cell's largest logit; the computed values stay within a few ulps of the corners' range) never
   wins there, and a class already in an earlier slot adds nothing (identical values, the earlier slot
   wins ties). The survivors keep their slot order, so the mask is the same as over every slot;
   typically 2 of the 12 top-K slots (150 classes in ``full`` mode) survive.

Mixed cells are evaluated as dense blocks (cells x rows x columns, a cell's short rows and columns
padded by repeating its last one: the same pixel computed twice, the same label). Large masks are cut
into bands of low-res rows filled in parallel on a thread pool (numpy releases the GIL), at most
``concurrency`` heads at once. Temporaries come in steps of ``CHUNK_VALUES``, below the server's fixed
1 MiB mmap threshold (``server.memory.tune_malloc``): the heap reuses them from request to request,
where larger ones were fresh mappings faulted page by page every time (a 12 Mpx head: ~10,000 page
faults and 37-44 ms of CPU, now the mask's own ~3,000 and 24-35 ms). Measured beyond the mask: 5-9 MB
for 12 Mpx of smooth logits, 13 MB on two threads for random ones (150 classes).
It replaced a second ONNX Runtime session over the graph's own upsampling nodes (``docs/CONTRACT.md``),
which computed 4K planes for every pixel. On CUDA it runs on the host too: the batched stage's logits
come back to the host either way.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from server.recycle import RECYCLER

#: values per step (512 KB of float32 per temporary: heap-sized, see the module doc)
CHUNK_VALUES = 1 << 17
#: a class is dropped from a mixed cell when it trails another by more than this x the cell's largest
#: |logit| at every corner (float32 rounding of the interpolation moves values by < 2^-20 of that)
MARGIN = np.float32(2.0**-16)
#: chunks of cells with at most this many candidates take a running maximum, others numpy's argmax
FEW_SLOTS = 2
#: masks of at least this many pixels are filled in bands on the thread pool
PARALLEL_PIXELS = 1 << 21
#: mixed cells of at most this many pixels (a small photo's) are written with one scatter for the chunk,
#: larger ones block by block (a Python step per cell costs more than a small cell's pixels)
SCATTER_PIXELS = 64


def axis_weights(
    in_size: int, out_size: int, start: int = 0, end: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear (``align_corners=False``) source indices ``i0``, ``i1`` and weights ``l0``,
    ``l1`` (float32) for output positions start..end-1 of an ``out_size`` axis resized from
    ``in_size``: the float32 arithmetic of ``contract.upsample``'s nodes."""
    scale = np.float32(in_size) / np.float32(out_size)
    pos = np.arange(start, out_size if end is None else end, dtype=np.float32)
    src = np.maximum(scale * (pos + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1))
    return i0, np.minimum(i0 + 1, in_size - 1), np.float32(1) - l1, l1


def _argmax(flat: np.ndarray) -> np.ndarray:
    """``flat.argmax(axis=0)`` of ``[C, n]`` (first index on ties) one class at a time: contiguous
    compares, 4x faster than numpy's argmax over the strided axis (0.8 vs 3 ms for 150 x 128 x 128)."""
    best, top = np.zeros(flat.shape[1], np.int64), flat[0].copy()
    for c in range(1, flat.shape[0]):
        higher = flat[c] > top
        np.copyto(top, flat[c], where=higher)
        best[higher] = c
    return best


def _top_k(flat: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """``[len(points), k]`` classes of the k largest logits at low-res ``points``, largest first (ties:
    the lower class first, as ONNX TopK)."""
    top = np.empty((len(points), k), np.int64)
    step = max(1, CHUNK_VALUES // flat.shape[0])  # [step, C] pieces: heap-sized temporaries (module doc)
    for a in range(0, len(points), step):
        part = np.ascontiguousarray(flat[:, points[a : a + step]].T)  # [n, C]
        rows = np.arange(len(part))
        for slot in range(k):
            top[a : a + step, slot] = part.argmax(axis=1)
            part[rows, top[a : a + step, slot]] = -np.inf
    return top


def _survivors(labels: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The candidates that can win in each cell (module doc, 3.): ``keep`` ``[n, S]`` and its order
    ``[n, S]`` (kept slots first, in slot order)."""
    low, high = np.minimum.reduce(values), np.maximum.reduce(values)
    scale = np.maximum.reduce([np.abs(v).max(axis=1) for v in values])
    keep = high >= (low.max(axis=1) - MARGIN * scale)[:, None]
    keep[:, 0] |= ~keep.any(axis=1)  # NaN logits (an fp16/bf16 overflow) keep no one: slot 0 stays
    for slot in range(1, labels.shape[1]):  # a class already in an earlier slot adds nothing
        keep[:, slot] &= (labels[:, :slot] != labels[:, slot : slot + 1]).all(axis=1)
    return keep, np.argsort(~keep, axis=1, kind="stable")


@dataclass
class _Plan:
    """One mask's low-res analysis, shared by its bands."""

    size: tuple[int, int]
    rows: np.ndarray  # [h, W] the low-res labels repeated along x (the uniform fill of each output row)
    y0: np.ndarray  # [H] the low-res row of each output row
    first_y: np.ndarray  # [h + 1] output rows first_y[i]..first_y[i+1]-1 lie in low-res row i
    first_x: np.ndarray  # [w + 1]
    weights: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # wy0, wy1, wx0, wx1
    cells: np.ndarray  # [n] flat low-res index of each mixed cell with pixels, row-major
    corners: list[np.ndarray]  # 4 x [n] the corners' flat indices
    flat: np.ndarray  # [C, h * w] the logits
    candidates: np.ndarray | None  # topk: [n, S] classes; full: None (every class)


class MaskHead:
    """Masks from one image's logits (see the module doc); ``mode`` and ``topk`` are the graph's."""

    def __init__(self, mode: str, topk: int, mask_dtype: np.dtype, concurrency: int = 1) -> None:
        if mode not in ("topk", "full"):
            raise ValueError(f"unknown upsample mode {mode!r}")
        self.mode, self.topk, self.mask_dtype = mode, topk, np.dtype(mask_dtype)
        self.concurrency = max(1, concurrency)
        # at most one head per core at once; a large mask's bands share the cores (a pool of as many)
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._bands = ThreadPoolExecutor(self.concurrency, "mask-head") if self.concurrency > 1 else None

    def close(self) -> None:
        if self._bands is not None:
            self._bands.shutdown(wait=False)

    def run(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The ``[H, W]`` mask of one image's float32 ``[C, h, w]`` logits at ``size`` = (H, W)."""
        with self._slots:
            plan = self._plan(np.asarray(logits, np.float32), size)
            mask = RECYCLER.empty(size, self.mask_dtype)  # a 12 Mpx mask's pages, not faulted again
            h = len(plan.first_y) - 1
            parts = self.concurrency if size[0] * size[1] >= PARALLEL_PIXELS and self._bands else 1
            bands = [(h * b // parts, h * (b + 1) // parts) for b in range(parts)]
            if self._bands is None or parts == 1:
                for band in bands:
                    self._fill(plan, mask, band)
            else:
                list(self._bands.map(lambda band: self._fill(plan, mask, band), bands))
            return mask

    def _plan(self, logits: np.ndarray, size: tuple[int, int]) -> _Plan:
        classes, h, w = logits.shape
        flat = logits.reshape(classes, h * w)
        best = _argmax(flat).reshape(h, w)
        y0, _, wy0, wy1 = axis_weights(h, size[0])
        x0, _, wx0, wx1 = axis_weights(w, size[1])
        first_y, first_x = np.searchsorted(y0, np.arange(h + 1)), np.searchsorted(x0, np.arange(w + 1))
        right, down = np.minimum(np.arange(w) + 1, w - 1), np.minimum(np.arange(h) + 1, h - 1)
        below = best[down]
        uniform = (best == best[:, right]) & (best == below) & (best == below[:, right])
        has_pixels = (np.diff(first_y) > 0)[:, None] & (np.diff(first_x) > 0)[None, :]
        cells = np.flatnonzero(~uniform & has_pixels)
        ci, cj = np.divmod(cells, w)
        corners = [ci * w + cj, ci * w + right[cj], down[ci] * w + cj, down[ci] * w + right[cj]]
        candidates = None
        if self.mode == "topk":
            table = np.zeros((h * w, min(self.topk, classes)), np.int64)
            points = np.unique(np.concatenate(corners))
            table[points] = _top_k(flat, points, table.shape[1])
            candidates = np.concatenate([table[c] for c in corners], axis=1)  # [cells, 4K]: the graph's
        rows = np.ascontiguousarray(best.astype(self.mask_dtype)[:, x0])
        weights = (wy0, wy1, wx0, wx1)
        return _Plan(size, rows, y0, first_y, first_x, weights, cells, corners, flat, candidates)

    def _fill(self, plan: _Plan, mask: np.ndarray, band: tuple[int, int]) -> None:
        """Low-res rows band[0]..band[1]-1 of the mask: the uniform fill, then the mixed cells."""
        for i in range(*band):  # whole rows: each low-res row's labels, repeated along x, then down
            mask[plan.first_y[i] : plan.first_y[i + 1]] = plan.rows[i]
        lo, hi = np.searchsorted(plan.cells // (len(plan.first_x) - 1), band)  # the band's mixed cells
        classes = plan.flat.shape[0] if plan.candidates is None else plan.candidates.shape[1]
        step = max(1, CHUNK_VALUES // (4 * classes))  # 4 corners' values per candidate
        for a in range(lo, hi, step):
            chunk = np.arange(a, min(hi, a + step))
            labels = (
                np.broadcast_to(np.arange(classes), (len(chunk), classes))
                if plan.candidates is None
                else plan.candidates[chunk]
            )
            values = [plan.flat[labels, c[chunk, None]] for c in plan.corners]
            keep, order = _survivors(labels, values)
            counts = keep.sum(axis=1)
            by_count = np.argsort(counts, kind="stable")
            for m in np.unique(counts):
                group = by_count[counts[by_count] == m]
                slots = order[group, :m]
                self._cells(
                    plan,
                    mask,
                    chunk[group],
                    np.take_along_axis(labels[group], slots, axis=1),
                    [np.take_along_axis(v[group], slots, axis=1) for v in values],
                )

    def _cells(
        self, plan: _Plan, mask: np.ndarray, cells: np.ndarray, labels: np.ndarray, values: list[np.ndarray]
    ) -> None:
        """The pixels of mixed cells (indices into ``plan.cells``) with ``m`` candidates each, as dense
        blocks ``[cells, rows, columns]`` in chunks of ``CHUNK_VALUES``."""
        w = len(plan.first_x) - 1
        ci, cj = np.divmod(plan.cells[cells], w)
        count_y = plan.first_y[ci + 1] - plan.first_y[ci]
        count_x = plan.first_x[cj + 1] - plan.first_x[cj]
        rows, cols = int(count_y.max()), int(count_x.max())
        ys = plan.first_y[ci, None] + np.minimum(np.arange(rows), count_y[:, None] - 1)  # [n, R]
        xs = plan.first_x[cj, None] + np.minimum(np.arange(cols), count_x[:, None] - 1)  # [n, X]
        wy0, wy1, wx0, wx1 = plan.weights
        slots = labels.shape[1]
        step = max(1, CHUNK_VALUES // (rows * cols * (1 if slots <= FEW_SLOTS else slots)))
        for a in range(0, len(cells), step):  # laid out [R, n, X]: long contiguous inner loops
            part = slice(a, a + step)
            y, x = ys[part].T, xs[part]  # [R, n], [n, X]
            v00, v01, v10, v11 = (v[part].T[:, :, None] for v in values)  # [m, n, 1]
            ax, bx = wx0[x], wx1[x]
            top = v00 * ax + v01 * bx  # [m, n, X]: along x first, like the graph
            bottom = v10 * ax + v11 * bx
            if slots <= FEW_SLOTS:
                label = self._slot_by_slot(top, bottom, wy0[y], wy1[y], labels[part])
            else:  # every slot's values of a pixel side by side, numpy's argmax over them (first wins)
                ay, by = wy0[y][:, :, None, None], wy1[y][:, :, None, None]  # [R, n, 1, 1]
                top, bottom = (np.ascontiguousarray(np.moveaxis(v, 0, -1)) for v in (top, bottom))
                value = top * ay + bottom * by  # [R, n, X, m]
                slot = value.argmax(axis=-1)
                label = labels[part][np.arange(len(x))[None, :, None], slot].astype(self.mask_dtype)
            if rows * cols <= SCATTER_PIXELS:  # small cells: one scatter (padding rewrites equal labels)
                mask[y[:, :, None], x[None, :, :]] = label
                continue
            corners = zip(y[0], x[:, 0], count_y[part], count_x[part], strict=True)
            for k, (top_y, left_x, r, c) in enumerate(corners):
                mask[top_y : top_y + r, left_x : left_x + c] = label[:r, k, :c]  # a cell: one block

    def _slot_by_slot(
        self, top: np.ndarray, bottom: np.ndarray, wy0: np.ndarray, wy1: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """``[R, n, X]`` labels of a chunk with few slots: a running maximum over the slots."""
        shape = (wy0.shape[0], top.shape[1], top.shape[2])
        ay = np.ascontiguousarray(np.broadcast_to(wy0[:, :, None], shape))
        by = np.ascontiguousarray(np.broadcast_to(wy1[:, :, None], shape))
        best, value = top[0] * ay + bottom[0] * by, np.empty(shape, np.float32)
        label = np.empty(shape, self.mask_dtype)
        label[...] = labels[:, 0, None].astype(self.mask_dtype)
        for slot in range(1, labels.shape[1]):
            np.multiply(top[slot], ay, out=value)
            value += bottom[slot] * by
            higher = value > best  # strictly: ties stay with the earlier slot
            np.copyto(best, value, where=higher)
            np.copyto(label, labels[:, slot, None].astype(self.mask_dtype), where=higher)
        return label
