"""Which runtime and precision serve on this machine: CPU feature flags and the ``auto`` rule.

``--runtime auto``: OpenVINO when the ``openvino`` extra is installed and the CPU computes bf16 natively
(``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``) and the server is not on CUDA; otherwise ONNX
Runtime. ``--precision auto``: ``mixed`` (bf16 with stage 4 and the decode head in fp32) on OpenVINO with
such a CPU, else fp32 (the graph's own precision).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.settings import Settings

Runtime = Literal["onnxruntime", "openvino"]
Precision = Literal["fp32", "bf16", "fp16", "mixed"]
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
FP16_FLAGS = frozenset({"amx_fp16", "avx512_fp16"})


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` text (empty when there are none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (empty off Linux)."""
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return frozenset()


def has_native_bf16(flags: frozenset[str]) -> bool:
    return bool(flags & BF16_FLAGS)


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class Choice:
    runtime: Runtime
    precision: Precision
    reason: str


def choose_runtime(settings: Settings, flags: frozenset[str], openvino: bool, cuda: bool) -> Choice:
    """Apply the ``auto`` rule (module docstring); raises ``ValueError`` for an impossible request.

    ``cuda``: the ORT CUDA provider is installed (``--device auto`` then means CUDA: ONNX Runtime).
    """
    on_cuda = settings.device == "cuda" or (settings.device == "auto" and cuda)
    runtime = settings.runtime
    if runtime == "openvino" and not openvino:
        raise ValueError("--runtime openvino: the `openvino` package is not installed (the `openvino` extra)")
    if runtime == "openvino" and settings.device == "cuda":
        raise ValueError("--runtime openvino runs on the CPU; --device cuda needs --runtime onnxruntime")
    if runtime == "auto":
        if on_cuda:
            return _precision(settings, "onnxruntime", flags, "CUDA: ONNX Runtime")
        if openvino and has_native_bf16(flags):
            return _precision(settings, "openvino", flags, "CPU with native bf16 and the openvino extra")
        why = "openvino extra not installed" if not openvino else "CPU without native bf16"
        return _precision(settings, "onnxruntime", flags, why)
    return _precision(settings, runtime, flags, f"--runtime {runtime}")


def _precision(settings: Settings, runtime: Runtime, flags: frozenset[str], reason: str) -> Choice:
    asked = settings.precision
    if runtime == "onnxruntime":
        if asked in ("bf16", "fp16", "mixed"):
            raise ValueError(
                f"--precision {asked} needs --runtime openvino (ONNX Runtime runs the graph's own precision; "
                "export an fp16 graph with segformer-export --fp16 for CUDA)"
            )
        return Choice(runtime, "fp32", reason)
    if asked == "auto":
        return Choice(runtime, "mixed" if has_native_bf16(flags) else "fp32", reason)
    if asked in ("bf16", "mixed") and not has_native_bf16(flags):
        raise ValueError(f"--precision {asked} on OpenVINO CPU needs AMX-BF16 or AVX512-BF16 (use fp32)")
    if asked == "fp16" and not flags & FP16_FLAGS:
        raise ValueError("--precision fp16 on OpenVINO CPU needs AMX-FP16 or AVX512-FP16 (use fp32)")
    return Choice(runtime, asked, reason)
