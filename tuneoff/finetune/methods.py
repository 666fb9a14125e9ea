"""The only place the three methods differ: which parameters train.

`prepare_model` takes a loaded causal LM and returns it ready for the one training loop: wrapped
in a peft LoRA model (`lora`), with all but the last blocks frozen (`freeze`), or untouched (`full`).
Everything after this (loop, checkpoints, outputs) sees only `requires_grad`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import TuneoffError
from .spec import FinetuneArm


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of the model as trained (shared tensors counted once)."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0


def lora_config(arm: FinetuneArm):
    """The peft config of a LoRA arm (None for other methods): the one switch of the training path."""
    if arm.method != "lora":
        return None
    from peft import LoraConfig

    o = arm.lora
    return LoraConfig(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, task_type="CAUSAL_LM",
                      target_modules=o.target_modules if isinstance(o.target_modules, str) else list(o.target_modules))


def prepare_model(model, arm: FinetuneArm):
    """Set what trains; returns the model to train (a `PeftModel` for LoRA)."""
    peft_config = lora_config(arm)
    if peft_config is not None:
        from peft import get_peft_model

        torch.manual_seed(arm.seed)  # adapter A matrices are drawn at random: same seed, same start
        try:
            with warnings.catch_warnings():
                # peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                return get_peft_model(model, peft_config)
        except ValueError as exc:  # peft names the target modules it could not find
            raise TuneoffError(str(exc), field="lora.target_modules",
                               hint="use `all-linear`, or module names such as q_proj, v_proj") from None
    if arm.method == "freeze":
        _freeze_all_but_last(model, arm.freeze.train_last_n, arm.freeze.train_head)
    else:
        model.requires_grad_(True)
    return model


def _blocks(model) -> torch.nn.ModuleList:
    # Llama, Mistral, Qwen, Gemma, ... keep their blocks at model.model.layers
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise TuneoffError(f"cannot find the transformer blocks of {type(model).__name__}", field="method",
                           hint="use method: lora or full for this architecture")
    return layers


def _freeze_all_but_last(model, n: int, train_head: bool) -> None:
    layers = _blocks(model)
    if n > len(layers):
        raise TuneoffError(f"the model has only {len(layers)} blocks", field="freeze.train_last_n")
    model.requires_grad_(False)
    for block in layers[len(layers) - n:]:
        block.requires_grad_(True)
    if train_head:
        untie_head(model)
        model.get_output_embeddings().requires_grad_(True)
        norm = getattr(model.model, "norm", None)
        if norm is not None:
            norm.requires_grad_(True)


def untie_head(model) -> bool:
    """Give a tied LM head its own copy of the embedding matrix; True if it was tied.

    With tied embeddings the head *is* the input embedding matrix: training it would silently train
    the embeddings a freeze arm promised to keep frozen. Untying costs one vocab x hidden matrix
    (28M parameters on SmolLM2-135M) in memory and in the saved model.
    """
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is not embed.weight:
        return False
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False  # save/load keep the two matrices apart from now on
    text_config = getattr(model.config, "get_text_config", lambda: None)()
    if text_config is not None:
        text_config.tie_word_embeddings = False
    return True


def count_params(model) -> ParamCounts:
    params = list(model.parameters())  # parameters() yields a shared (tied) tensor once
    return ParamCounts(trainable=sum(p.numel() for p in params if p.requires_grad),
                       total=sum(p.numel() for p in params))


def estimate_flops(model, tokens: int) -> float:
    """Training FLOPs ~ (2 forward + 2 input-grad + 2 weight-grad) x matmul params x tokens.

    The "6 N T" rule made aware of what trains: every linear layer costs 2 FLOPs per weight per token
    forward; the backward pass needs input gradients only from the first trainable layer on
    (2 per weight) and weight gradients only for trainable weights (2 per weight). Matmul params are
    the `nn.Linear` weights, the LM head included (embedding lookups do no matmul); attention's
    sequence-squared term is left out, which is small at these lengths. `tokens` counts non-padding tokens.
    """
    forward = input_grad = weight_grad = 0
    upstream_trainable = False
    for _, module in model.named_modules():  # registration order = forward order for decoder LMs
        if not isinstance(module, torch.nn.Linear):
            continue
        n = module.weight.numel()
        trainable = module.weight.requires_grad
        upstream_trainable = upstream_trainable or trainable
        forward += n
        input_grad += n if upstream_trainable else 0
        weight_grad += n if trainable else 0
    return 2.0 * (forward + input_grad + weight_grad) * tokens
