"""Training costs that are not the method's arithmetic, removed without changing the method.

- LoRA dropout: peft draws one random number per input element for every adapted module (7 per block
  on all-linear); CPU's generator makes that ~21% of a LoRA step on SmolLM2 (measured with
  torch.profiler, bench/train_throughput.py). `PackedDropout` is the same inverted dropout, with its
  keep mask cut from 64-bit random words, four 16-bit uniforms per draw: 2.3x cheaper, still torch's
  generator (so seeds and checkpointed RNG state replay it exactly).
- Frozen linear weights under bf16 autocast: autocast re-casts every fp32 weight to bf16 on every
  forward. A LoRA run never updates them, so they are stored in bf16 once. Embeddings, norms, the
  head and the adapters stay fp32, so the residual stream and every trained value keep fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import FinetuneArm

_LEVELS = 1 << 16


class PackedDropout(nn.Module):
    """`nn.Dropout(p)` in training, identity in eval. The keep probability is 1 - round(p * 2^16) / 2^16
    (p = 0.05 drops with probability 0.049988)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.cut = round(p * _LEVELS) - _LEVELS // 2  # int16 draws below this are dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.cut
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def speed_up(model, arm: FinetuneArm) -> None:
    """Apply both to a model `prepare_model` made ready (LoRA only; other methods are left as they are)."""
    if arm.method != "lora":
        return
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for key, drop in drops.items():
                if isinstance(drop, nn.Dropout):
                    drops[key] = PackedDropout(drop.p)
    if arm.bf16(next(model.parameters()).device.type):
        head = model.get_output_embeddings()
        for module in model.modules():
            if isinstance(module, nn.Linear) and module is not head and not module.weight.requires_grad:
                module.weight.data = module.weight.data.to(torch.bfloat16)


def compile_decoder(model) -> None:
    """`torch.compile` the model's decoder in place (`nn.Module.compile`): it keeps its parameters and
    their names, so checkpoints, adapters and the loss (which calls the decoder, then the head on label
    positions only) see the model they always see. The head stays eager: its input's shape changes
    with the number of label tokens of every batch."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.get_decoder().compile()
