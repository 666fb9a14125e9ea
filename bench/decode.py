# python bench/decode.py [--tokens 128]
"""Decode speed at batch 1: tuneoff's generation paths vs llama.cpp on the same GGUF, same run.

Baseline: llama-cpp-python, 2 threads (the machine's), greedy, on the embedded SmolLM2 Q4_1 GGUF.
tuneoff: (a) its own transformers path at batch 1, fp32 and bf16 (weights dequantised from that GGUF);
(b) `tuneoff ask`'s path with the llama.cpp engine attached (`engine: auto` when installed).
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
    args = parser.parse_args()
    print(machine())
    if not installed():
        sys.exit(f"llama.cpp is the baseline here and is not installed: {INSTALL}")
    threads = torch.get_num_threads()
    config = GenerationConfig(max_new_tokens=args.tokens)
    rows: dict[str, tuple[float, str]] = {}
    fp32 = load_backend(ModelSpec(MODEL, dtype="float32", engine="transformers", batch_size=16))
    prompt = fp32.encode(fp32.render(CHAT))
    llama = LlamaCppGenerator(gguf_of(MODEL), threads)
    rows["llama.cpp (baseline)"] = tokens_per_second(lambda: llama.generate([prompt], config)[0])
    rows["tuneoff transformers fp32"] = tokens_per_second(lambda: fp32.generate([CHAT], config)[0])
    bf16 = load_backend(ModelSpec(MODEL, dtype="bfloat16", engine="transformers"))
    rows["tuneoff transformers bf16"] = tokens_per_second(lambda: bf16.generate([CHAT], config)[0])
    auto = load_backend(ModelSpec(MODEL, engine="auto"))
    rows["tuneoff ask (engine auto)"] = tokens_per_second(lambda: auto.generate_one(CHAT, config))
    base = rows["llama.cpp (baseline)"][0]
    for name, (tps, text) in rows.items():
        same = "same text as llama.cpp" if text == rows["llama.cpp (baseline)"][1] else "text differs"
        print(f"{name:28s} {tps:7.1f} tok/s   ratio {tps / base:5.2f}x   ({same})")
    print("target: >= 0.5x of llama.cpp in tuneoff's own path, or a llama.cpp engine used when installed")

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


if __name__ == "__main__":
    main()
