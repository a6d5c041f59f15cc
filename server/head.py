"""The per-image stage: bilinear upsampling + argmax of one image's logits at its own size.

The batched stage (the pools) stops at the low-resolution logits ``[C, h, w]``. With torch's bilinear
(``align_corners=False``) an output pixel's logits are a convex combination of its cell's 4 corners, so
when one class is the argmax at all 4 corners it is the argmax everywhere in the cell (a convex
combination of non-negative margins is non-negative, and float rounding is monotone, so no other class
can score higher in the computed values either). Hence:

1. the argmax at low resolution; pixels of cells whose 4 corners agree ("uniform", typically 85-95 %
   of a photo) get that label by two gathers, no arithmetic;
2. only the pixels of the other cells are interpolated, over the graph's candidates: ``topk`` the union
   of the 4 corners' top-K classes (the graph's 4K slots, in its order, with its float32 arithmetic:
   its mask exactly, since the corners' winner is slot 0 and ties go to the first slot), ``full``
   every class (the same up to exact float ties, which torch gives to the lower class index and the
   shortcut to the corners' winner).

numpy on one core per image (at most ``concurrency`` heads at once), in chunks of interpolated pixels:
beyond its mask an image holds about two copies of its low-resolution logits and 4 MB temporaries,
whatever its size. It replaced a second ONNX Runtime session over the graph's own upsampling nodes
(``docs/CONTRACT.md``), which computed 4K planes for every pixel: that head took 28 ms on 2 threads
for a 683x512 mask (this one ~5 ms on one) and kept a ~350 MB arena. On CUDA it runs on the host
too: the batched stage's logits come back to the host either way.
"""

from __future__ import annotations

import threading

import numpy as np

#: interpolated candidate values per step (4 MB of float32 per temporary)
CHUNK_VALUES = 1 << 20


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
    part = np.ascontiguousarray(flat[:, points].T)  # [n, C]
    top, rows = np.empty((len(points), k), np.int64), np.arange(len(points))
    for slot in range(k):
        top[:, slot] = part.argmax(axis=1)
        part[rows, top[:, slot]] = -np.inf
    return top


class MaskHead:
    """Masks from one image's logits (see the module doc); ``mode`` and ``topk`` are the graph's."""

    def __init__(self, mode: str, topk: int, mask_dtype: np.dtype, concurrency: int = 1) -> None:
        if mode not in ("topk", "full"):
            raise ValueError(f"unknown upsample mode {mode!r}")
        self.mode, self.topk, self.mask_dtype = mode, topk, np.dtype(mask_dtype)
        # one core each: more heads at once than cores buys nothing and multiplies their memory
        self._slots = threading.BoundedSemaphore(max(1, concurrency))

    def _cells(
        self, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[np.ndarray], np.ndarray | None]:
        """Low-res labels ``[h, w]``, the index of each cell among the mixed ones (-1: uniform), and per
        mixed cell its candidates and their logits at the 4 corners (``full``: candidates None, the
        corners' point indices, and the logits by point ``[h * w, C]`` to gather them per chunk)."""
        classes, h, w = logits.shape
        flat = logits.reshape(classes, h * w)
        best = _argmax(flat).reshape(h, w)
        right, down = np.minimum(np.arange(w) + 1, w - 1), np.minimum(np.arange(h) + 1, h - 1)
        below = best[down]
        uniform = (best == best[:, right]) & (best == below) & (best == below[:, right])
        cells = np.flatnonzero(~uniform)
        index = np.full(h * w, -1, np.int32)
        index[cells] = np.arange(len(cells), dtype=np.int32)
        ci, cj = np.divmod(cells, w)
        corners = [ci * w + cj, ci * w + right[cj], down[ci] * w + cj, down[ci] * w + right[cj]]
        if self.mode == "full":
            return best, index.reshape(h, w), None, corners, np.ascontiguousarray(flat.T)
        table = np.zeros((h * w, min(self.topk, classes)), np.int64)
        points = np.unique(np.concatenate(corners))
        table[points] = _top_k(flat, points, table.shape[1])
        candidates = np.concatenate([table[c] for c in corners], axis=1)  # [cells, 4K], the graph's slots
        return best, index.reshape(h, w), candidates, [flat[candidates, c[:, None]] for c in corners], None

    def run(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The ``[H, W]`` mask of one image's float32 ``[C, h, w]`` logits at ``size`` = (H, W)."""
        with self._slots:
            return self._run(np.asarray(logits, np.float32), size)

    def _run(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        height, width = size
        classes, h, w = logits.shape
        best, index, candidates, corner, by_point = self._cells(logits)
        y0, _, wy0, wy1 = axis_weights(h, height)
        x0, _, wx0, wx1 = axis_weights(w, width)
        mask = best.astype(self.mask_dtype)[:, x0][y0]  # every pixel its cell's low-res label
        cell = index[:, x0]  # [h, W]: the mixed cell under (low-res row, output column), or -1
        first = np.searchsorted(y0, np.arange(h + 1))  # output rows first[i]..first[i+1]-1 use row i
        out = mask.reshape(-1)  # a view: pixels written by flat index
        pair_i, pair_x = np.nonzero(cell >= 0)  # (low-res row, output column) pairs in mixed cells
        step = max(1, CHUNK_VALUES // (classes if candidates is None else candidates.shape[1]))
        for a in range(0, len(pair_i), step):
            i, x = pair_i[a : a + step], pair_x[a : a + step]
            k = cell[i, x]
            c00, c01, c10, c11 = (
                (c[k] for c in corner) if by_point is None else (by_point[c[k]] for c in corner)
            )
            ax, bx = wx0[x, None], wx1[x, None]
            top = c00 * ax + c01 * bx  # [pairs, slots]: along x first, like the graph
            bottom = c10 * ax + c11 * bx
            rows, start = first[i + 1] - first[i], first[i]
            at = start * width + x  # each pair's pixel in its first output row
            for r in range(int(rows.max())):  # the pairs' r-th output rows, all pairs at once
                if r >= rows.min():  # only the pairs with more rows (near the edges, or a lone row)
                    more = rows > r
                    top, bottom, k, at, start, rows = (v[more] for v in (top, bottom, k, at, start, rows))
                y = start + r
                slot = (top * wy0[y, None] + bottom * wy1[y, None]).argmax(axis=1)
                out[at + r * width] = slot if candidates is None else candidates[k, slot]
        return mask
