# python bench/dialogsum_generation.py [--items 24] [--dtype auto] [--max-new-tokens N]
"""Free-text generation throughput on DialogSum: tuneoff's evaluation engine vs a plain `generate` loop.

The example's zero-shot arm (examples/dialogsum.yaml) on the committed DialogSum test slice: the same
rendered prompts, the same cap (the one the engine derives from the training summaries unless given),
greedy. Baseline: one `model.generate` per prompt in float32, no batching. tuneoff: `evaluate` in
--dtype (bf16 on a CPU with AVX512_BF16), fresh in-memory store. Prints items/s and generated tokens/s
for each, the ratio, ROUGE-L of each side against the three references, and the share of replies the
two sides wrote identically (bf16 vs fp32 greedy can differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, matmul_peak, timed  # noqa: E402

from tuneoff.config.experiment import load_experiment  # noqa: E402
from tuneoff.config.task import load_task  # noqa: E402
from tuneoff.evaluate import evaluate  # noqa: E402
from tuneoff.metrics import main_metric  # noqa: E402
from tuneoff.models import ModelSpec, load_backend  # noqa: E402
from tuneoff.prompting import PromptArm, TaskContext, prepare  # noqa: E402
from tuneoff.prompting.arm import generation_cap  # noqa: E402
from tuneoff.store import Store  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "examples" / "dialogsum.yaml"


def plain_loop(backend, chats, max_new_tokens: int) -> tuple[list[str], int]:
    """The baseline: one `generate` call per prompt; (replies, generated tokens)."""
    tok, model, outs, n = backend.tokenizer, backend.model, [], 0
    for chat in chats:
        ids = tok(backend.render(chat), add_special_tokens=False, return_tensors="pt").to(backend.device)
        with torch.inference_mode():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = gen[0, ids["input_ids"].shape[1]:]
        n += len(new)
        outs.append(tok.decode(new, skip_special_tokens=True).strip())
    return outs, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the cap the engine derives")
    args = parser.parse_args()
    print(machine())
    print(f"matmul peak 2048^2: fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, "
          f"bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s")
    exp = load_experiment(EXAMPLE)
    data = load_task(exp.task)
    ctx = TaskContext.of(data)
    items, warmup = data.test[:args.items], data.test[-4:]
    baseline = load_backend(ModelSpec(exp.model, dtype="float32", engine="transformers"))
    backend = load_backend(ModelSpec(exp.model, dtype=args.dtype, engine="transformers"))
    arm = PromptArm(name="zero-shot")
    cap = args.max_new_tokens or generation_cap(arm, ctx, backend.count_tokens)
    arm = arm.replace(max_new_tokens=cap)
    prompter = prepare(arm, ctx)
    chats = [prompter.messages(ex) for ex in items]
    plain_loop(baseline, [prompter.messages(ex) for ex in warmup[:2]], cap)  # warm-up: thread pools, kernels
    evaluate(backend, arm, warmup, ctx)
    (base_out, base_tokens), base_s = timed(plain_loop, baseline, chats, cap)
    store = Store(":memory:")
    result, ours_s = timed(evaluate, backend, arm, items, ctx, store=store)
    ours_tokens = sum(r["tokens_out"] for r in store.predictions_with_costs(result.run_id))
    ours_out = [(r["prediction"] or "").strip() for r in result.predictions]
    refs = [list(ex.refs()) for ex in items]
    same = sum(a == b for a, b in zip(base_out, ours_out)) / len(items)
    print(f"{len(items)} DialogSum test dialogues, zero-shot, greedy, cap {cap} new tokens; "
          f"plain loop float32, tuneoff {backend.info.dtype} (batch {backend.batch_size})")
    print(f"plain generate loop : {len(items) / base_s:6.3f} items/s  {base_tokens / base_s:7.1f} new tokens/s  "
          f"({base_s:.1f} s)  ROUGE-L {main_metric('rougeL', base_out, refs, resamples=10).value:.2f}")
    print(f"tuneoff engine      : {len(items) / ours_s:6.3f} items/s  {ours_tokens / ours_s:7.1f} new tokens/s  "
          f"({ours_s:.1f} s)  ROUGE-L {result.main.value:.2f}")
    print(f"ratio {base_s / ours_s:.1f}x (items/s); identical replies {same:.0%}")


if __name__ == "__main__":
    main()
