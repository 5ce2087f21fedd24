"""The CPU's bf16-related instruction flags, read from /proc/cpuinfo (no TensorFlow import): what
`--backbone_precision=auto` decides on and what the benchmarks print beside every figure."""

from __future__ import annotations

# Native bf16 dot products (AVX-512 BF16, Intel AMX). avx512_vnni (int8) and avx512f are shown for context.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REPORTED_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo_text: str | None = None) -> set[str]:
    """The flags of the first processor in /proc/cpuinfo (or in `cpuinfo_text`); empty when unreadable."""
    if cpuinfo_text is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo_text = f.read()
        except OSError:
            return set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def reported_cpu_flags(cpuinfo_text: str | None = None) -> str:
    """The bf16-related flags this CPU has, comma-separated ("none" when it has none)."""
    have = cpu_flags(cpuinfo_text)
    return ",".join(f for f in REPORTED_FLAGS if f in have) or "none"


def cpu_has_bf16(cpuinfo_text: str | None = None) -> bool:
    return bool(cpu_flags(cpuinfo_text) & set(BF16_FLAGS))
