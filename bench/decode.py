# python bench/decode.py [--tokens 128] [--dtypes float32 bfloat16]      (make bench-decode)
"""Decode speed at batch 1: tuneoff's generation paths vs eager transformers and llama.cpp, same run.

Baselines: tuneoff's eager transformers path (each dtype), and llama-cpp-python (2 threads, greedy, the
embedded SmolLM2 Q4_1 GGUF) when installed. tuneoff: (a) its transformers path at batch 1, eager and
`decode: compiled` (static KV cache + torch.compile'd decode step; compile time printed), fp32 and bf16
(weights dequantised from that GGUF); (b) `tuneoff ask`'s path with the llama.cpp engine attached
(`engine: auto` when installed).
Each generates the same number of tokens from the same prompt (end-of-sequence ignored where the
engine allows, otherwise tokens/s counts what was generated). Also prints batched evaluation
throughput for generated answers, transformers batched vs llama.cpp one request at a time, which is
why `auto` keeps evaluations on transformers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, sst2_items  # noqa: E402

from tuneoff.models import ModelSpec, load_backend  # noqa: E402
from tuneoff.models.base import GenerationConfig  # noqa: E402
from tuneoff.models.llamacpp import INSTALL, LlamaCppGenerator, gguf_of, installed  # noqa: E402

MODEL = "embedded:smollm2-135m-instruct"
CHAT = [{"role": "user", "content": "Write a long story about a robot who learns to paint, with many details."}]


def tokens_per_second(fn, repeats: int = 2) -> tuple[float, str]:
    fn()  # warm-up: kernels, thread pools, caches
    best, text = 0.0, ""
    for _ in range(repeats):
        began = time.perf_counter()
        completion = fn()
        best = max(best, completion.tokens_out / (time.perf_counter() - began))
        text = completion.text
    return best, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--items", type=int, default=16, help="items for the batched comparison")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()
    print(machine())
    threads = torch.get_num_threads()
    config = GenerationConfig(max_new_tokens=args.tokens)
    rows: dict[str, tuple[float, str]] = {}
    backends = {}
    for dtype in args.dtypes:
        # eager first: the baseline of its compiled twin, measured in this process
        for decode in ("eager", "compiled"):
            backend = load_backend(ModelSpec(MODEL, dtype=dtype, engine="transformers", batch_size=16, decode=decode))
            began = time.perf_counter()
            rows[f"transformers {dtype} {decode}"] = tokens_per_second(lambda: backend.generate([CHAT], config)[0])
            if decode == "compiled":
                print(f"  {dtype} compiled: first call (compile) {backend.compile_seconds:.1f} s, "
                      f"warm-up + 2 timed runs {time.perf_counter() - began:.1f} s")
            backends[(dtype, decode)] = backend
    fp32 = backends[(args.dtypes[0], "eager")]
    prompt = fp32.encode(fp32.render(CHAT))
    llama = None
    if installed():
        llama = LlamaCppGenerator(gguf_of(MODEL), threads)
        rows["llama.cpp"] = tokens_per_second(lambda: llama.generate([prompt], config)[0])
        auto = load_backend(ModelSpec(MODEL, engine="auto"))
        rows["tuneoff ask (engine auto)"] = tokens_per_second(lambda: auto.generate_one(CHAT, config))
    else:
        print(f"llama.cpp not installed ({INSTALL}): ratios against eager only")
    for name, (tps, text) in rows.items():
        dtype = name.split()[1] if name.startswith("transformers") else None
        eager = rows.get(f"transformers {dtype} eager") if dtype else None
        line = f"{name:32s} {tps:7.1f} tok/s"
        if eager:
            same = "same text" if text == eager[1] else "text differs"
            line += f"   vs eager {dtype}: {tps / eager[0]:5.2f}x ({same})"
        if "llama.cpp" in rows:
            line += f"   vs llama.cpp: {tps / rows['llama.cpp'][0]:5.2f}x"
        print(line)
    print("target: >= 0.5x of llama.cpp in tuneoff's own path, or a llama.cpp engine used when installed")
    agreement(backends, args)
    if llama is None:
        return
    bf16 = backends.get(("bfloat16", "eager"), fp32)

    # batched evaluation of generated answers: the case `engine: auto` leaves to transformers
    chats = [[{"role": "user", "content": "Is the sentiment of this movie review positive or negative? "
                                          "Think step by step, then answer.\n\n" + ex.input}]
             for ex in sst2_items("dev", args.items)]
    cot = GenerationConfig(max_new_tokens=48)
    began = time.perf_counter()
    bf16.generate(chats, cot)
    batched = len(chats) / (time.perf_counter() - began)
    began = time.perf_counter()
    llama.generate([fp32.encode(fp32.render(c)) for c in chats], cot)
    serial = len(chats) / (time.perf_counter() - began)
    print(f"batched evaluation, {len(chats)} items x 48 tokens: transformers bf16 batch 16 {batched:.2f} items/s, "
          f"llama.cpp one at a time {serial:.2f} items/s ({batched / serial:.2f}x)")


def agreement(backends: dict, args) -> None:
    """Batched generation of the same SST-2 chain-of-thought prompts, eager vs compiled per dtype: items
    with the same greedy text, and throughput (the compiled side's compile is paid in a warm-up first)."""
    chats = [[{"role": "user", "content": "Is the sentiment of this movie review positive or negative? "
                                          "Think step by step, then answer.\n\n" + ex.input}]
             for ex in sst2_items("dev", args.items)]
    cot = GenerationConfig(max_new_tokens=48)
    for dtype in args.dtypes:
        eager, compiled = backends[(dtype, "eager")], backends[(dtype, "compiled")]
        timed = {}
        for name, backend in (("eager", eager), ("compiled", compiled)):
            backend.generate(chats, cot)  # warm-up (compile for this batch's bucket)
            began = time.perf_counter()
            timed[name] = (backend.generate(chats, cot), time.perf_counter() - began)
        same = sum(a.text == b.text for a, b in zip(timed["eager"][0], timed["compiled"][0]))
        print(f"batched CoT, {len(chats)} items x 48 tokens, {dtype}: eager {len(chats) / timed['eager'][1]:.2f} "
              f"items/s, compiled {len(chats) / timed['compiled'][1]:.2f} items/s "
              f"({timed['eager'][1] / timed['compiled'][1]:.2f}x); same greedy text on {same}/{len(chats)} items")


if __name__ == "__main__":
    main()
