"""The runtimes' one interface (``Pool``) and the one place that decides which runtime and precision serve.

A runtime is a pool of sessions that runs a uint8 ``[N, H, W, 3]`` batch to its low-resolution logits
(the graph's batched stage); everything above it (batcher, data plane, transports) sees only ``Pool``.
A new runtime is a new module here with a class that has this interface, and a branch in ``build_pool``.

The rule (``choose``, a pure function; docs/openvino.md says why):

- ``--runtime auto``: ONNX Runtime on CUDA (``--device cuda``, or ``auto`` with the ORT CUDA provider
  installed); on a CPU, OpenVINO when the ``openvino`` extra is installed and the CPU has AVX-512
  (``avx512f``: where OpenVINO's fp32 measured faster than ONNX Runtime's), else ONNX Runtime.
- ``--precision auto``: always the graph's own precision (fp32): masks exactly as the reference's.
  ``mixed``, ``bf16`` and ``fp16`` (OpenVINO only) are chosen by flag, or per model (``NAME@bf16=SOURCE``,
  ``server.source.parse_model_arg``); ``hint`` names the faster precision the CPU offers and that was
  not chosen, for the one start-up log line that says so.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from contract.spec import ModelSpec
from server.head import MaskHead
from server.runtimes.cpufeatures import FP16_FLAGS, cpu_flags, has_native_bf16
from server.settings import Settings

log = logging.getLogger("segformer.runtimes")
Runtime = Literal["onnxruntime", "openvino"]
Precision = Literal["fp32", "bf16", "fp16", "mixed"]
#: what the reduced precisions measured on real photos (docs/openvino.md, "Precisions measured")
MEASURED = {
    "bf16": "~2.1x ONNX Runtime, 99.52-99.93 % of pixels as the reference on real photos",
    "mixed": "1.3-1.8x, 99.71-99.94 % (99.07 % on a held-out 2048x1024 street scene)",
}
Session = TypeVar("Session")


@dataclass(frozen=True)
class PoolPlan:
    """How many sessions, with how many intra-op threads each.

    ``lanes`` sessions run batches side by side. ``solo_threads`` > 0: a solo session with that many
    threads serves a request that has the pool to itself (``server.runtimes.lanes``)."""

    lanes: int
    lane_threads: int
    solo_threads: int = 0  # 0: no solo session


class Pool(Protocol[Session]):
    """Sessions over one graph's batched stage, lent to one batch at a time (``server.runtimes.lanes``)."""

    runtime: Runtime
    precision: Precision  # what the network computes in (the graph's own on ONNX Runtime)
    providers: list[str]
    spec: ModelSpec
    head: MaskHead  # the per-image stage: logits -> mask at the image's size
    plan: PoolPlan
    idle_since: float  # when the last busy session was given back

    @property
    def size(self) -> int: ...  # batches that run side by side

    @property
    def busy(self) -> int: ...  # sessions lent out now

    @property
    def on_cuda(self) -> bool: ...

    async def acquire(self, alone: bool = False) -> Session: ...

    def release(self, session: Session) -> None: ...

    def kind(self, session: Session) -> str: ...  # "solo" or "lane" (the session-runs metric)

    async def run(self, session: Session, images: np.ndarray) -> np.ndarray: ...

    def warm_up(self, runs: int) -> float: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Choice:
    runtime: Runtime
    precision: Precision
    reason: str
    hint: Precision | None = None  # a faster precision this CPU offers that was not chosen


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose(settings: Settings, flags: frozenset[str], openvino: bool, cuda: bool) -> Choice:
    """Apply the rule (module doc) to the settings and the machine; ``ValueError`` if impossible.

    ``cuda``: the ORT CUDA provider is installed (``--device auto`` then means CUDA: ONNX Runtime)."""
    on_cuda = settings.device == "cuda" or (settings.device == "auto" and cuda)
    runtime = settings.runtime
    if runtime == "openvino" and not openvino:
        raise ValueError("--runtime openvino: the `openvino` package is not installed (the `openvino` extra)")
    if runtime == "openvino" and settings.device == "cuda":
        raise ValueError("--runtime openvino runs on the CPU; --device cuda needs --runtime onnxruntime")
    if runtime == "auto":
        if on_cuda:
            return _precision(settings, "onnxruntime", flags, "CUDA: ONNX Runtime")
        if openvino and "avx512f" in flags:
            return _precision(settings, "openvino", flags, "CPU with AVX-512 and the openvino extra")
        why = "openvino extra not installed" if not openvino else "CPU without AVX-512"
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
    if asked in ("bf16", "mixed") and not has_native_bf16(flags):
        raise ValueError(f"--precision {asked} on OpenVINO CPU needs AMX-BF16 or AVX512-BF16 (use fp32)")
    if asked == "fp16" and not flags & FP16_FLAGS:
        raise ValueError("--precision fp16 on OpenVINO CPU needs AMX-FP16 or AVX512-FP16 (use fp32)")
    if asked == "auto":
        return Choice(runtime, "fp32", reason, hint="bf16" if has_native_bf16(flags) else None)
    return Choice(runtime, asked, reason)


def cuda_installed() -> bool:
    """The ORT CUDA provider is installed (ONNX Runtime is imported only when asked)."""
    from server.runtimes.onnxruntime import cuda_available

    return cuda_available()


def runtime_choice(settings: Settings) -> Choice:
    """``choose`` for this machine (``ValueError`` if impossible)."""
    return choose(settings, cpu_flags(), openvino_installed(), cuda_installed())


def preflight(settings: Settings) -> Choice:
    """Before anything listens: the default runtime is possible here (``ValueError``/``RuntimeError``
    otherwise: a missing package, a CUDA device that is not there), logged with the faster precision
    this CPU offers when it is not chosen (one line)."""
    choice = runtime_choice(settings)
    if choice.runtime == "onnxruntime":
        from server.runtimes.onnxruntime import choose_providers

        log.info("execution providers: %s", choose_providers(settings))
    log.info("runtime %s, precision %s (%s)", choice.runtime, choice.precision, choice.reason)
    if choice.hint is not None:
        log.info(
            "faster, not chosen: --precision %s or mixed (or per model, NAME@%s=SOURCE): %s; mixed %s "
            "(docs/openvino.md); serving %s, the reference's masks",
            choice.hint, choice.hint, MEASURED[choice.hint], MEASURED["mixed"], choice.precision,
        )  # fmt: skip
    return choice


def build_pool(model_path: Path, settings: Settings) -> Pool[object]:
    """A loaded pool for the graph at ``model_path``, on the runtime and precision ``choose`` picks."""
    choice = runtime_choice(settings)
    log.info("%s: runtime %s, precision %s", model_path.name, choice.runtime, choice.precision)
    if choice.runtime == "openvino":
        from server.runtimes.openvino import OpenVinoPool  # the optional extra

        return OpenVinoPool(model_path, settings, choice.precision)  # type: ignore[return-value]
    from server.runtimes.onnxruntime import SessionPool

    return SessionPool(model_path, settings)  # type: ignore[return-value]
