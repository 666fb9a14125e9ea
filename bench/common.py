"""Shared pieces of the benchmarks: the machine's matmul peak, measured in the same process."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on this CPU (the ceiling the ratios are read against)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: thread pool, kernels
    runs, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - began) / 1e9


def machine() -> str:
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    return (f"{model or platform.processor()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, avx512_bf16={'avx512_bf16' in flags}")


def body_params(model) -> int:
    """Parameters that do matmul work per token (embedding lookups excluded; a tied head counted once)."""
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began


SST2 = Path(__file__).resolve().parents[1] / "examples/data/sst2"


def sst2_items(split: str, n: int | None = None) -> list:
    """The committed SST-2 slice (train: `sentence` column, dev: `content`), first n after a seeded shuffle."""
    from tuneoff.data import ColumnMapping, load_dataset, subsample

    column = "sentence" if split == "train" else "content"
    items = load_dataset(SST2 / f"{split}.tsv", ColumnMapping(column, "label", {"0": "negative", "1": "positive"}))
    return subsample(items, n, 0) if n else items
