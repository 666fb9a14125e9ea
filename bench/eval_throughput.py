# python bench/eval_throughput.py [--items 64] [--dtype float32|bfloat16|int8|auto]
"""Evaluation throughput: tuneoff's engine vs the naive one-at-a-time `model.generate` loop.

Same model, same prompts (rendered by the same prompt arm), same items. Prints examples/s for each
and the ratio, the agreement of greedy predictions with the naive loop, and the achieved fraction of
the matmul peak measured in this process. When tuneoff runs in another precision than fp32 (bf16,
int8), the same engine also runs the items in fp32 (its ratio printed too), and the agreement of the predictions
with fp32's and the accuracy change are printed beside the ratio: the naive loop generates where a
scored case scores, so its agreement says nothing about precision. "Useful work" counts 2 FLOPs per matmul parameter for every
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
from common import body_params, eval_cases, machine, matmul_peak, sst2_context, timed  # noqa: E402

from tuneoff.evaluate import evaluate  # noqa: E402
from tuneoff.models import ModelSpec, load_backend  # noqa: E402
from tuneoff.models.local import TransformersBackend  # noqa: E402
from tuneoff.prompting import PromptArm, prepare  # noqa: E402
from tuneoff.prompting.answers import parse_reply  # noqa: E402
from tuneoff.store import Store  # noqa: E402

LABELS = ("negative", "positive")


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


def run_case(name, baseline, backend, ctx, items, warmup, arm: PromptArm, naive_tokens: int, peak: float,
             fp32=None, params: int | None = None) -> dict:
    """One case; `fp32`: tuneoff's engine on an fp32 backend, the precision reference when `backend` is not
    fp32; `params`: matmul parameters for the useful-work count (an int8 model hides its quantised ones)."""
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
    frac = 2 * (params or body_params(backend.model)) * tokens / ours_s / 1e9 / peak
    agree = sum(a == b for a, b in zip(base_pred, ours_pred)) / len(items)
    acc = lambda preds: sum(p == ex.target for p, ex in zip(preds, items)) / len(items)  # noqa: E731
    row = {"case": name, "naive ex/s": len(items) / base_s, "tuneoff ex/s": len(items) / ours_s,
           "ratio": base_s / ours_s, "agreement": agree, "acc naive": acc(base_pred), "acc tuneoff": acc(ours_pred), "peak fraction": frac}
    vs_fp32 = ""
    if fp32 is not None:
        evaluate(fp32, arm, warmup, ctx)
        fp32.prefixes.clear()
        result, fp32_s = timed(evaluate, fp32, arm, items, ctx, store=Store(":memory:"))
        ref = [r["prediction"] for r in result.predictions]
        row["agreement fp32"] = sum(a == b for a, b in zip(ref, ours_pred)) / len(items)
        row["acc fp32"] = acc(ref)
        row["fp32 ratio"] = base_s / fp32_s
        vs_fp32 = (f" (tuneoff fp32: {row['fp32 ratio']:.1f}x)   vs tuneoff fp32: agreement {row['agreement fp32']:.1%}, "
                   f"acc {row['acc fp32']:.3f} -> {row['acc tuneoff']:.3f} ({row['acc tuneoff'] - row['acc fp32']:+.3f})")
    print(f"{name:28s} naive {row['naive ex/s']:6.2f} ex/s   tuneoff {row['tuneoff ex/s']:7.2f} ex/s   "
          f"ratio {row['ratio']:5.1f}x{vs_fp32}   agreement with naive {agree:.0%}   acc naive {row['acc naive']:.3f} "
          f"-> {row['acc tuneoff']:.3f}   useful work {frac:.0%} of peak", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--dtype", default="auto",
                        help="tuneoff's dtype: float32, bfloat16, int8 or auto (the naive baseline is always float32)")
    parser.add_argument("--cases", default="zero-shot-score,8-shot-score,zero-shot-generate,cot-generate")
    args = parser.parse_args()
    print(machine())
    peak = {d: matmul_peak(getattr(torch, d)) for d in ("float32", "bfloat16")}
    print(f"matmul peak 2048^2: fp32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['bfloat16']:.0f} GFLOP/s")
    ctx, items, warmup = sst2_context(args.items)
    baseline = load_backend(ModelSpec("embedded:smollm2-135m-instruct", dtype="float32", engine="transformers"))
    backend = load_backend(ModelSpec("embedded:smollm2-135m-instruct", dtype=args.dtype, engine="transformers"))
    dtype = backend.info.dtype
    # the precision reference: the engine itself in fp32 (the naive loop's model is one already)
    fp32 = None if dtype == "float32" else TransformersBackend(baseline.model, baseline.tokenizer, baseline.info,
                                                               batch_size=backend.batch_size)
    params = body_params(baseline.model)
    # int8 matmuls have no peak measured here: its useful work is read against fp32's
    peak_of = "bfloat16" if dtype == "bfloat16" else "float32"
    print(f"model: SmolLM2-135M-Instruct, {params / 1e6:.0f}M matmul parameters; naive loop float32, tuneoff {dtype}; "
          f"useful work against the {peak_of} peak")
    cases = eval_cases()
    for name in args.cases.split(","):
        arm, naive_tokens = cases[name]
        run_case(name, baseline, backend, ctx, items, warmup, arm, naive_tokens, peak[peak_of], fp32, params)


if __name__ == "__main__":
    main()
