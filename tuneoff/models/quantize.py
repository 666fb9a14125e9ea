"""`dtype: int8`: evaluation on CPUs without native bf16, with int8 matmuls in the decoder's linear layers.

Each `nn.Linear` of the decoder (attention and MLP projections) becomes an `Int8Linear`: int8 weights
with one scale per output row, quantised once; activations quantised per token (one scale per row of
the input) at every call; the product in `torch._int_mm` (int8 x int8 -> int32, oneDNN's kernel: VNNI
or AMX-INT8 where the CPU has them), rescaled to fp32. Embeddings, norms, attention itself and the
vocabulary head stay fp32: the head decides every label score and greedy token.

Why this and not a library's quantised layer (`bench/int8_candidates.py` measured them; BENCHMARKS.md
section 7): PyTorch's `quantize_dynamic` quantises activations with one scale per *tensor*, and
SmolLM2's activations have outlier tokens that take that scale: 34-69% of its predictions agreed with
fp32's on the SST-2 benchmark, accuracy fell 19-27 points. torchao's int8 dynamic config does the
per-token arithmetic used here, but through a tensor subclass whose per-call dispatch made a decoding
step 0.7x fp32 in eager mode (16 rows, 1 thread; `torch._int_mm` called directly: 1.5x), and
torch.compile took 12 minutes for one shape. The kernel is torch's own; this module only quantises and
rescales around it. Each layer's input channels are smoothed first (SmoothQuant, `Int8Linear`): that
raised agreement with fp32 from 75-91% to 83-95% of the benchmark's predictions at ~4% of the speed,
about bf16's 91-95% on two of three cases; still under the 98% bar, so `auto` does not pick int8
(`local.AUTO_INT8`).

Evaluation only: a trained model is quantised when it is loaded for evaluation (a LoRA adapter merged
first: peft cannot put an adapter on a quantised layer), never trained through int8 weights.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import TuneoffError

HINT = "use dtype: float32 (or auto, which picks what this machine runs fastest)"
_QMAX = 127  # symmetric int8: -127..127, so a value and its negation quantise alike


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 rows, fp32 scale per row) of a 2-D fp32 tensor, each row scaled to its own max |value|."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / _QMAX
    return (x / scale).round_().clamp_(-_QMAX, _QMAX).to(torch.int8), scale


class Int8Linear(nn.Module):
    """An `nn.Linear` computed as int8 x int8 -> int32: weights per output row, activations per token.

    `smooth` (SmoothQuant, Xiao et al. 2023): one factor s per input channel, from the channel's largest
    activation on calibration text (`act_max`) and its largest weight, s = act_max^alpha / w_max^(1-alpha);
    activations are divided by s and the weights' columns multiplied by it (the product is unchanged),
    so an outlier channel no longer takes a token's whole int8 range."""

    def __init__(self, linear: nn.Linear, act_max: torch.Tensor | None = None, alpha: float = 0.5):
        super().__init__()
        weight = linear.weight.detach().float()
        smooth = None
        if act_max is not None:
            factors = (act_max.float().clamp(min=1e-5).pow(alpha)
                       / weight.abs().amax(dim=0).clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)
            weight, smooth = weight * factors, (1.0 / factors).view(1, -1)
        self.register_buffer("smooth", smooth)
        weight, scale = _quantize_rows(weight)
        # stored transposed ([in, out]): `_int_mm` takes the right-hand side that way
        self.register_buffer("weight_t", weight.t().contiguous())
        self.register_buffer("weight_scale", scale.view(1, -1))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        rows, scale = _quantize_rows(flat * self.smooth if self.smooth is not None else flat)
        y = torch._int_mm(rows, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 per-token"
                + (", smoothed" if self.smooth is not None else ""))


@functools.lru_cache(maxsize=1)
def check_int8_support() -> None:
    """A user error unless this torch computes int8 matmuls on this CPU (`torch._int_mm`; tried once)."""
    try:
        out = torch._int_mm(torch.ones(2, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8))
        ok = int(out[0, 0]) == 8
    except (AttributeError, RuntimeError, NotImplementedError) as exc:
        raise TuneoffError(f"dtype int8 needs int8 matmuls, which this torch ({torch.__version__}) does not run "
                           f"on this CPU: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                           field="dtype", hint=HINT) from None
    if not ok:
        raise TuneoffError("dtype int8: this torch's int8 matmul gave a wrong result on this CPU", field="dtype",
                           hint=HINT)


CALIBRATION_TEXTS = (
    "The film is a slow, beautifully shot meditation on grief, and the lead performance is superb.",
    "I was charged twice for the same card payment yesterday. How long until the refund shows up?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Let's think step by step.",
    "Answer with one of: positive, negative. Review: a tedious, overlong mess with no redeeming qualities.",
)
"""Text whose activations set SmoothQuant's per-channel factors: a chat turn of each kind tuneoff scores
(a review, a banking request, a word problem, a labelled instruction). The factors follow the model's
outlier channels, which are the same for any input, not the task's words."""


def activation_maxima(model, tokenizer, linears: list[nn.Linear]) -> dict[nn.Linear, torch.Tensor]:
    """The largest |input| of every channel of each layer in `linears` over CALIBRATION_TEXTS."""
    maxima: dict[nn.Linear, torch.Tensor] = {}

    def record(module, args, _output):
        seen = args[0].detach().reshape(-1, module.in_features).abs().amax(dim=0).float()
        maxima[module] = torch.maximum(maxima[module], seen) if module in maxima else seen

    hooks = [layer.register_forward_hook(record) for layer in linears]
    try:
        with torch.inference_mode():
            for text in CALIBRATION_TEXTS:
                chat = [{"role": "user", "content": text}]
                rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) \
                    if getattr(tokenizer, "chat_template", None) else text
                model(**tokenizer(rendered, return_tensors="pt", add_special_tokens=False))
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


def quantize_int8(model, device: str = "cpu", head: bool = False, tokenizer=None, alpha: float = 0.5,
                  keep: tuple[str, ...] = ()):
    """`model` with its decoder's linear layers replaced by `Int8Linear`, in place (and returned).
    `head`: the vocabulary head too (a candidate `bench/int8_candidates.py` measures; off for evaluation).
    `tokenizer`: smooth each layer's input channels (SmoothQuant, strength `alpha`) from activations on
    CALIBRATION_TEXTS; None: plain per-token int8. `keep`: layer names (e.g. `down_proj`) left in fp32.
    CPU only."""
    if not str(device).startswith("cpu"):
        raise TuneoffError(f"dtype int8 runs on CPU only, not on '{device}'", field="dtype",
                           hint="on a GPU use dtype: bfloat16 or auto")
    check_int8_support()
    skip = None if head else model.get_output_embeddings()
    targets = [(parent, name, child) for parent in list(model.modules()) for name, child in parent.named_children()
               if isinstance(child, nn.Linear) and child is not skip and name not in keep]
    maxima = activation_maxima(model, tokenizer, [c for _, _, c in targets]) if tokenizer is not None else {}
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child, maxima.get(child), alpha))
    return model


def quantized_linears(model) -> int:
    """How many `Int8Linear` layers `model` holds (0 for a float model)."""
    return sum(isinstance(m, Int8Linear) for m in model.modules())
