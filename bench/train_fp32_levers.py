# python bench/train_fp32_levers.py [--n 256] [--levers flush-denormal,torchao-int8-base]
"""LoRA training on a CPU without native bf16: what helps tuneoff's fp32 loop, against that loop itself.

The run of `bench/train_throughput.py` (256 SST-2 examples, LoRA r=16 all-linear, batch 8, one epoch,
lr 2e-4 linear, seed 0), tuneoff's loop in float32 (the precision `dtype: auto` trains in without bf16),
once plain and once per lever. Each row prints training tokens/s against the plain run and the
train-set loss after training, measured by one function in fp32 with the adapter on the fp32 base
(`train_throughput.train_set_loss`): a lever is kept only if it is faster with the loss within 0.02.

Levers:
  flush-denormal      `torch.set_flush_denormal(True)`: denormal floats (tiny gradients) flushed to
                      zero instead of taking the CPU's slow path;
  torchao-int8-base   the frozen base's linear layers as torchao int8 (dynamic activations, per token),
                      fp32 LoRA adapters over them (peft's torchao support); needs torchao
                      (`pip install --no-deps torchao==0.18.0`; not a tuneoff dependency). The script
                      also checks that a gradient reaches the input of such a layer (LoRA adapters below
                      it train on that gradient): in torchao 0.18 on CPU it does not.
Not levers here: `torch.backends.mkldnn.matmul.fp32_precision = "bf16"` is bf16 in disguise (it needs the
bf16 hardware a no-bf16 CPU lacks); thread counts are the machine's (tuneoff leaves torch's default, one
thread per core; set OMP_NUM_THREADS to compare). PyTorch's own int8 layers (`quantize_dynamic`, the
`Int8Linear` of `dtype: int8`) have no backward, which LoRA needs through every frozen layer.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, sst2_items  # noqa: E402
from train_throughput import INSTRUCTION, MODEL, run_tuneoff, train_set_loss  # noqa: E402

import tuneoff.finetune.run as finetune_run  # noqa: E402
from tuneoff.finetune import default_formatter  # noqa: E402
from tuneoff.models import ModelSpec, load_model  # noqa: E402


@contextlib.contextmanager
def flush_denormal():
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def torchao_int8_base():
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    original = finetune_run.prepare_model

    def prepare(lm, arm):
        # quantised before peft wraps the layers, so peft puts its torchao-aware LoRA layer over them
        head = lm.get_output_embeddings()
        quantize_(lm, Int8DynamicActivationInt8WeightConfig(),
                  filter_fn=lambda m, _: isinstance(m, torch.nn.Linear) and m is not head)
        return original(lm, arm)

    layer = torch.nn.Sequential(torch.nn.Linear(64, 64))
    quantize_(layer, Int8DynamicActivationInt8WeightConfig())
    x = torch.randn(4, 64, requires_grad=True)
    layer(x).sum().backward()
    print(f"torchao int8 linear: gradient reaches its input: {x.grad is not None}", flush=True)
    finetune_run.prepare_model = prepare
    try:
        yield
    finally:
        finetune_run.prepare_model = original


LEVERS = {"flush-denormal": flush_denormal, "torchao-int8-base": torchao_int8_base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="training examples")
    parser.add_argument("--levers", default=",".join(LEVERS))
    args = parser.parse_args()
    args.lr, args.dtype = 2e-4, "float32"
    print(machine())
    examples = sst2_items("train", args.n)
    formatter = default_formatter(INSTRUCTION)
    _, tokenizer, _ = load_model(ModelSpec(MODEL))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["fp32 loop", *args.levers.split(",")]:
            try:
                with LEVERS[name]() if name in LEVERS else contextlib.nullcontext():
                    row = run_tuneoff(examples, formatter, args, Path(tmp) / name)
            except Exception as exc:  # noqa: BLE001 (a lever that cannot run here is a result too)
                print(f"{name:20s} skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
                continue
            row["train-set loss"] = train_set_loss(row["model"], tokenizer, examples, formatter)
            rows[name] = row
            base = rows["fp32 loop"]
            print(f"{name:20s} {row['tokens']:6d} tokens in {row['seconds']:6.1f} s = {row['tok/s']:6.1f} tok/s   "
                  f"{row['tok/s'] / base['tok/s']:4.2f}x the fp32 loop   train-set loss after {row['train-set loss']:.4f} "
                  f"({row['train-set loss'] - base['train-set loss']:+.4f}; keep if faster and within 0.02)", flush=True)


if __name__ == "__main__":
    main()
