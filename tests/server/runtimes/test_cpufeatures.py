"""The runtime/precision rule: CPU flags from /proc/cpuinfo text, and what `auto` picks."""

from __future__ import annotations

import pytest

from server.runtimes.cpufeatures import choose_runtime, has_native_bf16, parse_cpu_flags
from server.settings import Settings

SAPPHIRE_RAPIDS = (
    "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
)
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t: amx_bf16\n"
AMX = parse_cpu_flags(SAPPHIRE_RAPIDS)
OLD = parse_cpu_flags(SKYLAKE)


def test_flags_are_read_from_the_first_processor() -> None:
    assert {"avx512_bf16", "amx_bf16", "fpu"} <= AMX and has_native_bf16(AMX)
    assert "avx512_vnni" in OLD and "amx_bf16" not in OLD and not has_native_bf16(OLD)
    assert parse_cpu_flags("") == frozenset() and not has_native_bf16(frozenset({"avx512_vnni"}))
    assert has_native_bf16(frozenset({"avx512_bf16"})) and has_native_bf16(frozenset({"amx_bf16"}))


@pytest.mark.parametrize(
    ("flags", "openvino", "cuda", "device", "expected"),
    [
        (AMX, True, False, "auto", ("openvino", "mixed")),
        (AMX, False, False, "auto", ("onnxruntime", "fp32")),  # extra not installed
        (OLD, True, False, "auto", ("onnxruntime", "fp32")),  # no native bf16
        (AMX, True, True, "auto", ("onnxruntime", "fp32")),  # CUDA stays ONNX Runtime
        (AMX, True, True, "cpu", ("openvino", "mixed")),
        (AMX, True, False, "cuda", ("onnxruntime", "fp32")),
    ],
)
def test_auto(
    flags: frozenset[str], openvino: bool, cuda: bool, device: str, expected: tuple[str, str]
) -> None:
    choice = choose_runtime(Settings(device=device), flags, openvino, cuda)  # type: ignore[arg-type]
    assert (choice.runtime, choice.precision) == expected and choice.reason


def test_explicit_choices() -> None:
    assert choose_runtime(Settings(runtime="openvino"), OLD, True, False).precision == "fp32"
    bf16 = choose_runtime(Settings(runtime="openvino", precision="bf16"), AMX, True, False)
    assert bf16.precision == "bf16"
    mixed = choose_runtime(Settings(runtime="openvino", precision="mixed"), AMX, True, False)
    assert mixed.precision == "mixed"
    fp32 = choose_runtime(Settings(runtime="openvino", precision="fp32"), AMX, True, False)
    assert (fp32.runtime, fp32.precision) == ("openvino", "fp32")
    assert choose_runtime(Settings(runtime="onnxruntime"), AMX, True, False).runtime == "onnxruntime"


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
        choose_runtime(settings, AMX, openvino, False)
    for reduced in ("bf16", "mixed"):  # no emulated bf16 on a CPU without it
        with pytest.raises(ValueError, match="AMX-BF16"):
            choose_runtime(Settings(runtime="openvino", precision=reduced), OLD, True, False)
