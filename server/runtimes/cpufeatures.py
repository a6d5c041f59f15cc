"""This machine's CPU feature flags (``/proc/cpuinfo``), what ``server.runtimes.base.choose`` decides by."""

from __future__ import annotations

import functools
from pathlib import Path

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
