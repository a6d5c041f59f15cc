"""Verification of an exported graph: ONNX checker, then ONNX Runtime vs PyTorch at several shapes.

PyTorch reference: normalise (pixel/255, mean/std), the (unfused) network, ``F.interpolate(bilinear,
align_corners=False)`` to the output size, argmax. fp32 graphs must match the logits within 1e-4 max-abs
and the mask on all but 0.1 % of pixels; fp16 graphs must agree with the fp32 mask on >= 99.5 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

LOGITS_TOL_FP32 = 1e-4
MASK_MISMATCH_TOL = {"fp32": 0.001, "fp16": 0.005}


class VerificationError(RuntimeError):
    """The exported graph is invalid or does not reproduce PyTorch within tolerance."""


class RuntimeCannotRun(VerificationError):
    """ONNX Runtime (this machine's provider) cannot load or run the graph, so it is NOT verified."""


@dataclass(frozen=True)
class Case:
    batch: int
    height: int
    width: int
    output_size: tuple[int, int] | None = None  # None: the graph's default (the input size)

    def __str__(self) -> str:
        out = f" -> {self.output_size[0]}x{self.output_size[1]}" if self.output_size else ""
        return f"{self.batch}x{self.height}x{self.width}{out}"


DEFAULT_CASES = (Case(2, 512, 512, (480, 640)), Case(2, 333, 517), Case(1, 1024, 2048))


@dataclass(frozen=True)
class CaseReport:
    case: Case
    logits_max_abs: float
    mask_mismatch: float  # fraction of pixels
    ort_seconds: float
    torch_seconds: float

    def __str__(self) -> str:
        return (
            f"{self.case}: logits max-abs {self.logits_max_abs:.2e}, mask mismatch "
            f"{100 * self.mask_mismatch:.4f} % "
            f"(ORT {self.ort_seconds:.2f} s, torch {self.torch_seconds:.2f} s)"
        )


def synthetic_images(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 RGB images [N, H, W, 3] (blobs and edges, not white noise)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(batch):
        coarse = rng.integers(0, 256, (max(2, height // 48), max(2, width // 48), 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
        noise = rng.integers(-8, 9, smooth.shape)
        images.append(np.clip(smooth.astype(np.int64) + noise, 0, 255).astype(np.uint8))
    return np.stack(images)


def torch_reference(
    net: nn.Module, image: np.ndarray, mean: Sequence[float], std: Sequence[float], out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 [N,C,h,w], mask int64 [N,H,W]) from PyTorch, the reference semantics."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.inference_mode():
        x = (torch.from_numpy(np.array(image)).permute(0, 3, 1, 2).float() / 255.0 - m) / s
        logits = net(x)
        up = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
        return logits.numpy(), up.argmax(dim=1).numpy()


def _session_with_logits(model: onnx.ModelProto) -> ort.InferenceSession:
    """A session on a copy of ``model`` that also outputs ``logits`` (for the comparison only)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    if "logits" not in {o.name for o in probe.graph.output}:
        probe.graph.output.append(onnx.ValueInfoProto(name="logits"))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the overridable-initializer notice about output_size is expected
    try:
        return ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types (NotImplemented, Fail, ...)
        raise RuntimeCannotRun(f"ONNX Runtime {ort.__version__} (CPU) cannot load the graph: {exc}") from exc


def verify(
    model: onnx.ModelProto,
    net: nn.Module,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    precision: str = "fp32",
    cases: Sequence[Case] = DEFAULT_CASES,
    log: Callable[[str], None] = lambda _: None,
) -> list[CaseReport]:
    """Check ``model`` and compare it with ``net``; raise ``VerificationError`` on any failure."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"ONNX checker rejected the graph: {exc}") from exc
    log("  ONNX checker (full check): ok; ONNX Runtime vs PyTorch:")
    session = _session_with_logits(model)
    mask_tol = MASK_MISMATCH_TOL[precision]
    reports, failures = [], []
    for i, case in enumerate(cases):
        image = synthetic_images(case.batch, case.height, case.width, seed=i)
        feeds: dict[str, np.ndarray] = {"image": image}
        if case.output_size is not None:
            feeds["output_size"] = np.asarray(case.output_size, dtype=np.int64)
        t0 = time.perf_counter()
        try:
            mask, logits = session.run(["mask", "logits"], feeds)
        except Exception as exc:
            raise RuntimeCannotRun(f"ONNX Runtime {ort.__version__} (CPU) failed at {case}: {exc}") from exc
        t1 = time.perf_counter()
        out_hw = case.output_size or (case.height, case.width)
        ref_logits, ref_mask = torch_reference(net, image, image_mean, image_std, out_hw)
        t2 = time.perf_counter()
        if mask.shape != ref_mask.shape or logits.shape != ref_logits.shape:
            raise VerificationError(
                f"{case}: shapes differ: ONNX mask {mask.shape} logits {logits.shape}, "
                f"PyTorch mask {ref_mask.shape} logits {ref_logits.shape}"
            )
        report = CaseReport(
            case,
            float(np.abs(logits.astype(np.float32) - ref_logits).max()),
            float(np.mean(mask.astype(np.int64) != ref_mask)),
            t1 - t0,
            t2 - t1,
        )
        reports.append(report)
        log(f"  {report}")
        if precision == "fp32" and not report.logits_max_abs <= LOGITS_TOL_FP32:
            failures.append(f"{case}: logits max-abs {report.logits_max_abs:.3e} > {LOGITS_TOL_FP32:g}")
        if not report.mask_mismatch <= mask_tol:
            failures.append(
                f"{case}: mask differs on {100 * report.mask_mismatch:.3f} % of pixels > {100 * mask_tol:g} %"
            )
    if failures:
        raise VerificationError("ONNX Runtime does not match PyTorch:\n  " + "\n  ".join(failures))
    return reports
