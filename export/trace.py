"""PyTorch network -> ONNX network graph (``pixel_values`` float NCHW -> ``logits``), dynamic N/H/W.

Uses the TorchScript-based exporter (``dynamo=False``): it exports B0 in ~2 s where the dynamo exporter
takes ~30 s, and keeps the batch dimension dynamic (the dynamo exporter silently specialises a batch-1
example to batch 1). Shapes baked in as constants are caught by verification at several resolutions.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

PIXEL_VALUES = "pixel_values"
NETWORK_LOGITS = "logits"
# batch >= 2 and a non-square size that is a multiple of 32, so nothing specialises on the example
EXAMPLE_SHAPE = (2, 3, 256, 320)
MAX_OPSET = 20  # the TorchScript-based exporter's newest opset


def export_network(net: nn.Module, opset: int) -> onnx.ModelProto:
    """Trace ``net`` (eval mode, float32) into an ONNX model with dynamic batch, height and width."""
    if opset > MAX_OPSET:
        raise ValueError(f"opset {opset} is newer than the exporter supports (max {MAX_OPSET})")
    example = torch.rand(*EXAMPLE_SHAPE) * 4.0 - 2.0
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation (we choose it on purpose, see above).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export")
        # Tracer warnings flag Python values derived from shapes; verification at several input sizes is
        # what proves nothing shape-dependent was frozen, so they are noise here.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(
                net,
                (example,),
                buffer,
                input_names=[PIXEL_VALUES],
                output_names=[NETWORK_LOGITS],
                dynamic_axes={
                    PIXEL_VALUES: {0: "batch", 2: "height", 3: "width"},
                    NETWORK_LOGITS: {0: "batch", 2: "logits_height", 3: "logits_width"},
                },
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    return onnx.load_from_string(buffer.getvalue())
