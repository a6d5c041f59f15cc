"""The one rule for runtime + precision (``server.runtimes.base.choose``): exact by default everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server.runtimes.base import choose
from server.settings import Settings
from tests.server.runtimes.test_cpufeatures import AMX, OLD

AVX2 = frozenset({"avx2", "fma"})


@pytest.mark.parametrize(
    ("flags", "openvino", "cuda", "device", "expected"),
    [
        (AMX, True, False, "auto", ("openvino", "fp32")),  # exact by default, on OpenVINO's faster fp32
        (OLD, True, False, "auto", ("openvino", "fp32")),  # AVX-512 without bf16: fp32 as well
        (AMX, False, False, "auto", ("onnxruntime", "fp32")),  # extra not installed
        (AVX2, True, False, "auto", ("onnxruntime", "fp32")),  # no AVX-512
        (AMX, True, True, "auto", ("onnxruntime", "fp32")),  # CUDA stays ONNX Runtime
        (AMX, True, True, "cpu", ("openvino", "fp32")),
        (AMX, True, False, "cuda", ("onnxruntime", "fp32")),
    ],
)
def test_auto_is_exact(
    flags: frozenset[str], openvino: bool, cuda: bool, device: str, expected: tuple[str, str]
) -> None:
    choice = choose(Settings(device=device), flags, openvino, cuda)  # type: ignore[arg-type]
    assert (choice.runtime, choice.precision) == expected and choice.reason


def test_a_faster_precision_is_named_only_where_the_cpu_has_it() -> None:
    assert choose(Settings(), AMX, True, False).hint == "bf16"
    assert choose(Settings(), OLD, True, False).hint is None
    assert choose(Settings(precision="bf16", runtime="openvino"), AMX, True, False).hint is None
    assert choose(Settings(), AMX, False, False).hint is None  # ONNX Runtime has no reduced precision


def test_explicit_choices() -> None:
    assert choose(Settings(runtime="openvino"), OLD, True, False).precision == "fp32"
    bf16 = choose(Settings(runtime="openvino", precision="bf16"), AMX, True, False)
    assert bf16.precision == "bf16"
    mixed = choose(Settings(runtime="openvino", precision="mixed"), AMX, True, False)
    assert mixed.precision == "mixed"
    fp32 = choose(Settings(runtime="openvino", precision="fp32"), AMX, True, False)
    assert (fp32.runtime, fp32.precision) == ("openvino", "fp32")
    assert choose(Settings(runtime="onnxruntime"), AMX, True, False).runtime == "onnxruntime"
    assert choose(Settings(precision="bf16"), AMX, True, False).runtime == "openvino"


@pytest.mark.parametrize(
    ("settings", "openvino", "message"),
    [
        (Settings(runtime="openvino"), False, "not installed"),
        (Settings(runtime="openvino", device="cuda"), True, "--device cuda"),
        (Settings(runtime="onnxruntime", precision="bf16"), True, "needs --runtime openvino"),
        (Settings(runtime="onnxruntime", precision="mixed"), True, "needs --runtime openvino"),
        (Settings(runtime="openvino", precision="fp16"), True, "AMX-FP16"),
    ],
)
def test_impossible_requests_are_refused(settings: Settings, openvino: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose(settings, AMX, openvino, False)
    for reduced in ("bf16", "mixed"):  # no emulated bf16 on a CPU without it
        with pytest.raises(ValueError, match="AMX-BF16"):
            choose(Settings(runtime="openvino", precision=reduced), OLD, True, False)


def test_the_batcher_and_the_interface_import_no_runtime() -> None:
    """A runtime is imported only when a pool of it is built (``build_pool``)."""
    code = (
        "import sys, server.runtimes.batcher, server.runtimes.base; "
        "print(sorted({'onnxruntime', 'openvino'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
