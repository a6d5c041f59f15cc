"""Build the pool the settings ask for: ONNX Runtime (``SessionPool``) or OpenVINO (``OpenVinoPool``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort

from server.runtimes.cpufeatures import Choice, choose_runtime, cpu_flags, openvino_installed
from server.runtimes.onnxruntime import CUDA, SessionPool
from server.settings import Settings

log = logging.getLogger("segformer.pools")


def runtime_choice(settings: Settings) -> Choice:
    """The runtime and precision for these settings on this machine (``ValueError`` if impossible)."""
    cuda = CUDA in ort.get_available_providers()
    return choose_runtime(settings, cpu_flags(), openvino_installed(), cuda)


def build_pool(model_path: Path, settings: Settings) -> Any:
    """A loaded pool (``SessionPool`` or ``OpenVinoPool``, same interface) for the graph at ``model_path``."""
    choice = runtime_choice(settings)
    log.info("runtime %s, precision %s (%s)", choice.runtime, choice.precision, choice.reason)
    if choice.runtime == "openvino":
        from server.runtimes.openvino import OpenVinoPool  # the optional extra

        return OpenVinoPool(model_path, settings, choice.precision)
    return SessionPool(model_path, settings)
