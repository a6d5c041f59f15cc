"""Sliding-window inference (``mode=slide``) with mmseg's semantics (``EncoderDecoder.slide_inference``).

Windows of ``crop`` pixels every ``stride`` pixels; a window that would cross the image's far edge is
shifted back inside it (``start = max(end - crop, 0)``); each window's logits are bilinearly upsampled
to the window's size, summed where windows overlap and divided by the number of windows covering each
pixel, then the argmax is the label. Windows go through the model's batcher like any request (so they
batch with each other and with other traffic of the same shape). The combination is done in bands of
output rows, as soon as every window covering a band is back, so at most two rows of windows' logits
and one band of summed logits are held at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from server.head import axis_weights

Infer = Callable[[np.ndarray], Awaitable[np.ndarray]]
#: summed float32 logits per band of output rows
BAND_BYTES = 64 << 20


def windows_1d(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """mmseg's windows along one axis: ``(start, end)`` each, the last ones shifted back inside."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    out = []
    for index in range(grids):
        end = min(index * stride + crop, size)
        out.append((max(end - crop, 0), end))
    return out


def upsample_rows(logits: np.ndarray, size: tuple[int, int], rows: tuple[int, int]) -> np.ndarray:
    """Output rows ``rows`` of ``[C, h, w]`` logits bilinearly resized to ``size`` (torch's
    ``F.interpolate(..., mode="bilinear", align_corners=False)``): float32 ``[C, rows, W]``. Only the
    low-resolution rows those output rows need are interpolated along x."""
    _, h, w = logits.shape
    y0, y1, ly0, ly = axis_weights(h, size[0], *rows)
    x0, x1, lx0, lx = axis_weights(w, size[1])
    needed, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    part = logits[:, needed]
    columns = part[:, :, x0] * lx0 + part[:, :, x1] * lx  # [C, needed, W]
    top, bottom = columns[:, inverse[: len(y0)]], columns[:, inverse[len(y0) :]]
    return top * ly0[None, :, None] + bottom * ly[None, :, None]


def coverage(size: int, windows: list[tuple[int, int]]) -> np.ndarray:
    """How many windows cover each position (float32, for the division)."""
    count = np.zeros(size, np.float32)
    for start, end in windows:
        count[start:end] += 1
    return count


@dataclass(frozen=True)
class SlidePlan:
    height: int
    width: int
    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]

    @property
    def windows(self) -> int:
        return len(self.rows) * len(self.cols)

    def logits_bytes(self, classes: int) -> int:
        """Bytes of the window logits held at once (two rows of windows, at a quarter of the crop)."""
        crop_h, crop_w = self.rows[0][1] - self.rows[0][0], self.cols[0][1] - self.cols[0][0]
        return 2 * len(self.cols) * classes * -(-crop_h // 4) * -(-crop_w // 4) * 4


def plan(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]) -> SlidePlan:
    return SlidePlan(
        height, width, windows_1d(height, crop[0], stride[0]), windows_1d(width, crop[1], stride[1])
    )


def combine(
    layout: SlidePlan,
    logits: dict[tuple[int, int], np.ndarray],
    rows: tuple[int, int],
    mask: np.ndarray,
) -> None:
    """Fill ``mask[rows[0]:rows[1]]``: the argmax of the count-averaged upsampled window logits."""
    width = layout.width
    classes = next(iter(logits.values())).shape[0]
    count_x = coverage(width, layout.cols)
    count_y = coverage(layout.height, layout.rows)
    band = max(1, BAND_BYTES // (classes * width * 4))
    for b0 in range(rows[0], rows[1], band):
        b1 = min(rows[1], b0 + band)
        total = np.zeros((classes, b1 - b0, width), np.float32)
        for gi, (y1, y2) in enumerate(layout.rows):
            lo, hi = max(y1, b0), min(y2, b1)
            if lo >= hi:
                continue
            for wi, (x1, x2) in enumerate(layout.cols):
                part = upsample_rows(logits[gi, wi], (y2 - y1, x2 - x1), (lo - y1, hi - y1))
                total[:, lo - b0 : hi - b0, x1:x2] += part
        total /= count_y[b0:b1, None] * count_x[None, :]
        mask[b0:b1] = total.argmax(axis=0)


async def slide_mask(
    pixels: np.ndarray, layout: SlidePlan, infer: Infer, mask_dtype: np.dtype, inflight: int
) -> tuple[np.ndarray, dict[str, float]]:
    """The mask of ``pixels`` (uint8 ``[H, W, 3]``) by sliding windows; with seconds spent waiting for
    the windows (``inference``) and combining them (``mask``)."""
    slots = asyncio.Semaphore(inflight)
    mask = np.empty((layout.height, layout.width), mask_dtype)
    timings = {"inference": 0.0, "mask": 0.0}

    async def window(y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
        async with slots:
            return await infer(np.ascontiguousarray(pixels[y[0] : y[1], x[0] : x[1]]))

    def row(gi: int) -> asyncio.Future[list[np.ndarray]]:
        return asyncio.gather(*(window(layout.rows[gi], x) for x in layout.cols))

    held: dict[tuple[int, int], np.ndarray] = {}
    done, pending = 0, row(0)
    try:
        for gi in range(len(layout.rows)):
            start = time.monotonic()
            results = await pending
            timings["inference"] += time.monotonic() - start
            pending = row(gi + 1) if gi + 1 < len(layout.rows) else None  # next row runs while combining
            held.update({(gi, wi): logits for wi, logits in enumerate(results)})
            ready = layout.rows[gi + 1][0] if gi + 1 < len(layout.rows) else layout.height
            start = time.monotonic()
            await asyncio.to_thread(combine, layout, held, (done, ready), mask)
            timings["mask"] += time.monotonic() - start
            done = ready
            held = {key: value for key, value in held.items() if layout.rows[key[0]][1] > done}
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    return mask, timings
