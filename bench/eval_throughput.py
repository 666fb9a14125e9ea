# python bench/eval_throughput.py [--items 64] [--dtype float32]
"""Evaluation throughput: tuneoff's engine vs the naive one-at-a-time `model.generate` loop.

Same model, same prompts (rendered by the same prompt arm), same items. Prints examples/s for each
and the ratio, the agreement of greedy predictions with the naive loop, and the achieved fraction of
the matmul peak measured in this process. "Useful work" counts 2 FLOPs per matmul parameter for every
prompt and output token, as the naive loop computes them; a shared prefix that tuneoff computes once
still counts for every item, so reuse can take it past 100%. Speed never comes from doing less:
every item is run, the naive loop in float32, tuneoff in --dtype.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import body_params, machine, matmul_peak, sst2_items, timed  # noqa: E402

from tuneoff.evaluate import evaluate  # noqa: E402
from tuneoff.models import ModelSpec, load_backend  # noqa: E402
from tuneoff.prompting import PromptArm, TaskContext, prepare  # noqa: E402
from tuneoff.prompting.answers import parse_reply  # noqa: E402
from tuneoff.store import Store  # noqa: E402

LABELS = ("negative", "positive")
INSTRUCTION = "Is the sentiment of this movie review positive or negative?"


def naive_loop(backend, chats, max_new_tokens: int) -> list[str]:
    """The baseline: one `generate` call per prompt, no batching, no cache reuse."""
    tok, model, outs = backend.tokenizer, backend.model, []
    for chat in chats:
        ids = tok(backend.render(chat), add_special_tokens=False, return_tensors="pt").to(backend.device)
        with torch.inference_mode():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        outs.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs


def run_case(name, baseline, backend, ctx, items, warmup, arm: PromptArm, naive_tokens: int, peak: float) -> dict:
    prompter = prepare(arm, ctx)
    chats = [prompter.messages(ex) for ex in items]
    # warm-up on other items, both sides: thread pools, and oneDNN's kernels for each new shape
    naive_loop(baseline, [prompter.messages(ex) for ex in warmup[:4]], naive_tokens)
    evaluate(backend, arm, warmup, ctx)
    backend.prefixes.clear()  # the timed run computes its shared prefix itself
    base_out, base_s = timed(naive_loop, baseline, chats, naive_tokens)
    base_pred = [parse_reply(o, labels=LABELS, metric="accuracy", cot=arm.chain_of_thought).prediction
                 for o in base_out]
    store = Store(":memory:")  # fresh: nothing is answered from an earlier run's calls
    result, ours_s = timed(evaluate, backend, arm, items, ctx, store=store)
    ours_pred = [r["prediction"] for r in result.predictions]
    # useful work: every prompt and output token through the matmul parameters once (2 FLOPs each)
    tokens = sum(r["tokens_in"] + r["tokens_out"] for r in store.predictions_with_costs(result.run_id))
    frac = 2 * body_params(backend.model) * tokens / ours_s / 1e9 / peak
    agree = sum(a == b for a, b in zip(base_pred, ours_pred)) / len(items)
    acc = lambda preds: sum(p == ex.target for p, ex in zip(preds, items)) / len(items)  # noqa: E731
    row = {"case": name, "naive ex/s": len(items) / base_s, "tuneoff ex/s": len(items) / ours_s,
           "ratio": base_s / ours_s, "agreement": agree, "acc naive": acc(base_pred), "acc tuneoff": acc(ours_pred), "peak fraction": frac}
    print(f"{name:28s} naive {row['naive ex/s']:6.2f} ex/s   tuneoff {row['tuneoff ex/s']:7.2f} ex/s   "
          f"ratio {row['ratio']:5.1f}x   agreement {agree:.0%}   acc {row['acc naive']:.3f} -> {row['acc tuneoff']:.3f}   "
          f"useful work {frac:.0%} of peak")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--dtype", default="auto", help="tuneoff's dtype (the naive baseline is always float32)")
    parser.add_argument("--cases", default="zero-shot-score,8-shot-score,zero-shot-generate,cot-generate")
    args = parser.parse_args()
    print(machine())
    peak = {d: matmul_peak(getattr(torch, d)) for d in ("float32", "bfloat16")}
    print(f"matmul peak 2048^2: fp32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['bfloat16']:.0f} GFLOP/s")
    dev = sst2_items("dev")
    items, warmup = dev[:args.items], dev[-32:]
    pool = sst2_items("train")
    ctx = TaskContext(name="sst2", labels=LABELS, instruction=INSTRUCTION, pool=tuple(pool))
    baseline = load_backend(ModelSpec("embedded:smollm2-135m-instruct", dtype="float32", engine="transformers"))
    backend = load_backend(ModelSpec("embedded:smollm2-135m-instruct", dtype=args.dtype, engine="transformers"))
    dtype = backend.info.dtype
    print(f"model: SmolLM2-135M-Instruct, {body_params(backend.model) / 1e6:.0f}M matmul parameters; "
          f"naive loop float32, tuneoff {dtype}")
    cases = {
        "zero-shot-score": (PromptArm(name="zs", mode="score"), 6),
        "8-shot-score": (PromptArm(name="fs", shots=8, mode="score"), 6),
        "zero-shot-generate": (PromptArm(name="zsg", max_new_tokens=6), 6),
        "cot-generate": (PromptArm(name="cot", chain_of_thought=True, max_new_tokens=48), 48),
    }
    for name in args.cases.split(","):
        arm, naive_tokens = cases[name]
        run_case(name, baseline, backend, ctx, items, warmup, arm, naive_tokens, peak[dtype])


if __name__ == "__main__":
    main()
