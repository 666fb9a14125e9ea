"""Shared pieces of the benchmarks: the machine (CPU model, bf16/VNNI flags, its kind), its matmul peak
measured in the same process, the SST-2 items and the evaluation cases."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from tuneoff.models.cpu import CPU_KINDS, cpu_features


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
    """The header line every benchmark prints first: CPU model, its bf16/VNNI/AMX flags and kind
    (`tuneoff.models.cpu`, the same reading `dtype: auto` uses), cores, torch and its threads."""
    cpu = cpu_features()
    described = cpu.describe() if cpu.model else f"{platform.processor()}; {cpu.describe()}"
    kind = cpu_kind()
    forced = f" (CPU_KIND={kind}: the {kind} cases forced)" if kind != cpu.kind else ""
    return (f"CPU: {described}{forced}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def cpu_kind() -> str:
    """`bf16`, `int8` or `fp32` (`tuneoff.models.cpu.CPU_KINDS`): what this CPU runs fastest, unless the
    CPU_KIND environment variable says otherwise (`make bench CPU_KIND=int8` plays a CPU without bf16)."""
    forced = os.environ.get("CPU_KIND", "").strip().lower()
    if forced and forced not in CPU_KINDS:
        raise SystemExit(f"CPU_KIND={forced!r}: expected one of {', '.join(CPU_KINDS)}")
    return forced or cpu_features().kind


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


LABELS = ("negative", "positive")
INSTRUCTION = "Is the sentiment of this movie review positive or negative?"


def eval_cases() -> dict:
    """name -> (prompt arm, new tokens the naive loop generates): the evaluation cases of the benchmarks."""
    from tuneoff.prompting import PromptArm

    return {
        "zero-shot-score": (PromptArm(name="zs", mode="score"), 6),
        "8-shot-score": (PromptArm(name="fs", shots=8, mode="score"), 6),
        "zero-shot-generate": (PromptArm(name="zsg", max_new_tokens=6), 6),
        "cot-generate": (PromptArm(name="cot", chain_of_thought=True, max_new_tokens=48), 48),
    }


def sst2_context(n_items: int):
    """(task context, the first n dev items, 32 other dev items to warm up on) of the SST-2 benchmark."""
    from tuneoff.prompting import TaskContext

    dev = sst2_items("dev")
    ctx = TaskContext(name="sst2", labels=LABELS, instruction=INSTRUCTION, pool=tuple(sst2_items("train")))
    return ctx, dev[:n_items], dev[-32:]
