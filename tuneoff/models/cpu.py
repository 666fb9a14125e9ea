"""What this CPU computes fast: native bf16, int8 dot products (VNNI), AMX. One source of truth, read by
`dtype: auto` (`tuneoff.models.local.resolve_precision`) and by the benchmarks (which cases `make bench`
runs, the flags every script prints). Torch-free: it reads /proc/cpuinfo only.

Only x86 flags are read: on ARM (or where /proc/cpuinfo is absent: macOS, Windows) nothing is claimed,
so `auto` stays fp32 there, as it always did.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Flags of CPUs whose matmul units take bf16 (AVX512_BF16 dot products, AMX tiles): bf16 there runs
about 2x fp32's matmul rate (BENCHMARKS.md)."""
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""Flags of CPUs with int8 dot-product instructions (VNNI, AMX): what fbgemm's int8 kernels use."""

CPU_KINDS = ("bf16", "int8", "fp32")
"""What a CPU is best at, as `make bench` names it (`CPU_KIND=`): bf16 native; int8 dot products
without bf16; neither."""


@dataclass(frozen=True)
class CpuFeatures:
    """The model name and the flags of the first CPU in /proc/cpuinfo."""

    model: str
    """`model name`, e.g. "AMD EPYC 9R14" or "Intel(R) Xeon(R) Platinum 8259CL"."""
    flags: frozenset[str]
    """Every flag the kernel lists for it."""

    @property
    def bf16(self) -> bool:
        """Native bf16 matmuls (AVX512_BF16 or AMX-BF16)."""
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        """int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
        return any(f in self.flags for f in INT8_FLAGS)

    @property
    def amx(self) -> bool:
        return any(f.startswith("amx") for f in self.flags)

    @property
    def kind(self) -> str:
        """One of CPU_KINDS: `bf16` wins over `int8` where both are there (bf16 keeps the model's own
        weights; int8 is the lever for CPUs without it)."""
        return "bf16" if self.bf16 else "int8" if self.int8_dot else "fp32"

    def describe(self) -> str:
        """One line for a benchmark's header: the model and the flags that decide the dtype."""
        shown = [f for f in BF16_FLAGS + INT8_FLAGS if f in self.flags]
        return f"{self.model or 'unknown CPU'}; {', '.join(shown) or 'no bf16/VNNI/AMX flags'}; kind {self.kind}"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The features of the first processor block of a /proc/cpuinfo text (every core lists the same)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return CpuFeatures(model=model, flags=flags)


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's CPU features (read once). Tests replace this function to play another CPU."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return CpuFeatures(model="", flags=frozenset())
