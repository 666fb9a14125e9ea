# python bench/long_generate.py [--items 24] [--tokens 80] [--dtype auto]      (make bench-long)
"""Batched generation for long inputs: DialogSum summaries (dialogues of ~150-700 tokens, summaries of
20-100), tuneoff's batched path vs a plain `generate` loop, same process, same model and prompts.

Baseline: one `model.generate` per prompt (greedy, eager). tuneoff: `backend.generate` (length-bucketed,
left-padded batches of `--batch` rows), first with the whole batch decoding until its longest row ends
(`exit_chunk` off), then with early exit (finished rows and their KV cache dropped every `exit_chunk`
tokens). Prints items/s, the ratios, and how many summaries equal the baseline's greedy text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from tuneoff.models import GenerationConfig, ModelSpec, load_backend  # noqa: E402

MODEL = "embedded:smollm2-135m-instruct"
ROOT = Path(__file__).parents[1]
DATA = next((p for p in (ROOT / "examples" / "data" / "dialogsum" / "test.jsonl",
                         ROOT.parent / "shared" / "data" / "dialogsum" / "test.jsonl") if p.exists()),
            ROOT.parent / "shared" / "data" / "dialogsum" / "test.jsonl")


def dialogues(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["dialogue"] for r in rows[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=80)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(machine())
    backend = load_backend(ModelSpec(MODEL, dtype=args.dtype, engine="transformers", batch_size=args.batch))
    chats = [[{"role": "user", "content": "Summarise this dialogue in one or two sentences.\n\n" + d}]
             for d in dialogues(args.data, args.items)]
    ids = [backend.encode_prompt(c) for c in chats]
    print(f"{len(ids)} dialogues, prompt tokens {min(map(len, ids))}-{max(map(len, ids))}, "
          f"at most {args.tokens} new tokens, {backend.info.dtype}, batch {args.batch}")
    config = GenerationConfig(max_new_tokens=args.tokens)
    backend.generate_ids(ids[:2], GenerationConfig(max_new_tokens=4))  # warm-up

    began = time.perf_counter()
    plain = [backend._generate_batch([i], config)[0] for i in ids]  # one generate per prompt
    t_plain = time.perf_counter() - began
    runs = {}
    for name, chunk in (("batched, no early exit", 0), ("batched + early exit", 16)):
        backend.exit_chunk = chunk
        began = time.perf_counter()
        runs[name] = (backend.generate_ids(ids, config), time.perf_counter() - began)
    out_tokens = sum(c.tokens_out for c in plain)
    print(f"plain generate loop          {len(ids) / t_plain:6.2f} items/s  ({out_tokens} tokens generated)")
    for name, (result, seconds) in runs.items():
        same = sum(a.text == b.text for a, b in zip(plain, result))
        print(f"{name:28s} {len(ids) / seconds:6.2f} items/s  {t_plain / seconds:5.2f}x the loop; "
              f"same text as the loop on {same}/{len(ids)}")
    print(f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
