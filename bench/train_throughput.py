# python bench/train_throughput.py [--n 256] [--dtype bfloat16]
"""LoRA training throughput: tuneoff's loop vs TRL's `SFTTrainer` (its defaults), same run.

Identical data (the same 256 SST-2 examples as conversational prompt/completion pairs, loss on the
completion only in both), identical LoRA (r=16, alpha=32, dropout 0.05, all-linear), batch 8, one
epoch, the same learning rate and schedule (2e-4, linear decay, no warmup), the same seed. Prints
training tokens/s (padding excluded) for each, their ratio, the achieved fraction of the matmul peak
(4 FLOPs per matmul parameter per token: the forward and the input gradient; LoRA computes no weight
gradient for the frozen matrices, so the issue's 6/token full-fine-tuning figure would flatter it), and the two trained models' loss on
the training set measured by one function, so "same result" is checked on the same ruler.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import body_params, machine, matmul_peak, sst2_items  # noqa: E402

from tuneoff.finetune import FinetuneArm, default_formatter, run_finetune  # noqa: E402
from tuneoff.finetune.spec import LoraOptions  # noqa: E402
from tuneoff.finetune.collate import encode_all  # noqa: E402
from tuneoff.finetune.loop import eval_loss  # noqa: E402
from tuneoff.models import ModelSpec, load_model  # noqa: E402
from tuneoff.store import Store  # noqa: E402
from tuneoff.config.task import TaskData, TaskSpec  # noqa: E402

MODEL = "embedded:smollm2-135m-instruct"
INSTRUCTION = "Is the sentiment of this movie review positive or negative?"
LORA = dict(r=16, alpha=32.0, dropout=0.05, target_modules="all-linear")


def run_trl(examples, formatter, args, out: Path) -> dict:
    """TRL's SFTTrainer with its defaults, except what must match (LoRA, batch, lr, schedule, seed)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tokenizer, _ = load_model(ModelSpec(MODEL, dtype="float32"))
    data = Dataset.from_list([{"prompt": formatter(ex), "completion": [{"role": "assistant", "content": ex.target}]}
                              for ex in examples])
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=8, num_train_epochs=1,
                       learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                       max_length=256, seed=0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                       bf16=args.trl_bf16, disable_tqdm=True)
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                         peft_config=peft_config)
    result = trainer.train()
    tokens = sum(len(row["input_ids"]) for row in trainer.train_dataset)
    seconds = result.metrics["train_runtime"]
    settings = (f"bf16={config.bf16}, gradient_checkpointing={config.gradient_checkpointing}, "
                f"padding_free={config.padding_free}, packing={config.packing}")
    return {"tokens": tokens, "seconds": seconds, "tok/s": tokens / seconds, "mean loss": result.training_loss,
            "model": trainer.model, "settings": settings, "dtype": "bfloat16" if config.bf16 else "float32"}


def run_tuneoff(examples, formatter, args, out: Path) -> dict:
    task = TaskData(TaskSpec(name="sst2", train="bench", instruction=INSTRUCTION), list(examples), [], [],
                    ["negative", "positive"])
    arm = FinetuneArm(name="bench-lora", method="lora", lora=LoraOptions(**LORA), epochs=1, batch_size=8, learning_rate=args.lr,
                      lr_schedule="linear", warmup_ratio=0.0, max_length=256, seed=0, dtype=args.dtype,
                      save_steps=10_000)
    store = Store(":memory:")
    result = run_finetune(task, arm, MODEL, out, store, formatter=formatter)
    losses = [e["loss"] for e in store.training_events(result.run_id, kind="train")]
    model, _, _ = load_model(ModelSpec(str(out), dtype="float32"))
    return {"tokens": result.stats.tokens, "seconds": result.stats.seconds, "tok/s": result.stats.tokens_per_second,
            "mean loss": sum(losses) / len(losses), "model": model, "settings": f"dtype={args.dtype}",
            "dtype": "bfloat16" if arm.bf16() else "float32"}


def train_set_loss(model, tokenizer, examples, formatter) -> float:
    """Mean completion-token loss over the training examples, fp32, one function for both models."""
    encoded, _ = encode_all(tokenizer, examples, formatter, 256)
    return eval_loss(model, encoded, FinetuneArm(batch_size=8), tokenizer.pad_token_id, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256, help="training examples")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--dtype", default="bfloat16", help="tuneoff's compute dtype (fp32 master weights)")
    parser.add_argument("--trl-bf16", action="store_true", help="give TRL bf16 autocast too")
    args = parser.parse_args()
    print(machine())
    peak = {d: matmul_peak(getattr(torch, d)) for d in ("float32", "bfloat16")}
    print(f"matmul peak 2048^2: fp32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['bfloat16']:.0f} GFLOP/s")
    examples = sst2_items("train", args.n)
    formatter = default_formatter(INSTRUCTION)
    _, tokenizer, _ = load_model(ModelSpec(MODEL))
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"TRL SFTTrainer": run_trl(examples, formatter, args, Path(tmp) / "trl"),
                "tuneoff": run_tuneoff(examples, formatter, args, Path(tmp) / "tuneoff")}
    params = body_params(rows["tuneoff"]["model"])
    for name, row in rows.items():
        row["train-set loss"] = train_set_loss(row["model"], tokenizer, examples, formatter)
        dtype = row["dtype"]
        row["peak"] = 4 * params * row["tok/s"] / 1e9 / peak[dtype]
        print(f"{name:16s} {row['tokens']:6d} tokens in {row['seconds']:6.1f} s = {row['tok/s']:6.1f} tok/s   "
              f"mean step loss {row['mean loss']:.4f}   train-set loss after {row['train-set loss']:.4f}   "
              f"{row['peak']:.0%} of {dtype} peak   ({row['settings']})")
    trl, ours = rows["TRL SFTTrainer"], rows["tuneoff"]
    print(f"ratio: {ours['tok/s'] / trl['tok/s']:.2f}x training tokens/s (target >= 3x); "
          f"train-set loss difference {abs(ours['train-set loss'] - trl['train-set loss']):.4f} (target <= 0.02); "
          f"token counts {'equal' if ours['tokens'] == trl['tokens'] else 'differ'} "
          f"({ours['tokens']} vs {trl['tokens']})")


if __name__ == "__main__":
    main()
