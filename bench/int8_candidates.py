# python bench/int8_candidates.py [--items 128] [--cases zero-shot-score,8-shot-score,zero-shot-generate] [--only tuneoff-int8,llamacpp-q8_0]
"""int8 candidates for evaluation on CPUs without native bf16, each against fp32 on the same machine.

tuneoff's evaluation engine (`tuneoff.evaluate.evaluate`) runs each case of the SST-2 benchmark (the
embedded SmolLM2-135M-Instruct, the items of `bench/eval_throughput.py`) once in fp32 and once per
candidate; every row prints the candidate's speed against fp32, the agreement of its predictions with
fp32's and the accuracy change, side by side. Candidates:

  tuneoff-int8      what `dtype: int8` runs (`tuneoff.models.quantize`): int8 weights per output row,
                    activations per token, `torch._int_mm`; the vocabulary head fp32 (or quantised too);
                    `-smooth-A`: with SmoothQuant's per-channel factors (strength A) from calibration text;
                    `-fp32-down` / `-fp32-attn`: the MLP's down projection / attention's projections left fp32;
  torch-dynamic-... PyTorch's dynamic int8 quantisation of the linear layers (`quantize_dynamic`: one
                    activation scale per tensor) on the x86, fbgemm and onednn engines, per-channel or
                    per-tensor weight scales, the vocabulary head fp32;
  torch-fp16-weights  not int8: the same call with fp16 weights (fbgemm's fp16 GEMM: fp32 arithmetic,
                    half the weight bytes), a no-bf16 lever for memory-bound decoding;
  torchao-...       torchao's int8 configs through `quantize_` (eager, no torch.compile), when torchao
                    is importable (`pip install --no-deps torchao==0.18.0`; not a tuneoff dependency);
  llamacpp-q8_0     the model exported as a Q8_0 GGUF (`tuneoff export --outtype q8_0`) in llama.cpp
                    (the `llamacpp` extra): generation through tuneoff's llama.cpp engine, label scoring
                    by the log-probabilities llama.cpp computes for the label tokens (this script's own
                    few lines: tuneoff scores in transformers only);
  bf16              not a candidate: the agreement bf16 itself reaches (what `auto` runs on bf16 CPUs),
                    to read the int8 rows against.

ONNX Runtime int8 is not a candidate: exporting a decoder with its KV cache needs optimum's ONNX
exporter, and optimum-onnx 0.1.0 (the newest) requires transformers<4.58 and optimum~=2.1, where tuneoff
runs transformers 5.23; without the cache an export could only score.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import eval_cases, machine, sst2_context, timed  # noqa: E402

from tuneoff.evaluate import evaluate  # noqa: E402
from tuneoff.models import ModelSpec, load_backend  # noqa: E402
from tuneoff.models.base import Score  # noqa: E402
from tuneoff.models.local import TransformersBackend  # noqa: E402
from tuneoff.models.quantize import quantize_int8  # noqa: E402
from tuneoff.store import Store  # noqa: E402

MODEL = "embedded:smollm2-135m-instruct"


def dynamic_model(model, engine: str = "x86", per_channel: bool = True, dtype=torch.qint8):
    """`torch.ao.quantization.quantize_dynamic` of every linear layer but the vocabulary head."""
    import warnings

    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = engine  # weights are packed for the engine current when quantised
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    head = model.get_output_embeddings()
    spec = {n: qconfig for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 announces the move of this API to torchao on every call
        if dtype == torch.float16:
            spec = {n: torch.ao.quantization.float16_dynamic_qconfig for n in spec}
        return quantize_dynamic(model, spec, dtype=dtype, inplace=True)


def torchao_model(model, config_name: str):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    config = {"dynamic": Int8DynamicActivationInt8WeightConfig, "weight-only": Int8WeightOnlyConfig}[config_name]
    head = model.get_output_embeddings()
    quantize_(model, config(), filter_fn=lambda m, _: isinstance(m, torch.nn.Linear) and m is not head)
    return model


TOKENIZER: list = []
"""The fp32 backend's tokenizer, for the smoothed candidates' calibration (set in main)."""

CANDIDATES = {
    "tuneoff-int8": lambda m: quantize_int8(m),
    "tuneoff-int8-with-head": lambda m: quantize_int8(m, head=True),
    "tuneoff-int8-smooth-0.5": lambda m: quantize_int8(m, tokenizer=TOKENIZER[0], alpha=0.5),
    "tuneoff-int8-smooth-0.8": lambda m: quantize_int8(m, tokenizer=TOKENIZER[0], alpha=0.8),
    "tuneoff-int8-smooth-0.5-fp32-down": lambda m: quantize_int8(m, tokenizer=TOKENIZER[0], keep=("down_proj",)),
    "tuneoff-int8-smooth-0.5-fp32-attn": lambda m: quantize_int8(m, tokenizer=TOKENIZER[0],
                                                                 keep=("q_proj", "k_proj", "v_proj", "o_proj")),
    "torch-dynamic-x86": lambda m: dynamic_model(m),
    "torch-dynamic-x86-per-tensor": lambda m: dynamic_model(m, per_channel=False),
    "torch-dynamic-fbgemm": lambda m: dynamic_model(m, "fbgemm"),
    "torch-dynamic-onednn": lambda m: dynamic_model(m, "onednn"),
    "torch-fp16-weights": lambda m: dynamic_model(m, dtype=torch.float16),  # not int8: fp16 weights, fp32 math
    "torchao-dynamic": lambda m: torchao_model(m, "dynamic"),
    "torchao-weight-only": lambda m: torchao_model(m, "weight-only"),
    "llamacpp-q8_0": None,  # built from a GGUF: `llamacpp_backend`
    "bf16": lambda m: m.to(torch.bfloat16),  # not int8: what `auto` runs where bf16 is native, for scale
}
"""name -> how a copy of the fp32 model becomes the candidate."""


class LlamaCppScoring(TransformersBackend):
    """Generation through llama.cpp (tuneoff's engine, `generator_policy="always"`) and label scoring from
    llama.cpp's own logits: the prompt is evaluated once, each label continues it (llama-cpp-python keeps the
    KV cache of the tokens evaluated so far; the longest common prefix is kept, the rest recomputed)."""

    def loglikelihood(self, chats, continuations):
        llm = self.generator.llm
        out = []
        for chat, cont in zip(chats, continuations):
            prompt = self.encode_prompt(chat)
            ids = self.tokenizer(cont, add_special_tokens=False)["input_ids"]
            seq = prompt + ids
            kept = 0
            for a, b in zip(llm.input_ids[:llm.n_tokens], seq[:-1]):
                if a != b:
                    break
                kept += 1
            llm.n_tokens = kept  # llama-cpp-python drops the KV cache past n_tokens on the next eval
            llm.eval(seq[kept:])
            logits = torch.from_numpy(llm.scores[len(prompt) - 1:len(seq) - 1].copy())
            lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids)[:, None]).sum().item()
            out.append(Score(logprob=lp, tokens=len(ids), tokens_in=len(prompt), seconds=0.0))
        return out


def llamacpp_backend(fp32, tmp: Path):
    from tuneoff.finetune.export import export_gguf
    from tuneoff.models.llamacpp import LlamaCppGenerator

    gguf = tmp / "q8_0.gguf"
    export_gguf(MODEL, gguf, outtype="q8_0")
    generator = LlamaCppGenerator(gguf, torch.get_num_threads())
    from llama_cpp import Llama

    # logits of every position, for the scoring above (generation needs only the last)
    generator._llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=generator.threads,
                           n_threads_batch=generator.threads, logits_all=True, verbose=False)
    info = dataclasses.replace(fp32.info, dtype="q8_0")
    return LlamaCppScoring(fp32.model, fp32.tokenizer, info, batch_size=fp32.batch_size, generator=generator,
                           generator_policy="always")


def build(name: str, fp32, tmp: Path):
    if name == "llamacpp-q8_0":
        return llamacpp_backend(fp32, tmp)
    model = CANDIDATES[name](copy.deepcopy(fp32.model))
    return TransformersBackend(model, fp32.tokenizer, dataclasses.replace(fp32.info, dtype=name),
                               batch_size=fp32.batch_size)


def run(backend, arm, ctx, items, warmup) -> tuple[list, float]:
    """(predictions, seconds) of one timed evaluation, after a warm-up on other items."""
    evaluate(backend, arm, warmup[:8], ctx)
    backend.prefixes.clear()  # the timed run computes its shared prefix itself
    result, seconds = timed(evaluate, backend, arm, items, ctx, store=Store(":memory:"))
    return [r["prediction"] for r in result.predictions], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--cases", default="zero-shot-score,8-shot-score,zero-shot-generate")
    parser.add_argument("--only", default=",".join(CANDIDATES), help="candidates, comma-separated")
    args = parser.parse_args()
    print(machine())
    ctx, items, warmup = sst2_context(args.items)
    fp32 = load_backend(ModelSpec(MODEL, dtype="float32", engine="transformers"))
    TOKENIZER.append(fp32.tokenizer)
    cases = eval_cases()
    reference = {}
    for case in args.cases.split(","):
        preds, seconds = run(fp32, cases[case][0], ctx, items, warmup)
        reference[case] = (preds, seconds)
        acc = sum(p == ex.target for p, ex in zip(preds, items)) / len(items)
        print(f"{'fp32 (reference)':28s} {case:20s} {len(items) / seconds:7.2f} ex/s   acc {acc:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            try:
                backend = build(name, fp32, Path(tmp))
            except Exception as exc:  # noqa: BLE001 (an optional library missing or failing is a result too)
                print(f"{name:28s} skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
                continue
            for case in args.cases.split(","):
                base_preds, base_s = reference[case]
                preds, seconds = run(backend, cases[case][0], ctx, items, warmup)
                agree = sum(a == b for a, b in zip(preds, base_preds)) / len(items)
                acc = [sum(p == ex.target for p, ex in zip(ps, items)) / len(items) for ps in (base_preds, preds)]
                print(f"{name:28s} {case:20s} {len(items) / seconds:7.2f} ex/s   {base_s / seconds:5.2f}x fp32   "
                      f"agreement {agree:6.1%}   acc {acc[0]:.3f} -> {acc[1]:.3f} ({acc[1] - acc[0]:+.3f})", flush=True)
            if name == "llamacpp-q8_0":
                backend.generator.close()


if __name__ == "__main__":
    main()
