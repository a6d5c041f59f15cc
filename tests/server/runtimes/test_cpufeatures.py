"""CPU flags from /proc/cpuinfo text."""

from __future__ import annotations

from server.runtimes.cpufeatures import has_native_bf16, parse_cpu_flags

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
